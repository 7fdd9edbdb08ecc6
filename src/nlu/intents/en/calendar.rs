//! Appointments: create ("book a dentist appointment on Friday at 3pm with Anna"), list
//! ("what's on my calendar tomorrow", "am I free Thursday afternoon") and move ("move the
//! dentist to Monday at 10"). Cancelling is in `reminders::cancel` with the other cancels.

use super::lex::{at, at_any, w, Token};
use super::reminders::outside;
use super::{numbers, target, when, Utt};
use crate::nlu::intents::spec::{self, Spec};
use crate::nlu::intents::{Intent, Range, When};

/// Words naming an appointment.
const NOUNS: &[&str] = &[
    "appointment",
    "appointments",
    "appt",
    "meeting",
    "meetings",
    "event",
    "events",
];

/// Words naming the calendar itself.
const CALENDAR: &[&str] = &["calendar", "schedule", "agenda", "diary"];

fn has(t: &[Token], words: &[&str]) -> bool {
    t.iter().any(|x| words.contains(&x.norm.as_str()))
}

/// Appointment commands.
pub(super) fn appointment(u: &Utt, t: &[Token]) -> Option<Intent> {
    free(u, t)
        .or_else(|| list(u, t))
        .or_else(|| move_(u, t))
        .or_else(|| create(u, t))
}

/// The range of the time expressions in `t`; label = their words without leading
/// prepositions. `Err(())` if a time expression is there but names no range.
fn range_of(u: &Utt, t: &[Token], found: &[when::Found]) -> Result<Option<Range>, ()> {
    let Some(spec) = when::merged(found) else {
        return if found.is_empty() { Ok(None) } else { Err(()) };
    };
    let mut words = Vec::new();
    for f in found {
        let mut s = f.start;
        while s < f.end && matches!(w(t, s), "on" | "for" | "at" | "in" | "by" | "during") {
            s += 1;
        }
        words.extend(t[s..f.end].iter().map(|x| x.norm.as_str()));
    }
    let label = words.join(" ");
    spec::range(&spec, u.now(), label).map(Some).ok_or(())
}

/// "am I free Thursday afternoon", "when am I free tomorrow", "am I busy on Friday".
fn free(u: &Utt, t: &[Token]) -> Option<Intent> {
    const TRIGGERS: &[&str] = &[
        "am i free",
        "am i available",
        "am i busy",
        "when am i free",
        "when am i available",
        "when do i have time",
        "do i have time",
        "do i have any free time",
        "do i have free time",
        "is my calendar free",
        "is my schedule free",
        "is my calendar clear",
        "is my schedule clear",
        "when is my next free slot",
        "find me a free slot",
        "find a free slot",
    ];
    let n = at_any(t, 0, TRIGGERS)?;
    let rest = &t[n..];
    let found = when::find_all(rest);
    let idx = outside(rest, &found);
    if !idx
        .iter()
        .all(|&i| matches!(w(rest, i), "on" | "at" | "in" | "for" | "this" | "the"))
    {
        return None;
    }
    let range = range_of(u, rest, &found).ok()?;
    Some(Intent::AppointmentList {
        range,
        free_slots: true,
    })
}

/// "what's on my calendar tomorrow", "what appointments do I have this week",
/// "what do I have on Friday", "show my schedule".
fn list(u: &Utt, t: &[Token]) -> Option<Intent> {
    const WORDS: &[&str] = &[
        "what",
        "which",
        "is",
        "are",
        "on",
        "in",
        "my",
        "the",
        "for",
        "do",
        "does",
        "i",
        "have",
        "any",
        "show",
        "me",
        "list",
        "read",
        "tell",
        "about",
        "like",
        "look",
        "looks",
        "how",
        "upcoming",
        "next",
        "all",
        "there",
        "check",
        "open",
        "planned",
        "coming",
        "up",
        "scheduled",
        "got",
        "anything",
        "something",
        "else",
        "going",
        "happening",
        "give",
        "a",
        "we",
        "us",
        "our",
    ];
    let first_ok = matches!(
        w(t, 0),
        "what"
            | "which"
            | "show"
            | "list"
            | "read"
            | "tell"
            | "do"
            | "any"
            | "check"
            | "open"
            | "how"
            | "is"
            | "give"
            | "anything"
    );
    if !first_ok {
        return None;
    }
    let found = when::find_all(t);
    let idx = outside(t, &found);
    if !idx.iter().all(|&i| {
        WORDS.contains(&w(t, i)) || NOUNS.contains(&w(t, i)) || CALENDAR.contains(&w(t, i))
    }) {
        return None;
    }
    let about_calendar = idx
        .iter()
        .any(|&i| NOUNS.contains(&w(t, i)) || CALENDAR.contains(&w(t, i)));
    // "what do I have tomorrow", "anything on Friday", "what's happening this week":
    // without a calendar word only with a day.
    let day_question = !found.is_empty()
        && (at(t, 0, "what do i have")
            || at(t, 0, "do i have anything")
            || at(t, 0, "what is happening")
            || at(t, 0, "what is going on")
            || at(t, 0, "what have i got")
            || at(t, 0, "anything on")
            || at(t, 0, "is there anything"));
    if !(about_calendar || day_question) {
        return None;
    }
    let range = range_of(u, t, &found).ok()?;
    Some(Intent::AppointmentList {
        range,
        free_slots: false,
    })
}

/// The new start of a move: "to Monday at 10". Day-only moves start at the default hour.
fn zoned(spec: &Spec, u: &Utt) -> Option<jiff::Zoned> {
    spec::when(spec, u.now()).map(|w| match w {
        When::At { at } => at,
        When::Recurring { first, .. } => first,
    })
}

/// "move the dentist to Monday at 10", "reschedule my 3pm appointment to 4pm",
/// "postpone the meeting with Anna".
fn move_(u: &Utt, t: &[Token]) -> Option<Intent> {
    const VERBS: &[&str] = &[
        "move",
        "reschedule",
        "postpone",
        "push",
        "shift",
        "change",
        "rebook",
        "put off",
    ];
    let n = at_any(t, 0, VERBS)?;
    let body = &t[n..];
    // The last "to"/"until"/"for" followed by a time expression reaching the end.
    let mut split = None;
    for k in (0..body.len()).rev() {
        if matches!(w(body, k), "to" | "until" | "till" | "for" | "back to") {
            if let Some(spec) = when::whole(&body[k + 1..]) {
                split = Some((k, spec));
                break;
            }
        }
    }
    let strong_verb = matches!(w(t, 0), "reschedule" | "postpone" | "rebook");
    let target_tokens = match &split {
        Some((k, _)) => &body[..*k],
        None => body,
    };
    let noun = target_tokens
        .iter()
        .position(|x| NOUNS.contains(&x.norm.as_str()));
    if noun.is_none() && !(strong_verb || (w(t, 0) == "move" && split.is_some())) {
        return None;
    }
    let mut rest: Vec<Token> = target_tokens.to_vec();
    if let Some(k) = noun {
        rest.remove(k);
    }
    let target = target(u, &rest);
    let to = match &split {
        Some((_, spec)) => Some(zoned(spec, u)?),
        None => None,
    };
    Some(Intent::AppointmentMove { target, to })
}

/// Words that end a name or a place ("with Anna at the clinic on Friday").
fn stops_name(t: &[Token], i: usize) -> bool {
    matches!(
        w(t, i),
        "at" | "on"
            | "in"
            | "for"
            | "with"
            | "about"
            | "regarding"
            | "to"
            | "from"
            | "by"
            | "please"
            | "tomorrow"
            | "today"
            | "tonight"
            | "next"
            | "this"
            | "every"
    ) || when::scan(t, i).is_some()
}

/// "book a dentist appointment on Friday at 3pm for an hour with Anna at the clinic",
/// "add lunch with Anna to my calendar tomorrow at 12", "schedule a meeting at 10".
fn create(u: &Utt, t: &[Token]) -> Option<Intent> {
    const VERBS: &[&str] = &[
        "set up",
        "book",
        "schedule",
        "make",
        "add",
        "create",
        "put",
        "arrange",
        "plan",
        "enter",
        "new",
        "i have",
        "i have got",
    ];
    let n = at_any(t, 0, VERBS)?;
    let verb = w(t, 0);
    // Drop "to my calendar", "in the diary" wherever it is.
    let mut body: Vec<Token> = Vec::with_capacity(t.len());
    let mut on_calendar = false;
    let mut i = n;
    while i < t.len() {
        if matches!(w(t, i), "to" | "in" | "on" | "into" | "onto")
            && matches!(w(t, i + 1), "my" | "the" | "our")
            && CALENDAR.contains(&w(t, i + 2))
        {
            on_calendar = true;
            i += 3;
            continue;
        }
        body.push(t[i].clone());
        i += 1;
    }
    let has_noun = has(&body, NOUNS);
    let found = when::find_all(&body);
    let ok = match verb {
        "put" | "enter" => on_calendar,
        "i" => has_noun && !found.is_empty(),
        "add" | "make" | "create" | "new" | "plan" | "arrange" | "set" => has_noun || on_calendar,
        // "book"/"schedule" are calendar verbs, but "book a flight" is not an appointment.
        _ => has_noun || on_calendar || !found.is_empty(),
    };
    if !ok {
        return None;
    }
    let b = &body[..];
    let mut spec: Option<Spec> = None;
    let mut duration = None;
    let mut with = None;
    let mut location = None;
    let mut title: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if w(b, i) == "for" {
            if let Some((d, j)) = numbers::duration(b, i + 1) {
                if duration.is_none() {
                    duration = Some(d.signed());
                    i = j;
                    continue;
                }
            }
        }
        if let Some((s, j)) = when::scan(b, i) {
            match &mut spec {
                None => spec = Some(s),
                Some(have) => {
                    if !have.merge(s) {
                        return None;
                    }
                }
            }
            i = j;
            continue;
        }
        if matches!(w(b, i), "with" | "at" | "in") {
            let mut j = i + 1;
            while j < b.len() && !(j > i + 1 && stops_name(b, j)) {
                j += 1;
            }
            if j > i + 1 {
                let text = u.text(&b[i + 1..j]);
                let slot = if w(b, i) == "with" {
                    &mut with
                } else {
                    &mut location
                };
                if slot.is_none() {
                    *slot = text;
                    i = j;
                    continue;
                }
            }
        }
        title.push(i);
        i += 1;
    }
    // Title: without determiners and the generic noun; "doctor's appointment" → "doctor".
    while let Some(&k) = title.first() {
        if matches!(w(b, k), "a" | "an" | "the" | "my" | "new" | "up") {
            title.remove(0);
        } else {
            break;
        }
    }
    let generic = |k: usize| matches!(w(b, k), "appointment" | "appointments" | "appt");
    let title_text = match title.iter().position(|&k| generic(k)) {
        Some(p) if p > 0 => {
            let before = &title[..p];
            let contiguous = before.windows(2).all(|x| x[1] == x[0] + 1);
            if contiguous {
                super::lex::stem_text(u.src, &b[before[0]..=before[p - 1]])
            } else {
                u.text_of(b, before)
            }
        }
        Some(_) => {
            let after: Vec<usize> = title.iter().copied().filter(|&k| !generic(k)).collect();
            u.text_of(b, &after)
        }
        None => u.text_of(b, &title),
    };
    if title_text
        .as_deref()
        .is_some_and(|s| s.split_whitespace().count() > 6)
    {
        return None;
    }
    let start = match &spec {
        Some(s) => Some(zoned(s, u)?),
        None => None,
    };
    Some(Intent::AppointmentCreate {
        title: title_text,
        start,
        duration,
        with,
        location,
    })
}
