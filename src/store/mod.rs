//! The durable store: one SQLite file in WAL mode, reached only through this module.
//!
//! Threads, not the async runtime, touch SQLite: one writer thread owns the only read-write
//! connection and commits queued write operations together (group commit: one `fsync` for a
//! batch, `synchronous=FULL`), and a few reader threads serve queries on read-only
//! connections. Async callers hand a closure to [`Store::write`] or [`Store::read`] and await
//! the result; a write's result is delivered only after its transaction has committed, so
//! whatever a caller acknowledges to the outside world is already on disk.
//!
//! Each write operation runs inside its own savepoint: one failing operation rolls back alone
//! and never takes the rest of its batch with it.
//!
//! Architecture Invariant: only `store` speaks SQL; nothing outside it holds a `Connection`.

pub mod messages;
pub mod migrations;
pub mod outbox;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::oneshot;

use crate::domain::UnixMillis;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// The database file could not be opened or configured.
    #[error("cannot open database {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file was written by a newer version of local-assistant.
    #[error("database schema version {found} is newer than this binary supports ({supported}); install a newer local-assistant or restore a backup")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Highest version this binary knows.
        supported: i64,
    },
    /// A migration failed; the database stays at the previous version.
    #[error("migration to schema version {version} failed: {source}")]
    Migration {
        /// The version that failed.
        version: i64,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Another process holds the database lock (retry later).
    #[error("database is busy (locked by another connection); retry later")]
    Busy,
    /// The commit failed; nothing in the batch was stored.
    #[error("commit failed, nothing was stored: {0}")]
    CommitFailed(String),
    /// The store is shutting down.
    #[error("the store is closed (shutting down)")]
    Closed,
    /// An operation panicked; its savepoint was rolled back.
    #[error("a database operation panicked and was rolled back")]
    Panicked,
    /// An idempotency key was reused for a different request.
    #[error(
        "idempotency key {key:?} was already used for a different request on channel {channel}"
    )]
    IdempotencyConflict {
        /// The channel.
        channel: String,
        /// The key.
        key: String,
    },
    /// A referenced row does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// The kind of row.
        what: &'static str,
        /// Its id.
        id: i64,
    },
}

impl StoreError {
    /// Whether trying the same operation again later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Busy | Self::CommitFailed(_) | Self::Closed)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Self::Busy,
            _ => Self::Sqlite(e),
        }
    }
}

/// Settings for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long to wait for a lock held by another connection.
    pub busy_timeout: Duration,
    /// Most write operations per transaction.
    pub max_batch: usize,
    /// Reader threads.
    pub readers: usize,
    /// Writer queue capacity.
    pub queue_depth: usize,
}

impl From<&crate::config::StoreConfig> for StoreOptions {
    fn from(c: &crate::config::StoreConfig) -> Self {
        Self {
            busy_timeout: c.busy_timeout,
            max_batch: c.max_batch,
            readers: c.readers,
            queue_depth: c.queue_depth,
        }
    }
}

/// Latency and batching histograms, registered by `platform::metrics`.
#[derive(Clone)]
pub struct StoreMetrics {
    /// Seconds from submitting a write to its committed result.
    pub write_latency: Histogram,
    /// Seconds from submitting a read to its result.
    pub read_latency: Histogram,
    /// Write operations per committed transaction.
    pub batch_size: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        let latency_buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        Self {
            write_latency: Histogram::new(latency_buckets),
            read_latency: Histogram::new(latency_buckets),
            batch_size: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
        }
    }
}

/// What a finished write operation reports back to the writer thread.
trait Finish: Send {
    /// Whether the operation itself succeeded (its savepoint is kept).
    fn ok(&self) -> bool;
    /// Deliver the result once the commit outcome is known.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

/// A queued write operation.
trait WriteOp: Send {
    /// Run inside the current transaction.
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Finish>;
    /// Fail without running (the transaction could not start).
    fn fail(self: Box<Self>, err: StoreError);
}

/// A queued read operation.
trait ReadOp: Send {
    /// Run on a read-only connection and deliver the result.
    fn run(self: Box<Self>, conn: &Connection);
}

struct Op<F, T> {
    f: F,
    tx: oneshot::Sender<Result<T, StoreError>>,
}

struct Done<T> {
    result: Result<T, StoreError>,
    tx: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send> Finish for Done<T> {
    fn ok(&self) -> bool {
        self.result.is_ok()
    }
    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let result = match commit {
            Ok(()) => self.result,
            Err(e) => Err(e),
        };
        // The caller may have gone away (request cancelled); the data is committed either way.
        let _ = self.tx.send(result);
    }
}

impl<F, T> WriteOp for Op<F, T>
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Finish> {
        let Op { f, tx } = *self;
        let result =
            catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or(Err(StoreError::Panicked));
        Box::new(Done { result, tx })
    }
    fn fail(self: Box<Self>, err: StoreError) {
        let _ = self.tx.send(Err(err));
    }
}

impl<F, T> ReadOp for Op<F, T>
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) {
        let Op { f, tx } = *self;
        let result =
            catch_unwind(AssertUnwindSafe(|| f(conn))).unwrap_or(Err(StoreError::Panicked));
        let _ = tx.send(result);
    }
}

struct Inner {
    path: PathBuf,
    writer: async_channel::Sender<Box<dyn WriteOp>>,
    readers: async_channel::Sender<Box<dyn ReadOp>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    metrics: StoreMetrics,
}

/// A handle to the store; cheap to clone, shared by every component.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// Open a connection with the pragmas every connection needs.
fn open_connection(path: &Path, read_only: bool, busy: Duration) -> Result<Connection, StoreError> {
    let open_err = |e: rusqlite::Error| StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(busy).map_err(open_err)?;
    if !read_only {
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                message: format!("could not switch to WAL journal mode (got {mode})"),
            });
        }
        // FULL: a committed transaction survives power loss, which is what we promise
        // whenever a write's result is acknowledged to the outside world.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    Ok(conn)
}

/// Create the data directory (mode 0700) if it is missing.
pub fn ensure_data_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::Open {
            path: dir.to_path_buf(),
            message: format!("cannot create the data directory: {e}"),
        })
}

/// Open the file (creating it), apply migrations; returns how many migrations ran.
/// This is `local-assistant init-db`.
pub fn init_db(path: &Path, busy: Duration) -> Result<usize, StoreError> {
    if let Some(dir) = path.parent() {
        ensure_data_dir(dir)?;
    }
    let mut conn = open_connection(path, false, busy)?;
    migrations::migrate(&mut conn)
}

impl Store {
    /// Open (creating and migrating) the database at `path` and start its threads.
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Self, StoreError> {
        Self::open_with_metrics(path, opts, StoreMetrics::default())
    }

    /// Like [`Store::open`], recording into the given histograms.
    pub fn open_with_metrics(
        path: &Path,
        opts: &StoreOptions,
        metrics: StoreMetrics,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            ensure_data_dir(dir)?;
        }
        let mut writer_conn = open_connection(path, false, opts.busy_timeout)?;
        migrations::migrate(&mut writer_conn)?;
        let mut reader_conns = Vec::with_capacity(opts.readers);
        for _ in 0..opts.readers.max(1) {
            reader_conns.push(open_connection(path, true, opts.busy_timeout)?);
        }

        let (wtx, wrx) = async_channel::bounded::<Box<dyn WriteOp>>(opts.queue_depth.max(1));
        let (rtx, rrx) = async_channel::bounded::<Box<dyn ReadOp>>(opts.queue_depth.max(1));
        let mut threads = Vec::new();
        let max_batch = opts.max_batch.max(1);
        let batch_hist = metrics.batch_size.clone();
        let spawn_err = |e: std::io::Error| StoreError::Open {
            path: path.to_path_buf(),
            message: format!("cannot start a database thread: {e}"),
        };
        threads.push(
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer_loop(writer_conn, &wrx, max_batch, &batch_hist))
                .map_err(spawn_err)?,
        );
        for (i, conn) in reader_conns.into_iter().enumerate() {
            let rx = rrx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("store-reader-{i}"))
                    .spawn(move || {
                        while let Ok(op) = rx.recv_blocking() {
                            op.run(&conn);
                        }
                    })
                    .map_err(spawn_err)?,
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: wtx,
                readers: rtx,
                threads: Mutex::new(threads),
                metrics,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The store's histograms.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// Run `f` in a write transaction; resolves after the transaction committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        self.inner
            .writer
            .send(Box::new(Op { f, tx }))
            .await
            .map_err(|_| StoreError::Closed)?;
        let result = rx.await.map_err(|_| StoreError::Closed)?;
        self.inner
            .metrics
            .write_latency
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Run `f` on a read-only connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        self.inner
            .readers
            .send(Box::new(Op { f, tx }))
            .await
            .map_err(|_| StoreError::Closed)?;
        let result = rx.await.map_err(|_| StoreError::Closed)?;
        self.inner
            .metrics
            .read_latency
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Prove that both the writer (it can take the write lock and commit) and a reader answer.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let now = UnixMillis::now();
        self.write(move |c| {
            c.execute("UPDATE heartbeat SET at = ?1 WHERE id = 1", [now.0])?;
            Ok(())
        })
        .await?;
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .map(|_| ())
    }

    /// Write operations waiting for the writer thread.
    pub fn queued_writes(&self) -> usize {
        self.inner.writer.len()
    }

    /// Stop taking work, finish what is queued, checkpoint the WAL and join the threads.
    pub async fn close(&self) {
        self.inner.writer.close();
        self.inner.readers.close();
        let threads = match self.inner.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// The writer thread: take the next operation, gather whatever else is queued (up to
/// `max_batch`), run them all in one transaction, commit once, then report every result.
fn writer_loop(
    conn: Connection,
    rx: &async_channel::Receiver<Box<dyn WriteOp>>,
    max_batch: usize,
    batch_hist: &Histogram,
) {
    let mut batch: Vec<Box<dyn WriteOp>> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv_blocking() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        #[allow(clippy::cast_precision_loss)]
        batch_hist.observe(batch.len() as f64);
        run_batch(&conn, &mut batch);
    }
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed; it will run at next start");
    }
}

/// Run a parameterless statement through the statement cache (the writer runs the savepoint
/// statements thousands of times a second; re-parsing them showed up in profiles).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_batch(conn: &Connection, batch: &mut Vec<Box<dyn WriteOp>>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = StoreError::from(e);
        let retryable = err.is_retryable();
        for op in batch.drain(..) {
            op.fail(if retryable {
                StoreError::Busy
            } else {
                StoreError::CommitFailed(err.to_string())
            });
        }
        return;
    }
    let mut finished: Vec<Box<dyn Finish>> = Vec::with_capacity(batch.len());
    for op in batch.drain(..) {
        if let Err(e) = exec_cached(conn, "SAVEPOINT op") {
            op.fail(StoreError::from(e));
            continue;
        }
        let done = op.run(conn);
        let end = if done.ok() {
            exec_cached(conn, "RELEASE op")
        } else {
            exec_cached(conn, "ROLLBACK TO op").and_then(|()| exec_cached(conn, "RELEASE op"))
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "closing a savepoint failed");
        }
        finished.push(done);
    }
    let commit = conn.execute_batch("COMMIT");
    let outcome = match commit {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %e, ops = finished.len(), "commit failed; the batch was rolled back");
            Err(e.to_string())
        }
    };
    for done in finished {
        done.finish(outcome.clone().map_err(StoreError::CommitFailed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> StoreOptions {
        StoreOptions {
            busy_timeout: Duration::from_millis(200),
            max_batch: 64,
            readers: 2,
            queue_depth: 1024,
        }
    }

    #[tokio::test]
    async fn migrations_from_an_empty_file_then_rerun_are_no_ops() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Closed.with_io(e))?;
        let path = dir.path().join("db.sqlite");
        assert_eq!(
            init_db(&path, Duration::from_secs(1))?,
            migrations::MIGRATIONS.len()
        );
        assert_eq!(init_db(&path, Duration::from_secs(1))?, 0);
        let store = Store::open(&path, &opts())?;
        let version = store.read(migrations::current_version).await?;
        assert_eq!(version, migrations::latest_version());
        let tables: Vec<String> = store
            .read(|c| {
                let mut s =
                    c.prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")?;
                let rows = s.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .await?;
        for t in [
            "audit_log",
            "contacts",
            "conversations",
            "inbox",
            "messages",
            "outbox",
        ] {
            assert!(
                tables.iter().any(|x| x == t),
                "missing table {t}: {tables:?}"
            );
        }
        let (mode, fk, sync): (String, i64, i64) = store
            .write(|c| {
                Ok((
                    c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                    c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
                    c.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
                ))
            })
            .await?;
        // synchronous=FULL is 2: every acknowledged commit is fsynced.
        assert_eq!((mode.as_str(), fk, sync), ("wal", 1, 2));
        store.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_with_advice() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Closed.with_io(e))?;
        let path = dir.path().join("db.sqlite");
        let c = Connection::open(&path)?;
        c.pragma_update(None, "user_version", 999)?;
        drop(c);
        let err = Store::open(&path, &opts())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("999") && err.contains("newer"), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn a_failing_operation_rolls_back_alone_within_its_batch() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Closed.with_io(e))?;
        let store = Store::open(&dir.path().join("db.sqlite"), &opts())?;
        let mut handles = Vec::new();
        for i in 0..50i64 {
            let s = store.clone();
            handles.push(tokio::spawn(async move {
                s.write(move |c| {
                    c.execute(
                        "INSERT INTO audit_log (at, actor, action) VALUES (?1, 'test', 'x')",
                        [i],
                    )?;
                    if i % 5 == 0 {
                        return Err(StoreError::NotFound {
                            what: "thing",
                            id: i,
                        });
                    }
                    if i == 7 {
                        panic!("operation 7 panics on purpose");
                    }
                    Ok(i)
                })
                .await
            }));
        }
        let mut ok = 0;
        for h in handles {
            if let Ok(Ok(_)) = h.await {
                ok += 1;
            }
        }
        let stored: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))?))
            .await?;
        assert_eq!(ok, 39);
        assert_eq!(
            stored, 39,
            "failed and panicked operations must leave no rows"
        );
        store.ping().await?;
        store.close().await;
        assert!(matches!(store.ping().await, Err(StoreError::Closed)));
        Ok(())
    }

    #[tokio::test]
    async fn a_lock_held_by_another_process_is_reported_as_busy() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Closed.with_io(e))?;
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path, &opts())?;
        let other = Connection::open(&path)?;
        other.execute_batch("BEGIN EXCLUSIVE")?;
        let err = store.ping().await.err();
        assert!(matches!(err, Some(StoreError::Busy)), "{err:?}");
        other.execute_batch("ROLLBACK")?;
        store.ping().await?;
        store.close().await;
        Ok(())
    }

    impl StoreError {
        fn with_io(self, e: std::io::Error) -> Self {
            Self::Open {
                path: PathBuf::new(),
                message: e.to_string(),
            }
        }
    }
}
