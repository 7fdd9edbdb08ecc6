//! System routes: liveness, readiness, metrics, version and the OpenAPI document.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::ApiState;
use crate::platform::health::ComponentStatus;
use crate::platform::metrics::CONTENT_TYPE;
use crate::store::migrations;

/// Liveness answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Healthz {
    /// Always `ok` while the process serves HTTP.
    pub status: String,
}

/// Readiness answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readyz {
    /// Whether every component is ready.
    pub ready: bool,
    /// Each component's state.
    pub components: BTreeMap<String, ComponentStatus>,
}

/// Version answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Version {
    /// `local-assistant`.
    pub name: String,
    /// The release.
    pub version: String,
    /// Database schema version this binary writes.
    pub schema_version: i64,
    /// CPU architecture of the build.
    pub arch: String,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "Alive", body = Healthz)))]
pub async fn healthz() -> Json<Healthz> {
    Json(Healthz {
        status: "ok".into(),
    })
}

/// Readiness: every component's state; 503 until all are ready.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses(
        (status = 200, description = "Ready", body = Readyz),
        (status = 503, description = "Not ready yet (or stopping)", body = Readyz)))]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let ready = state.health.is_ready();
    let body = Readyz {
        ready,
        components: state.health.snapshot(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody)))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    if let Err(e) = state.outbox.refresh_metrics().await {
        tracing::warn!(error = %e, "cannot refresh queue depth metrics");
    }
    state
        .metrics
        .event_subscribers
        .set(i64::try_from(state.events.subscribers()).unwrap_or(i64::MAX));
    state
        .metrics
        .store_write_queue
        .set(i64::try_from(state.store.queued_writes()).unwrap_or(i64::MAX));
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// The running version.
#[utoipa::path(get, path = "/api/v1/version", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "Version", body = Version),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody)))]
pub async fn version() -> Json<Version> {
    Json(Version {
        name: env!("CARGO_PKG_NAME").into(),
        version: env!("CARGO_PKG_VERSION").into(),
        schema_version: migrations::latest_version(),
        arch: std::env::consts::ARCH.into(),
    })
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system", security(("bearer" = [])),
    responses(
        (status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object),
        (status = 401, description = "Missing or wrong token", body = super::error::ErrorBody)))]
pub async fn openapi_json(State(state): State<ApiState>) -> Response {
    let body = state.openapi.get().cloned().unwrap_or_else(|| "{}".into());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
