//! The `[calendar]` section: the subscription feed token, waking hours for free-slot answers
//! and the default length of an appointment (raw form, defaults and resolution).

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// `[calendar]`: appointments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCalendar {
    /// Read-only token of `GET /calendar.ics?token=…`; empty: generated on first start into
    /// `<data_dir>/calendar-feed-token`.
    pub feed_token: String,
    /// Start of the waking day for "when am I free" answers (`HH:MM`).
    pub day_start: String,
    /// End of the waking day (`HH:MM`).
    pub day_end: String,
    /// Shortest gap reported as free, in minutes.
    pub min_free_minutes: u64,
    /// Length of an appointment booked without an end or a duration, in minutes.
    pub default_duration_minutes: u64,
}

impl Default for RawCalendar {
    fn default() -> Self {
        Self {
            feed_token: String::new(),
            day_start: "08:00".into(),
            day_end: "20:00".into(),
            min_free_minutes: 30,
            default_duration_minutes: 60,
        }
    }
}

/// Resolved `[calendar]`.
#[derive(Debug, Clone)]
pub struct CalendarConfig {
    /// Configured feed token; `None`: use or create `<data_dir>/calendar-feed-token`.
    pub feed_token: Option<Secret>,
    /// Waking day start.
    pub day_start: jiff::civil::Time,
    /// Waking day end.
    pub day_end: jiff::civil::Time,
    /// Shortest free gap.
    pub min_free: jiff::SignedDuration,
    /// Default appointment length.
    pub default_duration: jiff::SignedDuration,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        match resolve_calendar(RawCalendar::default()) {
            Ok(c) => c,
            Err(_) => Self {
                feed_token: None,
                day_start: jiff::civil::time(8, 0, 0, 0),
                day_end: jiff::civil::time(20, 0, 0, 0),
                min_free: jiff::SignedDuration::from_mins(30),
                default_duration: jiff::SignedDuration::from_mins(60),
            },
        }
    }
}

fn key_err(key: &str, message: String) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        message,
    }
}

fn hhmm(key: &str, v: &str) -> Result<jiff::civil::Time, ConfigError> {
    let bad = || {
        key_err(
            key,
            format!("expected a time of day like \"08:00\"; got {v:?}"),
        )
    };
    let (h, m) = v.trim().split_once(':').ok_or_else(bad)?;
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    jiff::civil::Time::new(h, m, 0, 0).map_err(|_| bad())
}

/// Resolve `[calendar]`.
pub fn resolve_calendar(raw: RawCalendar) -> Result<CalendarConfig, ConfigError> {
    let feed_token = match raw.feed_token.trim() {
        "" => None,
        t if t.len() < 16 => {
            return Err(key_err(
                "calendar.feed_token",
                "expected at least 16 characters (or leave it empty to generate one)".into(),
            ))
        }
        t => Some(Secret::new(t)),
    };
    let day_start = hhmm("calendar.day_start", &raw.day_start)?;
    let day_end = hhmm("calendar.day_end", &raw.day_end)?;
    if day_end <= day_start {
        return Err(key_err(
            "calendar.day_end",
            format!("must be after calendar.day_start ({day_start}); got {day_end}"),
        ));
    }
    let minutes = |key: &str, v: u64, lo: u64, hi: u64| {
        if (lo..=hi).contains(&v) {
            Ok(jiff::SignedDuration::from_mins(
                i64::try_from(v).unwrap_or(hi as i64),
            ))
        } else {
            Err(key_err(
                key,
                format!("expected a number from {lo} to {hi}; got {v}"),
            ))
        }
    };
    Ok(CalendarConfig {
        feed_token,
        day_start,
        day_end,
        min_free: minutes("calendar.min_free_minutes", raw.min_free_minutes, 5, 720)?,
        default_duration: minutes(
            "calendar.default_duration_minutes",
            raw.default_duration_minutes,
            5,
            1440,
        )?,
    })
}
