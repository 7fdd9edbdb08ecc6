//! Vonage's webhooks and the call audio WebSocket.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{jwt, Vonage, CALL_CHANNEL, SMS_CHANNEL};
use crate::channels::call::{Call, CallInput, CallOutput, CallParams, IN_RATE};
use crate::channels::telephony;
use crate::channels::twilio::http::ws_url;
use crate::channels::ChannelContext;
use crate::config::VoiceMode;
use crate::domain::{ChannelName, PhoneNumber};
use crate::messaging::inbox::{InboundText, InboxError};

const MAX_BODY: usize = 256 * 1024;
/// How long an `input` turn may take to answer.
const INPUT_BUDGET: Duration = Duration::from_secs(12);

/// What the webhooks reach.
#[derive(Clone)]
pub struct VonageHttp {
    /// The channel.
    pub vonage: Vonage,
    /// The core.
    pub ctx: ChannelContext,
}

/// The `/vonage/...` routes.
pub fn router<S>(state: VonageHttp) -> axum::Router<S> {
    axum::Router::new()
        .route("/vonage/answer", get(answer).post(answer))
        .route("/vonage/event", post(event))
        .route("/vonage/sms", post(sms))
        .route("/vonage/media", get(media))
        .with_state(state)
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

/// A phone number as Vonage writes it (`447700900001`, no plus).
fn number(raw: &str) -> Result<PhoneNumber, String> {
    let raw = raw.trim();
    let e164 = if raw.starts_with('+') {
        raw.to_owned()
    } else {
        format!("+{raw}")
    };
    PhoneNumber::parse(&e164).map_err(|e| e.to_string())
}

/// A verified webhook: its head, JSON body (`Null` when empty) and query pairs.
type Signed = (Parts, Value, Vec<(String, String)>);

impl VonageHttp {
    /// Read the body and check the JWT; the JSON body (`Null` when empty) and the query pairs.
    async fn signed(&self, req: Request) -> Result<Signed, Box<Response>> {
        let (parts, body) = req.into_parts();
        let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
            Box::new(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the body: {e}"),
            ))
        })?;
        let cfg = self.vonage.config();
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(jwt::bearer);
        let now = jiff::Timestamp::now().as_second();
        let max_age = i64::try_from(cfg.jwt_max_age.as_secs()).unwrap_or(i64::MAX);
        let checked = match token {
            None => Err("no `Authorization: Bearer` JWT".to_owned()),
            Some(t) => jwt::verify(
                t,
                cfg.signature_secret.expose().as_bytes(),
                &bytes,
                now,
                max_age,
            )
            .map_err(|e| e.to_string())
            .and_then(|claims| match (&claims.api_key, cfg.api_key.is_empty()) {
                (Some(k), false) if k != &cfg.api_key => {
                    Err(format!("the JWT is for API key {k}, not ours"))
                }
                _ => Ok(claims),
            })
            .and_then(|claims| match &claims.jti {
                Some(j) if !self.vonage.first_use(j, claims.iat.unwrap_or(now), now) => {
                    Err(format!("the JWT {j} was already used (a replayed webhook)"))
                }
                _ => Ok(claims),
            }),
        };
        if let Err(why) = checked {
            self.vonage.inner.refusals.refused(
                "vonage",
                crate::channels::twilio::http::source(&parts),
                parts.uri.path(),
                &why,
            );
            return Err(Box::new(refuse(
                StatusCode::UNAUTHORIZED,
                format!("refused: {why}"),
            )));
        }
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) => {
                    // Some webhooks may be form-encoded; keep the pairs as an object.
                    let pairs = telephony::form_pairs(&bytes);
                    Value::Object(
                        pairs
                            .into_iter()
                            .map(|(k, v)| (k, Value::String(v)))
                            .collect(),
                    )
                }
            }
        };
        let query = parts
            .uri
            .query()
            .map(|q| telephony::form_pairs(q.as_bytes()))
            .unwrap_or_default();
        Ok((parts, json, query))
    }
}

/// A field from the JSON body or, failing that, the query.
fn field(body: &Value, query: &[(String, String)], key: &str) -> Option<String> {
    body.get(key)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| telephony::param(query, key).map(str::to_owned))
}

fn input_ncco(text: &str, event_url: &str) -> Value {
    json!([
        {"action": "talk", "text": text, "bargeIn": true},
        {"action": "input", "type": ["speech", "dtmf"], "eventUrl": [event_url],
         "eventMethod": "POST",
         "speech": {"language": "en-US", "endOnSilence": 1},
         "dtmf": {"maxDigits": 1, "timeOut": 5}}
    ])
}

/// `GET|POST /vonage/answer`: a call came in; answer with an NCCO.
async fn answer(State(s): State<VonageHttp>, req: Request) -> Response {
    let (_parts, body, query) = match s.signed(req).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let cfg = s.vonage.config().clone();
    let caller = match number(&field(&body, &query, "from").unwrap_or_default()) {
        Ok(n) => n.as_str().to_owned(),
        Err(e) => {
            tracing::info!(error = %e, "vonage: call from an unusable number");
            return Json(json!([{"action": "talk", "text": "Sorry, I can only talk to callers who show their number. Goodbye."}])).into_response();
        }
    };
    let uuid = field(&body, &query, "uuid").unwrap_or_default();
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
    tracing::info!(call = uuid, caller, "vonage: incoming call");
    crate::channels::twilio::http::record_call(&s.ctx, "vonage", &uuid, &caller, Some("answered"))
        .await;
    if cfg.voice_mode == VoiceMode::Stream && s.ctx.calls.is_some() {
        let token = s.vonage.stream_token(&uuid, &caller);
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("call", &uuid)
            .append_pair("from", &caller)
            .append_pair("token", &token)
            .finish();
        let uri = format!("{}?{q}", ws_url(&cfg.public_url, "/vonage/media"));
        Json(json!([
            {"action": "talk", "text": greeting},
            {"action": "connect", "endpoint": [{
                "type": "websocket",
                "uri": uri,
                "content-type": "audio/l16;rate=16000",
                "headers": {"from": caller, "call": uuid}
            }]}
        ]))
        .into_response()
    } else {
        if cfg.voice_mode == VoiceMode::Stream {
            tracing::warn!("vonage: speech engines unavailable; answering the call with input");
        }
        Json(input_ncco(
            &greeting,
            &format!("{}/vonage/event", cfg.public_url),
        ))
        .into_response()
    }
}

/// `POST /vonage/event`: call events, `input` results (answered with the next NCCO) and
/// message statuses.
async fn event(State(s): State<VonageHttp>, req: Request) -> Response {
    let (_parts, body, query) = match s.signed(req).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    // A message status (Messages API).
    if let Some(uuid) = body.get("message_uuid").and_then(|v| v.as_str()) {
        let status = body
            .get("status")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        let code = body
            .pointer("/error/type")
            .or_else(|| body.pointer("/error/code"))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        let uuid = uuid.to_owned();
        return match s
            .ctx
            .store
            .write(move |c| telephony::update_status(c, "vonage", &uuid, &status, code.as_deref()))
            .await
        {
            Ok(_) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        };
    }
    // An `input` result: what the caller said or pressed.
    let said = body
        .pointer("/speech/results/0/text")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .filter(|t| !t.trim().is_empty())
        .or_else(|| {
            body.pointer("/dtmf/digits")
                .and_then(|v| v.as_str())
                .filter(|d| !d.is_empty())
                .map(|d| match d {
                    "1" => "yes".to_owned(),
                    "2" => "no".to_owned(),
                    d => d.to_owned(),
                })
        });
    let is_input = body.get("speech").is_some() || body.get("dtmf").is_some();
    // The answer to a reminder call we placed: snooze or done (the callee is `to`).
    if is_input && telephony::param(&query, "outbox").is_some() {
        let said = said.unwrap_or_default().to_lowercase();
        let reply = if said.contains("snooze") || said == "yes" {
            match number(&field(&body, &query, "to").unwrap_or_default()) {
                Ok(callee) => {
                    converse_reply(&s, callee.as_str(), "snooze it for 10 minutes".into())
                        .await
                        .unwrap_or_else(|| "Sorry, I could not snooze it.".into())
                }
                Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("to: {e}")),
            }
        } else {
            "Good. Goodbye.".to_owned()
        };
        return Json(json!([{"action": "talk", "text": reply}])).into_response();
    }
    if is_input {
        let cfg = s.vonage.config().clone();
        let event_url = format!("{}/vonage/event", cfg.public_url);
        let Some(text) = said else {
            return Json(input_ncco(
                "I did not catch that. Please say it again.",
                &event_url,
            ))
            .into_response();
        };
        let caller = match number(&field(&body, &query, "from").unwrap_or_default()) {
            Ok(n) => n.as_str().to_owned(),
            Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("from: {e}")),
        };
        let reply = converse_reply(&s, &caller, text)
            .await
            .unwrap_or_else(|| "Sorry, that took too long. Please say it again.".to_owned());
        return Json(input_ncco(&reply, &event_url)).into_response();
    }
    // A call event (started, ringing, answered, completed, …).
    if let (Some(uuid), Some(status)) = (
        body.get("uuid").and_then(|v| v.as_str()),
        body.get("status").and_then(|v| v.as_str()),
    ) {
        tracing::info!(call = uuid, status, "vonage: call event");
        let (uuid, status) = (uuid.to_owned(), status.to_owned());
        let _ = s
            .ctx
            .store
            .write(move |c| telephony::update_status(c, "vonage", &uuid, &status, None))
            .await;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// One turn on the calls channel; the whole reply within [`INPUT_BUDGET`].
async fn converse_reply(s: &VonageHttp, caller: &str, text: String) -> Option<String> {
    s.ctx
        .call_turn(CALL_CHANNEL, caller, text, INPUT_BUDGET)
        .await
}

/// `POST /vonage/sms`: an inbound message (Messages API JSON).
async fn sms(State(s): State<VonageHttp>, req: Request) -> Response {
    let (_parts, body, query) = match s.signed(req).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(id) =
        field(&body, &query, "message_uuid").or_else(|| field(&body, &query, "messageId"))
    else {
        return refuse(StatusCode::BAD_REQUEST, "message_uuid is missing");
    };
    let from_raw = field(&body, &query, "from").or_else(|| field(&body, &query, "msisdn"));
    let from = match number(&from_raw.unwrap_or_default()) {
        Ok(n) => n,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("from: {e}")),
    };
    let text = field(&body, &query, "text").unwrap_or_default();
    if text.trim().is_empty() {
        // A picture or another message type without text: Vonage retries anything but a
        // 2xx for ever, so it is acknowledged (and logged) rather than refused.
        tracing::warn!(message = id, message_type = ?body.get("message_type"), "vonage: message without text not stored");
        return StatusCode::OK.into_response();
    }
    let Ok(channel) = ChannelName::parse(SMS_CHANNEL) else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "bad channel name");
    };
    match s
        .ctx
        .inbox
        .accept(InboundText {
            channel,
            from,
            text,
            media: Vec::new(),
            idempotency_key: Some(id),
        })
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(InboxError::Invalid { field, message }) => {
            refuse(StatusCode::BAD_REQUEST, format!("{field}: {message}"))
        }
        Err(InboxError::Store(e)) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /vonage/media`: the call's audio WebSocket (its URL carries the call's token).
async fn media(State(s): State<VonageHttp>, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| telephony::form_pairs(q.as_bytes()))
        .unwrap_or_default();
    let call = telephony::param(&query, "call").unwrap_or("").to_owned();
    let from = telephony::param(&query, "from").unwrap_or("").to_owned();
    let token = telephony::param(&query, "token").unwrap_or("");
    let want = s.vonage.stream_token(&call, &from);
    if want.is_empty() || !bool::from(want.as_bytes().ct_eq(token.as_bytes())) {
        s.vonage.inner.refusals.refused(
            "vonage",
            crate::channels::twilio::http::source(&parts),
            parts.uri.path(),
            "bad stream token",
        );
        return refuse(StatusCode::UNAUTHORIZED, "refused: bad stream token");
    }
    let Ok(caller) = number(&from) else {
        return refuse(StatusCode::BAD_REQUEST, "from: not a phone number");
    };
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &s).await {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let Some(engines) = s.ctx.calls.clone() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "speech engines unavailable",
        );
    };
    let call = match Call::start(
        &engines,
        s.ctx.orchestrator.clone(),
        CallParams {
            channel: CALL_CHANNEL.into(),
            caller: caller.as_str().to_owned(),
            out_rate: IN_RATE,
        },
    ) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    ws.on_upgrade(move |socket| session(socket, call))
}

async fn session(socket: WebSocket, mut call: Call) {
    let (mut tx, mut rx) = socket.split();
    // Odd bytes carried over between binary frames.
    let mut carry: Option<u8> = None;
    loop {
        tokio::select! {
            out = call.output.recv() => {
                let msg = match out {
                    None => break,
                    Some(CallOutput::Audio(frame)) => {
                        let mut bytes = Vec::with_capacity(frame.len() * 2);
                        for s in frame {
                            bytes.extend_from_slice(&crate::speech::audio::f32_to_i16(s).to_le_bytes());
                        }
                        Message::Binary(bytes.into())
                    }
                    // Vonage has no marks.
                    Some(CallOutput::Mark(_)) => continue,
                    Some(CallOutput::Clear) => Message::Text(json!({"action": "clear"}).to_string().into()),
                };
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let mut bytes: Vec<u8> = Vec::with_capacity(b.len() + 1);
                    if let Some(c) = carry.take() {
                        bytes.push(c);
                    }
                    bytes.extend_from_slice(&b);
                    if bytes.len() % 2 == 1 {
                        carry = bytes.pop();
                    }
                    let samples = bytes
                        .chunks_exact(2)
                        .map(|p| crate::speech::audio::i16_to_f32(i16::from_le_bytes([p[0], p[1]])))
                        .collect();
                    if call.input.send(CallInput::Audio(samples)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    match v.get("event").and_then(|e| e.as_str()) {
                        Some("websocket:dtmf") => {
                            let digit = v.get("digit").and_then(|d| d.as_str())
                                .or_else(|| v.pointer("/dtmf/digit").and_then(|d| d.as_str()));
                            if let Some(d) = digit.and_then(|d| d.chars().next()) {
                                let _ = call.input.send(CallInput::Dtmf(d)).await;
                            }
                        }
                        Some("websocket:connected") => {
                            let ct = v.get("content-type").and_then(|c| c.as_str()).unwrap_or("");
                            if !ct.is_empty() && ct != "audio/l16;rate=16000" {
                                tracing::warn!(content_type = ct, "vonage: unexpected audio format");
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    call.end().await;
}
