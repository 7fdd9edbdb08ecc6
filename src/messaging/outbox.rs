//! The outbox dispatcher: hands due deliveries to the handler their channel registered,
//! records each outcome, and retries failures with exponential backoff and jitter until the
//! entry is delivered or dead-lettered.
//!
//! Entries are claimed in the store before an attempt, so a crash mid-attempt leaves them
//! `delivering`; [`Outbox::run`] puts those back to `pending` at start (at-least-once
//! delivery: a channel that can dedupe should use the outbox id). Entries of a channel with no
//! registered handler wait, untouched, until one registers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::OutboxConfig;
use crate::domain::{ChannelName, ConversationId, MessageId, OutboxId, UnixMillis};
use crate::events::{EventBus, EventKind};
use crate::platform::metrics::{DeliveryLabels, Metrics, StatusLabels};
use crate::store::outbox::{self as sql, NewDelivery, OutboxEntry};
use crate::store::{messages, Store, StoreError};

/// How many due entries one round claims.
const ROUND: usize = 32;

/// One delivery attempt as a channel handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The outbox entry (stable across attempts: usable as a dedupe key).
    pub id: OutboxId,
    /// Channel.
    pub channel: String,
    /// Recipient address.
    pub recipient: String,
    /// Channel-specific payload.
    pub payload: serde_json::Value,
    /// Which attempt this is, from 1.
    pub attempt: u32,
}

/// A failed attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What went wrong.
    pub message: String,
    /// Whether another attempt can succeed (false dead-letters at once).
    pub retryable: bool,
}

impl DeliveryError {
    /// A temporary failure: try again later.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
    /// A permanent failure: give up now.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// What a channel registers to deliver its outbound messages.
pub trait DeliveryHandler: Send + Sync + 'static {
    /// Attempt one delivery. Must finish or fail within the configured attempt timeout.
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// The delay before retry number `attempt` (1 = the first retry): `base · 2^(attempt-1)`,
/// capped at `max`, then "equal jitter" (a uniform pick in the upper half) so that many
/// failing entries do not retry in lockstep.
pub fn backoff(attempt: u32, base: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let exp = attempt.saturating_sub(1).min(32);
    let full = base.saturating_mul(1u32 << exp.min(31)).min(max);
    let half = full / 2;
    let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    half + Duration::from_millis(rng.random_range(0..=jitter_ms))
}

/// Store an outbound text message and its outbox entry in the caller's transaction (so that
/// it commits together with whatever caused it); call [`Outbox::announce_queued`] after the commit.
pub fn queue_text_in(
    c: &rusqlite::Connection,
    channel: &str,
    to: &str,
    to_is_phone: bool,
    text: &str,
    max_attempts: u32,
) -> Result<Queued, StoreError> {
    queue_kind_in(c, channel, to, to_is_phone, text, None, max_attempts)
}

/// [`queue_text_in`] with the kind of text in the payload (`reminder`, `timer`, `alarm`), so
/// that a channel can deliver it in its own way (the speaker rings for a timer).
fn queue_kind_in(
    c: &rusqlite::Connection,
    channel: &str,
    to: &str,
    to_is_phone: bool,
    text: &str,
    kind: Option<&str>,
    max_attempts: u32,
) -> Result<Queued, StoreError> {
    let now = UnixMillis::now();
    let mut payload = serde_json::json!({ "text": text });
    if let Some(k) = kind {
        payload["kind"] = k.into();
    }
    let (message_id, conversation_id) =
        messages::insert_outbound(c, channel, to, to_is_phone, text, now)?;
    let outbox_id = sql::enqueue(
        c,
        &NewDelivery {
            channel: channel.to_owned(),
            recipient: to.to_owned(),
            payload,
            message_id: Some(message_id),
            max_attempts,
            not_before: now,
        },
        now,
    )?;
    Ok(Queued {
        message_id,
        conversation_id,
        outbox_id,
    })
}

/// Where a text produced by the device itself (a reminder, an appointment's alarm) went.
#[derive(Debug, Clone)]
pub enum Delivered {
    /// Queued on a channel that has a transport.
    Queued {
        /// The message and its outbox entry.
        queued: Queued,
        /// The channel.
        channel: String,
    },
    /// Kept in its conversation: the channel has no transport running (the API, a channel not
    /// configured), so the message is read from the conversation or the event stream.
    Stored {
        /// The message.
        message_id: MessageId,
        /// Its conversation.
        conversation_id: ConversationId,
        /// The channel.
        channel: String,
    },
}

/// Deliver `text` (of `kind`: `reminder`, `timer`, `alarm`) to `address` on `channel` inside
/// the caller's transaction: through the outbox when the channel has a transport, else stored
/// in the conversation. Call
/// [`Outbox::announce_delivered`] after the transaction commits.
pub fn deliver_text_in(
    c: &rusqlite::Connection,
    outbox: &Outbox,
    channel: &str,
    address: &str,
    text: &str,
    kind: &str,
    now: UnixMillis,
) -> Result<Delivered, StoreError> {
    let is_phone = crate::domain::PhoneNumber::parse(address).is_ok();
    if outbox.has_channel(channel) {
        let queued = queue_kind_in(
            c,
            channel,
            address,
            is_phone,
            text,
            Some(kind),
            outbox.max_attempts(),
        )?;
        return Ok(Delivered::Queued {
            queued,
            channel: channel.to_owned(),
        });
    }
    let (message_id, conversation_id) =
        messages::insert_outbound(c, channel, address, is_phone, text, now)?;
    c.prepare_cached("UPDATE messages SET status = 'stored' WHERE id = ?1")?
        .execute([message_id.0])?;
    Ok(Delivered::Stored {
        message_id,
        conversation_id,
        channel: channel.to_owned(),
    })
}

/// Enqueues deliveries and runs the dispatcher.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    events: Arc<EventBus>,
    metrics: Arc<Metrics>,
    cfg: OutboxConfig,
    handlers: Arc<BTreeMap<String, Arc<dyn DeliveryHandler>>>,
    wake: Arc<Notify>,
}

/// The result of queueing a text message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// The outbound message.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// The outbox entry delivering it.
    pub outbox_id: OutboxId,
}

/// Why an outbound message was not queued.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// No handler is registered for the channel.
    #[error("no channel {channel:?} is registered for delivery (registered: {registered})")]
    UnknownChannel {
        /// The requested channel.
        channel: String,
        /// What is registered, comma-separated.
        registered: String,
    },
    /// The store failed; nothing was queued.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Outbox {
    /// An outbox delivering through `handlers` (channel name → handler).
    pub fn new(
        store: Store,
        events: Arc<EventBus>,
        metrics: Arc<Metrics>,
        cfg: OutboxConfig,
        handlers: BTreeMap<String, Arc<dyn DeliveryHandler>>,
    ) -> Self {
        Self {
            store,
            events,
            metrics,
            cfg,
            handlers: Arc::new(handlers),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Names of the channels with a registered handler.
    pub fn channels(&self) -> Vec<String> {
        self.handlers.keys().cloned().collect()
    }

    /// Store an outbound text message and queue its delivery, in one transaction.
    pub async fn send_text(
        &self,
        channel: &ChannelName,
        to: &str,
        to_is_phone: bool,
        text: &str,
    ) -> Result<Queued, OutboxError> {
        if !self.handlers.contains_key(channel.as_str()) {
            return Err(OutboxError::UnknownChannel {
                channel: channel.to_string(),
                registered: self.channels().join(", "),
            });
        }
        let (ch, to, text) = (channel.as_str().to_owned(), to.to_owned(), text.to_owned());
        let max_attempts = self.cfg.max_attempts;
        let queued = self
            .store
            .write(move |c| queue_text_in(c, &ch, &to, to_is_phone, &text, max_attempts))
            .await?;
        self.announce_queued(&queued, channel.as_str());
        Ok(queued)
    }

    /// Whether a delivery handler is registered for `channel`.
    pub fn has_channel(&self, channel: &str) -> bool {
        self.handlers.contains_key(channel)
    }

    /// Attempt limit given to new entries.
    pub fn max_attempts(&self) -> u32 {
        self.cfg.max_attempts
    }

    /// After a transaction that called [`queue_text_in`] committed: announce the stored
    /// message and wake the dispatcher.
    pub fn announce_queued(&self, queued: &Queued, channel: &str) {
        self.events.publish(EventKind::MessageStored {
            message_id: queued.message_id,
            conversation_id: queued.conversation_id,
            channel: channel.to_owned(),
            direction: "outbound".into(),
        });
        self.wake.notify_one();
    }

    /// Announce what [`deliver_text_in`] did, once its transaction has committed.
    pub fn announce_delivered(&self, d: &Delivered) {
        match d {
            Delivered::Queued { queued, channel } => self.announce_queued(queued, channel),
            Delivered::Stored {
                message_id,
                conversation_id,
                channel,
            } => {
                self.events.publish(EventKind::MessageStored {
                    message_id: *message_id,
                    conversation_id: *conversation_id,
                    channel: channel.clone(),
                    direction: "outbound".into(),
                });
            }
        }
    }

    /// Queue a raw delivery (payload defined by the channel).
    pub async fn enqueue(&self, mut d: NewDelivery) -> Result<OutboxId, StoreError> {
        if d.max_attempts == 0 {
            d.max_attempts = self.cfg.max_attempts;
        }
        let id = self
            .store
            .write(move |c| sql::enqueue(c, &d, UnixMillis::now()))
            .await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Put entries a crash left `delivering` back to `pending`. Call once before [`run`](Self::run).
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let n = self
            .store
            .write(|c| sql::recover(c, UnixMillis::now()))
            .await?;
        if n > 0 {
            tracing::info!(
                entries = n,
                "outbox: resuming deliveries interrupted by the last stop"
            );
        }
        Ok(n)
    }

    /// Refresh the depth gauges from the store.
    pub async fn refresh_metrics(&self) -> Result<(), StoreError> {
        let (inbox, outbox) = self
            .store
            .read(|c| Ok((messages::inbox_depth(c)?, sql::depth_by_status(c)?)))
            .await?;
        self.metrics.inbox_depth.set(inbox);
        for status in ["pending", "delivering", "delivered", "dead"] {
            let n = outbox
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            self.metrics
                .outbox_depth
                .get_or_create(&StatusLabels {
                    status: status.into(),
                })
                .set(n);
        }
        Ok(())
    }

    /// The dispatcher loop; returns when `shutdown` is cancelled (after the current round).
    pub async fn run(self, shutdown: CancellationToken) {
        let channels = self.channels();
        if channels.is_empty() {
            shutdown.cancelled().await;
            return;
        }
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let ch = channels.clone();
            let claimed = self
                .store
                .write(move |c| sql::claim_due(c, &ch, UnixMillis::now(), ROUND))
                .await;
            let due = match claimed {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox: cannot claim due entries; retrying");
                    self.idle(&shutdown, self.cfg.poll_interval).await;
                    continue;
                }
            };
            if due.is_empty() {
                let ch = channels.clone();
                let next = self.store.read(move |c| sql::next_due(c, &ch)).await;
                let wait = match next {
                    Ok(Some(at)) => {
                        let ms =
                            u64::try_from(at.0.saturating_sub(UnixMillis::now().0)).unwrap_or(0);
                        Duration::from_millis(ms).min(self.cfg.poll_interval)
                    }
                    _ => self.cfg.poll_interval,
                };
                self.idle(&shutdown, wait).await;
                continue;
            }
            let attempts = due.into_iter().map(|e| self.attempt(e));
            futures_util::future::join_all(attempts).await;
        }
    }

    async fn idle(&self, shutdown: &CancellationToken, wait: Duration) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }

    async fn attempt(&self, entry: OutboxEntry) {
        let Some(handler) = self.handlers.get(&entry.channel).cloned() else {
            return;
        };
        let delivery = Delivery {
            id: entry.id,
            channel: entry.channel.clone(),
            recipient: entry.recipient.clone(),
            payload: entry.payload.clone(),
            attempt: entry.attempts + 1,
        };
        let outcome = match tokio::time::timeout(
            self.cfg.attempt_timeout,
            handler.deliver(&delivery),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::retry(format!(
                "attempt timed out after {} ms (outbox.attempt_timeout_ms)",
                self.cfg.attempt_timeout.as_millis()
            ))),
        };
        let id = entry.id;
        let channel = entry.channel.clone();
        let result = match outcome {
            Ok(()) => {
                self.store
                    .write(move |c| sql::mark_delivered(c, id, UnixMillis::now()))
                    .await
            }
            Err(err) => {
                let attempts = entry.attempts + 1;
                let retry_at = (err.retryable && attempts < entry.max_attempts).then(|| {
                    let delay = backoff(
                        attempts,
                        self.cfg.backoff_base,
                        self.cfg.backoff_max,
                        &mut rand::rng(),
                    );
                    UnixMillis::now().plus(delay)
                });
                let message = err.message.clone();
                self.store
                    .write(move |c| sql::mark_failed(c, id, &message, retry_at, UnixMillis::now()))
                    .await
            }
        };
        match result {
            Ok(updated) => self.announce(&updated, &channel),
            Err(e) => {
                tracing::error!(error = %e, outbox_id = %id, "outbox: cannot record a delivery outcome; it will be retried")
            }
        }
    }

    fn announce(&self, e: &OutboxEntry, channel: &str) {
        let outcome = match e.status.as_str() {
            "delivered" => {
                tracing::debug!(outbox_id = %e.id, channel, attempts = e.attempts, "delivered");
                self.events.publish(EventKind::OutboxDelivered {
                    outbox_id: e.id,
                    channel: channel.to_owned(),
                    attempts: e.attempts,
                });
                "delivered"
            }
            "dead" => {
                let error = e.last_error.clone().unwrap_or_default();
                tracing::warn!(outbox_id = %e.id, channel, attempts = e.attempts, %error, "delivery dead-lettered");
                self.events.publish(EventKind::OutboxDeadLettered {
                    outbox_id: e.id,
                    channel: channel.to_owned(),
                    attempts: e.attempts,
                    error,
                });
                "dead"
            }
            _ => {
                let error = e.last_error.clone().unwrap_or_default();
                tracing::info!(outbox_id = %e.id, channel, attempts = e.attempts, %error, "delivery failed; will retry");
                self.events.publish(EventKind::OutboxRetryScheduled {
                    outbox_id: e.id,
                    channel: channel.to_owned(),
                    attempts: e.attempts,
                    next_attempt_at: e.next_attempt_at.to_rfc3339(),
                    error,
                });
                "retry"
            }
        };
        self.metrics
            .deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.to_owned(),
                outcome: outcome.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_doubles_within_the_jitter_band_and_is_capped() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 1..=12u32 {
            let full = (base * 2u32.pow(attempt - 1)).min(max);
            for _ in 0..200 {
                let d = backoff(attempt, base, max, &mut rng);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        // Jitter actually spreads the values.
        let picks: std::collections::BTreeSet<_> =
            (0..50).map(|_| backoff(3, base, max, &mut rng)).collect();
        assert!(picks.len() > 10, "{picks:?}");
        // Huge attempt numbers do not overflow.
        assert!(backoff(u32::MAX, base, max, &mut rng) <= max);
    }
}
