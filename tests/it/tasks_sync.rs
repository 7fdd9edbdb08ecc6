//! Task sync through a real taskchampion sync server (the reference protocol core behind an HTTP
//! front, see `common::sync_server`), as Taskwarrior 3 clients share a task list: two daemons
//! with the same client id and secret exchange tasks, completions and annotations, merge
//! concurrent edits, and a wrong secret reads nothing and loses nothing.
//!
//! (Sync without a configured server is covered in `tasks.rs`.)

use crate::common;

use common::sync_server::{
    SyncServer, CLIENT_ID_HEADER, HISTORY_SEGMENT_CONTENT_TYPE, PARENT_VERSION_ID_HEADER,
    SNAPSHOT_CONTENT_TYPE, SNAPSHOT_REQUEST_HEADER, VERSION_ID_HEADER,
};
use common::{TestDaemon, TestResult};
use local_assistant::config::tasks::TaskSyncConfig;
use local_assistant::config::{Config, Secret};
use serde_json::{json, Value};
use std::path::Path;
use uuid::Uuid;

const SECRET: &str = "correct horse battery staple";

/// The config tweak that points a daemon at `server` as replica of `client_id`.
fn with_sync(server: &SyncServer, client_id: Uuid, secret: &str) -> impl FnOnce(&mut Config) {
    let sync = TaskSyncConfig {
        url: server.url.clone(),
        client_id,
        encryption_secret: Secret::new(secret),
    };
    move |c: &mut Config| c.tasks.sync = Some(sync)
}

async fn daemon(server: &SyncServer, client_id: Uuid, secret: &str) -> TestResult<TestDaemon> {
    TestDaemon::start_with(with_sync(server, client_id, secret), Vec::new()).await
}

async fn daemon_in(
    dir: &Path,
    server: &SyncServer,
    client_id: Uuid,
    secret: &str,
) -> TestResult<TestDaemon> {
    TestDaemon::start_in(dir, with_sync(server, client_id, secret), Vec::new()).await
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

async fn create(d: &TestDaemon, body: Value) -> TestResult<Value> {
    let r = d.post("/api/v1/tasks").json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    assert_eq!(status, 201, "create {body}: {v}");
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
    assert_eq!(status, 200, "patch {body}: {v}");
    Ok(v)
}

/// `POST path` with an optional JSON body, expecting 200.
async fn post_ok(d: &TestDaemon, path: &str, body: Option<Value>) -> TestResult<Value> {
    let mut req = d.post(path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    assert_eq!(status, 200, "POST {path}: {v}");
    Ok(v)
}

/// `GET /api/v1/tasks/{uuid}`: status and body.
async fn get_task(d: &TestDaemon, uuid: &str) -> TestResult<(u16, Value)> {
    let r = d.get(&format!("/api/v1/tasks/{uuid}")).send().await?;
    Ok((r.status().as_u16(), r.json().await?))
}

/// The task, which must exist on `d`.
async fn task_on(d: &TestDaemon, who: &str, uuid: &str) -> TestResult<Value> {
    let (status, v) = get_task(d, uuid).await?;
    assert_eq!(status, 200, "task {uuid} missing on {who}: {v}");
    Ok(v)
}

/// UUIDs of every task on `d`, sorted.
async fn all_uuids(d: &TestDaemon) -> TestResult<Vec<String>> {
    let page: Value = d
        .get("/api/v1/tasks?status=all&limit=500")
        .send()
        .await?
        .json()
        .await?;
    let mut out: Vec<String> = page["items"]
        .as_array()
        .map(|a| a.iter().map(|t| text(&t["uuid"])).collect())
        .unwrap_or_default();
    out.sort();
    Ok(out)
}

/// `POST /api/v1/tasks/sync`: status and body.
async fn sync(d: &TestDaemon) -> TestResult<(u16, Value)> {
    let r = d.post("/api/v1/tasks/sync").send().await?;
    Ok((r.status().as_u16(), r.json().await?))
}

/// A sync that must succeed; its report.
async fn synced(d: &TestDaemon, who: &str) -> TestResult<Value> {
    let (status, v) = sync(d).await?;
    assert_eq!(status, 200, "sync of {who} failed: {v}");
    Ok(v)
}

/// What two replicas must agree on: the task without `urgency` (computed at read time).
fn shared(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("urgency");
    }
    t
}

fn sorted_tags(t: &Value) -> Vec<String> {
    let mut tags: Vec<String> = t["tags"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ------------------------------------------------------------------------------------------
// The test server itself answers as the reference taskchampion-sync-server does.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_sync_server_speaks_the_taskchampion_http_protocol() -> TestResult {
    let server = SyncServer::start().await?;
    let http = reqwest::Client::new();
    let client_id = Uuid::new_v4().to_string();
    let nil = Uuid::nil().to_string();
    let url = |p: &str| format!("{}/v1/client/{p}", server.url);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let add_version = |parent: &str, content_type: &str, body: &'static [u8]| {
        http.post(url(&format!("add-version/{parent}")))
            .header("Content-Type", content_type)
            .header(CLIENT_ID_HEADER, &client_id)
            .body(body)
    };

    // An unknown client has no versions and no snapshot.
    let r = http
        .get(url(&format!("get-child-version/{nil}")))
        .header(CLIENT_ID_HEADER, &client_id)
        .send()
        .await?;
    assert_eq!(r.status(), 404, "child of nil for an unknown client");
    let r = http
        .get(url("snapshot"))
        .header(CLIENT_ID_HEADER, &client_id)
        .send()
        .await?;
    assert_eq!(r.status(), 404, "snapshot of an unknown client");

    // Bad requests: no or a malformed client id, wrong content type, empty body, bad path.
    let r = http
        .post(url(&format!("add-version/{nil}")))
        .header("Content-Type", HISTORY_SEGMENT_CONTENT_TYPE)
        .body("v1")
        .send()
        .await?;
    assert_eq!(r.status(), 400, "add-version without X-Client-Id");
    let r = http
        .get(url("snapshot"))
        .header(CLIENT_ID_HEADER, "not-a-uuid")
        .send()
        .await?;
    assert_eq!(r.status(), 400, "a malformed X-Client-Id");
    let r = add_version(&nil, "application/json", b"v1").send().await?;
    assert_eq!(r.status(), 400, "add-version with the wrong content type");
    let r = add_version(&nil, HISTORY_SEGMENT_CONTENT_TYPE, b"")
        .send()
        .await?;
    assert_eq!(r.status(), 400, "add-version with an empty body");
    let r = add_version("not-a-uuid", HISTORY_SEGMENT_CONTENT_TYPE, b"v1")
        .send()
        .await?;
    assert_eq!(r.status(), 404, "add-version with a malformed parent id");

    // The first version creates the client and asks for a snapshot at once.
    let r = add_version(&nil, HISTORY_SEGMENT_CONTENT_TYPE, b"v1")
        .send()
        .await?;
    assert_eq!(r.status(), 200, "first add-version");
    let v1 = header(&r, VERSION_ID_HEADER).unwrap_or_default();
    assert!(Uuid::parse_str(&v1).is_ok(), "X-Version-Id {v1:?}");
    assert_eq!(
        header(&r, SNAPSHOT_REQUEST_HEADER).as_deref(),
        Some("urgency=high")
    );
    assert_eq!(header(&r, PARENT_VERSION_ID_HEADER), None);

    // A version on a stale parent is refused with the parent to rebase on.
    let r = add_version(&nil, HISTORY_SEGMENT_CONTENT_TYPE, b"v2")
        .send()
        .await?;
    assert_eq!(r.status(), 409, "add-version on a stale parent");
    assert_eq!(header(&r, PARENT_VERSION_ID_HEADER), Some(v1.clone()));
    assert_eq!(header(&r, VERSION_ID_HEADER), None);

    // Children: the segment back byte for byte; none yet (404); a parent not in history (410).
    let get_child = |parent: String| {
        http.get(url(&format!("get-child-version/{parent}")))
            .header(CLIENT_ID_HEADER, &client_id)
            .send()
    };
    let r = get_child(nil.clone()).await?;
    assert_eq!(r.status(), 200, "child of nil");
    assert_eq!(
        header(&r, "Content-Type").as_deref(),
        Some(HISTORY_SEGMENT_CONTENT_TYPE)
    );
    assert_eq!(header(&r, VERSION_ID_HEADER), Some(v1.clone()));
    assert_eq!(header(&r, PARENT_VERSION_ID_HEADER), Some(nil.clone()));
    assert_eq!(r.bytes().await?.as_ref(), b"v1");
    let r = get_child(v1.clone()).await?;
    assert_eq!(r.status(), 404, "child of the latest version");
    let r = get_child(Uuid::new_v4().to_string()).await?;
    assert_eq!(r.status(), 410, "child of a version not in the history");

    // Snapshots.
    let add_snapshot = |version: &str, content_type: &str| {
        http.post(url(&format!("add-snapshot/{version}")))
            .header("Content-Type", content_type)
            .header(CLIENT_ID_HEADER, &client_id)
            .body("snap")
    };
    let r = add_snapshot(&v1, HISTORY_SEGMENT_CONTENT_TYPE)
        .send()
        .await?;
    assert_eq!(r.status(), 400, "add-snapshot with the wrong content type");
    let r = add_snapshot(&v1, SNAPSHOT_CONTENT_TYPE).send().await?;
    assert_eq!(r.status(), 200, "add-snapshot");
    let r = http
        .get(url("snapshot"))
        .header(CLIENT_ID_HEADER, &client_id)
        .send()
        .await?;
    assert_eq!(r.status(), 200, "snapshot");
    assert_eq!(
        header(&r, "Content-Type").as_deref(),
        Some(SNAPSHOT_CONTENT_TYPE)
    );
    assert_eq!(header(&r, VERSION_ID_HEADER), Some(v1));
    assert_eq!(r.bytes().await?.as_ref(), b"snap");
    // A snapshot for a version the client never had is accepted (200) but not kept.
    let r = add_snapshot(&Uuid::new_v4().to_string(), SNAPSHOT_CONTENT_TYPE)
        .send()
        .await?;
    assert_eq!(r.status(), 200, "add-snapshot of an unknown version");
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Two daemons sharing a task list.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_made_on_one_daemon_reaches_the_other_and_its_completion_comes_back() -> TestResult {
    let server = SyncServer::start().await?;
    let client_id = Uuid::new_v4();
    let a = daemon(&server, client_id, SECRET).await?;
    let b_dir = tempfile::tempdir()?;
    let mut b = daemon_in(b_dir.path(), &server, client_id, SECRET).await?;

    let made = create(
        &a,
        json!({"description": "Fix the garden fence", "project": "Home.Garden",
               "tags": ["outdoor", "weekend"], "priority": "M",
               "progress": {"done": 1, "total": 4}}),
    )
    .await?;
    let uuid = text(&made["uuid"]);
    assert_eq!(get_task(&b, &uuid).await?.0, 404, "B has the task unsynced");

    let report = synced(&a, "A").await?;
    assert!(
        report["sent_operations"].as_u64().unwrap_or(0) > 0,
        "A sent nothing: {report}"
    );
    assert_eq!(report["tasks"], 1, "{report}");
    assert_eq!(
        server.count("POST", "/v1/client/add-version/", 200),
        1,
        "A's sync did not add a version: {:?}",
        server.exchanges()
    );

    // B starts empty: it takes the snapshot A left, then the history after it.
    let report = synced(&b, "B").await?;
    assert_eq!(
        report["sent_operations"], 0,
        "B had nothing to send: {report}"
    );
    assert_eq!(report["tasks"], 1, "{report}");
    assert!(
        server.count("GET", "/v1/client/snapshot", 200) >= 1,
        "B did not fetch a snapshot: {:?}",
        server.exchanges()
    );
    let on_b = task_on(&b, "B", &uuid).await?;
    for field in [
        "uuid",
        "description",
        "status",
        "project",
        "tags",
        "priority",
        "progress",
        "entry",
        "modified",
    ] {
        assert_eq!(
            on_b[field], made[field],
            "{field} differs on B: {on_b} vs {made}"
        );
    }
    assert_eq!(
        on_b["progress"],
        json!({"percent": 25, "done": 1, "total": 4})
    );

    // The server only ever held ciphertext.
    for e in server.exchanges() {
        for plain in [&b"garden fence"[..], b"Home.Garden", b"outdoor"] {
            assert!(
                !contains(&e.request_body, plain),
                "{} {} carried plaintext",
                e.method,
                e.path
            );
        }
    }

    // B completes and annotates; both sync; A sees it done with the note.
    post_ok(&b, &format!("/api/v1/tasks/{uuid}/complete"), None).await?;
    post_ok(
        &b,
        &format!("/api/v1/tasks/{uuid}/annotations"),
        Some(json!({"text": "bought new posts"})),
    )
    .await?;
    let report = synced(&b, "B").await?;
    assert!(
        report["sent_operations"].as_u64().unwrap_or(0) > 0,
        "B sent nothing: {report}"
    );
    synced(&a, "A").await?;
    let on_a = task_on(&a, "A", &uuid).await?;
    assert_eq!(on_a["status"], "completed", "{on_a}");
    assert!(on_a["end"].is_string(), "no end date on A: {on_a}");
    assert_eq!(
        on_a["annotations"][0]["description"], "bought new posts",
        "{on_a}"
    );
    let on_b = task_on(&b, "B", &uuid).await?;
    assert_eq!(shared(&on_a), shared(&on_b), "A and B disagree");
    let pending: Value = a.get("/api/v1/tasks").send().await?.json().await?;
    assert_eq!(
        pending["total"], 0,
        "A still lists it as pending: {pending}"
    );

    // B keeps its sync state across a restart: nothing to resend, nothing lost, and a change
    // made after the restart still reaches A.
    b.stop().await?;
    let b = daemon_in(b_dir.path(), &server, client_id, SECRET).await?;
    let fetched = server.count("GET", "/v1/client/get-child-version/", 200);
    let report = synced(&b, "B after a restart").await?;
    assert_eq!(report["sent_operations"], 0, "B resent history: {report}");
    assert_eq!(
        server.count("GET", "/v1/client/get-child-version/", 200),
        fetched,
        "B fetched versions it already had (its base version was lost)"
    );
    assert_eq!(report["tasks"], 1, "{report}");
    assert_eq!(shared(&task_on(&b, "B", &uuid).await?), shared(&on_a));
    let later = create(&b, json!({"description": "Order more posts"})).await?;
    synced(&b, "B").await?;
    synced(&a, "A").await?;
    let on_a = task_on(&a, "A", &text(&later["uuid"])).await?;
    assert_eq!(on_a["description"], "Order more posts");
    assert_eq!(all_uuids(&a).await?, all_uuids(&b).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_on_two_daemons_merge_and_the_later_change_wins_per_property() -> TestResult
{
    let server = SyncServer::start().await?;
    let client_id = Uuid::new_v4();
    let a = daemon(&server, client_id, SECRET).await?;
    let b = daemon(&server, client_id, SECRET).await?;
    let t = create(
        &a,
        json!({"description": "Paint the fence", "project": "Home", "tags": ["home"]}),
    )
    .await?;
    let uuid = text(&t["uuid"]);
    synced(&a, "A").await?;
    synced(&b, "B").await?;
    task_on(&b, "B", &uuid).await?;

    // Offline on both sides, in this order: A renames; B renames later and sets priority and
    // a tag; A sets priority later and another tag. Each side also adds a task of its own.
    patch(&a, &uuid, json!({"description": "Paint the fence white"})).await?;
    patch(
        &b,
        &uuid,
        json!({"description": "Paint the fence green", "priority": "L", "tags": ["home", "green"]}),
    )
    .await?;
    patch(
        &a,
        &uuid,
        json!({"priority": "H", "tags": ["home", "paint"]}),
    )
    .await?;
    let from_a = create(&a, json!({"description": "Buy brushes"})).await?;
    let from_b = create(&b, json!({"description": "Buy paint"})).await?;

    synced(&a, "A").await?;
    synced(&b, "B").await?;
    synced(&a, "A").await?;

    let on_a = task_on(&a, "A", &uuid).await?;
    let on_b = task_on(&b, "B", &uuid).await?;
    assert_eq!(
        on_a["description"], "Paint the fence green",
        "B renamed later: {on_a}"
    );
    assert_eq!(on_a["priority"], "H", "A set the priority later: {on_a}");
    assert_eq!(on_a["project"], "Home", "{on_a}");
    assert_eq!(
        sorted_tags(&on_a),
        ["green", "home", "paint"],
        "tags from both sides: {on_a}"
    );
    assert_eq!(shared(&on_a), shared(&on_b), "A and B disagree");

    let mut expected = vec![uuid, text(&from_a["uuid"]), text(&from_b["uuid"])];
    expected.sort();
    assert_eq!(all_uuids(&a).await?, expected, "tasks on A");
    assert_eq!(all_uuids(&b).await?, expected, "tasks on B");
    for u in &expected {
        assert_eq!(
            shared(&task_on(&a, "A", u).await?),
            shared(&task_on(&b, "B", u).await?),
            "task {u} differs"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_encryption_secret_reads_nothing_and_loses_nothing() -> TestResult {
    let server = SyncServer::start().await?;
    let client_id = Uuid::new_v4();
    let a = daemon(&server, client_id, SECRET).await?;
    let b = daemon(&server, client_id, "not the shared secret").await?;
    let secret_task = create(&a, json!({"description": "Hide the birthday present"})).await?;
    let secret_uuid = text(&secret_task["uuid"]);
    synced(&a, "A").await?;

    let expect_refused = |status: u16, v: &Value, when: &str| {
        assert_eq!(status, 502, "{when}: {v}");
        assert_eq!(v["error"]["code"], "sync_failed", "{when}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("sync with the task server failed") && msg.contains("encryption secret"),
            "{when}: the message does not say what is wrong: {msg}"
        );
    };

    // An empty replica starts from the snapshot, which it cannot decrypt.
    let (status, v) = sync(&b).await?;
    expect_refused(status, &v, "B's first sync");
    assert_eq!(all_uuids(&b).await?, Vec::<String>::new(), "B got tasks");

    // With a task of its own, B fails on the history instead, and keeps its task.
    let mine = create(
        &b,
        json!({"description": "Water the plants", "tags": ["home"]}),
    )
    .await?;
    let mine_uuid = text(&mine["uuid"]);
    let (status, v) = sync(&b).await?;
    expect_refused(status, &v, "B's sync with a local task");
    let (status, v) = sync(&b).await?;
    expect_refused(status, &v, "B's sync retried");
    assert_eq!(get_task(&b, &secret_uuid).await?.0, 404, "B read A's task");
    assert_eq!(
        shared(&task_on(&b, "B", &mine_uuid).await?),
        shared(&mine),
        "B's own task changed"
    );
    assert_eq!(all_uuids(&b).await?, vec![mine_uuid.clone()]);

    // B never wrote to the shared history: A still syncs, and sees only its own task.
    assert_eq!(
        server.count("POST", "/v1/client/add-version/", 200),
        1,
        "B added a version: {:?}",
        server.exchanges()
    );
    let report = synced(&a, "A").await?;
    assert_eq!(report["tasks"], 1, "{report}");
    assert_eq!(all_uuids(&a).await?, vec![secret_uuid]);
    Ok(())
}
