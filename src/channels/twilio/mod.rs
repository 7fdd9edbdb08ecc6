//! Twilio: SMS/MMS and phone calls.
//!
//! - Webhooks (`http.rs`): `POST /twilio/sms`, `/twilio/voice`, `/twilio/status` and the
//!   Media Streams WebSocket `/twilio/media` (`stream.rs`). Every one is checked against
//!   `X-Twilio-Signature` (`signature.rs`) over `public_url` + path before anything is read
//!   or stored; a refusal is 403 and logged once a minute per source.
//! - An inbound SMS is committed to the inbox (idempotent on `MessageSid`) before the webhook
//!   answers. The webhook then waits up to `reply_budget` for the reply: the outbox hands it
//!   to the waiting request ([`Twilio`] is the `twilio` channel's delivery handler), which
//!   answers with TwiML `<Message>`s; a later reply goes out through the REST API with the
//!   outbox's retries.
//! - Calls (`twilio-call`): TwiML that greets and connects a Media Stream to the shared
//!   [`crate::channels::call`] conversation, or a `<Gather input="speech">` loop.

pub mod http;
pub mod rest;
pub mod signature;
pub mod stream;
pub mod twiml;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use crate::channels::telephony::{self, RefusalLog};
use crate::config::TwilioConfig;
use crate::messaging::outbox::{Delivery, DeliveryError, DeliveryHandler};
use crate::store::Store;
use rest::Rest;

/// The SMS channel's name.
pub const SMS_CHANNEL: &str = "twilio";
/// The calls channel's name.
pub const CALL_CHANNEL: &str = "twilio-call";

/// A reply offered to a waiting webhook; it answers `ack` when it will send it.
pub(crate) struct Handover {
    text: String,
    ack: oneshot::Sender<()>,
}

/// The Twilio channel: configuration, REST client, and the webhooks waiting for a reply.
#[derive(Clone)]
pub struct Twilio {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: TwilioConfig,
    rest: Rest,
    store: Store,
    /// Webhook requests waiting for the reply to their sender, by sender.
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<Handover>>>>,
    refusals: RefusalLog,
}

impl Twilio {
    /// The channel for `cfg`.
    pub fn new(cfg: TwilioConfig, store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                rest: Rest::new(&cfg),
                cfg,
                store,
                waiters: Mutex::new(HashMap::new()),
                refusals: RefusalLog::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TwilioConfig {
        &self.inner.cfg
    }

    /// Wait for the next reply to `to` (a webhook holding its response open).
    fn wait_for_reply(&self, to: &str) -> oneshot::Receiver<Handover> {
        let (tx, rx) = oneshot::channel();
        let mut w = self
            .inner
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = w.entry(to.to_owned()).or_default();
        list.retain(|s| !s.is_closed());
        list.push(tx);
        rx
    }

    /// Hand `text` to a webhook waiting for a reply to `to`; true only once that webhook has
    /// taken it (it will answer with it). A webhook that gave up, or turned out to be a
    /// retried one, does not take it, and the caller sends it through the REST API.
    async fn hand_to_waiter(&self, to: &str, text: &str) -> bool {
        loop {
            let tx = {
                let mut w = self
                    .inner
                    .waiters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let Some(list) = w.get_mut(to) else {
                    return false;
                };
                let tx = (!list.is_empty()).then(|| list.remove(0));
                if list.is_empty() {
                    w.remove(to);
                }
                match tx {
                    Some(tx) => tx,
                    None => return false,
                }
            };
            let (ack, taken) = oneshot::channel();
            if tx
                .send(Handover {
                    text: text.to_owned(),
                    ack,
                })
                .is_err()
            {
                continue;
            }
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), taken).await {
                return true;
            }
        }
    }

    fn status_callback(&self) -> String {
        format!("{}/twilio/status", self.inner.cfg.public_url)
    }

    fn sender_number(&self) -> Result<String, DeliveryError> {
        self.inner
            .cfg
            .phone_number
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .ok_or_else(|| {
                DeliveryError::permanent("twilio.phone_number is not set: no number to send from")
            })
    }

    async fn send_sms(&self, d: &Delivery, text: &str) -> Result<(), DeliveryError> {
        // Replies of a conversation may go back in the webhook's answer; reminders and alarms
        // (which carry a kind) always go out on their own.
        if d.attempt == 1
            && d.payload.get("kind").is_none()
            && self.hand_to_waiter(&d.recipient, text).await
        {
            tracing::debug!(
                outbox = d.id.0,
                "twilio: reply answered in the webhook's TwiML"
            );
            return Ok(());
        }
        let from = self.sender_number()?;
        let parts = telephony::split_sms(text, telephony::MAX_SMS_CHARS);
        let done = telephony::parts_accepted(&self.inner.store, d.id).await?;
        for part in parts.iter().skip(done) {
            let rest = self.inner.rest.clone();
            let (f, to, body, cb) = (
                from.clone(),
                d.recipient.clone(),
                part.clone(),
                self.status_callback(),
            );
            let sent =
                tokio::task::spawn_blocking(move || rest.send_message(&f, &to, &body, Some(&cb)))
                    .await
                    .map_err(|e| DeliveryError::retry(e.to_string()))?;
            let created = sent.map_err(|e| {
                if e.retryable() {
                    DeliveryError::retry(e.to_string())
                } else {
                    DeliveryError::permanent(e.to_string())
                }
            })?;
            let status = if created.status.is_empty() {
                "queued".to_owned()
            } else {
                created.status
            };
            telephony::record_delivery(
                &self.inner.store,
                "twilio",
                d,
                created.sid,
                "message",
                status,
            )
            .await?;
        }
        Ok(())
    }

    async fn place_call(&self, d: &Delivery, text: &str) -> Result<(), DeliveryError> {
        let from = self.sender_number()?;
        let action = format!(
            "{}/twilio/voice?outbox={}",
            self.inner.cfg.public_url, d.id.0
        );
        let doc = twiml::reminder_call(text, &action);
        let rest = self.inner.rest.clone();
        let to = d.recipient.clone();
        let cb = self.status_callback();
        let created =
            tokio::task::spawn_blocking(move || rest.create_call(&from, &to, &doc, Some(&cb)))
                .await
                .map_err(|e| DeliveryError::retry(e.to_string()))?
                .map_err(|e| {
                    if e.retryable() {
                        DeliveryError::retry(e.to_string())
                    } else {
                        DeliveryError::permanent(e.to_string())
                    }
                })?;
        telephony::record_delivery(
            &self.inner.store,
            "twilio",
            d,
            created.sid,
            "call",
            created.status,
        )
        .await
    }
}

/// Delivers the `twilio` channel (SMS) and, registered again as [`CALL_CHANNEL`], places
/// reminder calls.
impl DeliveryHandler for Twilio {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let Some(text) = d.payload.get("text").and_then(|t| t.as_str()) else {
                return Err(DeliveryError::permanent("twilio delivery without a text"));
            };
            if d.channel == CALL_CHANNEL {
                self.place_call(d, text).await
            } else {
                self.send_sms(d, text).await
            }
        })
    }
}
