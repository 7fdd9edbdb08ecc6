//! Tasks: taskchampion's storage test-suite ported to our SQLite storage, the REST API,
//! urgency and the Taskwarrior JSON round trip checked against the real Debian `task` binary,
//! and a conversation through the chat API that adds and completes tasks.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestDaemon, TestResult};
use local_assistant::home::tasks::storage::SqlStorage;
use local_assistant::store::{Store, StoreOptions};
use serde_json::{json, Value};
use taskchampion::storage::{Storage, TaskMap};
use taskchampion::Operation;
use uuid::Uuid;

// ------------------------------------------------------------------------------------------
// taskchampion's storage tests (src/storage/test.rs), against a real SQLite file.
// ------------------------------------------------------------------------------------------

type TcResult = Result<(), taskchampion::Error>;

fn open_store(dir: &Path) -> Store {
    let opts = StoreOptions {
        busy_timeout: std::time::Duration::from_secs(5),
        max_batch: 64,
        readers: 2,
        queue_depth: 64,
    };
    match Store::open(&dir.join("t.db"), &opts) {
        Ok(s) => s,
        Err(e) => panic!("open store: {e}"),
    }
}

fn map(kv: &[(&str, &str)]) -> TaskMap {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

macro_rules! storage_test {
    ($name:ident) => {
        #[tokio::test]
        async fn $name() -> TcResult {
            let dir =
                tempfile::tempdir().map_err(|e| taskchampion::Error::Database(e.to_string()))?;
            let store = open_store(dir.path());
            cases::$name(SqlStorage::new(store.clone())).await?;
            store.close().await;
            Ok(())
        }
    };
}

mod storage_suite {
    use super::*;
    storage_test!(get_working_set_empty);
    storage_test!(add_to_working_set);
    storage_test!(clear_working_set);
    storage_test!(drop_transaction);
    storage_test!(create);
    storage_test!(create_exists);
    storage_test!(get_missing);
    storage_test!(set_task);
    storage_test!(delete_task_missing);
    storage_test!(delete_task_exists);
    storage_test!(all_tasks_empty);
    storage_test!(all_tasks_and_uuids);
    storage_test!(pending_tasks_empty);
    storage_test!(pending_tasks);
    storage_test!(base_version_default);
    storage_test!(base_version_setting);
    storage_test!(unsynced_operations);
    storage_test!(remove_operations);
    storage_test!(task_operations);
    storage_test!(sync_complete);
    storage_test!(set_working_set_item);
    storage_test!(reads_see_own_writes_and_others_see_them_only_after_commit);
}

mod cases {
    use super::*;
    use taskchampion::chrono::Utc;

    pub async fn get_working_set_empty(mut s: impl Storage) -> TcResult {
        let mut txn = s.txn().await?;
        assert_eq!(txn.get_working_set().await?, vec![None]);
        Ok(())
    }

    pub async fn add_to_working_set(mut s: impl Storage) -> TcResult {
        let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let mut txn = s.txn().await?;
            assert_eq!(txn.add_to_working_set(u1).await?, 1);
            assert_eq!(txn.add_to_working_set(u2).await?, 2);
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert_eq!(txn.get_working_set().await?, vec![None, Some(u1), Some(u2)]);
        Ok(())
    }

    pub async fn clear_working_set(mut s: impl Storage) -> TcResult {
        let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let mut txn = s.txn().await?;
            txn.add_to_working_set(u1).await?;
            txn.add_to_working_set(u2).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            txn.clear_working_set().await?;
            txn.add_to_working_set(u2).await?;
            txn.add_to_working_set(u1).await?;
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert_eq!(txn.get_working_set().await?, vec![None, Some(u2), Some(u1)]);
        Ok(())
    }

    pub async fn drop_transaction(mut s: impl Storage) -> TcResult {
        let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let mut txn = s.txn().await?;
            assert!(txn.create_task(u1).await?);
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            assert!(txn.create_task(u2).await?);
            drop(txn);
        }
        let mut txn = s.txn().await?;
        assert_eq!(txn.all_task_uuids().await?, [u1]);
        Ok(())
    }

    pub async fn create(mut s: impl Storage) -> TcResult {
        let u = Uuid::new_v4();
        {
            let mut txn = s.txn().await?;
            assert!(txn.create_task(u).await?);
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert_eq!(txn.get_task(u).await?, Some(map(&[])));
        Ok(())
    }

    pub async fn create_exists(mut s: impl Storage) -> TcResult {
        let u = Uuid::new_v4();
        {
            let mut txn = s.txn().await?;
            assert!(txn.create_task(u).await?);
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert!(!txn.create_task(u).await?);
        txn.commit().await?;
        Ok(())
    }

    pub async fn get_missing(mut s: impl Storage) -> TcResult {
        let mut txn = s.txn().await?;
        assert_eq!(txn.get_task(Uuid::new_v4()).await?, None);
        Ok(())
    }

    pub async fn set_task(mut s: impl Storage) -> TcResult {
        let u = Uuid::new_v4();
        {
            let mut txn = s.txn().await?;
            txn.set_task(u, map(&[("k", "v")])).await?;
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert_eq!(txn.get_task(u).await?, Some(map(&[("k", "v")])));
        Ok(())
    }

    pub async fn delete_task_missing(mut s: impl Storage) -> TcResult {
        let mut txn = s.txn().await?;
        assert!(!txn.delete_task(Uuid::new_v4()).await?);
        Ok(())
    }

    pub async fn delete_task_exists(mut s: impl Storage) -> TcResult {
        let u = Uuid::new_v4();
        {
            let mut txn = s.txn().await?;
            assert!(txn.create_task(u).await?);
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert!(txn.delete_task(u).await?);
        Ok(())
    }

    pub async fn all_tasks_empty(mut s: impl Storage) -> TcResult {
        let mut txn = s.txn().await?;
        assert_eq!(txn.all_tasks().await?, vec![]);
        Ok(())
    }

    pub async fn all_tasks_and_uuids(mut s: impl Storage) -> TcResult {
        let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let mut txn = s.txn().await?;
            assert!(txn.create_task(u1).await?);
            txn.set_task(u1, map(&[("num", "1")])).await?;
            assert!(txn.create_task(u2).await?);
            txn.set_task(u2, map(&[("num", "2")])).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            let mut tasks = txn.all_tasks().await?;
            tasks.sort_by_key(|a| a.0);
            let mut exp = vec![(u1, map(&[("num", "1")])), (u2, map(&[("num", "2")]))];
            exp.sort_by_key(|a| a.0);
            assert_eq!(tasks, exp);
        }
        let mut txn = s.txn().await?;
        let mut uuids = txn.all_task_uuids().await?;
        uuids.sort();
        let mut exp = vec![u1, u2];
        exp.sort();
        assert_eq!(uuids, exp);
        Ok(())
    }

    pub async fn pending_tasks_empty(mut s: impl Storage) -> TcResult {
        let mut txn = s.txn().await?;
        assert_eq!(txn.get_pending_tasks().await?, vec![]);
        Ok(())
    }

    pub async fn pending_tasks(mut s: impl Storage) -> TcResult {
        let uuids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        {
            let mut txn = s.txn().await?;
            for (i, u) in uuids.iter().enumerate() {
                assert!(txn.create_task(*u).await?);
                txn.set_task(*u, map(&[("num", &i.to_string())])).await?;
            }
            txn.add_to_working_set(uuids[0]).await?;
            txn.add_to_working_set(uuids[1]).await?;
            txn.add_to_working_set(uuids[2]).await?;
            txn.add_to_working_set(Uuid::new_v4()).await?;
            txn.set_working_set_item(1, None).await?;
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        let mut tasks = txn.get_pending_tasks().await?;
        tasks.sort_by_key(|a| a.0);
        let mut exp = vec![
            (uuids[1], map(&[("num", "1")])),
            (uuids[2], map(&[("num", "2")])),
        ];
        exp.sort_by_key(|a| a.0);
        assert_eq!(tasks, exp);
        Ok(())
    }

    pub async fn base_version_default(mut s: impl Storage) -> TcResult {
        let mut txn = s.txn().await?;
        assert_eq!(txn.base_version().await?, Uuid::nil());
        Ok(())
    }

    pub async fn base_version_setting(mut s: impl Storage) -> TcResult {
        let u = Uuid::new_v4();
        {
            let mut txn = s.txn().await?;
            txn.set_base_version(u).await?;
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert_eq!(txn.base_version().await?, u);
        Ok(())
    }

    pub async fn unsynced_operations(mut s: impl Storage) -> TcResult {
        let (u1, u2, u3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        {
            let mut txn = s.txn().await?;
            txn.add_operation(Operation::Create { uuid: u1 }).await?;
            txn.add_operation(Operation::Create { uuid: u2 }).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            assert_eq!(
                txn.unsynced_operations().await?,
                vec![
                    Operation::Create { uuid: u1 },
                    Operation::Create { uuid: u2 }
                ]
            );
            assert_eq!(txn.num_unsynced_operations().await?, 2);
        }
        {
            let mut txn = s.txn().await?;
            txn.sync_complete().await?;
            txn.commit().await?;
        }
        let del = Operation::Delete {
            uuid: u3,
            old_task: TaskMap::new(),
        };
        {
            let mut txn = s.txn().await?;
            txn.add_operation(Operation::Create { uuid: u3 }).await?;
            txn.add_operation(del.clone()).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            assert_eq!(
                txn.unsynced_operations().await?,
                vec![Operation::Create { uuid: u3 }, del.clone()]
            );
            assert_eq!(txn.num_unsynced_operations().await?, 2);
        }
        {
            let mut txn = s.txn().await?;
            txn.remove_operation(del).await?;
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert_eq!(
            txn.unsynced_operations().await?,
            vec![Operation::Create { uuid: u3 }]
        );
        assert_eq!(txn.num_unsynced_operations().await?, 1);
        Ok(())
    }

    pub async fn remove_operations(mut s: impl Storage) -> TcResult {
        let (u1, u2, u3, u4) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        {
            let mut txn = s.txn().await?;
            txn.create_task(u1).await?;
            txn.create_task(u2).await?;
            txn.create_task(u3).await?;
            txn.add_operation(Operation::Create { uuid: u1 }).await?;
            txn.add_operation(Operation::Create { uuid: u2 }).await?;
            txn.add_operation(Operation::Create { uuid: u3 }).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            txn.remove_operation(Operation::Create { uuid: u3 }).await?;
            assert_eq!(txn.num_unsynced_operations().await?, 2);
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            assert!(txn
                .remove_operation(Operation::Create { uuid: u4 })
                .await
                .is_err());
        }
        {
            let mut txn = s.txn().await?;
            assert!(txn
                .remove_operation(Operation::Create { uuid: u1 })
                .await
                .is_err());
        }
        {
            let mut txn = s.txn().await?;
            txn.sync_complete().await?;
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert!(txn
            .remove_operation(Operation::Create { uuid: u2 })
            .await
            .is_err());
        Ok(())
    }

    pub async fn task_operations(mut s: impl Storage) -> TcResult {
        let (u1, u2, u3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let now = Utc::now();
        let del = |u| Operation::Delete {
            uuid: u,
            old_task: TaskMap::new(),
        };
        let upd = Operation::Update {
            uuid: u3,
            property: "p".into(),
            old_value: None,
            value: Some("P".into()),
            timestamp: now,
        };
        {
            let mut txn = s.txn().await?;
            txn.create_task(u1).await?;
            txn.create_task(u2).await?;
            txn.create_task(u3).await?;
            txn.add_operation(Operation::UndoPoint).await?;
            txn.add_operation(Operation::Create { uuid: u1 }).await?;
            txn.add_operation(Operation::Create { uuid: u1 }).await?;
            txn.add_operation(Operation::UndoPoint).await?;
            txn.add_operation(del(u2)).await?;
            txn.add_operation(upd.clone()).await?;
            txn.add_operation(del(u3)).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            txn.remove_operation(del(u3)).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            assert_eq!(
                txn.get_task_operations(u1).await?,
                vec![
                    Operation::Create { uuid: u1 },
                    Operation::Create { uuid: u1 }
                ]
            );
            assert_eq!(txn.get_task_operations(u2).await?, vec![del(u2)]);
            assert_eq!(txn.get_task_operations(u3).await?, vec![upd]);
        }
        let mut txn = s.txn().await?;
        txn.sync_complete().await?;
        assert_eq!(txn.get_task_operations(u1).await?.len(), 2);
        assert_eq!(txn.get_task_operations(u2).await?.len(), 1);
        assert_eq!(txn.get_task_operations(u3).await?.len(), 1);
        Ok(())
    }

    pub async fn sync_complete(mut s: impl Storage) -> TcResult {
        let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let mut txn = s.txn().await?;
            txn.create_task(u1).await?;
            txn.create_task(u2).await?;
            txn.add_operation(Operation::Create { uuid: u1 }).await?;
            txn.add_operation(Operation::Create { uuid: u2 }).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            txn.sync_complete().await?;
            assert_eq!(txn.get_task_operations(u1).await?.len(), 1);
            assert_eq!(txn.get_task_operations(u2).await?.len(), 1);
        }
        {
            let mut txn = s.txn().await?;
            txn.delete_task(u2).await?;
            txn.add_operation(Operation::Delete {
                uuid: u2,
                old_task: TaskMap::new(),
            })
            .await?;
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        txn.sync_complete().await?;
        assert_eq!(txn.get_task_operations(u1).await?.len(), 1);
        assert_eq!(txn.get_task_operations(u2).await?.len(), 0);
        // And so after the commit, as stored.
        txn.commit().await?;
        drop(txn);
        let mut txn = s.txn().await?;
        assert_eq!(txn.get_task_operations(u1).await?.len(), 1);
        assert_eq!(txn.get_task_operations(u2).await?.len(), 0);
        assert_eq!(txn.num_unsynced_operations().await?, 0);
        Ok(())
    }

    pub async fn set_working_set_item(mut s: impl Storage) -> TcResult {
        let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let mut txn = s.txn().await?;
            txn.add_to_working_set(u1).await?;
            txn.add_to_working_set(u2).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            assert_eq!(txn.get_working_set().await?, vec![None, Some(u1), Some(u2)]);
        }
        {
            let mut txn = s.txn().await?;
            txn.set_working_set_item(1, None).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            assert_eq!(txn.get_working_set().await?, vec![None, None, Some(u2)]);
        }
        {
            let mut txn = s.txn().await?;
            txn.set_working_set_item(2, Some(u1)).await?;
            txn.commit().await?;
        }
        {
            let mut txn = s.txn().await?;
            assert_eq!(txn.get_working_set().await?, vec![None, None, Some(u1)]);
        }
        {
            let mut txn = s.txn().await?;
            txn.set_working_set_item(1, Some(u1)).await?;
            txn.set_working_set_item(2, None).await?;
            txn.commit().await?;
        }
        let mut txn = s.txn().await?;
        assert_eq!(txn.get_working_set().await?, vec![None, Some(u1)]);
        Ok(())
    }

    // Beyond the upstream suite: the buffering this storage does.

    pub async fn reads_see_own_writes_and_others_see_them_only_after_commit(
        s: SqlStorage,
    ) -> TcResult {
        let u = Uuid::new_v4();
        let mut writer = s.clone();
        let mut reader = s.clone();
        let mut txn = writer.txn().await?;
        txn.set_task(u, map(&[("description", "x")])).await?;
        txn.add_operation(Operation::Create { uuid: u }).await?;
        txn.set_base_version(u).await?;
        assert_eq!(txn.get_task(u).await?, Some(map(&[("description", "x")])));
        assert_eq!(txn.all_task_uuids().await?, vec![u]);
        assert_eq!(txn.num_unsynced_operations().await?, 1);
        assert_eq!(txn.base_version().await?, u);
        {
            let mut other = reader.txn().await?;
            assert_eq!(other.get_task(u).await?, None);
            assert!(other.is_empty().await?);
        }
        txn.commit().await?;
        drop(txn);
        let mut other = reader.txn().await?;
        assert_eq!(other.get_task(u).await?, Some(map(&[("description", "x")])));
        assert_eq!(other.num_unsynced_operations().await?, 1);
        Ok(())
    }
}

#[tokio::test]
async fn committed_data_survives_reopening_the_store() -> TestResult {
    let dir = tempfile::tempdir()?;
    let u = Uuid::new_v4();
    {
        let store = open_store(dir.path());
        let mut s = SqlStorage::new(store.clone());
        let mut txn = s.txn().await?;
        txn.set_task(u, map(&[("description", "kept")])).await?;
        txn.add_to_working_set(u).await?;
        txn.add_operation(Operation::Create { uuid: u }).await?;
        txn.commit().await?;
        drop(txn);
        store.close().await;
    }
    let store = open_store(dir.path());
    let mut s = SqlStorage::new(store.clone());
    let mut txn = s.txn().await?;
    assert_eq!(
        txn.get_pending_tasks().await?,
        vec![(u, map(&[("description", "kept")]))]
    );
    assert_eq!(txn.num_unsynced_operations().await?, 1);
    drop(txn);
    store.close().await;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The real Debian `task` binary.
// ------------------------------------------------------------------------------------------

/// A Taskwarrior in a temp `TASKDATA` with a temp `TASKRC`.
struct Taskwarrior {
    _dir: tempfile::TempDir,
    rc: PathBuf,
    data: PathBuf,
}

impl Taskwarrior {
    fn new() -> TestResult<Self> {
        let found = Command::new("task").arg("--version").output();
        let ok = matches!(&found, Ok(o) if o.status.success());
        assert!(
            ok,
            "the `task` binary (Debian package taskwarrior) is missing: run `make test-deps`"
        );
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let rc = dir.path().join("taskrc");
        std::fs::write(
            &rc,
            format!(
                "data.location={}\nconfirmation=off\nhooks=off\nverbose=nothing\njson.array=on\n\
                 uda.progress.type=numeric\nuda.progress_done.type=numeric\nuda.progress_total.type=numeric\n",
                data.display()
            ),
        )?;
        Ok(Self {
            _dir: dir,
            rc,
            data,
        })
    }

    fn run(&self, args: &[&str]) -> TestResult<String> {
        let out = Command::new("task")
            .env("TASKRC", &self.rc)
            .env("TASKDATA", &self.data)
            .args([
                "rc.confirmation=off",
                "rc.hooks=off",
                "rc.verbose=nothing",
                "rc.json.array=on",
            ])
            .args(args)
            .output()?;
        assert!(
            out.status.success(),
            "task {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    fn import(&self, json: &str) -> TestResult {
        let f = self.data.join("in.json");
        std::fs::write(&f, json)?;
        self.run(&["import", &f.display().to_string()])?;
        Ok(())
    }

    fn export(&self) -> TestResult<Vec<Value>> {
        let v: Value = serde_json::from_str(&self.run(&["export"])?)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

async fn create(d: &TestDaemon, body: Value) -> TestResult<Value> {
    let r = d.post("/api/v1/tasks").json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    assert_eq!(status, 201, "{v}");
    Ok(v)
}

async fn patch(d: &TestDaemon, uuid: &str, body: Value) -> TestResult<Value> {
    let r = d
        .client
        .patch(d.url(&format!("/api/v1/tasks/{uuid}")))
        .bearer_auth(common::TOKEN)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    assert_eq!(status, 200, "{v}");
    Ok(v)
}

async fn export(d: &TestDaemon) -> TestResult<Vec<Value>> {
    let r = d.get("/api/v1/tasks/export").send().await?;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

async fn import(d: &TestDaemon, body: String) -> TestResult<(u16, Value)> {
    let r = d
        .post("/api/v1/tasks/import")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    Ok((r.status().as_u16(), r.json().await?))
}

/// Tasks by UUID, without the fields that are views (`id`, `urgency`), numbers compared as
/// numbers (Taskwarrior writes a numeric UDA it imported as `40.000000`).
fn by_uuid(tasks: &[Value]) -> BTreeMap<String, Value> {
    fn numbers_as_f64(v: &mut Value) {
        match v {
            Value::Number(n) => {
                if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                    *n = f;
                }
            }
            Value::Array(a) => a.iter_mut().for_each(numbers_as_f64),
            Value::Object(o) => o.values_mut().for_each(numbers_as_f64),
            _ => {}
        }
    }
    tasks
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if let Some(o) = t.as_object_mut() {
                o.remove("id");
                o.remove("urgency");
            }
            numbers_as_f64(&mut t);
            (t["uuid"].as_str().unwrap_or("").to_owned(), t)
        })
        .collect()
}

/// A task list using every field: project, tags, priority, due/wait/scheduled/until,
/// dependencies, annotations, progress (percent and steps), a started, a completed and a
/// deleted task, and a UDA of Taskwarrior's own.
async fn populate(d: &TestDaemon) -> TestResult<Vec<String>> {
    let fence = create(
        d,
        json!({"description": "fix the fence", "project": "Home.Garden", "tags": ["next", "outdoor"],
               "priority": "H", "due": "2026-12-01T09:30:00Z", "annotation": "posts from the shed",
               "progress": {"done": 2, "total": 5}}),
    )
    .await?;
    let fence = fence["uuid"].as_str().unwrap_or("").to_owned();
    let paint = create(
        d,
        json!({"description": "paint the fence", "project": "Home.Garden", "depends": [fence],
               "scheduled": "2020-01-01T08:00:00Z", "until": "2030-01-01T00:00:00Z", "priority": "L"}),
    )
    .await?;
    let paint = paint["uuid"].as_str().unwrap_or("").to_owned();
    let milk = create(
        d,
        json!({"description": "buy milk", "project": "shopping", "wait": "2030-06-01T00:00:00Z",
               "tags": ["errand"], "progress": 40}),
    )
    .await?;
    let milk = milk["uuid"].as_str().unwrap_or("").to_owned();
    let tax = create(
        d,
        json!({"description": "file the tax return", "priority": "M"}),
    )
    .await?;
    let tax = tax["uuid"].as_str().unwrap_or("").to_owned();
    patch(
        d,
        &tax,
        json!({"active": true, "annotation": "forms in the drawer"}),
    )
    .await?;
    patch(d, &tax, json!({"annotation": "ask about the deduction"})).await?;
    let done = create(
        d,
        json!({"description": "return library books", "tags": ["errand"]}),
    )
    .await?;
    let done = done["uuid"].as_str().unwrap_or("").to_owned();
    let r = d
        .post(&format!("/api/v1/tasks/{done}/complete"))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let gone = create(d, json!({"description": "cancelled plan"})).await?;
    let gone = gone["uuid"].as_str().unwrap_or("").to_owned();
    let r = d
        .client
        .delete(d.url(&format!("/api/v1/tasks/{gone}")))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    // A UDA of Taskwarrior's own and an old entry date (age counts in urgency).
    let (status, v) = import(
        d,
        json!([{"uuid": "0b7e3f4e-8d7c-4a43-9a77-4c3e5a0f2d11", "description": "sharpen the mower blade",
                "status": "pending", "entry": "20250301T101500Z", "modified": "20250301T101500Z",
                "estimate": "2h", "tags": ["outdoor"], "project": "Home"}])
        .to_string(),
    )
    .await?;
    assert_eq!(status, 200, "{v}");
    Ok(vec![fence, paint, milk, tax, done, gone])
}

#[tokio::test]
async fn taskwarrior_round_trip_through_the_real_task_binary_loses_nothing() -> TestResult {
    let tw = Taskwarrior::new()?;
    let d = TestDaemon::start().await?;
    populate(&d).await?;
    let ours = export(&d).await?;
    assert_eq!(ours.len(), 7);

    tw.import(&Value::Array(ours.clone()).to_string())?;
    let theirs = tw.export()?;
    assert_eq!(
        by_uuid(&theirs),
        by_uuid(&ours),
        "task export differs from what we gave task import"
    );

    // Back into a fresh daemon: its export is what we started with.
    let d2 = TestDaemon::start().await?;
    let (status, report) = import(&d2, Value::Array(theirs.clone()).to_string()).await?;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"], 7);
    let back = export(&d2).await?;
    assert_eq!(by_uuid(&back), by_uuid(&ours));
    // And into the first daemon: nothing to change.
    let (_, report) = import(&d, Value::Array(theirs).to_string()).await?;
    assert_eq!(report, json!({"created": 0, "updated": 0, "unchanged": 7}));

    // The progress UDAs arrive as Taskwarrior numbers, tags/annotations/depends intact.
    let fence = back
        .iter()
        .find(|t| t["description"] == "fix the fence")
        .cloned()
        .unwrap_or_default();
    assert_eq!(fence["progress"], 40);
    assert_eq!(fence["progress_done"], 2);
    assert_eq!(fence["progress_total"], 5);
    assert_eq!(fence["tags"], json!(["next", "outdoor"]));
    assert_eq!(
        fence["annotations"][0]["description"],
        "posts from the shed"
    );
    let paint = back
        .iter()
        .find(|t| t["description"] == "paint the fence")
        .cloned()
        .unwrap_or_default();
    assert_eq!(paint["depends"], json!([fence["uuid"]]));
    Ok(())
}

#[tokio::test]
async fn urgency_and_order_match_the_real_task_binary() -> TestResult {
    let tw = Taskwarrior::new()?;
    let d = TestDaemon::start().await?;
    populate(&d).await?;
    tw.import(&Value::Array(export(&d).await?).to_string())?;
    let theirs: BTreeMap<String, f64> = tw
        .export()?
        .iter()
        .filter(|t| t["status"] == "pending")
        .map(|t| {
            (
                t["uuid"].as_str().unwrap_or("").to_owned(),
                t["urgency"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    let r = d.get("/api/v1/tasks").send().await?;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), theirs.len(), "pending tasks: {page}");
    let mut last = f64::INFINITY;
    for t in &items {
        let u = t["uuid"].as_str().unwrap_or("");
        let ours = t["urgency"].as_f64().unwrap_or(f64::NAN);
        let tw_u = theirs.get(u).copied().unwrap_or(f64::NAN);
        eprintln!("{:<28} ours {ours:8.4}  task {tw_u:8.4}", t["description"]);
        assert!(
            (ours - tw_u).abs() < 0.01,
            "{}: our urgency {ours} vs task's {tw_u}",
            t["description"]
        );
        assert!(ours <= last, "not ordered by urgency");
        last = ours;
    }
    // The blocking, next-tagged, high-priority fence first; the blocked/waiting ones last.
    assert_eq!(items[0]["description"], "fix the fence");
    Ok(())
}

// ------------------------------------------------------------------------------------------
// REST.
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn rest_validates_fields_filters_pages_and_announces_changes() -> TestResult {
    let d = TestDaemon::start().await?;
    let mut events = d.app().events().subscribe();
    for (body, field) in [
        (json!({"project": "x"}), "description"),
        (
            json!({"description": "x", "priority": "urgent"}),
            "priority",
        ),
        (
            json!({"description": "x", "due": "next tuesday-ish"}),
            "due",
        ),
        (
            json!({"description": "x", "tags": ["two words"]}),
            "tags[0]",
        ),
        (
            json!({"description": "x", "progress": {"done": 6, "total": 5}}),
            "progress.done",
        ),
        (
            json!({"description": "x", "progress": 140}),
            "progress.percent",
        ),
        (
            json!({"description": "x", "depends": [Uuid::new_v4().to_string()]}),
            "depends[0]",
        ),
        (json!({"description": "x", "colour": "red"}), "colour"),
    ] {
        let r = d.post("/api/v1/tasks").json(&body).send().await?;
        assert_eq!(r.status(), 422, "{body}");
        let v: Value = r.json().await?;
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.starts_with(&format!("{field}:")), "{body} -> {msg}");
    }
    for i in 0..5 {
        create(
            &d,
            json!({"description": format!("chore {i}"), "project": if i % 2 == 0 { "Home" } else { "Work" },
                   "tags": if i == 3 { json!(["next"]) } else { json!([]) }}),
        )
        .await?;
    }
    let page: Value = d
        .get("/api/v1/tasks?project=home&limit=2")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_offset"], 2);
    let page: Value = d
        .get("/api/v1/tasks?project=home&limit=2&offset=2")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert!(page["next_offset"].is_null());
    let page: Value = d.get("/api/v1/tasks?tag=next").send().await?.json().await?;
    assert_eq!(page["items"][0]["description"], "chore 3");
    // Most urgent first: the next-tagged chore leads the full list.
    let all: Value = d.get("/api/v1/tasks").send().await?.json().await?;
    assert_eq!(all["items"][0]["description"], "chore 3");
    let r = d.get("/api/v1/tasks?status=finished").send().await?;
    assert_eq!(r.status(), 422);

    // Patch progress, complete, and see the status filter and events.
    let uuid = all["items"][0]["uuid"].as_str().unwrap_or("").to_owned();
    let t = patch(&d, &uuid, json!({"progress": {"done": 1, "total": 4}})).await?;
    assert_eq!(t["progress"], json!({"percent": 25, "done": 1, "total": 4}));
    let t = patch(&d, &uuid, json!({"progress": 60})).await?;
    assert_eq!(t["progress"], json!({"percent": 60}));
    let r = d
        .post(&format!("/api/v1/tasks/{uuid}/complete"))
        .send()
        .await?;
    let t: Value = r.json().await?;
    assert_eq!(t["status"], "completed");
    assert!(t["end"].is_string());
    let done: Value = d
        .get("/api/v1/tasks?status=completed")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(done["total"], 1);
    let r = d
        .get(&format!("/api/v1/tasks/{}", Uuid::new_v4()))
        .send()
        .await?;
    assert_eq!(r.status(), 404);

    let mut changes = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let local_assistant::events::EventKind::TaskChanged { change, .. } = e.kind {
            changes.push(change);
        }
    }
    assert_eq!(changes.iter().filter(|c| *c == "created").count(), 5);
    assert_eq!(changes.last().map(String::as_str), Some("completed"));

    // Sync without a configured server says what to configure.
    let r = d.post("/api/v1/tasks/sync").send().await?;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await?;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("sync_server_url"),
        "{v}"
    );

    // The tasks are in the OpenAPI document.
    let doc: Value = d.get("/api/v1/openapi.json").send().await?.json().await?;
    for p in [
        "/api/v1/tasks",
        "/api/v1/tasks/{uuid}",
        "/api/v1/tasks/export",
        "/api/v1/tasks/import",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from OpenAPI");
    }
    Ok(())
}

#[tokio::test]
async fn import_names_the_bad_line_and_field_and_imports_nothing() -> TestResult {
    let d = TestDaemon::start().await?;
    let doc = format!(
        "{}\n{}\n",
        json!({"uuid": Uuid::new_v4().to_string(), "description": "fine", "status": "pending"}),
        json!({"uuid": Uuid::new_v4().to_string(), "description": "bad", "due": "soonish"})
    );
    let (status, v) = import(&d, doc).await?;
    assert_eq!(status, 422);
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("line 2") && msg.contains("due"), "{msg}");
    assert!(export(&d).await?.is_empty(), "a failed import wrote tasks");
    let (status, v) = import(&d, "[{\"description\": \"no uuid\"}]".into()).await?;
    assert_eq!(status, 422);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("uuid"));
    Ok(())
}

#[tokio::test]
async fn tasks_survive_a_restart() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut d = TestDaemon::start_in(tmp.path(), |_| {}, Vec::new()).await?;
    populate(&d).await?;
    let before = export(&d).await?;
    d.stop().await?;
    let d = TestDaemon::start_in(tmp.path(), |_| {}, Vec::new()).await?;
    assert_eq!(by_uuid(&export(&d).await?), by_uuid(&before));
    Ok(())
}

// ------------------------------------------------------------------------------------------
// A conversation.
// ------------------------------------------------------------------------------------------

async fn say(d: &TestDaemon, conv: Option<i64>, text: &str) -> TestResult<Value> {
    let mut body = json!({ "text": text });
    if let Some(c) = conv {
        body["conversation_id"] = json!(c);
    }
    let resp = d.post("/api/v1/chat").json(&body).send().await?;
    assert_eq!(resp.status(), 200, "{text}");
    let v: Value = resp.json().await?;
    eprintln!(
        "> {text}\n< {} [{} {}]",
        v["reply"], v["intent"], v["outcome"]
    );
    Ok(v)
}

#[tokio::test]
async fn a_conversation_adds_lists_disambiguates_and_completes_tasks() -> TestResult {
    let d = TestDaemon::start().await?;
    let a = say(&d, None, "add a task").await?;
    assert_eq!(a["reply"], "What should I add?");
    assert_eq!(a["state"], "awaiting_slot");
    let c = a["conversation_id"].as_i64();
    let b = say(&d, c, "fix the fence").await?;
    assert_eq!(b["reply"], "Added fix the fence to your tasks.");
    assert_eq!(b["state"], "idle");
    assert_eq!(b["tool_calls"][0]["name"], "task_add");

    say(&d, c, "add buy milk to my shopping list").await?;
    let r = say(&d, c, "add buy bread to my shopping list").await?;
    assert_eq!(r["reply"], "Added buy bread to your shopping list.");
    let l = say(&d, c, "what's on my shopping list").await?;
    let reply = l["reply"].as_str().unwrap_or("");
    assert!(
        reply.contains("2 tasks") && reply.contains("buy milk") && reply.contains("buy bread"),
        "{reply}"
    );

    let p = say(&d, c, "the fence is 50 percent done").await?;
    assert_eq!(p["reply"], "Fix the fence is now 50 percent done.");

    // Two tasks match "buy": which one?
    let q = say(&d, c, "mark buy as done").await?;
    assert_eq!(q["state"], "awaiting_slot", "{q}");
    assert!(
        q["reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("Which one do you mean"),
        "{q}"
    );
    let r = say(&d, c, "the bread one").await?;
    assert_eq!(r["reply"], "Marked buy bread as done.");
    let r = say(&d, c, "mark fix the fence as done").await?;
    assert_eq!(r["reply"], "Marked fix the fence as done.");

    // The API sees the same tasks.
    let open: Value = d.get("/api/v1/tasks").send().await?.json().await?;
    assert_eq!(open["total"], 1);
    assert_eq!(open["items"][0]["description"], "buy milk");
    let done: Value = d
        .get("/api/v1/tasks?status=completed")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(done["total"], 2);
    let fence = done["items"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|t| t["description"] == "fix the fence")
                .cloned()
        })
        .unwrap_or_default();
    assert_eq!(fence["progress"]["percent"], 50);
    Ok(())
}
