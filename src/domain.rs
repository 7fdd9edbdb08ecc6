//! Domain types shared by every module: identifiers, phone numbers, channel names, timestamps.
//!
//! These types carry their invariants (a `PhoneNumber` is E.164, a `ChannelName` is a short
//! lowercase token), so code past the edge never re-validates. Nothing here does I/O.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A conversation's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct ConversationId(pub i64);

/// A message's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct MessageId(pub i64);

/// An outbox entry's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct OutboxId(pub i64);

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch, the one time representation stored in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Self(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// This instant plus `d` (saturating).
    pub fn plus(self, d: std::time::Duration) -> Self {
        let add = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(add))
    }

    /// RFC 3339 text in UTC with millisecond precision, as the API shows times.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => t
                .format(&time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                ))
                .unwrap_or_else(|_| self.0.to_string()),
            Err(_) => self.0.to_string(),
        }
    }
}

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    /// The text did not start with `+`.
    #[error("phone number {0:?} must be in E.164 form: '+' then the country code and number, e.g. +15551234567")]
    MissingPlus(String),
    /// Something other than digits followed the `+`.
    #[error("phone number {0:?} may contain only digits after '+' (spaces, dashes and dots are allowed and removed)")]
    NotDigits(String),
    /// Too few or too many digits.
    #[error("phone number {0:?} must have 8 to 15 digits after '+'")]
    BadLength(String),
}

/// A phone number in E.164 form (`+` and 8–15 digits, no leading zero in the country code).
///
/// Full per-country validation comes with the contacts module; this type guarantees the
/// canonical shape every channel and table uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parse a number, tolerating spaces, dashes, dots and parentheses as separators.
    pub fn parse(raw: &str) -> Result<Self, PhoneNumberError> {
        let trimmed = raw.trim();
        let Some(rest) = trimmed.strip_prefix('+') else {
            return Err(PhoneNumberError::MissingPlus(raw.to_owned()));
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PhoneNumberError::NotDigits(raw.to_owned())),
            }
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(PhoneNumberError::BadLength(raw.to_owned()));
        }
        Ok(Self(format!("+{digits}")))
    }

    /// The canonical text, e.g. `+15551234567`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "channel name {0:?} must be 1-32 characters of a-z, 0-9, '_' or '-', starting with a letter"
)]
pub struct ChannelNameError(pub String);

/// The name of a channel adapter (`api`, `twilio`, `modem`, …): the key that routes outbound
/// deliveries to the adapter that registered it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChannelName(String);

impl ChannelName {
    /// The generic REST channel.
    pub const API: &'static str = "api";

    /// Parse and validate a channel name.
    pub fn parse(raw: &str) -> Result<Self, ChannelNameError> {
        let ok = !raw.is_empty()
            && raw.len() <= 32
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ChannelNameError(raw.to_owned()))
        }
    }

    /// The `api` channel.
    pub fn api() -> Self {
        Self(Self::API.to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_normalised_or_refused_with_the_reason() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("+15551234567", Ok("+15551234567")),
            (" +1 (555) 123-4567 ", Ok("+15551234567")),
            ("+44.20.7946.0958", Ok("+442079460958")),
            ("15551234567", Err("E.164")),
            ("+1555abc4567", Err("only digits")),
            ("+1234", Err("8 to 15")),
            ("+1234567890123456", Err("8 to 15")),
            ("+0123456789", Err("8 to 15")),
            ("", Err("E.164")),
        ];
        for (raw, want) in table {
            match (PhoneNumber::parse(raw), want) {
                (Ok(p), Ok(w)) => assert_eq!(p.as_str(), *w, "{raw:?}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{raw:?}: {e}"),
                (got, want) => panic!("{raw:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn channel_names_are_short_lowercase_tokens() {
        for ok in ["api", "twilio", "sip-2", "local_voice"] {
            assert!(ChannelName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Api", "9lives", "a b", &"x".repeat(33)] {
            assert!(ChannelName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_render_as_rfc3339_utc_with_millis() {
        assert_eq!(UnixMillis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            UnixMillis(1_700_000_000_123).to_rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
    }
}

/// How much a sender is trusted; routing rules compare these (`Unknown` < `Known` <
/// `Household` < `Owner`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Trust {
    /// Nobody the box knows.
    Unknown,
    /// A known contact.
    Known,
    /// A member of the household.
    Household,
    /// The owner.
    Owner,
}

impl Trust {
    /// Parse `owner`, `household`, `known` or `unknown`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "owner" => Some(Self::Owner),
            "household" => Some(Self::Household),
            "known" => Some(Self::Known),
            "unknown" => Some(Self::Unknown),
            _ => None,
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Household => "household",
            Self::Known => "known",
            Self::Unknown => "unknown",
        }
    }
}
