//! CalDAV sync routes: run a sync now and read the sync state.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

use super::error::{ApiError, ErrorBody};
use super::ApiState;
use crate::home::caldav::{CaldavError, SyncReport, SyncStatus};

/// What one sync run did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncResult {
    /// Local creates and edits sent to the server.
    pub pushed: u32,
    /// Server creates and edits applied locally.
    pub pulled: u32,
    /// Local deletes sent to the server.
    pub deleted_remote: u32,
    /// Server deletes applied locally.
    pub deleted_local: u32,
    /// Deletes in both directions (`deleted_remote + deleted_local`).
    pub deleted: u32,
    /// Events changed on both sides: the server's version was applied and the local one kept
    /// in the audit log.
    pub conflicts: u32,
    /// Server objects skipped because they have no UID.
    pub skipped: u32,
}

impl From<SyncReport> for SyncResult {
    fn from(r: SyncReport) -> Self {
        Self {
            pushed: r.pushed,
            pulled: r.pulled,
            deleted_remote: r.deleted_remote,
            deleted_local: r.deleted_local,
            deleted: r.deleted_remote + r.deleted_local,
            conflicts: r.conflicts,
            skipped: r.skipped,
        }
    }
}

/// The sync state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncState {
    /// Whether `[caldav]` is enabled.
    pub enabled: bool,
    /// The calendar collection in use, once found.
    pub collection: Option<String>,
    /// Events known to be in sync.
    pub items: usize,
    /// When the last run finished (ms since the epoch).
    pub last_sync_at: Option<i64>,
    /// Why the last run failed.
    pub last_error: Option<String>,
}

impl From<CaldavError> for ApiError {
    fn from(e: CaldavError) -> Self {
        match e {
            CaldavError::Disabled => {
                Self::new(StatusCode::CONFLICT, e.to_string()).code("caldav_disabled")
            }
            CaldavError::Store(s) => s.into(),
            _ if e.is_remote() => {
                Self::new(StatusCode::BAD_GATEWAY, e.to_string()).code("caldav_server")
            }
            _ if e.is_retryable() => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            _ => {
                tracing::error!(error = %e, "caldav sync failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

/// Run a CalDAV sync now (waits for a run in progress) and return what it did.
#[utoipa::path(post, path = "/api/v1/calendar/sync", tag = "calendar", security(("bearer" = [])),
    responses(
        (status = 200, description = "The sync ran", body = SyncResult),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 409, description = "CalDAV sync is not enabled", body = ErrorBody),
        (status = 502, description = "The CalDAV server failed or refused; the message names the URL and status", body = ErrorBody),
        (status = 503, description = "Busy or unreachable; retry", body = ErrorBody)))]
pub async fn sync_now(State(state): State<ApiState>) -> Result<Json<SyncResult>, ApiError> {
    let caldav = state.caldav.as_ref().ok_or(CaldavError::Disabled)?;
    Ok(Json(caldav.sync_now().await?.into()))
}

/// The CalDAV sync state.
#[utoipa::path(get, path = "/api/v1/calendar/sync", tag = "calendar", security(("bearer" = [])),
    responses(
        (status = 200, description = "The sync state", body = SyncState),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn sync_state(State(state): State<ApiState>) -> Result<Json<SyncState>, ApiError> {
    let status = match &state.caldav {
        Some(c) => c.status().await?,
        None => SyncStatus::default(),
    };
    Ok(Json(SyncState {
        enabled: state.caldav.is_some(),
        collection: status.collection,
        items: status.items,
        last_sync_at: status.last_sync_at,
        last_error: status.last_error,
    }))
}
