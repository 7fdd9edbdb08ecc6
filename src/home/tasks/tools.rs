//! The task tools (group `task`): add, list, complete, progress, annotate, delete; shared by
//! the fast path and LLM tool calls.
//!
//! A tool that names its task by words (`match`) and finds several answers with the
//! candidates under `data.ambiguous` (the orchestrator then asks "which one?"), and one
//! that finds none says so; neither changes anything.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use jiff::Timestamp;
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::{Progress, Task, TaskEdit};
use super::{TaskError, TaskFilter, Tasks};
use crate::nlu::llm::ToolSpec;
use crate::orchestrator::speak;
use crate::orchestrator::tools::{Tool, ToolContext, ToolError, ToolOutput, ToolRegistry};

/// UDA recording the message that added a task (makes a re-processed message idempotent).
pub const UDA_SOURCE_MESSAGE: &str = "la_source_message";

/// Register every task tool.
pub fn register(registry: &mut ToolRegistry, tasks: &Tasks) {
    for op in [
        Op::Add,
        Op::List,
        Op::Complete,
        Op::Progress,
        Op::Annotate,
        Op::Delete,
    ] {
        registry.register(Arc::new(TaskTool {
            tasks: tasks.clone(),
            op,
        }));
    }
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    List,
    Complete,
    Progress,
    Annotate,
    Delete,
}

struct TaskTool {
    tasks: Tasks,
    op: Op,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "task_add",
            Op::List => "task_list",
            Op::Complete => "task_complete",
            Op::Progress => "task_progress",
            Op::Annotate => "task_annotate",
            Op::Delete => "task_delete",
        }
    }
}

fn err(tool: &str, e: TaskError) -> ToolError {
    match e {
        TaskError::Storage(m) | TaskError::Sync(m) => {
            ToolError::Store(crate::store::StoreError::CommitFailed(m))
        }
        other => ToolError::InvalidArguments {
            tool: tool.to_owned(),
            message: other.to_string(),
        },
    }
}

fn now_of(ctx: &ToolContext) -> Timestamp {
    ctx.now.timestamp()
}

fn list_name(project: Option<&str>) -> String {
    match project {
        Some(p) => format!("your {p} list"),
        None => "your tasks".into(),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// "A, B or C".
fn list_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn brief(t: &Task) -> Value {
    json!({"uuid": t.uuid.to_string(), "description": t.description})
}

impl TaskTool {
    /// The task named by `uuid` or `match`; `Err(output)` when none or several match.
    async fn target(
        &self,
        args: &Value,
        ctx: &ToolContext,
    ) -> Result<Result<Task, ToolOutput>, ToolError> {
        let name = self.op.name();
        let now = now_of(ctx);
        if let Some(u) = args.get("uuid").and_then(Value::as_str) {
            let uuid = Uuid::parse_str(u).map_err(|_| ToolError::InvalidArguments {
                tool: name.into(),
                message: format!("uuid {u:?} is not a UUID"),
            })?;
            return Ok(Ok(self
                .tasks
                .get(uuid, now)
                .await
                .map_err(|e| err(name, e))?));
        }
        let words = args
            .get("match")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim();
        if words.is_empty() {
            return Err(ToolError::InvalidArguments {
                tool: name.into(),
                message: "give `uuid` or `match` (words of the task's description)".into(),
            });
        }
        let mut found = self
            .tasks
            .find(words, now)
            .await
            .map_err(|e| err(name, e))?;
        match found.len() {
            0 => Ok(Err(ToolOutput {
                say: format!("I couldn't find a task about {words}."),
                data: json!({"not_found": words}),
            })),
            1 => Ok(Ok(found.remove(0))),
            _ => {
                found.truncate(5);
                let names: Vec<String> = found.iter().map(|t| t.description.clone()).collect();
                Ok(Err(ToolOutput {
                    say: format!("Which one do you mean: {}?", list_or(&names)),
                    data: json!({"ambiguous": found.iter().map(brief).collect::<Vec<_>>()}),
                }))
            }
        }
    }
}

impl Tool for TaskTool {
    fn spec(&self) -> ToolSpec {
        let target = json!({
            "uuid": {"type": "string", "description": "the task's UUID"},
            "match": {"type": "string", "description": "words of the task's description"}});
        let (description, mut props, required): (&str, Value, Vec<&str>) = match self.op {
            Op::Add => (
                "Add a task (to-do item), optionally to a list/project, with tags, priority H/M/L and a due time (RFC 3339).",
                json!({
                    "description": {"type": "string"}, "project": {"type": "string"},
                    "tags": {"type": "array"}, "priority": {"type": "string", "enum": ["H", "M", "L"]},
                    "due": {"type": "string"}}),
                vec!["description"],
            ),
            Op::List => (
                "List the open tasks, most urgent first, optionally of one list/project or tag.",
                json!({"project": {"type": "string"}, "tag": {"type": "string"},
                       "status": {"type": "string", "enum": ["pending", "waiting", "completed", "deleted", "all"]}}),
                vec![],
            ),
            Op::Complete => ("Mark a task as done.", json!({}), vec![]),
            Op::Progress => (
                "Record how far a task is: percent, or done of total subtasks.",
                json!({"percent": {"type": "integer"}, "done": {"type": "integer"}, "total": {"type": "integer"}}),
                vec![],
            ),
            Op::Annotate => (
                "Add a note (annotation) to a task.",
                json!({"text": {"type": "string"}}),
                vec!["text"],
            ),
            Op::Delete => ("Delete a task.", json!({}), vec![]),
        };
        if !matches!(self.op, Op::Add | Op::List) {
            if let (Some(p), Some(t)) = (props.as_object_mut(), target.as_object()) {
                p.extend(t.clone());
            }
        }
        ToolSpec {
            name: self.op.name().into(),
            description: description.into(),
            parameters: json!({"type": "object", "properties": props, "required": required}),
        }
    }

    fn group(&self) -> &'static str {
        "task"
    }

    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let name = self.op.name();
            let now = now_of(ctx);
            match self.op {
                Op::Add => {
                    let mut edit = TaskEdit::from_json(&args).map_err(|e| err(name, e))?;
                    if let Some(m) = ctx.source_message_id {
                        edit.udas.insert(UDA_SOURCE_MESSAGE.into(), m.0.to_string());
                    }
                    // A message processed again after a crash finds the task it added.
                    let existing = match ctx.source_message_id {
                        Some(m) => self
                            .tasks
                            .list(
                                &TaskFilter {
                                    status: Some("all".into()),
                                    ..TaskFilter::default()
                                },
                                now,
                            )
                            .await
                            .map_err(|e| err(name, e))?
                            .into_iter()
                            .find(|t| t.udas.get(UDA_SOURCE_MESSAGE) == Some(&m.0.to_string())),
                        None => None,
                    };
                    let task = match existing {
                        Some(t) => t,
                        None => self
                            .tasks
                            .create(edit, now)
                            .await
                            .map_err(|e| err(name, e))?,
                    };
                    let mut say = format!(
                        "Added {} to {}",
                        task.description,
                        list_name(task.project.as_deref())
                    );
                    if let Some(due) = task.due {
                        let z = due.to_zoned(ctx.now.time_zone().clone());
                        say.push_str(&format!(", due {}", speak::day_and_time(&z, &ctx.now)));
                    }
                    say.push('.');
                    Ok(ToolOutput {
                        say,
                        data: json!({"uuid": task.uuid.to_string(), "description": task.description,
                                     "project": task.project}),
                    })
                }
                Op::List => {
                    let filter = TaskFilter {
                        project: args
                            .get("project")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        tag: args.get("tag").and_then(Value::as_str).map(str::to_owned),
                        status: args
                            .get("status")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                        words: None,
                    };
                    let items = self
                        .tasks
                        .list(&filter, now)
                        .await
                        .map_err(|e| err(name, e))?;
                    let list = list_name(filter.project.as_deref());
                    let say = match items.len() {
                        0 if filter.project.is_some() => format!("{} is empty.", capitalize(&list)),
                        0 => "You have no open tasks.".into(),
                        n => {
                            let shown: Vec<String> = items
                                .iter()
                                .take(8)
                                .map(|t| match &t.progress {
                                    Some(p) => format!("{} ({})", t.description, p.spoken()),
                                    None => t.description.clone(),
                                })
                                .collect();
                            let more = if n > shown.len() {
                                format!(", and {} more", n - shown.len())
                            } else {
                                String::new()
                            };
                            let head = if n == 1 {
                                format!("On {list} there is one task")
                            } else {
                                format!("On {list} there are {n} tasks")
                            };
                            format!("{head}: {}{more}.", speak::list_and(&shown))
                        }
                    };
                    Ok(ToolOutput {
                        say,
                        data: json!(items
                            .iter()
                            .map(
                                |t| json!({"uuid": t.uuid.to_string(), "description": t.description,
                                            "project": t.project, "urgency": t.urgency})
                            )
                            .collect::<Vec<_>>()),
                    })
                }
                Op::Complete | Op::Delete | Op::Progress | Op::Annotate => {
                    let task = match self.target(&args, ctx).await? {
                        Ok(t) => t,
                        Err(out) => return Ok(out),
                    };
                    let (task, say) = match self.op {
                        Op::Complete => {
                            if task.status == super::Status::Completed {
                                let say =
                                    format!("{} was already done.", capitalize(&task.description));
                                (task, say)
                            } else {
                                let t = self
                                    .tasks
                                    .complete(task.uuid, now)
                                    .await
                                    .map_err(|e| err(name, e))?;
                                let say = format!("Marked {} as done.", t.description);
                                (t, say)
                            }
                        }
                        Op::Delete => {
                            let t = self
                                .tasks
                                .delete(task.uuid, now)
                                .await
                                .map_err(|e| err(name, e))?;
                            let say = format!("Deleted {}.", t.description);
                            (t, say)
                        }
                        Op::Progress => {
                            let int = |k: &str| args.get(k).and_then(Value::as_i64);
                            let p = match (int("percent"), int("done"), int("total")) {
                                (_, Some(d), Some(t)) => Progress::steps(d, t),
                                (Some(p), None, None) => Progress::percent(p),
                                _ => Err(TaskError::invalid(
                                    "progress",
                                    "give percent, or done and total",
                                )),
                            }
                            .map_err(|e| err(name, e))?;
                            let t = self
                                .tasks
                                .set_progress(task.uuid, p, now)
                                .await
                                .map_err(|e| err(name, e))?;
                            let say =
                                format!("{} is now {}.", capitalize(&t.description), p.spoken());
                            (t, say)
                        }
                        Op::Annotate => {
                            let text = args
                                .get("text")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_owned();
                            let t = self
                                .tasks
                                .annotate(task.uuid, text, now)
                                .await
                                .map_err(|e| err(name, e))?;
                            let say = format!("Added a note to {}.", t.description);
                            (t, say)
                        }
                        Op::Add | Op::List => unreachable!("handled above"),
                    };
                    Ok(ToolOutput {
                        say,
                        data: json!({"uuid": task.uuid.to_string(), "description": task.description,
                                     "status": task.status, "progress": task.progress}),
                    })
                }
            }
        })
    }
}
