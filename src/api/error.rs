//! API errors: every failure is JSON `{"error":{"code":"…","message":"…"}}` with the right
//! status, and extractors whose rejections are turned into that shape.
//!
//! Architecture Invariant: only `api` maps errors to HTTP status codes.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::home::contacts::ContactError;
use crate::home::memory::MemoryError;
use crate::home::reminders::ReminderError;
use crate::messaging::inbox::InboxError;
use crate::messaging::outbox::OutboxError;
use crate::store::StoreError;

/// The error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error's code and message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `payload_too_large`.
    pub code: String,
    /// What was wrong, for people.
    pub message: String,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// Status.
    pub status: StatusCode,
    /// Code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    /// An error with the default code for `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code: default_code(status),
            message: message.into(),
        }
    }
    /// Set a more specific code.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 422.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

fn default_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound { .. } => Self::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::IdempotencyConflict { .. } => {
                Self::unprocessable(e.to_string()).code("idempotency_conflict")
            }
            _ if e.is_retryable() => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{e}; nothing was stored"),
            ),
            _ => {
                tracing::error!(error = %e, "store error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal database error; see the log",
                )
            }
        }
    }
}

impl From<ContactError> for ApiError {
    fn from(e: ContactError) -> Self {
        match e {
            ContactError::Invalid { .. } => Self::unprocessable(e.to_string()),
            ContactError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, e.to_string()).code("conflict")
            }
            ContactError::NotFound(_) => Self::not_found(e.to_string()),
            ContactError::VCard(_) => Self::unprocessable(e.to_string()).code("invalid_vcard"),
            ContactError::Store(s) => s.into(),
        }
    }
}

impl From<ReminderError> for ApiError {
    fn from(e: ReminderError) -> Self {
        match e {
            ReminderError::Invalid { .. } => Self::unprocessable(e.to_string()),
            ReminderError::NotFound(_) => Self::not_found(e.to_string()),
            ReminderError::State { .. } => {
                Self::new(StatusCode::CONFLICT, e.to_string()).code("conflict")
            }
            ReminderError::Store(s) => s.into(),
        }
    }
}

impl From<InboxError> for ApiError {
    fn from(e: InboxError) -> Self {
        match e {
            InboxError::Invalid { .. } => Self::unprocessable(e.to_string()),
            InboxError::Store(s) => s.into(),
        }
    }
}

impl From<OutboxError> for ApiError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::UnknownChannel { .. } => {
                Self::unprocessable(e.to_string()).code("unknown_channel")
            }
            OutboxError::Store(s) => s.into(),
        }
    }
}

impl From<MemoryError> for ApiError {
    fn from(e: MemoryError) -> Self {
        match e {
            MemoryError::Invalid { .. } => Self::unprocessable(e.to_string()),
            MemoryError::Store(s) => s.into(),
            MemoryError::Unavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).code("memory_unavailable")
            }
            MemoryError::WorkerGone => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            MemoryError::Model { .. } | MemoryError::Embed(_) => {
                tracing::error!(error = %e, "memory error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s: 400 malformed JSON, 413 too large,
/// 415 wrong content type, 422 wrong fields or types.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    let status = r.status();
    let message = match r {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a request body with Content-Type: application/json".to_owned()
        }
        JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            "request body is larger than the limit (server.max_body_bytes)".to_owned()
        }
        _ => r.body_text(),
    };
    ApiError::new(status, message)
}

/// `Query<T>` whose rejections are 400 [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(r) => Err(query_rejection(&r)),
        }
    }
}

fn query_rejection(r: &QueryRejection) -> ApiError {
    ApiError::bad_request(r.body_text())
}
