//! `POST /api/v1/chat`: one conversation turn. With `Accept: text/event-stream` the reply
//! streams as Server-Sent Events (`chunk` events with one sentence each, then one `done`
//! event with the summary); otherwise the summary is returned as JSON when the turn is done.
//!
//! A streaming client that disconnects cancels its turn (the partial reply is kept as
//! `cancelled`); a JSON client that disconnects does not (the reply is still stored).

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::error::{ApiError, ApiJson, ErrorBody};
use super::ApiState;
use crate::domain::{ConversationId, PhoneNumber};
use crate::nlu::llm::Priority;
use crate::orchestrator::{TurnEvent, TurnHandle, TurnSummary};

/// A chat message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// What the person said.
    pub text: String,
    /// Continue this conversation (from an earlier answer); default: the caller's own.
    pub conversation_id: Option<i64>,
    /// Speak as this phone number (E.164): its contact's trust applies. Default: the API
    /// token holder (`routing.api_trust`).
    pub from: Option<String>,
}

/// Run one turn.
#[utoipa::path(post, path = "/api/v1/chat", tag = "chat", security(("bearer" = [])),
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The turn's summary (JSON), or an SSE stream of `chunk` events and one `done` event with the summary", body = TurnSummary),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such conversation", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 503, description = "Store busy; nothing stored, retry", body = ErrorBody)))]
pub async fn chat(
    State(state): State<ApiState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let text = req.text.trim().to_owned();
    if text.is_empty() {
        return Err(ApiError::unprocessable("text: must not be empty"));
    }
    let max = state.max_text_chars;
    if text.chars().count() > max {
        return Err(ApiError::unprocessable(format!(
            "text: longer than {max} characters (inbox.max_text_chars)"
        )));
    }
    let from = match req.from.as_deref() {
        None => None,
        Some(f) => {
            Some(PhoneNumber::parse(f).map_err(|e| ApiError::unprocessable(format!("from: {e}")))?)
        }
    };
    let conversation = req.conversation_id.map(ConversationId);
    let handle = state
        .orchestrator
        .chat(conversation, from, text, Priority::Message)
        .await
        .map_err(|e| match e {
            crate::orchestrator::ChatError::NoSuchConversation(id) => {
                ApiError::not_found(format!("no conversation {id}"))
            }
            crate::orchestrator::ChatError::Store(s) => s.into(),
        })?;
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_sse {
        Ok(Sse::new(sse_stream(handle))
            .keep_alive(KeepAlive::default())
            .into_response())
    } else {
        match handle.finish().await {
            Some(summary) => Ok(Json(summary).into_response()),
            None => Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the turn failed before it could be stored; it will be answered after a restart",
            )),
        }
    }
}

/// Cancels the turn when the SSE stream is dropped before `done`.
struct CancelOnDrop(Option<TurnHandle>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.cancel();
        }
    }
}

fn sse_stream(handle: TurnHandle) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(CancelOnDrop(Some(handle)), |mut guard| async move {
        let h = guard.0.as_mut()?;
        match h.events.recv().await {
            Some(TurnEvent::Chunk(text)) => {
                let data = serde_json::json!({ "text": text }).to_string();
                Some((Ok(Event::default().event("chunk").data(data)), guard))
            }
            Some(TurnEvent::Done(summary)) => {
                let data = serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into());
                // Done: nothing left to cancel.
                guard.0 = None;
                Some((Ok(Event::default().event("done").data(data)), guard))
            }
            None => {
                guard.0 = None;
                let data =
                    serde_json::json!({ "error": "the turn failed before it could be stored" })
                        .to_string();
                Some((Ok(Event::default().event("error").data(data)), guard))
            }
        }
    })
}
