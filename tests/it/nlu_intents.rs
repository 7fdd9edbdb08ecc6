//! Table test of the English fast-path intent parser: utterance → intent with its typed
//! slots, at a fixed "now" (Wednesday 2026-11-25 14:00 in Europe/Berlin), plus rows across
//! DST changes, follow-up slot answers, and a measurement of the average parse time.
//!
//! Expected values are written in a compact notation (see `describe`): times are wall-clock
//! times in the device zone with their UTC offset, durations like `1h30m`.

use std::time::Instant;

use jiff::{SignedDuration, Zoned};
use local_assistant::nlu::intents::{
    parse, parse_slot, Intent, ParseContext, Progress, Range, Recurrence, SlotKind, SlotValue,
    Target, When,
};

/// Wednesday afternoon in Berlin.
const NOW: &str = "2026-11-25T14:00[Europe/Berlin]";

fn ctx(now: &str) -> ParseContext {
    ParseContext::en(now.parse::<Zoned>().expect("valid test time"))
}

fn t(z: &Zoned) -> String {
    z.strftime("%Y-%m-%dT%H:%M%:z").to_string()
}

fn d(x: SignedDuration) -> String {
    let s = x.as_secs();
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 || out.is_empty() {
        out += &format!("{s}s");
    }
    out
}

fn s(x: &Option<String>) -> String {
    x.as_ref().map_or("-".into(), |s| format!("{s:?}"))
}

fn o<T>(x: &Option<T>, f: impl Fn(&T) -> String) -> String {
    x.as_ref().map_or("-".into(), f)
}

fn when(w: &When) -> String {
    match w {
        When::At { at } => t(at),
        When::Recurring { rule, first } => {
            let rule = match rule {
                Recurrence::Daily => "daily".to_string(),
                Recurrence::Weekly { days } => {
                    let names: Vec<String> = days
                        .iter()
                        .map(|d| format!("{d:?}").to_lowercase()[..3].to_string())
                        .collect();
                    format!("weekly({})", names.join(","))
                }
                Recurrence::Monthly { day } => format!("monthly({day})"),
                Recurrence::Every { interval } => format!("every({})", d(*interval)),
            };
            format!("{rule}@{}", t(first))
        }
    }
}

fn target(x: &Option<Target>) -> String {
    o(x, |x| match x {
        Target::All => "all".into(),
        Target::Last => "last".into(),
        Target::Named { text } => format!("named({text:?})"),
        Target::At { when: w } => format!("at({})", when(w)),
    })
}

fn range(x: &Option<Range>) -> String {
    o(x, |r| {
        format!("{:?}[{}..{})", r.label, t(&r.start), t(&r.end))
    })
}

/// The compact notation of an intent.
fn describe(i: &Option<Intent>) -> String {
    let Some(i) = i else {
        return "none".into();
    };
    let slots = match i {
        Intent::ReminderSet { what, when: w } => format!("what={} when={}", s(what), o(w, when)),
        Intent::ReminderCancel { target: x }
        | Intent::TimerCancel { target: x }
        | Intent::AppointmentCancel { target: x }
        | Intent::TaskComplete { target: x } => format!("target={}", target(x)),
        Intent::TimerSet { duration, label } => {
            format!("duration={} label={}", o(duration, |x| d(*x)), s(label))
        }
        Intent::DateQuery { day } => format!("day={}", o(day, |x| x.to_string())),
        Intent::AppointmentCreate {
            title,
            start,
            duration,
            with,
            location,
        } => format!(
            "title={} start={} duration={} with={} location={}",
            s(title),
            o(start, t),
            o(duration, |x| d(*x)),
            s(with),
            s(location)
        ),
        Intent::AppointmentList {
            range: r,
            free_slots,
        } => {
            format!("range={} free={free_slots}", range(r))
        }
        Intent::AppointmentMove { target: x, to } => {
            format!("target={} to={}", target(x), o(to, t))
        }
        Intent::TaskAdd {
            description,
            project,
            due,
        } => format!(
            "description={} project={} due={}",
            s(description),
            s(project),
            o(due, t)
        ),
        Intent::TaskList { project } => format!("project={}", s(project)),
        Intent::TaskProgress {
            target: x,
            progress,
        } => format!(
            "target={} progress={}",
            target(x),
            o(progress, |p| match p {
                Progress::Percent { percent } => format!("{percent}%"),
                Progress::Steps { done, total } => format!("{done}/{total}"),
            })
        ),
        Intent::ReminderSnooze { minutes } => format!("minutes={}", o(minutes, |m| m.to_string())),
        Intent::MemoryRemember { fact } => format!("fact={}", s(fact)),
        Intent::MemoryRecall { query } | Intent::MemoryForget { query } => {
            format!("query={}", s(query))
        }
        Intent::ReminderList
        | Intent::TimerList
        | Intent::TimeNow
        | Intent::Help
        | Intent::Stop
        | Intent::Cancel
        | Intent::Yes
        | Intent::No => String::new(),
    };
    if slots.is_empty() {
        i.name().to_string()
    } else {
        format!("{} {slots}", i.name())
    }
}

/// (utterance, expected) at [`NOW`] (Wednesday 2026-11-25 14:00, Europe/Berlin, UTC+1).
const TABLE: &[(&str, &str)] = &[
    // Yes / no.
    ("yes", "yes"),
    ("Yeah, sure.", "yes"),
    ("go ahead", "yes"),
    ("ok do it", "yes"),
    ("yes please", "yes"),
    ("sounds good", "yes"),
    ("of course", "yes"),
    ("nope", "no"),
    ("no thanks", "no"),
    ("No, thank you.", "no"),
    ("don't", "no"),
    ("not now", "no"),
    ("nah", "no"),
    ("I don't think so", "no"),
    ("of course not", "no"),
    ("yes, no", "none"),
    // Stop, cancel, help.
    ("stop", "stop"),
    ("be quiet", "stop"),
    ("never mind", "stop"),
    ("shut up please", "stop"),
    ("cancel", "cancel"),
    ("cancel that", "cancel"),
    ("help", "help"),
    ("What can you do?", "help"),
    // Time and date.
    ("what time is it", "time.now"),
    ("What's the time?", "time.now"),
    ("could you tell me the time please", "time.now"),
    ("what's the date", "date.query day=-"),
    ("what day is it today", "date.query day=-"),
    ("what day is next Friday", "date.query day=2026-11-27"),
    ("what's the date tomorrow", "date.query day=2026-11-26"),
    ("what day of the week is December 24th", "date.query day=2026-12-24"),
    ("what date is it on Monday", "date.query day=2026-11-30"),
    ("what day is next Wednesday", "date.query day=2026-12-02"),
    // Reminders.
    ("remind me to call mom tomorrow at 5pm", "reminder.set what=\"call mom\" when=2026-11-26T17:00+01:00"),
    ("remind me at 5 to take the pills", "reminder.set what=\"take the pills\" when=2026-11-25T17:00+01:00"),
    ("remind me", "reminder.set what=- when=-"),
    ("Remind me in 10 minutes to check the oven", "reminder.set what=\"check the oven\" when=2026-11-25T14:10+01:00"),
    ("remind me to water the plants in an hour and a half", "reminder.set what=\"water the plants\" when=2026-11-25T15:30+01:00"),
    ("remind me in 2 hours to call the bank", "reminder.set what=\"call the bank\" when=2026-11-25T16:00+01:00"),
    ("remind me tonight to lock the door", "reminder.set what=\"lock the door\" when=2026-11-25T20:00+01:00"),
    ("remind me this evening to call Dad", "reminder.set what=\"call Dad\" when=2026-11-25T19:00+01:00"),
    ("remind me tomorrow morning to buy bread", "reminder.set what=\"buy bread\" when=2026-11-26T09:00+01:00"),
    ("remind me next Friday morning to pay the rent", "reminder.set what=\"pay the rent\" when=2026-11-27T09:00+01:00"),
    ("remind me on Friday to call the plumber", "reminder.set what=\"call the plumber\" when=2026-11-27T09:00+01:00"),
    ("remind me on the 4th to renew the passport", "reminder.set what=\"renew the passport\" when=2026-12-04T09:00+01:00"),
    ("remind me on December 24th at 8 to buy the tree", "reminder.set what=\"buy the tree\" when=2026-12-24T08:00+01:00"),
    ("remind me at noon to eat", "reminder.set what=\"eat\" when=2026-11-26T12:00+01:00"),
    ("remind me at midnight to take the bread out", "reminder.set what=\"take the bread out\" when=2026-11-26T00:00+01:00"),
    ("remind me at 17:30 to start cooking", "reminder.set what=\"start cooking\" when=2026-11-25T17:30+01:00"),
    ("remind me every Monday to take out the bins", "reminder.set what=\"take out the bins\" when=weekly(mon)@2026-11-30T09:00+01:00"),
    ("remind me every day at 7am to take my vitamins", "reminder.set what=\"take my vitamins\" when=daily@2026-11-26T07:00+01:00"),
    ("remind me every weekday at 8 to check the mail", "reminder.set what=\"check the mail\" when=weekly(mon,tue,wed,thu,fri)@2026-11-26T08:00+01:00"),
    ("remind me every 2 hours to drink water", "reminder.set what=\"drink water\" when=every(2h)@2026-11-25T16:00+01:00"),
    ("remind me every Monday and Thursday at 6pm to go running", "reminder.set what=\"go running\" when=weekly(mon,thu)@2026-11-26T18:00+01:00"),
    ("remind me on the 1st of every month to pay the rent", "reminder.set what=\"pay the rent\" when=monthly(1)@2026-12-01T09:00+01:00"),
    ("remind me to call mom", "reminder.set what=\"call mom\" when=-"),
    ("set a reminder for tomorrow at 9 to call the doctor", "reminder.set what=\"call the doctor\" when=2026-11-26T09:00+01:00"),
    ("remind me that the plumber comes at 3", "reminder.set what=\"the plumber comes\" when=2026-11-25T15:00+01:00"),
    ("remind me at 5pm", "reminder.set what=- when=2026-11-25T17:00+01:00"),
    ("remind me in twenty five minutes to flip the steak", "reminder.set what=\"flip the steak\" when=2026-11-25T14:25+01:00"),
    ("can you remind me to feed the cat at half past six", "reminder.set what=\"feed the cat\" when=2026-11-25T18:30+01:00"),
    ("remind me to take the cake out 10 minutes from now", "reminder.set what=\"take the cake out\" when=2026-11-25T14:10+01:00"),
    ("remind me the day after tomorrow to call Anna", "reminder.set what=\"call Anna\" when=2026-11-27T09:00+01:00"),
    ("remind me tomorrow at midnight to log off", "reminder.set what=\"log off\" when=2026-11-27T00:00+01:00"),
    ("remind me today at 11 to call the school", "reminder.set what=\"call the school\" when=2026-11-25T23:00+01:00"),
    ("remind me on Wednesday at 5 to water the plants", "reminder.set what=\"water the plants\" when=2026-11-25T17:00+01:00"),
    ("remind me on Wednesday at 10 to water the plants", "reminder.set what=\"water the plants\" when=2026-12-02T10:00+01:00"),
    ("remember to buy milk", "reminder.set what=\"buy milk\" when=-"),
    ("set an alarm for 7am", "reminder.set what=\"alarm\" when=2026-11-26T07:00+01:00"),
    ("wake me up at 6:30 tomorrow", "reminder.set what=\"wake up\" when=2026-11-26T06:30+01:00"),
    ("what are my reminders", "reminder.list"),
    ("show me my reminders", "reminder.list"),
    ("cancel the reminder to call mom", "reminder.cancel target=named(\"call mom\")"),
    ("delete all reminders", "reminder.cancel target=all"),
    ("cancel my reminder for tomorrow", "reminder.cancel target=at(2026-11-26T00:00+01:00)"),
    ("cancel the last reminder", "reminder.cancel target=last"),
    // Timers.
    ("set a timer for 10 minutes", "timer.set duration=10m label=-"),
    ("set a pasta timer for 8 minutes", "timer.set duration=8m label=\"pasta\""),
    ("set a 10 minute timer", "timer.set duration=10m label=-"),
    ("timer for 90 seconds", "timer.set duration=1m30s label=-"),
    ("set a timer for an hour and a half", "timer.set duration=1h30m label=-"),
    ("set a timer for 1 hour 20 minutes", "timer.set duration=1h20m label=-"),
    ("start a timer for half an hour for the eggs", "timer.set duration=30m label=\"eggs\""),
    ("set a timer", "timer.set duration=- label=-"),
    ("set a timer for a minute", "timer.set duration=1m label=-"),
    ("set a timer for twenty five minutes", "timer.set duration=25m label=-"),
    ("how much time is left on my timer", "timer.list"),
    ("list my timers", "timer.list"),
    ("cancel the timer", "timer.cancel target=-"),
    ("stop the pasta timer", "timer.cancel target=named(\"pasta\")"),
    ("cancel all timers", "timer.cancel target=all"),
    // Appointments.
    ("book a dentist appointment on Friday at 3pm for an hour with Anna", "appointment.create title=\"dentist\" start=2026-11-27T15:00+01:00 duration=1h with=\"Anna\" location=-"),
    ("schedule a meeting with Anna tomorrow at 10 at the clinic", "appointment.create title=\"meeting\" start=2026-11-26T10:00+01:00 duration=- with=\"Anna\" location=\"the clinic\""),
    ("add lunch with Ben to my calendar on Saturday at noon", "appointment.create title=\"lunch\" start=2026-11-28T12:00+01:00 duration=- with=\"Ben\" location=-"),
    ("I have a doctor's appointment on Monday at 9:30 at the health center", "appointment.create title=\"doctor\" start=2026-11-30T09:30+01:00 duration=- with=- location=\"the health center\""),
    ("make an appointment at the clinic at 5pm", "appointment.create title=- start=2026-11-25T17:00+01:00 duration=- with=- location=\"the clinic\""),
    ("book a haircut appointment for next Friday at 4", "appointment.create title=\"haircut\" start=2026-11-27T16:00+01:00 duration=- with=- location=-"),
    ("what's on my calendar tomorrow", "appointment.list range=\"tomorrow\"[2026-11-26T00:00+01:00..2026-11-27T00:00+01:00) free=false"),
    ("am I free Thursday afternoon", "appointment.list range=\"thursday afternoon\"[2026-11-26T12:00+01:00..2026-11-26T18:00+01:00) free=true"),
    ("am I free on Friday", "appointment.list range=\"friday\"[2026-11-27T00:00+01:00..2026-11-28T00:00+01:00) free=true"),
    ("what appointments do I have this week", "appointment.list range=\"this week\"[2026-11-25T00:00+01:00..2026-11-30T00:00+01:00) free=false"),
    ("do I have any appointments next week", "appointment.list range=\"next week\"[2026-11-30T00:00+01:00..2026-12-07T00:00+01:00) free=false"),
    ("show my calendar", "appointment.list range=- free=false"),
    ("what do I have on Saturday", "appointment.list range=\"saturday\"[2026-11-28T00:00+01:00..2026-11-29T00:00+01:00) free=false"),
    ("when am I free this weekend", "appointment.list range=\"this weekend\"[2026-11-28T00:00+01:00..2026-11-30T00:00+01:00) free=true"),
    ("what's my schedule like tonight", "appointment.list range=\"tonight\"[2026-11-25T18:00+01:00..2026-11-26T00:00+01:00) free=false"),
    ("move the dentist to Monday at 10", "appointment.move target=named(\"dentist\") to=2026-11-30T10:00+01:00"),
    ("reschedule my 3pm appointment to 4pm", "appointment.move target=at(2026-11-25T15:00+01:00) to=2026-11-25T16:00+01:00"),
    ("postpone the meeting with Anna", "appointment.move target=named(\"Anna\") to=-"),
    ("cancel my 3pm appointment", "appointment.cancel target=at(2026-11-25T15:00+01:00)"),
    ("cancel all my appointments", "appointment.cancel target=all"),
    ("cancel the dentist appointment", "appointment.cancel target=named(\"dentist\")"),
    ("cancel tomorrow's appointments", "appointment.cancel target=at(2026-11-26T00:00+01:00)"),
    // Tasks.
    ("add buy milk to my shopping list", "task.add description=\"buy milk\" project=\"shopping\" due=-"),
    ("add a task to fix the fence due Friday", "task.add description=\"fix the fence\" project=- due=2026-11-27T09:00+01:00"),
    ("put eggs on the grocery list", "task.add description=\"eggs\" project=\"shopping\" due=-"),
    ("add call the plumber to my to do list", "task.add description=\"call the plumber\" project=- due=-"),
    ("new task clean the garage tomorrow", "task.add description=\"clean the garage\" project=- due=2026-11-26T09:00+01:00"),
    ("add batteries to my hardware store list", "task.add description=\"batteries\" project=\"hardware store\" due=-"),
    ("what's on my shopping list", "task.list project=\"shopping\""),
    ("what's on my to do list", "task.list project=-"),
    ("what are my tasks", "task.list project=-"),
    ("mark buy milk as done", "task.complete target=named(\"buy milk\")"),
    ("check off eggs", "task.complete target=named(\"eggs\")"),
    ("the laundry is done", "task.complete target=named(\"laundry\")"),
    ("I finished the report", "task.complete target=named(\"report\")"),
    ("remove milk from my shopping list", "task.complete target=named(\"milk\")"),
    ("the fence is 50 percent done", "task.progress target=named(\"fence\") progress=50%"),
    ("the fence is half done", "task.progress target=named(\"fence\") progress=50%"),
    ("I've done 3 of 5 steps of the report", "task.progress target=named(\"report\") progress=3/5"),
    ("I'm halfway through the report", "task.progress target=named(\"report\") progress=50%"),
    ("set the garden project to 75%", "task.progress target=named(\"garden project\") progress=75%"),
    ("the tax return is three quarters done", "task.progress target=named(\"tax return\") progress=75%"),
    // Memory.
    // Snooze.
    ("snooze", "reminder.snooze minutes=-"),
    ("snooze it for 5 minutes", "reminder.snooze minutes=5"),
    ("Snooze the timer 10 minutes.", "reminder.snooze minutes=10"),
    ("remind me again in a quarter of an hour", "reminder.snooze minutes=15"),
    ("remind me again in 90 seconds", "reminder.snooze minutes=2"),
    ("remember that the spare key is under the pot", "memory.remember fact=\"the spare key is under the pot\""),
    ("remember my wifi password is fish123", "memory.remember fact=\"my wifi password is fish123\""),
    ("remember", "memory.remember fact=-"),
    ("what did I say about the spare key", "memory.recall query=\"spare key\""),
    ("what do you remember about my car", "memory.recall query=\"car\""),
    ("forget what I said about the spare key", "memory.forget query=\"spare key\""),
    ("forget that my pin is 1234", "memory.forget query=\"pin is 1234\""),
    ("forget it", "stop"),
    ("forget that", "stop"),
    // Not everyday commands: the LLM answers.
    ("what is the capital of France", "none"),
    ("tell me a joke", "none"),
    ("I want to set the table", "none"),
    ("set the table", "none"),
    ("how are you", "none"),
    ("what's the weather like tomorrow", "none"),
    ("who won the game yesterday", "none"),
    ("can you explain how timers work", "none"),
    ("I had a great day today", "none"),
    ("remember when we went to Paris", "none"),
    ("book a flight to Paris", "none"),
    ("what time does the bakery open", "none"),
    ("I'm done", "none"),
    ("what do you think about cats", "none"),
    ("stop the music", "none"),
    ("write a poem about autumn", "none"),
    ("what is 5 plus 3", "none"),
    ("how long is a marathon", "none"),
    ("the timer is beeping", "none"),
    ("make a cake", "none"),
    ("what day is the election", "none"),
    ("", "none"),
];

/// (now, utterance, expected) across DST changes: wall-clock times stay as said, durations
/// are exact.
const DST_TABLE: &[(&str, &str, &str)] = &[
    // New York springs forward on Sunday 2026-03-08 at 02:00 (EST -05:00 → EDT -04:00).
    ("2026-03-07T10:00[America/New_York]", "remind me tomorrow at 9am to call mom", "reminder.set what=\"call mom\" when=2026-03-08T09:00-04:00"),
    ("2026-03-07T10:00[America/New_York]", "remind me in 24 hours to stretch", "reminder.set what=\"stretch\" when=2026-03-08T11:00-04:00"),
    ("2026-03-07T10:00[America/New_York]", "remind me every day at 8am to walk the dog", "reminder.set what=\"walk the dog\" when=daily@2026-03-08T08:00-04:00"),
    ("2026-03-07T10:00[America/New_York]", "what's on my calendar tomorrow", "appointment.list range=\"tomorrow\"[2026-03-08T00:00-05:00..2026-03-09T00:00-04:00) free=false"),
    // Berlin springs forward on Sunday 2026-03-29 at 02:00 (CET +01:00 → CEST +02:00):
    // 02:30 does not exist that night and becomes 03:30.
    ("2026-03-28T12:00[Europe/Berlin]", "remind me tomorrow at 2:30am to check the clocks", "reminder.set what=\"check the clocks\" when=2026-03-29T03:30+02:00"),
    ("2026-03-28T12:00[Europe/Berlin]", "remind me in 2 days to water the plants", "reminder.set what=\"water the plants\" when=2026-03-30T12:00+02:00"),
    // Berlin falls back on Sunday 2026-10-25 at 03:00: 02:30 happens twice, the first is taken.
    ("2026-10-24T12:00[Europe/Berlin]", "remind me tomorrow at 2:30am to sleep", "reminder.set what=\"sleep\" when=2026-10-25T02:30+02:00"),
    ("2026-10-24T12:00[Europe/Berlin]", "book a dentist appointment on Monday at 9", "appointment.create title=\"dentist\" start=2026-10-26T09:00+01:00 duration=- with=- location=-"),
];

#[test]
fn intent_table() {
    let c = ctx(NOW);
    let mut failures = Vec::new();
    for (text, want) in TABLE {
        let got = describe(&parse(text, &c));
        if got != *want {
            failures.push(format!("  {text:?}\n      want: {want}\n       got: {got}"));
        }
    }
    for (now, text, want) in DST_TABLE {
        let got = describe(&parse(text, &ctx(now)));
        if got != *want {
            failures.push(format!(
                "  {text:?} at {now}\n      want: {want}\n       got: {got}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        TABLE.len() + DST_TABLE.len(),
        failures.join("\n")
    );
}

#[test]
fn table_is_large_and_has_negative_rows() {
    assert!(TABLE.len() + DST_TABLE.len() >= 100, "{}", TABLE.len());
    assert!(TABLE.iter().filter(|(_, want)| *want == "none").count() >= 15);
}

/// Which utterances may end at a short pause on a call: finished commands do; commands still
/// missing a slot, dictation, and what the fast path does not parse do not.
#[test]
fn finished_commands_end_the_utterance_and_dictation_does_not() {
    let c = ctx(NOW);
    let ends = |text: &str| parse(text, &c).is_some_and(|i| i.ends_utterance());
    for text in [
        "what time is it",
        "set a timer for ten minutes",
        "remind me to call mom tomorrow at 5pm",
        "what's on my calendar tomorrow",
        "cancel the pasta timer",
        "yes",
        "stop",
    ] {
        assert!(
            ends(text),
            "{text:?} should end the utterance ({:?})",
            parse(text, &c)
        );
    }
    for text in [
        "set a timer",
        "remind me to call mom",
        "remind me tomorrow at 5pm",
        "book a dentist appointment on Friday at 3pm",
        "add buy milk to my shopping list",
        "remember that the spare key is under the pot",
        "what's on my calendar",
        "tell me a story about dragons",
    ] {
        assert!(
            !ends(text),
            "{text:?} should wait for the end of speech ({:?})",
            parse(text, &c)
        );
    }
}

#[test]
fn resolved_times_are_in_the_device_time_zone() {
    for (now, text, _) in DST_TABLE {
        let c = ctx(now);
        if let Some(Intent::ReminderSet { when: Some(w), .. }) = parse(text, &c) {
            assert_eq!(w.first().time_zone(), c.now.time_zone(), "{text}");
        }
    }
}

fn slot(kind: SlotKind, text: &str) -> String {
    match parse_slot(text, kind, &ctx(NOW)) {
        None => "none".into(),
        Some(SlotValue::Text(s)) => format!("{s:?}"),
        Some(SlotValue::When(w)) => when(&w),
        Some(SlotValue::Duration(x)) => d(x),
        Some(SlotValue::DateTime(z)) => t(&z),
    }
}

#[test]
fn follow_up_slot_answers() {
    let rows: &[(SlotKind, &str, &str)] = &[
        (SlotKind::Text, "to call mom", "\"call mom\""),
        (
            SlotKind::Text,
            "that the oven is off",
            "\"the oven is off\"",
        ),
        (
            SlotKind::Text,
            "Take the bins out.",
            "\"Take the bins out\"",
        ),
        (SlotKind::Text, "", "none"),
        (SlotKind::When, "tomorrow at 5", "2026-11-26T17:00+01:00"),
        (SlotKind::When, "at 5", "2026-11-25T17:00+01:00"),
        (SlotKind::When, "in half an hour", "2026-11-25T14:30+01:00"),
        (
            SlotKind::When,
            "every Monday at 8",
            "weekly(mon)@2026-11-30T08:00+01:00",
        ),
        (
            SlotKind::When,
            "um, let's say Friday evening",
            "2026-11-27T19:00+01:00",
        ),
        (SlotKind::When, "I don't know", "none"),
        (SlotKind::Duration, "an hour and a half", "1h30m"),
        (SlotKind::Duration, "for 10 minutes please", "10m"),
        (SlotKind::Duration, "a minute", "1m"),
        (SlotKind::Duration, "ninety seconds", "1m30s"),
        (SlotKind::Duration, "ten", "none"),
        (SlotKind::Duration, "banana", "none"),
        (
            SlotKind::DateTime,
            "Friday at 3pm",
            "2026-11-27T15:00+01:00",
        ),
        (
            SlotKind::DateTime,
            "next Friday morning",
            "2026-11-27T09:00+01:00",
        ),
        (SlotKind::DateTime, "every day", "none"),
    ];
    let mut failures = Vec::new();
    for (kind, text, want) in rows {
        let got = slot(*kind, text);
        if got != *want {
            failures.push(format!("  {kind:?} {text:?}: want {want}, got {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "slot rows failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn average_parse_time_is_measured() {
    let c = ctx(NOW);
    let rounds = 50;
    let start = Instant::now();
    let mut recognised = 0usize;
    for _ in 0..rounds {
        for (text, _) in TABLE {
            recognised += usize::from(std::hint::black_box(parse(text, &c)).is_some());
        }
    }
    let n = rounds * TABLE.len();
    let per = start.elapsed() / u32::try_from(n).expect("small count");
    eprintln!(
        "nlu intents: {n} parses, average {per:?} per utterance ({} recognised per round)",
        recognised / rounds
    );
    assert!(recognised > 0);
}
