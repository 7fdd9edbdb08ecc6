//! Reminder and timer routes: list (filters, pagination), create, get, patch (text, due,
//! delivery target, snooze), snooze, and cancel.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Zoned;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::ApiState;
use crate::domain::{ChannelName, ConversationId, UnixMillis};
use crate::home::reminders::{DeliveryTarget, Filter, Kind, NewReminder, Reminder, Status};
use crate::orchestrator::tools::{parse_repeat, repeat_arg};

const MAX_PAGE: usize = 200;

/// Where a reminder is delivered.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetDto {
    /// Channel (`local` is the speaker).
    pub channel: String,
    /// Address on it (`speaker` for `local`; E.164 for phone channels).
    pub address: String,
}

/// A reminder or timer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReminderDto {
    /// Id.
    pub id: i64,
    /// `reminder` or `timer`.
    pub kind: String,
    /// Conversation it belongs to.
    pub conversation_id: i64,
    /// Text or timer label.
    pub text: String,
    /// Next due time (RFC 3339 with the zone, e.g. `2026-11-26T17:00:00+01:00[Europe/Berlin]`).
    pub due: String,
    /// Recurrence (`daily`, `weekly:mon,thu`, `monthly:4`, `every:SECONDS`).
    pub repeat: Option<String>,
    /// `active`, `done` or `cancelled`.
    pub status: String,
    /// Times fired.
    pub fire_count: i64,
    /// Times snoozed.
    pub snooze_count: i64,
    /// Last fired (RFC 3339).
    pub last_fired_at: Option<String>,
    /// Delivery target; absent: the conversation's channel.
    pub deliver_to: Option<TargetDto>,
}

impl From<Reminder> for ReminderDto {
    fn from(r: Reminder) -> Self {
        Self {
            id: r.id,
            kind: r.kind.as_str().to_owned(),
            conversation_id: r.conversation_id.0,
            text: r.text,
            due: r.due.to_string(),
            repeat: r.rule.as_ref().map(repeat_arg),
            status: r.status.as_str().to_owned(),
            fire_count: r.fire_count,
            snooze_count: r.snooze_count,
            last_fired_at: r.last_fired_at.map(UnixMillis::to_rfc3339),
            deliver_to: r.target.map(|t| TargetDto {
                channel: t.channel,
                address: t.address,
            }),
        }
    }
}

/// Filters and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReminderQuery {
    /// `reminder` or `timer`.
    pub kind: Option<String>,
    /// `active`, `done` or `cancelled`.
    pub status: Option<String>,
    /// Only this conversation.
    pub conversation_id: Option<i64>,
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// Items to skip (`next_offset` of the previous page).
    pub offset: Option<usize>,
}

/// A page of reminders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReminderPage {
    /// Soonest first.
    pub items: Vec<ReminderDto>,
    /// How many match in all.
    pub total: i64,
    /// Pass as `offset` for the next page; absent on the last page.
    pub next_offset: Option<usize>,
}

fn field(name: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable(format!("{name}: {message}"))
}

/// Reminders and timers, soonest first.
#[utoipa::path(get, path = "/api/v1/reminders", tag = "reminders", security(("bearer" = [])),
    params(ReminderQuery),
    responses(
        (status = 200, description = "A page of reminders", body = ReminderPage),
        (status = 400, description = "Bad filter or paging parameter (named)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ReminderQuery>,
) -> Result<Json<ReminderPage>, ApiError> {
    let bad = |m: String| ApiError::bad_request(m);
    let limit = match p.limit {
        None => 50,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => return Err(bad(format!("limit must be 1 to {MAX_PAGE}; got {n}"))),
    };
    let kind = match p.kind.as_deref() {
        None => None,
        Some(k) => Some(
            Kind::parse(k)
                .ok_or_else(|| bad(format!("kind must be reminder or timer; got {k:?}")))?,
        ),
    };
    let status = match p.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            bad(format!(
                "status must be active, done or cancelled; got {s:?}"
            ))
        })?),
    };
    let offset = p.offset.unwrap_or(0);
    let (items, total) = state
        .reminders
        .query(Filter {
            kind,
            status,
            conversation_id: p.conversation_id.map(ConversationId),
            limit,
            offset,
        })
        .await?;
    let next = offset + items.len();
    Ok(Json(ReminderPage {
        next_offset: (i64::try_from(next).unwrap_or(i64::MAX) < total).then_some(next),
        items: items.into_iter().map(Into::into).collect(),
        total,
    }))
}

/// A new reminder or timer.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReminder {
    /// `reminder` (default) or `timer`.
    pub kind: Option<String>,
    /// What to remind of (required for a reminder; a timer's optional label).
    pub text: Option<String>,
    /// When: RFC 3339 with a zone (`2026-11-26T17:00:00+01:00[Europe/Berlin]`) or offset
    /// (`2026-11-26T16:00:00Z`, read in the device time zone).
    pub due: Option<String>,
    /// Instead of `due`: this many seconds from now.
    pub in_seconds: Option<i64>,
    /// Recurrence: `daily`, `weekly:mon,thu`, `monthly:4` or `every:SECONDS`.
    pub repeat: Option<String>,
    /// The conversation to deliver it to; default: the API's own conversation.
    pub conversation_id: Option<i64>,
    /// Deliver somewhere else than the conversation's channel.
    pub deliver_to: Option<TargetDto>,
}

fn parse_due(state: &ApiState, raw: &str) -> Result<Zoned, ApiError> {
    raw.parse::<Zoned>()
        .or_else(|_| {
            raw.parse::<jiff::Timestamp>()
                .map(|t| t.to_zoned(state.orchestrator.timezone()))
        })
        .map_err(|e| {
            field(
                "due",
                format!("must be an RFC 3339 time such as 2026-11-26T17:00:00+01:00[Europe/Berlin]; got {raw:?} ({e})"),
            )
        })
}

fn parse_target(t: TargetDto) -> Result<DeliveryTarget, ApiError> {
    let channel = ChannelName::parse(&t.channel).map_err(|e| field("deliver_to.channel", e))?;
    let address = t.address.trim();
    if address.is_empty() || address.len() > 200 || address.chars().any(char::is_control) {
        return Err(field(
            "deliver_to.address",
            "must be 1-200 printable characters",
        ));
    }
    Ok(DeliveryTarget {
        channel: channel.as_str().to_owned(),
        address: address.to_owned(),
    })
}

/// Create a reminder or timer.
#[utoipa::path(post, path = "/api/v1/reminders", tag = "reminders", security(("bearer" = [])),
    request_body = CreateReminder,
    responses(
        (status = 201, description = "Created", body = ReminderDto),
        (status = 404, description = "No such conversation", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<CreateReminder>,
) -> Result<Response, ApiError> {
    let kind = match req.kind.as_deref() {
        None => Kind::Reminder,
        Some(k) => Kind::parse(k)
            .ok_or_else(|| field("kind", format!("must be reminder or timer; got {k:?}")))?,
    };
    let text = req.text.as_deref().unwrap_or("").trim().to_owned();
    if kind == Kind::Reminder && text.is_empty() {
        return Err(field("text", "is required for a reminder"));
    }
    if text.chars().count() > 1000 {
        return Err(field("text", "must be at most 1000 characters"));
    }
    let now = jiff::Timestamp::now().to_zoned(state.orchestrator.timezone());
    let due = match (req.due.as_deref(), req.in_seconds) {
        (Some(_), Some(_)) => return Err(field("due", "give either due or in_seconds, not both")),
        (Some(d), None) => parse_due(&state, d)?,
        (None, Some(s)) if (1..=366 * 86_400).contains(&s) => now
            .checked_add(jiff::SignedDuration::from_secs(s))
            .map_err(|e| field("in_seconds", e))?,
        (None, Some(s)) => {
            return Err(field(
                "in_seconds",
                format!("must be from 1 to 31622400; got {s}"),
            ))
        }
        (None, None) => return Err(field("due", "is required (or in_seconds)")),
    };
    let rule = match req.repeat.as_deref() {
        None | Some("") => None,
        Some(r) => Some(parse_repeat(r).ok_or_else(|| {
            field(
                "repeat",
                format!("must be daily, weekly:mon,thu, monthly:N or every:SECONDS (at least 60); got {r:?}"),
            )
        })?),
    };
    if rule.is_none() && due <= now {
        return Err(field("due", format!("{due} is in the past")));
    }
    let target = req.deliver_to.map(parse_target).transpose()?;
    let conversation_id = match req.conversation_id {
        Some(id) => {
            let exists = state
                .store
                .read(move |c| crate::orchestrator::sql::conversation(c, ConversationId(id)))
                .await?;
            if exists.is_none() {
                return Err(ApiError::not_found(format!(
                    "conversation_id: no conversation {id}"
                )));
            }
            ConversationId(id)
        }
        None => {
            state
                .store
                .write(|c| {
                    crate::store::messages::conversation_for(
                        c,
                        "api",
                        "api",
                        None,
                        UnixMillis::now(),
                    )
                })
                .await?
        }
    };
    let r = state
        .reminders
        .create(NewReminder {
            kind,
            conversation_id,
            text,
            due,
            rule,
            source_message_id: None,
            target,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(ReminderDto::from(r))).into_response())
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(format!(
            "reminder id must be a positive integer; got {raw:?}"
        ))
    })
}

/// One reminder.
#[utoipa::path(get, path = "/api/v1/reminders/{id}", tag = "reminders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Reminder id")),
    responses(
        (status = 200, description = "The reminder", body = ReminderDto),
        (status = 404, description = "No such reminder", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ReminderDto>, ApiError> {
    Ok(Json(state.reminders.get(parse_id(&id)?).await?.into()))
}

/// A change to a reminder.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchReminder {
    /// New text.
    pub text: Option<String>,
    /// New due time (RFC 3339).
    pub due: Option<String>,
    /// Snooze by this many minutes from now (1 to 1440); not together with text/due.
    pub snooze_minutes: Option<i64>,
    /// New delivery target.
    pub deliver_to: Option<TargetDto>,
}

/// Change an active reminder's text, due time or target, or snooze a fired one.
#[utoipa::path(patch, path = "/api/v1/reminders/{id}", tag = "reminders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Reminder id")),
    request_body = PatchReminder,
    responses(
        (status = 200, description = "Changed (for a snoozed recurring reminder: its one-off copy)", body = ReminderDto),
        (status = 404, description = "No such reminder", body = ErrorBody),
        (status = 409, description = "Not in a state that allows it", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody)))]
pub async fn patch(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PatchReminder>,
) -> Result<Json<ReminderDto>, ApiError> {
    let id = parse_id(&id)?;
    if let Some(m) = req.snooze_minutes {
        if req.text.is_some() || req.due.is_some() || req.deliver_to.is_some() {
            return Err(field(
                "snooze_minutes",
                "cannot be combined with text, due or deliver_to",
            ));
        }
        return Ok(Json(state.reminders.snooze(id, m).await?.into()));
    }
    let text = match req.text {
        None => None,
        Some(t) if t.trim().is_empty() => return Err(field("text", "must not be empty")),
        Some(t) if t.chars().count() > 1000 => {
            return Err(field("text", "must be at most 1000 characters"))
        }
        Some(t) => Some(t.trim().to_owned()),
    };
    let due = req
        .due
        .as_deref()
        .map(|d| parse_due(&state, d))
        .transpose()?;
    if let Some(d) = &due {
        if d.timestamp() <= jiff::Timestamp::now() {
            return Err(field("due", format!("{d} is in the past")));
        }
    }
    let target = req.deliver_to.map(parse_target).transpose()?.map(Some);
    if text.is_none() && due.is_none() && target.is_none() {
        return Err(ApiError::unprocessable(
            "nothing to change: give text, due, deliver_to or snooze_minutes",
        ));
    }
    Ok(Json(
        state.reminders.update(id, text, due, target).await?.into(),
    ))
}

/// How long to snooze.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnoozeRequest {
    /// Minutes from now, 1 to 1440.
    pub minutes: i64,
}

/// Snooze a reminder (usually one that just fired).
#[utoipa::path(post, path = "/api/v1/reminders/{id}/snooze", tag = "reminders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Reminder id")),
    request_body = SnoozeRequest,
    responses(
        (status = 200, description = "Due again (for a recurring reminder: its one-off copy)", body = ReminderDto),
        (status = 404, description = "No such reminder", body = ErrorBody),
        (status = 409, description = "Cancelled, or recurring and not fired yet", body = ErrorBody),
        (status = 422, description = "minutes out of range", body = ErrorBody)))]
pub async fn snooze(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SnoozeRequest>,
) -> Result<Json<ReminderDto>, ApiError> {
    Ok(Json(
        state
            .reminders
            .snooze(parse_id(&id)?, req.minutes)
            .await?
            .into(),
    ))
}

/// Cancel a reminder or timer (kept, with status `cancelled`). Cancelling twice is fine.
#[utoipa::path(delete, path = "/api/v1/reminders/{id}", tag = "reminders", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Reminder id")),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 404, description = "No such reminder", body = ErrorBody),
        (status = 409, description = "Already fired (done)", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let r = state.reminders.get(id).await?;
    match r.status {
        Status::Cancelled => Ok(StatusCode::NO_CONTENT),
        Status::Done => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("reminder {id} already fired; nothing to cancel"),
        )),
        Status::Active => {
            state.reminders.cancel(vec![id]).await?;
            Ok(StatusCode::NO_CONTENT)
        }
    }
}
