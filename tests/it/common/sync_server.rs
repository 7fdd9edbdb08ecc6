//! A taskchampion sync server for tests: the reference protocol logic of
//! `taskchampion-sync-server-core` (versions and snapshots kept in memory) behind a thin axum
//! front that speaks the TaskChampion HTTP protocol as the reference `taskchampion-sync-server`
//! does: the same routes, headers, content types and status codes (200, 400, 404, 409, 410).
//!
//! The core's futures are not `Send` (its storage transactions are `?Send`), while axum's
//! handlers must be: each protocol call runs on a blocking thread that drives it to the end.
//! Every request is logged (method, path, status and body) so tests can see what went over the
//! wire, for example that the server only ever held ciphertext.

use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use taskchampion_sync_server_core::{
    AddVersionResult, ClientId, GetVersionResult, InMemoryStorage, Server, ServerConfig,
    ServerError, SnapshotUrgency, VersionId, NIL_VERSION_ID,
};
use tokio::task::JoinHandle;

use super::TestResult;

/// Content type of history segments (opaque, encrypted by the client).
pub const HISTORY_SEGMENT_CONTENT_TYPE: &str = "application/vnd.taskchampion.history-segment";
/// Content type of snapshots (opaque, encrypted by the client).
pub const SNAPSHOT_CONTENT_TYPE: &str = "application/vnd.taskchampion.snapshot";
/// The version id header.
pub const VERSION_ID_HEADER: &str = "X-Version-Id";
/// The client id header.
pub const CLIENT_ID_HEADER: &str = "X-Client-Id";
/// The parent version id header.
pub const PARENT_VERSION_ID_HEADER: &str = "X-Parent-Version-Id";
/// The snapshot request header (`urgency=low` or `urgency=high`).
pub const SNAPSHOT_REQUEST_HEADER: &str = "X-Snapshot-Request";

/// Largest history segment or snapshot accepted, as the reference server: 100 MB.
const MAX_SIZE: usize = 100 * 1024 * 1024;

/// One request the server answered.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `GET` or `POST`.
    pub method: String,
    /// The path, e.g. `/v1/client/add-version/<uuid>`.
    pub path: String,
    /// The response status.
    pub status: u16,
    /// The request body.
    pub request_body: Bytes,
}

#[derive(Clone)]
struct AppState {
    server: Arc<Server>,
}

/// A running sync server on 127.0.0.1 (an ephemeral port); stops when dropped.
pub struct SyncServer {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    log: Arc<Mutex<Vec<Exchange>>>,
    task: JoinHandle<()>,
}

impl SyncServer {
    /// Start a server with the core's default snapshot policy and empty in-memory storage.
    pub async fn start() -> TestResult<Self> {
        let server = Server::new(ServerConfig::default(), InMemoryStorage::new());
        let state = AppState {
            server: Arc::new(server),
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route(
                "/v1/client/add-version/{parent_version_id}",
                post(add_version),
            )
            .route(
                "/v1/client/get-child-version/{parent_version_id}",
                get(get_child_version),
            )
            .route("/v1/client/add-snapshot/{version_id}", post(add_snapshot))
            .route("/v1/client/snapshot", get(get_snapshot))
            .with_state(state)
            // The logging layer below buffers and bounds every body (MAX_SIZE + 1).
            .layer(DefaultBodyLimit::disable())
            .layer(middleware::from_fn_with_state(log.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("test sync server stopped: {e}");
            }
        });
        Ok(Self { url, log, task })
    }

    /// Every request answered so far, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        match self.log.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How many requests of `method` went to paths starting with `path_prefix`, by status.
    pub fn count(&self, method: &str, path_prefix: &str, status: u16) -> usize {
        self.exchanges()
            .iter()
            .filter(|e| e.method == method && e.path.starts_with(path_prefix) && e.status == status)
            .count()
    }
}

impl Drop for SyncServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Log each exchange (the body is buffered so it can be both logged and handled).
async fn record(
    State(log): State<Arc<Mutex<Vec<Exchange>>>>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_SIZE + 1).await else {
        return error(StatusCode::BAD_REQUEST, "overflow").into_response();
    };
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    let exchange = Exchange {
        method,
        path,
        status: resp.status().as_u16(),
        request_body: bytes,
    };
    match log.lock() {
        Ok(mut l) => l.push(exchange),
        Err(poisoned) => poisoned.into_inner().push(exchange),
    }
    resp
}

/// An error answer: a status and a plain-text message, as actix-web's `Error*` helpers give.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn error(status: StatusCode, message: &str) -> Refusal {
    Refusal(status, message.to_owned())
}

/// The reference maps `NoSuchClient` to 404 and anything else to 500.
fn server_error(e: ServerError) -> Refusal {
    match e {
        ServerError::NoSuchClient => error(StatusCode::NOT_FOUND, &e.to_string()),
        ServerError::Other(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

/// Run a core call (a non-`Send` future) to completion on a blocking thread.
async fn run_core<T, F, Fut>(state: &AppState, f: F) -> Result<T, Refusal>
where
    T: Send + 'static,
    F: FnOnce(Arc<Server>) -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let server = state.server.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(f(server)))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

/// `X-Client-Id`: missing or not a UUID is a 400 (no allow-list here).
fn client_id(headers: &HeaderMap) -> Result<ClientId, Refusal> {
    headers
        .get(CLIENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| ClientId::parse_str(v).ok())
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "bad x-client-id"))
}

/// A version id from the path; actix answers a path that does not deserialize with 404.
fn version_id(raw: &str) -> Result<VersionId, Refusal> {
    VersionId::parse_str(raw).map_err(|_| error(StatusCode::NOT_FOUND, "bad version id"))
}

/// The media type of the request (without parameters), as actix's `content_type()`.
fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("")
}

fn uuid_header(v: VersionId) -> Result<HeaderValue, Refusal> {
    HeaderValue::from_str(&v.to_string())
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

/// `POST /v1/client/add-version/{parent}`: 200 with `X-Version-Id` (and `X-Snapshot-Request`
/// when a snapshot is wanted), or 409 with the expected `X-Parent-Version-Id`. An unknown
/// client is created on its first version.
async fn add_version(
    State(state): State<AppState>,
    Path(parent): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let parent_version_id = version_id(&parent)?;
    if content_type(&headers) != HISTORY_SEGMENT_CONTENT_TYPE {
        return Err(error(StatusCode::BAD_REQUEST, "Bad content-type"));
    }
    let client_id = client_id(&headers)?;
    if body.len() > MAX_SIZE {
        return Err(error(StatusCode::BAD_REQUEST, "overflow"));
    }
    if body.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "Empty body"));
    }
    let segment = body.to_vec();
    let result = run_core(&state, move |server| async move {
        loop {
            match server
                .add_version(client_id, parent_version_id, segment.clone())
                .await
            {
                Err(ServerError::NoSuchClient) => {
                    let mut txn = server.txn(client_id).await?;
                    txn.new_client(NIL_VERSION_ID).await?;
                    txn.commit().await?;
                }
                other => return other,
            }
        }
    })
    .await?;
    match result {
        Ok((AddVersionResult::Ok(version_id), urgency)) => {
            let mut resp = StatusCode::OK.into_response();
            resp.headers_mut()
                .insert(VERSION_ID_HEADER, uuid_header(version_id)?);
            let urgency = match urgency {
                SnapshotUrgency::None => None,
                SnapshotUrgency::Low => Some("urgency=low"),
                SnapshotUrgency::High => Some("urgency=high"),
            };
            if let Some(u) = urgency {
                resp.headers_mut()
                    .insert(SNAPSHOT_REQUEST_HEADER, HeaderValue::from_static(u));
            }
            Ok(resp)
        }
        Ok((AddVersionResult::ExpectedParentVersion(expected), _)) => {
            let mut resp = StatusCode::CONFLICT.into_response();
            resp.headers_mut()
                .insert(PARENT_VERSION_ID_HEADER, uuid_header(expected)?);
            Ok(resp)
        }
        Err(e) => Err(server_error(e)),
    }
}

/// `GET /v1/client/get-child-version/{parent}`: 200 with the segment, `X-Version-Id` and
/// `X-Parent-Version-Id`; 404 when there is no child yet (or no such client); 410 when the
/// parent is not in the history any more.
async fn get_child_version(
    State(state): State<AppState>,
    Path(parent): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let parent_version_id = version_id(&parent)?;
    let client_id = client_id(&headers)?;
    let result = run_core(&state, move |server| async move {
        server.get_child_version(client_id, parent_version_id).await
    })
    .await?;
    match result {
        Ok(GetVersionResult::Success {
            version_id,
            parent_version_id,
            history_segment,
        }) => {
            let mut resp = (StatusCode::OK, history_segment).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(HISTORY_SEGMENT_CONTENT_TYPE),
            );
            h.insert(VERSION_ID_HEADER, uuid_header(version_id)?);
            h.insert(PARENT_VERSION_ID_HEADER, uuid_header(parent_version_id)?);
            Ok(resp)
        }
        Ok(GetVersionResult::NotFound) => Err(error(StatusCode::NOT_FOUND, "no such version")),
        Ok(GetVersionResult::Gone) => Err(error(StatusCode::GONE, "version has been deleted")),
        Err(ServerError::NoSuchClient) => Err(error(StatusCode::NOT_FOUND, "no such client")),
        Err(e) => Err(server_error(e)),
    }
}

/// `POST /v1/client/add-snapshot/{version}`: 200 even when the core declines the snapshot.
async fn add_snapshot(
    State(state): State<AppState>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let version_id = version_id(&version)?;
    if content_type(&headers) != SNAPSHOT_CONTENT_TYPE {
        return Err(error(StatusCode::BAD_REQUEST, "Bad content-type"));
    }
    let client_id = client_id(&headers)?;
    if body.len() > MAX_SIZE {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Snapshot over maximum allowed size",
        ));
    }
    if body.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "No snapshot supplied"));
    }
    let data = body.to_vec();
    run_core(&state, move |server| async move {
        server.add_snapshot(client_id, version_id, data).await
    })
    .await?
    .map_err(server_error)?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/client/snapshot`: 200 with the snapshot and its `X-Version-Id`, or 404.
async fn get_snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let client_id = client_id(&headers)?;
    let snapshot = run_core(&state, move |server| async move {
        server.get_snapshot(client_id).await
    })
    .await?
    .map_err(server_error)?;
    let Some((version_id, data)) = snapshot else {
        return Err(error(StatusCode::NOT_FOUND, "no snapshot"));
    };
    let mut resp = (StatusCode::OK, data).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SNAPSHOT_CONTENT_TYPE),
    );
    h.insert(VERSION_ID_HEADER, uuid_header(version_id)?);
    Ok(resp)
}
