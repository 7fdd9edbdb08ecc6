//! Vonage: SMS (Messages API) and phone calls (Voice API).
//!
//! - Webhooks: `GET|POST /vonage/answer` returns an NCCO (greet, then `connect` the call's
//!   audio to our WebSocket `/vonage/media` as `audio/l16;rate=16000`, or an `input` speech
//!   loop); `POST /vonage/event` takes call events, `input` results and message statuses;
//!   `POST /vonage/sms` takes inbound messages. Every webhook carries a JWT (HS256 with the
//!   signature secret, `payload_hash` over the body: `jwt.rs`) and is refused (401) without a
//!   valid one, before anything is stored.
//! - The WebSocket carries binary 16-bit little-endian PCM frames of 20 ms both ways,
//!   `websocket:connected` and `websocket:dtmf` text messages in, `{"action":"clear"}` out for
//!   barge-in. Its URL holds a per-call token (HMAC of the call with the signature secret)
//!   that the upgrade must present. The conversation is [`crate::channels::call`].
//! - Replies and reminders go out through the Messages API (`POST /v1/messages`) via the
//!   outbox.

pub mod http;
pub mod jwt;

use std::sync::Arc;

use base64::Engine;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::Deserialize;

use crate::channels::telephony::{self, RefusalLog};
use crate::config::VonageConfig;
use crate::messaging::outbox::{Delivery, DeliveryError, DeliveryHandler};
use crate::store::Store;

/// The SMS channel's name.
pub const SMS_CHANNEL: &str = "vonage";
/// The calls channel's name.
pub const CALL_CHANNEL: &str = "vonage-call";

/// The Vonage channel.
#[derive(Clone)]
pub struct Vonage {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: VonageConfig,
    agent: ureq::Agent,
    store: Store,
    refusals: RefusalLog,
    /// JWT ids seen within the accepted age, with their `iat` (a replayed webhook is refused).
    seen_jti: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// Longest SMS text the Messages API takes.
pub const MAX_SMS_CHARS: usize = 1000;

#[derive(Deserialize)]
struct Accepted {
    message_uuid: String,
}

impl Vonage {
    /// The channel for `cfg`.
    pub fn new(cfg: VonageConfig, store: Store) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.request_timeout))
            .user_agent(concat!("local-assistant/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            inner: Arc::new(Inner {
                cfg,
                agent,
                store,
                refusals: RefusalLog::default(),
                seen_jti: std::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VonageConfig {
        &self.inner.cfg
    }

    /// Remember a webhook JWT's id; false when it was seen before (a replay). Ids older than
    /// the accepted age are forgotten (such a token is refused as expired anyway).
    pub(crate) fn first_use(&self, jti: &str, iat: i64, now: i64) -> bool {
        let max_age = i64::try_from(self.inner.cfg.jwt_max_age.as_secs()).unwrap_or(i64::MAX);
        let mut seen = self
            .inner
            .seen_jti
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() > 10_000 {
            seen.retain(|_, t| now.saturating_sub(*t) <= max_age + 60);
        }
        seen.insert(jti.to_owned(), iat).is_none()
    }

    /// The token a call's WebSocket URL carries: HMAC-SHA256 of the call id and the caller
    /// with the signature secret, hex.
    pub fn stream_token(&self, call: &str, caller: &str) -> String {
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(
            self.inner.cfg.signature_secret.expose().as_bytes(),
        ) else {
            return String::new();
        };
        mac.update(call.as_bytes());
        mac.update(b"\n");
        mac.update(caller.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Send one SMS through the Messages API (blocking). Returns the message UUID.
    fn send_blocking(&self, to: &str, text: &str) -> Result<String, DeliveryError> {
        let cfg = &self.inner.cfg;
        let from = cfg
            .phone_number
            .as_ref()
            .map(|p| p.as_str().trim_start_matches('+').to_owned())
            .ok_or_else(|| {
                DeliveryError::permanent("vonage.phone_number is not set: no number to send from")
            })?;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                cfg.api_key,
                cfg.api_secret.expose()
            ))
        );
        let body = serde_json::json!({
            "message_type": "text",
            "channel": "sms",
            "to": to.trim_start_matches('+'),
            "from": from,
            "text": text,
        });
        let url = format!("{}/v1/messages", cfg.api_base);
        let a: Accepted = self.post_json("sending a message", &url, &auth, &body)?;
        Ok(a.message_uuid)
    }
}

impl Vonage {
    /// POST `body` as JSON with `auth`; the 2xx answer as `T`. No answer, 429 and 5xx are
    /// worth retrying; other refusals are permanent. Blocking.
    fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        auth: &str,
        body: &serde_json::Value,
    ) -> Result<T, DeliveryError> {
        let mut resp = self
            .inner
            .agent
            .post(url)
            .header("Authorization", auth)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map_err(|e| DeliveryError::retry(format!("{what}: no answer from Vonage: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        if (200..300).contains(&status) {
            return serde_json::from_str(&text)
                .map_err(|e| DeliveryError::retry(format!("{what}: unreadable answer ({e})")));
        }
        let msg = format!(
            "{what}: Vonage answered {status}: {}",
            text.chars().take(300).collect::<String>()
        );
        if status == 429 || status >= 500 {
            Err(DeliveryError::retry(msg))
        } else {
            Err(DeliveryError::permanent(msg))
        }
    }

    /// A Voice API JWT: RS256 with the application's private key (PKCS#8 PEM).
    fn app_jwt(&self, app: &str, key_path: &std::path::Path) -> Result<String, DeliveryError> {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let pem = std::fs::read_to_string(key_path).map_err(|e| {
            DeliveryError::permanent(format!(
                "cannot read vonage.private_key_path {}: {e}",
                key_path.display()
            ))
        })?;
        let b64: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let bad = |why: String| {
            DeliveryError::permanent(format!(
                "vonage.private_key_path {} is not a PKCS#8 RSA private key (PEM): {why}",
                key_path.display()
            ))
        };
        let der = STANDARD.decode(b64).map_err(|e| bad(e.to_string()))?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| bad(e.to_string()))?;
        let now = jiff::Timestamp::now().as_second();
        let claims = serde_json::json!({
            "application_id": app,
            "iat": now,
            "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let msg = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            msg.as_bytes(),
            &mut sig,
        )
        .map_err(|_| DeliveryError::permanent("RS256 signing failed"))?;
        Ok(format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Place a call that reads `text` and takes "snooze" or "done" (Voice API, blocking).
    /// Returns the call's UUID.
    fn call_blocking(
        &self,
        app: &str,
        key_path: &std::path::Path,
        to: &str,
        text: &str,
        outbox: i64,
    ) -> Result<String, DeliveryError> {
        let cfg = &self.inner.cfg;
        let from = cfg
            .phone_number
            .as_ref()
            .map(|p| p.as_str().trim_start_matches('+').to_owned())
            .ok_or_else(|| {
                DeliveryError::permanent("vonage.phone_number is not set: no number to call from")
            })?;
        let jwt = self.app_jwt(app, key_path)?;
        let event = format!("{}/vonage/event", cfg.public_url);
        let body = serde_json::json!({
            "to": [{"type": "phone", "number": to.trim_start_matches('+')}],
            "from": {"type": "phone", "number": from},
            "event_url": [event],
            "ncco": [
                {"action": "talk", "text": text},
                {"action": "talk", "text": "Say snooze, or press 1, to hear it again in ten minutes. Say done, or press 2, if it is done.", "bargeIn": true},
                {"action": "input", "type": ["speech", "dtmf"],
                 "eventUrl": [format!("{event}?outbox={outbox}")], "eventMethod": "POST",
                 "speech": {"language": "en-US", "endOnSilence": 1, "context": ["snooze", "done"]},
                 "dtmf": {"maxDigits": 1, "timeOut": 5}}
            ],
        });
        #[derive(Deserialize)]
        struct Created {
            uuid: String,
        }
        let c: Created = self.post_json(
            "placing a call",
            &format!("{}/v1/calls", cfg.api_base),
            &format!("Bearer {jwt}"),
            &body,
        )?;
        Ok(c.uuid)
    }

    async fn record(
        &self,
        d: &Delivery,
        sid: String,
        kind: &str,
        status: &str,
    ) -> Result<(), DeliveryError> {
        telephony::record_delivery(&self.inner.store, "vonage", d, sid, kind, status.into()).await
    }
}

impl DeliveryHandler for Vonage {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let Some(text) = d.payload.get("text").and_then(|t| t.as_str()) else {
                return Err(DeliveryError::permanent("vonage delivery without a text"));
            };
            if d.channel == CALL_CHANNEL {
                if let Some((app, key)) = self.inner.cfg.application.clone() {
                    let me = self.clone();
                    let (to, text, outbox) = (d.recipient.clone(), text.to_owned(), d.id.0);
                    let uuid = tokio::task::spawn_blocking(move || {
                        me.call_blocking(&app, &key, &to, &text, outbox)
                    })
                    .await
                    .map_err(|e| DeliveryError::retry(e.to_string()))??;
                    return self.record(d, uuid, "call", "started").await;
                }
                // No Voice API application configured: the reminder goes out as an SMS.
                tracing::info!(outbox = d.id.0, "vonage: reminder call sent as an SMS");
            }
            let parts = telephony::split_sms(text, MAX_SMS_CHARS);
            let done = telephony::parts_accepted(&self.inner.store, d.id).await?;
            for part in parts.into_iter().skip(done) {
                let me = self.clone();
                let to = d.recipient.clone();
                let uuid = tokio::task::spawn_blocking(move || me.send_blocking(&to, &part))
                    .await
                    .map_err(|e| DeliveryError::retry(e.to_string()))??;
                self.record(d, uuid, "message", "submitted").await?;
            }
            Ok(())
        })
    }
}
