//! `GET /api/v1/events`: the live event stream over WebSocket, one JSON event per text frame.
//!
//! Each client has its own task and its own bounded buffer on the bus. A client that cannot
//! take a frame within `events.send_timeout_ms`, or falls more than `events.buffer` events
//! behind, is dropped (close code 1008) so that it never holds back the others.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use super::error::{ApiError, ErrorBody};
use super::ApiState;
use crate::events::Event;

/// Close code for a client dropped for being too slow (policy violation).
const CLOSE_TOO_SLOW: u16 = 1008;
/// Close code at shutdown (going away).
const CLOSE_GOING_AWAY: u16 = 1001;

/// Subscribe to domain events (WebSocket). Each frame is one [`Event`] as JSON, with `type`
/// and a strictly increasing `seq`.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(("access_token" = Option<String>, Query, description = "The API token, for clients that cannot send an Authorization header")),
    responses(
        (status = 101, description = "Switching to WebSocket; then one JSON event per text frame", body = Event),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn stream(
    State(state): State<ApiState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(r) => {
            return ApiError::new(
                r.status(),
                format!("{}; connect with a WebSocket client", r.body_text()),
            )
            .into_response()
        }
    };
    // Subscribe before the upgrade completes so no event published after the 101 is missed.
    let rx = state.events.subscribe();
    ws.on_upgrade(move |socket| client(socket, rx, state))
}

async fn client(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<Event>,
    state: ApiState,
) {
    let send_timeout = state.events_cfg.send_timeout;
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(event) => {
                    let text = match serde_json::to_string(&event) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot encode an event");
                            continue;
                        }
                    };
                    match tokio::time::timeout(send_timeout, socket.send(Message::Text(text.into()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break,
                        Err(_) => {
                            state.metrics.event_clients_dropped.inc();
                            tracing::info!(timeout_ms = send_timeout.as_millis() as u64, "event client too slow to take a frame; dropped");
                            break;
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    state.metrics.event_clients_dropped.inc();
                    tracing::info!(missed, "event client fell behind; dropped");
                    close(&mut socket, CLOSE_TOO_SLOW, format!("too slow: missed {missed} events"), send_timeout).await;
                    break;
                }
                Err(RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
            () = state.shutdown.cancelled() => {
                close(&mut socket, CLOSE_GOING_AWAY, "shutting down".into(), send_timeout).await;
                break;
            }
        }
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: String, timeout: Duration) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(timeout, socket.send(frame)).await;
}
