//! SQL for contacts, conversations, messages and the inbox.
//!
//! `accept_inbound` is the inbox's one write: it resolves the contact and conversation,
//! stores the message and the inbox row in the caller's transaction, and answers a replayed
//! idempotency key with the first answer. Nothing here knows about HTTP or channels' wire
//! formats.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::domain::{ConversationId, MessageId, UnixMillis};

/// An inbound message, validated by its channel, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewInbound {
    /// Channel it arrived on.
    pub channel: String,
    /// The sender's address on that channel (E.164 for phone channels).
    pub from: String,
    /// Whether `from` is an E.164 phone number (then a contact is resolved by it).
    pub from_is_phone: bool,
    /// Message text.
    pub text: String,
    /// Media references (paths in the media store), JSON-encoded into the row.
    pub media: Vec<String>,
    /// The sender's idempotency key (unique per channel).
    pub idempotency_key: String,
    /// A digest of the request's content, to detect a key reused for something else.
    pub request_hash: String,
    /// When it was received.
    pub received_at: UnixMillis,
}

/// The answer for an accepted inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The stored message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// `true` when the key had been seen before and nothing new was stored.
    pub replayed: bool,
}

/// The contact an address belongs to (caller identification, see `home::contacts`). Senders
/// that are nobody's are not stored as contacts.
fn contact_for(conn: &Connection, address: &str) -> Result<Option<i64>, StoreError> {
    Ok(crate::home::contacts::sql::identify(conn, address, None)?.map(|(id, _)| id))
}

/// Find or create the conversation with `address` on `channel`, touching its timestamp.
pub fn conversation_for(
    conn: &Connection,
    channel: &str,
    address: &str,
    contact_id: Option<i64>,
    now: UnixMillis,
) -> Result<ConversationId, StoreError> {
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO conversations (channel, address, contact_id, created_at, last_message_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (channel, address) DO UPDATE
               SET last_message_at = max(last_message_at, excluded.last_message_at),
                   contact_id = coalesce(conversations.contact_id, excluded.contact_id)
             RETURNING id",
        )?
        .query_row(params![channel, address, contact_id, now.0], |r| r.get(0))?;
    Ok(ConversationId(id))
}

/// Store an inbound message through the inbox (idempotent on channel + key).
pub fn accept_inbound(conn: &Connection, m: &NewInbound) -> Result<Accepted, StoreError> {
    let existing: Option<(i64, String, i64)> = conn
        .prepare_cached(
            "SELECT i.message_id, i.request_hash, m.conversation_id
               FROM inbox i JOIN messages m ON m.id = i.message_id
              WHERE i.channel = ?1 AND i.idempotency_key = ?2",
        )?
        .query_row(params![m.channel, m.idempotency_key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    if let Some((message_id, hash, conversation_id)) = existing {
        if hash != m.request_hash {
            return Err(StoreError::IdempotencyConflict {
                channel: m.channel.clone(),
                key: m.idempotency_key.clone(),
            });
        }
        return Ok(Accepted {
            message_id: MessageId(message_id),
            conversation_id: ConversationId(conversation_id),
            replayed: true,
        });
    }
    let now = m.received_at;
    let contact_id = contact_for(conn, &m.from)?;
    let conversation_id = conversation_for(conn, &m.channel, &m.from, contact_id, now)?;
    let media = serde_json::to_string(&m.media).unwrap_or_else(|_| "[]".into());
    let message_id: i64 = conn
        .prepare_cached(
            "INSERT INTO messages (conversation_id, channel, direction, body, media, status, created_at, updated_at)
             VALUES (?1, ?2, 'inbound', ?3, ?4, 'received', ?5, ?5) RETURNING id",
        )?
        .query_row(params![conversation_id.0, m.channel, m.text, media, now.0], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO inbox (channel, idempotency_key, request_hash, message_id, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        m.channel,
        m.idempotency_key,
        m.request_hash,
        message_id,
        now.0
    ])?;
    Ok(Accepted {
        message_id: MessageId(message_id),
        conversation_id,
        replayed: false,
    })
}

/// Store an outbound message (status `queued`) in the conversation with `address`.
pub fn insert_outbound(
    conn: &Connection,
    channel: &str,
    address: &str,
    address_is_phone: bool,
    body: &str,
    now: UnixMillis,
) -> Result<(MessageId, ConversationId), StoreError> {
    let _ = address_is_phone;
    let contact_id = contact_for(conn, address)?;
    let conversation_id = conversation_for(conn, channel, address, contact_id, now)?;
    let id: i64 = conn.query_row(
        "INSERT INTO messages (conversation_id, channel, direction, body, status, created_at, updated_at)
         VALUES (?1, ?2, 'outbound', ?3, 'queued', ?4, ?4) RETURNING id",
        params![conversation_id.0, channel, body, now.0],
        |r| r.get(0),
    )?;
    Ok((MessageId(id), conversation_id))
}

/// A conversation as listed by the API.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    /// Id.
    pub id: ConversationId,
    /// Channel.
    pub channel: String,
    /// The other party's address on the channel.
    pub address: String,
    /// The resolved contact, if any.
    pub contact_id: Option<i64>,
    /// The contact's display name, if known.
    pub contact_name: Option<String>,
    /// Messages in it.
    pub message_count: i64,
    /// Created.
    pub created_at: UnixMillis,
    /// Last message.
    pub last_message_at: UnixMillis,
}

/// Position after which a conversation page continues: (last_message_at, id), newest first.
pub type ConversationCursor = (i64, i64);

/// Conversations, most recent first, `limit` of them after `cursor`.
pub fn list_conversations(
    conn: &Connection,
    cursor: Option<ConversationCursor>,
    limit: usize,
) -> Result<Vec<ConversationRow>, StoreError> {
    let (ts, id) = cursor.unwrap_or((i64::MAX, i64::MAX));
    let mut stmt = conn.prepare_cached(
        "SELECT c.id, c.channel, c.address, c.contact_id, k.display_name,
                (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id),
                c.created_at, c.last_message_at
           FROM conversations c LEFT JOIN contacts k ON k.id = c.contact_id
          WHERE (c.last_message_at, c.id) < (?1, ?2)
          ORDER BY c.last_message_at DESC, c.id DESC
          LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![ts, id, i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            Ok(ConversationRow {
                id: ConversationId(r.get(0)?),
                channel: r.get(1)?,
                address: r.get(2)?,
                contact_id: r.get(3)?,
                contact_name: r.get(4)?,
                message_count: r.get(5)?,
                created_at: UnixMillis(r.get(6)?),
                last_message_at: UnixMillis(r.get(7)?),
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A message as listed by the API.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// Id.
    pub id: MessageId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Channel.
    pub channel: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Text.
    pub body: String,
    /// Media references.
    pub media: Vec<String>,
    /// Delivery or processing state.
    pub status: String,
    /// Created.
    pub created_at: UnixMillis,
}

/// Messages of one conversation, oldest first, `limit` of them after message `after`.
/// Fails with `NotFound` if the conversation does not exist.
pub fn list_messages(
    conn: &Connection,
    conversation: ConversationId,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<MessageRow>, StoreError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM conversations WHERE id = ?1)",
        [conversation.0],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(StoreError::NotFound {
            what: "conversation",
            id: conversation.0,
        });
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id, conversation_id, channel, direction, body, media, status, created_at
           FROM messages WHERE conversation_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![
            conversation.0,
            after.unwrap_or(0),
            i64::try_from(limit).unwrap_or(i64::MAX)
        ],
        |r| {
            let media: String = r.get(5)?;
            Ok(MessageRow {
                id: MessageId(r.get(0)?),
                conversation_id: ConversationId(r.get(1)?),
                channel: r.get(2)?,
                direction: r.get(3)?,
                body: r.get(4)?,
                media: serde_json::from_str(&media).unwrap_or_default(),
                status: r.get(6)?,
                created_at: UnixMillis(r.get(7)?),
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Inbound messages not yet handled by the orchestrator.
pub fn inbox_depth(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM inbox WHERE status IN ('pending', 'processing')",
        [],
        |r| r.get(0),
    )?)
}
