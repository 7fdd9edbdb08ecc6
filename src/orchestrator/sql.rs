//! SQL of the orchestrator: claiming inbox work, history for context, and committing a turn
//! (reply, outbox entry, inbox status, turn record, session) in one transaction.

use rusqlite::{params, Connection, OptionalExtension};

use super::session::{self, SessionRow};
use crate::domain::{ConversationId, MessageId, Trust, UnixMillis};
use crate::messaging::outbox::{queue_text_in, Queued};
use crate::store::StoreError;

/// An inbound message to answer.
#[derive(Debug, Clone)]
pub struct Work {
    /// Inbox row.
    pub inbox_id: i64,
    /// The message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Channel.
    pub channel: String,
    /// Sender address.
    pub address: String,
    /// The contact's stored trust, if the sender is a contact.
    pub contact_trust: Option<Trust>,
    /// Text.
    pub text: String,
    /// Media references in the media store (MMS pictures), or `unfetched:` source URLs.
    pub media: Vec<String>,
}

const WORK_SELECT: &str =
    "SELECT i.id, m.id, m.conversation_id, c.channel, c.address, k.trust, m.body, m.media
       FROM inbox i JOIN messages m ON m.id = i.message_id
       JOIN conversations c ON c.id = m.conversation_id
       LEFT JOIN contacts k ON k.id = c.contact_id";

fn work_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Work> {
    let trust: Option<String> = r.get(5)?;
    Ok(Work {
        inbox_id: r.get(0)?,
        message_id: MessageId(r.get(1)?),
        conversation_id: ConversationId(r.get(2)?),
        channel: r.get(3)?,
        address: r.get(4)?,
        contact_trust: trust.as_deref().and_then(Trust::parse),
        text: r.get(6)?,
        media: serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default(),
    })
}

/// Claim up to `limit` pending inbox rows (oldest first), marking them `processing`.
pub fn claim(conn: &Connection, limit: usize) -> Result<Vec<Work>, StoreError> {
    let work: Vec<Work> = conn
        .prepare_cached(&format!(
            "{WORK_SELECT} WHERE i.status = 'pending' ORDER BY i.id LIMIT ?1"
        ))?
        .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], work_row)?
        .collect::<Result<_, _>>()?;
    for w in &work {
        conn.prepare_cached(
            "UPDATE inbox SET status = 'processing', attempts = attempts + 1 WHERE id = ?1",
        )?
        .execute([w.inbox_id])?;
    }
    Ok(work)
}

/// Claim one specific message (the chat API answers it itself). `None` if it is not pending
/// (already answered: a replayed request).
pub fn claim_message(conn: &Connection, message_id: MessageId) -> Result<Option<Work>, StoreError> {
    let work = conn
        .prepare_cached(&format!(
            "{WORK_SELECT} WHERE i.message_id = ?1 AND i.status = 'pending'"
        ))?
        .query_row([message_id.0], work_row)
        .optional()?;
    if let Some(w) = &work {
        conn.prepare_cached(
            "UPDATE inbox SET status = 'processing', attempts = attempts + 1 WHERE id = ?1",
        )?
        .execute([w.inbox_id])?;
    }
    Ok(work)
}

/// At start: rows a crash left `processing` go back to `pending`.
pub fn recover(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE inbox SET status = 'pending' WHERE status = 'processing'",
        [],
    )?)
}

/// The last `n` messages of a conversation before `before` (oldest first): (inbound?, body).
pub fn history(
    conn: &Connection,
    conversation_id: ConversationId,
    before: Option<MessageId>,
    n: usize,
) -> Result<Vec<(bool, String)>, StoreError> {
    let mut rows: Vec<(bool, String)> = conn
        .prepare_cached(
            "SELECT direction = 'inbound', body FROM messages
              WHERE conversation_id = ?1 AND id < ?2 AND status != 'cancelled'
              ORDER BY id DESC LIMIT ?3",
        )?
        .query_map(
            params![
                conversation_id.0,
                before.map_or(i64::MAX, |m| m.0),
                i64::try_from(n).unwrap_or(i64::MAX)
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<Result<_, _>>()?;
    rows.reverse();
    Ok(rows)
}

/// How the reply leaves the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyRoute {
    /// Through the outbox of the conversation's channel.
    Outbox {
        /// Attempt limit.
        max_attempts: u32,
    },
    /// Returned to the caller directly (the chat API, the CLI): stored as delivered.
    Direct,
    /// Not delivered (cancelled turn): stored as cancelled, if there is any text.
    Discard,
}

/// A finished turn, ready to commit.
#[derive(Debug, Clone)]
pub struct TurnRecord {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Inbox row answered.
    pub inbox_id: Option<i64>,
    /// The message answered.
    pub inbound_message_id: Option<MessageId>,
    /// Channel and address of the conversation.
    pub channel: String,
    /// Address.
    pub address: String,
    /// Reply text (may be empty).
    pub reply: String,
    /// Route.
    pub route: ReplyRoute,
    /// Intent name.
    pub intent: Option<String>,
    /// Tool calls (JSON array).
    pub tool_calls: serde_json::Value,
    /// Outcome.
    pub outcome: String,
    /// `fast_path` or the LLM backend.
    pub engine: String,
    /// Timings in microseconds.
    pub nlu_us: u64,
    /// First chunk.
    pub first_chunk_us: Option<u64>,
    /// Total.
    pub total_us: u64,
    /// The session after the turn.
    pub session: SessionRow,
}

/// What the commit stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Committed {
    /// Reply message.
    pub reply_message_id: Option<MessageId>,
    /// Outbox entry, when routed through it.
    pub queued: Option<Queued>,
}

/// Commit a turn atomically.
pub fn commit_turn(conn: &Connection, t: &TurnRecord) -> Result<Committed, StoreError> {
    let now = UnixMillis::now();
    let is_phone = crate::domain::PhoneNumber::parse(&t.address).is_ok();
    let mut out = Committed::default();
    if !t.reply.is_empty() {
        match t.route {
            ReplyRoute::Outbox { max_attempts } => {
                let q = queue_text_in(
                    conn,
                    &t.channel,
                    &t.address,
                    is_phone,
                    &t.reply,
                    max_attempts,
                )?;
                out.reply_message_id = Some(q.message_id);
                out.queued = Some(q);
            }
            ReplyRoute::Direct | ReplyRoute::Discard => {
                let (id, _) = crate::store::messages::insert_outbound(
                    conn, &t.channel, &t.address, is_phone, &t.reply, now,
                )?;
                let status = if t.route == ReplyRoute::Direct {
                    "delivered"
                } else {
                    "cancelled"
                };
                conn.prepare_cached("UPDATE messages SET status = ?2 WHERE id = ?1")?
                    .execute(params![id.0, status])?;
                out.reply_message_id = Some(id);
            }
        }
    }
    if let Some(inbox_id) = t.inbox_id {
        conn.prepare_cached("UPDATE inbox SET status = 'done', processed_at = ?2 WHERE id = ?1")?
            .execute(params![inbox_id, now.0])?;
    }
    conn.prepare_cached(
        "INSERT INTO turns (conversation_id, inbound_message_id, reply_message_id, intent, tool_calls,
                            outcome, engine, nlu_us, first_chunk_us, total_us, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        t.conversation_id.0,
        t.inbound_message_id.map(|m| m.0),
        out.reply_message_id.map(|m| m.0),
        t.intent,
        t.tool_calls.to_string(),
        t.outcome,
        t.engine,
        i64::try_from(t.nlu_us).unwrap_or(i64::MAX),
        t.first_chunk_us.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
        i64::try_from(t.total_us).unwrap_or(i64::MAX),
        now.0
    ])?;
    session::save(conn, &t.session)?;
    Ok(out)
}

/// A conversation's channel and address.
pub fn conversation(
    conn: &Connection,
    id: ConversationId,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT channel, address FROM conversations WHERE id = ?1")?
        .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}
