//! English time expressions → a language-independent [`Spec`]: "tomorrow at 5pm",
//! "in an hour and a half", "next Friday morning", "on December 24th at 8",
//! "every weekday at 8", "every 2 hours". Resolution against "now" is in `spec`.

use jiff::civil::Weekday;

use super::lex::{at, at_any, w, Token};
use super::numbers::{cardinal, duration, number};
use crate::nlu::intents::spec::{Clock, Day, Meridiem, Part, Rec, Rel, Spec, Week};

fn weekday(s: &str) -> Option<(Weekday, bool)> {
    use Weekday::*;
    Some(match s {
        "monday" => (Monday, false),
        "tuesday" => (Tuesday, false),
        "wednesday" => (Wednesday, false),
        "thursday" => (Thursday, false),
        "friday" => (Friday, false),
        "saturday" => (Saturday, false),
        "sunday" => (Sunday, false),
        "mondays" => (Monday, true),
        "tuesdays" => (Tuesday, true),
        "wednesdays" => (Wednesday, true),
        "thursdays" => (Thursday, true),
        "fridays" => (Friday, true),
        "saturdays" => (Saturday, true),
        "sundays" => (Sunday, true),
        _ => return None,
    })
}

fn month(s: &str) -> Option<i8> {
    Some(match s {
        "january" | "jan" => 1,
        "february" | "feb" => 2,
        "march" | "mar" => 3,
        "april" | "apr" => 4,
        "may" => 5,
        "june" | "jun" => 6,
        "july" | "jul" => 7,
        "august" | "aug" => 8,
        "september" | "sep" | "sept" => 9,
        "october" | "oct" => 10,
        "november" | "nov" => 11,
        "december" | "dec" => 12,
        _ => return None,
    })
}

fn part(s: &str) -> Option<Part> {
    Some(match s {
        "morning" => Part::Morning,
        "afternoon" => Part::Afternoon,
        "evening" => Part::Evening,
        "night" => Part::Night,
        _ => return None,
    })
}

const WORKDAYS: [Weekday; 5] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
];

/// Day of month 1..=31 at `i` ("4th", "fourth", "24", "the 4th" is handled by the caller).
fn month_day(t: &[Token], i: usize, need_ordinal: bool) -> Option<(i8, usize)> {
    let (n, j) = number(t, i)?;
    if (need_ordinal && !n.ordinal) || n.value.fract() != 0.0 || !(1.0..=31.0).contains(&n.value) {
        return None;
    }
    Some((n.value as i8, j))
}

/// A calendar date or weekday at `i`, without a leading "on".
fn day(t: &[Token], i: usize, spec: &mut Spec) -> Option<usize> {
    let s = w(t, i);
    if let Some((wd, plural)) = weekday(s) {
        if plural {
            spec.rec = Some(Rec::Weekly(vec![wd]));
        } else {
            spec.day = Some(Day::Weekday {
                day: wd,
                next: false,
            });
        }
        return Some(i + 1);
    }
    if matches!(s, "weekdays" | "workdays") {
        spec.rec = Some(Rec::Weekly(WORKDAYS.to_vec()));
        return Some(i + 1);
    }
    // "December 24th", "Dec 24", "December the 24th".
    if let Some(m) = month(s) {
        let k = if w(t, i + 1) == "the" { i + 2 } else { i + 1 };
        let (d, j) = month_day(t, k, false)?;
        spec.day = Some(Day::MonthDay {
            month: Some(m),
            day: d,
        });
        return Some(j);
    }
    // "the 4th", "the 24th of December", "24th December", "the 1st of every month".
    let (k, need_ordinal) = if s == "the" {
        (i + 1, true)
    } else {
        (i, false)
    };
    let (d, j) = month_day(t, k, need_ordinal)?;
    let of = if w(t, j) == "of" { j + 1 } else { j };
    if let Some(m) = month(w(t, of)) {
        spec.day = Some(Day::MonthDay {
            month: Some(m),
            day: d,
        });
        return Some(of + 1);
    }
    if let Some(n) = at_any(t, j, &["of every month", "of each month", "of the month"]) {
        spec.rec = Some(Rec::Monthly(Some(d)));
        return Some(j + n);
    }
    // A bare number is not a day; an ordinal is ("the 4th", "on the fourth").
    if !number(t, k)?.0.ordinal {
        return None;
    }
    spec.day = Some(Day::MonthDay {
        month: None,
        day: d,
    });
    Some(j)
}

/// Minutes after an hour said as a word: "thirty", "fifteen", "oh five".
fn minute_word(t: &[Token], i: usize) -> Option<(i8, usize)> {
    if w(t, i) == "oh" {
        let (m, j) = cardinal(t, i + 1)?;
        return (m < 10).then_some((m as i8, j));
    }
    if w(t, i).starts_with(|c: char| c.is_ascii_digit()) && w(t, i).len() != 2 {
        return None;
    }
    let (m, j) = cardinal(t, i)?;
    (10..60).contains(&m).then_some((m as i8, j))
}

/// A clock time at `i`. `strong` is set when the form cannot be a plain number
/// ("5pm", "17:30", "5 o'clock", "noon", "half past five").
fn clock(t: &[Token], i: usize) -> Option<(Clock, bool, usize)> {
    match w(t, i) {
        "noon" | "midday" => return Some((Clock::Noon, true, i + 1)),
        "midnight" => return Some((Clock::Midnight, true, i + 1)),
        "half" | "quarter" if matches!(w(t, i + 1), "past" | "after" | "to") => {
            let (h, j) = cardinal(t, i + 2)?;
            if !(1..=12).contains(&h) {
                return None;
            }
            let (hour, minute) = match (w(t, i), w(t, i + 1)) {
                ("half", "to") => return None,
                ("half", _) => (h as i8, 30),
                ("quarter", "to") => ((h as i8 + 11) % 12, 45),
                _ => (h as i8, 15),
            };
            let hour = if hour == 0 { 12 } else { hour };
            let (meridiem, j) = meridiem(t, j);
            return Some((
                Clock::Hm {
                    hour,
                    minute,
                    meridiem,
                },
                true,
                j,
            ));
        }
        _ => {}
    }
    let s = w(t, i);
    let (hour, mut minute, mut strong, mut j) = if let Some((h, m)) = s.split_once([':', '.']) {
        if !s.starts_with(|c: char| c.is_ascii_digit()) || m.len() != 2 {
            return None;
        }
        let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
        if !(0..60).contains(&m) {
            return None;
        }
        (h, m, true, i + 1)
    } else {
        let (h, j) = cardinal(t, i)?;
        if h > 24 {
            return None;
        }
        (h as i8, 0, false, j)
    };
    if !strong {
        if let Some((m, k)) = minute_word(t, j) {
            minute = m;
            j = k;
        }
    }
    if w(t, j) == "oclock" || at(t, j, "o clock") {
        strong = true;
        j += if w(t, j) == "oclock" { 1 } else { 2 };
    }
    let (meridiem, j) = meridiem(t, j);
    if meridiem.is_some() {
        if !(1..=12).contains(&hour) {
            return None;
        }
        strong = true;
    }
    let valid = (0..=23).contains(&hour) || (hour == 24 && minute == 0);
    if !valid {
        return None;
    }
    let hour = hour % 24;
    Some((
        Clock::Hm {
            hour,
            minute,
            meridiem,
        },
        strong,
        j,
    ))
}

fn meridiem(t: &[Token], i: usize) -> (Option<Meridiem>, usize) {
    match w(t, i) {
        "am" => (Some(Meridiem::Am), i + 1),
        "pm" => (Some(Meridiem::Pm), i + 1),
        _ => (None, i),
    }
}

/// After "every"/"each": the recurrence.
fn every(t: &[Token], i: usize, spec: &mut Spec) -> Option<usize> {
    let s = w(t, i);
    if s == "day" || (s == "single" && w(t, i + 1) == "day") {
        spec.rec = Some(Rec::Daily);
        return Some(if s == "day" { i + 1 } else { i + 2 });
    }
    if let Some(p) = part(s) {
        spec.rec = Some(Rec::Daily);
        spec.part = Some(p);
        return Some(i + 1);
    }
    if let Some(n) = at_any(
        t,
        i,
        &["weekday", "weekdays", "week day", "workday", "work day"],
    ) {
        spec.rec = Some(Rec::Weekly(WORKDAYS.to_vec()));
        return Some(i + n);
    }
    if s == "weekend" {
        spec.rec = Some(Rec::Weekly(vec![Weekday::Saturday, Weekday::Sunday]));
        return Some(i + 1);
    }
    if s == "week" {
        spec.rec = Some(Rec::Weekly(Vec::new()));
        return Some(i + 1);
    }
    if s == "month" {
        spec.rec = Some(Rec::Monthly(None));
        return Some(i + 1);
    }
    if let Some((wd, _)) = weekday(s) {
        // "every Monday and Thursday", "every Monday, Wednesday and every Friday".
        let mut days = vec![wd];
        let mut j = i + 1;
        loop {
            let mut k = j;
            if w(t, k) == "and" {
                k += 1;
            }
            if matches!(w(t, k), "every" | "each") {
                k += 1;
            }
            match weekday(w(t, k)) {
                Some((d, _)) => {
                    if !days.contains(&d) {
                        days.push(d);
                    }
                    j = k + 1;
                }
                _ => break,
            }
        }
        spec.rec = Some(Rec::Weekly(days));
        return Some(j);
    }
    // "every hour", "every 2 hours", "every 30 minutes"; "every day" handled above.
    let (q, j) = match cardinal(t, i) {
        Some((n, j)) => (n, j),
        None => (1, i),
    };
    let secs = match w(t, j) {
        "minute" | "minutes" | "min" | "mins" => 60,
        "hour" | "hours" => 3600,
        "days" if q > 1 => 86_400,
        _ => return None,
    };
    if q == 0 {
        return None;
    }
    spec.rec = Some(Rec::Every(jiff::SignedDuration::from_secs(
        i64::from(q) * secs,
    )));
    Some(j + 1)
}

/// One component of a time expression at `i`, added to `spec`; the index after it.
fn component(t: &[Token], i: usize, spec: &mut Spec) -> Option<usize> {
    let mut next = Spec::default();
    let end = component_into(t, i, &mut next, spec)?;
    if !spec.merge(next) {
        return None;
    }
    Some(end)
}

fn component_into(t: &[Token], i: usize, out: &mut Spec, so_far: &Spec) -> Option<usize> {
    let s = w(t, i);
    match s {
        "every" | "each" => return every(t, i + 1, out),
        "daily" => {
            out.rec = Some(Rec::Daily);
            return Some(i + 1);
        }
        "hourly" => {
            out.rec = Some(Rec::Every(jiff::SignedDuration::from_hours(1)));
            return Some(i + 1);
        }
        "today" => {
            out.day = Some(Day::Today);
            return Some(i + 1);
        }
        "tonight" => {
            out.day = Some(Day::Today);
            out.part = Some(Part::Night);
            return Some(i + 1);
        }
        "tomorrow" | "tmrw" | "tomorow" => {
            out.day = Some(Day::Offset(1));
            return Some(i + 1);
        }
        _ => {}
    }
    if let Some(n) = at_any(t, i, &["the day after tomorrow", "day after tomorrow"]) {
        out.day = Some(Day::Offset(2));
        return Some(i + n);
    }
    if s == "in" {
        if let Some((d, j)) = duration(t, i + 1) {
            let whole_days = d.days.fract() == 0.0 && d.secs == 0.0;
            out.rel = Some(if whole_days {
                Rel {
                    days: d.days as i64,
                    secs: 0,
                }
            } else {
                Rel {
                    days: 0,
                    secs: d.signed().as_secs(),
                }
            });
            return Some(j);
        }
        if w(t, i + 1) == "the" {
            if let Some(p) = part(w(t, i + 2)) {
                out.part = Some(p);
                return Some(i + 3);
            }
        }
        return None;
    }
    if let Some((d, j)) = duration(t, i) {
        if at(t, j, "from now") {
            out.rel = Some(Rel {
                days: 0,
                secs: d.signed().as_secs(),
            });
            return Some(j + 2);
        }
    }
    if s == "this" || s == "next" || s == "coming" || at(t, i, "this coming") {
        let k = if at(t, i, "this coming") {
            i + 2
        } else {
            i + 1
        };
        if let Some(p) = part(w(t, k)).filter(|_| s == "this") {
            out.day = Some(Day::Today);
            out.part = Some(p);
            return Some(k + 1);
        }
        if let Some((wd, false)) = weekday(w(t, k)) {
            out.day = Some(Day::Weekday {
                day: wd,
                next: s == "next",
            });
            return Some(k + 1);
        }
        match (s, w(t, k)) {
            ("this", "week") => out.week = Some(Week::This),
            ("next", "week") => out.week = Some(Week::Next),
            ("this", "weekend") => out.week = Some(Week::Weekend),
            _ => return None,
        }
        return Some(k + 1);
    }
    if let Some(n) = at_any(
        t,
        i,
        &["the weekend", "on the weekend", "at the weekend", "weekend"],
    ) {
        out.week = Some(Week::Weekend);
        return Some(i + n);
    }
    if s == "on" {
        if let Some((wd, _)) = weekday(w(t, i + 2)).filter(|_| w(t, i + 1) == "next") {
            out.day = Some(Day::Weekday {
                day: wd,
                next: true,
            });
            return Some(i + 3);
        }
        return day(t, i + 1, out);
    }
    if let Some(j) = day(t, i, out) {
        return Some(j);
    }
    // Day parts after a day, a clock time or a recurrence: "tomorrow morning", "at 8 at night".
    if let Some(p) = part(s) {
        if so_far.day.is_some() || so_far.clock.is_some() || so_far.rec.is_some() {
            out.part = Some(p);
            return Some(i + 1);
        }
        return None;
    }
    if at(t, i, "at night") {
        out.part = Some(Part::Night);
        return Some(i + 2);
    }
    // "for tomorrow", "by Friday", "for 5pm": a day, or a clock time that is not a number.
    if matches!(s, "for" | "by") {
        let mut inner = Spec::default();
        if let Some(j) = component_into(t, i + 1, &mut inner, so_far) {
            if inner.rel.is_none() {
                *out = inner;
                return Some(j);
            }
        }
        return None;
    }
    // Clock times: "at 5", "at around 5", "5pm", "17:30", "noon".
    let k = match s {
        "at" if matches!(w(t, i + 1), "around" | "about") => i + 2,
        "at" | "around" | "about" | "until" | "till" => i + 1,
        _ => i,
    };
    let (c, strong, j) = clock(t, k)?;
    // A bare number is a time only after "at" ("at 5"); "5 minutes" is not.
    if !(strong || s == "at") {
        return None;
    }
    out.clock = Some(c);
    Some(j)
}

/// The longest time expression starting at `i`: the spec and the index after it.
pub(super) fn scan(t: &[Token], i: usize) -> Option<(Spec, usize)> {
    let mut spec = Spec::default();
    let mut j = i;
    while j < t.len() {
        let k = if w(t, j) == "and" && j > i { j + 1 } else { j };
        match component(t, k, &mut spec) {
            Some(next) if next > k => j = next,
            _ => break,
        }
    }
    (j > i && !spec.is_empty()).then_some((spec, j))
}

/// A time expression found in an utterance.
#[derive(Debug, Clone)]
pub(super) struct Found {
    /// What was said.
    pub spec: Spec,
    /// First token.
    pub start: usize,
    /// After the last token.
    pub end: usize,
}

/// All time expressions in `t` (left to right, not overlapping).
pub(super) fn find_all(t: &[Token]) -> Vec<Found> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if let Some((spec, end)) = scan(t, i) {
            out.push(Found {
                spec,
                start: i,
                end,
            });
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Merge all found expressions into one spec (`None` if none or they contradict).
pub(super) fn merged(found: &[Found]) -> Option<Spec> {
    let mut spec = Spec::default();
    for f in found {
        if !spec.merge(f.spec.clone()) {
            return None;
        }
    }
    (!spec.is_empty()).then_some(spec)
}

/// If the whole of `t` (apart from filler words) is one time expression, its spec.
pub(super) fn whole(t: &[Token]) -> Option<Spec> {
    let mut i = 0;
    while let Some(n) = at_any(
        t,
        i,
        &[
            "um",
            "uh",
            "let us say",
            "say",
            "how about",
            "make it",
            "maybe",
            "it is",
            "er",
        ],
    ) {
        i += n;
    }
    let mut end = t.len();
    while end > i && matches!(w(t, end - 1), "please" | "thanks" | "then") {
        end -= 1;
    }
    let t = &t[..end];
    let (spec, j) = scan(t, i)?;
    (j == t.len()).then_some(spec)
}

#[cfg(test)]
mod tests {
    use super::super::lex::tokenize;
    use super::*;

    fn spec(s: &str) -> Option<Spec> {
        whole(&tokenize(s))
    }

    #[test]
    fn a_bare_number_needs_at_but_5pm_does_not() {
        assert!(spec("5").is_none());
        assert!(spec("at 5").is_some());
        assert!(spec("5pm").is_some());
        assert!(spec("for 5").is_none());
        assert!(spec("for 5pm").is_some());
    }

    #[test]
    fn at_a_place_is_not_a_time() {
        assert!(spec("at the clinic").is_none());
        let t = tokenize("at the clinic at 5pm");
        let found = find_all(&t);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start, 3);
    }

    #[test]
    fn weekday_lists_and_monthly_days() {
        assert_eq!(
            spec("every monday and thursday").unwrap().rec,
            Some(Rec::Weekly(vec![Weekday::Monday, Weekday::Thursday]))
        );
        assert_eq!(
            spec("on the 1st of every month").unwrap().rec,
            Some(Rec::Monthly(Some(1)))
        );
        assert_eq!(
            spec("on mondays").unwrap().rec,
            Some(Rec::Weekly(vec![Weekday::Monday]))
        );
    }

    #[test]
    fn half_past_and_quarter_to() {
        let c = |s| spec(s).unwrap().clock.unwrap();
        assert_eq!(
            c("at half past five"),
            Clock::Hm {
                hour: 5,
                minute: 30,
                meridiem: None
            }
        );
        assert_eq!(
            c("quarter to 8 pm"),
            Clock::Hm {
                hour: 7,
                minute: 45,
                meridiem: Some(Meridiem::Pm)
            }
        );
        assert_eq!(
            c("at five thirty"),
            Clock::Hm {
                hour: 5,
                minute: 30,
                meridiem: None
            }
        );
    }
}
