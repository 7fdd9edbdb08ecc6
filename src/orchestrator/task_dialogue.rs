//! The task intents of the fast path: add (asking "what should I add?" when the description
//! is missing), list, complete and progress, with "which one?" when words of a description
//! match several tasks.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::tools::{ToolCallRecord, ToolContext};
use super::{Decision, Inner, Pending};
use crate::nlu::intents::{self, Intent, ParseContext, Progress, SlotKind, SlotValue, Target};

/// A task offered in a "which one?" question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TaskChoice {
    /// UUID.
    pub uuid: String,
    /// Description.
    pub description: String,
}

/// Open questions about tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub(super) enum TaskPending {
    /// "What should I add?"
    Describe {
        project: Option<String>,
        due: Option<String>,
        attempts: u8,
    },
    /// "Which task?" (no candidates: any open task) / "Which one: A or B?"
    Pick {
        tool: String,
        args: Value,
        candidates: Vec<TaskChoice>,
        attempts: u8,
    },
}

fn target_words(target: Option<Target>) -> Option<String> {
    match target {
        Some(Target::Named { text }) if !text.trim().is_empty() => Some(text),
        _ => None,
    }
}

fn progress_args(p: Progress) -> Value {
    match p {
        Progress::Percent { percent } => json!({ "percent": percent }),
        Progress::Steps { done, total } => json!({ "done": done, "total": total }),
    }
}

/// The candidate an answer names: by ordinal ("the first one", "2") or by words.
fn pick<'a>(answer: &str, candidates: &'a [TaskChoice]) -> Option<&'a TaskChoice> {
    const ORDINALS: &[&[&str]] = &[
        &["first", "1", "one", "1st"],
        &["second", "2", "two", "2nd"],
        &["third", "3", "three", "3rd"],
        &["fourth", "4", "four", "4th"],
        &["fifth", "5", "five", "5th"],
    ];
    let lower = answer.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .filter(|w| !matches!(*w, "the" | "one" | "task" | "please" | "i" | "mean" | "a"))
        .collect();
    let raw: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
    for (i, names) in ORDINALS.iter().enumerate() {
        if raw.len() <= 3
            && raw
                .iter()
                .any(|w| names[..1].contains(w) || (raw.len() == 1 && names.contains(w)))
        {
            return candidates.get(i);
        }
    }
    if words.is_empty() {
        return None;
    }
    let hits: Vec<&TaskChoice> = candidates
        .iter()
        .filter(|c| {
            let d = c.description.to_lowercase();
            words.iter().all(|w| d.contains(w))
        })
        .collect();
    match hits.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

impl Inner {
    /// A fresh task intent.
    pub(super) async fn task_intent(
        &self,
        intent: Intent,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        if let Err(r) = self.router.check("task", &tctx.channel, tctx.trust) {
            return Decision::Refuse(r.say);
        }
        match intent {
            Intent::TaskAdd {
                description,
                project,
                due,
            } => {
                let due = due.map(|z| z.to_string());
                match description {
                    Some(d) => self.task_add(d, project, due, tctx, calls).await,
                    None => Decision::Ask(
                        match &project {
                            Some(p) => format!("What should I add to your {p} list?"),
                            None => "What should I add?".into(),
                        },
                        Pending::Task(TaskPending::Describe {
                            project,
                            due,
                            attempts: 0,
                        }),
                    ),
                }
            }
            Intent::TaskList { project } => {
                let args = project.map_or_else(|| json!({}), |p| json!({ "project": p }));
                self.call_tool("task_list", args, tctx, calls).await
            }
            Intent::TaskComplete { target } => {
                self.task_targeted("task_complete", json!({}), target_words(target), tctx, calls)
                    .await
            }
            Intent::TaskProgress { target, progress } => match progress {
                Some(p) => {
                    self.task_targeted(
                        "task_progress",
                        progress_args(p),
                        target_words(target),
                        tctx,
                        calls,
                    )
                    .await
                }
                None => Decision::Say(
                    "How far along is it? For example: the fence is 50 percent done, or 3 of 5 done."
                        .into(),
                ),
            },
            _ => Decision::Llm,
        }
    }

    async fn task_add(
        &self,
        description: String,
        project: Option<String>,
        due: Option<String>,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        let mut args = json!({ "description": description });
        if let Some(p) = project {
            args["project"] = json!(p);
        }
        if let Some(d) = due {
            args["due"] = json!(d);
        }
        self.call_tool("task_add", args, tctx, calls).await
    }

    /// Run a tool on the task named by `words`; ask which one when none is named or several
    /// match.
    async fn task_targeted(
        &self,
        tool: &str,
        args: Value,
        words: Option<String>,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        let Some(words) = words else {
            let question = match tool {
                "task_complete" => "Which task should I mark as done?",
                _ => "Which task?",
            };
            return Decision::Ask(
                question.into(),
                Pending::Task(TaskPending::Pick {
                    tool: tool.into(),
                    args,
                    candidates: Vec::new(),
                    attempts: 0,
                }),
            );
        };
        let mut call_args = args.clone();
        call_args["match"] = json!(words);
        let decision = self.call_tool(tool, call_args, tctx, calls).await;
        let ambiguous: Option<Vec<TaskChoice>> = calls
            .last()
            .and_then(|c| c.result.get("ambiguous"))
            .and_then(|a| serde_json::from_value(a.clone()).ok());
        match (decision, ambiguous) {
            (Decision::Say(question), Some(candidates)) => Decision::Ask(
                question,
                Pending::Task(TaskPending::Pick {
                    tool: tool.into(),
                    args,
                    candidates,
                    attempts: 0,
                }),
            ),
            (d, _) => d,
        }
    }

    /// Continue an open task question; `Err(())` when the text is a new request instead.
    pub(super) async fn continue_task(
        &self,
        text: &str,
        p: TaskPending,
        intent: Option<Intent>,
        pctx: &ParseContext,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Result<(Decision, Option<String>), ()> {
        let new_request = matches!(&intent, Some(i) if !matches!(i, Intent::Yes | Intent::No));
        match p {
            TaskPending::Describe {
                project,
                due,
                attempts,
            } => match intents::parse_slot(text, SlotKind::Text, pctx) {
                _ if new_request => Err(()),
                Some(SlotValue::Text(d)) if !d.trim().is_empty() => Ok((
                    self.task_add(d, project, due, tctx, calls).await,
                    Some("task.add".into()),
                )),
                _ if attempts >= 1 => Ok((
                    Decision::Say("Sorry, I didn't get it, so I haven't added anything.".into()),
                    None,
                )),
                _ => Ok((
                    Decision::Ask(
                        "Sorry, what should I add?".into(),
                        Pending::Task(TaskPending::Describe {
                            project,
                            due,
                            attempts: attempts + 1,
                        }),
                    ),
                    None,
                )),
            },
            TaskPending::Pick {
                tool,
                args,
                candidates,
                attempts,
            } => {
                if new_request {
                    return Err(());
                }
                let intent_name = tool.replace('_', ".");
                if candidates.is_empty() {
                    let words = match intents::parse_slot(text, SlotKind::Text, pctx) {
                        Some(SlotValue::Text(t)) => t,
                        _ => text.to_owned(),
                    };
                    return Ok((
                        self.task_targeted(&tool, args, Some(words), tctx, calls)
                            .await,
                        Some(intent_name),
                    ));
                }
                match pick(text, &candidates) {
                    Some(c) => {
                        let mut a = args;
                        a["uuid"] = json!(c.uuid);
                        Ok((self.call_tool(&tool, a, tctx, calls).await, Some(intent_name)))
                    }
                    None if attempts >= 1 => Ok((
                        Decision::Say("Sorry, I still couldn't tell which one, so I've left them as they are.".into()),
                        None,
                    )),
                    None => {
                        let names: Vec<String> =
                            candidates.iter().map(|c| c.description.clone()).collect();
                        Ok((
                            Decision::Ask(
                                format!(
                                    "Sorry, which one: {}? You can say the first one, or a word of it.",
                                    names.join(", or ")
                                ),
                                Pending::Task(TaskPending::Pick {
                                    tool,
                                    args,
                                    candidates,
                                    attempts: attempts + 1,
                                }),
                            ),
                            None,
                        ))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(d: &str) -> TaskChoice {
        TaskChoice {
            uuid: d.into(),
            description: d.into(),
        }
    }

    #[test]
    fn an_answer_picks_by_ordinal_or_by_words() {
        let cs = [c("buy milk"), c("buy bread")];
        assert_eq!(
            pick("the first one", &cs).map(|c| c.description.as_str()),
            Some("buy milk")
        );
        assert_eq!(
            pick("2", &cs).map(|c| c.description.as_str()),
            Some("buy bread")
        );
        assert_eq!(
            pick("bread", &cs).map(|c| c.description.as_str()),
            Some("buy bread")
        );
        assert_eq!(
            pick("the milk one", &cs).map(|c| c.description.as_str()),
            Some("buy milk")
        );
        assert_eq!(pick("buy", &cs), None);
        assert_eq!(pick("eggs", &cs), None);
    }
}
