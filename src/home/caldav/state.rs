//! The CalDAV sync state in SQLite (`caldav_items`, `caldav_sync`) and the conflict entries
//! written to `audit_log`: the only SQL of the CalDAV module, run through [`Store`].
//!
//! `caldav_items` holds, per event UID, the href it has on the server, the etag we last saw
//! there and the local version we last sent or applied. `caldav_sync` holds the collection the
//! state belongs to and the local version up to which changes have been looked at (the
//! watermark). A different collection URL starts over from an empty state.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::UnixMillis;
use crate::store::{Store, StoreError};

/// The synced state of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemState {
    /// Its RFC 5545 UID.
    pub uid: String,
    /// Its decoded path on the server.
    pub href: String,
    /// The etag it had on the server after the last sync (quoted).
    pub etag: Option<String>,
    /// The local version that matched the server after the last sync.
    pub local_version: i64,
}

/// Everything the engine needs at the start of a run.
#[derive(Debug, Clone, Default)]
pub struct SyncState {
    /// Local changes with a version up to this one have been looked at.
    pub watermark: i64,
    /// The collection's ctag after the last run.
    pub ctag: Option<String>,
    /// When the last run finished (ms since the epoch).
    pub last_sync_at: Option<i64>,
    /// The last run's error, if it failed.
    pub last_error: Option<String>,
    /// Items by UID.
    pub items: HashMap<String, ItemState>,
}

/// A `caldav_sync` row: collection, watermark, ctag, last sync, last error.
type SyncRow = (String, i64, Option<String>, Option<i64>, Option<String>);

fn load_in(c: &Connection, collection: &str) -> Result<SyncState, StoreError> {
    let row: Option<SyncRow> = c
        .prepare_cached(
            "SELECT collection, local_version, ctag, last_sync_at, last_error FROM caldav_sync WHERE id = 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?;
    let mut state = SyncState::default();
    match row {
        Some((coll, watermark, ctag, at, err)) if coll == collection => {
            state.watermark = watermark;
            state.ctag = ctag;
            state.last_sync_at = at;
            state.last_error = err;
        }
        // Another collection (or none yet): its items mean nothing here.
        _ => return Ok(state),
    }
    let mut stmt = c.prepare_cached("SELECT uid, href, etag, local_version FROM caldav_items")?;
    let rows = stmt.query_map([], |r| {
        Ok(ItemState {
            uid: r.get(0)?,
            href: r.get(1)?,
            etag: r.get(2)?,
            local_version: r.get(3)?,
        })
    })?;
    for item in rows {
        let item = item?;
        state.items.insert(item.uid.clone(), item);
    }
    Ok(state)
}

/// Load the state for `collection` (an empty one when the state belongs to another).
pub async fn load(store: &Store, collection: &str) -> Result<SyncState, StoreError> {
    let collection = collection.to_owned();
    store.read(move |c| load_in(c, &collection)).await
}

/// Make the state belong to `collection`: when it belonged to another (or `reset`), forget
/// every item and the watermark.
pub async fn claim(store: &Store, collection: &str, reset: bool) -> Result<(), StoreError> {
    let collection = collection.to_owned();
    store
        .write(move |c| {
            let current: Option<String> = c
                .query_row("SELECT collection FROM caldav_sync WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()?;
            if reset || current.as_deref() != Some(collection.as_str()) {
                c.execute("DELETE FROM caldav_items", [])?;
                c.execute(
                    "INSERT INTO caldav_sync (id, collection, local_version) VALUES (1, ?1, 0)
                     ON CONFLICT (id) DO UPDATE SET collection = ?1, local_version = 0, ctag = NULL",
                    params![collection],
                )?;
            }
            Ok(())
        })
        .await
}

/// Record an event as in sync: on the server at `href` with `etag`, locally at `local_version`.
pub async fn upsert(store: &Store, item: ItemState) -> Result<(), StoreError> {
    store
        .write(move |c| {
            // A UID that moved to another href, or an href reused by another UID, keeps one row.
            c.prepare_cached("DELETE FROM caldav_items WHERE href = ?1 AND uid <> ?2")?
                .execute(params![item.href, item.uid])?;
            c.prepare_cached(
                "INSERT INTO caldav_items (uid, href, etag, local_version, synced_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (uid) DO UPDATE SET href = ?2, etag = ?3, local_version = ?4, synced_at = ?5",
            )?
            .execute(params![
                item.uid,
                item.href,
                item.etag,
                item.local_version,
                UnixMillis::now().0
            ])?;
            Ok(())
        })
        .await
}

/// Forget an event (deleted on both sides).
pub async fn remove(store: &Store, uid: &str) -> Result<(), StoreError> {
    let uid = uid.to_owned();
    store
        .write(move |c| {
            c.prepare_cached("DELETE FROM caldav_items WHERE uid = ?1")?
                .execute(params![uid])?;
            Ok(())
        })
        .await
}

/// Keep the local side of a conflict that the remote won, as an `audit_log` entry
/// (`actor = 'caldav'`, `action = 'caldav.conflict'`, `subject` = the UID).
pub async fn record_conflict(
    store: &Store,
    uid: &str,
    detail: serde_json::Value,
) -> Result<(), StoreError> {
    let uid = uid.to_owned();
    let detail = detail.to_string();
    store
        .write(move |c| {
            c.prepare_cached(
                "INSERT INTO audit_log (at, actor, action, subject, detail)
                 VALUES (?1, 'caldav', 'caldav.conflict', ?2, ?3)",
            )?
            .execute(params![UnixMillis::now().0, uid, detail])?;
            Ok(())
        })
        .await
}

/// The conflict entries for `uid`, oldest first (their `detail` JSON).
pub async fn conflicts_of(store: &Store, uid: &str) -> Result<Vec<serde_json::Value>, StoreError> {
    let uid = uid.to_owned();
    store
        .read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT detail FROM audit_log WHERE action = 'caldav.conflict' AND subject = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![uid], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(serde_json::from_str(&r?).unwrap_or(serde_json::Value::Null));
            }
            Ok(out)
        })
        .await
}

/// Finish a run: advance the watermark (never backwards), keep the ctag, clear the error.
pub async fn finish(store: &Store, watermark: i64, ctag: Option<String>) -> Result<(), StoreError> {
    store
        .write(move |c| {
            c.prepare_cached(
                "UPDATE caldav_sync SET local_version = max(local_version, ?1), ctag = ?2,
                 last_sync_at = ?3, last_error = NULL WHERE id = 1",
            )?
            .execute(params![watermark, ctag, UnixMillis::now().0])?;
            Ok(())
        })
        .await
}

/// Remember why the last run failed.
pub async fn record_error(store: &Store, message: String) -> Result<(), StoreError> {
    store
        .write(move |c| {
            c.prepare_cached("UPDATE caldav_sync SET last_error = ?1 WHERE id = 1")?
                .execute(params![message])?;
            Ok(())
        })
        .await
}
