//! Calendar routes: list (recurrences expanded over a range), get, create (conflicts
//! reported), patch, delete, free slots, ICS import, and the read-only subscription feed
//! `GET /calendar.ics?token=…` (phones cannot send a bearer header, so it takes its own token).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::tz::TimeZone;
use jiff::Zoned;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::ApiState;
use crate::home::calendar::tools::parse_time;
use crate::home::calendar::{
    Attendee, CalendarError, Event, EventPatch, ImportReport, NewEvent, Occurrence, Slot,
};

/// Longest listed range.
pub const MAX_RANGE_DAYS: i64 = 366;

impl From<CalendarError> for ApiError {
    fn from(e: CalendarError) -> Self {
        match e {
            CalendarError::Invalid { .. } => Self::unprocessable(e.to_string()),
            CalendarError::NotFound { .. } => Self::not_found(e.to_string()),
            CalendarError::Ics(_) => Self::unprocessable(e.to_string()).code("invalid_ics"),
            CalendarError::Store(s) => s.into(),
        }
    }
}

/// An instance changed on its own.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OverrideDto {
    /// Original start of the instance (RECURRENCE-ID).
    pub recurrence_id: String,
    /// New start.
    pub start: String,
    /// New end.
    pub end: String,
    /// New title.
    pub title: Option<String>,
}

/// An appointment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventDto {
    /// RFC 5545 UID (the id in paths).
    pub uid: String,
    /// Title.
    pub title: String,
    /// Start (RFC 3339 with the zone, e.g. `2026-11-26T15:00:00+01:00[Europe/Berlin]`).
    pub start: String,
    /// End, exclusive.
    pub end: String,
    /// IANA zone.
    pub timezone: String,
    /// All-day (start and end are midnights).
    pub all_day: bool,
    /// Location.
    pub location: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Attendees.
    pub attendees: Vec<Attendee>,
    /// RRULE.
    pub rrule: Option<String>,
    /// Left-out instance starts.
    pub exdates: Vec<String>,
    /// Changed instances.
    pub overrides: Vec<OverrideDto>,
    /// Alarms, minutes before the start.
    pub alarms: Vec<i64>,
    /// SEQUENCE.
    pub sequence: i64,
    /// Change-feed version.
    pub version: i64,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last modified (RFC 3339).
    pub updated_at: String,
}

impl From<Event> for EventDto {
    fn from(e: Event) -> Self {
        Self {
            timezone: e.start.time_zone().iana_name().unwrap_or("UTC").to_owned(),
            uid: e.uid,
            title: e.title,
            start: e.start.to_string(),
            end: e.end.to_string(),
            all_day: e.all_day,
            location: e.location,
            notes: e.notes,
            attendees: e.attendees,
            rrule: e.rrule,
            exdates: e.exdates.iter().map(ToString::to_string).collect(),
            overrides: e
                .overrides
                .into_iter()
                .map(|o| OverrideDto {
                    recurrence_id: o.recurrence_id.to_string(),
                    start: o.start.to_string(),
                    end: o.end.to_string(),
                    title: o.title,
                })
                .collect(),
            alarms: e.alarms,
            sequence: e.sequence,
            version: e.version,
            created_at: e.created_at.to_string(),
            updated_at: e.updated_at.to_string(),
        }
    }
}

/// One instance in a listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OccurrenceDto {
    /// The event.
    pub uid: String,
    /// Title.
    pub title: String,
    /// Start.
    pub start: String,
    /// End.
    pub end: String,
    /// All-day.
    pub all_day: bool,
    /// Location.
    pub location: Option<String>,
    /// Part of a series.
    pub recurring: bool,
    /// Original start of this instance (for a series).
    pub recurrence_id: Option<String>,
}

impl From<Occurrence> for OccurrenceDto {
    fn from(o: Occurrence) -> Self {
        Self {
            uid: o.uid,
            title: o.title,
            start: o.start.to_string(),
            end: o.end.to_string(),
            all_day: o.all_day,
            location: o.location,
            recurring: o.recurring,
            recurrence_id: o.recurrence_id.map(|z| z.to_string()),
        }
    }
}

/// A page of instances.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OccurrencePage {
    /// In start order.
    pub items: Vec<OccurrenceDto>,
    /// All instances in the range (before paging).
    pub total: usize,
    /// Pass as `offset` for the next page; absent on the last page.
    pub next_offset: Option<usize>,
}

/// Range and paging of a listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Start of the range (RFC 3339 or a date); default now.
    pub from: Option<String>,
    /// End of the range (exclusive); default 30 days after `from`; at most 366 days.
    pub to: Option<String>,
    /// Only titles containing this text (case-insensitive).
    pub q: Option<String>,
    /// Items per page, 1 to 500 (default 100).
    pub limit: Option<usize>,
    /// Items to skip.
    pub offset: Option<usize>,
}

/// Range of a free-slot query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FreeParams {
    /// Start (RFC 3339 or a date); default now.
    pub from: Option<String>,
    /// End (exclusive); default the end of `from`'s day.
    pub to: Option<String>,
    /// Shortest gap in minutes (default `calendar.min_free_minutes`).
    pub min_minutes: Option<i64>,
}

/// A new appointment.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEvent {
    /// Title (required).
    pub title: Option<String>,
    /// Start (required): RFC 3339 with zone or offset, a local date-time (in `timezone`) or a
    /// date (all-day).
    pub start: Option<String>,
    /// End (exclusive); or give `duration_minutes`; default `calendar.default_duration_minutes`
    /// (all-day: one day).
    pub end: Option<String>,
    /// Length in minutes.
    pub duration_minutes: Option<i64>,
    /// IANA zone for local times; default the device's.
    pub timezone: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Attendees.
    pub attendees: Option<Vec<Attendee>>,
    /// RFC 5545 RRULE, e.g. `FREQ=WEEKLY;BYDAY=MO,WE`.
    pub rrule: Option<String>,
    /// Instance starts to leave out.
    pub exdates: Option<Vec<String>>,
    /// Alarms, minutes before the start.
    pub alarms: Option<Vec<i64>>,
    /// A uid to use (else one is made).
    pub uid: Option<String>,
}

/// Changes to an appointment; absent fields stay, `""` clears a text field or the rule.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchEvent {
    /// Title.
    pub title: Option<String>,
    /// Start (a new start alone keeps the length).
    pub start: Option<String>,
    /// End.
    pub end: Option<String>,
    /// IANA zone for local times.
    pub timezone: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Attendees.
    pub attendees: Option<Vec<Attendee>>,
    /// RRULE.
    pub rrule: Option<String>,
    /// EXDATEs.
    pub exdates: Option<Vec<String>>,
    /// Alarms.
    pub alarms: Option<Vec<i64>>,
}

/// A created appointment and what it overlaps.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedEvent {
    /// The event.
    pub event: EventDto,
    /// Instances of other appointments it overlaps (it is booked anyway).
    pub conflicts: Vec<OccurrenceDto>,
}

/// A free gap.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SlotDto {
    /// Start.
    pub start: String,
    /// End.
    pub end: String,
    /// Length in minutes.
    pub minutes: i64,
}

impl From<Slot> for SlotDto {
    fn from(s: Slot) -> Self {
        Self {
            minutes: s.start.duration_until(&s.end).as_mins(),
            start: s.start.to_string(),
            end: s.end.to_string(),
        }
    }
}

fn field(name: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable(format!("{name}: {message}"))
}

fn zone(state: &ApiState, tz: Option<&str>) -> Result<TimeZone, ApiError> {
    match tz.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(state.calendar.time_zone().clone()),
        Some(n) => TimeZone::get(n).map_err(|_| {
            field(
                "timezone",
                format!("{n:?} is not an IANA time zone such as Europe/Berlin"),
            )
        }),
    }
}

fn time(name: &str, v: &str, tz: &TimeZone) -> Result<(Zoned, bool), ApiError> {
    let (z, date) = parse_time(v, tz).map_err(|m| field(name, m))?;
    // An instant with only an offset is shown in the requested zone.
    let z = if z.time_zone().iana_name().is_none() {
        z.timestamp().to_zoned(tz.clone())
    } else {
        z
    };
    Ok((z, date))
}

fn query_time(name: &str, v: Option<&str>, tz: &TimeZone) -> Result<Option<Zoned>, ApiError> {
    v.map(|s| time(name, s, tz).map(|t| t.0))
        .transpose()
        .map_err(|e| ApiError::bad_request(e.message))
}

/// Appointments in a range, recurrences expanded.
#[utoipa::path(get, path = "/api/v1/calendar", tag = "calendar", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "Instances in the range", body = OccurrencePage),
        (status = 400, description = "Bad range or paging", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<OccurrencePage>, ApiError> {
    let tz = state.calendar.time_zone().clone();
    let from = query_time("from", p.from.as_deref(), &tz)?
        .unwrap_or_else(|| Zoned::now().with_time_zone(tz.clone()));
    let to = match query_time("to", p.to.as_deref(), &tz)? {
        Some(t) => t,
        None => from
            .checked_add(jiff::Span::new().days(30))
            .map_err(|e| ApiError::bad_request(format!("from: {e}")))?,
    };
    if to <= from {
        return Err(ApiError::bad_request("to: must be after from"));
    }
    if from.duration_until(&to) > jiff::SignedDuration::from_hours(24 * MAX_RANGE_DAYS) {
        return Err(ApiError::bad_request(format!(
            "to: the range may span at most {MAX_RANGE_DAYS} days"
        )));
    }
    let limit = match p.limit {
        None => 100,
        Some(n) if (1..=500).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit: must be 1 to 500; got {n}"
            )))
        }
    };
    let offset = p.offset.unwrap_or(0);
    let mut items = state
        .calendar
        .list(from.timestamp(), to.timestamp())
        .await?;
    if let Some(q) =
        p.q.as_deref()
            .map(str::to_lowercase)
            .filter(|q| !q.is_empty())
    {
        items.retain(|o| o.title.to_lowercase().contains(&q));
    }
    let total = items.len();
    let page: Vec<OccurrenceDto> = items
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(Into::into)
        .collect();
    let next_offset = (offset + page.len() < total).then_some(offset + page.len());
    Ok(Json(OccurrencePage {
        items: page,
        total,
        next_offset,
    }))
}

/// One appointment.
#[utoipa::path(get, path = "/api/v1/calendar/{uid}", tag = "calendar", security(("bearer" = [])),
    params(("uid" = String, Path, description = "Event uid")),
    responses(
        (status = 200, description = "The appointment", body = EventDto),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such appointment", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Path(uid): Path<String>,
) -> Result<Json<EventDto>, ApiError> {
    Ok(Json(state.calendar.get(&uid).await?.into()))
}

fn exdates(v: Option<Vec<String>>, tz: &TimeZone) -> Result<Option<Vec<Zoned>>, ApiError> {
    v.map(|list| {
        list.iter()
            .enumerate()
            .map(|(i, s)| time(&format!("exdates[{i}]"), s, tz).map(|t| t.0))
            .collect()
    })
    .transpose()
}

/// Book an appointment; overlaps with others are reported (it is booked anyway).
#[utoipa::path(post, path = "/api/v1/calendar", tag = "calendar", security(("bearer" = [])),
    request_body = CreateEvent,
    responses(
        (status = 201, description = "Booked", body = CreatedEvent),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 422, description = "A field is invalid (the message names it)", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    ApiJson(b): ApiJson<CreateEvent>,
) -> Result<Response, ApiError> {
    let tz = zone(&state, b.timezone.as_deref())?;
    let title = b
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| field("title", "is required and must not be empty"))?;
    let start_s = b
        .start
        .as_deref()
        .ok_or_else(|| field("start", "is required"))?;
    let (start, all_day) = time("start", start_s, &tz)?;
    let end = match (b.end.as_deref(), b.duration_minutes) {
        (Some(_), Some(_)) => {
            return Err(field(
                "duration_minutes",
                "give either end or duration_minutes, not both",
            ))
        }
        (Some(e), None) => time("end", e, &tz)?.0,
        (None, Some(m)) if (1..=527_040).contains(&m) => start
            .checked_add(jiff::SignedDuration::from_mins(m))
            .map_err(|e| field("duration_minutes", e))?,
        (None, Some(m)) => {
            return Err(field(
                "duration_minutes",
                format!("must be 1 to 527040; got {m}"),
            ))
        }
        (None, None) if all_day => start
            .checked_add(jiff::Span::new().days(1))
            .map_err(|e| field("start", e))?,
        (None, None) => start
            .checked_add(state.calendar.config().default_duration)
            .map_err(|e| field("start", e))?,
    };
    let mut new = NewEvent::new(title, start, end);
    new.all_day = all_day;
    new.location = b.location;
    new.notes = b.notes;
    new.attendees = b.attendees.unwrap_or_default();
    new.rrule = b.rrule;
    new.exdates = exdates(b.exdates, &tz)?.unwrap_or_default();
    new.alarms = b.alarms.unwrap_or_default();
    new.uid = b.uid;
    let booked = state.calendar.create(new, None).await?;
    let body = CreatedEvent {
        event: booked.event.into(),
        conflicts: booked.conflicts.into_iter().map(Into::into).collect(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Change an appointment.
#[utoipa::path(patch, path = "/api/v1/calendar/{uid}", tag = "calendar", security(("bearer" = [])),
    params(("uid" = String, Path, description = "Event uid")),
    request_body = PatchEvent,
    responses(
        (status = 200, description = "Updated", body = EventDto),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such appointment", body = ErrorBody),
        (status = 422, description = "A field is invalid (the message names it)", body = ErrorBody)))]
pub async fn patch(
    State(state): State<ApiState>,
    Path(uid): Path<String>,
    ApiJson(b): ApiJson<PatchEvent>,
) -> Result<Json<EventDto>, ApiError> {
    let tz = zone(&state, b.timezone.as_deref())?;
    let (start, all_day) = match b.start.as_deref() {
        Some(s) => {
            let (z, d) = time("start", s, &tz)?;
            (Some(z), Some(d))
        }
        None => (None, None),
    };
    if let Some(t) = &b.title {
        if t.trim().is_empty() {
            return Err(field("title", "must not be empty"));
        }
    }
    let p = EventPatch {
        title: b.title,
        start,
        end: b
            .end
            .as_deref()
            .map(|e| time("end", e, &tz).map(|t| t.0))
            .transpose()?,
        all_day,
        location: b.location.map(Some),
        notes: b.notes.map(Some),
        attendees: b.attendees,
        rrule: b.rrule.map(Some),
        exdates: exdates(b.exdates, &tz)?,
        alarms: b.alarms,
    };
    Ok(Json(state.calendar.update(&uid, p).await?.into()))
}

/// Delete an appointment (kept as a tombstone for sync).
#[utoipa::path(delete, path = "/api/v1/calendar/{uid}", tag = "calendar", security(("bearer" = [])),
    params(("uid" = String, Path, description = "Event uid")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 404, description = "No such appointment", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path(uid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.calendar.delete(&uid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Free gaps within the waking hours of a range.
#[utoipa::path(get, path = "/api/v1/calendar/free-slots", tag = "calendar", security(("bearer" = [])),
    params(FreeParams),
    responses(
        (status = 200, description = "Free gaps", body = Vec<SlotDto>),
        (status = 400, description = "Bad range", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn free_slots(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<FreeParams>,
) -> Result<Json<Vec<SlotDto>>, ApiError> {
    let tz = state.calendar.time_zone().clone();
    let from = query_time("from", p.from.as_deref(), &tz)?
        .unwrap_or_else(|| Zoned::now().with_time_zone(tz.clone()));
    let to = match query_time("to", p.to.as_deref(), &tz)? {
        Some(t) => t,
        None => from
            .date()
            .tomorrow()
            .ok()
            .and_then(|d| d.to_zoned(tz.clone()).ok())
            .ok_or_else(|| ApiError::bad_request("from: out of range"))?,
    };
    if to <= from {
        return Err(ApiError::bad_request("to: must be after from"));
    }
    if from.duration_until(&to) > jiff::SignedDuration::from_hours(24 * 62) {
        return Err(ApiError::bad_request(
            "to: a free-slot range may span at most 62 days",
        ));
    }
    let min = match p.min_minutes {
        None => None,
        Some(m) if (5..=720).contains(&m) => Some(jiff::SignedDuration::from_mins(m)),
        Some(m) => {
            return Err(ApiError::bad_request(format!(
                "min_minutes: must be 5 to 720; got {m}"
            )))
        }
    };
    let slots = state.calendar.free(&from, &to, min).await?;
    Ok(Json(slots.into_iter().map(Into::into).collect()))
}

/// Import a VCALENDAR (`text/calendar`): events are created or replaced by uid.
#[utoipa::path(post, path = "/api/v1/calendar/import", tag = "calendar", security(("bearer" = [])),
    request_body(content = String, content_type = "text/calendar"),
    responses(
        (status = 200, description = "What was imported", body = ImportReport),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 415, description = "Not text/calendar", body = ErrorBody),
        (status = 422, description = "Not an iCalendar text (the message says where)", body = ErrorBody)))]
pub async fn import(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("text/calendar") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type: text/calendar; got {ct:?}"),
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::unprocessable(format!("body: not UTF-8 text ({e})")).code("invalid_ics")
    })?;
    Ok(Json(state.calendar.import(text).await?))
}

/// `?token=` of the feed.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FeedParams {
    /// The feed token (`calendar.feed_token` or `<data_dir>/calendar-feed-token`).
    pub token: Option<String>,
}

/// The subscription feed every phone calendar can subscribe to (read-only; its own token).
#[utoipa::path(get, path = "/calendar.ics", tag = "calendar",
    params(FeedParams),
    responses(
        (status = 200, description = "The calendar", content_type = "text/calendar", body = String),
        (status = 401, description = "No token", body = ErrorBody),
        (status = 403, description = "Wrong token", body = ErrorBody)))]
pub async fn feed(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<FeedParams>,
) -> Result<Response, ApiError> {
    let Some(t) = p.token else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing feed token: subscribe to /calendar.ics?token=<calendar.feed_token or <data_dir>/calendar-feed-token>",
        ));
    };
    if !bool::from(
        t.as_bytes()
            .ct_eq(state.calendar_feed_token.expose().as_bytes()),
    ) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "invalid feed token"));
    }
    let body = state.calendar.feed().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}
