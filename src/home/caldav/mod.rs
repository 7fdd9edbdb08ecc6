//! CalDAV two-way sync of the local calendar with one calendar collection on a CalDAV server
//! (Radicale, Nextcloud, Baïkal, …).
//!
//! Owns: the HTTP client (`client.rs`, blocking `ureq` run on `spawn_blocking`), the WebDAV
//! XML (`xml.rs`), the sync state table (`state.rs`) and the sync engine (`sync.rs`). It knows
//! the local calendar only through [`LocalCalendar`]: a change feed of versions and a way to
//! apply what came from the server. It never parses ICS beyond the UID (`ics.rs`).
//!
//! # How a run works
//! 1. `PROPFIND Depth: 1` lists the collection (hrefs and etags); the local change feed gives
//!    every event changed since the watermark (the highest local version already looked at).
//! 2. Local changes not yet on the server are pushed: `PUT` with `If-None-Match: *` for a new
//!    event (at `<collection>/<uid>.ics`), `PUT` with `If-Match: <etag>` for an edit, `DELETE`
//!    with `If-Match` for a delete.
//! 3. Remote changes (a new href, an etag that differs from the stored one, a stored href that
//!    vanished) are fetched with `REPORT calendar-multiget` and applied through
//!    [`LocalCalendar::apply_remote`]; the version it returns is stored, so the echo of an
//!    applied change is never pushed back.
//!
//! # Conflict rule: the server wins, the local edit goes to the audit log
//! An event changed on both sides since the last sync (edited, created or deleted on each) is
//! a conflict. **The server's version wins**: it is applied locally (an edit or a delete), and
//! the local version is kept as an `audit_log` entry (`actor = caldav`, `action =
//! caldav.conflict`, `subject` = the UID, `detail` = the local VCALENDAR or `null` for a local
//! delete, its version and the server's href and etag). The same rule resolves a `PUT` or
//! `DELETE` that the server refuses with `412 Precondition Failed` (it changed between our
//! listing and our write). Both sides holding the same content (same content lines in any
//! order, `PRODID` ignored), or both having deleted the event, is not a conflict.
//!
//! # Idempotent and crash-safe
//! The UID is the identity and the href is derived from it, so a retried `PUT` can never make a
//! second copy. Each event's state row is written right after its own request succeeded; a
//! crash between the two leaves the event changed "on both sides" with the same content on the
//! next run, which then only records the state. The watermark moves only at the end of a run.
//! A run with nothing changed on either side sends one `PROPFIND` and writes nothing else.
//!
//! Architecture Invariant: nothing here knows the calendar's tables or its ICS model; the only
//! SQL is the sync state in `state.rs`. Invariant: no HTTP request runs on the async runtime.

pub mod client;
pub mod ics;
pub mod state;
mod sync;
pub mod xml;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::CaldavConfig;
use crate::platform::health::{ComponentState, Health};
use crate::store::{Store, StoreError};
pub use client::DavClient;

/// The error type of a [`LocalCalendar`].
pub type LocalError = Box<dyn std::error::Error + Send + Sync>;

/// One entry of the local change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarChange {
    /// The event's RFC 5545 UID.
    pub uid: String,
    /// The local version of this change (one global, increasing counter).
    pub version: i64,
    /// The complete VCALENDAR with that one event; `None`: it was deleted.
    pub ics: Option<String>,
}

/// What the sync needs from the local calendar (`home::calendar::Calendar` implements it).
pub trait LocalCalendar: Send + Sync + 'static {
    /// Events created, updated or deleted with a version above `since`, oldest first.
    fn changes_since(&self, since: i64) -> BoxFuture<'_, Result<Vec<CalendarChange>, LocalError>>;
    /// Apply a change from the server: upsert from the VCALENDAR, or delete when `ics` is
    /// `None` (deleting an unknown UID is not an error). Returns the event's new local version.
    fn apply_remote<'a>(
        &'a self,
        uid: &'a str,
        ics: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, LocalError>>;
    /// The highest local version so far (0 when empty).
    fn current_version(&self) -> BoxFuture<'_, Result<i64, LocalError>>;
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum CaldavError {
    /// The configured URL is not usable.
    #[error("caldav.url {url:?}: {message}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The server could not be reached or the connection broke (retry later).
    #[error("{method} {url}: {message}")]
    Transport {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The I/O or protocol error.
        message: String,
    },
    /// The server answered with an unexpected status.
    #[error("{method} {url}: the server answered {status}: {body}")]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body (or where it redirected to).
        body: String,
    },
    /// A multistatus answer could not be read.
    #[error("{url}: {source}")]
    Xml {
        /// The URL.
        url: String,
        /// The parser's error.
        source: xml::XmlError,
    },
    /// The URL is not a calendar collection.
    #[error("{url} is not a calendar collection (set caldav.url to the calendar's URL or to the server's, for discovery)")]
    NotACalendar {
        /// The URL.
        url: String,
    },
    /// No calendar was found from the configured server URL.
    #[error("no calendar found from {url}: {message} (set caldav.url to the calendar's URL)")]
    Discovery {
        /// The configured URL.
        url: String,
        /// What was missing.
        message: String,
    },
    /// The local calendar failed.
    #[error("the local calendar failed: {0}")]
    Local(LocalError),
    /// The sync state could not be read or written.
    #[error("caldav sync state: {0}")]
    Store(#[from] StoreError),
    /// CalDAV sync is not configured.
    #[error("CalDAV sync is off (set [caldav] enabled = true and url)")]
    Disabled,
    /// A request thread failed.
    #[error("a CalDAV request thread failed: {0}")]
    Join(String),
}

impl CaldavError {
    /// Whether the same run can succeed later without a config change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Join(_) | Self::Local(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 423,
            Self::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
    /// Whether the server (not this box) is what failed.
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. }
                | Self::Status { .. }
                | Self::Xml { .. }
                | Self::NotACalendar { .. }
                | Self::Discovery { .. }
        )
    }
}

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Local creates and edits sent to the server.
    pub pushed: u32,
    /// Server creates and edits applied locally (conflicts not included).
    pub pulled: u32,
    /// Local deletes sent to the server.
    pub deleted_remote: u32,
    /// Server deletes applied locally (conflicts not included).
    pub deleted_local: u32,
    /// Events changed on both sides; the server's version was applied.
    pub conflicts: u32,
    /// Server objects skipped because they have no UID.
    pub skipped: u32,
}

impl SyncReport {
    /// Whether the run changed nothing on either side.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pushed {}, pulled {}, deleted {} there and {} here, {} conflicts",
            self.pushed, self.pulled, self.deleted_remote, self.deleted_local, self.conflicts
        )?;
        if self.skipped > 0 {
            write!(f, ", {} skipped (no UID)", self.skipped)?;
        }
        Ok(())
    }
}

/// The state of the sync, for the API.
#[derive(Debug, Clone, Default)]
pub struct SyncStatus {
    /// The collection URL in use (after discovery), once known.
    pub collection: Option<String>,
    /// Events known to be in sync.
    pub items: usize,
    /// The local version up to which changes were looked at.
    pub watermark: i64,
    /// When the last run finished (ms since the epoch).
    pub last_sync_at: Option<i64>,
    /// Why the last run failed.
    pub last_error: Option<String>,
}

struct Inner {
    client: DavClient,
    configured_path: String,
    store: Store,
    calendar: Arc<dyn LocalCalendar>,
    interval: Duration,
    health: Option<Health>,
    /// Serializes runs.
    run: tokio::sync::Mutex<()>,
    /// The collection path (decoded) once discovered.
    collection: std::sync::Mutex<Option<String>>,
}

/// The CalDAV sync component: a handle (cheap to clone) that runs a sync now
/// ([`Caldav::sync_now`]) or every `interval` ([`Caldav::run`]).
#[derive(Clone)]
pub struct Caldav {
    inner: Arc<Inner>,
}

impl Caldav {
    /// Build the component from `[caldav]`; `Disabled` when it is off.
    pub fn new(
        cfg: &CaldavConfig,
        store: Store,
        calendar: Arc<dyn LocalCalendar>,
        health: Option<Health>,
    ) -> Result<Self, CaldavError> {
        if !cfg.enabled {
            return Err(CaldavError::Disabled);
        }
        let client = DavClient::new(&cfg.url, &cfg.username, cfg.password.as_ref(), cfg.timeout)?;
        let (_, path) = client::split_url(&cfg.url)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                configured_path: client::href_path(&path),
                store,
                calendar,
                interval: cfg.interval,
                health,
                run: tokio::sync::Mutex::new(()),
                collection: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The HTTP client (shared with tests and diagnostics).
    pub fn client(&self) -> &DavClient {
        &self.inner.client
    }

    /// Run one sync now (waits for a run in progress to finish first).
    pub async fn sync_now(&self) -> Result<SyncReport, CaldavError> {
        let _running = self.inner.run.lock().await;
        let result = self.sync_locked().await;
        if let Err(e) = &result {
            // The state may not exist yet (the first run failed before claiming it).
            let _ = state::record_error(&self.inner.store, e.to_string()).await;
        }
        result
    }

    fn collection(&self) -> Option<String> {
        self.inner.collection.lock().map_or(None, |g| g.clone())
    }

    async fn sync_locked(&self) -> Result<SyncReport, CaldavError> {
        let path = match self.collection() {
            Some(p) => p,
            None => {
                let start = self.inner.configured_path.clone();
                let found = blocking(&self.inner.client, move |c| c.discover(&start)).await?;
                tracing::info!(collection = %self.inner.client.url_of(&found), "caldav collection");
                if let Ok(mut g) = self.inner.collection.lock() {
                    *g = Some(found.clone());
                }
                found
            }
        };
        sync::run(
            &self.inner.client,
            &self.inner.store,
            self.inner.calendar.as_ref(),
            &path,
        )
        .await
    }

    /// The current sync state.
    pub async fn status(&self) -> Result<SyncStatus, CaldavError> {
        let Some(path) = self.collection() else {
            return Ok(SyncStatus::default());
        };
        let st = state::load(&self.inner.store, &path).await?;
        Ok(SyncStatus {
            collection: Some(self.inner.client.url_of(&path)),
            items: st.items.len(),
            watermark: st.watermark,
            last_sync_at: st.last_sync_at,
            last_error: st.last_error,
        })
    }

    /// Sync every `interval` (the first run at once) until `shutdown`; reports to health as
    /// the `caldav` component.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let outcome = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.sync_now() => r,
            };
            match outcome {
                Ok(report) => {
                    if !report.is_empty() {
                        tracing::info!(%report, "caldav sync");
                    }
                    self.set_health(ComponentState::Ready, format!("last sync: {report}"));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "caldav sync failed; retrying at the next interval");
                    self.set_health(ComponentState::Degraded, e.to_string());
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.inner.interval) => {}
            }
        }
        self.set_health(ComponentState::Stopping, "stopped".to_owned());
    }

    fn set_health(&self, s: ComponentState, detail: String) {
        if let Some(h) = &self.inner.health {
            h.set("caldav", s, detail);
        }
    }
}

/// Run a blocking client call on the blocking pool.
pub(crate) async fn blocking<T, F>(client: &DavClient, f: F) -> Result<T, CaldavError>
where
    F: FnOnce(&DavClient) -> Result<T, CaldavError> + Send + 'static,
    T: Send + 'static,
{
    let c = client.clone();
    tokio::task::spawn_blocking(move || f(&c))
        .await
        .map_err(|e| CaldavError::Join(e.to_string()))?
}

/// The device's own calendar is what CalDAV keeps in sync.
impl LocalCalendar for crate::home::calendar::Calendar {
    fn changes_since(&self, since: i64) -> BoxFuture<'_, Result<Vec<CalendarChange>, LocalError>> {
        Box::pin(async move {
            let changes = crate::home::calendar::Calendar::changes_since(self, since).await?;
            Ok(changes
                .into_iter()
                .map(|c| CalendarChange {
                    uid: c.uid,
                    version: c.version,
                    ics: c.ics,
                })
                .collect())
        })
    }

    fn apply_remote<'a>(
        &'a self,
        uid: &'a str,
        ics: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, LocalError>> {
        Box::pin(
            async move { Ok(crate::home::calendar::Calendar::apply_remote(self, uid, ics).await?) },
        )
    }

    fn current_version(&self) -> BoxFuture<'_, Result<i64, LocalError>> {
        Box::pin(async move { Ok(crate::home::calendar::Calendar::current_version(self).await?) })
    }
}
