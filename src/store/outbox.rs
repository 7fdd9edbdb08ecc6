//! SQL for the outbox: pending outbound deliveries with attempts, backoff and dead letters.
//!
//! Rows move `pending` → `delivering` (claimed by the dispatcher) → `delivered` or back to
//! `pending` with a later `next_attempt_at`, or to `dead` after the last attempt. At start,
//! rows left `delivering` by a crash go back to `pending` (delivery is at-least-once).
//! The retry policy itself lives in `messaging::outbox`; this file only records decisions.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::domain::{MessageId, OutboxId, UnixMillis};

/// A delivery to enqueue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Channel whose handler delivers it.
    pub channel: String,
    /// Recipient address on that channel.
    pub recipient: String,
    /// Channel-specific payload (JSON).
    pub payload: serde_json::Value,
    /// The message it delivers, if any (its status follows the delivery).
    pub message_id: Option<MessageId>,
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
    /// Earliest first attempt.
    pub not_before: UnixMillis,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Id.
    pub id: OutboxId,
    /// Channel.
    pub channel: String,
    /// Recipient.
    pub recipient: String,
    /// Payload.
    pub payload: serde_json::Value,
    /// Related message.
    pub message_id: Option<MessageId>,
    /// `pending`, `delivering`, `delivered` or `dead`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempt limit.
    pub max_attempts: u32,
    /// Next attempt time.
    pub next_attempt_at: UnixMillis,
    /// Last failure.
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, channel, recipient, payload, message_id, status, attempts, max_attempts, next_attempt_at, last_error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    let payload: String = r.get(3)?;
    Ok(OutboxEntry {
        id: OutboxId(r.get(0)?),
        channel: r.get(1)?,
        recipient: r.get(2)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        message_id: r.get::<_, Option<i64>>(4)?.map(MessageId),
        status: r.get(5)?,
        attempts: r.get(6)?,
        max_attempts: r.get(7)?,
        next_attempt_at: UnixMillis(r.get(8)?),
        last_error: r.get(9)?,
    })
}

/// Add a delivery.
pub fn enqueue(
    conn: &Connection,
    d: &NewDelivery,
    now: UnixMillis,
) -> Result<OutboxId, StoreError> {
    let id: i64 = conn.query_row(
        "INSERT INTO outbox (channel, recipient, payload, message_id, status, max_attempts,
                             next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?7) RETURNING id",
        params![
            d.channel,
            d.recipient,
            d.payload.to_string(),
            d.message_id.map(|m| m.0),
            d.max_attempts,
            d.not_before.0,
            now.0
        ],
        |r| r.get(0),
    )?;
    Ok(OutboxId(id))
}

/// Put rows a crash left in `delivering` back to `pending`; returns how many.
pub fn recover(conn: &Connection, now: UnixMillis) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE outbox SET status = 'pending', updated_at = ?1 WHERE status = 'delivering'",
        [now.0],
    )?)
}

/// Claim up to `limit` due rows of the given channels (mark them `delivering`).
pub fn claim_due(
    conn: &Connection,
    channels: &[String],
    now: UnixMillis,
    limit: usize,
) -> Result<Vec<OutboxEntry>, StoreError> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::to_string(channels).unwrap_or_else(|_| "[]".into());
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE outbox SET status = 'delivering', updated_at = ?1
          WHERE id IN (SELECT id FROM outbox
                        WHERE status = 'pending' AND next_attempt_at <= ?1
                          AND channel IN (SELECT value FROM json_each(?2))
                        ORDER BY next_attempt_at, id LIMIT ?3)
          RETURNING {COLUMNS}"
    ))?;
    let rows = stmt.query_map(
        params![now.0, list, i64::try_from(limit).unwrap_or(i64::MAX)],
        row,
    )?;
    let mut out = rows.collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|e| (e.next_attempt_at, e.id.0));
    Ok(out)
}

/// The earliest `next_attempt_at` of pending rows of the given channels.
pub fn next_due(conn: &Connection, channels: &[String]) -> Result<Option<UnixMillis>, StoreError> {
    let list = serde_json::to_string(channels).unwrap_or_else(|_| "[]".into());
    let at: Option<i64> = conn.query_row(
        "SELECT min(next_attempt_at) FROM outbox
          WHERE status = 'pending' AND channel IN (SELECT value FROM json_each(?1))",
        [list],
        |r| r.get(0),
    )?;
    Ok(at.map(UnixMillis))
}

/// Record a successful attempt.
pub fn mark_delivered(
    conn: &Connection,
    id: OutboxId,
    now: UnixMillis,
) -> Result<OutboxEntry, StoreError> {
    let entry = conn
        .query_row(
            &format!(
                "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, last_error = NULL,
                        delivered_at = ?2, updated_at = ?2
                  WHERE id = ?1 RETURNING {COLUMNS}"
            ),
            params![id.0, now.0],
            row,
        )
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "outbox entry",
            id: id.0,
        })?;
    if let Some(m) = entry.message_id {
        conn.execute(
            "UPDATE messages SET status = 'delivered', updated_at = ?2 WHERE id = ?1",
            params![m.0, now.0],
        )?;
    }
    Ok(entry)
}

/// Record a failed attempt: retry at `retry_at`, or dead-letter when it is `None`.
pub fn mark_failed(
    conn: &Connection,
    id: OutboxId,
    error: &str,
    retry_at: Option<UnixMillis>,
    now: UnixMillis,
) -> Result<OutboxEntry, StoreError> {
    let (status, next) = match retry_at {
        Some(at) => ("pending", at.0),
        None => ("dead", now.0),
    };
    let entry = conn
        .query_row(
            &format!(
                "UPDATE outbox SET status = ?2, attempts = attempts + 1, last_error = ?3,
                        next_attempt_at = ?4, updated_at = ?5
                  WHERE id = ?1 RETURNING {COLUMNS}"
            ),
            params![id.0, status, error, next, now.0],
            row,
        )
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "outbox entry",
            id: id.0,
        })?;
    if let (None, Some(m)) = (retry_at, entry.message_id) {
        conn.execute(
            "UPDATE messages SET status = 'failed', updated_at = ?2 WHERE id = ?1",
            params![m.0, now.0],
        )?;
    }
    Ok(entry)
}

/// One row by id.
pub fn get(conn: &Connection, id: OutboxId) -> Result<OutboxEntry, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
        [id.0],
        row,
    )
    .optional()?
    .ok_or(StoreError::NotFound {
        what: "outbox entry",
        id: id.0,
    })
}

/// Row counts per status.
pub fn depth_by_status(conn: &Connection) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT status, count(*) FROM outbox GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
