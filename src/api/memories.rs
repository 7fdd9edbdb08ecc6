//! `/api/v1/memories`: list (newest first, paged, by contact), search by meaning (`?q=`),
//! remember, read, forget one, and erase a contact's memories. Changes are announced on the
//! event bus by the memory service (`memory.stored`, `memory.deleted`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::messages::{DEFAULT_PAGE, MAX_PAGE};
use super::ApiState;
use crate::home::memory::{Fact, NewFact, Outcome};

/// A remembered fact.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemoryDto {
    /// Id.
    pub id: i64,
    /// The fact.
    pub text: String,
    /// The contact it belongs to.
    pub contact_id: Option<i64>,
    /// The conversation it was said in.
    pub conversation_id: Option<i64>,
    /// The message that said it.
    pub source_message_id: Option<i64>,
    /// Tags.
    pub tags: Vec<String>,
    /// First stored (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
    /// Similarity to the query (search results only), -1 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

impl MemoryDto {
    fn of(f: Fact, score: Option<f32>) -> Self {
        Self {
            id: f.id,
            text: f.text,
            contact_id: f.contact_id,
            conversation_id: f.conversation_id.map(|c| c.0),
            source_message_id: f.source_message_id.map(|m| m.0),
            tags: f.tags,
            created_at: f.created_at.to_rfc3339(),
            updated_at: f.updated_at.to_rfc3339(),
            score,
        }
    }
}

/// A page of memories.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemoryPage {
    /// Newest first; with `q`, best match first.
    pub items: Vec<MemoryDto>,
    /// Pass as `cursor` for the next page; absent on the last page (and for searches).
    pub next_cursor: Option<String>,
}

/// Listing and search parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Items per page (or search results), 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
    /// Only this contact's memories.
    pub contact_id: Option<i64>,
    /// Search by meaning instead of listing: best matches first, each with its `score`.
    pub q: Option<String>,
    /// With `q`: leave out matches below this cosine similarity (-1 to 1, default 0).
    pub min_score: Option<f32>,
}

/// A fact to remember.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemory {
    /// The fact, e.g. "the spare key is under the flower pot".
    pub text: String,
    /// The contact it belongs to.
    pub contact_id: Option<i64>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// What remembering did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Remembered {
    /// The stored memory.
    pub memory: MemoryDto,
    /// `created`, or `updated` when a near-identical memory took the new wording.
    pub outcome: String,
}

/// Which memories to erase together.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EraseParams {
    /// Erase every memory of this contact (required).
    pub contact_id: Option<i64>,
}

/// Erased memories.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erased {
    /// Their ids.
    pub deleted: Vec<i64>,
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(format!("id: must be a positive integer; got {raw:?}"))
    })
}

fn positive(field: &str, v: Option<i64>) -> Result<Option<i64>, ApiError> {
    match v {
        Some(n) if n <= 0 => Err(ApiError::bad_request(format!(
            "{field}: must be a positive integer; got {n}"
        ))),
        other => Ok(other),
    }
}

/// List memories (newest first) or search them by meaning (`q`).
#[utoipa::path(get, path = "/api/v1/memories", tag = "memories", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of memories, or the best matches of `q`", body = MemoryPage),
        (status = 400, description = "Bad parameter (named in the message)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 503, description = "Search needs the embedding model, which is not available", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<MemoryPage>, ApiError> {
    let limit = match p.limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit: must be 1 to {MAX_PAGE}; got {n}"
            )))
        }
    };
    let contact = positive("contact_id", p.contact_id)?;
    if let Some(q) = p.q {
        if q.trim().is_empty() {
            return Err(ApiError::bad_request("q: must not be empty"));
        }
        if p.cursor.is_some() {
            return Err(ApiError::bad_request(
                "cursor: searches are not paged; raise limit instead",
            ));
        }
        let min = p.min_score.unwrap_or(0.0);
        if !(-1.0..=1.0).contains(&min) {
            return Err(ApiError::bad_request(format!(
                "min_score: must be from -1 to 1; got {min}"
            )));
        }
        let hits = state.memory.search(&q, limit, min, contact).await?;
        return Ok(Json(MemoryPage {
            items: hits
                .into_iter()
                .map(|h| MemoryDto::of(h.fact, Some(h.score)))
                .collect(),
            next_cursor: None,
        }));
    }
    if p.min_score.is_some() {
        return Err(ApiError::bad_request("min_score: only applies with q"));
    }
    let before = match p.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("cursor: {c:?} is not one this API returned"))
        })?),
    };
    let mut rows = state.memory.list(contact, before, limit + 1).await?;
    let next_cursor = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map(|f| f.id.to_string()).unwrap_or_default()
    });
    Ok(Json(MemoryPage {
        items: rows.into_iter().map(|f| MemoryDto::of(f, None)).collect(),
        next_cursor,
    }))
}

/// Remember a fact. A near-identical memory (of the same contact) is updated instead.
#[utoipa::path(post, path = "/api/v1/memories", tag = "memories", security(("bearer" = [])),
    request_body = CreateMemory,
    responses(
        (status = 201, description = "Stored", body = Remembered),
        (status = 200, description = "A near-identical memory was updated", body = Remembered),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody),
        (status = 503, description = "The embedding model is not available, or the store is busy", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<CreateMemory>,
) -> Result<Response, ApiError> {
    if let Some(c) = req.contact_id {
        if c <= 0 {
            return Err(ApiError::unprocessable(format!(
                "contact_id: must be a positive integer; got {c}"
            )));
        }
    }
    if let Some(t) = req.tags.iter().find(|t| t.trim().is_empty()) {
        return Err(ApiError::unprocessable(format!(
            "tags: must not contain empty tags; got {t:?}"
        )));
    }
    let r = state
        .memory
        .remember(NewFact {
            text: req.text,
            contact_id: req.contact_id,
            conversation_id: None,
            source_message_id: None,
            tags: req.tags,
        })
        .await?;
    let status = match r.outcome {
        Outcome::Created => StatusCode::CREATED,
        Outcome::Updated | Outcome::Replayed => StatusCode::OK,
    };
    let outcome = match r.outcome {
        Outcome::Created => "created",
        Outcome::Updated => "updated",
        Outcome::Replayed => "replayed",
    };
    Ok((
        status,
        Json(Remembered {
            memory: MemoryDto::of(r.fact, None),
            outcome: outcome.into(),
        }),
    )
        .into_response())
}

/// Erase every memory of a contact.
#[utoipa::path(delete, path = "/api/v1/memories", tag = "memories", security(("bearer" = [])),
    params(EraseParams),
    responses(
        (status = 200, description = "Erased (possibly none)", body = Erased),
        (status = 400, description = "contact_id missing or invalid", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn erase_contact(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<EraseParams>,
) -> Result<Json<Erased>, ApiError> {
    let Some(contact) = positive("contact_id", p.contact_id)? else {
        return Err(ApiError::bad_request(
            "contact_id: required (erase one memory with DELETE /api/v1/memories/{id})",
        ));
    };
    let deleted = state.memory.forget_contact(contact).await?;
    Ok(Json(Erased { deleted }))
}

/// One memory.
#[utoipa::path(get, path = "/api/v1/memories/{id}", tag = "memories", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Memory id")),
    responses(
        (status = 200, description = "The memory", body = MemoryDto),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such memory", body = ErrorBody)))]
pub async fn get_one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<MemoryDto>, ApiError> {
    let id = parse_id(&id)?;
    match state.memory.get(id).await? {
        Some(f) => Ok(Json(MemoryDto::of(f, None))),
        None => Err(ApiError::not_found(format!("memory {id} not found"))),
    }
}

/// Forget one memory.
#[utoipa::path(delete, path = "/api/v1/memories/{id}", tag = "memories", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Memory id")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such memory", body = ErrorBody)))]
pub async fn delete_one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if state.memory.forget(vec![id]).await?.is_empty() {
        return Err(ApiError::not_found(format!("memory {id} not found")));
    }
    Ok(StatusCode::NO_CONTENT)
}
