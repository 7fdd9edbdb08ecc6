//! Tasks, Taskwarrior-compatible: one taskchampion `Replica` over our SQLite file, urgency
//! ordering like Taskwarrior's, Taskwarrior 2.6 JSON export/import, and optional sync with a
//! taskchampion sync server (shared with Taskwarrior 3 clients).
//!
//! Invariants: the replica is the only writer of the `tc_*` tables and exists once, behind
//! a mutex, so its storage transactions never interleave; every change is committed (one
//! store transaction per taskchampion commit) before it is reported or announced on the bus;
//! an import is validated whole before anything is written, then committed at once.

pub mod model;
pub mod storage;
pub mod taskwarrior;
pub mod tools;
pub mod urgency;

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;
use taskchampion::storage::TaskMap;
use taskchampion::{Operations, Replica, ServerConfig, TaskData};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::config::tasks::TaskSyncConfig;
use crate::events::{EventBus, EventKind};
use crate::store::Store;
use model::{DepGraph, Priority};
pub use model::{Progress, Status, Task, TaskEdit};
use storage::SqlStorage;

/// Why a task operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A field of the request is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No task with that UUID.
    #[error("task {0} not found")]
    NotFound(String),
    /// A task of an import document is invalid (nothing was imported).
    #[error("import line {line}: {field}: {message} (nothing was imported)")]
    Import {
        /// Line (or position in a JSON array), 1-based.
        line: usize,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The task storage failed (nothing was changed).
    #[error("task storage failed: {0}")]
    Storage(String),
    /// Sync is not configured.
    #[error("task sync is not configured: set [tasks] sync_server_url, sync_client_id and sync_encryption_secret")]
    SyncNotConfigured,
    /// The sync server could not be reached or refused (retry later).
    #[error("sync with the task server failed: {0}")]
    Sync(String),
}

impl TaskError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<taskchampion::Error> for TaskError {
    fn from(e: taskchampion::Error) -> Self {
        Self::Storage(format!("{e:#}"))
    }
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Project, or a parent project (`Home` matches `Home.Garden`), case-insensitive.
    pub project: Option<String>,
    /// Having this tag.
    pub tag: Option<String>,
    /// Status; `None`: pending and waiting. `all`: every status.
    pub status: Option<String>,
    /// Description containing every one of these words (case-insensitive).
    pub words: Option<String>,
}

impl TaskFilter {
    fn status_ok(&self, s: Status) -> Result<bool, TaskError> {
        Ok(match self.status.as_deref() {
            None => matches!(s, Status::Pending | Status::Waiting),
            Some("all") => true,
            Some("pending") => s == Status::Pending,
            Some("waiting") => s == Status::Waiting,
            Some("completed") => s == Status::Completed,
            Some("deleted") => s == Status::Deleted,
            Some("recurring") => s == Status::Recurring,
            Some(other) => {
                return Err(TaskError::invalid(
                    "status",
                    format!(
                        "{other:?} is not pending, waiting, completed, deleted, recurring or all"
                    ),
                ))
            }
        })
    }

    fn matches(&self, t: &Task) -> Result<bool, TaskError> {
        if !self.status_ok(t.status)? {
            return Ok(false);
        }
        if let Some(p) = &self.project {
            let Some(tp) = &t.project else {
                return Ok(false);
            };
            let (tp, p) = (tp.to_lowercase(), p.to_lowercase());
            if tp != p && !tp.starts_with(&format!("{p}.")) {
                return Ok(false);
            }
        }
        if let Some(tag) = &self.tag {
            if !t.tags.iter().any(|x| x == tag) {
                return Ok(false);
            }
        }
        if let Some(w) = &self.words {
            let d = t.description.to_lowercase();
            if !w.to_lowercase().split_whitespace().all(|w| d.contains(w)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// What a sync did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    /// Local changes sent.
    pub sent_operations: usize,
    /// Tasks after the sync.
    pub tasks: usize,
}

struct Inner {
    replica: Arc<Mutex<Replica<SqlStorage>>>,
    events: Arc<EventBus>,
    sync: Option<TaskSyncConfig>,
}

/// The task service (cheap to clone).
#[derive(Clone)]
pub struct Tasks {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks").finish_non_exhaustive()
    }
}

fn apply(data: &mut TaskData, changes: Vec<(String, Option<String>)>, ops: &mut Operations) {
    for (k, v) in changes {
        if data.get(&k) != v.as_deref() {
            data.update(k, v, ops);
        }
    }
}

fn map_of(data: &TaskData) -> TaskMap {
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Tasks {
    /// The service over `store` (its `tc_*` tables), announcing changes on `events`.
    pub fn new(store: Store, events: Arc<EventBus>, sync: Option<TaskSyncConfig>) -> Self {
        Self {
            inner: Arc::new(Inner {
                replica: Arc::new(Mutex::new(Replica::new(SqlStorage::new(store)))),
                events,
                sync,
            }),
        }
    }

    fn announce(&self, uuid: Uuid, change: &str, description: &str) {
        self.inner.events.publish(EventKind::TaskChanged {
            uuid: uuid.to_string(),
            change: change.to_owned(),
            description: description.to_owned(),
        });
    }

    async fn all_maps(
        replica: &mut Replica<SqlStorage>,
    ) -> Result<HashMap<Uuid, TaskMap>, TaskError> {
        Ok(replica
            .all_task_data()
            .await?
            .into_iter()
            .map(|(u, d)| (u, map_of(&d)))
            .collect())
    }

    /// Tasks matching `filter`, most urgent first (ties: oldest first), at `now`.
    pub async fn list(&self, filter: &TaskFilter, now: Timestamp) -> Result<Vec<Task>, TaskError> {
        filter.status_ok(Status::Pending)?;
        let all = {
            let mut r = self.inner.replica.lock().await;
            Self::all_maps(&mut r).await?
        };
        let graph = DepGraph::new(&all);
        let mut out = Vec::new();
        for (u, m) in &all {
            let t = model::task_from_map(*u, m, &graph, now);
            if filter.matches(&t)? {
                out.push(t);
            }
        }
        out.sort_by(|a, b| {
            b.urgency
                .total_cmp(&a.urgency)
                .then(a.entry.cmp(&b.entry))
                .then(a.uuid.cmp(&b.uuid))
        });
        Ok(out)
    }

    /// One task.
    pub async fn get(&self, uuid: Uuid, now: Timestamp) -> Result<Task, TaskError> {
        let all = {
            let mut r = self.inner.replica.lock().await;
            Self::all_maps(&mut r).await?
        };
        let m = all
            .get(&uuid)
            .ok_or_else(|| TaskError::NotFound(uuid.to_string()))?;
        Ok(model::task_from_map(uuid, m, &DepGraph::new(&all), now))
    }

    async fn check_deps(
        replica: &mut Replica<SqlStorage>,
        me: Uuid,
        edit: &TaskEdit,
    ) -> Result<(), TaskError> {
        if let Some(deps) = &edit.depends {
            for (i, d) in deps.iter().enumerate() {
                if *d == me {
                    return Err(TaskError::invalid(
                        format!("depends[{i}]"),
                        "a task cannot depend on itself",
                    ));
                }
                if replica.get_task_data(*d).await?.is_none() {
                    return Err(TaskError::invalid(
                        format!("depends[{i}]"),
                        format!("no task {d}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Create a task from `edit` (a description is required).
    pub async fn create(&self, edit: TaskEdit, now: Timestamp) -> Result<Task, TaskError> {
        let description = edit
            .description
            .clone()
            .ok_or_else(|| TaskError::invalid("description", "is required"))?;
        let uuid = Uuid::new_v4();
        {
            let mut r = self.inner.replica.lock().await;
            Self::check_deps(&mut r, uuid, &edit).await?;
            let mut ops = Operations::new();
            ops.push(taskchampion::Operation::UndoPoint);
            let mut data = TaskData::create(uuid, &mut ops);
            let secs = now.as_second().to_string();
            let mut changes = vec![
                ("status".to_owned(), Some("pending".to_owned())),
                ("entry".to_owned(), Some(secs.clone())),
                ("modified".to_owned(), Some(secs)),
            ];
            changes.extend(edit.changes(&TaskMap::new(), now));
            apply(&mut data, changes, &mut ops);
            r.commit_operations(ops).await?;
        }
        self.announce(uuid, "created", &description);
        self.get(uuid, now).await
    }

    /// Change a task; `change` names the event (`updated`, `completed`, `deleted`).
    pub async fn update(
        &self,
        uuid: Uuid,
        edit: TaskEdit,
        now: Timestamp,
    ) -> Result<Task, TaskError> {
        {
            let mut r = self.inner.replica.lock().await;
            Self::check_deps(&mut r, uuid, &edit).await?;
            let mut data = r
                .get_task_data(uuid)
                .await?
                .ok_or_else(|| TaskError::NotFound(uuid.to_string()))?;
            let mut ops = Operations::new();
            ops.push(taskchampion::Operation::UndoPoint);
            let mut changes = edit.changes(&map_of(&data), now);
            changes.push(("modified".into(), Some(now.as_second().to_string())));
            apply(&mut data, changes, &mut ops);
            r.commit_operations(ops).await?;
        }
        let task = self.get(uuid, now).await?;
        let change = match edit.status.as_deref() {
            Some("completed") => "completed",
            Some("deleted") => "deleted",
            _ => "updated",
        };
        self.announce(uuid, change, &task.description);
        Ok(task)
    }

    /// Mark done.
    pub async fn complete(&self, uuid: Uuid, now: Timestamp) -> Result<Task, TaskError> {
        let edit = TaskEdit {
            status: Some("completed".into()),
            ..TaskEdit::default()
        };
        self.update(uuid, edit, now).await
    }

    /// Mark deleted (kept with status `deleted`, as Taskwarrior does).
    pub async fn delete(&self, uuid: Uuid, now: Timestamp) -> Result<Task, TaskError> {
        let edit = TaskEdit {
            status: Some("deleted".into()),
            ..TaskEdit::default()
        };
        self.update(uuid, edit, now).await
    }

    /// Set progress.
    pub async fn set_progress(
        &self,
        uuid: Uuid,
        progress: Progress,
        now: Timestamp,
    ) -> Result<Task, TaskError> {
        let edit = TaskEdit {
            progress: Some(Some(progress)),
            ..TaskEdit::default()
        };
        self.update(uuid, edit, now).await
    }

    /// Add an annotation.
    pub async fn annotate(
        &self,
        uuid: Uuid,
        text: String,
        now: Timestamp,
    ) -> Result<Task, TaskError> {
        if text.trim().is_empty() {
            return Err(TaskError::invalid("annotation", "must not be empty"));
        }
        let edit = TaskEdit {
            annotate: vec![text.trim().to_owned()],
            ..TaskEdit::default()
        };
        self.update(uuid, edit, now).await
    }

    /// Every task (or those matching `filter`) as a Taskwarrior `task export` JSON array.
    pub async fn export(&self, filter: &TaskFilter, now: Timestamp) -> Result<Value, TaskError> {
        let (all, ws) = {
            let mut r = self.inner.replica.lock().await;
            let all = Self::all_maps(&mut r).await?;
            let ws = r.working_set().await?;
            (all, ws)
        };
        let graph = DepGraph::new(&all);
        let mut rows: Vec<(Task, &TaskMap)> = all
            .iter()
            .map(|(u, m)| (model::task_from_map(*u, m, &graph, now), m))
            .collect();
        rows.retain(|(t, _)| filter.matches(t).unwrap_or(false));
        rows.sort_by(|a, b| a.0.entry.cmp(&b.0.entry).then(a.0.uuid.cmp(&b.0.uuid)));
        let out = rows
            .iter()
            .map(|(t, m)| {
                let id = if matches!(t.status, Status::Pending | Status::Waiting) {
                    ws.by_uuid(t.uuid).unwrap_or(0)
                } else {
                    0
                };
                taskwarrior::export_task(t, m, id)
            })
            .collect();
        Ok(Value::Array(out))
    }

    /// Import a Taskwarrior JSON document (array or one object per line). Every task is
    /// validated first; then all are written in one commit. Existing UUIDs are replaced.
    /// Returns (created, updated, unchanged).
    pub async fn import(&self, text: &str) -> Result<ImportReport, TaskError> {
        let mut parsed = Vec::new();
        for (line, v) in taskwarrior::split_import(text)? {
            parsed.push(taskwarrior::import_task(&v, line)?);
        }
        let mut report = ImportReport::default();
        let mut announce = Vec::new();
        {
            let mut r = self.inner.replica.lock().await;
            let mut ops = Operations::new();
            ops.push(taskchampion::Operation::UndoPoint);
            for (uuid, map) in parsed {
                let (mut data, existed) = match r.get_task_data(uuid).await? {
                    Some(d) => (d, true),
                    None => (TaskData::create(uuid, &mut ops), false),
                };
                let mut changes: Vec<(String, Option<String>)> = data
                    .properties()
                    .filter(|k| !map.contains_key(*k))
                    .map(|k| (k.clone(), None))
                    .collect();
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                changes.extend(keys.into_iter().map(|k| (k.clone(), Some(map[k].clone()))));
                let before = ops.len();
                apply(&mut data, changes, &mut ops);
                let changed = ops.len() > before;
                match (existed, changed) {
                    (false, _) => report.created += 1,
                    (true, true) => report.updated += 1,
                    (true, false) => report.unchanged += 1,
                }
                if changed || !existed {
                    announce.push((uuid, map.get("description").cloned().unwrap_or_default()));
                }
            }
            r.commit_operations(ops).await?;
        }
        for (u, d) in announce {
            self.announce(u, "imported", &d);
        }
        Ok(report)
    }

    /// Pending tasks whose description contains every word of `words`; an exact match
    /// (ignoring case) alone when there is one.
    pub async fn find(&self, words: &str, now: Timestamp) -> Result<Vec<Task>, TaskError> {
        let filter = TaskFilter {
            words: Some(words.to_owned()),
            ..TaskFilter::default()
        };
        let found = self.list(&filter, now).await?;
        let exact: Vec<Task> = found
            .iter()
            .filter(|t| t.description.eq_ignore_ascii_case(words.trim()))
            .cloned()
            .collect();
        Ok(if exact.len() == 1 { exact } else { found })
    }

    /// Sync with the configured taskchampion sync server.
    ///
    /// taskchampion's server future is not `Send`, so the sync runs on a blocking thread that
    /// drives it with the runtime's handle (storage I/O still goes through the store).
    pub async fn sync(&self) -> Result<SyncReport, TaskError> {
        let cfg = self
            .inner
            .sync
            .clone()
            .ok_or(TaskError::SyncNotConfigured)?;
        let replica = self.inner.replica.clone();
        let handle = tokio::runtime::Handle::current();
        let run = move || {
            handle.block_on(async move {
                let mut server = ServerConfig::Remote {
                    url: cfg.url.clone(),
                    client_id: cfg.client_id,
                    encryption_secret: cfg.encryption_secret.expose().as_bytes().to_vec(),
                }
                .into_server()
                .await
                .map_err(|e| TaskError::Sync(format!("{e:#}")))?;
                let mut r = replica.lock().await;
                let sent = r.num_local_operations().await?;
                r.sync(&mut server, true)
                    .await
                    .map_err(|e| sync_error(&e))?;
                let tasks = r.all_task_uuids().await?.len();
                Ok(SyncReport {
                    sent_operations: sent,
                    tasks,
                })
            })
        };
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| TaskError::Sync(format!("the sync thread failed: {e}")))?
    }
}

/// A failed sync as reported. Server data that does not decrypt means this replica's
/// encryption secret differs from the one the shared task list was written with; taskchampion
/// only names the cipher failure, so say what to fix.
fn sync_error(e: &taskchampion::Error) -> TaskError {
    let msg = format!("{e:#}");
    if msg.contains("unsealing") {
        return TaskError::Sync(format!(
            "{msg} (the tasks on the server do not decrypt with this encryption secret: set \
             tasks.sync_encryption_secret to the one the other replicas use)"
        ));
    }
    TaskError::Sync(msg)
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// New tasks.
    pub created: usize,
    /// Existing tasks that changed.
    pub updated: usize,
    /// Existing tasks already equal.
    pub unchanged: usize,
}

/// Priority re-exported for callers building edits.
pub type TaskPriority = Priority;
