//! RFC 5545 recurrence rules (RRULE): parsing, formatting and expansion over a time window,
//! written on jiff (no chrono).
//!
//! Supported parts: FREQ (DAILY, WEEKLY, MONTHLY, YEARLY), INTERVAL, COUNT, UNTIL, BYDAY (with
//! ordinals such as `2MO` or `-1FR` for monthly and yearly rules), BYMONTHDAY (negative counts
//! from the month's end), BYMONTH, BYSETPOS and WKST. Other parts (BYHOUR, BYWEEKNO, …) are
//! refused with an error naming them, never silently ignored.
//!
//! Expansion follows the RFC: a candidate date that does not exist (the 31st of a short month,
//! February 29 outside leap years) is skipped, never clamped; every instance keeps the local
//! wall-clock time of DTSTART, so it moves across DST transitions; a local time inside a
//! spring-forward gap is pushed forward by the gap's length, and an ambiguous time in the
//! autumn fold takes its first (earlier) occurrence (jiff's "compatible" disambiguation).

use std::fmt;

use jiff::civil::{Date, DateTime, Weekday};
use jiff::{Span, Timestamp, Zoned};

/// Most recurrence periods (days, weeks, months or years) one expansion may visit: a rule
/// that produces nothing for a long time (`BYMONTH=2;BYMONTHDAY=30`) ends there.
pub const MAX_PERIODS: i64 = 200_000;

/// How often a rule repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freq {
    /// Every INTERVAL days.
    Daily,
    /// Every INTERVAL weeks.
    Weekly,
    /// Every INTERVAL months.
    Monthly,
    /// Every INTERVAL years.
    Yearly,
}

impl Freq {
    fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "DAILY",
            Self::Weekly => "WEEKLY",
            Self::Monthly => "MONTHLY",
            Self::Yearly => "YEARLY",
        }
    }
}

/// One BYDAY entry: a weekday, optionally the nth (negative: from the end) in the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByDay {
    /// `2` in `2MO`, `-1` in `-1FR`; `None` for every such weekday.
    pub nth: Option<i16>,
    /// The weekday.
    pub weekday: Weekday,
}

/// The end of a rule (inclusive), in the form it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// `UNTIL=20261231` (rules of all-day events).
    Date(Date),
    /// `UNTIL=20261231T235959Z`.
    Utc(Timestamp),
    /// `UNTIL=20261231T235959` (floating; compared with local time).
    Local(DateTime),
}

/// A parsed RRULE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRule {
    /// FREQ.
    pub freq: Freq,
    /// INTERVAL (≥ 1).
    pub interval: u32,
    /// COUNT: at most this many instances (DTSTART included).
    pub count: Option<u32>,
    /// UNTIL (inclusive).
    pub until: Option<Until>,
    /// BYDAY.
    pub by_day: Vec<ByDay>,
    /// BYMONTHDAY (1..=31 or -31..=-1).
    pub by_month_day: Vec<i8>,
    /// BYMONTH (1..=12).
    pub by_month: Vec<i8>,
    /// BYSETPOS (1..=366 or -366..=-1).
    pub by_set_pos: Vec<i16>,
    /// WKST (default Monday).
    pub wkst: Weekday,
}

/// Why an RRULE string was refused; the message names the part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RRULE part {part:?}: {message}")]
pub struct RRuleError {
    /// The offending part as written (`BYDAY=9XX`).
    pub part: String,
    /// What is wrong with it.
    pub message: String,
}

fn list(v: &str) -> Vec<&str> {
    v.split(',').map(str::trim).collect()
}

fn err(part: &str, message: impl Into<String>) -> RRuleError {
    RRuleError {
        part: part.to_owned(),
        message: message.into(),
    }
}

const DAYS: [(&str, Weekday); 7] = [
    ("MO", Weekday::Monday),
    ("TU", Weekday::Tuesday),
    ("WE", Weekday::Wednesday),
    ("TH", Weekday::Thursday),
    ("FR", Weekday::Friday),
    ("SA", Weekday::Saturday),
    ("SU", Weekday::Sunday),
];

fn weekday_of(code: &str) -> Option<Weekday> {
    DAYS.iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code))
        .map(|(_, d)| *d)
}

/// The two-letter RFC 5545 code of a weekday (`MO`).
pub fn weekday_code(d: Weekday) -> &'static str {
    DAYS.iter().find(|(_, w)| *w == d).map_or("MO", |(c, _)| c)
}

/// Parse `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ` (the forms of RFC 5545 DATE and
/// DATE-TIME values).
pub fn parse_until(s: &str) -> Option<Until> {
    let s = s.trim();
    let date = |d: &str| -> Option<Date> {
        if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Date::new(
            d[..4].parse().ok()?,
            d[4..6].parse().ok()?,
            d[6..8].parse().ok()?,
        )
        .ok()
    };
    if s.len() == 8 {
        return date(s).map(Until::Date);
    }
    let (d, rest) = s.split_once(['T', 't'])?;
    let d = date(d)?;
    let (t, utc) = match rest.strip_suffix(['Z', 'z']) {
        Some(t) => (t, true),
        None => (rest, false),
    };
    if t.len() != 6 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sec: i8 = t[4..6].parse().ok()?;
    let dt = d.to_datetime(
        jiff::civil::Time::new(t[..2].parse().ok()?, t[2..4].parse().ok()?, sec.min(59), 0).ok()?,
    );
    if utc {
        Some(Until::Utc(
            dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp(),
        ))
    } else {
        Some(Until::Local(dt))
    }
}

fn format_date(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

impl Until {
    /// The RFC 5545 text form.
    pub fn to_ics(&self) -> String {
        match self {
            Self::Date(d) => format_date(*d),
            Self::Utc(ts) => {
                let z = ts.to_zoned(jiff::tz::TimeZone::UTC);
                format!(
                    "{}T{:02}{:02}{:02}Z",
                    format_date(z.date()),
                    z.hour(),
                    z.minute(),
                    z.second()
                )
            }
            Self::Local(dt) => format!(
                "{}T{:02}{:02}{:02}",
                format_date(dt.date()),
                dt.hour(),
                dt.minute(),
                dt.second()
            ),
        }
    }

    /// Whether an instance starting at `z` is still within the rule.
    fn allows(&self, z: &Zoned) -> bool {
        match self {
            Self::Date(d) => z.date() <= *d,
            Self::Utc(ts) => z.timestamp() <= *ts,
            Self::Local(dt) => z.datetime() <= *dt,
        }
    }
}

impl std::str::FromStr for RRule {
    type Err = RRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s.trim();
        let body = body
            .strip_prefix("RRULE:")
            .or_else(|| body.strip_prefix("rrule:"))
            .unwrap_or(body);
        if body.is_empty() {
            return Err(err("", "the rule is empty; it needs at least FREQ"));
        }
        let mut freq = None;
        let mut rule = RRule {
            freq: Freq::Daily,
            interval: 1,
            count: None,
            until: None,
            by_day: Vec::new(),
            by_month_day: Vec::new(),
            by_month: Vec::new(),
            by_set_pos: Vec::new(),
            wkst: Weekday::Monday,
        };
        let mut seen: Vec<String> = Vec::new();
        for part in body.split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| err(part, "expected NAME=VALUE"))?;
            let key = k.trim().to_ascii_uppercase();
            let v = v.trim();
            if seen.contains(&key) {
                return Err(err(part, format!("{key} is given twice")));
            }
            seen.push(key.clone());
            match key.as_str() {
                "FREQ" => {
                    freq = Some(match v.to_ascii_uppercase().as_str() {
                        "DAILY" => Freq::Daily,
                        "WEEKLY" => Freq::Weekly,
                        "MONTHLY" => Freq::Monthly,
                        "YEARLY" => Freq::Yearly,
                        "SECONDLY" | "MINUTELY" | "HOURLY" => {
                            return Err(err(
                                part,
                                "only DAILY, WEEKLY, MONTHLY and YEARLY rules are supported",
                            ))
                        }
                        _ => {
                            return Err(err(part, "FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY"))
                        }
                    })
                }
                "INTERVAL" => {
                    rule.interval = v
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| {
                            err(part, "INTERVAL must be a whole number from 1 to 10000")
                        })?
                }
                "COUNT" => {
                    rule.count = Some(
                        v.parse::<u32>()
                            .ok()
                            .filter(|n| (1..=100_000).contains(n))
                            .ok_or_else(|| {
                                err(part, "COUNT must be a whole number from 1 to 100000")
                            })?,
                    )
                }
                "UNTIL" => {
                    rule.until = Some(parse_until(v).ok_or_else(|| {
                        err(
                            part,
                            "UNTIL must be a date (20261231) or a date-time (20261231T235959Z)",
                        )
                    })?)
                }
                "BYDAY" => {
                    for item in list(v) {
                        let bad = || {
                            err(
                                part,
                                format!("{item:?} is not a weekday like MO, 2MO or -1FR"),
                            )
                        };
                        if item.len() < 2 {
                            return Err(bad());
                        }
                        let (num, code) = item.split_at(item.len() - 2);
                        let weekday = weekday_of(code).ok_or_else(bad)?;
                        let nth = match num {
                            "" => None,
                            n => Some(
                                n.trim_start_matches('+')
                                    .parse::<i16>()
                                    .ok()
                                    .filter(|n| *n != 0 && (-53..=53).contains(n))
                                    .ok_or_else(bad)?,
                            ),
                        };
                        rule.by_day.push(ByDay { nth, weekday });
                    }
                }
                "BYMONTHDAY" => {
                    for item in list(v) {
                        rule.by_month_day.push(
                            item.trim_start_matches('+')
                                .parse::<i8>()
                                .ok()
                                .filter(|n| *n != 0 && (-31..=31).contains(n))
                                .ok_or_else(|| err(part, format!("{item:?} is not a day of the month (1 to 31 or -31 to -1)")))?,
                        );
                    }
                }
                "BYMONTH" => {
                    for item in list(v) {
                        rule.by_month.push(
                            item.parse::<i8>()
                                .ok()
                                .filter(|n| (1..=12).contains(n))
                                .ok_or_else(|| {
                                    err(part, format!("{item:?} is not a month (1 to 12)"))
                                })?,
                        );
                    }
                }
                "BYSETPOS" => {
                    for item in list(v) {
                        rule.by_set_pos.push(
                            item.trim_start_matches('+')
                                .parse::<i16>()
                                .ok()
                                .filter(|n| *n != 0 && (-366..=366).contains(n))
                                .ok_or_else(|| err(part, format!("{item:?} is not a set position (1 to 366 or -366 to -1)")))?,
                        );
                    }
                }
                "WKST" => {
                    rule.wkst = weekday_of(v)
                        .ok_or_else(|| err(part, "WKST must be a weekday code like MO or SU"))?
                }
                "BYSECOND" | "BYMINUTE" | "BYHOUR" | "BYYEARDAY" | "BYWEEKNO" => {
                    return Err(err(
                        part,
                        format!("{key} is not supported (instances keep the time of DTSTART)"),
                    ))
                }
                _ => return Err(err(part, format!("{key} is not an RRULE part"))),
            }
        }
        rule.freq = freq.ok_or_else(|| err(body, "FREQ is missing"))?;
        if rule.count.is_some() && rule.until.is_some() {
            return Err(err(body, "COUNT and UNTIL must not both be given"));
        }
        if rule.by_day.iter().any(|d| d.nth.is_some())
            && !matches!(rule.freq, Freq::Monthly | Freq::Yearly)
        {
            return Err(err(
                "BYDAY",
                "numbered weekdays (2MO, -1FR) need FREQ=MONTHLY or FREQ=YEARLY",
            ));
        }
        if !rule.by_month_day.is_empty() && rule.freq == Freq::Weekly {
            return Err(err(
                "BYMONTHDAY",
                "BYMONTHDAY cannot be used with FREQ=WEEKLY",
            ));
        }
        Ok(rule)
    }
}

impl fmt::Display for RRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FREQ={}", self.freq.as_str())?;
        if self.interval != 1 {
            write!(f, ";INTERVAL={}", self.interval)?;
        }
        if let Some(c) = self.count {
            write!(f, ";COUNT={c}")?;
        }
        if let Some(u) = &self.until {
            write!(f, ";UNTIL={}", u.to_ics())?;
        }
        let join = |v: Vec<String>| v.join(",");
        if !self.by_month.is_empty() {
            write!(
                f,
                ";BYMONTH={}",
                join(self.by_month.iter().map(ToString::to_string).collect())
            )?;
        }
        if !self.by_month_day.is_empty() {
            write!(
                f,
                ";BYMONTHDAY={}",
                join(self.by_month_day.iter().map(ToString::to_string).collect())
            )?;
        }
        if !self.by_day.is_empty() {
            let days = self
                .by_day
                .iter()
                .map(|d| match d.nth {
                    Some(n) => format!("{n}{}", weekday_code(d.weekday)),
                    None => weekday_code(d.weekday).to_owned(),
                })
                .collect();
            write!(f, ";BYDAY={}", join(days))?;
        }
        if !self.by_set_pos.is_empty() {
            write!(
                f,
                ";BYSETPOS={}",
                join(self.by_set_pos.iter().map(ToString::to_string).collect())
            )?;
        }
        if self.wkst != Weekday::Monday {
            write!(f, ";WKST={}", weekday_code(self.wkst))?;
        }
        Ok(())
    }
}

fn add_days(d: Date, n: i64) -> Option<Date> {
    d.checked_add(Span::new().try_days(n).ok()?).ok()
}

fn add_months(d: Date, n: i64) -> Option<Date> {
    d.checked_add(Span::new().try_months(n).ok()?).ok()
}

fn days_between(a: Date, b: Date) -> i64 {
    i64::from((b - a).get_days())
}

/// The first day (on `wkst`) of the week containing `d`.
fn week_start(d: Date, wkst: Weekday) -> Option<Date> {
    let back = i64::from(d.weekday().since(wkst));
    add_days(d, -back)
}

/// Days of `[first, last]` that fall on `wd`, in order.
fn weekdays_in(first: Date, last: Date, wd: Weekday) -> Vec<Date> {
    let mut out = Vec::new();
    let offset = i64::from(wd.since(first.weekday()));
    let mut d = add_days(first, offset);
    while let Some(x) = d {
        if x > last {
            break;
        }
        out.push(x);
        d = add_days(x, 7);
    }
    out
}

/// BYDAY entries resolved within `[first, last]` (a month or a year).
fn by_day_in(first: Date, last: Date, by_day: &[ByDay]) -> Vec<Date> {
    let mut out = Vec::new();
    for bd in by_day {
        let all = weekdays_in(first, last, bd.weekday);
        match bd.nth {
            None => out.extend(all),
            Some(n) if n > 0 => {
                if let Some(d) = all.get(usize::try_from(n - 1).unwrap_or(usize::MAX)) {
                    out.push(*d);
                }
            }
            Some(n) => {
                let back = usize::try_from(-n).unwrap_or(usize::MAX);
                if back <= all.len() {
                    out.push(all[all.len() - back]);
                }
            }
        }
    }
    out
}

/// BYMONTHDAY entries that exist in the month of `first` (invalid days skipped).
fn month_days(first: Date, days: &[i8]) -> Vec<Date> {
    let n = first.days_in_month();
    days.iter()
        .filter_map(|&d| {
            let day = if d > 0 { d } else { n + 1 + d };
            if (1..=n).contains(&day) {
                first.with().day(day).build().ok()
            } else {
                None
            }
        })
        .collect()
}

impl RRule {
    /// Candidate dates of a monthly period starting at `first` (the 1st of a month).
    fn month_candidates(&self, first: Date, dtstart: Date) -> Vec<Date> {
        let last = first.last_of_month();
        match (self.by_month_day.is_empty(), self.by_day.is_empty()) {
            (true, true) => month_days(first, &[dtstart.day()]),
            (false, true) => month_days(first, &self.by_month_day),
            (true, false) => by_day_in(first, last, &self.by_day),
            (false, false) => {
                let days = by_day_in(first, last, &self.by_day);
                month_days(first, &self.by_month_day)
                    .into_iter()
                    .filter(|d| days.contains(d))
                    .collect()
            }
        }
    }

    /// The candidate dates of period `k` (0 = the period holding DTSTART), sorted, with
    /// BYSETPOS applied.
    fn period(&self, k: i64, dtstart: Date) -> Option<Vec<Date>> {
        let step = k.checked_mul(i64::from(self.interval))?;
        let mut c: Vec<Date> = match self.freq {
            Freq::Daily => {
                let d = add_days(dtstart, step)?;
                let ok = (self.by_month.is_empty() || self.by_month.contains(&d.month()))
                    && (self.by_month_day.is_empty()
                        || month_days(d.first_of_month(), &self.by_month_day).contains(&d))
                    && (self.by_day.is_empty()
                        || self.by_day.iter().any(|b| b.weekday == d.weekday()));
                if ok {
                    vec![d]
                } else {
                    Vec::new()
                }
            }
            Freq::Weekly => {
                let ws = add_days(week_start(dtstart, self.wkst)?, step.checked_mul(7)?)?;
                let wanted: Vec<Weekday> = if self.by_day.is_empty() {
                    vec![dtstart.weekday()]
                } else {
                    self.by_day.iter().map(|b| b.weekday).collect()
                };
                (0..7)
                    .filter_map(|i| add_days(ws, i))
                    .filter(|d| wanted.contains(&d.weekday()))
                    .filter(|d| self.by_month.is_empty() || self.by_month.contains(&d.month()))
                    .collect()
            }
            Freq::Monthly => {
                let first = add_months(dtstart.first_of_month(), step)?;
                if !self.by_month.is_empty() && !self.by_month.contains(&first.month()) {
                    Vec::new()
                } else {
                    self.month_candidates(first, dtstart)
                }
            }
            Freq::Yearly => {
                let year = i64::from(dtstart.year()).checked_add(step)?;
                let year = i16::try_from(year).ok()?;
                let jan1 = Date::new(year, 1, 1).ok()?;
                if !self.by_month.is_empty() {
                    self.by_month
                        .iter()
                        .filter_map(|&m| Date::new(year, m, 1).ok())
                        .flat_map(|first| self.month_candidates(first, dtstart))
                        .collect()
                } else if !self.by_month_day.is_empty() {
                    (1..=12)
                        .filter_map(|m| Date::new(year, m, 1).ok())
                        .flat_map(|first| {
                            let days = month_days(first, &self.by_month_day);
                            if self.by_day.is_empty() {
                                days
                            } else {
                                let wd = by_day_in(first, first.last_of_month(), &self.by_day);
                                days.into_iter().filter(|d| wd.contains(d)).collect()
                            }
                        })
                        .collect()
                } else if !self.by_day.is_empty() {
                    let last = Date::new(year, 12, 31).ok()?;
                    by_day_in(jan1, last, &self.by_day)
                } else {
                    // Same month and day as DTSTART; February 29 only in leap years.
                    Date::new(year, dtstart.month(), dtstart.day())
                        .ok()
                        .into_iter()
                        .collect()
                }
            }
        };
        c.sort_unstable();
        c.dedup();
        if !self.by_set_pos.is_empty() {
            let n = c.len();
            let mut picked: Vec<Date> = self
                .by_set_pos
                .iter()
                .filter_map(|&p| {
                    let i = if p > 0 {
                        usize::try_from(p - 1).ok()?
                    } else {
                        n.checked_sub(usize::try_from(-p).ok()?)?
                    };
                    c.get(i).copied()
                })
                .collect();
            picked.sort_unstable();
            picked.dedup();
            c = picked;
        }
        Some(c)
    }

    /// The first period index worth visiting for instances starting at or after `from`
    /// (0 when the rule counts instances, which must be counted from DTSTART).
    fn first_period(&self, dtstart: Date, from: Date) -> i64 {
        if self.count.is_some() || from <= dtstart {
            return 0;
        }
        let n = i64::from(self.interval);
        let raw = match self.freq {
            Freq::Daily => days_between(dtstart, from) / n,
            Freq::Weekly => days_between(dtstart, from) / 7 / n,
            Freq::Monthly => {
                (i64::from(from.year()) * 12 + i64::from(from.month())
                    - i64::from(dtstart.year()) * 12
                    - i64::from(dtstart.month()))
                    / n
            }
            Freq::Yearly => (i64::from(from.year()) - i64::from(dtstart.year())) / n,
        };
        (raw - 1).max(0)
    }

    /// The instances starting in `[from, to)`, in order, at most `limit`; `dtstart` is the
    /// first instance (RFC 5545: it counts towards COUNT). Instances in `exdates` (compared
    /// as instants) are left out but still count.
    pub fn expand(
        &self,
        dtstart: &Zoned,
        exdates: &[Timestamp],
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Vec<Zoned> {
        let mut out = Vec::new();
        if from >= to || limit == 0 {
            return out;
        }
        let tz = dtstart.time_zone().clone();
        let time = dtstart.time();
        let start_date = dtstart.date();
        let from_date = from.to_zoned(tz.clone()).date();
        let mut produced: u32 = 0;
        let mut k = self.first_period(start_date, from_date);
        let mut visited = 0;
        // DTSTART is always the first instance, even when it does not match the rule.
        let mut first = true;
        while visited < MAX_PERIODS {
            visited += 1;
            let Some(dates) = self.period(k, start_date) else {
                break;
            };
            k += 1;
            let mut candidates: Vec<Zoned> = Vec::with_capacity(dates.len() + 1);
            if first {
                candidates.push(dtstart.clone());
                first = false;
            }
            for d in dates {
                if d < start_date {
                    continue;
                }
                let Ok(z) = DateTime::from_parts(d, time).to_zoned(tz.clone()) else {
                    continue;
                };
                if z.timestamp() <= dtstart.timestamp() {
                    continue;
                }
                candidates.push(z);
            }
            for z in candidates {
                if let Some(u) = &self.until {
                    if !u.allows(&z) && z.timestamp() != dtstart.timestamp() {
                        return out;
                    }
                }
                if let Some(c) = self.count {
                    if produced >= c {
                        return out;
                    }
                }
                produced = produced.saturating_add(1);
                if z.timestamp() >= to {
                    return out;
                }
                if z.timestamp() >= from && !exdates.contains(&z.timestamp()) {
                    out.push(z);
                    if out.len() >= limit {
                        return out;
                    }
                }
            }
        }
        out
    }

    /// The start of the last instance, or `None` when the rule never ends (or ends beyond
    /// the work cap).
    pub fn last_start(&self, dtstart: &Zoned) -> Option<Zoned> {
        if self.count.is_none() && self.until.is_none() {
            return None;
        }
        let end = Timestamp::MAX;
        let all = self.expand(dtstart, &[], dtstart.timestamp(), end, 100_001);
        if all.len() > 100_000 {
            return None;
        }
        all.last().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> Zoned {
        s.parse().expect("zoned")
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    /// (rule, DTSTART, window from, window to, expected instances as RFC 3339 with offset).
    #[allow(clippy::type_complexity)]
    const TABLE: &[(&str, &str, &str, &str, &[&str])] = &[
        // Daily at 08:00 across the Berlin spring-forward: wall clock kept, offset changes.
        (
            "FREQ=DAILY;COUNT=3",
            "2026-03-28T08:00[Europe/Berlin]",
            "2026-03-01T00:00Z",
            "2026-04-30T00:00Z",
            &[
                "2026-03-28T08:00:00+01:00",
                "2026-03-29T08:00:00+02:00",
                "2026-03-30T08:00:00+02:00",
            ],
        ),
        // 02:30 does not exist on 2026-03-29 in Berlin: moved forward by the gap (03:30 CEST).
        (
            "FREQ=DAILY;COUNT=3",
            "2026-03-28T02:30[Europe/Berlin]",
            "2026-03-01T00:00Z",
            "2026-04-30T00:00Z",
            &[
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:30:00+02:00",
                "2026-03-30T02:30:00+02:00",
            ],
        ),
        // 02:30 happens twice on 2026-10-25 in Berlin: the first (CEST) one.
        (
            "FREQ=DAILY;COUNT=2",
            "2026-10-24T02:30[Europe/Berlin]",
            "2026-10-01T00:00Z",
            "2026-11-30T00:00Z",
            &["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00"],
        ),
        // New York: weekly on Sunday 02:30 over the March gap and the November fold.
        (
            "FREQ=WEEKLY;COUNT=3",
            "2026-03-01T02:30[America/New_York]",
            "2026-01-01T00:00Z",
            "2026-12-31T00:00Z",
            &[
                "2026-03-01T02:30:00-05:00",
                "2026-03-08T03:30:00-04:00",
                "2026-03-15T02:30:00-04:00",
            ],
        ),
        (
            "FREQ=WEEKLY;BYDAY=SU;UNTIL=20261108T120000Z",
            "2026-10-25T01:30[America/New_York]",
            "2026-10-01T00:00Z",
            "2026-12-31T00:00Z",
            &[
                "2026-10-25T01:30:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-08T01:30:00-05:00",
            ],
        ),
        // Monthly on the 31st skips short months.
        (
            "FREQ=MONTHLY;COUNT=4",
            "2026-01-31T09:00[UTC]",
            "2026-01-01T00:00Z",
            "2027-12-31T00:00Z",
            &[
                "2026-01-31T09:00:00+00:00",
                "2026-03-31T09:00:00+00:00",
                "2026-05-31T09:00:00+00:00",
                "2026-07-31T09:00:00+00:00",
            ],
        ),
        // The last day of every month.
        (
            "FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=3",
            "2026-01-31T09:00[UTC]",
            "2026-01-01T00:00Z",
            "2027-12-31T00:00Z",
            &[
                "2026-01-31T09:00:00+00:00",
                "2026-02-28T09:00:00+00:00",
                "2026-03-31T09:00:00+00:00",
            ],
        ),
        // Yearly on February 29: leap years only.
        (
            "FREQ=YEARLY;COUNT=3",
            "2024-02-29T10:00[Europe/Berlin]",
            "2024-01-01T00:00Z",
            "2040-01-01T00:00Z",
            &[
                "2024-02-29T10:00:00+01:00",
                "2028-02-29T10:00:00+01:00",
                "2032-02-29T10:00:00+01:00",
            ],
        ),
        // Second Monday and last Friday of the month.
        (
            "FREQ=MONTHLY;BYDAY=2MO;COUNT=3",
            "2026-01-12T18:00[Europe/Berlin]",
            "2026-01-01T00:00Z",
            "2027-01-01T00:00Z",
            &[
                "2026-01-12T18:00:00+01:00",
                "2026-02-09T18:00:00+01:00",
                "2026-03-09T18:00:00+01:00",
            ],
        ),
        (
            "FREQ=MONTHLY;BYDAY=-1FR;COUNT=3",
            "2026-01-30T18:00[Europe/Berlin]",
            "2026-01-01T00:00Z",
            "2027-01-01T00:00Z",
            &[
                "2026-01-30T18:00:00+01:00",
                "2026-02-27T18:00:00+01:00",
                "2026-03-27T18:00:00+01:00",
            ],
        ),
        // US Thanksgiving: the fourth Thursday of November.
        (
            "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH",
            "2026-11-26T15:00[America/New_York]",
            "2026-01-01T00:00Z",
            "2029-01-01T00:00Z",
            &[
                "2026-11-26T15:00:00-05:00",
                "2027-11-25T15:00:00-05:00",
                "2028-11-23T15:00:00-05:00",
            ],
        ),
        // Last weekday of the month via BYSETPOS.
        (
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;COUNT=3",
            "2026-01-30T17:00[UTC]",
            "2026-01-01T00:00Z",
            "2027-01-01T00:00Z",
            &[
                "2026-01-30T17:00:00+00:00",
                "2026-02-27T17:00:00+00:00",
                "2026-03-31T17:00:00+00:00",
            ],
        ),
        // Every other week on Tuesday and Thursday, until a date (inclusive).
        (
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;UNTIL=20260120T235959Z",
            "2026-01-06T09:00[UTC]",
            "2026-01-01T00:00Z",
            "2027-01-01T00:00Z",
            &[
                "2026-01-06T09:00:00+00:00",
                "2026-01-08T09:00:00+00:00",
                "2026-01-20T09:00:00+00:00",
            ],
        ),
        // A window far in the future of an endless daily rule (no walk from DTSTART).
        (
            "FREQ=DAILY",
            "2020-01-01T07:00[Europe/Berlin]",
            "2090-06-10T00:00Z",
            "2090-06-12T00:00Z",
            &["2090-06-10T07:00:00+02:00", "2090-06-11T07:00:00+02:00"],
        ),
        // EXDATE leaves out an instance, which still counts.
        (
            "FREQ=DAILY;COUNT=3",
            "2026-05-01T12:00[UTC]",
            "2026-05-01T00:00Z",
            "2026-06-01T00:00Z",
            &["2026-05-01T12:00:00+00:00", "2026-05-03T12:00:00+00:00"],
        ),
        // Window cuts: only instances starting inside.
        (
            "FREQ=WEEKLY;BYDAY=MO,WE",
            "2026-06-01T10:00[UTC]",
            "2026-06-09T00:00Z",
            "2026-06-16T00:00Z",
            &["2026-06-10T10:00:00+00:00", "2026-06-15T10:00:00+00:00"],
        ),
    ];

    #[test]
    fn expansion_table() {
        for (rule, start, from, to, want) in TABLE {
            let r: RRule = rule.parse().expect(rule);
            let ex: Vec<Timestamp> = if rule.contains("COUNT=3") && start.starts_with("2026-05-01")
            {
                vec![ts("2026-05-02T12:00Z")]
            } else {
                Vec::new()
            };
            let got: Vec<String> = r
                .expand(&z(start), &ex, ts(from), ts(to), 100)
                .iter()
                .map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
                .collect();
            assert_eq!(&got, want, "{rule} from {start}");
        }
    }

    #[test]
    fn rules_round_trip_and_errors_name_the_part() {
        for s in [
            "FREQ=WEEKLY;INTERVAL=2;COUNT=10;BYDAY=TU,TH",
            "FREQ=MONTHLY;UNTIL=20261231T235959Z;BYDAY=-1FR",
            "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;WKST=SU",
        ] {
            let r: RRule = s.parse().expect(s);
            assert_eq!(r.to_string(), s);
        }
        let e = "FREQ=WEEKLY;BYDAY=XX".parse::<RRule>().unwrap_err();
        assert_eq!(e.part, "BYDAY=XX");
        let e = "FREQ=HOURLY".parse::<RRule>().unwrap_err();
        assert!(e.to_string().contains("FREQ=HOURLY"), "{e}");
        let e = "INTERVAL=2".parse::<RRule>().unwrap_err();
        assert!(e.message.contains("FREQ is missing"));
        let e = "FREQ=DAILY;BYHOUR=9".parse::<RRule>().unwrap_err();
        assert!(e.message.contains("not supported"), "{e}");
        let e = "FREQ=DAILY;COUNT=0".parse::<RRule>().unwrap_err();
        assert_eq!(e.part, "COUNT=0");
    }

    #[test]
    fn impossible_rules_end_at_the_work_cap() {
        let r: RRule = "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30".parse().expect("rule");
        let start = z("2026-01-01T09:00[UTC]");
        let t0 = std::time::Instant::now();
        let got = r.expand(&start, &[], ts("2026-01-02T00:00Z"), Timestamp::MAX, 10);
        assert!(got.is_empty());
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            "FREQ=DAILY;COUNT=5"
                .parse::<RRule>()
                .expect("rule")
                .last_start(&start)
                .map(|z| z.date().to_string()),
            Some("2026-01-05".to_owned())
        );
    }
}
