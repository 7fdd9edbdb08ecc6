//! Natural English for times, dates and durations, written the way they are spoken
//! ("tomorrow at 5:30 PM", "on Friday the 4th at 9 AM", "1 hour and 20 minutes").

use jiff::civil::{Date, Weekday};
use jiff::{SignedDuration, Zoned};

/// "5 PM", "5:30 PM", "noon", "midnight".
pub fn time_of_day(z: &Zoned) -> String {
    let (h, m) = (z.hour(), z.minute());
    match (h, m) {
        (12, 0) => "noon".to_owned(),
        (0, 0) => "midnight".to_owned(),
        _ => {
            let suffix = if h < 12 { "AM" } else { "PM" };
            let h12 = match h % 12 {
                0 => 12,
                x => x,
            };
            if m == 0 {
                format!("{h12} {suffix}")
            } else {
                format!("{h12}:{m:02} {suffix}")
            }
        }
    }
}

/// "Monday" …
pub fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

/// "January" …
pub fn month_name(m: i8) -> &'static str {
    crate::speech::tts::normalize::MONTHS
        .get(usize::try_from(m - 1).unwrap_or(0))
        .copied()
        .unwrap_or("January")
}

/// "1st", "2nd", "3rd", "4th", "11th", "22nd".
pub fn ordinal(n: i64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The day relative to `now`: "today", "tomorrow", "on Friday" (within a week), else
/// "on Friday the 4th" (this month) or "on Friday the 4th of December".
pub fn day(d: Date, now: &Zoned) -> String {
    let today = now.date();
    let diff = (d - today).get_days();
    if d == today {
        return "today".to_owned();
    }
    if today.tomorrow().ok() == Some(d) {
        return "tomorrow".to_owned();
    }
    if today.yesterday().ok() == Some(d) {
        return "yesterday".to_owned();
    }
    let wd = weekday_name(d.weekday());
    if (2..7).contains(&diff) {
        return format!("on {wd}");
    }
    let mut s = format!("on {wd} the {}", ordinal(i64::from(d.day())));
    if d.month() != today.month() || d.year() != today.year() {
        s.push_str(" of ");
        s.push_str(month_name(d.month()));
    }
    if d.year() != today.year() {
        s.push_str(&format!(" {}", d.year()));
    }
    s
}

/// "tomorrow at 5 PM", "today at 9:30 AM", "on Friday the 4th at noon".
pub fn day_and_time(z: &Zoned, now: &Zoned) -> String {
    format!("{} at {}", day(z.date(), now), time_of_day(z))
}

/// "Wednesday, November 25th, 2026".
pub fn long_date(d: Date) -> String {
    format!(
        "{}, {} {}, {}",
        weekday_name(d.weekday()),
        month_name(d.month()),
        ordinal(i64::from(d.day())),
        d.year()
    )
}

fn unit(n: i64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// "10 minutes", "1 hour and 30 minutes", "45 seconds", "2 days and 3 hours".
pub fn duration(d: SignedDuration) -> String {
    let total = d.as_secs().abs();
    let (days, rest) = (total / 86_400, total % 86_400);
    let (hours, rest) = (rest / 3600, rest % 3600);
    let (mins, secs) = (rest / 60, rest % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(unit(days, "day"));
    }
    if hours > 0 {
        parts.push(unit(hours, "hour"));
    }
    if mins > 0 {
        parts.push(unit(mins, "minute"));
    }
    if secs > 0 || parts.is_empty() {
        parts.push(unit(secs, "second"));
    }
    match parts.len() {
        1 => parts.remove(0),
        _ => {
            let last = parts.pop().unwrap_or_default();
            format!("{} and {last}", parts.join(", "))
        }
    }
}

/// "Monday", "Monday and Thursday", "Monday, Wednesday and Friday".
pub fn list_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> Zoned {
        s.parse().expect("zoned")
    }

    #[test]
    fn times_days_and_durations_read_naturally() {
        let now = z("2026-11-25T14:00[Europe/Berlin]"); // Wednesday
        assert_eq!(
            time_of_day(&z("2026-11-25T17:30[Europe/Berlin]")),
            "5:30 PM"
        );
        assert_eq!(time_of_day(&z("2026-11-25T09:00[Europe/Berlin]")), "9 AM");
        assert_eq!(time_of_day(&z("2026-11-25T12:00[Europe/Berlin]")), "noon");
        assert_eq!(
            day_and_time(&z("2026-11-26T17:00[Europe/Berlin]"), &now),
            "tomorrow at 5 PM"
        );
        assert_eq!(
            day_and_time(&z("2026-11-27T09:00[Europe/Berlin]"), &now),
            "on Friday at 9 AM"
        );
        assert_eq!(
            day(z("2026-12-04T09:00[Europe/Berlin]").date(), &now),
            "on Friday the 4th of December"
        );
        assert_eq!(long_date(now.date()), "Wednesday, November 25th, 2026");
        assert_eq!(duration(SignedDuration::from_mins(10)), "10 minutes");
        assert_eq!(
            duration(SignedDuration::from_secs(5400)),
            "1 hour and 30 minutes"
        );
        assert_eq!(
            duration(SignedDuration::from_secs(90061)),
            "1 day, 1 hour, 1 minute and 1 second"
        );
        assert_eq!(ordinal(22), "22nd");
        assert_eq!(ordinal(13), "13th");
    }
}
