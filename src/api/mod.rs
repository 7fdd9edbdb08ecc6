//! The HTTP API (axum): health, metrics, version, conversations, messages, the event stream
//! and the OpenAPI document generated from the handlers.
//!
//! Architecture Invariant: only `api` knows HTTP status codes and JSON DTOs; handlers call
//! `messaging` and `store` and translate their errors in `error.rs`.

pub mod auth;
pub mod caldav;
pub mod calendar;
pub mod chat;
pub mod contacts;
pub mod error;
pub mod events;
pub mod memories;
pub mod messages;
pub mod reminders;
pub mod system;
pub mod tasks;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{EventsConfig, Secret};
use crate::events::EventBus;
use crate::messaging::inbox::Inbox;
use crate::messaging::outbox::Outbox;
use crate::platform::health::Health;
use crate::platform::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::store::Store;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The store (reads).
    pub store: Store,
    /// The inbox (inbound writes).
    pub inbox: Inbox,
    /// The outbox (outbound writes).
    pub outbox: Outbox,
    /// The event bus.
    pub events: Arc<EventBus>,
    /// Component health.
    pub health: Health,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The API token.
    pub token: Secret,
    /// Event stream settings.
    pub events_cfg: EventsConfig,
    /// Cancelled at shutdown (closes event streams).
    pub shutdown: CancellationToken,
    /// The conversation engine.
    pub orchestrator: crate::orchestrator::Orchestrator,
    /// Remembered facts.
    pub memory: crate::home::memory::Memory,
    /// Reminders and timers.
    pub reminders: crate::home::reminders::Reminders,
    /// Contacts.
    pub contacts: crate::home::contacts::Contacts,
    /// Tasks.
    pub tasks: crate::home::tasks::Tasks,
    /// Longest accepted chat text, in characters.
    pub max_text_chars: usize,
    /// The OpenAPI document, rendered once.
    pub openapi: Arc<OnceLock<String>>,
    /// CalDAV sync, when `[caldav]` is enabled and a calendar is registered.
    pub caldav: Option<crate::home::caldav::Caldav>,
    /// Appointments.
    pub calendar: crate::home::calendar::Calendar,
    /// The read-only token of `GET /calendar.ics`.
    pub calendar_feed_token: Secret,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "local-assistant",
        description = "The local API of the local-assistant home appliance. Every route except /healthz and /readyz needs `Authorization: Bearer <token>`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "system", description = "Health, readiness, metrics, version"),
        (name = "messages", description = "Conversations and messages"),
        (name = "events", description = "The live event stream"),
        (name = "memories", description = "Facts the assistant remembers"),
        (name = "contacts", description = "Contacts, caller identification, vCard"),
        (name = "reminders", description = "Reminders and timers"),
        (name = "calendar", description = "Appointments, free slots, ICS import and the subscription feed"),
        (name = "tasks", description = "Tasks (Taskwarrior-compatible)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The routes and their OpenAPI description (without state).
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::version))
        .routes(routes!(system::openapi_json))
        .routes(routes!(messages::list_conversations))
        .routes(routes!(messages::list_messages))
        .routes(routes!(messages::post_inbound))
        .routes(routes!(messages::post_outbound))
        .routes(routes!(events::stream))
        .routes(routes!(chat::chat))
        .routes(routes!(
            memories::list,
            memories::create,
            memories::erase_contact
        ))
        .routes(routes!(memories::get_one, memories::delete_one))
        .routes(routes!(caldav::sync_now, caldav::sync_state))
        .routes(routes!(contacts::list, contacts::create))
        .routes(routes!(contacts::export))
        .routes(routes!(contacts::import))
        .routes(routes!(contacts::get, contacts::patch, contacts::delete))
        .routes(routes!(reminders::list, reminders::create))
        .routes(routes!(reminders::get, reminders::patch, reminders::delete))
        .routes(routes!(reminders::snooze))
        .routes(routes!(calendar::list, calendar::create))
        .routes(routes!(calendar::free_slots))
        .routes(routes!(calendar::import))
        .routes(routes!(calendar::get, calendar::patch, calendar::delete))
        .routes(routes!(calendar::feed))
        .routes(routes!(tasks::export_tasks))
        .routes(routes!(tasks::import_tasks))
        .routes(routes!(tasks::sync_tasks))
        .routes(routes!(tasks::list_tasks, tasks::create_task))
        .routes(routes!(
            tasks::get_task,
            tasks::patch_task,
            tasks::delete_task
        ))
        .routes(routes!(tasks::complete_task))
        .routes(routes!(tasks::annotate_task))
}

/// The OpenAPI document as a value (used by tests and `openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The complete router: routes, auth, body limit, JSON 404/405, request metrics.
///
/// `channels` holds the channels' webhooks (`/twilio/...`, `/vonage/...`): they are not in the
/// OpenAPI document and skip the bearer token, since each checks its provider's signature.
pub fn router(state: ApiState, max_body_bytes: usize, channels: Router<ApiState>) -> Router {
    let (router, doc) = routes().split_for_parts();
    let json = doc.to_pretty_json().unwrap_or_else(|_| "{}".into());
    let _ = state.openapi.set(json);
    router
        .merge(channels)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_request,
        ))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Count every request and time it, by matched route (not raw path: ids would explode the
/// label set).
async fn record_request(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await.into_response();
    state
        .metrics
        .http_duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .http_requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}
