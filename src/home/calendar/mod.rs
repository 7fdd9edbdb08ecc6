//! The calendar: appointments with RFC 5545 semantics (time zones, all-day events, RRULE
//! recurrences with EXDATE exceptions and RECURRENCE-ID overrides, VALARM alarms, attendees),
//! conflict detection, free-slot queries, spoken summaries, ICS import/export and a change feed
//! for CalDAV sync.
//!
//! Invariants: every event has a stable `uid`; every local change (create, update, delete)
//! takes a new `version` from one global counter in the same transaction, and a delete leaves a
//! tombstone, so [`Calendar::changes_since`] never misses a change. Times are stored as UTC
//! milliseconds plus the IANA zone name; recurrences are expanded in that zone. All-day events
//! never conflict and never take free time. This module knows nothing about HTTP or CalDAV.

pub mod alarms;
pub mod db;
pub mod ics;
pub mod rrule;
pub mod tools;

use std::sync::Arc;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, Zoned};
use serde::{Deserialize, Serialize};

use crate::config::CalendarConfig;
use crate::domain::MessageId;
use crate::events::{EventBus, EventKind};
use crate::orchestrator::speak;
use crate::store::{Store, StoreError};
use rrule::RRule;

/// Most instances one listing returns.
pub const MAX_INSTANCES: usize = 2000;
/// How far ahead a recurring booking is checked for conflicts.
pub const CONFLICT_HORIZON_DAYS: i64 = 366;

/// Why a calendar operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// A field of the request is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`start`, `rrule`, `attendees[1].email`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No such event.
    #[error("no appointment with uid {uid:?}")]
    NotFound {
        /// The uid asked for.
        uid: String,
    },
    /// An iCalendar text could not be read.
    #[error(transparent)]
    Ics(#[from] ics::IcsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> CalendarError {
    CalendarError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Someone taking part (RFC 5545 ATTENDEE); `contact_id` links a stored contact when known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attendee {
    /// Display name (CN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The contact, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<i64>,
}

/// One instance of a recurring event changed on its own (RFC 5545 RECURRENCE-ID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    /// The original start of the instance it replaces.
    pub recurrence_id: Zoned,
    /// New start.
    pub start: Zoned,
    /// New end.
    pub end: Zoned,
    /// New title, if changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// New location, if changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// New notes, if changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// An appointment (an RFC 5545 VEVENT with its exceptions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable RFC 5545 UID.
    pub uid: String,
    /// SUMMARY.
    pub title: String,
    /// DTSTART (all-day: midnight of the first day in the event's zone).
    pub start: Zoned,
    /// DTEND, exclusive (all-day: midnight after the last day).
    pub end: Zoned,
    /// DATE values instead of DATE-TIME.
    #[serde(default)]
    pub all_day: bool,
    /// LOCATION.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// DESCRIPTION.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// ATTENDEEs.
    #[serde(default)]
    pub attendees: Vec<Attendee>,
    /// RRULE text (validated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrule: Option<String>,
    /// EXDATEs: instance starts left out.
    #[serde(default)]
    pub exdates: Vec<Zoned>,
    /// Instances changed on their own.
    #[serde(default)]
    pub overrides: Vec<Override>,
    /// VALARMs: minutes before the start.
    #[serde(default)]
    pub alarms: Vec<i64>,
    /// SEQUENCE (revision as seen by other calendars).
    #[serde(default)]
    pub sequence: i64,
    /// Local change-feed version.
    #[serde(default)]
    pub version: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Last modified.
    pub updated_at: Timestamp,
}

/// One instance of an event in a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Occurrence {
    /// The event.
    pub uid: String,
    /// Title.
    pub title: String,
    /// Start.
    pub start: Zoned,
    /// End.
    pub end: Zoned,
    /// All-day.
    pub all_day: bool,
    /// Location.
    pub location: Option<String>,
    /// Part of a recurring series.
    pub recurring: bool,
    /// For a recurring instance: its original start (the RECURRENCE-ID).
    pub recurrence_id: Option<Zoned>,
}

/// A free gap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slot {
    /// Start.
    pub start: Zoned,
    /// End.
    pub end: Zoned,
}

/// What a new appointment says; the rest is filled in.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Title.
    pub title: String,
    /// Start.
    pub start: Zoned,
    /// End (exclusive).
    pub end: Zoned,
    /// All-day.
    pub all_day: bool,
    /// Location.
    pub location: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Attendees.
    pub attendees: Vec<Attendee>,
    /// RRULE.
    pub rrule: Option<String>,
    /// EXDATEs.
    pub exdates: Vec<Zoned>,
    /// Alarms (minutes before).
    pub alarms: Vec<i64>,
    /// A given uid (imports); else a new one.
    pub uid: Option<String>,
}

impl NewEvent {
    /// A plain appointment.
    pub fn new(title: impl Into<String>, start: Zoned, end: Zoned) -> Self {
        Self {
            title: title.into(),
            start,
            end,
            all_day: false,
            location: None,
            notes: None,
            attendees: Vec::new(),
            rrule: None,
            exdates: Vec::new(),
            alarms: Vec::new(),
            uid: None,
        }
    }

    fn into_event(self) -> Event {
        let now = Timestamp::now();
        Event {
            uid: self
                .uid
                .unwrap_or_else(|| format!("{}@local-assistant", uuid::Uuid::new_v4())),
            title: self.title.trim().to_owned(),
            start: self.start,
            end: self.end,
            all_day: self.all_day,
            location: clean(self.location),
            notes: clean(self.notes),
            attendees: self.attendees,
            rrule: clean(self.rrule),
            exdates: self.exdates,
            overrides: Vec::new(),
            alarms: self.alarms,
            sequence: 0,
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }
}

fn clean(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// A partial update; `None` leaves a field as it is (`Some(None)` clears an optional one).
#[derive(Debug, Clone, Default)]
pub struct EventPatch {
    /// Title.
    pub title: Option<String>,
    /// Start.
    pub start: Option<Zoned>,
    /// End.
    pub end: Option<Zoned>,
    /// All-day.
    pub all_day: Option<bool>,
    /// Location.
    pub location: Option<Option<String>>,
    /// Notes.
    pub notes: Option<Option<String>>,
    /// Attendees.
    pub attendees: Option<Vec<Attendee>>,
    /// RRULE.
    pub rrule: Option<Option<String>>,
    /// EXDATEs.
    pub exdates: Option<Vec<Zoned>>,
    /// Alarms.
    pub alarms: Option<Vec<i64>>,
}

/// A change for CalDAV sync: `ics` is a complete VCALENDAR with this one event (its
/// overrides and VTIMEZONE included); `None` means deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarChange {
    /// The event's uid.
    pub uid: String,
    /// The version of this change.
    pub version: i64,
    /// The event, or `None` when deleted.
    pub ics: Option<String>,
}

/// What an ICS import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// New events.
    pub created: usize,
    /// Events replaced (same uid).
    pub updated: usize,
    /// Events refused, with why (naming the uid and the property).
    pub errors: Vec<String>,
    /// Properties or components ignored.
    pub warnings: Vec<String>,
}

/// Whether two spans overlap (half-open).
fn overlaps(a0: Timestamp, a1: Timestamp, b0: Timestamp, b1: Timestamp) -> bool {
    a0 < b1 && b0 < a1
}

impl Event {
    /// The parsed rule (validated on write; a stored rule that no longer parses counts as
    /// none).
    pub fn rule(&self) -> Option<RRule> {
        self.rrule.as_deref().and_then(|r| r.parse().ok())
    }

    /// Start of the instance that begins at `start` ends here (keeps the event's length; for
    /// all-day events, its number of days).
    fn end_for(&self, start: &Zoned) -> Zoned {
        if self.all_day {
            let days = i64::from((self.end.date() - self.start.date()).get_days()).max(1);
            return start
                .date()
                .checked_add(Span::new().days(days))
                .ok()
                .and_then(|d| d.to_zoned(start.time_zone().clone()).ok())
                .unwrap_or_else(|| start.clone());
        }
        let len = self.start.duration_until(&self.end);
        start.checked_add(len).unwrap_or_else(|_| start.clone())
    }

    /// The event's length.
    pub fn duration(&self) -> SignedDuration {
        self.start.duration_until(&self.end)
    }

    /// End of the last instance in ms (None: never ends).
    pub fn last_end_ms(&self) -> Option<i64> {
        let last = match self.rule() {
            None => Some(self.end.clone()),
            Some(r) => r.last_start(&self.start).map(|s| self.end_for(&s)),
        }?;
        let mut ms = last.timestamp().as_millisecond();
        for o in &self.overrides {
            ms = ms.max(o.end.timestamp().as_millisecond());
        }
        Some(ms)
    }

    /// The instances overlapping `[from, to)`, in start order, at most `limit`.
    pub fn occurrences(&self, from: Timestamp, to: Timestamp, limit: usize) -> Vec<Occurrence> {
        let base = |start: Zoned, end: Zoned, rid: Option<Zoned>| Occurrence {
            uid: self.uid.clone(),
            title: self.title.clone(),
            start,
            end,
            all_day: self.all_day,
            location: self.location.clone(),
            recurring: rid.is_some(),
            recurrence_id: rid,
        };
        let Some(rule) = self.rule() else {
            return if overlaps(self.start.timestamp(), self.end.timestamp(), from, to) {
                vec![base(self.start.clone(), self.end.clone(), None)]
            } else {
                Vec::new()
            };
        };
        let mut skip: Vec<Timestamp> = self.exdates.iter().map(Zoned::timestamp).collect();
        skip.extend(self.overrides.iter().map(|o| o.recurrence_id.timestamp()));
        // Instances that started before `from` may still be running.
        let span =
            self.duration().abs() + SignedDuration::from_hours(if self.all_day { 50 } else { 0 });
        let early = from.checked_sub(span).unwrap_or(from);
        let mut out: Vec<Occurrence> = rule
            .expand(&self.start, &skip, early, to, limit.saturating_add(64))
            .into_iter()
            .map(|s| {
                let e = self.end_for(&s);
                base(s.clone(), e, Some(s))
            })
            .filter(|o| overlaps(o.start.timestamp(), o.end.timestamp(), from, to))
            .collect();
        for o in &self.overrides {
            if overlaps(o.start.timestamp(), o.end.timestamp(), from, to) {
                let mut occ = base(
                    o.start.clone(),
                    o.end.clone(),
                    Some(o.recurrence_id.clone()),
                );
                if let Some(t) = &o.title {
                    occ.title.clone_from(t);
                }
                if o.location.is_some() {
                    occ.location.clone_from(&o.location);
                }
                out.push(occ);
            }
        }
        out.sort_by_key(|o| o.start.timestamp());
        out.truncate(limit);
        out
    }

    /// Check every field; errors name the field.
    pub fn validate(&self) -> Result<(), CalendarError> {
        if self.title.trim().is_empty() {
            return Err(invalid("title", "must not be empty"));
        }
        if self.title.chars().count() > 500 {
            return Err(invalid("title", "must be at most 500 characters"));
        }
        if self.uid.trim().is_empty()
            || self.uid.len() > 255
            || self.uid.chars().any(char::is_control)
        {
            return Err(invalid(
                "uid",
                "must be 1 to 255 characters without control characters",
            ));
        }
        if self.start.time_zone().iana_name().is_none() {
            return Err(invalid(
                "timezone",
                "must be an IANA time zone such as Europe/Berlin",
            ));
        }
        if self.end <= self.start {
            return Err(invalid(
                "end",
                format!("must be after the start ({}); got {}", self.start, self.end),
            ));
        }
        if self.all_day && self.start.time() != Time::midnight() {
            return Err(invalid(
                "start",
                "an all-day event starts at midnight (give a date)",
            ));
        }
        if self.duration() > SignedDuration::from_hours(24 * 366) {
            return Err(invalid("end", "an appointment may last at most a year"));
        }
        if let Some(r) = &self.rrule {
            let rule: RRule = r
                .parse()
                .map_err(|e: rrule::RRuleError| invalid("rrule", e.to_string()))?;
            if let Some(rrule::Until::Date(_)) = rule.until {
                if !self.all_day {
                    return Err(invalid(
                        "rrule",
                        "UNTIL must be a date-time (…T…Z) for an event with a time",
                    ));
                }
            }
        }
        for (i, a) in self.alarms.iter().enumerate() {
            if !(0..=40_320).contains(a) {
                return Err(invalid(
                    format!("alarms[{i}]"),
                    format!("minutes before the start must be 0 to 40320; got {a}"),
                ));
            }
        }
        for (i, a) in self.attendees.iter().enumerate() {
            if a.name.is_none() && a.email.is_none() && a.phone.is_none() && a.contact_id.is_none()
            {
                return Err(invalid(
                    format!("attendees[{i}]"),
                    "needs a name, an email, a phone or a contact_id",
                ));
            }
            if let Some(e) = &a.email {
                if !e.contains('@') || e.contains(char::is_whitespace) {
                    return Err(invalid(
                        format!("attendees[{i}].email"),
                        format!("{e:?} is not an email address"),
                    ));
                }
            }
        }
        for (i, o) in self.overrides.iter().enumerate() {
            if o.end <= o.start {
                return Err(invalid(
                    format!("overrides[{i}].end"),
                    "must be after its start",
                ));
            }
        }
        Ok(())
    }
}

/// Free gaps of at least `min` inside the waking hours of each day of `[from, to)`, given the
/// busy instances (all-day ones do not count).
pub fn free_slots(
    busy: &[Occurrence],
    from: &Zoned,
    to: &Zoned,
    day_start: Time,
    day_end: Time,
    min: SignedDuration,
) -> Vec<Slot> {
    let tz = from.time_zone().clone();
    let mut busy: Vec<(Timestamp, Timestamp)> = busy
        .iter()
        .filter(|o| !o.all_day)
        .map(|o| (o.start.timestamp(), o.end.timestamp()))
        .collect();
    busy.sort();
    let mut out = Vec::new();
    let mut day = from.date();
    let last = to.date();
    let mut guard = 0;
    while day <= last && guard < 400 {
        guard += 1;
        let (Ok(ws), Ok(we)) = (
            day.to_datetime(day_start).to_zoned(tz.clone()),
            day.to_datetime(day_end).to_zoned(tz.clone()),
        ) else {
            break;
        };
        let start = ws.timestamp().max(from.timestamp());
        let end = we.timestamp().min(to.timestamp());
        let mut cursor = start;
        for &(b0, b1) in &busy {
            if b1 <= cursor || b0 >= end {
                continue;
            }
            if b0 > cursor && b0.duration_since(cursor) >= min {
                out.push(Slot {
                    start: cursor.to_zoned(tz.clone()),
                    end: b0.to_zoned(tz.clone()),
                });
            }
            cursor = cursor.max(b1);
        }
        if end > cursor && end.duration_since(cursor) >= min {
            out.push(Slot {
                start: cursor.to_zoned(tz.clone()),
                end: end.to_zoned(tz.clone()),
            });
        }
        match day.tomorrow() {
            Ok(d) => day = d,
            Err(_) => break,
        }
    }
    out
}

fn count_word(n: usize) -> String {
    const WORDS: [&str; 11] = [
        "no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    WORDS
        .get(n)
        .map_or_else(|| n.to_string(), |w| (*w).to_owned())
}

/// How one instance is said within a listing whose span is `[from, to)`.
pub fn describe_occurrence(o: &Occurrence, now: &Zoned, one_day: bool) -> String {
    let when = if o.all_day {
        if one_day {
            "all day".to_owned()
        } else {
            format!("{} all day", speak::day(o.start.date(), now))
        }
    } else if one_day {
        format!("at {}", speak::time_of_day(&o.start))
    } else {
        speak::day_and_time(&o.start, now)
    };
    format!("{} {when}", o.title)
}

/// "You have two appointments tomorrow: dentist at 3 PM and lunch with Anna at noon."
pub fn describe_list(items: &[Occurrence], label: &str, now: &Zoned, one_day: bool) -> String {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!(" {label}")
    };
    if items.is_empty() {
        return format!("You have no appointments{label}.");
    }
    let noun = if items.len() == 1 {
        "appointment"
    } else {
        "appointments"
    };
    let shown: Vec<String> = items
        .iter()
        .take(8)
        .map(|o| describe_occurrence(o, now, one_day))
        .collect();
    let more = if items.len() > shown.len() {
        format!(", and {} more", items.len() - shown.len())
    } else {
        String::new()
    };
    format!(
        "You have {} {noun}{label}: {}{more}.",
        count_word(items.len()),
        speak::list_and(&shown)
    )
}

/// "You're free from 1 PM to 3 PM and from 4 PM to 6 PM on Thursday."
pub fn describe_free(slots: &[Slot], label: &str, now: &Zoned) -> String {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!(" {label}")
    };
    if slots.is_empty() {
        return format!("You have no free time{label}.");
    }
    let one_day = slots
        .iter()
        .all(|s| s.start.date() == slots[0].start.date());
    let parts: Vec<String> = slots
        .iter()
        .take(6)
        .map(|s| {
            let span = format!(
                "from {} to {}",
                speak::time_of_day(&s.start),
                speak::time_of_day(&s.end)
            );
            if one_day {
                span
            } else {
                format!("{} {span}", speak::day(s.start.date(), now))
            }
        })
        .collect();
    format!("You're free{label} {}.", speak::list_and(&parts))
}

/// The calendar service: a cheap-to-clone handle over the store.
#[derive(Clone)]
pub struct Calendar {
    store: Store,
    events: Arc<EventBus>,
    tz: TimeZone,
    cfg: Arc<CalendarConfig>,
    changed: Arc<tokio::sync::Notify>,
}

/// A booking's result.
#[derive(Debug, Clone)]
pub struct Booked {
    /// The stored event.
    pub event: Event,
    /// Instances of other events it overlaps.
    pub conflicts: Vec<Occurrence>,
    /// False when the same message had already booked it (idempotent replay).
    pub created: bool,
}

impl Calendar {
    /// A service over `store`; `tz` is the device zone.
    pub fn new(store: Store, events: Arc<EventBus>, tz: TimeZone, cfg: CalendarConfig) -> Self {
        Self {
            store,
            events,
            tz,
            cfg: Arc::new(cfg),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Notified after every committed change (the alarm scheduler waits on it).
    pub fn changed(&self) -> Arc<tokio::sync::Notify> {
        self.changed.clone()
    }

    /// The device time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The settings.
    pub fn config(&self) -> &CalendarConfig {
        &self.cfg
    }

    fn announce(&self, uid: &str, action: &str, version: i64) {
        self.changed.notify_one();
        self.events.publish(EventKind::CalendarChanged {
            uid: uid.to_owned(),
            action: action.to_owned(),
            version,
        });
    }

    /// Instances of other events overlapping `e`'s instances (its first year for a series).
    pub async fn conflicts(&self, e: &Event) -> Result<Vec<Occurrence>, CalendarError> {
        if e.all_day {
            return Ok(Vec::new());
        }
        let from = e.start.timestamp();
        let horizon = from
            .checked_add(SignedDuration::from_hours(24 * CONFLICT_HORIZON_DAYS))
            .unwrap_or(from);
        let to = match e.last_end_ms() {
            Some(ms) => Timestamp::from_millisecond(ms)
                .unwrap_or(horizon)
                .min(horizon),
            None => horizon,
        }
        .max(e.end.timestamp());
        let mine: Vec<Occurrence> = e.occurrences(from, to, 500);
        if mine.is_empty() {
            return Ok(Vec::new());
        }
        let (f, t) = (
            mine[0].start.timestamp(),
            mine.iter().map(|o| o.end.timestamp()).max().unwrap_or(to),
        );
        let others = self.list(f, t).await?;
        let mut out: Vec<Occurrence> = Vec::new();
        for o in others {
            if o.uid == e.uid || o.all_day {
                continue;
            }
            if mine.iter().any(|m| {
                overlaps(
                    m.start.timestamp(),
                    m.end.timestamp(),
                    o.start.timestamp(),
                    o.end.timestamp(),
                )
            }) && !out.iter().any(|x| x.uid == o.uid && x.start == o.start)
            {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Book a new appointment (idempotent on `source`); conflicts are reported, not refused.
    pub async fn create(
        &self,
        new: NewEvent,
        source: Option<MessageId>,
    ) -> Result<Booked, CalendarError> {
        if let Some(src) = source {
            if let Some(e) = self.store.read(move |c| db::by_source(c, src)).await? {
                return Ok(Booked {
                    event: e,
                    conflicts: Vec::new(),
                    created: false,
                });
            }
        }
        let mut e = new.into_event();
        e.validate()?;
        let uid = e.uid.clone();
        if self.store.read(move |c| db::get(c, &uid)).await?.is_some() {
            return Err(invalid(
                "uid",
                format!("an appointment with uid {:?} exists already", e.uid),
            ));
        }
        let conflicts = self.conflicts(&e).await?;
        let last = e.last_end_ms();
        let e = self
            .store
            .write(move |c| {
                db::upsert(c, &mut e, last, source)?;
                Ok(e)
            })
            .await?;
        self.announce(&e.uid, "created", e.version);
        Ok(Booked {
            event: e,
            conflicts,
            created: true,
        })
    }

    /// The conflicts a booking would have (validating it first).
    pub async fn check(&self, new: &NewEvent) -> Result<Vec<Occurrence>, CalendarError> {
        let e = new.clone().into_event();
        e.validate()?;
        self.conflicts(&e).await
    }

    /// The conflicts of one instance of `e` moved to start at `to`.
    pub async fn check_moved(
        &self,
        e: &Event,
        to: &Zoned,
    ) -> Result<Vec<Occurrence>, CalendarError> {
        let mut one = e.clone();
        one.rrule = None;
        one.overrides.clear();
        one.end = to
            .checked_add(e.duration())
            .map_err(|x| invalid("start", x.to_string()))?;
        one.start = to.clone();
        self.conflicts(&one).await
    }

    /// The event the message `src` booked, if any.
    pub async fn booked_by(&self, src: MessageId) -> Result<Option<Event>, CalendarError> {
        Ok(self.store.read(move |c| db::by_source(c, src)).await?)
    }

    /// One event.
    pub async fn get(&self, uid: &str) -> Result<Event, CalendarError> {
        let u = uid.to_owned();
        self.store
            .read(move |c| db::get(c, &u))
            .await?
            .ok_or_else(|| CalendarError::NotFound {
                uid: uid.to_owned(),
            })
    }

    /// The instances overlapping `[from, to)`, in start order.
    pub async fn list(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Occurrence>, CalendarError> {
        let (f, t) = (from.as_millisecond(), to.as_millisecond());
        let events = self.store.read(move |c| db::in_range(c, f, t)).await?;
        let mut out: Vec<Occurrence> = events
            .iter()
            .flat_map(|e| e.occurrences(from, to, MAX_INSTANCES))
            .collect();
        out.sort_by(|a, b| {
            a.start
                .timestamp()
                .cmp(&b.start.timestamp())
                .then(a.uid.cmp(&b.uid))
        });
        out.truncate(MAX_INSTANCES);
        Ok(out)
    }

    /// Free gaps in `[from, to)` within the waking hours, at least `min` long (default from
    /// the config).
    pub async fn free(
        &self,
        from: &Zoned,
        to: &Zoned,
        min: Option<SignedDuration>,
    ) -> Result<Vec<Slot>, CalendarError> {
        let busy = self.list(from.timestamp(), to.timestamp()).await?;
        Ok(free_slots(
            &busy,
            from,
            to,
            self.cfg.day_start,
            self.cfg.day_end,
            min.unwrap_or(self.cfg.min_free),
        ))
    }

    async fn save(&self, mut e: Event, action: &str) -> Result<Event, CalendarError> {
        e.validate()?;
        e.updated_at = Timestamp::now();
        let last = e.last_end_ms();
        let e = self
            .store
            .write(move |c| {
                db::upsert(c, &mut e, last, None)?;
                Ok(e)
            })
            .await?;
        self.announce(&e.uid, action, e.version);
        Ok(e)
    }

    /// Apply a partial update.
    pub async fn update(&self, uid: &str, p: EventPatch) -> Result<Event, CalendarError> {
        let mut e = self.get(uid).await?;
        let len = e.duration();
        if let Some(t) = p.title {
            e.title = t.trim().to_owned();
        }
        if let Some(s) = p.start {
            // A new start without a new end keeps the length.
            if p.end.is_none() {
                e.end = s
                    .checked_add(len)
                    .map_err(|x| invalid("start", x.to_string()))?;
            }
            e.start = s;
        }
        if let Some(x) = p.end {
            e.end = x;
        }
        if let Some(a) = p.all_day {
            e.all_day = a;
        }
        if let Some(l) = p.location {
            e.location = clean(l);
        }
        if let Some(n) = p.notes {
            e.notes = clean(n);
        }
        if let Some(a) = p.attendees {
            e.attendees = a;
        }
        if let Some(r) = p.rrule {
            e.rrule = clean(r);
        }
        if let Some(x) = p.exdates {
            e.exdates = x;
        }
        if let Some(a) = p.alarms {
            e.alarms = a;
        }
        e.sequence += 1;
        self.save(e, "updated").await
    }

    /// Reschedule keeping the length: the whole event, or (for a series, when `instance` is
    /// the original start of one instance) only that instance.
    pub async fn move_to(
        &self,
        uid: &str,
        instance: Option<&Zoned>,
        to: &Zoned,
    ) -> Result<Event, CalendarError> {
        let mut e = self.get(uid).await?;
        match (e.rule().is_some(), instance) {
            (true, Some(rid)) => {
                let existing = e
                    .overrides
                    .iter()
                    .position(|o| o.recurrence_id.timestamp() == rid.timestamp());
                let len = match existing {
                    Some(i) => e.overrides[i].start.duration_until(&e.overrides[i].end),
                    None => e.duration(),
                };
                let end = to
                    .checked_add(len)
                    .map_err(|x| invalid("start", x.to_string()))?;
                match existing {
                    Some(i) => {
                        e.overrides[i].start = to.clone();
                        e.overrides[i].end = end;
                    }
                    None => e.overrides.push(Override {
                        recurrence_id: rid.clone(),
                        start: to.clone(),
                        end,
                        title: None,
                        location: None,
                        notes: None,
                    }),
                }
            }
            _ => {
                let len = e.duration();
                e.end = to
                    .checked_add(len)
                    .map_err(|x| invalid("start", x.to_string()))?;
                e.start = to.clone();
            }
        }
        e.sequence += 1;
        self.save(e, "updated").await
    }

    /// Cancel one instance of a series (an EXDATE).
    pub async fn cancel_instance(
        &self,
        uid: &str,
        instance: &Zoned,
    ) -> Result<Event, CalendarError> {
        let mut e = self.get(uid).await?;
        e.overrides
            .retain(|o| o.recurrence_id.timestamp() != instance.timestamp());
        if !e
            .exdates
            .iter()
            .any(|x| x.timestamp() == instance.timestamp())
        {
            e.exdates.push(instance.clone());
        }
        e.sequence += 1;
        self.save(e, "updated").await
    }

    /// Delete (leaves a tombstone for sync).
    pub async fn delete(&self, uid: &str) -> Result<i64, CalendarError> {
        let u = uid.to_owned();
        let v = self
            .store
            .write(move |c| db::tombstone(c, &u))
            .await?
            .ok_or_else(|| CalendarError::NotFound {
                uid: uid.to_owned(),
            })?;
        self.announce(uid, "deleted", v);
        Ok(v)
    }

    /// The most recently changed event ("it", "the last one").
    pub async fn latest(&self) -> Result<Option<Event>, CalendarError> {
        Ok(self.store.read(db::latest).await?)
    }

    /// The subscription feed: every event as one VCALENDAR.
    pub async fn feed(&self) -> Result<String, CalendarError> {
        let events = self.store.read(db::all).await?;
        Ok(ics::write_calendar(&events, Timestamp::now()))
    }

    /// Import a VCALENDAR text: each event is created or replaced by uid.
    pub async fn import(&self, text: &str) -> Result<ImportReport, CalendarError> {
        let parsed = ics::parse_calendar(text, &self.tz)?;
        let mut report = ImportReport {
            warnings: parsed.warnings,
            errors: parsed.errors,
            ..ImportReport::default()
        };
        for e in parsed.events {
            let uid = e.uid.clone();
            match self.upsert_from_remote(e).await {
                Ok((_, true)) => report.created += 1,
                Ok((_, false)) => report.updated += 1,
                Err(CalendarError::Invalid { field, message }) => {
                    report
                        .errors
                        .push(format!("event {uid:?}: {field}: {message}"));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(report)
    }

    async fn upsert_from_remote(&self, mut e: Event) -> Result<(i64, bool), CalendarError> {
        e.validate()?;
        let uid = e.uid.clone();
        let existing = self.store.read(move |c| db::get(c, &uid)).await?;
        let created = existing.is_none();
        if let Some(old) = existing {
            e.created_at = old.created_at;
        }
        let last = e.last_end_ms();
        let (uid, v) = self
            .store
            .write(move |c| {
                let v = db::upsert(c, &mut e, last, None)?;
                Ok((e.uid.clone(), v))
            })
            .await?;
        self.announce(&uid, if created { "created" } else { "updated" }, v);
        Ok((v, created))
    }

    /// Events changed (created, updated or deleted) with version > `since`, oldest first.
    pub async fn changes_since(&self, since: i64) -> Result<Vec<CalendarChange>, CalendarError> {
        let rows = self
            .store
            .read(move |c| db::changes_since(c, since))
            .await?;
        let now = Timestamp::now();
        Ok(rows
            .into_iter()
            .map(|r| CalendarChange {
                ics: r
                    .event
                    .map(|e| ics::write_calendar(std::slice::from_ref(&e), now)),
                uid: r.uid,
                version: r.version,
            })
            .collect())
    }

    /// Apply a change that came from the remote: upsert from a VCALENDAR text, or delete when
    /// `ics` is None. Returns the event's new local version.
    pub async fn apply_remote(&self, uid: &str, ics: Option<&str>) -> Result<i64, CalendarError> {
        let Some(text) = ics else {
            let u = uid.to_owned();
            let v = self.store.write(move |c| db::tombstone(c, &u)).await?;
            return match v {
                Some(v) => {
                    self.announce(uid, "deleted", v);
                    Ok(v)
                }
                // Already gone: nothing changes; report the current version.
                None => self.current_version().await,
            };
        };
        let parsed = ics::parse_calendar(text, &self.tz)?;
        let event = parsed
            .events
            .into_iter()
            .find(|e| e.uid == uid)
            .ok_or_else(|| {
                invalid(
                    "ics",
                    format!("the calendar text holds no VEVENT with UID {uid:?}"),
                )
            })?;
        Ok(self.upsert_from_remote(event).await?.0)
    }

    /// The highest version so far (0 when empty).
    pub async fn current_version(&self) -> Result<i64, CalendarError> {
        Ok(self.store.read(db::current_version).await?)
    }

    /// Midnight of `d` in the device zone.
    pub fn midnight(&self, d: Date) -> Result<Zoned, CalendarError> {
        d.to_zoned(self.tz.clone())
            .map_err(|e| invalid("date", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> Zoned {
        s.parse().expect("zoned")
    }

    fn occ(title: &str, a: &str, b: &str) -> Occurrence {
        Occurrence {
            uid: title.into(),
            title: title.into(),
            start: z(a),
            end: z(b),
            all_day: false,
            location: None,
            recurring: false,
            recurrence_id: None,
        }
    }

    async fn service(dir: &std::path::Path) -> Calendar {
        let cfg = crate::config::Config::defaults();
        let store = Store::open(
            &dir.join("t.db"),
            &crate::store::StoreOptions::from(&cfg.store),
        )
        .expect("store");
        Calendar::new(
            store,
            Arc::new(EventBus::new(16)),
            TimeZone::get("Europe/Berlin").expect("tz"),
            CalendarConfig::default(),
        )
    }

    /// The interface the CalDAV side syncs through: versions from one counter, tombstones,
    /// a complete VCALENDAR per change, and remote changes applied by uid.
    #[tokio::test]
    async fn the_change_feed_orders_every_change_and_applies_remote_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let cal = service(dir.path()).await;
        assert_eq!(cal.current_version().await.expect("v"), 0);
        let a = cal
            .create(
                NewEvent::new(
                    "a",
                    z("2026-06-01T09:00[Europe/Berlin]"),
                    z("2026-06-01T10:00[Europe/Berlin]"),
                ),
                None,
            )
            .await
            .expect("a");
        let b = cal
            .create(
                NewEvent::new(
                    "b",
                    z("2026-06-02T09:00[Europe/Berlin]"),
                    z("2026-06-02T10:00[Europe/Berlin]"),
                ),
                None,
            )
            .await
            .expect("b");
        cal.move_to(&a.event.uid, None, &z("2026-06-03T09:00[Europe/Berlin]"))
            .await
            .expect("move");
        cal.delete(&b.event.uid).await.expect("delete");
        let changes = cal.changes_since(0).await.expect("changes");
        let seen: Vec<(String, i64, bool)> = changes
            .iter()
            .map(|c| (c.uid.clone(), c.version, c.ics.is_some()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (a.event.uid.clone(), 3, true),
                (b.event.uid.clone(), 4, false)
            ]
        );
        assert!(changes[0]
            .ics
            .as_deref()
            .is_some_and(|t| t.contains("DTSTART;TZID=Europe/Berlin:20260603T090000")
                && t.contains("SEQUENCE:1")));
        assert_eq!(cal.changes_since(4).await.expect("none"), Vec::new());
        assert_eq!(cal.current_version().await.expect("v"), 4);

        // A remote edit comes back in as a new local version; a remote delete tombstones.
        let text = changes[0]
            .ics
            .clone()
            .unwrap_or_default()
            .replace("SUMMARY:a", "SUMMARY:a (edited remotely)");
        let v = cal
            .apply_remote(&a.event.uid, Some(&text))
            .await
            .expect("apply");
        assert_eq!(v, 5);
        assert_eq!(
            cal.get(&a.event.uid).await.expect("get").title,
            "a (edited remotely)"
        );
        let remote = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:remote-1\r\nSUMMARY:from the phone\r\nDTSTART:20260605T080000Z\r\nDTEND:20260605T083000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        assert_eq!(
            cal.apply_remote("remote-1", Some(remote))
                .await
                .expect("new"),
            6
        );
        assert!(
            cal.apply_remote("other", Some(remote)).await.is_err(),
            "the uid must match"
        );
        assert_eq!(cal.apply_remote("remote-1", None).await.expect("del"), 7);
        assert!(matches!(
            cal.get("remote-1").await,
            Err(CalendarError::NotFound { .. })
        ));
        let tail = cal.changes_since(5).await.expect("tail");
        assert_eq!(tail.len(), 1);
        assert_eq!(
            (tail[0].uid.as_str(), tail[0].version, tail[0].ics.is_none()),
            ("remote-1", 7, true)
        );
        // Reviving a deleted uid works (a remote re-creation).
        assert_eq!(
            cal.apply_remote("remote-1", Some(remote))
                .await
                .expect("again"),
            8
        );
    }

    #[test]
    fn free_slots_fill_the_gaps_of_the_waking_day() {
        let busy = vec![
            occ(
                "a",
                "2026-11-26T13:00[Europe/Berlin]",
                "2026-11-26T14:00[Europe/Berlin]",
            ),
            occ(
                "b",
                "2026-11-26T13:30[Europe/Berlin]",
                "2026-11-26T15:00[Europe/Berlin]",
            ),
            occ(
                "c",
                "2026-11-26T15:10[Europe/Berlin]",
                "2026-11-26T16:00[Europe/Berlin]",
            ),
        ];
        let slots = free_slots(
            &busy,
            &z("2026-11-26T12:00[Europe/Berlin]"),
            &z("2026-11-26T18:00[Europe/Berlin]"),
            Time::new(8, 0, 0, 0).expect("t"),
            Time::new(17, 0, 0, 0).expect("t"),
            SignedDuration::from_mins(30),
        );
        let got: Vec<String> = slots
            .iter()
            .map(|s| format!("{}-{}", s.start.strftime("%H:%M"), s.end.strftime("%H:%M")))
            .collect();
        // 15:00-15:10 is too short; the day ends at 17:00.
        assert_eq!(got, ["12:00-13:00", "16:00-17:00"]);
        let now = z("2026-11-25T10:00[Europe/Berlin]");
        assert_eq!(
            describe_free(&slots, "on Thursday afternoon", &now),
            "You're free on Thursday afternoon from noon to 1 PM and from 4 PM to 5 PM."
        );
    }

    #[test]
    fn listings_read_naturally() {
        let now = z("2026-11-25T10:00[Europe/Berlin]");
        let items = vec![
            occ(
                "dentist",
                "2026-11-26T15:00[Europe/Berlin]",
                "2026-11-26T16:00[Europe/Berlin]",
            ),
            occ(
                "lunch with Anna",
                "2026-11-26T12:00[Europe/Berlin]",
                "2026-11-26T13:00[Europe/Berlin]",
            ),
        ];
        assert_eq!(
            describe_list(&items, "tomorrow", &now, true),
            "You have two appointments tomorrow: dentist at 3 PM and lunch with Anna at noon."
        );
        assert_eq!(
            describe_list(&[], "tomorrow", &now, true),
            "You have no appointments tomorrow."
        );
    }

    #[test]
    fn overrides_and_exdates_shape_a_series() {
        let now = Timestamp::now();
        let e = Event {
            uid: "u".into(),
            title: "standup".into(),
            start: z("2026-06-01T09:00[Europe/Berlin]"),
            end: z("2026-06-01T09:15[Europe/Berlin]"),
            all_day: false,
            location: None,
            notes: None,
            attendees: Vec::new(),
            rrule: Some("FREQ=DAILY;COUNT=5".into()),
            exdates: vec![z("2026-06-02T09:00[Europe/Berlin]")],
            overrides: vec![Override {
                recurrence_id: z("2026-06-03T09:00[Europe/Berlin]"),
                start: z("2026-06-03T11:00[Europe/Berlin]"),
                end: z("2026-06-03T11:30[Europe/Berlin]"),
                title: Some("standup (late)".into()),
                location: None,
                notes: None,
            }],
            alarms: vec![10],
            sequence: 0,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        e.validate().expect("valid");
        let got: Vec<String> = e
            .occurrences(
                z("2026-06-01T00:00[UTC]").timestamp(),
                z("2026-07-01T00:00[UTC]").timestamp(),
                100,
            )
            .iter()
            .map(|o| format!("{} {}", o.start.strftime("%d %H:%M"), o.title))
            .collect();
        assert_eq!(
            got,
            [
                "01 09:00 standup",
                "03 11:00 standup (late)",
                "04 09:00 standup",
                "05 09:00 standup"
            ]
        );
        let last = e.last_end_ms().expect("ends");
        assert_eq!(
            last,
            z("2026-06-05T09:15[Europe/Berlin]")
                .timestamp()
                .as_millisecond()
        );
        let mut bad = e.clone();
        bad.rrule = Some("FREQ=DAILY;BYDAY=XX".into());
        let msg = bad.validate().unwrap_err().to_string();
        assert!(
            msg.starts_with("rrule:") && msg.contains("BYDAY=XX"),
            "{msg}"
        );
    }
}
