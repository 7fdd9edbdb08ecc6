//! What the cloud telephony channels (Twilio, Vonage) share: the provider's ids for our
//! messages and calls (`provider_items`), the media store for MMS pictures, SMS splitting,
//! form bodies and rate-limited logging of refused webhooks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::domain::{MessageId, OutboxId, UnixMillis};
use crate::store::StoreError;

/// Longest SMS body a provider concatenates into one message (Twilio: 1600 characters).
pub const MAX_SMS_CHARS: usize = 1600;

/// Split a reply into messages of at most `max` characters, at sentence ends where possible,
/// else at spaces, else anywhere.
pub fn split_sms(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        // The byte offset just past the `max`-th character.
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let head = &rest[..limit];
        let cut = head
            .rfind(['.', '!', '?', '\n'])
            .map(|i| i + 1)
            .filter(|&i| i > max / 3)
            .or_else(|| head.rfind(' ').filter(|&i| i > 0))
            .unwrap_or(limit);
        out.push(rest[..cut].trim().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_owned());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Decode an `application/x-www-form-urlencoded` body into its pairs, in order.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `key` among `pairs`.
pub fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Logs a refused webhook once per source per minute, so a flood does not flood the log.
#[derive(Default)]
pub struct RefusalLog {
    last: Mutex<HashMap<IpAddr, Instant>>,
}

impl RefusalLog {
    /// Log `why` for `source` unless it was logged in the last minute.
    pub fn refused(&self, provider: &str, source: IpAddr, path: &str, why: &str) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.len() > 4096 {
            last.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
        }
        let due = last
            .get(&source)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(60));
        if due {
            last.insert(source, now);
            tracing::warn!(%provider, %source, path, reason = why, "webhook refused (logged once a minute per source)");
        }
    }
}

/// A message or call as the provider knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderItem {
    /// `twilio` or `vonage`.
    pub provider: String,
    /// The provider's id (`SM…`, `CA…`, a UUID).
    pub sid: String,
    /// `message` or `call`.
    pub kind: String,
    /// The outbox entry that created it.
    pub outbox_id: Option<OutboxId>,
    /// Our message.
    pub message_id: Option<MessageId>,
    /// The other party.
    pub address: String,
    /// The provider's last reported status.
    pub status: String,
    /// The provider's error code, if any.
    pub error_code: Option<String>,
}

/// Record a message or call the provider accepted (idempotent on provider + sid).
pub fn record_item(conn: &Connection, item: &ProviderItem) -> Result<(), StoreError> {
    let now = UnixMillis::now().0;
    conn.prepare_cached(
        "INSERT INTO provider_items (provider, sid, kind, outbox_id, message_id, address, status, error_code, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT (provider, sid) DO NOTHING",
    )?
    .execute(params![
        item.provider,
        item.sid,
        item.kind,
        item.outbox_id.map(|o| o.0),
        item.message_id.map(|m| m.0),
        item.address,
        item.status,
        item.error_code,
        now
    ])?;
    Ok(())
}

/// Record what a provider accepted for an outbox delivery, linked to the entry's message.
pub async fn record_delivery(
    store: &crate::store::Store,
    provider: &str,
    d: &crate::messaging::outbox::Delivery,
    sid: String,
    kind: &str,
    status: String,
) -> Result<(), crate::messaging::outbox::DeliveryError> {
    let item = ProviderItem {
        provider: provider.into(),
        sid,
        kind: kind.into(),
        outbox_id: Some(d.id),
        message_id: None,
        address: d.recipient.clone(),
        status,
        error_code: None,
    };
    let outbox = d.id;
    store
        .write(move |c| {
            let message = crate::store::outbox::get(c, outbox)?.message_id;
            record_item(
                c,
                &ProviderItem {
                    message_id: message,
                    ..item
                },
            )
        })
        .await
        .map_err(|e| crate::messaging::outbox::DeliveryError::retry(e.to_string()))
}

/// How many parts of an outbox delivery the provider already accepted (a retry, or a
/// restart, sends only the rest).
pub async fn parts_accepted(
    store: &crate::store::Store,
    outbox: OutboxId,
) -> Result<usize, crate::messaging::outbox::DeliveryError> {
    store
        .read(move |c| items_of_outbox(c, outbox))
        .await
        .map(|items| items.len())
        .map_err(|e| crate::messaging::outbox::DeliveryError::retry(e.to_string()))
}

/// Apply a status callback: the item's status, and its message's (`delivered` or `failed`).
/// Returns false when the sid is unknown (a callback for something we did not send).
pub fn update_status(
    conn: &Connection,
    provider: &str,
    sid: &str,
    status: &str,
    error_code: Option<&str>,
) -> Result<bool, StoreError> {
    let message: Option<Option<i64>> = conn
        .prepare_cached("SELECT message_id FROM provider_items WHERE provider = ?1 AND sid = ?2")?
        .query_row(params![provider, sid], |r| r.get(0))
        .optional()?;
    let Some(message) = message else {
        return Ok(false);
    };
    conn.prepare_cached(
        "UPDATE provider_items SET status = ?3, error_code = COALESCE(?4, error_code), updated_at = ?5
          WHERE provider = ?1 AND sid = ?2",
    )?
    .execute(params![provider, sid, status, error_code, UnixMillis::now().0])?;
    let message_status = match status {
        "delivered" | "read" | "completed" => Some("delivered"),
        "failed" | "undelivered" | "undeliverable" | "rejected" | "busy" | "no-answer"
        | "canceled" => Some("failed"),
        _ => None,
    };
    if let (Some(id), Some(s)) = (message, message_status) {
        conn.prepare_cached("UPDATE messages SET status = ?2 WHERE id = ?1")?
            .execute(params![id, s])?;
    }
    Ok(true)
}

/// Whether `channel` already stored a message under `key` (a provider's retried webhook).
pub fn seen(conn: &Connection, channel: &str, key: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM inbox WHERE channel = ?1 AND idempotency_key = ?2")?
        .query_row(params![channel, key], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The display name of the contact `address` belongs to (a personal greeting).
pub fn caller_name(conn: &Connection, address: &str) -> Result<Option<String>, StoreError> {
    let Some((id, _)) = crate::home::contacts::sql::identify(conn, address, None)? else {
        return Ok(None);
    };
    Ok(conn
        .prepare_cached("SELECT display_name FROM contacts WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten()
        .filter(|n| !n.trim().is_empty()))
}

/// Items of an outbox entry (tests and status pages).
pub fn items_of_outbox(
    conn: &Connection,
    outbox: OutboxId,
) -> Result<Vec<ProviderItem>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT provider, sid, kind, outbox_id, message_id, address, status, error_code
               FROM provider_items WHERE outbox_id = ?1 ORDER BY created_at, sid",
        )?
        .query_map([outbox.0], |r| {
            Ok(ProviderItem {
                provider: r.get(0)?,
                sid: r.get(1)?,
                kind: r.get(2)?,
                outbox_id: r.get::<_, Option<i64>>(3)?.map(OutboxId),
                message_id: r.get::<_, Option<i64>>(4)?.map(MessageId),
                address: r.get(5)?,
                status: r.get(6)?,
                error_code: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Where received pictures are kept: `<data_dir>/media/<sha256>.<ext>`, written durably
/// (temp file, fsync, rename, directory fsync) before the message that refers to them.
#[derive(Debug, Clone)]
pub struct MediaStore {
    dir: PathBuf,
}

/// Why a media file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The type is not accepted.
    #[error("media type {0:?} is not accepted")]
    Type(String),
    /// Too big.
    #[error("media of {size} bytes is over the limit of {limit}")]
    TooBig {
        /// Its size (or the part read so far).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Fetching failed.
    #[error("fetching the media failed: {0}")]
    Fetch(String),
    /// Writing failed.
    #[error("cannot write the media file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl MediaStore {
    /// The media store under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("media"),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Store `bytes` of `content_type` durably; returns its reference (`media/<sha256>.<ext>`,
    /// relative to the data directory). Blocking.
    pub fn put(&self, bytes: &[u8], content_type: &str) -> Result<String, MediaError> {
        use std::io::Write;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| MediaError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let name = format!(
            "{}.{}",
            hex::encode(Sha256::digest(bytes)),
            extension(content_type)
        );
        let path = self.dir.join(&name);
        if !path.exists() {
            let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            std::fs::File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.dir))?;
        }
        Ok(format!("media/{name}"))
    }
}

fn extension(content_type: &str) -> &'static str {
    match content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "image/jpeg" | "image/jpg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "video/mp4" => "mp4",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "text/vcard" | "text/x-vcard" => "vcf",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_replies_split_at_sentences_and_never_exceed_the_limit() {
        assert_eq!(split_sms("Short.", 160), vec!["Short."]);
        let text = "One two three. Four five six seven. Eight nine.";
        let parts = split_sms(text, 20);
        assert_eq!(
            parts,
            vec!["One two three.", "Four five six seven.", "Eight nine."]
        );
        let words = "word ".repeat(100);
        let parts = split_sms(&words, 32);
        assert!(parts.iter().all(|p| p.chars().count() <= 32), "{parts:?}");
        assert_eq!(parts.join(" ").split_whitespace().count(), 100);
        let unbroken = "x".repeat(70);
        let parts = split_sms(&unbroken, 32);
        assert_eq!(
            parts.iter().map(String::len).collect::<Vec<_>>(),
            vec![32, 32, 6]
        );
        let accents = "é".repeat(50);
        assert!(split_sms(&accents, 20)
            .iter()
            .all(|p| p.chars().count() <= 20));
    }

    #[test]
    fn media_is_stored_once_by_content() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let m = MediaStore::new(dir.path());
        let a = m.put(b"\x89PNG fake", "image/png")?;
        let b = m.put(b"\x89PNG fake", "image/png; charset=binary")?;
        assert_eq!(a, b);
        assert!(a.starts_with("media/") && a.ends_with(".png"));
        assert_eq!(std::fs::read(dir.path().join(&a))?, b"\x89PNG fake");
        Ok(())
    }
}
