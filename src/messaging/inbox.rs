//! The inbox: validate an inbound text message, commit it (idempotently) and announce it.
//!
//! `accept` returns only after the message and its inbox row are committed with
//! `synchronous=FULL`, so a channel may acknowledge its source as soon as it returns. The same
//! idempotency key on the same channel is stored once and answered the same way; reused with
//! different content it is refused.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::domain::{ChannelName, PhoneNumber, UnixMillis};
use crate::events::{EventBus, EventKind};
use crate::store::messages::{self, Accepted, NewInbound};
use crate::store::{Store, StoreError};

/// Longest accepted idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 200;

/// An inbound text message as a channel hands it over.
#[derive(Debug, Clone)]
pub struct InboundText {
    /// The channel it came from.
    pub channel: ChannelName,
    /// The sender.
    pub from: PhoneNumber,
    /// The text.
    pub text: String,
    /// Media references already in the media store.
    pub media: Vec<String>,
    /// The source's idempotency key; `None` stores every submission anew.
    pub idempotency_key: Option<String>,
}

/// Why an inbound message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// A field is invalid; nothing was stored.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The store failed (see [`StoreError::is_retryable`]); nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The inbox.
#[derive(Clone)]
pub struct Inbox {
    store: Store,
    events: Arc<EventBus>,
    max_text_chars: usize,
}

impl Inbox {
    /// An inbox over `store` announcing on `events`.
    pub fn new(store: Store, events: Arc<EventBus>, max_text_chars: usize) -> Self {
        Self {
            store,
            events,
            max_text_chars,
        }
    }

    /// Validate, store durably, announce. Safe to call again with the same key.
    pub async fn accept(&self, m: InboundText) -> Result<Accepted, InboxError> {
        let text = m.text.trim().to_owned();
        if text.is_empty() && m.media.is_empty() {
            return Err(InboxError::Invalid {
                field: "text",
                message: "must not be empty".into(),
            });
        }
        let chars = text.chars().count();
        if chars > self.max_text_chars {
            return Err(InboxError::Invalid {
                field: "text",
                message: format!(
                    "is {chars} characters long; the limit is {} (inbox.max_text_chars)",
                    self.max_text_chars
                ),
            });
        }
        let key = match m.idempotency_key {
            Some(k) => {
                if k.is_empty() || k.len() > MAX_KEY_BYTES || k.chars().any(char::is_control) {
                    return Err(InboxError::Invalid {
                        field: "idempotency_key",
                        message: format!("must be 1-{MAX_KEY_BYTES} bytes of printable text"),
                    });
                }
                k
            }
            None => format!("generated:{}", uuid::Uuid::new_v4()),
        };
        let mut hash = Sha256::new();
        for part in [m.from.as_str(), &text] {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        for media in &m.media {
            hash.update(media.as_bytes());
            hash.update([0u8]);
        }
        let row = NewInbound {
            channel: m.channel.as_str().to_owned(),
            from: m.from.as_str().to_owned(),
            from_is_phone: true,
            text,
            media: m.media,
            idempotency_key: key,
            request_hash: hex::encode(hash.finalize()),
            received_at: UnixMillis::now(),
        };
        let channel = row.channel.clone();
        let accepted = self
            .store
            .write(move |c| messages::accept_inbound(c, &row))
            .await?;
        if !accepted.replayed {
            self.events.publish(EventKind::MessageStored {
                message_id: accepted.message_id,
                conversation_id: accepted.conversation_id,
                channel,
                direction: "inbound".into(),
            });
        }
        Ok(accepted)
    }
}
