//! Task routes under `/api/v1/tasks`: list (filters, urgency order, pagination), get, create,
//! patch (including progress), complete, delete, annotate, Taskwarrior JSON export/import and
//! sync with a taskchampion sync server.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::ApiState;
use crate::home::tasks::{ImportReport, SyncReport, Task, TaskEdit, TaskError, TaskFilter};

/// Largest page.
pub const MAX_PAGE: usize = 500;
/// Default page.
pub const DEFAULT_PAGE: usize = 100;

/// List parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TaskListParams {
    /// Project, or a parent project (`Home` matches `Home.Garden`).
    pub project: Option<String>,
    /// Having this tag.
    pub tag: Option<String>,
    /// `pending`, `waiting`, `completed`, `deleted`, `recurring` or `all`; default: pending
    /// and waiting.
    pub status: Option<String>,
    /// Items per page, 1 to 500 (default 100).
    pub limit: Option<usize>,
    /// Items to skip.
    pub offset: Option<usize>,
}

/// Export parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TaskExportParams {
    /// Project filter.
    pub project: Option<String>,
    /// Tag filter.
    pub tag: Option<String>,
    /// Status filter; default: `all` (as `task export`).
    pub status: Option<String>,
}

/// A page of tasks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskPage {
    /// Most urgent first.
    pub items: Vec<Task>,
    /// Tasks matching the filter.
    pub total: usize,
    /// Pass as `offset` for the next page; absent on the last page.
    pub next_offset: Option<usize>,
}

/// An annotation to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotateRequest {
    /// Its text.
    pub text: String,
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match &e {
            TaskError::Invalid { .. } => Self::unprocessable(e.to_string()),
            TaskError::Import { .. } => Self::unprocessable(e.to_string()).code("import_invalid"),
            TaskError::NotFound(_) => Self::not_found(e.to_string()),
            TaskError::Storage(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            TaskError::SyncNotConfigured => {
                Self::new(StatusCode::CONFLICT, e.to_string()).code("sync_not_configured")
            }
            TaskError::Sync(_) => {
                Self::new(StatusCode::BAD_GATEWAY, e.to_string()).code("sync_failed")
            }
        }
    }
}

fn parse_uuid(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::bad_request(format!("uuid: {s:?} is not a UUID")))
}

/// List tasks, most urgent first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", security(("bearer" = [])),
    params(TaskListParams),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        (status = 400, description = "Bad paging parameters", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 422, description = "Bad filter (names the field)", body = ErrorBody)))]
pub async fn list_tasks(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<TaskListParams>,
) -> Result<Json<TaskPage>, ApiError> {
    let limit = match p.limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be 1 to {MAX_PAGE}; got {n}"
            )))
        }
    };
    let offset = p.offset.unwrap_or(0);
    let filter = TaskFilter {
        project: p.project,
        tag: p.tag,
        status: p.status,
        words: None,
    };
    let all = state.tasks.list(&filter, Timestamp::now()).await?;
    let total = all.len();
    let items: Vec<Task> = all.into_iter().skip(offset).take(limit).collect();
    let next_offset = (offset + items.len() < total).then_some(offset + items.len());
    Ok(Json(TaskPage {
        items,
        total,
        next_offset,
    }))
}

/// One task.
#[utoipa::path(get, path = "/api/v1/tasks/{uuid}", tag = "tasks", security(("bearer" = [])),
    params(("uuid" = String, Path, description = "Task UUID")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 400, description = "Bad UUID", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody)))]
pub async fn get_task(
    State(state): State<ApiState>,
    Path(uuid): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(
        state
            .tasks
            .get(parse_uuid(&uuid)?, Timestamp::now())
            .await?,
    ))
}

/// Create a task. Body: `description` (required), `project`, `tags`, `priority` (H/M/L),
/// `due`, `wait`, `scheduled`, `until` (RFC 3339), `depends` (UUIDs), `progress`
/// (`{"percent": n}` or `{"done": a, "total": b}`), `annotation`.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", security(("bearer" = [])),
    request_body(content = Object, description = "The task's fields"),
    responses(
        (status = 201, description = "Created", body = Task),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody)))]
pub async fn create_task(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    let edit = TaskEdit::from_json(&body)?;
    let t = state.tasks.create(edit, Timestamp::now()).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Change a task: any create field, `null` clears it; also `status`
/// (pending/completed/deleted) and `active` (start/stop).
#[utoipa::path(patch, path = "/api/v1/tasks/{uuid}", tag = "tasks", security(("bearer" = [])),
    params(("uuid" = String, Path, description = "Task UUID")),
    request_body(content = Object, description = "Fields to change"),
    responses(
        (status = 200, description = "The changed task", body = Task),
        (status = 400, description = "Malformed JSON or UUID", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody)))]
pub async fn patch_task(
    State(state): State<ApiState>,
    Path(uuid): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Task>, ApiError> {
    let uuid = parse_uuid(&uuid)?;
    let edit = TaskEdit::from_json(&body)?;
    Ok(Json(
        state.tasks.update(uuid, edit, Timestamp::now()).await?,
    ))
}

/// Mark a task done.
#[utoipa::path(post, path = "/api/v1/tasks/{uuid}/complete", tag = "tasks", security(("bearer" = [])),
    params(("uuid" = String, Path, description = "Task UUID")),
    responses(
        (status = 200, description = "The completed task", body = Task),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody)))]
pub async fn complete_task(
    State(state): State<ApiState>,
    Path(uuid): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(
        state
            .tasks
            .complete(parse_uuid(&uuid)?, Timestamp::now())
            .await?,
    ))
}

/// Add an annotation.
#[utoipa::path(post, path = "/api/v1/tasks/{uuid}/annotations", tag = "tasks", security(("bearer" = [])),
    params(("uuid" = String, Path, description = "Task UUID")),
    request_body = AnnotateRequest,
    responses(
        (status = 200, description = "The annotated task", body = Task),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 422, description = "Empty text", body = ErrorBody)))]
pub async fn annotate_task(
    State(state): State<ApiState>,
    Path(uuid): Path<String>,
    ApiJson(body): ApiJson<AnnotateRequest>,
) -> Result<Json<Task>, ApiError> {
    let uuid = parse_uuid(&uuid)?;
    Ok(Json(
        state
            .tasks
            .annotate(uuid, body.text, Timestamp::now())
            .await?,
    ))
}

/// Delete a task (status `deleted`, kept as Taskwarrior does).
#[utoipa::path(delete, path = "/api/v1/tasks/{uuid}", tag = "tasks", security(("bearer" = [])),
    params(("uuid" = String, Path, description = "Task UUID")),
    responses(
        (status = 200, description = "The deleted task", body = Task),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody)))]
pub async fn delete_task(
    State(state): State<ApiState>,
    Path(uuid): Path<String>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(
        state
            .tasks
            .delete(parse_uuid(&uuid)?, Timestamp::now())
            .await?,
    ))
}

/// Every task as Taskwarrior 2.6 `task export` JSON.
#[utoipa::path(get, path = "/api/v1/tasks/export", tag = "tasks", security(("bearer" = [])),
    params(TaskExportParams),
    responses(
        (status = 200, description = "A JSON array as `task export` writes it", body = Object),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 422, description = "Bad filter", body = ErrorBody)))]
pub async fn export_tasks(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<TaskExportParams>,
) -> Result<Response, ApiError> {
    let filter = TaskFilter {
        project: p.project,
        tag: p.tag,
        status: Some(p.status.unwrap_or_else(|| "all".into())),
        words: None,
    };
    let v = state.tasks.export(&filter, Timestamp::now()).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response())
}

/// Import Taskwarrior JSON (a `task export` array, or one task object per line). All tasks
/// are checked first; one bad task (its line and field named) imports nothing.
#[utoipa::path(post, path = "/api/v1/tasks/import", tag = "tasks", security(("bearer" = [])),
    request_body(content = String, description = "Taskwarrior JSON", content_type = "application/json"),
    responses(
        (status = 200, description = "Imported", body = ImportReport),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 422, description = "A task is invalid (line and field named)", body = ErrorBody)))]
pub async fn import_tasks(
    State(state): State<ApiState>,
    body: String,
) -> Result<Json<ImportReport>, ApiError> {
    Ok(Json(state.tasks.import(&body).await?))
}

/// Sync with the configured taskchampion sync server.
#[utoipa::path(post, path = "/api/v1/tasks/sync", tag = "tasks", security(("bearer" = [])),
    responses(
        (status = 200, description = "Synced", body = SyncReport),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 409, description = "Sync is not configured", body = ErrorBody),
        (status = 502, description = "The sync server failed", body = ErrorBody)))]
pub async fn sync_tasks(State(state): State<ApiState>) -> Result<Json<SyncReport>, ApiError> {
    Ok(Json(state.tasks.sync().await?))
}
