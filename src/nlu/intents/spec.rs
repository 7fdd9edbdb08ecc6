//! Language-independent model of a spoken time expression and its resolution against "now".
//!
//! A language grammar (e.g. `en`) only recognises words and fills a [`Spec`]; everything about
//! calendars lives here, so every language resolves "tomorrow at 5" the same way. All results
//! are in the time zone of `now`, converted from civil (wall-clock) time with jiff's
//! `compatible` disambiguation: a wall-clock time skipped by a DST jump resolves to the
//! equivalent time after the jump, a repeated one to its first occurrence.
//!
//! Defaults (documented behaviour, tested in `tests/nlu_intents.rs`):
//! - day parts: morning 09:00, afternoon 15:00, evening 19:00, night/"tonight" 20:00;
//!   a day without a time ("on Friday") is at [`DEFAULT_HOUR`] (09:00).
//! - a bare hour without am/pm and without a day ("at 5") is its next occurrence, which is
//!   always within 12 hours (at 14:00, "at 5" is 17:00; at 18:00 it is 05:00 tomorrow).
//!   With "today" it is whichever reading is still ahead today. With any other day
//!   ("tomorrow at 5", "on Friday at 10", "every day at 7") daytime is assumed: 7–11 are
//!   morning hours, 12 is noon, 1–6 are afternoon/evening hours.
//! - a weekday name ("on Friday", "Friday") is the next such day, today included only if the
//!   time on it is still in the future; "next Friday" is the coming Friday that is not today
//!   (said on Wednesday, the Friday two days later), "this Friday" is the same as "Friday".
//! - a day of the month ("on the 4th") or a date ("December 24th") is its next occurrence
//!   (today included if the time is still ahead).
//! - "midnight" is the end of the day it is said for: "tomorrow at midnight" is 00:00 of the
//!   day after tomorrow; alone it is the coming 00:00.
//! - explicit "today"/"tonight"/"this evening" stay on today even if the time has passed
//!   (the caller sees `at < now`); "today" without a time after 09:00 has no time (`None`).
//! - recurrences start at the first occurrence after now; "every 2 hours" starts at
//!   now + 2 hours.
//! - ranges: a day is 00:00–24:00; morning 06–12, afternoon 12–18, evening and night 18–24;
//!   "this week" is today until next Monday, "next week" Monday to Monday, "the weekend"
//!   the coming (or current) Saturday–Monday; a clock time is a one-hour range.

use jiff::civil::{Date, Time, Weekday};
use jiff::{SignedDuration, Span, Zoned};

use super::time::{Recurrence, When};
use super::Range;

/// Hour of a day that is given without a time.
pub const DEFAULT_HOUR: i8 = 9;

/// A part of the day ("morning", "tonight").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// 09:00 as a time, 06–12 as a range.
    Morning,
    /// 15:00 as a time, 12–18 as a range.
    Afternoon,
    /// 19:00 as a time, 18–24 as a range.
    Evening,
    /// "tonight", "at night": 20:00 as a time, 18–24 as a range.
    Night,
}

impl Part {
    /// The time of day this part stands for when no clock time is given.
    pub fn default_hour(self) -> i8 {
        match self {
            Part::Morning => 9,
            Part::Afternoon => 15,
            Part::Evening => 19,
            Part::Night => 20,
        }
    }

    /// Start and end hour (end exclusive, 24 = end of day) of the part as a range.
    pub fn window(self) -> (i8, i8) {
        match self {
            Part::Morning => (6, 12),
            Part::Afternoon => (12, 18),
            Part::Evening | Part::Night => (18, 24),
        }
    }
}

/// Before or after noon, when said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meridiem {
    /// a.m.
    Am,
    /// p.m.
    Pm,
}

/// A clock time as said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// "5", "5pm", "17:30", "half past five".
    Hm {
        /// 0..=23 (1..=12 when `meridiem` is set).
        hour: i8,
        /// 0..=59.
        minute: i8,
        /// am/pm if said.
        meridiem: Option<Meridiem>,
    },
    /// "noon".
    Noon,
    /// "midnight" (the end of the day).
    Midnight,
}

/// A day as said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Day {
    /// "today", "tonight", "this evening".
    Today,
    /// "tomorrow" (1), "the day after tomorrow" (2).
    Offset(i32),
    /// "Friday", "this Friday" (`next: false`), "next Friday" (`next: true`).
    Weekday {
        /// The day.
        day: Weekday,
        /// Said with "next": today is never meant.
        next: bool,
    },
    /// "the 4th" (`month: None`), "December 24th".
    MonthDay {
        /// 1..=12 if said.
        month: Option<i8>,
        /// 1..=31.
        day: i8,
    },
}

/// A week-sized range ("this week").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Week {
    /// Today until next Monday.
    This,
    /// Next Monday until the Monday after.
    Next,
    /// The coming (or current) Saturday and Sunday.
    Weekend,
}

/// A recurrence as said; resolved together with the rest of the [`Spec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rec {
    /// "every day", "daily", "every morning".
    Daily,
    /// "every Monday and Thursday"; empty = "every week" (today's weekday).
    Weekly(Vec<Weekday>),
    /// "every month", "on the 1st of every month"; `None` = the day comes from `Spec::day`
    /// or is today's day of the month.
    Monthly(Option<i8>),
    /// "every 2 hours".
    Every(SignedDuration),
}

/// A relative offset ("in 10 minutes", "in 2 days"): calendar days plus an exact duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rel {
    /// Calendar days (a day across a DST change keeps the wall-clock time).
    pub days: i64,
    /// Exact seconds.
    pub secs: i64,
}

/// Everything said about a time, before resolution.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spec {
    /// The day.
    pub day: Option<Day>,
    /// The clock time.
    pub clock: Option<Clock>,
    /// The part of the day.
    pub part: Option<Part>,
    /// A relative offset.
    pub rel: Option<Rel>,
    /// A recurrence.
    pub rec: Option<Rec>,
    /// A week-sized range (only meaningful for [`range`]).
    pub week: Option<Week>,
}

impl Spec {
    /// True if nothing was recognised.
    pub fn is_empty(&self) -> bool {
        *self == Spec::default()
    }

    /// Fill the fields not yet set from `other`; `false` (and no change) if both set a field.
    pub fn merge(&mut self, other: Spec) -> bool {
        let clash = (self.day.is_some() && other.day.is_some())
            || (self.clock.is_some() && other.clock.is_some())
            || (self.part.is_some() && other.part.is_some())
            || (self.rel.is_some() && other.rel.is_some())
            || (self.rec.is_some() && other.rec.is_some())
            || (self.week.is_some() && other.week.is_some());
        if clash {
            return false;
        }
        self.day = self.day.or(other.day);
        self.clock = self.clock.or(other.clock);
        self.part = self.part.or(other.part);
        self.rel = self.rel.or(other.rel);
        self.week = self.week.or(other.week);
        if self.rec.is_none() {
            self.rec = other.rec;
        }
        true
    }
}

/// A time of day before the day is known.
#[derive(Debug, Clone, Copy)]
enum Tod {
    /// Exactly this wall-clock time.
    Exact(Time),
    /// 1..=12 without am/pm.
    Ambiguous { hour: i8, minute: i8 },
    /// 00:00 of the following day.
    Midnight,
}

fn time(hour: i8, minute: i8) -> Option<Time> {
    Time::new(hour, minute, 0, 0).ok()
}

/// The time of day of a spec, from its clock and part.
fn tod(spec: &Spec) -> Option<Tod> {
    match spec.clock {
        Some(Clock::Noon) => time(12, 0).map(Tod::Exact),
        Some(Clock::Midnight) => Some(Tod::Midnight),
        Some(Clock::Hm {
            hour,
            minute,
            meridiem,
        }) => {
            let hour = match (meridiem, spec.part) {
                (Some(Meridiem::Am), _) => hour % 12,
                (Some(Meridiem::Pm), _) => hour % 12 + 12,
                (None, _) if hour == 0 || hour > 12 => hour,
                (None, Some(Part::Morning)) => hour % 12,
                (None, Some(Part::Night)) if hour == 12 => return Some(Tod::Midnight),
                (None, Some(_)) => hour % 12 + 12,
                (None, None) => return Some(Tod::Ambiguous { hour, minute }),
            };
            time(hour, minute).map(Tod::Exact)
        }
        None => spec
            .part
            .and_then(|p| time(p.default_hour(), 0))
            .map(Tod::Exact),
    }
}

/// `date` at wall-clock `t` in the zone of `now`.
fn at(date: Date, t: Time, now: &Zoned) -> Option<Zoned> {
    date.to_datetime(t).to_zoned(now.time_zone().clone()).ok()
}

fn add_days(date: Date, days: i64) -> Option<Date> {
    date.checked_add(Span::new().try_days(days).ok()?).ok()
}

/// The start (00:00, or the first instant if 00:00 does not exist) of `date` in `now`'s zone.
pub fn day_start(date: Date, now: &Zoned) -> Option<Zoned> {
    date.to_zoned(now.time_zone().clone()).ok()
}

/// Daytime reading of an hour said without am/pm for a day other than today.
fn daytime_hour(hour: i8) -> i8 {
    match hour {
        7..=11 => hour,
        12 => 12,
        _ => hour % 12 + 12,
    }
}

/// The time of day `tod` on `date`; `None` tod = [`DEFAULT_HOUR`].
fn on_date(date: Date, tod: Option<Tod>, now: &Zoned) -> Option<Zoned> {
    match tod {
        None => at(date, time(DEFAULT_HOUR, 0)?, now),
        Some(Tod::Exact(t)) => at(date, t, now),
        Some(Tod::Midnight) => at(add_days(date, 1)?, Time::midnight(), now),
        Some(Tod::Ambiguous { hour, minute }) => at(date, time(daytime_hour(hour), minute)?, now),
    }
}

/// The first of the candidate dates (in order) whose time is after now.
fn first_future(dates: impl Iterator<Item = Date>, tod: Option<Tod>, now: &Zoned) -> Option<Zoned> {
    dates.filter_map(|d| on_date(d, tod, now)).find(|z| z > now)
}

/// Dates from today on, one per day, `n` of them.
fn days_from_today(now: &Zoned, n: i64) -> impl Iterator<Item = Date> + '_ {
    (0..n).filter_map(move |k| add_days(now.date(), k))
}

/// Dates carrying `day` of the month, from this month on (skipping months too short).
fn month_days(now: &Zoned, day: i8) -> impl Iterator<Item = Date> + '_ {
    let first = now.date().first_of_month();
    (0..=24).filter_map(move |k| {
        let m = first.checked_add(Span::new().months(k)).ok()?;
        Date::new(m.year(), m.month(), day).ok()
    })
}

/// Dates `month`/`day` from this year on (several years for February 29th).
fn year_days(now: &Zoned, month: i8, day: i8) -> impl Iterator<Item = Date> + '_ {
    let year = now.year();
    (0..=8).filter_map(move |k| Date::new(year.checked_add(k)?, month, day).ok())
}

/// Days from today until the next `wd` (0 = today).
fn days_until(now: &Zoned, wd: Weekday) -> i64 {
    i64::from(wd.since(now.weekday()))
}

/// Resolve a one-off or recurring time. `None`: the spec names no point in time.
pub fn when(spec: &Spec, now: &Zoned) -> Option<When> {
    if spec.rec.is_some() {
        return recurring(spec, now);
    }
    let tod = tod(spec);
    if let Some(rel) = spec.rel {
        let base = now
            .checked_add(Span::new().try_days(rel.days).ok()?)
            .ok()?
            .checked_add(SignedDuration::from_secs(rel.secs))
            .ok()?;
        let at = match (spec.clock.is_some() || spec.part.is_some(), tod) {
            (true, Some(tod)) => on_date(base.date(), Some(tod), now)?,
            _ => base,
        };
        return Some(When::At { at });
    }
    let at = match spec.day {
        None => {
            let tod = tod?;
            if let Tod::Ambiguous { hour, minute } = tod {
                // The next occurrence of either reading: within 12 hours.
                let today = now.date();
                let tomorrow = add_days(today, 1)?;
                [
                    (today, hour % 12),
                    (today, hour % 12 + 12),
                    (tomorrow, hour % 12),
                ]
                .into_iter()
                .filter_map(|(d, h)| at(d, time(h, minute)?, now))
                .find(|z| z > now)?
            } else {
                first_future(days_from_today(now, 2), Some(tod), now)?
            }
        }
        Some(Day::Today) => {
            let z = match tod {
                // "today at 5": whichever of 05:00 and 17:00 is still ahead (else 17:00).
                Some(Tod::Ambiguous { hour, minute }) => {
                    let am = at(now.date(), time(hour % 12, minute)?, now)?;
                    if am > *now {
                        am
                    } else {
                        at(now.date(), time(hour % 12 + 12, minute)?, now)?
                    }
                }
                _ => on_date(now.date(), tod, now)?,
            };
            if tod.is_none() && z <= *now {
                return None;
            }
            z
        }
        Some(Day::Offset(n)) => on_date(add_days(now.date(), i64::from(n))?, tod, now)?,
        Some(Day::Weekday { day, next }) => {
            let k = days_until(now, day);
            if next && k == 0 {
                on_date(add_days(now.date(), 7)?, tod, now)?
            } else {
                let dates = [k, k + 7]
                    .into_iter()
                    .filter_map(|k| add_days(now.date(), k));
                first_future(dates, tod, now)?
            }
        }
        Some(Day::MonthDay { month: None, day }) => first_future(month_days(now, day), tod, now)?,
        Some(Day::MonthDay {
            month: Some(m),
            day,
        }) => first_future(year_days(now, m, day), tod, now)?,
    };
    Some(When::At { at })
}

fn recurring(spec: &Spec, now: &Zoned) -> Option<When> {
    let rec = spec.rec.clone()?;
    // A recurrence's hour said without am/pm is read as daytime ("every day at 7" = 07:00).
    let tod = match tod(spec) {
        Some(Tod::Ambiguous { hour, minute }) => {
            Some(Tod::Exact(time(daytime_hour(hour), minute)?))
        }
        other => other,
    };
    let (rule, first) = match rec {
        Rec::Every(interval) => {
            if interval <= SignedDuration::ZERO {
                return None;
            }
            (
                Recurrence::Every { interval },
                now.checked_add(interval).ok()?,
            )
        }
        Rec::Daily => (
            Recurrence::Daily,
            first_future(days_from_today(now, 2), tod, now)?,
        ),
        Rec::Weekly(mut days) => {
            if let Some(Day::Weekday { day, .. }) = spec.day {
                if !days.contains(&day) {
                    days.push(day);
                }
            }
            if days.is_empty() {
                days.push(now.weekday());
            }
            days.sort_by_key(|d| d.to_monday_zero_offset());
            let first = first_future(
                days_from_today(now, 8).filter(|d| days.contains(&d.weekday())),
                tod,
                now,
            )?;
            (Recurrence::Weekly { days }, first)
        }
        Rec::Monthly(day) => {
            let day = match (day, spec.day) {
                (Some(d), _) => d,
                (None, Some(Day::MonthDay { month: None, day })) => day,
                (None, _) => now.day(),
            };
            (
                Recurrence::Monthly { day },
                first_future(month_days(now, day), tod, now)?,
            )
        }
    };
    Some(When::Recurring { rule, first })
}

/// The calendar day a spec names, for date questions ("what day is next Friday").
/// A weekday includes today ("what's the date on Wednesday" said on a Wednesday is today),
/// "next Friday" does not. `None`: no day was said.
pub fn date(spec: &Spec, now: &Zoned) -> Option<Date> {
    let today = now.date();
    if let Some(rel) = spec.rel {
        let z = now
            .checked_add(Span::new().try_days(rel.days).ok()?)
            .ok()?
            .checked_add(SignedDuration::from_secs(rel.secs))
            .ok()?;
        return Some(z.date());
    }
    match spec.day? {
        Day::Today => Some(today),
        Day::Offset(n) => add_days(today, i64::from(n)),
        Day::Weekday { day, next } => {
            let k = days_until(now, day);
            add_days(today, if next && k == 0 { 7 } else { k })
        }
        Day::MonthDay { month: None, day } => month_days(now, day).find(|d| *d >= today),
        Day::MonthDay {
            month: Some(m),
            day,
        } => year_days(now, m, day).find(|d| *d >= today),
    }
}

/// A span of time for calendar questions ("tomorrow", "Thursday afternoon", "this week").
/// `label` is how it was said, normalised. `None`: the spec names no span.
pub fn range(spec: &Spec, now: &Zoned, label: String) -> Option<Range> {
    let today = now.date();
    let days = |from: Date, n: i64| -> Option<(Zoned, Zoned)> {
        Some((day_start(from, now)?, day_start(add_days(from, n)?, now)?))
    };
    let (start, end) = if let Some(week) = spec.week {
        let monday = add_days(
            today,
            7 - i64::from(today.weekday().to_monday_zero_offset()),
        )?;
        match week {
            Week::This => days(today, 0).map(|(s, _)| s).zip(day_start(monday, now))?,
            Week::Next => days(monday, 7)?,
            Week::Weekend => {
                let sat = match today.weekday() {
                    Weekday::Saturday => today,
                    Weekday::Sunday => add_days(today, -1)?,
                    wd => add_days(today, i64::from(Weekday::Saturday.since(wd)))?,
                };
                let start = if sat < today { today } else { sat };
                (day_start(start, now)?, day_start(add_days(sat, 2)?, now)?)
            }
        }
    } else if spec.rec.is_some() {
        return None;
    } else if spec.day.is_none()
        && spec.part.is_none()
        && (spec.clock.is_some() || spec.rel.is_some())
    {
        let start = when(spec, now)?.first().clone();
        let end = start.checked_add(SignedDuration::from_hours(1)).ok()?;
        (start, end)
    } else {
        let date = if spec.day.is_some() || spec.rel.is_some() {
            date(spec, now)?
        } else if spec.part.is_some() {
            today
        } else {
            return None;
        };
        match (spec.part, spec.clock) {
            (_, Some(_)) => {
                let start = on_date(date, tod(spec), now)?;
                let end = start.checked_add(SignedDuration::from_hours(1)).ok()?;
                (start, end)
            }
            (Some(part), None) => {
                let (from, to) = part.window();
                let start = at(date, time(from, 0)?, now)?;
                let end = if to == 24 {
                    day_start(add_days(date, 1)?, now)?
                } else {
                    at(date, time(to, 0)?, now)?
                };
                (start, end)
            }
            (None, None) => days(date, 1)?,
        }
    };
    Some(Range { start, end, label })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Zoned {
        "2026-11-25T14:00[Europe/Berlin]".parse().unwrap()
    }

    fn at_of(spec: Spec, now: &Zoned) -> String {
        when(&spec, now).unwrap().first().datetime().to_string()
    }

    #[test]
    fn bare_hour_picks_next_occurrence_within_12_hours() {
        let bare = |h| Spec {
            clock: Some(Clock::Hm {
                hour: h,
                minute: 0,
                meridiem: None,
            }),
            ..Spec::default()
        };
        assert_eq!(at_of(bare(5), &now()), "2026-11-25T17:00:00");
        assert_eq!(at_of(bare(3), &now()), "2026-11-25T15:00:00");
        assert_eq!(at_of(bare(2), &now()), "2026-11-26T02:00:00");
        assert_eq!(at_of(bare(12), &now()), "2026-11-26T00:00:00");
        let late: Zoned = "2026-11-25T18:00[Europe/Berlin]".parse().unwrap();
        assert_eq!(at_of(bare(5), &late), "2026-11-26T05:00:00");
    }

    #[test]
    fn weekday_today_is_kept_only_while_the_time_is_ahead() {
        let wed = |h| Spec {
            day: Some(Day::Weekday {
                day: Weekday::Wednesday,
                next: false,
            }),
            clock: Some(Clock::Hm {
                hour: h,
                minute: 0,
                meridiem: None,
            }),
            ..Spec::default()
        };
        assert_eq!(at_of(wed(17), &now()), "2026-11-25T17:00:00");
        assert_eq!(at_of(wed(10), &now()), "2026-12-02T10:00:00");
        let next = Spec {
            day: Some(Day::Weekday {
                day: Weekday::Wednesday,
                next: true,
            }),
            ..Spec::default()
        };
        assert_eq!(at_of(next, &now()), "2026-12-02T09:00:00");
    }

    #[test]
    fn day_of_month_in_the_past_moves_to_next_month_with_that_day() {
        let on = |d| Spec {
            day: Some(Day::MonthDay {
                month: None,
                day: d,
            }),
            ..Spec::default()
        };
        assert_eq!(at_of(on(4), &now()), "2026-12-04T09:00:00");
        assert_eq!(at_of(on(30), &now()), "2026-11-30T09:00:00");
        let jan31: Zoned = "2027-01-31T10:00[Europe/Berlin]".parse().unwrap();
        assert_eq!(at_of(on(31), &jan31), "2027-03-31T09:00:00");
    }

    #[test]
    fn midnight_is_the_end_of_the_named_day() {
        let spec = Spec {
            day: Some(Day::Offset(1)),
            clock: Some(Clock::Midnight),
            ..Spec::default()
        };
        assert_eq!(at_of(spec, &now()), "2026-11-27T00:00:00");
    }

    #[test]
    fn nonexistent_wall_clock_time_moves_past_the_dst_gap() {
        let now: Zoned = "2026-03-28T12:00[Europe/Berlin]".parse().unwrap();
        let spec = Spec {
            day: Some(Day::Offset(1)),
            clock: Some(Clock::Hm {
                hour: 2,
                minute: 30,
                meridiem: Some(Meridiem::Am),
            }),
            ..Spec::default()
        };
        let z = when(&spec, &now).unwrap().first().clone();
        assert_eq!(z.datetime().to_string(), "2026-03-29T03:30:00");
        assert_eq!(z.offset().seconds(), 7200);
    }

    #[test]
    fn one_calendar_day_later_keeps_the_wall_clock_time_across_dst() {
        let now: Zoned = "2026-03-28T10:00[Europe/Berlin]".parse().unwrap();
        let spec = Spec {
            rel: Some(Rel { days: 1, secs: 0 }),
            ..Spec::default()
        };
        assert_eq!(at_of(spec, &now), "2026-03-29T10:00:00");
    }

    #[test]
    fn weekend_range_on_a_sunday_is_the_rest_of_today() {
        let sun: Zoned = "2026-11-29T10:00[Europe/Berlin]".parse().unwrap();
        let spec = Spec {
            week: Some(Week::Weekend),
            ..Spec::default()
        };
        let r = range(&spec, &sun, "weekend".into()).unwrap();
        assert_eq!(r.start.datetime().to_string(), "2026-11-29T00:00:00");
        assert_eq!(r.end.datetime().to_string(), "2026-11-30T00:00:00");
    }
}
