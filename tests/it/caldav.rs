//! CalDAV two-way sync against a real Radicale server started per test (Debian `radicale`,
//! installed by `make test-deps`), with an in-memory local calendar.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use local_assistant::app::App;
use local_assistant::config::{CaldavConfig, Config, Secret};
use local_assistant::home::caldav::client::{Precondition, WriteOutcome};
use local_assistant::home::caldav::{
    state, Caldav, CalendarChange, LocalCalendar, LocalError, SyncReport,
};
use local_assistant::store::{Store, StoreOptions};

use common::{free_port, TestResult, TOKEN};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";

// ---------------------------------------------------------------------------------------------
// Radicale
// ---------------------------------------------------------------------------------------------

fn radicale_binary() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("radicale");
        if p.is_file() {
            return p;
        }
    }
    let p = PathBuf::from("/usr/bin/radicale");
    if p.is_file() {
        return p;
    }
    panic!(
        "the `radicale` CalDAV server is not installed: run `make test-deps` \
         (it installs the Debian package radicale)"
    );
}

/// A Radicale server on a free port with its own storage, htpasswd (plain) auth, and one
/// calendar collection `/alice/cal/`.
struct Radicale {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Radicale {
    async fn start() -> TestResult<Self> {
        let bin = radicale_binary();
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir()?;
            let port = free_port()?;
            let users = dir.path().join("users");
            std::fs::write(&users, format!("{USER}:{PASSWORD}\n"))?;
            let config = dir.path().join("config");
            std::fs::write(
                &config,
                format!(
                    "[server]\nhosts = 127.0.0.1:{port}\n\
                     [auth]\ntype = htpasswd\nhtpasswd_filename = {}\nhtpasswd_encryption = plain\ndelay = 0\n\
                     [storage]\nfilesystem_folder = {}\n\
                     [rights]\ntype = owner_only\n\
                     [web]\ntype = none\n\
                     [logging]\nlevel = warning\n",
                    users.display(),
                    dir.path().join("collections").display()
                ),
            )?;
            let log = std::fs::File::create(dir.path().join("log"))?;
            let child = Command::new(&bin)
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            let mut me = Self {
                child,
                port,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    me.mkcalendar("/alice/cal/").await?;
                    return Ok(me);
                }
                if let Ok(Some(status)) = me.child.try_wait() {
                    last = format!(
                        "radicale exited with {status}: {}",
                        std::fs::read_to_string(me._dir.path().join("log")).unwrap_or_default()
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Err(format!("radicale did not start: {last}").into())
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn http(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        reqwest::Client::new()
            .request(m, self.url(path))
            .basic_auth(USER, Some(PASSWORD))
    }

    async fn mkcalendar(&self, path: &str) -> TestResult {
        let r = self.http("MKCALENDAR", path).send().await?;
        assert_eq!(
            r.status().as_u16(),
            201,
            "MKCALENDAR {path}: {}",
            r.text().await?
        );
        Ok(())
    }

    /// PUT an event straight into the server (what another client would do).
    async fn put(&self, uid: &str, summary: &str) -> TestResult {
        let r = self
            .http("PUT", &format!("/alice/cal/{uid}.ics"))
            .header("Content-Type", "text/calendar")
            .body(ics(uid, summary))
            .send()
            .await?;
        assert!(r.status().is_success(), "PUT {uid}: {}", r.status());
        Ok(())
    }

    async fn delete(&self, uid: &str) -> TestResult {
        let r = self
            .http("DELETE", &format!("/alice/cal/{uid}.ics"))
            .send()
            .await?;
        assert!(r.status().is_success(), "DELETE {uid}: {}", r.status());
        Ok(())
    }

    /// A raw GET of `<uid>.ics`: `None` on 404.
    async fn get(&self, uid: &str) -> TestResult<Option<String>> {
        let r = self
            .http("GET", &format!("/alice/cal/{uid}.ics"))
            .send()
            .await?;
        match r.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(r.text().await?)),
            s => Err(format!("GET {uid}: {s}").into()),
        }
    }

    /// Every object in the calendar: href → etag (a raw PROPFIND).
    async fn etags(&self) -> TestResult<HashMap<String, String>> {
        let body =
            r#"<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/></prop></propfind>"#;
        let text = self
            .http("PROPFIND", "/alice/cal/")
            .header("Depth", "1")
            .body(body)
            .send()
            .await?
            .text()
            .await?;
        let responses = local_assistant::home::caldav::xml::parse_multistatus(&text)?;
        Ok(responses
            .into_iter()
            .filter(|r| r.href.ends_with(".ics"))
            .map(|r| (r.href, r.props.etag.unwrap_or_default()))
            .collect())
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ics(uid: &str, summary: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//caldav//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
         DTSTAMP:20260101T090000Z\r\nDTSTART:20260310T140000Z\r\nDTEND:20260310T150000Z\r\n\
         SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn summary_of(ics: &str) -> Option<String> {
    ics.lines()
        .find_map(|l| l.trim_end().strip_prefix("SUMMARY:").map(str::to_owned))
}

// ---------------------------------------------------------------------------------------------
// The in-memory local calendar: a map and one version counter, with tombstones.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Mem {
    counter: i64,
    events: HashMap<String, (i64, Option<String>)>,
}

#[derive(Default, Clone)]
struct MemCalendar(Arc<Mutex<Mem>>);

impl MemCalendar {
    fn lock(&self) -> std::sync::MutexGuard<'_, Mem> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
    fn set(&self, uid: &str, ics: Option<String>) -> i64 {
        let mut m = self.lock();
        m.counter += 1;
        let v = m.counter;
        m.events.insert(uid.to_owned(), (v, ics));
        v
    }
    /// A local create or edit.
    fn save(&self, uid: &str, summary: &str) -> i64 {
        self.set(uid, Some(ics(uid, summary)))
    }
    /// A local delete (leaves a tombstone).
    fn delete(&self, uid: &str) -> i64 {
        self.set(uid, None)
    }
    fn get(&self, uid: &str) -> Option<String> {
        self.lock().events.get(uid).and_then(|(_, i)| i.clone())
    }
    fn summary(&self, uid: &str) -> Option<String> {
        self.get(uid).as_deref().and_then(summary_of)
    }
    fn version(&self) -> i64 {
        self.lock().counter
    }
    fn live(&self) -> usize {
        self.lock()
            .events
            .values()
            .filter(|(_, i)| i.is_some())
            .count()
    }
}

impl LocalCalendar for MemCalendar {
    fn changes_since(&self, since: i64) -> BoxFuture<'_, Result<Vec<CalendarChange>, LocalError>> {
        let mut out: Vec<CalendarChange> = self
            .lock()
            .events
            .iter()
            .filter(|(_, (v, _))| *v > since)
            .map(|(uid, (v, ics))| CalendarChange {
                uid: uid.clone(),
                version: *v,
                ics: ics.clone(),
            })
            .collect();
        out.sort_by_key(|c| c.version);
        Box::pin(async move { Ok(out) })
    }
    fn apply_remote<'a>(
        &'a self,
        uid: &'a str,
        ics: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, LocalError>> {
        let v = self.set(uid, ics.map(str::to_owned));
        Box::pin(async move { Ok(v) })
    }
    fn current_version(&self) -> BoxFuture<'_, Result<i64, LocalError>> {
        let v = self.version();
        Box::pin(async move { Ok(v) })
    }
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct Fixture {
    server: Radicale,
    cal: MemCalendar,
    store: Store,
    sync: Caldav,
    _dir: tempfile::TempDir,
}

fn caldav_config(url: String) -> CaldavConfig {
    CaldavConfig {
        enabled: true,
        url,
        username: USER.into(),
        password: Some(Secret::new(PASSWORD)),
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(20),
    }
}

impl Fixture {
    async fn new() -> TestResult<Self> {
        let server = Radicale::start().await?;
        let url = server.url("/alice/cal/");
        Self::with_url(server, url).await
    }

    async fn with_url(server: Radicale, url: String) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let opts = StoreOptions::from(&Config::defaults().store);
        let path = dir.path().join("test.db");
        let store = tokio::task::spawn_blocking(move || Store::open(&path, &opts)).await??;
        let cal = MemCalendar::default();
        let sync = Caldav::new(
            &caldav_config(url),
            store.clone(),
            Arc::new(cal.clone()),
            None,
        )?;
        Ok(Self {
            server,
            cal,
            store,
            sync,
            _dir: dir,
        })
    }

    async fn sync(&self) -> TestResult<SyncReport> {
        Ok(self.sync.sync_now().await?)
    }
}

fn report(
    pushed: u32,
    pulled: u32,
    deleted_remote: u32,
    deleted_local: u32,
    conflicts: u32,
) -> SyncReport {
    SyncReport {
        pushed,
        pulled,
        deleted_remote,
        deleted_local,
        conflicts,
        skipped: 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_made_here_appear_there_and_events_made_there_appear_here() -> TestResult {
    let f = Fixture::new().await?;
    f.cal.save("dentist-1", "Dentist");
    f.cal.save("party@example.org", "Birthday party");

    assert_eq!(f.sync().await?, report(2, 0, 0, 0, 0));
    // Seen with a raw HTTP GET …
    let raw = f.server.get("dentist-1").await?;
    assert_eq!(
        raw.as_deref().and_then(summary_of).as_deref(),
        Some("Dentist")
    );
    let raw = f.server.get("party@example.org").await?;
    assert_eq!(
        raw.as_deref().and_then(summary_of).as_deref(),
        Some("Birthday party")
    );
    // … and with our client's multiget.
    let client = f.sync.client().clone();
    let objs = tokio::task::spawn_blocking(move || {
        client.multiget(
            "/alice/cal/",
            &[
                "/alice/cal/dentist-1.ics".to_owned(),
                "/alice/cal/party@example.org.ics".to_owned(),
            ],
        )
    })
    .await??;
    assert_eq!(objs.len(), 2);
    assert!(objs.iter().all(|o| o.etag.is_some()));
    assert_eq!(f.server.etags().await?.len(), 2);

    // Made there by another client.
    f.server.put("remote-1", "Team meeting").await?;
    assert_eq!(f.sync().await?, report(0, 1, 0, 0, 0));
    assert_eq!(f.cal.summary("remote-1").as_deref(), Some("Team meeting"));
    assert_eq!(f.cal.live(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_propagate_both_ways() -> TestResult {
    let f = Fixture::new().await?;
    f.cal.save("a", "Local A");
    f.server.put("b", "Remote B").await?;
    assert_eq!(f.sync().await?, report(1, 1, 0, 0, 0));

    // Edit here → there.
    f.cal.save("a", "Local A moved");
    assert_eq!(f.sync().await?, report(1, 0, 0, 0, 0));
    let raw = f.server.get("a").await?;
    assert_eq!(
        raw.as_deref().and_then(summary_of).as_deref(),
        Some("Local A moved")
    );

    // Edit there → here.
    f.server.put("b", "Remote B renamed").await?;
    assert_eq!(f.sync().await?, report(0, 1, 0, 0, 0));
    assert_eq!(f.cal.summary("b").as_deref(), Some("Remote B renamed"));

    // Delete here → there.
    f.cal.delete("a");
    assert_eq!(f.sync().await?, report(0, 0, 1, 0, 0));
    assert_eq!(f.server.get("a").await?, None);

    // Delete there → here.
    f.server.delete("b").await?;
    assert_eq!(f.sync().await?, report(0, 0, 0, 1, 0));
    assert_eq!(f.cal.get("b"), None);
    assert_eq!(f.cal.live(), 0);
    assert!(f.server.etags().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_is_won_by_the_server_and_the_local_edit_is_kept_in_the_audit_log() -> TestResult
{
    let f = Fixture::new().await?;
    for uid in ["both-edited", "deleted-here", "deleted-there"] {
        f.cal.save(uid, "Original");
    }
    assert_eq!(f.sync().await?, report(3, 0, 0, 0, 0));

    // Edited on both sides.
    f.cal.save("both-edited", "Edited here");
    f.server.put("both-edited", "Edited there").await?;
    // Deleted here, edited there.
    f.cal.delete("deleted-here");
    f.server.put("deleted-here", "Edited there").await?;
    // Edited here, deleted there.
    f.cal.save("deleted-there", "Edited here");
    f.server.delete("deleted-there").await?;

    assert_eq!(f.sync().await?, report(0, 0, 0, 0, 3));

    // The server's version won everywhere …
    assert_eq!(
        f.cal.summary("both-edited").as_deref(),
        Some("Edited there")
    );
    assert_eq!(
        f.cal.summary("deleted-here").as_deref(),
        Some("Edited there")
    );
    assert_eq!(f.cal.get("deleted-there"), None);
    let raw = f.server.get("both-edited").await?;
    assert_eq!(
        raw.as_deref().and_then(summary_of).as_deref(),
        Some("Edited there")
    );
    assert_eq!(f.server.get("deleted-there").await?, None);

    // … and the local side is in the audit log.
    let audit = state::conflicts_of(&f.store, "both-edited").await?;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["rule"], "server_wins");
    assert_eq!(audit[0]["server"], "changed");
    let kept = audit[0]["local_ics"].as_str().unwrap_or_default();
    assert_eq!(summary_of(kept).as_deref(), Some("Edited here"));
    let audit = state::conflicts_of(&f.store, "deleted-here").await?;
    assert_eq!(audit.len(), 1);
    assert!(audit[0]["local_ics"].is_null(), "{audit:?}");
    let audit = state::conflicts_of(&f.store, "deleted-there").await?;
    assert_eq!(audit[0]["server"], "deleted");

    // Settled: nothing more to do.
    assert!(f.sync().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sync_without_changes_does_nothing() -> TestResult {
    let f = Fixture::new().await?;
    f.cal.save("one", "One");
    f.cal.save("two", "Two");
    f.server.put("three", "Three").await?;
    assert_eq!(f.sync().await?, report(2, 1, 0, 0, 0));
    let etags = f.server.etags().await?;
    let version = f.cal.version();

    for _ in 0..3 {
        assert!(f.sync().await?.is_empty());
    }
    assert_eq!(f.server.etags().await?, etags, "the server was written to");
    assert_eq!(
        f.cal.version(),
        version,
        "the local calendar was written to"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_if_match_gets_412_and_the_sync_resolves_it_by_the_rule() -> TestResult {
    let f = Fixture::new().await?;
    f.cal.save("x", "Mine");
    assert_eq!(f.sync().await?, report(1, 0, 0, 0, 0));

    // The client's conditional writes: a stale etag is refused, and create-only refuses to
    // overwrite.
    let client = f.sync.client().clone();
    let (put, create, delete) = tokio::task::spawn_blocking(move || -> TestResult<_> {
        let stale = Precondition::Replace("\"not-the-etag\"".into());
        let put = client.put("/alice/cal/x.ics", &ics("x", "Sneaky"), &stale)?;
        let create = client.put(
            "/alice/cal/x.ics",
            &ics("x", "Sneaky"),
            &Precondition::Create,
        )?;
        let delete = client.delete("/alice/cal/x.ics", Some("\"not-the-etag\""))?;
        Ok((put, create, delete))
    })
    .await??;
    assert_eq!(put, WriteOutcome::PreconditionFailed);
    assert_eq!(create, WriteOutcome::PreconditionFailed);
    assert_eq!(delete, WriteOutcome::PreconditionFailed);
    assert_eq!(
        f.server
            .get("x")
            .await?
            .as_deref()
            .and_then(summary_of)
            .as_deref(),
        Some("Mine")
    );

    // The sync's own stored etag goes stale when another client writes between our listing
    // and our PUT; simulated by editing there after a sync recorded the etag, then editing
    // here: the listing sees the change, the rule applies (server wins).
    f.server.put("x", "Theirs").await?;
    f.cal.save("x", "Mine again");
    assert_eq!(f.sync().await?, report(0, 0, 0, 0, 1));
    assert_eq!(f.cal.summary("x").as_deref(), Some("Theirs"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_put_and_the_state_update_neither_duplicates_nor_loses() -> TestResult {
    let f = Fixture::new().await?;
    // An event already on the server and in sync …
    f.cal.save("kept", "Kept");
    assert_eq!(f.sync().await?, report(1, 0, 0, 0, 0));

    // … then: a new local event and an edit were PUT, and the process died before their
    // state rows were written (done here with the client directly, as the engine would).
    f.cal.save("new-1", "Created before the crash");
    f.cal.save("kept", "Edited before the crash");
    let client = f.sync.client().clone();
    let (a, b) = (
        f.cal.get("new-1").unwrap_or_default(),
        f.cal.get("kept").unwrap_or_default(),
    );
    tokio::task::spawn_blocking(move || -> TestResult {
        client.put("/alice/cal/new-1.ics", &a, &Precondition::Create)?;
        client.put("/alice/cal/kept.ics", &b, &Precondition::None)?;
        Ok(())
    })
    .await??;

    // The restarted sync finds the same content on both sides: no conflict, no second copy.
    assert_eq!(f.sync().await?, report(0, 0, 0, 0, 0));
    let etags = f.server.etags().await?;
    assert_eq!(etags.len(), 2, "{etags:?}");
    assert_eq!(
        f.cal.summary("new-1").as_deref(),
        Some("Created before the crash")
    );
    assert_eq!(
        f.cal.summary("kept").as_deref(),
        Some("Edited before the crash")
    );
    assert!(state::conflicts_of(&f.store, "new-1").await?.is_empty());
    assert!(f.sync().await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calendar_is_discovered_from_the_server_url() -> TestResult {
    let server = Radicale::start().await?;
    let url = server.url("/");
    let f = Fixture::with_url(server, url).await?;
    f.cal.save("found", "Found by discovery");
    assert_eq!(f.sync().await?, report(1, 0, 0, 0, 0));
    assert!(f.server.get("found").await?.is_some());
    let status = f.sync.status().await?;
    assert_eq!(status.collection, Some(f.server.url("/alice/cal/")));
    assert_eq!(status.items, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_url_the_status_and_what_the_server_said() -> TestResult {
    let server = Radicale::start().await?;
    let dir = tempfile::tempdir()?;
    let opts = StoreOptions::from(&Config::defaults().store);
    let path = dir.path().join("t.db");
    let store = tokio::task::spawn_blocking(move || Store::open(&path, &opts)).await??;
    let mut cfg = caldav_config(server.url("/alice/cal/"));
    cfg.password = Some(Secret::new("wrong"));
    let sync = Caldav::new(&cfg, store.clone(), Arc::new(MemCalendar::default()), None)?;
    let msg = sync
        .sync_now()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains(&server.url("/alice/cal/")), "{msg}");
    assert!(msg.contains("401"), "{msg}");
    assert!(msg.contains("PROPFIND"), "{msg}");

    // Not a calendar: a plain collection.
    let mut cfg = caldav_config(server.url("/alice/"));
    cfg.url = server.url("/alice/nothing-here/");
    let sync = Caldav::new(&cfg, store, Arc::new(MemCalendar::default()), None)?;
    let msg = sync
        .sync_now()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("/alice/nothing-here/"), "{msg}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_route_runs_a_sync_and_returns_counts() -> TestResult {
    let server = Radicale::start().await?;
    let dir = tempfile::tempdir()?;
    let mut cfg = common::test_config(dir.path());
    cfg.caldav = caldav_config(server.url("/alice/cal/"));
    let cal = MemCalendar::default();
    cal.save("api-1", "From the API test");
    let app = App::builder(cfg)
        .local_calendar(Arc::new(cal.clone()))
        .start()
        .await?;
    let base = format!("http://{}", app.local_addr());
    let http = reqwest::Client::new();

    let first: serde_json::Value = http
        .post(format!("{base}/api/v1/calendar/sync"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    // The periodic task's first run may have pushed it already; either way it is there now.
    assert!(first["pushed"].as_u64().is_some(), "{first}");
    assert!(server.get("api-1").await?.is_some());

    server.put("api-2", "Made on the server").await?;
    let second: serde_json::Value = http
        .post(format!("{base}/api/v1/calendar/sync"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(second["pulled"], 1, "{second}");
    assert_eq!(second["pushed"], 0, "{second}");
    assert_eq!(second["conflicts"], 0, "{second}");
    assert_eq!(cal.summary("api-2").as_deref(), Some("Made on the server"));

    let status: serde_json::Value = http
        .get(format!("{base}/api/v1/calendar/sync"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(status["enabled"], true);
    assert_eq!(status["items"], 2, "{status}");

    let ready: serde_json::Value = http
        .get(format!("{base}/readyz"))
        .send()
        .await?
        .json()
        .await?;
    assert!(ready["components"]["caldav"].is_object(), "{ready}");
    app.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_route_says_when_caldav_is_off() -> TestResult {
    let dir = tempfile::tempdir()?;
    let app = App::builder(common::test_config(dir.path()))
        .start()
        .await?;
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/calendar/sync", app.local_addr()))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 409);
    let body: serde_json::Value = r.json().await?;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("[caldav]"),
        "{body}"
    );
    app.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_events_sync_in_batches_and_the_no_op_run_is_cheap() -> TestResult {
    let f = Fixture::new().await?;
    const N: usize = 150; // above the multiget batch of 100
    for i in 0..N {
        f.cal.save(&format!("local-{i}"), &format!("Local {i}"));
        f.server
            .put(&format!("remote-{i}"), &format!("Remote {i}"))
            .await?;
    }
    let n = u32::try_from(N)?;
    let started = Instant::now();
    assert_eq!(f.sync().await?, report(n, n, 0, 0, 0));
    let full = started.elapsed();
    assert_eq!(f.cal.live(), 2 * N);
    assert_eq!(f.server.etags().await?.len(), 2 * N);
    assert_eq!(f.cal.summary("remote-149").as_deref(), Some("Remote 149"));

    let started = Instant::now();
    assert!(f.sync().await?.is_empty());
    let noop = started.elapsed();
    eprintln!(
        "caldav: first sync of {N} local + {N} remote events: {full:?}; \
         a run with nothing to do over {} events: {noop:?}",
        2 * N
    );
    Ok(())
}
