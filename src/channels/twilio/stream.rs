//! The Media Streams WebSocket (`/twilio/media`): Twilio's JSON messages exactly as it sends
//! them (`connected`, `start`, `media` with base64 μ-law at 8 kHz in 20 ms frames, `dtmf`,
//! `mark`, `stop`) in; `media`, `mark` and `clear` out. The conversation itself is
//! [`crate::channels::call`].

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;

use super::http::{ws_url, TwilioHttp};
use super::CALL_CHANNEL;
use crate::channels::call::{Call, CallInput, CallOutput, CallParams};
use crate::domain::PhoneNumber;
use crate::speech::audio::g711;
use crate::speech::audio::resample::Resampler;

/// The rate of Twilio's μ-law audio.
pub const RATE: u32 = 8_000;

/// One message from Twilio (the fields we use; the rest are ignored).
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Inbound {
    /// The socket is open.
    Connected {},
    /// The stream's metadata.
    Start {
        /// The stream.
        #[serde(rename = "streamSid")]
        stream_sid: String,
        /// Details.
        start: StartInfo,
    },
    /// Caller audio.
    Media {
        /// The frame.
        media: MediaInfo,
    },
    /// A key pressed.
    Dtmf {
        /// Which.
        dtmf: DtmfInfo,
    },
    /// Audio up to our mark has played.
    Mark {
        /// Which.
        mark: MarkInfo,
    },
    /// The stream ended (hang-up, or the call moved on).
    Stop {},
}

/// `start`.
#[derive(Debug, Deserialize)]
pub struct StartInfo {
    /// The call.
    #[serde(rename = "callSid", default)]
    pub call_sid: String,
    /// `<Parameter>`s from our TwiML.
    #[serde(rename = "customParameters", default)]
    pub custom_parameters: std::collections::HashMap<String, String>,
    /// Encoding.
    #[serde(rename = "mediaFormat")]
    pub media_format: Option<MediaFormat>,
}

/// `start.mediaFormat`.
#[derive(Debug, Deserialize)]
pub struct MediaFormat {
    /// `audio/x-mulaw`.
    pub encoding: String,
    /// 8000.
    #[serde(rename = "sampleRate")]
    pub sample_rate: u32,
}

/// `media`.
#[derive(Debug, Deserialize)]
pub struct MediaInfo {
    /// `inbound` (the caller) or `outbound`.
    #[serde(default)]
    pub track: Option<String>,
    /// Base64 μ-law.
    pub payload: String,
}

/// `dtmf`.
#[derive(Debug, Deserialize)]
pub struct DtmfInfo {
    /// The key.
    pub digit: String,
}

/// `mark`.
#[derive(Debug, Deserialize)]
pub struct MarkInfo {
    /// Our name for it.
    pub name: String,
}

/// `GET /twilio/media`: check the signature of the upgrade request, then talk.
pub async fn upgrade(State(s): State<TwilioHttp>, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let url = ws_url(&s.twilio.config().public_url, &pq);
    if let Err(r) = s.verify(&parts, &url, &[], None) {
        return *r;
    }
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &s).await {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    if s.ctx.calls.is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "speech engines unavailable: calls cannot be answered in stream mode",
        )
            .into_response();
    }
    ws.on_upgrade(move |socket| session(s, socket))
}

async fn next_output(call: &mut Option<Call>) -> Option<CallOutput> {
    match call {
        Some(c) => c.output.recv().await,
        None => std::future::pending().await,
    }
}

async fn session(s: TwilioHttp, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    let mut stream_sid = String::new();
    let mut call: Option<Call> = None;
    let mut up = match Resampler::new(RATE, crate::channels::call::IN_RATE) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "twilio: no resampler");
            return;
        }
    };
    loop {
        tokio::select! {
            out = next_output(&mut call) => {
                let Some(out) = out else { break };
                let msg = match out {
                    CallOutput::Audio(frame) => {
                        let payload = base64::engine::general_purpose::STANDARD.encode(g711::encode_ulaw(&frame));
                        json!({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})
                    }
                    CallOutput::Mark(name) => json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}}),
                    CallOutput::Clear => json!({"event": "clear", "streamSid": stream_sid}),
                };
                if tx.send(Message::Text(msg.to_string().into())).await.is_err() {
                    break;
                }
            }
            msg = rx.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let ev: Inbound = match serde_json::from_str(text.as_str()) {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::debug!(error = %e, "twilio: media stream message ignored");
                        continue;
                    }
                };
                match ev {
                    Inbound::Connected {} => {}
                    Inbound::Start { stream_sid: sid, start } => {
                        if let Some(f) = &start.media_format {
                            if f.encoding != "audio/x-mulaw" || f.sample_rate != RATE {
                                tracing::warn!(encoding = f.encoding, rate = f.sample_rate, "twilio: unexpected media format");
                            }
                        }
                        let from = start.custom_parameters.get("from").cloned().unwrap_or_default();
                        let Ok(caller) = PhoneNumber::parse(&from) else {
                            tracing::warn!(from, "twilio: media stream without a caller number");
                            break;
                        };
                        stream_sid = sid;
                        let Some(engines) = s.ctx.calls.as_ref() else { break };
                        match Call::start(engines, s.ctx.orchestrator.clone(), CallParams {
                            channel: CALL_CHANNEL.into(),
                            caller: caller.as_str().to_owned(),
                            out_rate: RATE,
                        }) {
                            Ok(c) => {
                                tracing::info!(call = start.call_sid, stream = stream_sid, "twilio: media stream started");
                                call = Some(c);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "twilio: cannot start the call");
                                break;
                            }
                        }
                    }
                    Inbound::Media { media } => {
                        if media.track.as_deref().is_some_and(|t| t != "inbound" && t != "inbound_track") {
                            continue;
                        }
                        let Some(c) = &call else { continue };
                        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(media.payload.as_bytes()) else {
                            continue;
                        };
                        let samples = up.process(&g711::decode_ulaw(&bytes));
                        if c.input.send(CallInput::Audio(samples)).await.is_err() {
                            break;
                        }
                    }
                    Inbound::Dtmf { dtmf } => {
                        if let (Some(c), Some(d)) = (&call, dtmf.digit.chars().next()) {
                            let _ = c.input.send(CallInput::Dtmf(d)).await;
                        }
                    }
                    Inbound::Mark { mark } => {
                        if let Some(c) = &call {
                            let _ = c.input.send(CallInput::Mark(mark.name)).await;
                        }
                    }
                    Inbound::Stop {} => break,
                }
            }
        }
    }
    if let Some(c) = call {
        c.end().await;
    }
    tracing::info!(stream = stream_sid, "twilio: media stream ended");
}
