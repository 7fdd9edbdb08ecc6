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
    /// Alarm of an appointment booked in a conversation without one, in minutes before its
    /// start (0: none).
    pub default_alarm_minutes: u64,
    /// Channel that alarms of appointments not booked in a conversation go to.
    pub alarm_channel: String,
    /// Address on that channel.
    pub alarm_address: String,
}

impl Default for RawCalendar {
    fn default() -> Self {
        Self {
            feed_token: String::new(),
            day_start: "08:00".into(),
            day_end: "20:00".into(),
            min_free_minutes: 30,
            default_duration_minutes: 60,
            default_alarm_minutes: 15,
            alarm_channel: "local".into(),
            alarm_address: "speaker".into(),
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
    /// Alarm added to appointments booked in a conversation, minutes before (None: none).
    pub default_alarm: Option<i64>,
    /// Where alarms of appointments not booked in a conversation go: channel and address.
    pub alarm_target: (String, String),
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
                default_alarm: Some(15),
                alarm_target: ("local".into(), "speaker".into()),
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
        default_alarm: match raw.default_alarm_minutes {
            0 => None,
            m @ 1..=40_320 => Some(i64::try_from(m).unwrap_or(15)),
            m => {
                return Err(key_err(
                    "calendar.default_alarm_minutes",
                    format!("expected 0 (no alarm) to 40320; got {m}"),
                ))
            }
        },
        alarm_target: {
            let (ch, addr) = (raw.alarm_channel.trim(), raw.alarm_address.trim());
            if ch.is_empty() {
                return Err(key_err(
                    "calendar.alarm_channel",
                    "must name a channel (e.g. \"local\" for the speaker)".into(),
                ));
            }
            if addr.is_empty() {
                return Err(key_err(
                    "calendar.alarm_address",
                    "must not be empty (e.g. \"speaker\", or a phone number for \"sms\")".into(),
                ));
            }
            (ch.to_owned(), addr.to_owned())
        },
    })
}
