//! Time expressions: one-off points in time and recurrences, resolved in the device time zone.

use serde::Serialize;

/// How often something repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "freq", rename_all = "snake_case")]
pub enum Recurrence {
    /// Every day at the time of `When::Recurring::first`.
    Daily,
    /// On these weekdays ("every Monday", "weekdays", "every Monday and Thursday").
    Weekly {
        /// The days.
        #[serde(serialize_with = "weekday_names")]
        days: Vec<jiff::civil::Weekday>,
    },
    /// On this day of the month ("on the 1st of every month").
    Monthly {
        /// 1..=31.
        day: i8,
    },
    /// Every N minutes/hours ("every 2 hours").
    Every {
        /// The interval.
        interval: jiff::SignedDuration,
    },
}

/// A resolved time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum When {
    /// Once, at this instant.
    At {
        /// The instant in the device time zone.
        at: jiff::Zoned,
    },
    /// Repeating; `first` is the first occurrence after now.
    Recurring {
        /// The rule.
        rule: Recurrence,
        /// First occurrence.
        first: jiff::Zoned,
    },
}

impl When {
    /// The next occurrence (for `At`, the instant).
    pub fn first(&self) -> &jiff::Zoned {
        match self {
            When::At { at } => at,
            When::Recurring { first, .. } => first,
        }
    }
}

fn weekday_names<S: serde::Serializer>(
    days: &[jiff::civil::Weekday],
    s: S,
) -> Result<S::Ok, S::Error> {
    use jiff::civil::Weekday;
    s.collect_seq(days.iter().map(|d| match d {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }))
}
