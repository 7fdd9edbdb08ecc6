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

/// The history the language model sees before message `before` (oldest first): (inbound?,
/// body). At most `n` messages, and the window moves in steps of `n / 2`: it starts at a
/// multiple of the step, so from one turn to the next the prompt only grows at its end and
/// the engine's cached state for the conversation stays valid. Dropping the oldest message on
/// every turn would change the prompt right after the system prompt, and each turn would
/// recompute the whole history. Between steps it holds `n - n / 2 + 1` to `n` messages.
pub fn history(
    conn: &Connection,
    conversation_id: ConversationId,
    before: Option<MessageId>,
    n: usize,
) -> Result<Vec<(bool, String)>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let before = before.map_or(i64::MAX, |m| m.0);
    let total: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM messages
              WHERE conversation_id = ?1 AND id < ?2 AND status != 'cancelled'",
        )?
        .query_row(params![conversation_id.0, before], |r| r.get(0))?;
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let step = (n / 2).max(1);
    let skip = if total <= n {
        0
    } else {
        (total - n + step - 1) / step * step
    };
    let rows = conn
        .prepare_cached(
            "SELECT direction = 'inbound', body FROM messages
              WHERE conversation_id = ?1 AND id < ?2 AND status != 'cancelled'
              ORDER BY id LIMIT ?3 OFFSET ?4",
        )?
        .query_map(params![conversation_id.0, before, n, skip], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation_with(messages: usize) -> (Connection, ConversationId) {
        let mut c = Connection::open_in_memory().expect("db");
        crate::store::migrations::migrate(&mut c).expect("migrate");
        c.execute(
            "INSERT INTO conversations (channel, address, created_at, last_message_at)
             VALUES ('api', 'x', 0, 0)",
            [],
        )
        .expect("conversation");
        let cid = ConversationId(c.last_insert_rowid());
        for i in 0..messages {
            let dir = if i % 2 == 0 { "inbound" } else { "outbound" };
            c.execute(
                "INSERT INTO messages (conversation_id, channel, direction, body, status,
                                       created_at, updated_at)
                 VALUES (?1, 'api', ?2, ?3, 'delivered', 0, 0)",
                params![cid.0, dir, format!("m{i}")],
            )
            .expect("message");
        }
        (c, cid)
    }

    fn bodies(h: &[(bool, String)]) -> Vec<&str> {
        h.iter().map(|(_, b)| b.as_str()).collect()
    }

    #[test]
    fn the_history_window_moves_in_half_steps_so_prompts_keep_their_prefix() {
        let (c, cid) = conversation_with(41);
        let ids: Vec<i64> = c
            .prepare("SELECT id FROM messages ORDER BY id")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("ids");
        let window = |k: usize| history(&c, cid, Some(MessageId(ids[k])), 12).expect("history");
        // Short conversations: everything before the message.
        assert_eq!(bodies(&window(5)), ["m0", "m1", "m2", "m3", "m4"]);
        assert_eq!(window(12).len(), 12);
        // One past the limit: the window jumps by 6 and then grows again.
        assert_eq!(bodies(&window(13))[0], "m6");
        assert_eq!(window(13).len(), 7);
        let mut jumps = 0;
        for k in 13..40 {
            let (a, b) = (window(k), window(k + 1));
            assert!((7..=12).contains(&b.len()), "{k}: {}", b.len());
            assert_eq!(
                b.last().map(|m| m.1.as_str()),
                Some(format!("m{k}").as_str())
            );
            if b.starts_with(&a) {
                continue;
            }
            // A step: the next window starts 6 messages later.
            jumps += 1;
            assert_eq!(&a[6..], &b[..a.len() - 6], "{k}");
        }
        assert_eq!(jumps, 4, "one step per 6 messages over 27 turns");
        // Cancelled messages are neither shown nor counted, and 0 means no history.
        c.execute(
            "UPDATE messages SET status = 'cancelled' WHERE body = 'm1'",
            [],
        )
        .expect("cancel");
        assert_eq!(bodies(&window(4)), ["m0", "m2", "m3"]);
        assert!(history(&c, cid, None, 0).expect("none").is_empty());
        assert_eq!(history(&c, cid, None, 1).expect("one").len(), 1);
    }
}
