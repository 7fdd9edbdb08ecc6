//! Conversation and message routes: list conversations, page through a conversation's
//! messages, accept an inbound message (channel `api`) and queue an outbound one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::ApiState;
use crate::domain::{ChannelName, ConversationId, PhoneNumber};
use crate::messaging::inbox::InboundText;
use crate::store::messages::{self, ConversationRow, MessageRow};

/// Largest page.
pub const MAX_PAGE: usize = 200;
/// Default page.
pub const DEFAULT_PAGE: usize = 50;

/// Paging parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

fn page_limit(p: &PageParams) -> Result<usize, ApiError> {
    match p.limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}; got {n}"
        ))),
    }
}

/// A conversation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationDto {
    /// Id.
    pub id: i64,
    /// Channel (`api`, `twilio`, …).
    pub channel: String,
    /// The other party's address on the channel.
    pub address: String,
    /// The resolved contact.
    pub contact_id: Option<i64>,
    /// The contact's name, if known.
    pub contact_name: Option<String>,
    /// Number of messages.
    pub message_count: i64,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last message (RFC 3339).
    pub last_message_at: String,
}

impl From<ConversationRow> for ConversationDto {
    fn from(r: ConversationRow) -> Self {
        Self {
            id: r.id.0,
            channel: r.channel,
            address: r.address,
            contact_id: r.contact_id,
            contact_name: r.contact_name,
            message_count: r.message_count,
            created_at: r.created_at.to_rfc3339(),
            last_message_at: r.last_message_at.to_rfc3339(),
        }
    }
}

/// A page of conversations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConversationPage {
    /// Most recent first.
    pub items: Vec<ConversationDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageDto {
    /// Id.
    pub id: i64,
    /// Conversation.
    pub conversation_id: i64,
    /// Channel.
    pub channel: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Text.
    pub text: String,
    /// Media references.
    pub media: Vec<String>,
    /// `received`, `queued`, `delivered` or `failed`.
    pub status: String,
    /// Created (RFC 3339).
    pub created_at: String,
}

impl From<MessageRow> for MessageDto {
    fn from(r: MessageRow) -> Self {
        Self {
            id: r.id.0,
            conversation_id: r.conversation_id.0,
            channel: r.channel,
            direction: r.direction,
            text: r.body,
            media: r.media,
            status: r.status,
            created_at: r.created_at.to_rfc3339(),
        }
    }
}

/// A page of messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    /// Oldest first.
    pub items: Vec<MessageDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Conversations, most recent first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "messages", security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of conversations", body = ConversationPage),
        (status = 400, description = "Bad paging parameters", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list_conversations(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> Result<Json<ConversationPage>, ApiError> {
    let limit = page_limit(&p)?;
    let cursor = match p.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.split_once('_')
                .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("cursor {c:?} is not one this API returned"))
                })?,
        ),
    };
    let mut rows = state
        .store
        .read(move |c| messages::list_conversations(c, cursor, limit + 1))
        .await?;
    let next_cursor = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last()
            .map(|r| format!("{}_{}", r.last_message_at.0, r.id.0))
            .unwrap_or_default()
    });
    Ok(Json(ConversationPage {
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(format!(
            "conversation id must be a positive integer; got {raw:?}"
        ))
    })
}

/// A conversation's messages, oldest first.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Conversation id"), PageParams),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 400, description = "Bad id or paging parameters", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such conversation", body = ErrorBody)))]
pub async fn list_messages(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> Result<Json<MessagePage>, ApiError> {
    let id = ConversationId(parse_id(&id)?);
    let limit = page_limit(&p)?;
    let after = match p.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("cursor {c:?} is not one this API returned"))
        })?),
    };
    let mut rows = state
        .store
        .read(move |c| messages::list_messages(c, id, after, limit + 1))
        .await?;
    let next_cursor = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map(|r| r.id.0.to_string()).unwrap_or_default()
    });
    Ok(Json(MessagePage {
        items: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// An inbound text message for the `api` channel.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundRequest {
    /// Sender in E.164 form, e.g. `+15551234567`.
    pub from: String,
    /// The text.
    pub text: String,
    /// The sender's key for this message: retries with the same key are stored once and
    /// answered the same way. Strongly recommended.
    pub idempotency_key: Option<String>,
}

/// Where an accepted message was stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InboundAccepted {
    /// The message id.
    pub id: i64,
    /// Its conversation.
    pub conversation_id: i64,
    /// `true` when this key was accepted before (nothing new stored).
    pub replayed: bool,
}

/// Accept an inbound text message; answers once it is durably stored.
#[utoipa::path(post, path = "/api/v1/messages/inbound", tag = "messages", security(("bearer" = [])),
    request_body = InboundRequest,
    responses(
        (status = 202, description = "Stored durably (or replayed)", body = InboundAccepted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Body over server.max_body_bytes", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Invalid field or idempotency key reused", body = ErrorBody),
        (status = 503, description = "Store busy; nothing stored, retry", body = ErrorBody)))]
pub async fn post_inbound(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<InboundRequest>,
) -> Result<Response, ApiError> {
    let from =
        PhoneNumber::parse(&req.from).map_err(|e| ApiError::unprocessable(format!("from: {e}")))?;
    let accepted = state
        .inbox
        .accept(InboundText {
            channel: ChannelName::api(),
            from,
            text: req.text,
            media: Vec::new(),
            idempotency_key: req.idempotency_key,
        })
        .await?;
    let body = InboundAccepted {
        id: accepted.message_id.0,
        conversation_id: accepted.conversation_id.0,
        replayed: accepted.replayed,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// An outbound text message to queue.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutboundRequest {
    /// The channel to deliver through (must be registered).
    pub channel: String,
    /// Recipient address; E.164 for phone channels.
    pub to: String,
    /// The text.
    pub text: String,
}

/// A queued outbound message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutboundQueued {
    /// The message id.
    pub id: i64,
    /// Its conversation.
    pub conversation_id: i64,
    /// The outbox entry delivering it.
    pub outbox_id: i64,
}

/// Queue an outbound text message; it is delivered (with retries) through the outbox.
#[utoipa::path(post, path = "/api/v1/messages/outbound", tag = "messages", security(("bearer" = [])),
    request_body = OutboundRequest,
    responses(
        (status = 202, description = "Queued durably", body = OutboundQueued),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 413, description = "Body over server.max_body_bytes", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Unknown channel or invalid field", body = ErrorBody),
        (status = 503, description = "Store busy; nothing queued, retry", body = ErrorBody)))]
pub async fn post_outbound(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<OutboundRequest>,
) -> Result<Response, ApiError> {
    let channel = ChannelName::parse(&req.channel)
        .map_err(|e| ApiError::unprocessable(format!("channel: {e}")))?;
    let text = req.text.trim();
    if text.is_empty() {
        return Err(ApiError::unprocessable("text: must not be empty"));
    }
    let (to, is_phone) = match PhoneNumber::parse(&req.to) {
        Ok(p) => (p.as_str().to_owned(), true),
        Err(_) if !req.to.starts_with('+') && !req.to.trim().is_empty() => {
            (req.to.trim().to_owned(), false)
        }
        Err(e) => return Err(ApiError::unprocessable(format!("to: {e}"))),
    };
    let queued = state
        .outbox
        .send_text(&channel, &to, is_phone, text)
        .await?;
    let body = OutboundQueued {
        id: queued.message_id.0,
        conversation_id: queued.conversation_id.0,
        outbox_id: queued.outbox_id.0,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
