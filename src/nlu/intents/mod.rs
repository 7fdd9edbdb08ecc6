//! The deterministic fast path: everyday household commands → an [`Intent`] with typed slots.
//!
//! Language-specific grammars live in submodules (`en` first); [`parse`] picks the one for the
//! configured language. Times are resolved in the device time zone from [`ParseContext::now`].
//! A slot the person did not give is `None`: the orchestrator asks for it (slot filling) and
//! parses the answer with [`parse_slot`].

mod en;
pub mod spec;
pub mod time;

use serde::Serialize;

pub use time::{Recurrence, When};

/// What the parser needs besides the text.
#[derive(Debug, Clone)]
pub struct ParseContext {
    /// "Now" in the device time zone; relative expressions resolve against it.
    pub now: jiff::Zoned,
    /// Language tag, e.g. `en`.
    pub language: String,
}

impl ParseContext {
    /// English, at `now`.
    pub fn en(now: jiff::Zoned) -> Self {
        Self {
            now,
            language: "en".into(),
        }
    }
}

/// Which appointments/reminders/timers/tasks an utterance refers to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// "all my appointments", "all timers".
    All,
    /// By description words: "the dentist", "call mom".
    Named {
        /// The words.
        text: String,
    },
    /// By time: "my 3pm appointment", "tomorrow's appointments".
    At {
        /// The time or day.
        when: When,
    },
    /// "the last one", "it" (the most recent one in this conversation).
    Last,
}

/// Task progress as said.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Progress {
    /// "50 percent", "half".
    Percent {
        /// 0..=100.
        percent: u8,
    },
    /// "3 of 5 done".
    Steps {
        /// Done.
        done: u32,
        /// Total.
        total: u32,
    },
}

/// A span of days/times asked about ("today", "this week", "Thursday afternoon").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Range {
    /// Start (inclusive).
    pub start: jiff::Zoned,
    /// End (exclusive).
    pub end: jiff::Zoned,
    /// How it was said, normalised ("tomorrow", "this week").
    pub label: String,
}

/// An understood command with its slots. Slot `None` = not said.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "intent", rename_all = "snake_case")]
pub enum Intent {
    /// "remind me to call mom tomorrow at 5pm", "remind me every Monday to take out the bins".
    ReminderSet {
        /// What to remind of ("call mom").
        what: Option<String>,
        /// When (one-off or recurring).
        when: Option<When>,
    },
    /// "what are my reminders".
    ReminderList,
    /// "cancel the reminder to call mom", "delete all reminders".
    ReminderCancel {
        /// Which.
        target: Option<Target>,
    },
    /// "snooze", "snooze it for 5 minutes": the reminder or timer that just went off.
    ReminderSnooze {
        /// By how long, in minutes (None = the default).
        minutes: Option<i64>,
    },
    /// "set a timer for 10 minutes", "set a pasta timer for 8 minutes".
    TimerSet {
        /// How long.
        duration: Option<jiff::SignedDuration>,
        /// Its name ("pasta").
        label: Option<String>,
    },
    /// "how much time is left on my timer", "list timers".
    TimerList,
    /// "cancel the timer", "stop the pasta timer".
    TimerCancel {
        /// Which.
        target: Option<Target>,
    },
    /// "what time is it".
    TimeNow,
    /// "what's the date", "what day is next Friday".
    DateQuery {
        /// The day asked about (None = today).
        day: Option<jiff::civil::Date>,
    },
    /// "book a dentist appointment on Friday at 3pm for an hour with Anna".
    AppointmentCreate {
        /// Title.
        title: Option<String>,
        /// Start.
        start: Option<jiff::Zoned>,
        /// Length.
        duration: Option<jiff::SignedDuration>,
        /// With whom (contact name as said).
        with: Option<String>,
        /// Where.
        location: Option<String>,
    },
    /// "what's on my calendar tomorrow", "am I free on Thursday afternoon".
    AppointmentList {
        /// Range (None = upcoming).
        range: Option<Range>,
        /// True for "am I free …" / "when am I free …".
        free_slots: bool,
    },
    /// "move the dentist to Monday at 10".
    AppointmentMove {
        /// Which.
        target: Option<Target>,
        /// New start.
        to: Option<jiff::Zoned>,
    },
    /// "cancel my 3pm appointment", "cancel all my appointments".
    AppointmentCancel {
        /// Which.
        target: Option<Target>,
    },
    /// "add buy milk to my shopping list", "add a task to fix the fence due Friday".
    TaskAdd {
        /// Description.
        description: Option<String>,
        /// Project/list ("shopping").
        project: Option<String>,
        /// Due date/time.
        due: Option<jiff::Zoned>,
    },
    /// "what's on my todo list", "show my shopping list".
    TaskList {
        /// Project/list.
        project: Option<String>,
    },
    /// "mark buy milk as done".
    TaskComplete {
        /// Which.
        target: Option<Target>,
    },
    /// "the fence is 50 percent done", "I've done 3 of 5 steps of the report".
    TaskProgress {
        /// Which.
        target: Option<Target>,
        /// How far.
        progress: Option<Progress>,
    },
    /// "remember that the spare key is under the pot".
    MemoryRemember {
        /// The fact.
        fact: Option<String>,
    },
    /// "what did I say about the spare key".
    MemoryRecall {
        /// The topic.
        query: Option<String>,
    },
    /// "forget what I said about the spare key".
    MemoryForget {
        /// The topic.
        query: Option<String>,
    },
    /// "help", "what can you do".
    Help,
    /// "stop", "be quiet", "never mind".
    Stop,
    /// "cancel" alone (abort the current dialogue).
    Cancel,
    /// "yes", "sure", "do it".
    Yes,
    /// "no", "don't".
    No,
}

impl Intent {
    /// Whether an utterance parsed to this intent is finished: every slot it needs is given
    /// and nothing usually follows it. A voice channel may then end the utterance at a short
    /// pause instead of waiting out `speech.vad.min_silence_ms`. Commands that are dictated
    /// (appointments, tasks, facts to remember) or still miss a slot never end early: more
    /// words may come after a pause.
    pub fn ends_utterance(&self) -> bool {
        match self {
            Intent::ReminderSet { what, when } => what.is_some() && when.is_some(),
            Intent::ReminderCancel { target }
            | Intent::TimerCancel { target }
            | Intent::AppointmentCancel { target }
            | Intent::TaskComplete { target } => target.is_some(),
            Intent::TimerSet { duration, .. } => duration.is_some(),
            Intent::AppointmentList { range, .. } => range.is_some(),
            Intent::AppointmentMove { target, to } => target.is_some() && to.is_some(),
            Intent::TaskProgress { target, progress } => target.is_some() && progress.is_some(),
            Intent::MemoryRecall { query } | Intent::MemoryForget { query } => query.is_some(),
            Intent::ReminderList
            | Intent::ReminderSnooze { .. }
            | Intent::TimerList
            | Intent::TimeNow
            | Intent::DateQuery { .. }
            | Intent::TaskList { .. }
            | Intent::Help
            | Intent::Stop
            | Intent::Cancel
            | Intent::Yes
            | Intent::No => true,
            Intent::AppointmentCreate { .. }
            | Intent::TaskAdd { .. }
            | Intent::MemoryRemember { .. } => false,
        }
    }

    /// Stable dotted name for logs, metrics and the API, e.g. `reminder.set`.
    pub fn name(&self) -> &'static str {
        match self {
            Intent::ReminderSet { .. } => "reminder.set",
            Intent::ReminderList => "reminder.list",
            Intent::ReminderCancel { .. } => "reminder.cancel",
            Intent::ReminderSnooze { .. } => "reminder.snooze",
            Intent::TimerSet { .. } => "timer.set",
            Intent::TimerList => "timer.list",
            Intent::TimerCancel { .. } => "timer.cancel",
            Intent::TimeNow => "time.now",
            Intent::DateQuery { .. } => "date.query",
            Intent::AppointmentCreate { .. } => "appointment.create",
            Intent::AppointmentList { .. } => "appointment.list",
            Intent::AppointmentMove { .. } => "appointment.move",
            Intent::AppointmentCancel { .. } => "appointment.cancel",
            Intent::TaskAdd { .. } => "task.add",
            Intent::TaskList { .. } => "task.list",
            Intent::TaskComplete { .. } => "task.complete",
            Intent::TaskProgress { .. } => "task.progress",
            Intent::MemoryRemember { .. } => "memory.remember",
            Intent::MemoryRecall { .. } => "memory.recall",
            Intent::MemoryForget { .. } => "memory.forget",
            Intent::Help => "help",
            Intent::Stop => "stop",
            Intent::Cancel => "cancel",
            Intent::Yes => "yes",
            Intent::No => "no",
        }
    }
}

/// The kind of slot value the orchestrator is asking for in a follow-up question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// Free text ("to call mom" → "call mom"; leading "to"/"that" stripped).
    Text,
    /// A point in time or a recurrence ("tomorrow at 5", "every Monday at 8").
    When,
    /// A duration ("10 minutes", "an hour and a half").
    Duration,
    /// A date-time ("Friday at 3pm").
    DateTime,
}

/// A parsed slot answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SlotValue {
    /// Free text.
    Text(String),
    /// When.
    When(When),
    /// Duration.
    Duration(jiff::SignedDuration),
    /// A date-time.
    DateTime(jiff::Zoned),
}

/// Parse an utterance. `None`: not an everyday command (the LLM answers).
pub fn parse(text: &str, ctx: &ParseContext) -> Option<Intent> {
    // Only English so far; other languages add a module and a match arm here.
    let _ = &ctx.language;
    en::parse(text, ctx)
}

/// Parse the answer to a follow-up question asking for a slot of `kind`.
/// `None`: the answer is not such a value (the orchestrator re-asks or gives up).
pub fn parse_slot(text: &str, kind: SlotKind, ctx: &ParseContext) -> Option<SlotValue> {
    let _ = &ctx.language;
    en::parse_slot(text, kind, ctx)
}
