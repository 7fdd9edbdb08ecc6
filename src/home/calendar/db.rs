//! The calendar's SQL: event rows (the whole event as JSON in `body`, the queried fields in
//! columns), tombstones, and the global version counter that orders the change feed.

use rusqlite::{params, Connection, OptionalExtension};

use super::Event;
use crate::domain::{MessageId, UnixMillis};
use crate::store::StoreError;

/// A row of the change feed: the event, or `None` for a tombstone.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    /// Uid.
    pub uid: String,
    /// Version.
    pub version: i64,
    /// The event (None: deleted).
    pub event: Option<Event>,
}

fn decode(body: &str) -> rusqlite::Result<Event> {
    serde_json::from_str(body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Bump the global counter; returns the new version.
pub fn next_version(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.prepare_cached(
        "UPDATE calendar_clock SET version = version + 1 WHERE id = 1 RETURNING version",
    )?
    .query_row([], |r| r.get(0))?)
}

/// The highest version handed out (0 when nothing happened yet).
pub fn current_version(c: &Connection) -> Result<i64, StoreError> {
    Ok(
        c.prepare_cached("SELECT version FROM calendar_clock WHERE id = 1")?
            .query_row([], |r| r.get(0))?,
    )
}

/// Insert or replace the event with `e.uid` (reviving a tombstone), stamping a new version
/// into `e`. `last_end_ms`: end of the last instance (None: never ends).
pub fn upsert(
    c: &Connection,
    e: &mut Event,
    last_end_ms: Option<i64>,
    source: Option<MessageId>,
) -> Result<i64, StoreError> {
    let version = next_version(c)?;
    let now = UnixMillis::now().0;
    e.version = version;
    let body = serde_json::to_string(&*e)
        .map_err(|err| StoreError::CommitFailed(format!("cannot encode event {}: {err}", e.uid)))?;
    c.prepare_cached(
        "INSERT INTO calendar_events (uid, version, deleted, title, start_at, end_at, timezone,
                                      all_day, rrule, last_end_at, body, source_message_id,
                                      created_at, updated_at)
         VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)
         ON CONFLICT (uid) DO UPDATE SET version = excluded.version, deleted = 0,
             title = excluded.title, start_at = excluded.start_at, end_at = excluded.end_at,
             timezone = excluded.timezone, all_day = excluded.all_day, rrule = excluded.rrule,
             last_end_at = excluded.last_end_at, body = excluded.body,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        e.uid,
        version,
        e.title,
        e.start.timestamp().as_millisecond(),
        e.end.timestamp().as_millisecond(),
        e.start.time_zone().iana_name().unwrap_or("UTC"),
        e.all_day,
        e.rrule,
        last_end_ms,
        body,
        source.map(|m| m.0),
        now
    ])?;
    Ok(version)
}

/// Mark `uid` deleted with a new version; `None` when there is no live event of that uid.
pub fn tombstone(c: &Connection, uid: &str) -> Result<Option<i64>, StoreError> {
    let live: Option<i64> = c
        .prepare_cached("SELECT id FROM calendar_events WHERE uid = ?1 AND deleted = 0")?
        .query_row([uid], |r| r.get(0))
        .optional()?;
    let Some(id) = live else {
        return Ok(None);
    };
    let version = next_version(c)?;
    c.prepare_cached(
        "UPDATE calendar_events SET deleted = 1, version = ?2, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![id, version, UnixMillis::now().0])?;
    Ok(Some(version))
}

/// The live event `uid`.
pub fn get(c: &Connection, uid: &str) -> Result<Option<Event>, StoreError> {
    Ok(
        c.prepare_cached("SELECT body FROM calendar_events WHERE uid = ?1 AND deleted = 0")?
            .query_row([uid], |r| decode(&r.get::<_, String>(0)?))
            .optional()?,
    )
}

/// The event booked by this message (idempotent tool calls).
pub fn by_source(c: &Connection, source: MessageId) -> Result<Option<Event>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT body FROM calendar_events WHERE source_message_id = ?1 AND deleted = 0",
    )?
    .query_row([source.0], |r| decode(&r.get::<_, String>(0)?))
    .optional()?)
}

/// Live events that may have an instance overlapping `[from_ms, to_ms)`.
pub fn in_range(c: &Connection, from_ms: i64, to_ms: i64) -> Result<Vec<Event>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT body FROM calendar_events
             WHERE deleted = 0 AND start_at < ?2 AND (last_end_at IS NULL OR last_end_at > ?1)
             ORDER BY start_at, id",
    )?
    .query_map(params![from_ms, to_ms], |r| decode(&r.get::<_, String>(0)?))?
    .collect::<Result<_, _>>()?)
}

/// Live events with alarms that may have an instance ending after `from_ms` and starting
/// before `to_ms`, each with the message that booked it.
pub fn with_alarms_in_range(
    c: &Connection,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(Event, Option<i64>)>, StoreError> {
    let rows: Vec<(Event, Option<i64>)> = c
        .prepare_cached(
            "SELECT body, source_message_id FROM calendar_events
                 WHERE deleted = 0 AND start_at < ?2 AND (last_end_at IS NULL OR last_end_at > ?1)
                   AND body NOT LIKE '%\"alarms\":[]%'
                 ORDER BY start_at, id",
        )?
        .query_map(params![from_ms, to_ms], |r| {
            Ok((decode(&r.get::<_, String>(0)?)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows
        .into_iter()
        .filter(|(e, _)| !e.alarms.is_empty())
        .collect())
}

/// Every live event (the subscription feed).
pub fn all(c: &Connection) -> Result<Vec<Event>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT body FROM calendar_events WHERE deleted = 0 ORDER BY start_at, id",
    )?
    .query_map([], |r| decode(&r.get::<_, String>(0)?))?
    .collect::<Result<_, _>>()?)
}

/// The most recently changed live event.
pub fn latest(c: &Connection) -> Result<Option<Event>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT body FROM calendar_events WHERE deleted = 0 ORDER BY version DESC LIMIT 1",
    )?
    .query_row([], |r| decode(&r.get::<_, String>(0)?))
    .optional()?)
}

/// Changes with a version above `since`, oldest first.
pub fn changes_since(c: &Connection, since: i64) -> Result<Vec<ChangeRow>, StoreError> {
    Ok(c
        .prepare_cached(
            "SELECT uid, version, deleted, body FROM calendar_events WHERE version > ?1 ORDER BY version",
        )?
        .query_map([since], |r| {
            let deleted: bool = r.get(2)?;
            Ok(ChangeRow {
                uid: r.get(0)?,
                version: r.get(1)?,
                event: if deleted {
                    None
                } else {
                    Some(decode(&r.get::<_, String>(3)?)?)
                },
            })
        })?
        .collect::<Result<_, _>>()?)
}
