//! The task as the rest of the program sees it, read from taskchampion's key/value map, and
//! the validated edits that write back into that map.
//!
//! Keys follow Taskwarrior 3 (taskchampion): `description`, `status`, `project`, `priority`,
//! timestamps as Unix seconds (`entry`, `modified`, `end`, `due`, `wait`, `scheduled`,
//! `until`, `start`), `tag_<name>`, `dep_<uuid>`, `annotation_<unix seconds>`; every other key
//! is a user-defined attribute (UDA). Progress is kept in the UDAs `progress` (percent),
//! `progress_done` and `progress_total`, so Taskwarrior carries it along.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use taskchampion::storage::TaskMap;
use uuid::Uuid;

use super::urgency::{self, Factors};
use super::TaskError;

/// UDA holding the percentage done (0..=100).
pub const UDA_PROGRESS: &str = "progress";
/// UDA holding the number of subtasks done.
pub const UDA_PROGRESS_DONE: &str = "progress_done";
/// UDA holding the number of subtasks.
pub const UDA_PROGRESS_TOTAL: &str = "progress_total";

/// Timestamp properties, stored as Unix seconds.
pub const DATE_KEYS: &[&str] = &[
    "entry",
    "modified",
    "end",
    "due",
    "wait",
    "scheduled",
    "until",
    "start",
];

/// A task's status as Taskwarrior shows it (`waiting` = pending with a future `wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// To do.
    Pending,
    /// Hidden until its wait time.
    Waiting,
    /// Done.
    Completed,
    /// Deleted (kept, as Taskwarrior does).
    Deleted,
    /// A recurrence template (made by Taskwarrior).
    Recurring,
}

impl Status {
    /// Name as Taskwarrior writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Deleted => "deleted",
            Self::Recurring => "recurring",
        }
    }
}

/// An annotation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Annotation {
    /// When it was added (RFC 3339).
    #[schema(value_type = String)]
    pub entry: Timestamp,
    /// Its text.
    pub description: String,
}

/// How far a task is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// Percent done, 0..=100.
    pub percent: u8,
    /// Subtasks done, when counted in steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<u32>,
    /// Subtasks in all, when counted in steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u32>,
}

impl Progress {
    /// A percentage, validated.
    pub fn percent(percent: i64) -> Result<Self, TaskError> {
        let percent = u8::try_from(percent)
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| TaskError::invalid("progress.percent", "must be from 0 to 100"))?;
        Ok(Self {
            percent,
            done: None,
            total: None,
        })
    }

    /// `done` of `total` subtasks, validated.
    pub fn steps(done: i64, total: i64) -> Result<Self, TaskError> {
        let total = u32::try_from(total)
            .ok()
            .filter(|t| *t >= 1)
            .ok_or_else(|| TaskError::invalid("progress.total", "must be at least 1"))?;
        let done = u32::try_from(done)
            .ok()
            .filter(|d| *d <= total)
            .ok_or_else(|| {
                TaskError::invalid("progress.done", format!("must be from 0 to {total}"))
            })?;
        let percent = u8::try_from(u64::from(done) * 100 / u64::from(total)).unwrap_or(100);
        Ok(Self {
            percent,
            done: Some(done),
            total: Some(total),
        })
    }

    /// From `{"percent": n}` or `{"done": a, "total": b}`; `field` names it in errors.
    pub fn from_json(v: &Value, field: &str) -> Result<Self, TaskError> {
        let obj = v.as_object().ok_or_else(|| {
            TaskError::invalid(
                field,
                "must be an object: {\"percent\": n} or {\"done\": a, \"total\": b}",
            )
        })?;
        let int = |k: &str| -> Result<Option<i64>, TaskError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x.as_i64().map(Some).ok_or_else(|| {
                    TaskError::invalid(format!("{field}.{k}"), "must be an integer")
                }),
            }
        };
        for k in obj.keys() {
            if !matches!(k.as_str(), "percent" | "done" | "total") {
                return Err(TaskError::invalid(
                    format!("{field}.{k}"),
                    "unknown property (expected percent, or done and total)",
                ));
            }
        }
        match (int("percent")?, int("done")?, int("total")?) {
            (_, Some(d), Some(t)) => Self::steps(d, t),
            (Some(p), None, None) => Self::percent(p),
            (_, Some(_), None) => Err(TaskError::invalid(
                format!("{field}.total"),
                "is required with done",
            )),
            (_, None, Some(_)) => Err(TaskError::invalid(
                format!("{field}.done"),
                "is required with total",
            )),
            (None, None, None) => Err(TaskError::invalid(
                field,
                "needs percent, or done and total",
            )),
        }
    }

    /// "60 percent" / "3 of 5".
    pub fn spoken(&self) -> String {
        match (self.done, self.total) {
            (Some(d), Some(t)) => format!("{d} of {t} done"),
            _ => format!("{} percent done", self.percent),
        }
    }
}

/// Priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Priority {
    /// High.
    H,
    /// Medium.
    M,
    /// Low.
    L,
}

impl Priority {
    /// `H`/`M`/`L` (also `high`, `medium`, `low`, any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "h" | "high" => Some(Self::H),
            "m" | "medium" => Some(Self::M),
            "l" | "low" => Some(Self::L),
            _ => None,
        }
    }

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::H => "H",
            Self::M => "M",
            Self::L => "L",
        }
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Task {
    /// Its UUID (shared with Taskwarrior and sync replicas).
    #[schema(value_type = String)]
    pub uuid: Uuid,
    /// What to do.
    pub description: String,
    /// Status.
    pub status: Status,
    /// Project (list), e.g. `shopping` or `Home.Garden`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Created.
    #[schema(value_type = Option<String>)]
    pub entry: Option<Timestamp>,
    /// Last modified.
    #[schema(value_type = Option<String>)]
    pub modified: Option<Timestamp>,
    /// Completed or deleted at.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub end: Option<Timestamp>,
    /// Due.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub due: Option<Timestamp>,
    /// Hidden until.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub wait: Option<Timestamp>,
    /// Scheduled to start.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub scheduled: Option<Timestamp>,
    /// Expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub until: Option<Timestamp>,
    /// Started at (active).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub start: Option<Timestamp>,
    /// Tasks this one depends on.
    #[schema(value_type = Vec<String>)]
    pub depends: Vec<Uuid>,
    /// Annotations, oldest first.
    pub annotations: Vec<Annotation>,
    /// Progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Other user-defined attributes.
    pub udas: BTreeMap<String, String>,
    /// Taskwarrior urgency.
    pub urgency: f64,
    /// Started and not stopped.
    pub active: bool,
    /// Depends on a pending task.
    pub blocked: bool,
    /// A pending task depends on it.
    pub blocking: bool,
}

/// Timestamp property of a map.
pub fn get_time(map: &TaskMap, key: &str) -> Option<Timestamp> {
    map.get(key)
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| Timestamp::from_second(s).ok())
}

/// Whether a stored map is pending (or waiting) as Taskwarrior counts for dependencies.
pub fn is_pending(map: &TaskMap) -> bool {
    map.get("status").map(String::as_str) == Some("pending")
}

/// Dependencies of a map.
pub fn deps_of(map: &TaskMap) -> Vec<Uuid> {
    let mut d: Vec<Uuid> = map
        .keys()
        .filter_map(|k| k.strip_prefix("dep_"))
        .filter_map(|u| Uuid::parse_str(u).ok())
        .collect();
    d.sort();
    d
}

/// Whether `key` is one of the properties the model reads (not a UDA).
pub fn is_known_key(key: &str) -> bool {
    matches!(
        key,
        "description"
            | "status"
            | "project"
            | "priority"
            | UDA_PROGRESS
            | UDA_PROGRESS_DONE
            | UDA_PROGRESS_TOTAL
    ) || DATE_KEYS.contains(&key)
        || key.starts_with("tag_")
        || key.starts_with("dep_")
        || key.starts_with("annotation_")
}

/// Blocked/blocking facts over a set of tasks.
#[derive(Debug, Default)]
pub struct DepGraph {
    pending: HashSet<Uuid>,
    /// Tasks some pending task depends on.
    blocking: HashSet<Uuid>,
}

impl DepGraph {
    /// Over every task.
    pub fn new(all: &HashMap<Uuid, TaskMap>) -> Self {
        let pending: HashSet<Uuid> = all
            .iter()
            .filter(|(_, m)| is_pending(m))
            .map(|(u, _)| *u)
            .collect();
        let blocking = all
            .iter()
            .filter(|(_, m)| is_pending(m))
            .flat_map(|(_, m)| deps_of(m))
            .filter(|d| pending.contains(d))
            .collect();
        Self { pending, blocking }
    }
}

/// Read a task from its map, with urgency at `now`.
pub fn task_from_map(uuid: Uuid, map: &TaskMap, graph: &DepGraph, now: Timestamp) -> Task {
    let mut tags: Vec<String> = map
        .keys()
        .filter_map(|k| k.strip_prefix("tag_"))
        .map(str::to_owned)
        .collect();
    tags.sort();
    let mut annotations: Vec<Annotation> = map
        .iter()
        .filter_map(|(k, v)| {
            let secs = k.strip_prefix("annotation_")?.parse::<i64>().ok()?;
            Some(Annotation {
                entry: Timestamp::from_second(secs).ok()?,
                description: v.clone(),
            })
        })
        .collect();
    annotations.sort_by_key(|a| a.entry);
    let depends = deps_of(map);
    let wait = get_time(map, "wait");
    let raw_status = map.get("status").map(String::as_str).unwrap_or("pending");
    let waiting = raw_status == "pending" && wait.is_some_and(|w| w > now);
    let status = match raw_status {
        "completed" => Status::Completed,
        "deleted" => Status::Deleted,
        "recurring" => Status::Recurring,
        _ if waiting => Status::Waiting,
        _ => Status::Pending,
    };
    let num = |k: &str| map.get(k).and_then(|v| v.trim().parse::<f64>().ok());
    let progress = match (num(UDA_PROGRESS_DONE), num(UDA_PROGRESS_TOTAL)) {
        (Some(d), Some(t)) if t >= 1.0 && d >= 0.0 && d <= t => Some(Progress {
            percent: ((d / t) * 100.0).floor() as u8,
            done: Some(d as u32),
            total: Some(t as u32),
        }),
        _ => num(UDA_PROGRESS)
            .filter(|p| (0.0..=100.0).contains(p))
            .map(|p| Progress {
                percent: p.round() as u8,
                done: None,
                total: None,
            }),
    };
    let udas = map
        .iter()
        .filter(|(k, _)| !is_known_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let priority = map.get("priority").and_then(|p| Priority::parse(p));
    let start = get_time(map, "start");
    let active = start.is_some();
    let blocked = depends.iter().any(|d| graph.pending.contains(d));
    let blocking = graph.blocking.contains(&uuid);
    let project = map.get("project").filter(|p| !p.is_empty()).cloned();
    let factors = Factors {
        tags: &tags,
        has_project: project.is_some(),
        priority: map.get("priority").map(String::as_str),
        due: get_time(map, "due"),
        scheduled: get_time(map, "scheduled"),
        entry: get_time(map, "entry"),
        active,
        waiting,
        blocked,
        blocking,
        annotations: annotations.len(),
    };
    let urgency = urgency::urgency(&factors, now);
    Task {
        uuid,
        description: map.get("description").cloned().unwrap_or_default(),
        status,
        project,
        tags,
        priority,
        entry: get_time(map, "entry"),
        modified: get_time(map, "modified"),
        end: get_time(map, "end"),
        due: get_time(map, "due"),
        wait,
        scheduled: get_time(map, "scheduled"),
        until: get_time(map, "until"),
        start,
        depends,
        annotations,
        progress,
        udas,
        urgency,
        active,
        blocked,
        blocking,
    }
}

/// Parse a time given by a client: RFC 3339 (`2026-11-29T09:30:00Z`, with offset), a jiff
/// zoned time (`2026-11-29T09:30:00+01:00[Europe/Paris]`) or Taskwarrior's `20261129T093000Z`.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    if let Ok(z) = s.parse::<jiff::Zoned>() {
        return Some(z.timestamp());
    }
    super::taskwarrior::parse_tw_date(s)
}

/// A validated change to a task; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskEdit {
    /// New description.
    pub description: Option<String>,
    /// Project (`Some(None)` clears it).
    pub project: Option<Option<String>>,
    /// The full tag set.
    pub tags: Option<Vec<String>>,
    /// Priority (`Some(None)` clears it).
    pub priority: Option<Option<Priority>>,
    /// Due (`Some(None)` clears it).
    pub due: Option<Option<Timestamp>>,
    /// Wait.
    pub wait: Option<Option<Timestamp>>,
    /// Scheduled.
    pub scheduled: Option<Option<Timestamp>>,
    /// Until.
    pub until: Option<Option<Timestamp>>,
    /// The full dependency set.
    pub depends: Option<Vec<Uuid>>,
    /// Progress (`Some(None)` clears it).
    pub progress: Option<Option<Progress>>,
    /// `pending`, `completed` or `deleted`.
    pub status: Option<String>,
    /// Start (`true`) or stop (`false`).
    pub active: Option<bool>,
    /// Annotations to add.
    pub annotate: Vec<String>,
    /// Other user-defined attributes to set (not settable through `from_json`).
    pub udas: BTreeMap<String, String>,
}

fn opt_string(v: &Value, field: &str) -> Result<Option<String>, TaskError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim().to_owned())),
        _ => Err(TaskError::invalid(field, "must be a string or null")),
    }
}

fn opt_time(v: &Value, field: &str) -> Result<Option<Timestamp>, TaskError> {
    match opt_string(v, field)? {
        None => Ok(None),
        Some(s) => parse_time(&s).map(Some).ok_or_else(|| {
            TaskError::invalid(
                field,
                format!("{s:?} is not a time (RFC 3339 such as 2026-11-29T09:30:00Z, or 20261129T093000Z)"),
            )
        }),
    }
}

/// Check a tag name.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && !tag.chars().any(char::is_whitespace)
        && !tag.starts_with(['+', '-'])
        && !tag.contains(',')
}

impl TaskEdit {
    /// From a JSON object (REST body or tool arguments). Errors name the field.
    pub fn from_json(v: &Value) -> Result<Self, TaskError> {
        let obj = v
            .as_object()
            .ok_or_else(|| TaskError::invalid("body", "must be a JSON object"))?;
        let mut e = TaskEdit::default();
        for (k, val) in obj {
            match k.as_str() {
                "description" => {
                    let d = opt_string(val, k)?
                        .ok_or_else(|| TaskError::invalid(k, "must not be empty"))?;
                    e.description = Some(d);
                }
                "project" => e.project = Some(opt_string(val, k)?),
                "priority" => {
                    e.priority = Some(match opt_string(val, k)? {
                        None => None,
                        Some(p) => Some(Priority::parse(&p).ok_or_else(|| {
                            TaskError::invalid(k, format!("{p:?} is not H, M or L"))
                        })?),
                    })
                }
                "tags" => {
                    let arr = val
                        .as_array()
                        .ok_or_else(|| TaskError::invalid(k, "must be an array of strings"))?;
                    let mut tags = Vec::new();
                    for (i, t) in arr.iter().enumerate() {
                        let t = t.as_str().map(str::trim).filter(|t| valid_tag(t)).ok_or_else(
                            || {
                                TaskError::invalid(
                                    format!("tags[{i}]"),
                                    "must be a word without spaces, commas or a leading + or -",
                                )
                            },
                        )?;
                        tags.push(t.to_owned());
                    }
                    e.tags = Some(tags);
                }
                "due" => e.due = Some(opt_time(val, k)?),
                "wait" => e.wait = Some(opt_time(val, k)?),
                "scheduled" => e.scheduled = Some(opt_time(val, k)?),
                "until" => e.until = Some(opt_time(val, k)?),
                "depends" => {
                    let arr = val
                        .as_array()
                        .ok_or_else(|| TaskError::invalid(k, "must be an array of UUIDs"))?;
                    let mut deps = Vec::new();
                    for (i, d) in arr.iter().enumerate() {
                        let d = d
                            .as_str()
                            .and_then(|s| Uuid::parse_str(s.trim()).ok())
                            .ok_or_else(|| {
                                TaskError::invalid(format!("depends[{i}]"), "must be a UUID")
                            })?;
                        deps.push(d);
                    }
                    e.depends = Some(deps);
                }
                "progress" => {
                    e.progress = Some(match val {
                        Value::Null => None,
                        Value::Number(n) => Some(Progress::percent(n.as_i64().ok_or_else(
                            || TaskError::invalid(k, "must be an integer percentage"),
                        )?)?),
                        other => Some(Progress::from_json(other, k)?),
                    })
                }
                "status" => {
                    let s = opt_string(val, k)?.unwrap_or_default();
                    if !matches!(s.as_str(), "pending" | "completed" | "deleted") {
                        return Err(TaskError::invalid(
                            k,
                            format!("{s:?} is not pending, completed or deleted"),
                        ));
                    }
                    e.status = Some(s);
                }
                "active" => {
                    e.active = Some(
                        val.as_bool()
                            .ok_or_else(|| TaskError::invalid(k, "must be true or false"))?,
                    )
                }
                "annotation" => {
                    let a = opt_string(val, k)?
                        .ok_or_else(|| TaskError::invalid(k, "must not be empty"))?;
                    e.annotate.push(a);
                }
                other => {
                    return Err(TaskError::invalid(
                        other,
                        "unknown property (expected description, project, tags, priority, due, wait, scheduled, until, depends, progress, status, active, annotation)",
                    ))
                }
            }
        }
        Ok(e)
    }

    /// The key/value changes this edit makes to `map` at `now` (`None` value = remove).
    pub fn changes(&self, map: &TaskMap, now: Timestamp) -> Vec<(String, Option<String>)> {
        let secs = |t: Timestamp| t.as_second().to_string();
        let mut ch: Vec<(String, Option<String>)> = Vec::new();
        if let Some(d) = &self.description {
            ch.push(("description".into(), Some(d.clone())));
        }
        if let Some(p) = &self.project {
            ch.push(("project".into(), p.clone()));
        }
        if let Some(p) = &self.priority {
            ch.push(("priority".into(), p.map(|p| p.as_str().to_owned())));
        }
        for (key, val) in [
            ("due", &self.due),
            ("wait", &self.wait),
            ("scheduled", &self.scheduled),
            ("until", &self.until),
        ] {
            if let Some(v) = val {
                ch.push((key.into(), v.map(secs)));
            }
        }
        if let Some(tags) = &self.tags {
            let want: HashSet<&str> = tags.iter().map(String::as_str).collect();
            for k in map.keys().filter(|k| k.starts_with("tag_")) {
                if !want.contains(&k["tag_".len()..]) {
                    ch.push((k.clone(), None));
                }
            }
            for t in &want {
                let k = format!("tag_{t}");
                if !map.contains_key(&k) {
                    ch.push((k, Some(String::new())));
                }
            }
        }
        if let Some(deps) = &self.depends {
            let want: HashSet<String> = deps.iter().map(|d| format!("dep_{d}")).collect();
            for k in map.keys().filter(|k| k.starts_with("dep_")) {
                if !want.contains(k) {
                    ch.push((k.clone(), None));
                }
            }
            for k in want {
                if !map.contains_key(&k) {
                    ch.push((k, Some(String::new())));
                }
            }
        }
        if let Some(p) = &self.progress {
            let (pct, done, total) = match p {
                None => (None, None, None),
                Some(p) => (
                    Some(p.percent.to_string()),
                    p.done.map(|d| d.to_string()),
                    p.total.map(|t| t.to_string()),
                ),
            };
            ch.push((UDA_PROGRESS.into(), pct));
            ch.push((UDA_PROGRESS_DONE.into(), done));
            ch.push((UDA_PROGRESS_TOTAL.into(), total));
        }
        if let Some(s) = &self.status {
            ch.push(("status".into(), Some(s.clone())));
            if s == "pending" {
                ch.push(("end".into(), None));
            } else {
                ch.push(("end".into(), Some(secs(now))));
                ch.push(("start".into(), None));
            }
        }
        match self.active {
            Some(true) if !map.contains_key("start") => ch.push(("start".into(), Some(secs(now)))),
            Some(false) => ch.push(("start".into(), None)),
            _ => {}
        }
        for (k, v) in &self.udas {
            ch.push((k.clone(), Some(v.clone())));
        }
        let mut at = now.as_second();
        for a in &self.annotate {
            while map.contains_key(&format!("annotation_{at}"))
                || ch.iter().any(|(k, _)| *k == format!("annotation_{at}"))
            {
                at += 1;
            }
            ch.push((format!("annotation_{at}"), Some(a.clone())));
        }
        ch
    }
}
