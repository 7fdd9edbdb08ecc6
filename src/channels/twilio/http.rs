//! Twilio's webhooks: `POST /twilio/sms`, `/twilio/voice`, `/twilio/status`; the Media Streams
//! WebSocket `/twilio/media` is in `stream.rs`. Each request's signature is checked first.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{signature, twiml, Twilio, CALL_CHANNEL, SMS_CHANNEL};
use crate::channels::telephony::{self, form_pairs, param};
use crate::channels::ChannelContext;
use crate::config::VoiceMode;
use crate::domain::{ChannelName, PhoneNumber};
use crate::messaging::inbox::{InboundText, InboxError};

/// Largest webhook body read.
const MAX_BODY: usize = 256 * 1024;
/// How long a `<Gather>` turn may take to answer (Twilio waits 15 s for a webhook).
const GATHER_BUDGET: Duration = Duration::from_secs(12);

/// What the webhooks reach.
#[derive(Clone)]
pub struct TwilioHttp {
    /// The channel.
    pub twilio: Twilio,
    /// The core.
    pub ctx: ChannelContext,
}

/// The `/twilio/...` routes.
pub fn router<S>(state: TwilioHttp) -> axum::Router<S> {
    axum::Router::new()
        .route("/twilio/sms", post(sms))
        .route("/twilio/voice", post(voice))
        .route("/twilio/status", post(status))
        .route("/twilio/media", get(super::stream::upgrade))
        .with_state(state)
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

pub(crate) fn source(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

impl TwilioHttp {
    /// Check `X-Twilio-Signature` for a request to `parts.uri` with `pairs` / `body`.
    pub(super) fn verify(
        &self,
        parts: &Parts,
        url: &str,
        pairs: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<(), Box<Response>> {
        let cfg = self.twilio.config();
        let sig = parts
            .headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match signature::validate(cfg.auth_token.expose(), url, pairs, body, sig) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.twilio.inner.refusals.refused(
                    "twilio",
                    source(parts),
                    parts.uri.path(),
                    &e.to_string(),
                );
                Err(Box::new(plain(
                    StatusCode::FORBIDDEN,
                    format!("refused: {e}"),
                )))
            }
        }
    }

    /// The URL Twilio signed: the public URL plus the path and query it called.
    fn signed_url(&self, parts: &Parts) -> String {
        let pq = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        format!("{}{pq}", self.twilio.config().public_url)
    }

    /// Read and verify a form webhook.
    async fn form(&self, req: Request) -> Result<(Parts, Vec<(String, String)>), Box<Response>> {
        let (parts, body) = req.into_parts();
        let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
            Box::new(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body: {e}"),
            ))
        })?;
        let json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"));
        let pairs = if json { Vec::new() } else { form_pairs(&bytes) };
        let url = self.signed_url(&parts);
        self.verify(&parts, &url, &pairs, Some(&bytes))?;
        Ok((parts, pairs))
    }
}

/// `POST /twilio/sms`: an SMS or MMS arrived.
async fn sms(State(s): State<TwilioHttp>, req: Request) -> Response {
    let (_parts, p) = match s.form(req).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(sid) = param(&p, "MessageSid").or_else(|| param(&p, "SmsSid")) else {
        return plain(StatusCode::BAD_REQUEST, "MessageSid is missing");
    };
    let from = match PhoneNumber::parse(param(&p, "From").unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("From: {e}")),
    };
    let sid = sid.to_owned();
    // A retried webhook: stored and answered the first time.
    let key = sid.clone();
    match s
        .ctx
        .store
        .read(move |c| telephony::seen(c, SMS_CHANNEL, &key))
        .await
    {
        Ok(true) => return xml(twiml::empty()),
        Ok(false) => {}
        Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
    let media = fetch_media(&s, &p, &sid).await;
    let reply = s.twilio.wait_for_reply(from.as_str());
    let Ok(channel) = ChannelName::parse(SMS_CHANNEL) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "bad channel name");
    };
    let accepted = s
        .ctx
        .inbox
        .accept(InboundText {
            channel,
            from,
            text: param(&p, "Body").unwrap_or("").to_owned(),
            media,
            idempotency_key: Some(sid),
        })
        .await;
    match accepted {
        Ok(a) if a.replayed => return xml(twiml::empty()),
        Ok(_) => {}
        Err(InboxError::Invalid { field, message }) => {
            return plain(StatusCode::BAD_REQUEST, format!("{field}: {message}"))
        }
        Err(InboxError::Store(e)) => return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
    match tokio::time::timeout(s.twilio.config().reply_budget, reply).await {
        Ok(Ok(h)) => {
            if h.ack.send(()).is_ok() {
                xml(twiml::messages(&telephony::split_sms(
                    &h.text,
                    telephony::MAX_SMS_CHARS,
                )))
            } else {
                xml(twiml::empty())
            }
        }
        // Not ready in time: the outbox sends it through the REST API.
        _ => xml(twiml::empty()),
    }
}

/// MMS media: fetched with the account's credentials into the media store. One that cannot
/// be fetched is kept as `unfetched:<url>` (Twilio keeps it), so nothing is lost.
async fn fetch_media(s: &TwilioHttp, p: &[(String, String)], sid: &str) -> Vec<String> {
    let n: usize = param(p, "NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .min(10);
    let mut refs = Vec::new();
    for i in 0..n {
        let Some(url) = param(p, &format!("MediaUrl{i}")).map(str::to_owned) else {
            continue;
        };
        let rest = s.twilio.inner.rest.clone();
        let cfg = s.twilio.config().clone();
        let media = s.ctx.media.clone();
        let u = url.clone();
        let got = tokio::task::spawn_blocking(move || {
            let (bytes, ctype) = rest.fetch_media(&u, cfg.media_max_bytes, &cfg.media_types)?;
            media.put(&bytes, &ctype)
        })
        .await;
        match got {
            Ok(Ok(r)) => refs.push(r),
            Ok(Err(e)) => {
                tracing::warn!(message = sid, url, error = %e, "twilio: MMS media not stored");
                refs.push(format!("unfetched:{url}"));
            }
            Err(e) => {
                tracing::warn!(message = sid, url, error = %e, "twilio: MMS media task failed");
                refs.push(format!("unfetched:{url}"));
            }
        }
    }
    refs
}

/// `POST /twilio/status`: delivery state of a message or call we made.
async fn status(State(s): State<TwilioHttp>, req: Request) -> Response {
    let (_parts, p) = match s.form(req).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (sid, st) = match (
        param(&p, "MessageSid"),
        param(&p, "MessageStatus").or_else(|| param(&p, "SmsStatus")),
        param(&p, "CallSid"),
        param(&p, "CallStatus"),
    ) {
        (Some(sid), Some(st), _, _) | (_, _, Some(sid), Some(st)) => {
            (sid.to_owned(), st.to_owned())
        }
        _ => {
            return plain(
                StatusCode::BAD_REQUEST,
                "expected MessageSid and MessageStatus, or CallSid and CallStatus",
            )
        }
    };
    let code = param(&p, "ErrorCode").map(str::to_owned);
    let (sid2, st2) = (sid.clone(), st.clone());
    match s
        .ctx
        .store
        .write(move |c| telephony::update_status(c, "twilio", &sid2, &st2, code.as_deref()))
        .await
    {
        Ok(known) => {
            if !known {
                tracing::debug!(
                    sid,
                    status = st,
                    "twilio: status of something we did not send"
                );
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Run one text turn on the calls channel and return the whole reply (within `budget`).
async fn converse_text(s: &TwilioHttp, caller: &str, text: String) -> Option<String> {
    s.ctx
        .call_turn(CALL_CHANNEL, caller, text, GATHER_BUDGET)
        .await
}

/// `POST /twilio/voice`: a call came in, or a `<Gather>` heard something.
async fn voice(State(s): State<TwilioHttp>, req: Request) -> Response {
    let (parts, p) = match s.form(req).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let cfg = s.twilio.config().clone();
    let outbound = param(&p, "Direction").is_some_and(|d| d.starts_with("outbound"));
    let party = if outbound {
        param(&p, "To")
    } else {
        param(&p, "From")
    };
    let caller = match PhoneNumber::parse(party.unwrap_or("")) {
        Ok(n) => n.as_str().to_owned(),
        Err(e) => {
            // Withheld numbers ("anonymous") still get an answer, as nobody in particular.
            tracing::info!(error = %e, "twilio: call from an unusable number");
            return xml(twiml::gather(
                "Sorry, I can only talk to callers who show their number. Goodbye.",
                "",
                true,
            ));
        }
    };
    let action = format!("{}/twilio/voice", cfg.public_url);
    let said = param(&p, "SpeechResult")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            param(&p, "Digits").map(|d| match d {
                "1" => "yes".to_owned(),
                "2" => "no".to_owned(),
                d => d.to_owned(),
            })
        });
    // The answer to a reminder call: snooze or done.
    if parts.uri.query().is_some_and(|q| q.contains("outbox=")) {
        let said = said.unwrap_or_default().to_lowercase();
        if said.contains("snooze") || said == "yes" {
            let reply = converse_text(&s, &caller, "snooze it for 10 minutes".into())
                .await
                .unwrap_or_else(|| "Sorry, I could not snooze it.".into());
            return xml(twiml::gather(&reply, "", true));
        }
        return xml(twiml::gather("Good. Goodbye.", "", true));
    }
    if let Some(text) = said {
        let reply = converse_text(&s, &caller, text)
            .await
            .unwrap_or_else(|| "Sorry, that took too long. Please say it again.".into());
        return xml(twiml::gather(&reply, &action, false));
    }
    // A new call.
    let who = caller.clone();
    let name = s
        .ctx
        .store
        .read(move |c| telephony::caller_name(c, &who))
        .await
        .ok()
        .flatten();
    let greeting = match name {
        Some(n) => format!("Hello {n}. {}", cfg.greeting),
        None => cfg.greeting.clone(),
    };
    let call_sid = param(&p, "CallSid").unwrap_or("").to_owned();
    tracing::info!(call = call_sid, caller, "twilio: incoming call");
    record_call(
        &s.ctx,
        "twilio",
        &call_sid,
        &caller,
        param(&p, "CallStatus"),
    )
    .await;
    if cfg.voice_mode == VoiceMode::Stream && s.ctx.calls.is_some() {
        let ws = ws_url(&cfg.public_url, "/twilio/media");
        xml(twiml::stream(
            &greeting,
            &ws,
            &[("from", caller.as_str()), ("callSid", call_sid.as_str())],
            cfg.record_calls,
        ))
    } else {
        if cfg.voice_mode == VoiceMode::Stream {
            tracing::warn!("twilio: speech engines unavailable; answering the call with <Gather>");
        }
        xml(twiml::gather(&greeting, &action, false))
    }
}

/// Remember an incoming call so that its status callbacks are recorded against it.
pub(crate) async fn record_call(
    ctx: &ChannelContext,
    provider: &'static str,
    sid: &str,
    caller: &str,
    status: Option<&str>,
) {
    if sid.is_empty() {
        return;
    }
    let item = telephony::ProviderItem {
        provider: provider.into(),
        sid: sid.to_owned(),
        kind: "call".into(),
        outbox_id: None,
        message_id: None,
        address: caller.to_owned(),
        status: status.unwrap_or("ringing").to_owned(),
        error_code: None,
    };
    if let Err(e) = ctx
        .store
        .write(move |c| telephony::record_item(c, &item))
        .await
    {
        tracing::warn!(error = %e, "cannot record the call");
    }
}

/// `https://host/x` → `wss://host/x`.
pub fn ws_url(public_url: &str, path: &str) -> String {
    let base = if let Some(rest) = public_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = public_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        public_url.to_owned()
    };
    format!("{base}{path}")
}
