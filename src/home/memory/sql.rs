//! The `memories` table: facts with their embeddings (little-endian `f32` BLOBs). Called only
//! inside `Store::write` / `Store::read` closures.

use rusqlite::{params, Connection, OptionalExtension};

use super::Fact;
use crate::domain::{ConversationId, MessageId, UnixMillis};
use crate::store::StoreError;

const COLS: &str =
    "id, text, contact_id, conversation_id, source_message_id, tags, created_at, updated_at";

/// A row to insert.
#[derive(Debug, Clone)]
pub struct NewRow {
    /// The fact.
    pub text: String,
    /// Contact; when `None` and a conversation is given, the conversation's contact.
    pub contact_id: Option<i64>,
    /// Conversation it was said in.
    pub conversation_id: Option<ConversationId>,
    /// The message that said it (idempotency key).
    pub source_message_id: Option<MessageId>,
    /// Tags.
    pub tags: Vec<String>,
    /// Embedding model name.
    pub model: String,
    /// Unit embedding.
    pub embedding: Vec<f32>,
}

/// Encode an embedding as bytes.
pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decode an embedding (`None` when the length is not a multiple of 4).
pub fn from_blob(b: &[u8]) -> Option<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn row_to_fact(r: &rusqlite::Row<'_>) -> rusqlite::Result<Fact> {
    let tags: String = r.get(5)?;
    Ok(Fact {
        id: r.get(0)?,
        text: r.get(1)?,
        contact_id: r.get(2)?,
        conversation_id: r.get::<_, Option<i64>>(3)?.map(ConversationId),
        source_message_id: r.get::<_, Option<i64>>(4)?.map(MessageId),
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        created_at: UnixMillis(r.get(6)?),
        updated_at: UnixMillis(r.get(7)?),
    })
}

/// The fact stored for `source_message_id`, if any.
pub fn by_source(conn: &Connection, source: MessageId) -> Result<Option<Fact>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM memories WHERE source_message_id = ?1"),
            [source.0],
            row_to_fact,
        )
        .optional()?)
}

/// One fact.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Fact>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLS} FROM memories WHERE id = ?1"),
            [id],
            row_to_fact,
        )
        .optional()?)
}

/// Insert a fact; the contact defaults to the conversation's.
pub fn insert(conn: &Connection, r: &NewRow) -> Result<Fact, StoreError> {
    let now = UnixMillis::now().0;
    let tags = serde_json::to_string(&r.tags).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT INTO memories (text, contact_id, conversation_id, source_message_id, tags, model,
                               embedding, created_at, updated_at)
         VALUES (?1, COALESCE(?2, (SELECT contact_id FROM conversations WHERE id = ?3)),
                 ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        params![
            r.text,
            r.contact_id,
            r.conversation_id.map(|c| c.0),
            r.source_message_id.map(|m| m.0),
            tags,
            r.model,
            to_blob(&r.embedding),
            now
        ],
    )?;
    let id = conn.last_insert_rowid();
    get(conn, id)?.ok_or(StoreError::NotFound { what: "memory", id })
}

/// Replace a fact's text and embedding (a near-duplicate said again); the newer wording wins.
pub fn update(
    conn: &Connection,
    id: i64,
    text: &str,
    tags: Option<&[String]>,
    model: &str,
    embedding: &[f32],
) -> Result<Fact, StoreError> {
    let tags = tags.map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into()));
    let n = conn.execute(
        "UPDATE memories SET text = ?2, tags = COALESCE(?3, tags), model = ?4, embedding = ?5,
                             updated_at = ?6
          WHERE id = ?1",
        params![
            id,
            text,
            tags,
            model,
            to_blob(embedding),
            UnixMillis::now().0
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound { what: "memory", id });
    }
    get(conn, id)?.ok_or(StoreError::NotFound { what: "memory", id })
}

/// Delete facts by id; returns the ids that existed.
pub fn delete(conn: &Connection, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let mut gone = Vec::new();
    let mut stmt = conn.prepare_cached("DELETE FROM memories WHERE id = ?1")?;
    for id in ids {
        if stmt.execute([id])? > 0 {
            gone.push(*id);
        }
    }
    Ok(gone)
}

/// Delete every fact of a contact; returns their ids.
pub fn delete_contact(conn: &Connection, contact_id: i64) -> Result<Vec<i64>, StoreError> {
    Ok(conn
        .prepare("DELETE FROM memories WHERE contact_id = ?1 RETURNING id")?
        .query_map([contact_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Whether contact `id` exists.
pub fn contact_exists(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM contacts WHERE id = ?1")?
        .exists([id])?)
}

/// Erase the facts of contacts that no longer exist (a contact deleted while the daemon
/// stopped before erasing them); returns their ids.
pub fn delete_orphans(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    Ok(conn
        .prepare(
            "DELETE FROM memories WHERE contact_id IS NOT NULL \
             AND contact_id NOT IN (SELECT id FROM contacts) RETURNING id",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// A page of facts, newest first: ids below `before`, optionally of one contact.
pub fn list(
    conn: &Connection,
    contact_id: Option<i64>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<Fact>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM memories
          WHERE (?1 IS NULL OR contact_id = ?1) AND (?2 IS NULL OR id < ?2)
          ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt
        .query_map(
            params![contact_id, before, i64::try_from(limit).unwrap_or(i64::MAX)],
            row_to_fact,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Facts by ids (any order; missing ids are skipped).
pub fn get_many(conn: &Connection, ids: &[i64]) -> Result<Vec<Fact>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(f) = get(conn, *id)? {
            out.push(f);
        }
    }
    Ok(out)
}

/// Every embedding: (id, contact, model, vector bytes).
pub type EmbeddingRow = (i64, Option<i64>, String, Vec<u8>);

/// Every stored embedding, for building the index at start.
pub fn all_embeddings(conn: &Connection) -> Result<Vec<EmbeddingRow>, StoreError> {
    let rows = conn
        .prepare("SELECT id, contact_id, model, embedding FROM memories")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Replace only the embedding (re-embedding with another model).
pub fn set_embedding(
    conn: &Connection,
    id: i64,
    model: &str,
    embedding: &[f32],
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE memories SET model = ?2, embedding = ?3 WHERE id = ?1",
        params![id, model, to_blob(embedding)],
    )?;
    Ok(())
}

/// All texts of rows whose embedding was made by another model.
pub fn stale(conn: &Connection, model: &str) -> Result<Vec<(i64, String)>, StoreError> {
    let rows = conn
        .prepare("SELECT id, text FROM memories WHERE model <> ?1")?
        .query_map([model], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The contact of a conversation, if it has one.
pub fn conversation_contact(
    conn: &Connection,
    conv: ConversationId,
) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT contact_id FROM conversations WHERE id = ?1",
            [conv.0],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten())
}
