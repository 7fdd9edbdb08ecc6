//! taskchampion's `Storage` over our SQLite file: the `tc_*` tables, read through
//! `Store::read`, written in one `Store::write` per committed transaction.
//!
//! A [`StorageTxn`] here reads the committed state through a reader connection and keeps its
//! own writes in memory (read-your-writes); `commit()` applies them in one store transaction,
//! and dropping it discards them. Only one `Replica` exists (behind a mutex in
//! [`super::Tasks`]), so no two transactions race; serializable consistency follows.
//!
//! Invariant: nothing here touches a connection on the async runtime; every SQL statement runs
//! in a store closure.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use taskchampion::storage::{Storage, StorageTxn, TaskMap};
use taskchampion::{Error as TcError, Operation};
use uuid::Uuid;

use crate::store::{Store, StoreError};

type TcResult<T> = Result<T, TcError>;

fn db_err(e: StoreError) -> TcError {
    TcError::Database(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::CommitFailed(format!("stored task data is not valid ({what}): {e}"))
}

fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| corrupt("uuid", e))
}

fn parse_map(s: &str) -> Result<TaskMap, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt("task", e))
}

fn parse_op(s: &str) -> Result<Operation, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt("operation", e))
}

/// The task storage of the replica: a handle on the store.
#[derive(Clone)]
pub struct SqlStorage {
    store: Store,
}

impl SqlStorage {
    /// Storage in `store` (its tables come from the store's migrations).
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Storage for SqlStorage {
    async fn txn<'a>(&'a mut self) -> TcResult<Box<dyn StorageTxn + Send + 'a>> {
        Ok(Box::new(Txn {
            store: self.store.clone(),
            tasks: HashMap::new(),
            base_version: None,
            working_set: None,
            working_set_dirty: false,
            ops: OpsOverlay::default(),
        }))
    }
}

/// Changes to the operations log not yet committed.
#[derive(Default)]
struct OpsOverlay {
    /// Stored unsynced operations removed from the end of the log (ids, newest first).
    removed: Vec<i64>,
    /// `sync_complete` ran: mark every stored operation synced.
    sync_all: bool,
    /// Stored operations of these tasks are dropped (their task was gone at `sync_complete`).
    dropped: HashSet<Uuid>,
    /// Operations added in this transaction, with their synced flag.
    added: Vec<(bool, Operation)>,
}

struct Txn {
    store: Store,
    /// `Some(map)`: set; `None`: deleted.
    tasks: HashMap<Uuid, Option<TaskMap>>,
    base_version: Option<Uuid>,
    /// The working set, loaded on first use.
    working_set: Option<Vec<Option<Uuid>>>,
    working_set_dirty: bool,
    ops: OpsOverlay,
}

impl Txn {
    async fn read<T, F>(&self, f: F) -> TcResult<T>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.store.read(f).await.map_err(db_err)
    }

    async fn stored_task(&self, uuid: Uuid) -> TcResult<Option<TaskMap>> {
        self.read(move |c| {
            let data: Option<String> = c
                .query_row(
                    "SELECT data FROM tc_tasks WHERE uuid = ?1",
                    [uuid.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            data.as_deref().map(parse_map).transpose()
        })
        .await
    }

    async fn working_set_mut(&mut self) -> TcResult<&mut Vec<Option<Uuid>>> {
        if self.working_set.is_none() {
            let rows = self
                .read(|c| {
                    let mut st = c.prepare("SELECT idx, uuid FROM tc_working_set ORDER BY idx")?;
                    let rows =
                        st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
                    let mut out = Vec::new();
                    for row in rows {
                        let (i, u) = row?;
                        let i = usize::try_from(i).map_err(|e| corrupt("working set index", e))?;
                        out.push((i, parse_uuid(&u)?));
                    }
                    Ok(out)
                })
                .await?;
            let len = rows.iter().map(|(i, _)| *i).max().unwrap_or(0) + 1;
            let mut ws = vec![None; len];
            for (i, u) in rows {
                if i > 0 {
                    ws[i] = Some(u);
                }
            }
            self.working_set = Some(ws);
        }
        Ok(self.working_set.get_or_insert_with(|| vec![None]))
    }

    /// Stored operations (id, synced, op) as this transaction sees them, in log order;
    /// `uuid`: only those of one task.
    async fn stored_ops(&self, uuid: Option<Uuid>) -> TcResult<Vec<(i64, bool, Operation)>> {
        if let Some(u) = uuid {
            if self.ops.dropped.contains(&u) {
                return Ok(Vec::new());
            }
        }
        let removed: HashSet<i64> = self.ops.removed.iter().copied().collect();
        let sync_all = self.ops.sync_all;
        let rows = self
            .read(move |c| {
                let mut out = Vec::new();
                let mut push = |r: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
                    out.push((
                        r.get::<_, i64>(0)?,
                        r.get::<_, bool>(1)?,
                        r.get::<_, String>(2)?,
                    ));
                    Ok(())
                };
                match uuid {
                    Some(u) => {
                        let mut st = c.prepare(
                            "SELECT id, synced, data FROM tc_operations WHERE uuid = ?1 ORDER BY id",
                        )?;
                        let mut rows = st.query([u.to_string()])?;
                        while let Some(r) = rows.next()? {
                            push(r)?;
                        }
                    }
                    None => {
                        let mut st =
                            c.prepare("SELECT id, synced, data FROM tc_operations ORDER BY id")?;
                        let mut rows = st.query([])?;
                        while let Some(r) = rows.next()? {
                            push(r)?;
                        }
                    }
                }
                out.into_iter()
                    .map(|(id, synced, data)| Ok((id, synced, parse_op(&data)?)))
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
        let dropped = &self.ops.dropped;
        Ok(rows
            .into_iter()
            .filter(|(id, _, op)| {
                !removed.contains(id) && op.get_uuid().is_none_or(|u| !dropped.contains(&u))
            })
            .map(|(id, synced, op)| (id, synced || sync_all, op))
            .collect())
    }

    async fn unsynced(&self) -> TcResult<Vec<Operation>> {
        let mut out: Vec<Operation> = if self.ops.sync_all {
            Vec::new()
        } else {
            // Only unsynced rows are needed; read them directly (the log can be long).
            let removed: HashSet<i64> = self.ops.removed.iter().copied().collect();
            let rows = self
                .read(|c| {
                    let mut st = c.prepare(
                        "SELECT id, data FROM tc_operations WHERE synced = 0 ORDER BY id",
                    )?;
                    let rows =
                        st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
                    let mut out = Vec::new();
                    for row in rows {
                        let (id, data) = row?;
                        out.push((id, parse_op(&data)?));
                    }
                    Ok(out)
                })
                .await?;
            rows.into_iter()
                .filter(|(id, _)| !removed.contains(id))
                .map(|(_, op)| op)
                .collect()
        };
        out.extend(
            self.ops
                .added
                .iter()
                .filter(|(synced, _)| !synced)
                .map(|(_, op)| op.clone()),
        );
        Ok(out)
    }
}

#[async_trait]
impl StorageTxn for Txn {
    async fn get_task(&mut self, uuid: Uuid) -> TcResult<Option<TaskMap>> {
        match self.tasks.get(&uuid) {
            Some(t) => Ok(t.clone()),
            None => self.stored_task(uuid).await,
        }
    }

    async fn get_pending_tasks(&mut self) -> TcResult<Vec<(Uuid, TaskMap)>> {
        let uuids: Vec<Uuid> = self
            .working_set_mut()
            .await?
            .iter()
            .flatten()
            .copied()
            .collect();
        let mut out = Vec::with_capacity(uuids.len());
        for u in uuids {
            if let Some(t) = self.get_task(u).await? {
                out.push((u, t));
            }
        }
        Ok(out)
    }

    async fn create_task(&mut self, uuid: Uuid) -> TcResult<bool> {
        if self.get_task(uuid).await?.is_some() {
            return Ok(false);
        }
        self.tasks.insert(uuid, Some(TaskMap::new()));
        Ok(true)
    }

    async fn set_task(&mut self, uuid: Uuid, task: TaskMap) -> TcResult<()> {
        self.tasks.insert(uuid, Some(task));
        Ok(())
    }

    async fn delete_task(&mut self, uuid: Uuid) -> TcResult<bool> {
        let existed = self.get_task(uuid).await?.is_some();
        if existed {
            self.tasks.insert(uuid, None);
        }
        Ok(existed)
    }

    async fn all_tasks(&mut self) -> TcResult<Vec<(Uuid, TaskMap)>> {
        let stored = self
            .read(|c| {
                let mut st = c.prepare("SELECT uuid, data FROM tc_tasks")?;
                let rows =
                    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                let mut out = Vec::new();
                for row in rows {
                    let (u, d) = row?;
                    out.push((parse_uuid(&u)?, parse_map(&d)?));
                }
                Ok(out)
            })
            .await?;
        let mut out: Vec<(Uuid, TaskMap)> = stored
            .into_iter()
            .filter(|(u, _)| !self.tasks.contains_key(u))
            .collect();
        out.extend(
            self.tasks
                .iter()
                .filter_map(|(u, t)| t.as_ref().map(|t| (*u, t.clone()))),
        );
        Ok(out)
    }

    async fn all_task_uuids(&mut self) -> TcResult<Vec<Uuid>> {
        Ok(self
            .all_tasks()
            .await?
            .into_iter()
            .map(|(u, _)| u)
            .collect())
    }

    async fn base_version(&mut self) -> TcResult<Uuid> {
        if let Some(v) = self.base_version {
            return Ok(v);
        }
        let v = self
            .read(|c| {
                let v: Option<String> = c
                    .query_row(
                        "SELECT value FROM tc_sync_meta WHERE key = 'base_version'",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?;
                v.as_deref().map(parse_uuid).transpose()
            })
            .await?;
        Ok(v.unwrap_or(Uuid::nil()))
    }

    async fn set_base_version(&mut self, version: Uuid) -> TcResult<()> {
        self.base_version = Some(version);
        Ok(())
    }

    async fn get_task_operations(&mut self, uuid: Uuid) -> TcResult<Vec<Operation>> {
        let mut out: Vec<Operation> = self
            .stored_ops(Some(uuid))
            .await?
            .into_iter()
            .map(|(_, _, op)| op)
            .collect();
        out.extend(
            self.ops
                .added
                .iter()
                .filter(|(_, op)| op.get_uuid() == Some(uuid))
                .map(|(_, op)| op.clone()),
        );
        Ok(out)
    }

    async fn unsynced_operations(&mut self) -> TcResult<Vec<Operation>> {
        self.unsynced().await
    }

    async fn num_unsynced_operations(&mut self) -> TcResult<usize> {
        Ok(self.unsynced().await?.len())
    }

    async fn add_operation(&mut self, op: Operation) -> TcResult<()> {
        self.ops.added.push((false, op));
        Ok(())
    }

    async fn remove_operation(&mut self, op: Operation) -> TcResult<()> {
        if let Some((synced, last)) = self.ops.added.last() {
            if *synced {
                return Err(TcError::Database(
                    "Last operation has been synced -- cannot remove".into(),
                ));
            }
            if *last == op {
                self.ops.added.pop();
                return Ok(());
            }
            return Err(TcError::Database(
                "Last operation does not match -- cannot remove".into(),
            ));
        }
        if !self.ops.sync_all {
            let below = self.ops.removed.last().copied().unwrap_or(i64::MAX);
            let last = self
                .read(move |c| {
                    let row: Option<(i64, String)> = c
                        .query_row(
                            "SELECT id, data FROM tc_operations WHERE synced = 0 AND id < ?1
                             ORDER BY id DESC LIMIT 1",
                            [below],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    row.map(|(id, d)| Ok((id, parse_op(&d)?))).transpose()
                })
                .await?;
            if let Some((id, last)) = last {
                if last == op {
                    self.ops.removed.push(id);
                    return Ok(());
                }
            }
        }
        Err(TcError::Database(
            "Last operation does not match -- cannot remove".into(),
        ))
    }

    async fn sync_complete(&mut self) -> TcResult<()> {
        // Operations of tasks that no longer exist are dropped, as SQLite storage does.
        let stored_uuids: HashSet<Uuid> = self
            .stored_ops(None)
            .await?
            .into_iter()
            .filter_map(|(_, _, op)| op.get_uuid())
            .collect();
        for u in stored_uuids {
            if self.get_task(u).await?.is_none() {
                self.ops.dropped.insert(u);
            }
        }
        let mut kept = Vec::with_capacity(self.ops.added.len());
        for (_, op) in std::mem::take(&mut self.ops.added) {
            let keep = match op.get_uuid() {
                Some(u) => self.get_task(u).await?.is_some(),
                None => true,
            };
            if keep {
                kept.push((true, op));
            }
        }
        self.ops.added = kept;
        self.ops.sync_all = true;
        Ok(())
    }

    async fn get_working_set(&mut self) -> TcResult<Vec<Option<Uuid>>> {
        Ok(self.working_set_mut().await?.clone())
    }

    async fn add_to_working_set(&mut self, uuid: Uuid) -> TcResult<usize> {
        let ws = self.working_set_mut().await?;
        ws.push(Some(uuid));
        let n = ws.len() - 1;
        self.working_set_dirty = true;
        Ok(n)
    }

    async fn set_working_set_item(&mut self, index: usize, uuid: Option<Uuid>) -> TcResult<()> {
        let ws = self.working_set_mut().await?;
        if index >= ws.len() {
            return Err(TcError::Database(format!(
                "Index {index} is not in the working set"
            )));
        }
        ws[index] = uuid;
        while ws.len() > 1 && ws.last() == Some(&None) {
            ws.pop();
        }
        self.working_set_dirty = true;
        Ok(())
    }

    async fn clear_working_set(&mut self) -> TcResult<()> {
        self.working_set = Some(vec![None]);
        self.working_set_dirty = true;
        Ok(())
    }

    async fn commit(&mut self) -> TcResult<()> {
        let tasks = std::mem::take(&mut self.tasks);
        let base_version = self.base_version.take();
        let working_set = if self.working_set_dirty {
            self.working_set.clone()
        } else {
            None
        };
        self.working_set_dirty = false;
        let ops = std::mem::take(&mut self.ops);
        let mut encoded_tasks = Vec::with_capacity(tasks.len());
        for (u, t) in tasks {
            let data = t.map(|t| serde_json::to_string(&t)).transpose()?;
            encoded_tasks.push((u.to_string(), data));
        }
        let mut encoded_ops = Vec::with_capacity(ops.added.len());
        for (synced, op) in &ops.added {
            encoded_ops.push((
                op.get_uuid().map(|u| u.to_string()),
                serde_json::to_string(op)?,
                *synced,
            ));
        }
        let dropped: Vec<String> = ops.dropped.iter().map(Uuid::to_string).collect();
        self.store
            .write(move |c| {
                for (u, data) in &encoded_tasks {
                    match data {
                        Some(d) => c.execute(
                            "INSERT INTO tc_tasks (uuid, data) VALUES (?1, ?2)
                             ON CONFLICT (uuid) DO UPDATE SET data = excluded.data",
                            params![u, d],
                        )?,
                        None => c.execute("DELETE FROM tc_tasks WHERE uuid = ?1", [u])?,
                    };
                }
                if let Some(v) = base_version {
                    c.execute(
                        "INSERT INTO tc_sync_meta (key, value) VALUES ('base_version', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [v.to_string()],
                    )?;
                }
                if let Some(ws) = working_set {
                    c.execute("DELETE FROM tc_working_set", [])?;
                    for (i, u) in ws.iter().enumerate() {
                        if let Some(u) = u {
                            c.execute(
                                "INSERT INTO tc_working_set (idx, uuid) VALUES (?1, ?2)",
                                params![i64::try_from(i).unwrap_or(i64::MAX), u.to_string()],
                            )?;
                        }
                    }
                }
                for id in &ops.removed {
                    c.execute("DELETE FROM tc_operations WHERE id = ?1", [id])?;
                }
                if ops.sync_all {
                    c.execute("UPDATE tc_operations SET synced = 1 WHERE synced = 0", [])?;
                }
                for u in &dropped {
                    c.execute("DELETE FROM tc_operations WHERE uuid = ?1", [u])?;
                }
                for (u, d, synced) in &encoded_ops {
                    c.execute(
                        "INSERT INTO tc_operations (uuid, data, synced) VALUES (?1, ?2, ?3)",
                        params![u, d, synced],
                    )?;
                }
                Ok(())
            })
            .await
            .map_err(db_err)
    }
}
