//! Phone numbers as people write them ("(555) 123-4567", "0171 1234567", "+44 20 7946 0958",
//! "tel:+1-555-123-4567") normalised to E.164 with the `phonenumber` crate (libphonenumber's
//! metadata, embedded at build time) and a default region for national forms.

use std::str::FromStr;

use phonenumber::country::Id;
use phonenumber::Mode;

use crate::domain::PhoneNumber;

/// A default region (ISO 3166-1 alpha-2, e.g. `US`, `DE`) for numbers written without `+`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(Id);

/// Why a region code or a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not a region libphonenumber knows.
    #[error("unknown region {0:?}: expected an ISO 3166-1 alpha-2 code such as \"US\", \"GB\" or \"DE\"")]
    UnknownRegion(String),
    /// The text is not a phone number in that region.
    #[error("cannot read {number:?} as a phone number (default region {region}): {reason}")]
    Unparseable {
        /// The text as given.
        number: String,
        /// The default region used for national forms.
        region: String,
        /// What libphonenumber said.
        reason: String,
    },
    /// It parses but is not a valid number (wrong length or range for its country).
    #[error("{number:?} is not a valid phone number (read as {e164} with default region {region}); check the digits or write it with + and the country code")]
    Invalid {
        /// The text as given.
        number: String,
        /// What it parsed to.
        e164: String,
        /// The default region.
        region: String,
    },
}

impl Region {
    /// Parse a region code (case-insensitive).
    pub fn parse(code: &str) -> Result<Self, PhoneError> {
        let up = code.trim().to_ascii_uppercase();
        if up.len() != 2 {
            return Err(PhoneError::UnknownRegion(code.to_owned()));
        }
        Id::from_str(&up)
            .map(Self)
            .map_err(|_| PhoneError::UnknownRegion(code.to_owned()))
    }

    /// The two-letter code.
    pub fn code(self) -> String {
        self.0.as_ref().to_owned()
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

/// Normalise `raw` to E.164, reading national forms in `region`.
pub fn normalize(raw: &str, region: Region) -> Result<PhoneNumber, PhoneError> {
    let text = raw.trim();
    let unparseable = |reason: String| PhoneError::Unparseable {
        number: raw.to_owned(),
        region: region.to_string(),
        reason,
    };
    if text.is_empty() {
        return Err(unparseable("it is empty".into()));
    }
    // "00" international prefix as written in most of Europe.
    let text = match text.strip_prefix("00") {
        Some(rest) if !text.starts_with("000") => format!("+{rest}"),
        _ => text.to_owned(),
    };
    let parsed =
        phonenumber::parse(Some(region.0), &text).map_err(|e| unparseable(e.to_string()))?;
    let e164 = parsed.format().mode(Mode::E164).to_string();
    if !phonenumber::is_valid(&parsed) {
        return Err(PhoneError::Invalid {
            number: raw.to_owned(),
            e164,
            region: region.to_string(),
        });
    }
    PhoneNumber::parse(&e164).map_err(|e| unparseable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_of_writing_a_number_gives_the_same_e164() {
        let us = Region::parse("us").expect("US");
        let de = Region::parse("DE").expect("DE");
        let cases: &[(&str, Region, &str)] = &[
            ("(202) 555-0143", us, "+12025550143"),
            ("202.555.0143", us, "+12025550143"),
            ("+1 202 555 0143", us, "+12025550143"),
            ("+1-202-555-0143", de, "+12025550143"),
            ("tel:+1-202-555-0143", us, "+12025550143"),
            ("001 202 555 0143", de, "+12025550143"),
            ("030 901820", de, "+4930901820"),
            ("+49 30 901820", us, "+4930901820"),
            ("0171 1234567", de, "+491711234567"),
            ("+44 20 7946 0958", us, "+442079460958"),
        ];
        for (raw, region, want) in cases {
            let got = normalize(raw, *region).map(|p| p.as_str().to_owned());
            assert_eq!(got.as_deref(), Ok(*want), "{raw} in {region}");
        }
    }

    #[test]
    fn bad_numbers_and_regions_are_named_in_the_error() {
        let us = Region::parse("US").expect("US");
        let e = normalize("call me", us).unwrap_err().to_string();
        assert!(e.contains("\"call me\"") && e.contains("US"), "{e}");
        let e = normalize("123", us).unwrap_err().to_string();
        assert!(e.contains("\"123\"") && e.contains("US"), "{e}");
        let e = Region::parse("XY").unwrap_err().to_string();
        assert!(e.contains("XY"), "{e}");
        assert_eq!(us.code(), "US");
    }
}
