//! Tasks and lists: add ("add buy milk to my shopping list"), list ("what's on my todo
//! list"), complete ("mark buy milk as done") and progress ("the fence is 50 percent done",
//! "I've done 3 of 5 steps of the report").

use super::lex::{at, at_any, is, w, Token};
use super::numbers::{cardinal, number};
use super::reminders::{is_list_question, outside};
use super::{target, when, Utt};
use crate::nlu::intents::{spec, Intent, Progress, Target, When};

/// Task commands.
pub(super) fn task(u: &Utt, t: &[Token]) -> Option<Intent> {
    progress(u, t)
        .or_else(|| complete(u, t))
        .or_else(|| list(t))
        .or_else(|| add(u, t))
}

/// Names of the general task list (project `None`).
const GENERAL: &[&str] = &["to do", "todo", "to-do", "task", "tasks", "todos", "chores"];

/// Project of a list named by `words` ("shopping", "to do", "hardware store").
fn project(t: &[Token]) -> Option<String> {
    if t.is_empty() || GENERAL.iter().any(|g| is(t, g)) {
        return None;
    }
    if t.len() == 1 && matches!(w(t, 0), "shopping" | "grocery" | "groceries") {
        return Some("shopping".into());
    }
    let words: Vec<&str> = t.iter().map(|x| x.norm.as_str()).collect();
    Some(words.join(" "))
}

/// "(my|the) <name> list" / "(my) todos" / "(my) tasks" at `i` reaching the end of `t`:
/// the project and whether it matched.
fn list_phrase(t: &[Token], i: usize) -> Option<Option<String>> {
    let mut i = i;
    while matches!(w(t, i), "my" | "the" | "our") {
        i += 1;
    }
    let rest = &t[i..];
    if rest.is_empty() {
        return None;
    }
    if ["todos", "tasks", "to dos", "todo", "to do", "chores"]
        .iter()
        .any(|p| is(rest, p))
    {
        return Some(None);
    }
    let last = rest.len() - 1;
    if w(rest, last) != "list" || last > 3 {
        return None;
    }
    Some(project(&rest[..last]))
}

/// A progress amount at `i`: the amount and the index after it.
fn amount(t: &[Token], i: usize) -> Option<(Progress, usize)> {
    let pct = |p: u8, n: usize| Some((Progress::Percent { percent: p }, i + n));
    if let Some(n) = at_any(t, i, &["three quarters", "three quarter"]) {
        return pct(75, n);
    }
    if let Some(n) = at_any(t, i, &["a quarter", "one quarter"]) {
        return pct(25, n);
    }
    if let Some(n) = at_any(t, i, &["a third", "one third"]) {
        return pct(33, n);
    }
    if let Some(n) = at_any(t, i, &["two thirds"]) {
        return pct(67, n);
    }
    if let Some(n) = at_any(t, i, &["halfway", "half way", "half"]) {
        return pct(50, n);
    }
    let (n, j) = number(t, i)?;
    if n.ordinal || n.value.fract() != 0.0 {
        return None;
    }
    let k = if at(t, j, "per cent") { j + 2 } else { j };
    if w(t, k) == "percent" || k > j {
        let k = if w(t, k) == "percent" { k + 1 } else { k };
        return (0.0..=100.0).contains(&n.value).then_some((
            Progress::Percent {
                percent: n.value as u8,
            },
            k,
        ));
    }
    let of = at_any(t, j, &["out of", "of"])?;
    let (total, k) = cardinal(t, j + of)?;
    let done = n.value as u32;
    (total > 0 && done <= total).then_some((Progress::Steps { done, total }, k))
}

const DONE_WORDS: &[&str] = &[
    "done",
    "complete",
    "completed",
    "finished",
    "through",
    "there",
    "now",
    "ready",
];

/// Subjects that are people or the conversation, not tasks ("I'm done", "that's it").
fn is_pronoun_subject(t: &[Token]) -> bool {
    t.is_empty()
        || matches!(
            w(t, 0),
            "i" | "we"
                | "you"
                | "he"
                | "she"
                | "they"
                | "everything"
                | "all"
                | "what"
                | "how"
                | "who"
                | "why"
                | "when"
                | "where"
                | "is"
                | "are"
                | "dinner"
                | "lunch"
                | "breakfast"
                | "food"
        )
}

fn named(u: &Utt, t: &[Token]) -> Option<Target> {
    let mut t = t;
    while let Some(n) = at_any(t, 0, &["the task", "task", "the item", "item"]) {
        t = &t[n..];
    }
    target(u, t)
}

/// "the fence is 50 percent done", "I'm halfway through the report",
/// "I've done 3 of 5 steps of the report", "set the fence to 75 percent".
fn progress(u: &Utt, t: &[Token]) -> Option<Intent> {
    let (p, ps, pe) = (0..t.len()).find_map(|i| amount(t, i).map(|(p, e)| (p, i, e)))?;
    let left = &t[..ps];
    let right = &t[pe..];
    let tail_ok = |r: &[Token]| {
        r.iter()
            .all(|x| DONE_WORDS.contains(&x.norm.as_str()) || x.norm == "way")
    };
    // "I'm 50 percent done with the fence", "I'm halfway through the report".
    if is(left, "i am") || is(left, "we are") {
        let mut r = right;
        while r
            .first()
            .is_some_and(|x| DONE_WORDS.contains(&x.norm.as_str()))
        {
            r = &r[1..];
        }
        let k = at_any(r, 0, &["with", "on", "of", "in"]).unwrap_or(0);
        if k == 0 && r.len() == right.len() {
            return None;
        }
        return Some(Intent::TaskProgress {
            target: named(u, &r[k..]),
            progress: Some(p),
        });
    }
    // "I've done 3 of 5 steps of the report", "I finished half of the fence".
    if let Some(n) = at_any(
        left,
        0,
        &[
            "i have done",
            "i have completed",
            "i have finished",
            "i did",
            "i completed",
            "i finished",
            "i am done with",
            "we have done",
        ],
    ) {
        if n != left.len() {
            return None;
        }
        let mut r = right;
        if matches!(
            w(r, 0),
            "steps" | "tasks" | "parts" | "items" | "things" | "pages" | "chapters"
        ) {
            r = &r[1..];
        }
        let k = at_any(r, 0, &["of", "on", "for", "in"])?;
        return Some(Intent::TaskProgress {
            target: named(u, &r[k..]),
            progress: Some(p),
        });
    }
    // "set the fence to 75 percent", "update the report progress to 3 of 5".
    if let Some(n) = at_any(left, 0, &["set", "update", "mark", "put", "change"]) {
        let mut l = &left[n..];
        let last = l.len().checked_sub(1)?;
        if !matches!(w(l, last), "to" | "as" | "at") || !tail_ok(right) {
            return None;
        }
        l = &l[..last];
        if let Some(k) = at_any(
            l,
            0,
            &[
                "the progress of",
                "the progress on",
                "the progress for",
                "progress on",
                "progress of",
                "progress for",
            ],
        ) {
            l = &l[k..];
        }
        let l = match l.last() {
            Some(x) if x.norm == "progress" => &l[..l.len() - 1],
            _ => l,
        };
        return Some(Intent::TaskProgress {
            target: named(u, l),
            progress: Some(p),
        });
    }
    // "the fence is 50 percent done", "the report is at 3 of 5", "progress on X is half".
    let last = left.len().checked_sub(1)?;
    let subject = if last >= 1 && at(left, last - 1, "is at") {
        &left[..last - 1]
    } else if matches!(w(left, last), "is" | "are") {
        &left[..last]
    } else {
        return None;
    };
    if !tail_ok(right) || is_pronoun_subject(subject) || subject.len() > 6 {
        return None;
    }
    let mut s = subject;
    if let Some(k) = at_any(
        s,
        0,
        &[
            "the progress on",
            "the progress of",
            "progress on",
            "progress of",
        ],
    ) {
        s = &s[k..];
    }
    Some(Intent::TaskProgress {
        target: named(u, s),
        progress: Some(p),
    })
}

/// "mark buy milk as done", "check off milk", "the laundry is done", "I finished the report",
/// "remove milk from my shopping list".
fn complete(u: &Utt, t: &[Token]) -> Option<Intent> {
    let done = |r: &[Token]| {
        [
            "done",
            "complete",
            "completed",
            "finished",
            "as done",
            "as complete",
            "as completed",
            "as finished",
        ]
        .iter()
        .any(|p| is(r, p))
    };
    let done_target = |x: &[Token]| {
        Some(Intent::TaskComplete {
            target: named(u, x),
        })
    };
    // mark X (as) done
    if w(t, 0) == "mark" {
        for k in 2..t.len() {
            if done(&t[k..]) {
                return done_target(&t[1..k]);
            }
        }
        return None;
    }
    // check off X / check X off (my list) / tick / cross
    if matches!(w(t, 0), "check" | "tick" | "cross") {
        if w(t, 1) == "off" {
            let mut end = t.len();
            if let Some(k) = (2..t.len()).find(|&k| {
                matches!(w(t, k), "from" | "off" | "on") && list_phrase(t, k + 1).is_some()
            }) {
                end = k;
            }
            return done_target(&t[2..end]);
        }
        let k = (2..t.len()).find(|&k| w(t, k) == "off")?;
        let tail = &t[k + 1..];
        if !(tail.is_empty()
            || at_any(tail, 0, &["my list", "the list"]).is_some()
            || list_phrase(t, k + 1).is_some())
        {
            return None;
        }
        return done_target(&t[1..k]);
    }
    // remove/delete/take X from/off my <name> list
    if let Some(n) = at_any(t, 0, &["remove", "delete", "take", "cross", "strike"]) {
        let k = (n..t.len())
            .find(|&k| matches!(w(t, k), "from" | "off") && list_phrase(t, k + 1).is_some())?;
        return done_target(&t[n..k]);
    }
    // complete X / completed X
    if matches!(w(t, 0), "complete") && t.len() > 1 {
        return done_target(&t[1..]);
    }
    // I (have) finished/completed/done X; I'm done with X
    if let Some(n) = at_any(
        t,
        0,
        &[
            "i have finished",
            "i have completed",
            "i finished",
            "i completed",
            "i am done with",
            "i am finished with",
            "we finished",
            "we have finished",
            "i have done",
            "we are done with",
        ],
    ) {
        if n < t.len() {
            return done_target(&t[n..]);
        }
        return None;
    }
    // X is/are done
    let k = t
        .iter()
        .position(|x| matches!(x.norm.as_str(), "is" | "are"))?;
    let subject = &t[..k];
    if k == 0 || !done(&t[k + 1..]) || is_pronoun_subject(subject) || subject.len() > 6 {
        return None;
    }
    if matches!(w(subject, 0), "it" | "that" | "this") && subject.len() == 1 {
        return None;
    }
    done_target(subject)
}

/// "what's on my shopping list", "show my to do list", "what are my tasks".
fn list(t: &[Token]) -> Option<Intent> {
    if is_list_question(t, &["tasks", "todos", "chores"]) {
        return Some(Intent::TaskList { project: None });
    }
    if [
        "what do i need to do",
        "what do i have to do",
        "what is left to do",
        "what do i still need to do",
    ]
    .iter()
    .any(|p| is(t, p))
    {
        return Some(Intent::TaskList { project: None });
    }
    if [
        "what do i need to buy",
        "what do we need to buy",
        "what do i need from the store",
        "what do we need from the store",
    ]
    .iter()
    .any(|p| is(t, p))
    {
        return Some(Intent::TaskList {
            project: Some("shopping".into()),
        });
    }
    let k = t
        .iter()
        .rposition(|x| x.norm == "list" || x.norm == "todos" || x.norm == "tasks")?;
    if k + 1 != t.len() {
        return None;
    }
    // The list name: words right before "list" that are not list words.
    let mut s = k;
    while s > 0
        && !matches!(
            w(t, s - 1),
            "my" | "the" | "our" | "on" | "in" | "of" | "me" | "is"
        )
    {
        s -= 1;
    }
    if k - s > 3 {
        return None;
    }
    let head: Vec<usize> = (0..s).collect();
    const WORDS: &[&str] = &[
        "what", "is", "are", "on", "in", "my", "the", "our", "show", "me", "read", "list", "tell",
        "open", "left", "still", "whats", "items", "things", "of", "check", "give", "go",
        "through", "do", "i", "have", "anything", "there",
    ];
    let first_ok = matches!(
        w(t, 0),
        "what" | "show" | "read" | "tell" | "open" | "check" | "give" | "go" | "is" | "do"
    );
    if !first_ok || !head.iter().all(|&i| WORDS.contains(&w(t, i))) {
        return None;
    }
    let name = if w(t, k) == "list" {
        &t[s..k]
    } else {
        &t[s..=k]
    };
    Some(Intent::TaskList {
        project: project(name),
    })
}

/// "add buy milk to my shopping list", "add a task to fix the fence due Friday",
/// "new task call the plumber tomorrow".
fn add(u: &Utt, t: &[Token]) -> Option<Intent> {
    const TASK_TRIGGERS: &[&str] = &[
        "add a new task to",
        "add a new task",
        "add a task to",
        "add a task",
        "add task",
        "add a to do to",
        "add a to do",
        "add a todo",
        "create a task to",
        "create a task",
        "create task",
        "make a task to",
        "make a task",
        "new task",
        "new to do",
        "task",
    ];
    let (desc, project) = if let Some(n) = at_any(t, 0, TASK_TRIGGERS) {
        let mut d = &t[n..];
        if w(d, 0) == "to" && n > 0 && !at(t, n.saturating_sub(1), "to") {
            d = &d[1..];
        }
        (d.to_vec(), None)
    } else {
        let n = at_any(t, 0, &["add", "put", "write", "stick", "pop", "include"])?;
        // "... to/on my <name> list" (the rest may carry a due time).
        let (k, proj, end) = (n + 1..t.len()).find_map(|k| {
            if !matches!(w(t, k), "to" | "on" | "onto") {
                return None;
            }
            // The list phrase may be followed by a time ("... to my todo list for Friday").
            (k + 2..=t.len()).find_map(|e| {
                let p = list_phrase(&t[..e], k + 1)?;
                let tail = &t[e..];
                (tail.is_empty() || when::whole(tail).is_some()).then_some((k, p, e))
            })
        })?;
        let mut d = t[n..k].to_vec();
        d.extend_from_slice(&t[end..]);
        (d, proj)
    };
    if desc.is_empty() {
        return Some(Intent::TaskAdd {
            description: None,
            project,
            due: None,
        });
    }
    // Due: "due Friday", "by tomorrow", or a time expression at the end.
    let found = when::find_all(&desc);
    let due_found: Vec<when::Found> = found
        .iter()
        .filter(|f| f.end == desc.len() || f.start > 0 && w(&desc, f.start - 1) == "due")
        .cloned()
        .collect();
    let due = match when::merged(&due_found) {
        Some(spec) => match spec::when(&spec, u.now())? {
            When::At { at } => Some(at),
            When::Recurring { first, .. } => Some(first),
        },
        None => None,
    };
    let mut idx = outside(&desc, &due_found);
    while let Some(&i) = idx.last() {
        if matches!(w(&desc, i), "due" | "and" | "for" | "please") {
            idx.pop();
        } else {
            break;
        }
    }
    Some(Intent::TaskAdd {
        description: u.text_of(&desc, &idx),
        project,
        due,
    })
}
