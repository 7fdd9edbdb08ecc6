//! iCalendar (RFC 5545) text: the writer behind the subscription feed and CalDAV uploads
//! (CRLF lines folded at 75 octets, escaped text, one VTIMEZONE per zone built from the
//! zone's real transitions over the years the events cover, DTSTAMP, SEQUENCE,
//! LAST-MODIFIED) and the reader behind imports (unfolding, parameters, TZID resolved to IANA
//! zones, UTC/floating/DATE values, RRULE, EXDATE, RECURRENCE-ID, VALARM).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

use super::{Attendee, Event, Override};

/// Why an iCalendar text could not be read at all (a single bad event is reported in the
/// import report instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcsError {
    /// No `BEGIN:VCALENDAR`.
    #[error("not an iCalendar text: it does not start with BEGIN:VCALENDAR")]
    NotCalendar,
    /// A content line is malformed.
    #[error("iCalendar line {line}: {message}")]
    Syntax {
        /// 1-based line number (after unfolding).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

// ------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------

/// Escape a TEXT value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value, quoted when it holds `:`, `;` or `,`.
fn param(s: &str) -> String {
    let s: String = s.chars().filter(|c| *c != '"' && !c.is_control()).collect();
    if s.contains([':', ';', ',']) {
        format!("\"{s}\"")
    } else {
        s
    }
}

/// Append one content line, folded at 75 octets (never inside a UTF-8 sequence), with CRLF.
fn line(out: &mut String, l: &str) {
    let mut width = 0;
    for c in l.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

fn fmt_date(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

fn fmt_local(dt: DateTime) -> String {
    format!(
        "{}T{:02}{:02}{:02}",
        fmt_date(dt.date()),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

fn fmt_utc(ts: Timestamp) -> String {
    format!("{}Z", fmt_local(ts.to_zoned(TimeZone::UTC).datetime()))
}

fn is_utc(z: &Zoned) -> bool {
    matches!(
        z.time_zone().iana_name(),
        Some("UTC" | "Etc/UTC" | "Etc/Zulu" | "Zulu")
    )
}

/// `NAME;params:value` for a DATE or DATE-TIME property.
fn time_prop(name: &str, z: &Zoned, all_day: bool) -> String {
    if all_day {
        format!("{name};VALUE=DATE:{}", fmt_date(z.date()))
    } else if is_utc(z) {
        format!("{name}:{}", fmt_utc(z.timestamp()))
    } else {
        format!(
            "{name};TZID={}:{}",
            param(z.time_zone().iana_name().unwrap_or("UTC")),
            fmt_local(z.datetime())
        )
    }
}

fn fmt_offset(o: jiff::tz::Offset) -> String {
    let s = o.seconds();
    let sign = if s < 0 { '-' } else { '+' };
    let a = s.abs();
    let (h, m, sec) = (a / 3600, a % 3600 / 60, a % 60);
    if sec == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{sec:02}")
    }
}

/// A VTIMEZONE for `tz` covering `[from, to)`: the observance in force at `from` and every
/// transition until `to`, taken from the zone's rules.
pub fn vtimezone(out: &mut String, tz: &TimeZone, from: Timestamp, to: Timestamp) {
    let Some(name) = tz.iana_name() else {
        return;
    };
    line(out, "BEGIN:VTIMEZONE");
    line(out, &format!("TZID:{name}"));
    let mut transitions: Vec<_> = tz.preceding(from).take(1).collect();
    transitions.extend(
        tz.following(from)
            .take_while(|t| t.timestamp() < to)
            .take(400),
    );
    if transitions.is_empty() {
        let o = tz.to_offset(from);
        line(out, "BEGIN:STANDARD");
        line(out, "DTSTART:19700101T000000");
        line(out, &format!("TZOFFSETFROM:{}", fmt_offset(o)));
        line(out, &format!("TZOFFSETTO:{}", fmt_offset(o)));
        line(out, "END:STANDARD");
    }
    for t in transitions {
        let before = t
            .timestamp()
            .checked_sub(jiff::SignedDuration::from_secs(1))
            .map_or(t.offset(), |ts| tz.to_offset(ts));
        let kind = if t.dst().is_dst() {
            "DAYLIGHT"
        } else {
            "STANDARD"
        };
        let local = t.timestamp().to_zoned(TimeZone::fixed(before)).datetime();
        line(out, &format!("BEGIN:{kind}"));
        line(out, &format!("DTSTART:{}", fmt_local(local)));
        line(out, &format!("TZOFFSETFROM:{}", fmt_offset(before)));
        line(out, &format!("TZOFFSETTO:{}", fmt_offset(t.offset())));
        if !t.abbreviation().is_empty() {
            line(out, &format!("TZNAME:{}", escape(t.abbreviation())));
        }
        line(out, &format!("END:{kind}"));
    }
    line(out, "END:VTIMEZONE");
}

fn attendee_line(a: &Attendee) -> String {
    let mut l = "ATTENDEE".to_owned();
    if let Some(n) = &a.name {
        let _ = write!(l, ";CN={}", param(n));
    }
    if let Some(id) = a.contact_id {
        let _ = write!(l, ";X-LA-CONTACT-ID={id}");
    }
    if let (Some(_), Some(p)) = (&a.email, &a.phone) {
        let _ = write!(l, ";X-LA-PHONE={}", param(p));
    }
    let value = match (&a.email, &a.phone) {
        (Some(e), _) => format!("mailto:{e}"),
        (None, Some(p)) => format!("tel:{}", p.replace(' ', "")),
        (None, None) => "urn:x-local-assistant:attendee".to_owned(),
    };
    format!("{l}:{value}")
}

fn write_event(out: &mut String, e: &Event, now: Timestamp) {
    line(out, "BEGIN:VEVENT");
    line(out, &format!("UID:{}", escape(&e.uid)));
    line(out, &format!("DTSTAMP:{}", fmt_utc(now)));
    line(out, &format!("CREATED:{}", fmt_utc(e.created_at)));
    line(out, &format!("LAST-MODIFIED:{}", fmt_utc(e.updated_at)));
    line(out, &format!("SEQUENCE:{}", e.sequence));
    line(out, &format!("SUMMARY:{}", escape(&e.title)));
    line(out, &time_prop("DTSTART", &e.start, e.all_day));
    line(out, &time_prop("DTEND", &e.end, e.all_day));
    if let Some(l) = &e.location {
        line(out, &format!("LOCATION:{}", escape(l)));
    }
    if let Some(n) = &e.notes {
        line(out, &format!("DESCRIPTION:{}", escape(n)));
    }
    if let Some(r) = &e.rrule {
        line(out, &format!("RRULE:{r}"));
    }
    for x in &e.exdates {
        line(out, &time_prop("EXDATE", x, e.all_day));
    }
    for a in &e.attendees {
        line(out, &attendee_line(a));
    }
    for m in &e.alarms {
        line(out, "BEGIN:VALARM");
        line(out, "ACTION:DISPLAY");
        line(out, &format!("DESCRIPTION:{}", escape(&e.title)));
        line(out, &format!("TRIGGER:-PT{m}M"));
        line(out, "END:VALARM");
    }
    line(out, "END:VEVENT");
    for o in &e.overrides {
        line(out, "BEGIN:VEVENT");
        line(out, &format!("UID:{}", escape(&e.uid)));
        line(out, &format!("DTSTAMP:{}", fmt_utc(now)));
        line(out, &format!("LAST-MODIFIED:{}", fmt_utc(e.updated_at)));
        line(out, &format!("SEQUENCE:{}", e.sequence));
        line(
            out,
            &time_prop("RECURRENCE-ID", &o.recurrence_id, e.all_day),
        );
        line(
            out,
            &format!("SUMMARY:{}", escape(o.title.as_deref().unwrap_or(&e.title))),
        );
        line(out, &time_prop("DTSTART", &o.start, e.all_day));
        line(out, &time_prop("DTEND", &o.end, e.all_day));
        if let Some(l) = o.location.as_ref().or(e.location.as_ref()) {
            line(out, &format!("LOCATION:{}", escape(l)));
        }
        if let Some(n) = o.notes.as_ref().or(e.notes.as_ref()) {
            line(out, &format!("DESCRIPTION:{}", escape(n)));
        }
        line(out, "END:VEVENT");
    }
}

/// A VCALENDAR with `events` and the VTIMEZONEs they need.
pub fn write_calendar(events: &[Event], now: Timestamp) -> String {
    let mut out = String::new();
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, "PRODID:-//local-assistant//calendar//EN");
    line(&mut out, "CALSCALE:GREGORIAN");
    line(&mut out, "X-WR-CALNAME:local-assistant");
    // Zones in use and the span of years they must describe.
    let mut zones: BTreeMap<String, (TimeZone, Timestamp, Timestamp)> = BTreeMap::new();
    let year = |ts: Timestamp, delta: i16| -> Timestamp {
        let y = ts.to_zoned(TimeZone::UTC).year().saturating_add(delta);
        Date::new(y, 1, 1)
            .ok()
            .and_then(|d| d.to_zoned(TimeZone::UTC).ok())
            .map_or(ts, |z| z.timestamp())
    };
    for e in events {
        if e.all_day || is_utc(&e.start) {
            continue;
        }
        let Some(name) = e.start.time_zone().iana_name() else {
            continue;
        };
        let from = year(e.start.timestamp(), 0);
        let last = e
            .last_end_ms()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .unwrap_or_else(|| {
                now.max(e.end.timestamp())
                    .checked_add(jiff::SignedDuration::from_hours(24 * 366 * 2))
                    .unwrap_or(now)
            });
        let to = year(last, 1);
        let entry = zones
            .entry(name.to_owned())
            .or_insert_with(|| (e.start.time_zone().clone(), from, to));
        entry.1 = entry.1.min(from);
        entry.2 = entry.2.max(to);
    }
    for (tz, from, to) in zones.values() {
        vtimezone(&mut out, tz, *from, *to);
    }
    for e in events {
        write_event(&mut out, e, now);
    }
    line(&mut out, "END:VCALENDAR");
    out
}

// ------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------

/// A content line.
#[derive(Debug, Clone)]
struct Prop {
    name: String,
    params: Vec<(String, String)>,
    value: String,
}

impl Prop {
    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// A component with its properties and sub-components.
#[derive(Debug, Clone, Default)]
struct Comp {
    name: String,
    props: Vec<Prop>,
    subs: Vec<Comp>,
}

impl Comp {
    fn prop(&self, name: &str) -> Option<&Prop> {
        self.props.iter().find(|p| p.name == name)
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Prop> + 'a {
        self.props.iter().filter(move |p| p.name == name)
    }
}

fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(cont) = raw.strip_prefix([' ', '\t']) {
            if let Some(last) = lines.last_mut() {
                last.push_str(cont);
                continue;
            }
        }
        lines.push(raw.to_owned());
    }
    lines
}

fn parse_line(l: &str, n: usize) -> Result<Prop, IcsError> {
    let syntax = |message: String| IcsError::Syntax { line: n, message };
    // The value starts at the first ':' outside quotes.
    let mut in_quotes = false;
    let mut split = None;
    for (i, c) in l.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ':' if !in_quotes => {
                split = Some(i);
                break;
            }
            _ => {}
        }
    }
    let i = split.ok_or_else(|| syntax(format!("expected NAME:VALUE; got {l:?}")))?;
    let (head, value) = (&l[..i], &l[i + 1..]);
    let mut parts = Vec::new();
    let mut cur = String::new();
    in_quotes = false;
    for c in head.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            ';' if !in_quotes => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let name = parts[0].trim().to_ascii_uppercase();
    if name.is_empty() {
        return Err(syntax("a property without a name".into()));
    }
    let mut params = Vec::new();
    for p in &parts[1..] {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| syntax(format!("parameter {p:?} of {name} has no value")))?;
        params.push((k.trim().to_ascii_uppercase(), v.to_owned()));
    }
    Ok(Prop {
        name,
        params,
        value: value.to_owned(),
    })
}

fn parse_tree(text: &str) -> Result<Comp, IcsError> {
    let lines = unfold(text);
    let first = lines.iter().map(|l| l.trim()).find(|l| !l.is_empty());
    if !first.is_some_and(|l| l.eq_ignore_ascii_case("BEGIN:VCALENDAR")) {
        return Err(IcsError::NotCalendar);
    }
    let mut stack: Vec<Comp> = vec![Comp::default()];
    let mut saw_calendar = false;
    for (i, l) in lines.iter().enumerate() {
        let n = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        let p = parse_line(l, n)?;
        match p.name.as_str() {
            "BEGIN" => {
                let name = p.value.trim().to_ascii_uppercase();
                if stack.len() == 1 && name != "VCALENDAR" {
                    return Err(IcsError::NotCalendar);
                }
                saw_calendar |= name == "VCALENDAR";
                stack.push(Comp {
                    name,
                    ..Comp::default()
                });
            }
            "END" => {
                let name = p.value.trim().to_ascii_uppercase();
                let done = stack.pop().filter(|c| c.name == name && !c.name.is_empty());
                let Some(done) = done else {
                    return Err(IcsError::Syntax {
                        line: n,
                        message: format!("END:{name} does not close the open component"),
                    });
                };
                match stack.last_mut() {
                    Some(parent) => parent.subs.push(done),
                    None => {
                        return Err(IcsError::Syntax {
                            line: n,
                            message: format!("END:{name} without BEGIN"),
                        })
                    }
                }
                if stack.len() == 1 {
                    break;
                }
            }
            _ => {
                if stack.len() < 2 {
                    return Err(IcsError::NotCalendar);
                }
                if let Some(c) = stack.last_mut() {
                    c.props.push(p);
                }
            }
        }
    }
    if !saw_calendar {
        return Err(IcsError::NotCalendar);
    }
    if stack.len() != 1 {
        return Err(IcsError::Syntax {
            line: lines.len(),
            message: "the text ends inside a component (a missing END)".into(),
        });
    }
    stack
        .pop()
        .and_then(|root| root.subs.into_iter().next())
        .ok_or(IcsError::NotCalendar)
}

/// Undo TEXT escaping.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(x) => out.push(x),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Common Windows zone names (Outlook, Exchange) → IANA.
const WINDOWS_ZONES: &[(&str, &str)] = &[
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Romance Standard Time", "Europe/Paris"),
    ("Central Europe Standard Time", "Europe/Budapest"),
    ("GMT Standard Time", "Europe/London"),
    ("Eastern Standard Time", "America/New_York"),
    ("Central Standard Time", "America/Chicago"),
    ("Mountain Standard Time", "America/Denver"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("UTC", "UTC"),
];

/// An IANA zone for a TZID: the name itself, its IANA tail (`/mozilla.org/…/Europe/Berlin`)
/// or a known Windows name.
pub fn resolve_tzid(id: &str) -> Option<TimeZone> {
    let id = id.trim().trim_matches('"');
    if let Ok(tz) = TimeZone::get(id) {
        return Some(tz);
    }
    let segs: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
    for k in (1..=3.min(segs.len())).rev() {
        if let Ok(tz) = TimeZone::get(&segs[segs.len() - k..].join("/")) {
            return Some(tz);
        }
    }
    WINDOWS_ZONES
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(id))
        .and_then(|(_, iana)| TimeZone::get(iana).ok())
}

/// One DATE or DATE-TIME value: (time, is a DATE).
fn parse_value(
    v: &str,
    tzid: Option<&str>,
    is_date: bool,
    device: &TimeZone,
) -> Result<(Zoned, bool), String> {
    let v = v.trim();
    let date = |d: &str| -> Result<Date, String> {
        if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{v:?} is not a date (YYYYMMDD)"));
        }
        let num = |r: std::ops::Range<usize>| d[r].parse::<i16>().map_err(|e| e.to_string());
        Date::new(
            num(0..4)?,
            i8::try_from(num(4..6)?).map_err(|e| e.to_string())?,
            i8::try_from(num(6..8)?).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("{v:?} is not a valid date: {e}"))
    };
    if is_date || v.len() == 8 {
        let d = date(v)?;
        let z = d
            .to_zoned(device.clone())
            .map_err(|e| format!("{v:?}: {e}"))?;
        return Ok((z, true));
    }
    let (d, t) = v
        .split_once(['T', 't'])
        .ok_or_else(|| format!("{v:?} is not a date-time (YYYYMMDDTHHMMSS)"))?;
    let d = date(d)?;
    let (t, utc) = match t.strip_suffix(['Z', 'z']) {
        Some(t) => (t, true),
        None => (t, false),
    };
    if t.len() != 6 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{v:?} is not a date-time (YYYYMMDDTHHMMSS)"));
    }
    let n = |r: std::ops::Range<usize>| t[r].parse::<i8>().unwrap_or(99);
    let time =
        Time::new(n(0..2), n(2..4), n(4..6).min(59), 0).map_err(|e| format!("{v:?}: {e}"))?;
    let dt = d.to_datetime(time);
    let tz = if utc {
        TimeZone::UTC
    } else if let Some(id) = tzid {
        resolve_tzid(id).ok_or_else(|| {
            format!("unknown time zone TZID={id:?} (use an IANA name such as Europe/Berlin)")
        })?
    } else {
        // Floating time: the device's wall clock.
        device.clone()
    };
    let z = dt.to_zoned(tz).map_err(|e| format!("{v:?}: {e}"))?;
    Ok((z, false))
}

fn prop_time(p: &Prop, device: &TimeZone) -> Result<(Zoned, bool), String> {
    let is_date = p
        .param("VALUE")
        .is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
    parse_value(&p.value, p.param("TZID"), is_date, device).map_err(|e| format!("{}: {e}", p.name))
}

/// `[+-]P…` → (days, seconds).
fn parse_duration(s: &str) -> Option<(i64, i64)> {
    let s = s.trim();
    let (neg, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let s = s.strip_prefix(['P', 'p'])?;
    let (mut days, mut secs) = (0i64, 0i64);
    let mut num = String::new();
    let mut in_time = false;
    for c in s.chars() {
        match c.to_ascii_uppercase() {
            'T' => in_time = true,
            d if d.is_ascii_digit() => num.push(d),
            u => {
                let n: i64 = num.parse().ok()?;
                num.clear();
                match (u, in_time) {
                    ('W', false) => days += n * 7,
                    ('D', false) => days += n,
                    ('H', true) => secs += n * 3600,
                    ('M', true) => secs += n * 60,
                    ('S', true) => secs += n,
                    _ => return None,
                }
            }
        }
    }
    if !num.is_empty() {
        return None;
    }
    Some(if neg { (-days, -secs) } else { (days, secs) })
}

fn parse_attendee(p: &Prop) -> Attendee {
    let v = p.value.trim();
    let lower = v.to_ascii_lowercase();
    let mut a = Attendee {
        name: p
            .param("CN")
            .map(|s| s.trim_matches('"').to_owned())
            .filter(|s| !s.is_empty()),
        ..Attendee::default()
    };
    if lower.starts_with("mailto:") {
        a.email = Some(v[7..].to_owned()).filter(|s| !s.is_empty());
    } else if lower.starts_with("tel:") {
        a.phone = Some(v[4..].to_owned()).filter(|s| !s.is_empty());
    }
    if let Some(p2) = p.param("X-LA-PHONE") {
        a.phone = Some(p2.to_owned());
    }
    a.contact_id = p.param("X-LA-CONTACT-ID").and_then(|s| s.parse().ok());
    if a.name.is_none() && a.email.is_none() && a.phone.is_none() {
        a.name = Some(v.to_owned());
    }
    a
}

/// What a parsed calendar holds.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Events (with overrides attached to their series).
    pub events: Vec<Event>,
    /// Ignored parts.
    pub warnings: Vec<String>,
    /// Events that could not be read, with why.
    pub errors: Vec<String>,
}

fn event_of(c: &Comp, device: &TimeZone, warnings: &mut Vec<String>) -> Result<Event, String> {
    let uid = c
        .prop("UID")
        .map(|p| unescape(&p.value).trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| "a VEVENT without UID".to_owned())?;
    let ctx = |m: String| format!("event {uid:?}: {m}");
    let (start, all_day) = prop_time(
        c.prop("DTSTART")
            .ok_or_else(|| ctx("DTSTART is missing".into()))?,
        device,
    )
    .map_err(ctx)?;
    let end = if let Some(p) = c.prop("DTEND") {
        prop_time(p, device).map_err(ctx)?.0
    } else if let Some(p) = c.prop("DURATION") {
        let (d, s) = parse_duration(&p.value).ok_or_else(|| {
            ctx(format!(
                "DURATION: {:?} is not a duration like PT1H",
                p.value
            ))
        })?;
        start
            .checked_add(Span::new().days(d).seconds(s))
            .map_err(|e| ctx(format!("DURATION: {e}")))?
    } else if all_day {
        start
            .checked_add(Span::new().days(1))
            .map_err(|e| ctx(e.to_string()))?
    } else {
        start.clone()
    };
    // A zero-length appointment (RFC 5545 allows it) becomes one minute long here.
    let end = if end <= start && !all_day {
        start
            .checked_add(jiff::SignedDuration::from_mins(1))
            .map_err(|e| ctx(e.to_string()))?
    } else {
        end
    };
    let mut exdates = Vec::new();
    for p in c.all("EXDATE") {
        for v in p.value.split(',') {
            let one = Prop {
                value: v.to_owned(),
                ..p.clone()
            };
            exdates.push(prop_time(&one, device).map_err(ctx)?.0);
        }
    }
    if c.prop("RDATE").is_some() {
        warnings.push(ctx("RDATE is not supported and was ignored".into()));
    }
    let rrule = match c.prop("RRULE") {
        Some(p) => {
            let r: super::rrule::RRule = p
                .value
                .parse()
                .map_err(|e: super::rrule::RRuleError| ctx(format!("RRULE: {e}")))?;
            Some(r.to_string())
        }
        None => None,
    };
    let mut alarms = Vec::new();
    for a in c.subs.iter().filter(|s| s.name == "VALARM") {
        let Some(t) = a.prop("TRIGGER") else {
            continue;
        };
        let related_end = t
            .param("RELATED")
            .is_some_and(|r| r.eq_ignore_ascii_case("END"));
        match parse_duration(&t.value) {
            Some((d, s)) if !related_end && d * 86_400 + s <= 0 => {
                alarms.push(-(d * 1440 + s / 60))
            }
            _ => warnings.push(ctx(format!(
                "VALARM TRIGGER {:?} is not \"minutes before the start\" and was ignored",
                t.value
            ))),
        }
    }
    let created = c
        .prop("CREATED")
        .and_then(|p| prop_time(p, device).ok())
        .map_or_else(Timestamp::now, |(z, _)| z.timestamp());
    let modified = c
        .prop("LAST-MODIFIED")
        .and_then(|p| prop_time(p, device).ok())
        .map_or_else(Timestamp::now, |(z, _)| z.timestamp());
    let text = |name: &str| {
        c.prop(name)
            .map(|p| unescape(&p.value))
            .filter(|s| !s.trim().is_empty())
    };
    Ok(Event {
        uid: uid.clone(),
        title: text("SUMMARY").unwrap_or_else(|| "(no title)".into()),
        start,
        end,
        all_day,
        location: text("LOCATION"),
        notes: text("DESCRIPTION"),
        attendees: c.all("ATTENDEE").map(parse_attendee).collect(),
        rrule,
        exdates,
        overrides: Vec::new(),
        alarms,
        sequence: c
            .prop("SEQUENCE")
            .and_then(|p| p.value.trim().parse().ok())
            .unwrap_or(0),
        version: 0,
        created_at: created,
        updated_at: modified,
    })
}

/// Read a VCALENDAR: events by uid with their RECURRENCE-ID overrides attached (a cancelled
/// instance becomes an EXDATE). A broken event is listed in `errors`; a broken text is an
/// [`IcsError`].
pub fn parse_calendar(text: &str, device: &TimeZone) -> Result<Parsed, IcsError> {
    let cal = parse_tree(text)?;
    let mut out = Parsed::default();
    let mut instances: Vec<(Event, Zoned, bool)> = Vec::new();
    for c in &cal.subs {
        match c.name.as_str() {
            "VEVENT" => {}
            "VTIMEZONE" => continue,
            other => {
                out.warnings
                    .push(format!("{other} components are not imported"));
                continue;
            }
        }
        let e = match event_of(c, device, &mut out.warnings) {
            Ok(e) => e,
            Err(m) => {
                out.errors.push(m);
                continue;
            }
        };
        let cancelled = c
            .prop("STATUS")
            .is_some_and(|s| s.value.trim().eq_ignore_ascii_case("CANCELLED"));
        match c.prop("RECURRENCE-ID") {
            Some(p) => match prop_time(p, device) {
                Ok((rid, _)) => instances.push((e, rid, cancelled)),
                Err(m) => out.errors.push(format!("event {:?}: {m}", e.uid)),
            },
            None if cancelled => out.warnings.push(format!(
                "event {:?} is cancelled and was not imported",
                e.uid
            )),
            None => out.events.push(e),
        }
    }
    for (inst, rid, cancelled) in instances {
        let Some(master) = out.events.iter_mut().find(|m| m.uid == inst.uid) else {
            out.errors.push(format!(
                "event {:?}: a RECURRENCE-ID instance without its series",
                inst.uid
            ));
            continue;
        };
        if cancelled {
            master.exdates.push(rid);
            continue;
        }
        let o = Override {
            recurrence_id: rid,
            title: (inst.title != master.title).then(|| inst.title.clone()),
            location: inst
                .location
                .filter(|l| Some(l) != master.location.as_ref()),
            notes: inst.notes.filter(|n| Some(n) != master.notes.as_ref()),
            start: inst.start,
            end: inst.end,
        };
        master
            .overrides
            .retain(|x| x.recurrence_id.timestamp() != o.recurrence_id.timestamp());
        master.overrides.push(o);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> Zoned {
        s.parse().expect("zoned")
    }

    fn sample() -> Event {
        let now = z("2026-01-10T10:00[UTC]").timestamp();
        Event {
            uid: "abc@x".into(),
            title: "Dentist; bring card, insurance \\ notes".into(),
            start: z("2026-03-02T15:00[Europe/Berlin]"),
            end: z("2026-03-02T16:00[Europe/Berlin]"),
            all_day: false,
            location: Some("Dr. Müller, Hauptstraße 1".into()),
            notes: Some("line one\nline two — a long note that will certainly need folding because it is longer than seventy-five octets".into()),
            attendees: vec![Attendee { name: Some("Anna".into()), email: Some("anna@example.org".into()), phone: None, contact_id: Some(7) }],
            rrule: Some("FREQ=WEEKLY;COUNT=10".into()),
            exdates: vec![z("2026-03-09T15:00[Europe/Berlin]")],
            overrides: vec![Override {
                recurrence_id: z("2026-03-16T15:00[Europe/Berlin]"),
                start: z("2026-03-16T17:00[Europe/Berlin]"),
                end: z("2026-03-16T18:00[Europe/Berlin]"),
                title: Some("Dentist (moved)".into()),
                location: None,
                notes: None,
            }],
            alarms: vec![15],
            sequence: 2,
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn written_lines_are_folded_crlf_and_read_back_equal() {
        let e = sample();
        let text = write_calendar(
            std::slice::from_ref(&e),
            z("2026-01-10T10:00[UTC]").timestamp(),
        );
        for l in text.split("\r\n") {
            assert!(l.len() <= 75, "{l:?} is {} octets", l.len());
            assert!(!l.contains('\n'));
        }
        assert!(text.contains("BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin"));
        assert!(text.contains("TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200"));
        assert!(text.contains("SUMMARY:Dentist\\; bring card\\, insurance \\\\ notes"));
        let back = parse_calendar(&text, &TimeZone::UTC).expect("parse");
        assert!(back.errors.is_empty(), "{:?}", back.errors);
        assert_eq!(back.events.len(), 1);
        let mut b = back.events[0].clone();
        b.version = 0;
        assert_eq!(b, e);
    }

    #[test]
    fn reader_handles_dates_utc_floating_durations_and_windows_zones() {
        let text = "BEGIN:VCALENDAR\nVERSION:2.0\nBEGIN:VEVENT\nUID:1\nSUMMARY:Holiday\nDTSTART;VALUE=DATE:20260801\nDTEND;VALUE=DATE:20260815\nEND:VEVENT\nBEGIN:VEVENT\nUID:2\nSUMMARY:Call\nDTSTART:20260801T120000Z\nDURATION:PT45M\nEND:VEVENT\nBEGIN:VEVENT\nUID:3\nSUMMARY:Floating\nDTSTART:20260801T090000\nEND:VEVENT\nBEGIN:VEVENT\nUID:4\nSUMMARY:Outlook\nDTSTART;TZID=\"W. Europe Standard Time\":20260801T090000\nDTEND;TZID=/mozilla.org/20070129_1/Europe/Berlin:20260801T100000\nBEGIN:VALARM\nTRIGGER:-P1DT2H\nACTION:DISPLAY\nEND:VALARM\nEND:VEVENT\nBEGIN:VEVENT\nUID:5\nDTSTART;TZID=Mars/Olympus:20260801T090000\nEND:VEVENT\nEND:VCALENDAR\n";
        let ny = TimeZone::get("America/New_York").expect("tz");
        let p = parse_calendar(text, &ny).expect("parse");
        assert_eq!(p.events.len(), 4, "{:?}", p.errors);
        assert!(p.events[0].all_day);
        assert_eq!(p.events[0].end.date().to_string(), "2026-08-15");
        assert_eq!(p.events[1].duration(), jiff::SignedDuration::from_mins(45));
        assert_eq!(
            p.events[2].start.time_zone().iana_name(),
            Some("America/New_York")
        );
        assert_eq!(
            p.events[3].start.time_zone().iana_name(),
            Some("Europe/Berlin")
        );
        assert_eq!(p.events[3].alarms, vec![26 * 60]);
        assert_eq!(p.errors.len(), 1);
        assert!(
            p.errors[0].contains("Mars/Olympus") && p.errors[0].contains("\"5\""),
            "{:?}",
            p.errors
        );
        assert_eq!(
            parse_calendar("hello", &ny).unwrap_err(),
            IcsError::NotCalendar
        );
        let e = parse_calendar("BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:1\n", &ny).unwrap_err();
        assert!(matches!(e, IcsError::Syntax { .. }), "{e}");
    }
}
