//! English grammar of the fast path.
//!
//! A hand-written tokenizer ([`lex`]) turns the utterance into lower-cased words that remember
//! where they were in the original text; [`when`] recognises time expressions and [`numbers`]
//! numbers and durations; the command grammars ([`reminders`], [`calendar`], [`tasks`]) match
//! phrasings and cut slot text out of the original. Matching is deliberately strict: an
//! utterance that is not clearly one of the household commands returns `None` so the LLM
//! answers it ("what is the capital of France", "I want to set the table").
//!
//! Nothing here allocates more than the token list and the slot strings; there is no regex.

mod calendar;
mod lex;
mod numbers;
mod reminders;
mod tasks;
mod when;

use jiff::Zoned;

use super::spec::{self, Spec};
use super::{Intent, ParseContext, SlotKind, SlotValue, Target, When};
use lex::{at_any, is, w, Token};

/// An utterance being parsed.
pub(super) struct Utt<'a> {
    /// The original text (slot text is cut from it).
    pub src: &'a str,
    /// The context.
    pub ctx: &'a ParseContext,
}

impl Utt<'_> {
    /// Now.
    fn now(&self) -> &Zoned {
        &self.ctx.now
    }

    /// Original text of the tokens.
    fn text(&self, t: &[Token]) -> Option<String> {
        lex::text(self.src, t)
    }

    /// Original text of the tokens at `idx`: runs of tokens that are next to each other in
    /// the original are cut out whole, separate runs are joined by a space.
    fn text_of(&self, t: &[Token], idx: &[usize]) -> Option<String> {
        self.runs(t, idx, false)
    }

    /// Like [`Utt::text_of`], without a possessive "'s" on the last word.
    fn stem_text_of(&self, t: &[Token], idx: &[usize]) -> Option<String> {
        self.runs(t, idx, true)
    }

    fn runs(&self, t: &[Token], idx: &[usize], stem: bool) -> Option<String> {
        let adjacent = |a: &Token, b: &Token| {
            b.start <= a.end
                || self
                    .src
                    .get(a.end..b.start)
                    .is_some_and(|gap| !gap.chars().any(char::is_alphanumeric))
        };
        let mut parts = Vec::new();
        let mut run_start = 0;
        for k in 0..idx.len() {
            let last_of_run = k + 1 == idx.len()
                || idx[k + 1] != idx[k] + 1
                || !adjacent(&t[idx[k]], &t[idx[k + 1]]);
            if last_of_run {
                let run = &t[idx[run_start]..=idx[k]];
                let s = if stem && k + 1 == idx.len() {
                    lex::stem_text(self.src, run)
                } else {
                    self.text(run)
                };
                parts.extend(s);
                run_start = k + 1;
            }
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// Words of politeness and hesitation before a command.
const LEADING_FILLERS: &[&str] = &[
    "can you please",
    "could you please",
    "would you please",
    "will you please",
    "can you",
    "could you",
    "would you",
    "will you",
    "i want you to",
    "i would like you to",
    "i need you to",
    "i would like to",
    "i want to",
    "go ahead and",
    "please",
    "kindly",
    "hey",
    "hi",
    "hello",
    "ok",
    "okay",
    "so",
    "um",
    "uh",
    "er",
    "well",
    "oh",
    "and",
    "now",
];

/// Words of politeness after a command.
const TRAILING_FILLERS: &[&str] = &["please", "thanks", "thank you", "for me"];

/// The command without politeness around it.
fn strip_fillers(t: &[Token]) -> &[Token] {
    let mut t = t;
    while let Some(n) = at_any(t, 0, LEADING_FILLERS) {
        if n >= t.len() {
            break;
        }
        t = &t[n..];
    }
    loop {
        let before = t.len();
        for f in TRAILING_FILLERS {
            let n = lex::len(f);
            if t.len() > n && lex::at(t, t.len() - n, f) {
                t = &t[..t.len() - n];
                break;
            }
        }
        if t.len() == before {
            break;
        }
    }
    t
}

/// Phrases of agreement; an answer made only of these (and fillers) is "yes".
const YES: &[&str] = &[
    "yes please",
    "yes",
    "yeah",
    "yep",
    "yup",
    "yea",
    "ya",
    "aye",
    "sure thing",
    "sure",
    "ok",
    "okay",
    "okey",
    "alright",
    "all right",
    "please do",
    "do it",
    "do that",
    "let us do it",
    "go ahead",
    "go for it",
    "of course",
    "absolutely",
    "definitely",
    "certainly",
    "that is correct",
    "correct",
    "that is right",
    "right",
    "exactly",
    "confirm",
    "confirmed",
    "affirmative",
    "sounds good",
    "sounds great",
    "that works",
    "works for me",
    "perfect",
    "great",
    "good",
    "fine",
    "that is fine",
    "why not",
    "indeed",
    "uh huh",
    "mhm",
    "you bet",
    "i do",
];

/// Phrases of refusal; an answer made only of these (and fillers) is "no".
const NO: &[&str] = &[
    "no thank you",
    "no thanks",
    "no need",
    "no way",
    "no",
    "nope",
    "nah",
    "of course not",
    "absolutely not",
    "definitely not",
    "better not",
    "please do not",
    "do not do it",
    "do not do that",
    "do not",
    "not now",
    "not really",
    "not at all",
    "not yet",
    "negative",
    "that is wrong",
    "wrong",
    "incorrect",
    "i do not think so",
    "i do not",
];

/// Words that may accompany a yes or a no.
const ANSWER_FILLERS: &[&str] = &[
    "thank you",
    "thanks",
    "please",
    "oh",
    "um",
    "uh",
    "well",
    "i think",
    "i guess",
    "it is fine",
];

/// Yes / No when the whole utterance is made of agreement or refusal phrases.
fn yes_no(t: &[Token]) -> Option<Intent> {
    let (mut yes, mut no) = (false, false);
    let mut i = 0;
    while i < t.len() {
        // Longest match first, across the three lists.
        let best = [(YES, 1), (NO, 2), (ANSWER_FILLERS, 0)]
            .iter()
            .filter_map(|(list, kind)| at_any_longest(t, i, list).map(|n| (n, *kind)))
            .max_by_key(|(n, _)| *n);
        match best {
            Some((n, 1)) => {
                yes = true;
                i += n;
            }
            Some((n, 2)) => {
                no = true;
                i += n;
            }
            Some((n, _)) => i += n,
            None => return None,
        }
    }
    match (yes, no) {
        (true, false) => Some(Intent::Yes),
        (false, true) => Some(Intent::No),
        _ => None,
    }
}

fn at_any_longest(t: &[Token], i: usize, phrases: &[&str]) -> Option<usize> {
    phrases
        .iter()
        .filter(|p| lex::at(t, i, p))
        .map(|p| lex::len(p))
        .max()
}

const STOP: &[&str] = &[
    "stop",
    "stop it",
    "stop that",
    "stop talking",
    "be quiet",
    "quiet",
    "shut up",
    "hush",
    "silence",
    "be silent",
    "enough",
    "that is enough",
    "never mind",
    "nevermind",
    "forget it",
    "forget about it",
    "forget that",
    "stop the alarm",
    "turn off the alarm",
    "silence the alarm",
];

const CANCEL: &[&str] = &["cancel", "cancel that", "cancel it", "cancel this", "abort"];

const HELP: &[&str] = &[
    "help",
    "help me",
    "i need help",
    "what can you do",
    "what else can you do",
    "what can i say",
    "what can i ask",
    "what can i ask you",
    "what are you able to do",
    "what do you do",
    "how do i use you",
    "how does this work",
    "what commands do you know",
    "what are your commands",
    "what are your features",
];

const TIME_NOW: &[&str] = &[
    "what time is it",
    "what time is it now",
    "what time is it right now",
    "what is the time",
    "what is the time now",
    "what is the time right now",
    "what is the current time",
    "tell me the time",
    "give me the time",
    "say the time",
    "do you know what time it is",
    "do you have the time",
    "what time do you have",
    "time",
    "the time",
    "current time",
    "the current time",
    "time check",
    "how late is it",
];

fn short(t: &[Token]) -> Option<Intent> {
    let any = |list: &[&str]| list.iter().any(|p| is(t, p));
    if any(STOP) {
        Some(Intent::Stop)
    } else if any(CANCEL) {
        Some(Intent::Cancel)
    } else if any(HELP) {
        Some(Intent::Help)
    } else if any(TIME_NOW) {
        Some(Intent::TimeNow)
    } else {
        None
    }
}

/// "what's the date", "what day is next Friday", "what's tomorrow's date".
fn date_query(u: &Utt, t: &[Token]) -> Option<Intent> {
    if !matches!(w(t, 0), "what" | "which" | "tell" | "when") {
        return None;
    }
    let found = when::find_all(t);
    let idx = reminders::outside(t, &found);
    const ALLOWED: &[&str] = &[
        "what", "which", "is", "the", "date", "day", "it", "of", "week", "will", "be", "going",
        "to", "on", "tell", "me", "give", "current", "does", "when", "falls", "fall", "month",
        "year",
    ];
    if !idx.iter().all(|&i| ALLOWED.contains(&w(t, i))) {
        return None;
    }
    let has_day_word = idx.iter().any(|&i| matches!(w(t, i), "date" | "day"));
    let spec = when::merged(&found);
    match spec {
        None if has_day_word => Some(Intent::DateQuery { day: None }),
        None => None,
        Some(spec) => {
            if spec.clock.is_some() || spec.rec.is_some() || spec.week.is_some() {
                return None;
            }
            if !has_day_word && spec.day != Some(spec::Day::Today) && w(t, 0) != "when" {
                return None;
            }
            let day = spec::date(&spec, u.now())?;
            Some(Intent::DateQuery {
                day: (day != u.now().date()).then_some(day),
            })
        }
    }
}

/// Resolve a time expression that names what something is ("my 3pm appointment",
/// "tomorrow's reminders"): a day without a time is its start (00:00).
fn target_when(spec: &Spec, now: &Zoned) -> Option<When> {
    let day_only = spec.clock.is_none()
        && spec.part.is_none()
        && spec.rec.is_none()
        && (spec.day.is_some() || spec.rel.is_some_and(|r| r.secs == 0));
    if day_only {
        let date = spec::date(spec, now)?;
        return Some(When::At {
            at: spec::day_start(date, now)?,
        });
    }
    spec::when(spec, now)
}

/// Determiners dropped at the start of a named target.
const DETERMINERS: &[&str] = &["the", "my", "our", "a", "an", "this", "that", "your"];

/// Target of a cancel/move/complete: all, last, by time, or by name.
fn target(u: &Utt, t: &[Token]) -> Option<Target> {
    let mut t = t;
    if t.iter()
        .any(|x| matches!(x.norm.as_str(), "all" | "every" | "everything"))
    {
        return Some(Target::All);
    }
    if [
        "it",
        "that",
        "this",
        "that one",
        "this one",
        "the last one",
        "the last",
        "the latest one",
    ]
    .iter()
    .any(|p| is(t, p))
        || t.iter()
            .any(|x| matches!(x.norm.as_str(), "last" | "latest" | "previous"))
    {
        return Some(Target::Last);
    }
    while let Some(n) = at_any(t, 0, DETERMINERS) {
        t = &t[n..];
    }
    while let Some(n) = at_any(
        t,
        0,
        &["to", "about", "for", "called", "named", "of", "with"],
    ) {
        if n >= t.len() {
            break;
        }
        t = &t[n..];
    }
    if t.is_empty() {
        return None;
    }
    if let Some(spec) = when::whole(t) {
        return target_when(&spec, u.now()).map(|when| Target::At { when });
    }
    let idx: Vec<usize> = (0..t.len()).collect();
    let text = u.stem_text_of(t, &idx)?;
    Some(Target::Named { text })
}

/// Parse an English utterance.
pub(super) fn parse(text: &str, ctx: &ParseContext) -> Option<Intent> {
    let tokens = lex::tokenize(text);
    if tokens.is_empty() {
        return None;
    }
    if let Some(i) = yes_no(&tokens) {
        return Some(i);
    }
    let t = strip_fillers(&tokens);
    let u = Utt { src: text, ctx };
    short(t)
        .or_else(|| date_query(&u, t))
        .or_else(|| reminders::recall(&u, t))
        .or_else(|| reminders::forget(&u, t))
        .or_else(|| reminders::snooze(t))
        .or_else(|| reminders::reminder(&u, t))
        .or_else(|| reminders::cancel(&u, t))
        .or_else(|| reminders::timer(&u, t))
        .or_else(|| calendar::appointment(&u, t))
        .or_else(|| tasks::task(&u, t))
        .or_else(|| reminders::remember(&u, t))
}

/// Parse an English slot answer.
pub(super) fn parse_slot(text: &str, kind: SlotKind, ctx: &ParseContext) -> Option<SlotValue> {
    let tokens = lex::tokenize(text);
    let t = strip_fillers(&tokens);
    if t.is_empty() {
        return None;
    }
    match kind {
        SlotKind::Text => {
            let mut t = t;
            while let Some(n) = at_any(t, 0, &["to", "that", "um", "uh", "it is"]) {
                if n >= t.len() {
                    break;
                }
                t = &t[n..];
            }
            lex::text(text, t).map(SlotValue::Text)
        }
        SlotKind::When => {
            let spec = when::whole(t)?;
            spec::when(&spec, &ctx.now).map(SlotValue::When)
        }
        SlotKind::DateTime => {
            let spec = when::whole(t)?;
            match spec::when(&spec, &ctx.now)? {
                When::At { at } => Some(SlotValue::DateTime(at)),
                When::Recurring { .. } => None,
            }
        }
        SlotKind::Duration => {
            let mut i = 0;
            while let Some(n) = at_any(t, i, &["for", "about", "around", "maybe", "make it", "um"])
            {
                i += n;
            }
            let (d, j) = numbers::duration(t, i)?;
            (j == t.len()).then(|| SlotValue::Duration(d.signed()))
        }
    }
}
