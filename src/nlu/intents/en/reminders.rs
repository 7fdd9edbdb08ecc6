//! Reminders, timers, memory and the shared "cancel/delete/stop <thing>" grammar.

use super::lex::{at, at_any, is, w, Token};
use super::{numbers, target, when, Utt};
use crate::nlu::intents::{spec, Intent};

/// Words allowed in a "list my X" question besides the noun.
pub(super) const LIST_WORDS: &[&str] = &[
    "what",
    "which",
    "are",
    "is",
    "my",
    "the",
    "all",
    "me",
    "do",
    "i",
    "have",
    "any",
    "list",
    "show",
    "read",
    "tell",
    "set",
    "upcoming",
    "there",
    "current",
    "active",
    "running",
    "pending",
    "out",
    "open",
    "check",
    "got",
    "see",
    "a",
    "give",
    "let",
    "us",
    "on",
    "at",
    "look",
    "many",
    "how",
    "left",
    "remaining",
    "still",
];

/// True if `t` is a "list/show/what are my <noun>" question: a noun from `nouns` and
/// otherwise only list words.
pub(super) fn is_list_question(t: &[Token], nouns: &[&str]) -> bool {
    let first_ok = matches!(
        w(t, 0),
        "what"
            | "which"
            | "list"
            | "show"
            | "read"
            | "tell"
            | "do"
            | "are"
            | "any"
            | "my"
            | "check"
            | "give"
            | "how"
            | "let"
            | "open"
    );
    first_ok
        && t.iter().any(|x| nouns.contains(&x.norm.as_str()))
        && t.iter()
            .all(|x| nouns.contains(&x.norm.as_str()) || LIST_WORDS.contains(&x.norm.as_str()))
}

/// Indices of `t` not inside any of the found time expressions.
pub(super) fn outside(t: &[Token], found: &[when::Found]) -> Vec<usize> {
    (0..t.len())
        .filter(|i| !found.iter().any(|f| (f.start..f.end).contains(i)))
        .collect()
}

const REMINDER_TRIGGERS: &[&str] = &[
    "remind me",
    "remind us",
    "set me a reminder",
    "set a reminder",
    "set reminder",
    "set up a reminder",
    "create a reminder",
    "add a reminder",
    "make a reminder",
    "give me a reminder",
    "new reminder",
    "a reminder",
    "reminder",
    "remember to",
    "do not let me forget",
    "do not forget to",
];

const ALARM_TRIGGERS: &[&str] = &[
    "wake me up",
    "wake me",
    "set an alarm",
    "set alarm",
    "set the alarm",
    "set my alarm",
    "set me an alarm",
    "alarm",
    "an alarm",
];

/// "remind me to call mom tomorrow at 5pm", "remind me at 5 to take the pills",
/// "what are my reminders", "set an alarm for 7am".
pub(super) fn reminder(u: &Utt, t: &[Token]) -> Option<Intent> {
    if is_list_question(t, &["reminders", "reminder", "alarms"]) {
        return Some(Intent::ReminderList);
    }
    let (n, alarm) = match at_any(t, 0, REMINDER_TRIGGERS) {
        Some(n) => (n, None),
        None => {
            let n = at_any(t, 0, ALARM_TRIGGERS)?;
            let what = if w(t, 0) == "wake" {
                "wake up"
            } else {
                "alarm"
            };
            (n, Some(what))
        }
    };
    // "remember to" keeps "to" so the text below strips it uniformly.
    let body_start = if at(t, 0, "remember to") || at(t, 0, "do not forget to") {
        n - 1
    } else {
        n
    };
    let body = &t[body_start..];
    let found = when::find_all(body);
    let mut spec = when::merged(&found);
    if let Some(s) = spec.as_mut().filter(|_| alarm == Some("wake up")) {
        // "wake me up at 6:30" means the morning.
        let bare = matches!(s.clock, Some(spec::Clock::Hm { meridiem: None, .. }));
        if bare && s.part.is_none() {
            s.part = Some(spec::Part::Morning);
        }
    }
    let when = spec.as_ref().and_then(|s| spec::when(s, u.now()));
    if spec.is_some() && when.is_none() {
        // A time was said but means nothing resolvable ("next week"): not for the fast path.
        return None;
    }
    let mut idx = outside(body, &found);
    // Leading "to"/"that"/"about"/"of"/"me", trailing connectors.
    while let Some(&i) = idx.first() {
        if matches!(
            w(body, i),
            "to" | "that" | "about" | "of" | "me" | "for" | "i" | "should"
        ) {
            idx.remove(0);
        } else {
            break;
        }
    }
    while let Some(&i) = idx.last() {
        if matches!(
            w(body, i),
            "and" | "please" | "then" | "to" | "for" | "on" | "at"
        ) {
            idx.pop();
        } else {
            break;
        }
    }
    let what = u.text_of(body, &idx).or(alarm.map(str::to_string));
    Some(Intent::ReminderSet { what, when })
}

/// "set a timer for 10 minutes", "set a pasta timer for 8 minutes", "how much time is left".
pub(super) fn timer(u: &Utt, t: &[Token]) -> Option<Intent> {
    const LEFT: &[&str] = &[
        "how much time is left",
        "how much time is left on my timer",
        "how much time is left on the timer",
        "how much time do i have left",
        "how much longer",
        "how long is left",
        "how long is left on the timer",
        "how long is left on my timer",
        "how long until the timer goes off",
        "how long until my timer goes off",
        "how is my timer doing",
        "how is the timer doing",
        "time left",
        "time left on the timer",
        "check the timer",
        "check my timer",
        "check the timers",
        "check my timers",
        "timer status",
    ];
    if LEFT.iter().any(|p| is(t, p)) || is_list_question(t, &["timers", "timer"]) {
        return Some(Intent::TimerList);
    }
    let k = t.iter().position(|x| x.norm == "timer")?;
    const VERBS: &[&str] = &[
        "set", "start", "create", "make", "put on", "add", "new", "begin",
    ];
    let start = at_any(t, 0, VERBS).unwrap_or(0);
    // Without a verb only a bare "pasta timer for 8 minutes" / "timer 5 minutes" counts:
    // not "the timer is beeping".
    if start == 0 && (k > 3 || matches!(w(t, 0), "the" | "my" | "is" | "this" | "that")) {
        return None;
    }
    let mut idx: Vec<usize> = Vec::new();
    let mut duration = None;
    let mut i = start;
    while i < t.len() {
        if i == k {
            i += 1;
            continue;
        }
        let d_at = if w(t, i) == "for" { i + 1 } else { i };
        if duration.is_none() {
            if let Some((d, j)) = numbers::duration(t, d_at) {
                duration = Some(d.signed());
                i = j;
                continue;
            }
            // "a 10 minute timer": the unit is singular before the noun.
            if let Some((n, j)) = numbers::number(t, i) {
                if j + 1 == k && !n.ordinal {
                    let unit = match w(t, j) {
                        "minute" | "min" => 60.0,
                        "second" | "sec" => 1.0,
                        "hour" => 3600.0,
                        _ => 0.0,
                    };
                    if unit > 0.0 {
                        duration = Some(jiff::SignedDuration::from_secs(
                            (n.value * unit).round() as i64
                        ));
                        i = j + 1;
                        continue;
                    }
                }
            }
        }
        idx.push(i);
        i += 1;
    }
    while let Some(&i) = idx.first() {
        if matches!(
            w(t, i),
            "a" | "an"
                | "the"
                | "my"
                | "me"
                | "for"
                | "called"
                | "named"
                | "labelled"
                | "labeled"
                | "with"
                | "name"
                | "label"
                | "and"
        ) {
            idx.remove(0);
        } else {
            break;
        }
    }
    // "for the pasta" after the duration: drop connectors between runs.
    idx.retain(|&i| {
        !matches!(
            w(t, i),
            "for" | "the" | "called" | "named" | "a" | "an" | "of"
        )
    });
    if idx.len() > 3 || (start == 0 && idx.iter().any(|&i| i > k)) {
        return None;
    }
    let label = u.text_of(t, &idx);
    Some(Intent::TimerSet { duration, label })
}

const CANCEL_VERBS: &[&str] = &[
    "cancel",
    "delete",
    "remove",
    "clear",
    "stop",
    "turn off",
    "switch off",
    "dismiss",
    "get rid of",
    "erase",
    "drop",
    "call off",
];

/// "cancel the reminder to call mom", "stop the pasta timer", "cancel my 3pm appointment".
pub(super) fn cancel(u: &Utt, t: &[Token]) -> Option<Intent> {
    let n = at_any(t, 0, CANCEL_VERBS)?;
    let obj = &t[n..];
    let noun = |list: &[&str]| obj.iter().position(|x| list.contains(&x.norm.as_str()));
    let without = |k: usize| -> Vec<Token> {
        let mut v = obj.to_vec();
        v.remove(k);
        v
    };
    if let Some(k) = noun(&["reminder", "reminders", "alarm", "alarms"]) {
        let rest = without(k);
        return Some(Intent::ReminderCancel {
            target: target(u, &rest),
        });
    }
    if let Some(k) = noun(&["timer", "timers"]) {
        let rest = without(k);
        return Some(Intent::TimerCancel {
            target: target(u, &rest),
        });
    }
    if let Some(k) = noun(&[
        "appointment",
        "appointments",
        "appt",
        "meeting",
        "meetings",
        "event",
        "events",
    ]) {
        let mut rest = without(k);
        // "cancel the dentist appointment on Friday": the name wins over the day.
        let found = when::find_all(&rest);
        let named: Vec<usize> = outside(&rest, &found);
        let named_words = named
            .iter()
            .filter(|&&i| !super::DETERMINERS.contains(&w(&rest, i)))
            .count();
        if named_words > 0 && !found.is_empty() && found.iter().all(|f| f.start > 0) {
            rest.truncate(found[0].start);
        }
        return Some(Intent::AppointmentCancel {
            target: target(u, &rest),
        });
    }
    None
}

/// "remember that the spare key is under the pot", "remember" (fact asked for).
pub(super) fn remember(u: &Utt, t: &[Token]) -> Option<Intent> {
    const TRIGGERS: &[&str] = &[
        "please remember",
        "remember this",
        "remember that",
        "remember",
        "make a note that",
        "make a note of",
        "make a note",
        "take a note that",
        "take a note",
        "note that",
        "keep in mind that",
        "keep in mind",
        "do not forget that",
        "memorize that",
        "memorize",
        "for the record",
    ];
    let n = at_any(t, 0, TRIGGERS)?;
    let rest = &t[n..];
    if rest.is_empty() {
        return Some(Intent::MemoryRemember { fact: None });
    }
    // "remember when we ...", "remember me?" are conversation, not facts to store.
    if matches!(
        w(rest, 0),
        "when" | "what" | "how" | "who" | "why" | "me" | "us"
    ) {
        return None;
    }
    Some(Intent::MemoryRemember { fact: u.text(rest) })
}

/// "what did I say about the spare key", "what do you remember about the car".
pub(super) fn recall(u: &Utt, t: &[Token]) -> Option<Intent> {
    const TRIGGERS: &[&str] = &[
        "what did i tell you about",
        "what did i say about",
        "what did i mention about",
        "what have i told you about",
        "what do you remember about",
        "what do you know about my",
        "do you remember what i said about",
        "do you remember what i told you about",
        "remind me what i said about",
        "remind me what i told you about",
        "what did i ask you to remember about",
        "what did i ask you to remember",
        "what did i tell you",
        "what have i told you",
        "what do you remember",
        "recall",
    ];
    let n = at_any(t, 0, TRIGGERS)?;
    let mut rest = &t[n..];
    while let Some(k) = at_any(rest, 0, super::DETERMINERS) {
        rest = &rest[k..];
    }
    Some(Intent::MemoryRecall {
        query: u.text(rest),
    })
}

/// "forget what I said about the spare key", "forget that my pin is 1234". A bare "forget it"
/// or "forget that" is a stop (matched before this).
pub(super) fn forget(u: &Utt, t: &[Token]) -> Option<Intent> {
    const TRIGGERS: &[&str] = &[
        "forget what i said about",
        "forget what i told you about",
        "forget everything i said about",
        "forget everything i told you about",
        "forget everything about",
        "forget what you know about",
        "forget what you remember about",
        "forget the fact that",
        "forget about",
        "forget that",
        "stop remembering that",
        "stop remembering",
        "delete what i said about",
        "delete the memory about",
        "erase what i said about",
    ];
    let n = at_any(t, 0, TRIGGERS)?;
    let mut rest = &t[n..];
    while let Some(k) = at_any(rest, 0, super::DETERMINERS) {
        rest = &rest[k..];
    }
    if rest.is_empty() {
        return None;
    }
    Some(Intent::MemoryForget {
        query: u.text(rest),
    })
}

/// "snooze", "snooze it for 5 minutes", "snooze the timer 10 minutes", "remind me again in
/// 15 minutes": the reminder or timer that just went off, again later.
pub(super) fn snooze(t: &[Token]) -> Option<Intent> {
    const TRIGGERS: &[&str] = &["snooze", "remind me again", "remind me later"];
    let n = at_any(t, 0, TRIGGERS)?;
    let mut i = n;
    // What is snoozed, if said: "it", "that", "the alarm/timer/reminder".
    while i < t.len()
        && matches!(
            w(t, i),
            "it" | "that" | "this" | "the" | "my" | "alarm" | "timer" | "reminder"
        )
    {
        i += 1;
    }
    if matches!(w(t, i), "for" | "in" | "by") {
        i += 1;
    }
    if i >= t.len() {
        return Some(Intent::ReminderSnooze { minutes: None });
    }
    // "remind me again" needs a time to be a snooze ("remind me again tomorrow" is not).
    let (d, j) = numbers::duration(t, i)?;
    if j != t.len() {
        return None;
    }
    let secs = d.signed().as_secs();
    Some(Intent::ReminderSnooze {
        minutes: Some(((secs + 59) / 60).max(1)),
    })
}
