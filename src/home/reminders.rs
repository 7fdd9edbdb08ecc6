//! Reminders and timers: durable (SQLite), fired by one scheduler task, delivered through the
//! outbox of the channel they were asked on.
//!
//! A reminder records where it is delivered: the channel and address of its conversation by
//! default, or another target (`local` for the speaker, a call, another number) — plain data,
//! since the outbox routes by channel. A fired reminder can be snoozed: a one-off one is due
//! again N minutes later, a recurring one gets a one-off copy (its rule keeps its own times).
//!
//! Invariants: firing a reminder (its outbound message, its outbox entry and its next
//! occurrence or `done` status) commits in one transaction, so a crash never loses nor
//! doubles a delivery. A reminder found overdue at start is delivered once with a "missed
//! while offline" note; a recurring one then moves to its next future occurrence.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::{ConversationId, MessageId, UnixMillis};
use crate::events::{EventBus, EventKind};
use crate::messaging::outbox::{deliver_text_in, Delivered, Outbox};
use crate::nlu::intents::Recurrence;
use crate::store::{Store, StoreError};

/// Reminder or timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// "Remind me to …".
    Reminder,
    /// "Set a timer for …".
    Timer,
}

impl Kind {
    /// Parse `reminder` or `timer`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reminder" => Some(Self::Reminder),
            "timer" => Some(Self::Timer),
            _ => None,
        }
    }

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reminder => "reminder",
            Self::Timer => "timer",
        }
    }
}

/// Where a reminder is delivered when it is not its conversation's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryTarget {
    /// Channel name (`local` is the speaker, `sms`, `twilio`, a call channel, …).
    pub channel: String,
    /// Address on that channel (E.164 for phone channels; `speaker` for `local`).
    pub address: String,
}

impl DeliveryTarget {
    /// The local speaker.
    pub fn speaker() -> Self {
        Self {
            channel: "local".into(),
            address: "speaker".into(),
        }
    }
}

/// Lifecycle of a reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to fire.
    Active,
    /// Fired (and not recurring).
    Done,
    /// Cancelled.
    Cancelled,
}

impl Status {
    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "done" => Some(Self::Done),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Why a reminder operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReminderError {
    /// A field is invalid; nothing was stored.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No such reminder.
    #[error("reminder {0} not found")]
    NotFound(i64),
    /// The reminder is not in a state that allows this.
    #[error("reminder {id} {message}")]
    State {
        /// The reminder.
        id: i64,
        /// Why not.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored reminder or timer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reminder {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: Kind,
    /// Conversation it belongs to (and is delivered to).
    pub conversation_id: ConversationId,
    /// What to remind of / the timer's label (may be empty for an unnamed timer).
    pub text: String,
    /// Next due time.
    pub due: Zoned,
    /// Recurrence, if any.
    pub rule: Option<Recurrence>,
    /// How often it fired.
    pub fire_count: i64,
    /// Active, done or cancelled.
    pub status: Status,
    /// Where it is delivered (`None`: its conversation).
    pub target: Option<DeliveryTarget>,
    /// How often it was snoozed.
    pub snooze_count: i64,
    /// When it last fired.
    #[serde(skip)]
    pub last_fired_at: Option<UnixMillis>,
}

/// A new reminder.
#[derive(Debug, Clone)]
pub struct NewReminder {
    /// Kind.
    pub kind: Kind,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Text / label.
    pub text: String,
    /// First due time.
    pub due: Zoned,
    /// Recurrence.
    pub rule: Option<Recurrence>,
    /// The message that asked for it (makes a re-processed message idempotent).
    pub source_message_id: Option<MessageId>,
    /// Where to deliver it (`None`: the conversation's channel).
    pub target: Option<DeliveryTarget>,
}

fn rule_to_json(rule: &Recurrence) -> String {
    match rule {
        Recurrence::Daily => r#"{"freq":"daily"}"#.to_owned(),
        Recurrence::Weekly { days } => {
            let days: Vec<i8> = days.iter().map(|d| d.to_monday_one_offset()).collect();
            serde_json::json!({ "freq": "weekly", "days": days }).to_string()
        }
        Recurrence::Monthly { day } => {
            serde_json::json!({ "freq": "monthly", "day": day }).to_string()
        }
        Recurrence::Every { interval } => {
            serde_json::json!({ "freq": "every", "seconds": interval.as_secs() }).to_string()
        }
    }
}

fn rule_from_json(s: &str) -> Option<Recurrence> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(match v.get("freq")?.as_str()? {
        "daily" => Recurrence::Daily,
        "weekly" => Recurrence::Weekly {
            days: v
                .get("days")?
                .as_array()?
                .iter()
                .filter_map(|d| d.as_i64())
                .filter_map(|d| Weekday::from_monday_one_offset(i8::try_from(d).ok()?).ok())
                .collect(),
        },
        "monthly" => Recurrence::Monthly {
            day: i8::try_from(v.get("day")?.as_i64()?).ok()?,
        },
        "every" => Recurrence::Every {
            interval: SignedDuration::from_secs(v.get("seconds")?.as_i64()?),
        },
        _ => return None,
    })
}

/// The occurrence of `rule` after `after`, keeping the wall-clock time of `prev` (DST-safe).
pub fn next_occurrence(rule: &Recurrence, prev: &Zoned, after: &Zoned) -> Option<Zoned> {
    let mut cur = prev.clone();
    for _ in 0..5000 {
        cur = match rule {
            Recurrence::Daily => cur.checked_add(jiff::Span::new().days(1)).ok()?,
            Recurrence::Weekly { days } => {
                if days.is_empty() {
                    return None;
                }
                let mut d = cur.checked_add(jiff::Span::new().days(1)).ok()?;
                while !days.contains(&d.weekday()) {
                    d = d.checked_add(jiff::Span::new().days(1)).ok()?;
                }
                d
            }
            Recurrence::Monthly { day } => {
                let next_month = cur
                    .date()
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .ok()?;
                let d = (*day).min(next_month.days_in_month());
                next_month
                    .with()
                    .day(d)
                    .build()
                    .ok()?
                    .to_datetime(cur.time())
                    .to_zoned(cur.time_zone().clone())
                    .ok()?
            }
            Recurrence::Every { interval } => {
                if interval.as_secs() < 1 {
                    return None;
                }
                cur.checked_add(*interval).ok()?
            }
        };
        if cur > *after {
            return Some(cur);
        }
    }
    None
}

fn zoned_of(ms: i64, tz: &str) -> Zoned {
    let ts = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    let tz = TimeZone::get(tz).unwrap_or(TimeZone::UTC);
    ts.to_zoned(tz)
}

fn row_to_reminder(r: &rusqlite::Row<'_>) -> rusqlite::Result<Reminder> {
    let kind: String = r.get(1)?;
    let due: i64 = r.get(4)?;
    let tz: String = r.get(5)?;
    let rule: Option<String> = r.get(6)?;
    let status: String = r.get(8)?;
    let target_channel: Option<String> = r.get(9)?;
    let target_address: Option<String> = r.get(10)?;
    Ok(Reminder {
        id: r.get(0)?,
        kind: if kind == "timer" {
            Kind::Timer
        } else {
            Kind::Reminder
        },
        conversation_id: ConversationId(r.get(2)?),
        text: r.get(3)?,
        due: zoned_of(due, &tz),
        rule: rule.as_deref().and_then(rule_from_json),
        fire_count: r.get(7)?,
        status: Status::parse(&status).unwrap_or(Status::Cancelled),
        target: match (target_channel, target_address) {
            (Some(channel), Some(address)) => Some(DeliveryTarget { channel, address }),
            _ => None,
        },
        snooze_count: r.get(11)?,
        last_fired_at: r.get::<_, Option<i64>>(12)?.map(UnixMillis),
    })
}

const COLS: &str = "id, kind, conversation_id, text, due_at, timezone, rule, fire_count, status,
                    target_channel, target_address, snooze_count, last_fired_at";

fn tz_name(z: &Zoned) -> String {
    z.time_zone().iana_name().unwrap_or("UTC").to_owned()
}

/// Insert (idempotent on the source message).
pub fn insert(conn: &Connection, r: &NewReminder) -> Result<Reminder, StoreError> {
    if let Some(src) = r.source_message_id {
        let existing = conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM reminders WHERE source_message_id = ?1"
            ))?
            .query_row([src.0], row_to_reminder)
            .optional()?;
        if let Some(e) = existing {
            return Ok(e);
        }
    }
    let now = UnixMillis::now();
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO reminders (kind, conversation_id, text, due_at, timezone, rule,
                                    source_message_id, created_at, updated_at,
                                    target_channel, target_address)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10) RETURNING id",
        )?
        .query_row(
            params![
                r.kind.as_str(),
                r.conversation_id.0,
                r.text,
                r.due.timestamp().as_millisecond(),
                tz_name(&r.due),
                r.rule.as_ref().map(rule_to_json),
                r.source_message_id.map(|m| m.0),
                now.0,
                r.target.as_ref().map(|t| t.channel.as_str()),
                r.target.as_ref().map(|t| t.address.as_str()),
            ],
            |row| row.get(0),
        )?;
    Ok(Reminder {
        id,
        kind: r.kind,
        conversation_id: r.conversation_id,
        text: r.text.clone(),
        due: r.due.clone(),
        rule: r.rule.clone(),
        fire_count: 0,
        status: Status::Active,
        target: r.target.clone(),
        snooze_count: 0,
        last_fired_at: None,
    })
}

/// One reminder.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Reminder>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLS} FROM reminders WHERE id = ?1"))?
        .query_row([id], row_to_reminder)
        .optional()?)
}

/// Filters of [`query`].
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this kind.
    pub kind: Option<Kind>,
    /// Only this status.
    pub status: Option<Status>,
    /// Only this conversation.
    pub conversation_id: Option<ConversationId>,
    /// Page size.
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
}

/// Reminders matching `f`, soonest first, and how many match in all.
pub fn query(conn: &Connection, f: &Filter) -> Result<(Vec<Reminder>, i64), StoreError> {
    let where_ = "(?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR status = ?2)
                  AND (?3 IS NULL OR conversation_id = ?3)";
    let args = params![
        f.kind.map(Kind::as_str),
        f.status.map(Status::as_str),
        f.conversation_id.map(|c| c.0)
    ];
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM reminders WHERE {where_}"))?
        .query_row(args, |r| r.get(0))?;
    let items = conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM reminders WHERE {where_} ORDER BY due_at, id LIMIT ?4 OFFSET ?5"
        ))?
        .query_map(
            params![
                f.kind.map(Kind::as_str),
                f.status.map(Status::as_str),
                f.conversation_id.map(|c| c.0),
                i64::try_from(f.limit).unwrap_or(i64::MAX),
                i64::try_from(f.offset).unwrap_or(i64::MAX)
            ],
            row_to_reminder,
        )?
        .collect::<Result<_, _>>()?;
    Ok((items, total))
}

/// Change text, due time and/or target of an active reminder.
pub fn update(
    conn: &Connection,
    id: i64,
    text: Option<&str>,
    due: Option<&Zoned>,
    target: Option<Option<&DeliveryTarget>>,
) -> Result<Result<Reminder, ReminderError>, StoreError> {
    let Some(r) = get(conn, id)? else {
        return Ok(Err(ReminderError::NotFound(id)));
    };
    if r.status != Status::Active {
        return Ok(Err(ReminderError::State {
            id,
            message: format!(
                "is {}; only an active reminder can be changed (snooze a fired one)",
                r.status.as_str()
            ),
        }));
    }
    let now = UnixMillis::now();
    if let Some(t) = text {
        conn.prepare_cached("UPDATE reminders SET text = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, t, now.0])?;
    }
    if let Some(d) = due {
        conn.prepare_cached(
            "UPDATE reminders SET due_at = ?2, timezone = ?3, updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![
            id,
            d.timestamp().as_millisecond(),
            tz_name(d),
            now.0
        ])?;
    }
    if let Some(t) = target {
        conn.prepare_cached(
            "UPDATE reminders SET target_channel = ?2, target_address = ?3, updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![
            id,
            t.map(|t| t.channel.as_str()),
            t.map(|t| t.address.as_str()),
            now.0
        ])?;
    }
    Ok(get(conn, id)?.ok_or(ReminderError::NotFound(id)))
}

/// Snooze reminder `id` until `until`: a one-off one (active or fired) is due again then; a
/// recurring one that has fired gets a one-off copy due then. Returns the reminder that is due.
pub fn snooze(
    conn: &Connection,
    id: i64,
    until: &Zoned,
) -> Result<Result<Reminder, ReminderError>, StoreError> {
    let Some(r) = get(conn, id)? else {
        return Ok(Err(ReminderError::NotFound(id)));
    };
    let now = UnixMillis::now();
    let due_ms = until.timestamp().as_millisecond();
    match (r.status, &r.rule) {
        (Status::Cancelled, _) => Ok(Err(ReminderError::State {
            id,
            message: "is cancelled; it cannot be snoozed".into(),
        })),
        (_, None) => {
            conn.prepare_cached(
                "UPDATE reminders SET status = 'active', due_at = ?2, timezone = ?3,
                        snooze_count = snooze_count + 1, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, due_ms, tz_name(until), now.0])?;
            Ok(get(conn, id)?.ok_or(ReminderError::NotFound(id)))
        }
        (_, Some(_)) if r.last_fired_at.is_none() => Ok(Err(ReminderError::State {
            id,
            message: "is recurring and has not fired yet; change its time instead".into(),
        })),
        (_, Some(_)) => {
            let copy = insert(
                conn,
                &NewReminder {
                    kind: r.kind,
                    conversation_id: r.conversation_id,
                    text: r.text.clone(),
                    due: until.clone(),
                    rule: None,
                    source_message_id: None,
                    target: r.target.clone(),
                },
            )?;
            conn.prepare_cached("UPDATE reminders SET snooze_count = 1 WHERE id = ?1")?
                .execute([copy.id])?;
            Ok(get(conn, copy.id)?.ok_or(ReminderError::NotFound(copy.id)))
        }
    }
}

/// The reminder or timer of a conversation that fired last, if it fired after `since`.
pub fn last_fired(
    conn: &Connection,
    conversation_id: ConversationId,
    since: UnixMillis,
) -> Result<Option<Reminder>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM reminders WHERE conversation_id = ?1 AND last_fired_at >= ?2
              AND status != 'cancelled' ORDER BY last_fired_at DESC, id DESC LIMIT 1"
        ))?
        .query_row(params![conversation_id.0, since.0], row_to_reminder)
        .optional()?)
}

/// Active reminders/timers of a conversation, soonest first.
pub fn list_active(
    conn: &Connection,
    conversation_id: ConversationId,
    kind: Kind,
) -> Result<Vec<Reminder>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM reminders WHERE conversation_id = ?1 AND kind = ?2 AND status = 'active'
             ORDER BY due_at, id"
        ))?
        .query_map(params![conversation_id.0, kind.as_str()], row_to_reminder)?
        .collect::<Result<_, _>>()?)
}

/// Cancel these ids (only if still active); returns (id, conversation) of those cancelled.
pub fn cancel(conn: &Connection, ids: &[i64]) -> Result<Vec<(i64, ConversationId)>, StoreError> {
    let now = UnixMillis::now();
    let mut out = Vec::new();
    for id in ids {
        let hit: Option<i64> = conn
            .prepare_cached(
                "UPDATE reminders SET status = 'cancelled', updated_at = ?2 WHERE id = ?1 AND status = 'active'
                 RETURNING conversation_id",
            )?
            .query_row(params![id, now.0], |r| r.get(0))
            .optional()?;
        if let Some(c) = hit {
            out.push((*id, ConversationId(c)));
        }
    }
    Ok(out)
}

/// What firing one reminder did.
#[derive(Debug, Clone)]
struct Fired {
    reminder: Reminder,
    text: String,
    missed: bool,
    delivered: Delivered,
}

/// The reminders service and its scheduler.
#[derive(Clone)]
pub struct Reminders {
    store: Store,
    events: Arc<EventBus>,
    outbox: Outbox,
    wake: Arc<Notify>,
    missed_grace: Duration,
}

impl Reminders {
    /// A service over `store`, delivering through `outbox`.
    pub fn new(
        store: Store,
        events: Arc<EventBus>,
        outbox: Outbox,
        missed_grace: Duration,
    ) -> Self {
        Self {
            store,
            events,
            outbox,
            wake: Arc::new(Notify::new()),
            missed_grace,
        }
    }

    /// Store a new reminder or timer and reschedule.
    pub async fn create(&self, r: NewReminder) -> Result<Reminder, StoreError> {
        let out = self.store.write(move |c| insert(c, &r)).await?;
        self.wake.notify_one();
        self.events.publish(EventKind::ReminderCreated {
            reminder_id: out.id,
            conversation_id: out.conversation_id,
            kind: out.kind.as_str().to_owned(),
            text: out.text.clone(),
            due: out.due.to_string(),
        });
        Ok(out)
    }

    /// One reminder.
    pub async fn get(&self, id: i64) -> Result<Reminder, ReminderError> {
        self.store
            .read(move |c| get(c, id))
            .await?
            .ok_or(ReminderError::NotFound(id))
    }

    /// Reminders matching `filter`, and how many match in all.
    pub async fn query(&self, filter: Filter) -> Result<(Vec<Reminder>, i64), StoreError> {
        self.store.read(move |c| query(c, &filter)).await
    }

    /// Change the text, due time or delivery target of an active reminder.
    pub async fn update(
        &self,
        id: i64,
        text: Option<String>,
        due: Option<Zoned>,
        target: Option<Option<DeliveryTarget>>,
    ) -> Result<Reminder, ReminderError> {
        let r = self
            .store
            .write(move |c| {
                update(
                    c,
                    id,
                    text.as_deref(),
                    due.as_ref(),
                    target.as_ref().map(Option::as_ref),
                )
            })
            .await??;
        self.wake.notify_one();
        self.events.publish(EventKind::ReminderUpdated {
            reminder_id: r.id,
            conversation_id: r.conversation_id,
            due: r.due.to_string(),
        });
        Ok(r)
    }

    /// Snooze reminder `id` by `minutes` from now (see [`snooze`]).
    pub async fn snooze(&self, id: i64, minutes: i64) -> Result<Reminder, ReminderError> {
        if !(1..=1440).contains(&minutes) {
            return Err(ReminderError::Invalid {
                field: "minutes".into(),
                message: format!("must be from 1 to 1440; got {minutes}"),
            });
        }
        let r = self
            .store
            .write(move |c| {
                let Some(cur) = get(c, id)? else {
                    return Ok(Err(ReminderError::NotFound(id)));
                };
                let until = Timestamp::now()
                    .to_zoned(cur.due.time_zone().clone())
                    .checked_add(SignedDuration::from_mins(minutes));
                match until {
                    Ok(until) => snooze(c, id, &until),
                    Err(e) => Ok(Err(ReminderError::Invalid {
                        field: "minutes".into(),
                        message: e.to_string(),
                    })),
                }
            })
            .await??;
        self.wake.notify_one();
        self.events.publish(EventKind::ReminderSnoozed {
            reminder_id: r.id,
            conversation_id: r.conversation_id,
            due: r.due.to_string(),
            minutes,
        });
        Ok(r)
    }

    /// The reminder of a conversation that fired last, within `within`.
    pub async fn last_fired(
        &self,
        conversation_id: ConversationId,
        within: Duration,
    ) -> Result<Option<Reminder>, StoreError> {
        let since = UnixMillis(
            UnixMillis::now()
                .0
                .saturating_sub(i64::try_from(within.as_millis()).unwrap_or(i64::MAX)),
        );
        self.store
            .read(move |c| last_fired(c, conversation_id, since))
            .await
    }

    /// Active ones of a conversation.
    pub async fn list(
        &self,
        conversation_id: ConversationId,
        kind: Kind,
    ) -> Result<Vec<Reminder>, StoreError> {
        self.store
            .read(move |c| list_active(c, conversation_id, kind))
            .await
    }

    /// Cancel by ids; returns how many were active.
    pub async fn cancel(&self, ids: Vec<i64>) -> Result<usize, StoreError> {
        let done = self.store.write(move |c| cancel(c, &ids)).await?;
        self.wake.notify_one();
        for (reminder_id, conversation_id) in &done {
            self.events.publish(EventKind::ReminderCancelled {
                reminder_id: *reminder_id,
                conversation_id: *conversation_id,
            });
        }
        Ok(done.len())
    }

    /// The scheduler: fires due reminders until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let wait = match self.fire_due().await {
                Ok(next) => next.map_or(Duration::from_secs(30), |at| {
                    let ms = at.0.saturating_sub(UnixMillis::now().0).max(0);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                        .min(Duration::from_secs(30))
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "reminders: cannot fire due reminders; retrying");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Fire everything due now; returns when the next one is due.
    pub async fn fire_due(&self) -> Result<Option<UnixMillis>, StoreError> {
        let outbox = self.outbox.clone();
        let grace_ms = i64::try_from(self.missed_grace.as_millis()).unwrap_or(i64::MAX);
        let (fired, next) = self
            .store
            .write(move |c| fire_due_in(c, &outbox, UnixMillis::now(), grace_ms))
            .await?;
        for f in fired {
            self.outbox.announce_delivered(&f.delivered);
            tracing::info!(
                reminder = f.reminder.id,
                kind = f.reminder.kind.as_str(),
                missed = f.missed,
                "reminder fired"
            );
            self.events.publish(EventKind::ReminderFired {
                reminder_id: f.reminder.id,
                conversation_id: f.reminder.conversation_id,
                kind: f.reminder.kind.as_str().to_owned(),
                text: f.text.clone(),
                missed: f.missed,
            });
        }
        Ok(next)
    }
}

/// The sentence delivered when `r` fires.
pub fn fire_text(r: &Reminder, missed: bool) -> String {
    let base = match r.kind {
        Kind::Reminder => format!("Reminder: {}.", r.text.trim_end_matches('.')),
        Kind::Timer if r.text.is_empty() => "Your timer is done.".to_owned(),
        Kind::Timer => format!("Your {} timer is done.", r.text),
    };
    if missed {
        format!(
            "Missed while I was offline (due {}): {base}",
            crate::orchestrator::speak::day_and_time(&r.due, &r.due)
        )
    } else {
        base
    }
}

fn fire_due_in(
    c: &Connection,
    outbox: &Outbox,
    now: UnixMillis,
    grace_ms: i64,
) -> Result<(Vec<Fired>, Option<UnixMillis>), StoreError> {
    let due: Vec<Reminder> = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM reminders WHERE status = 'active' AND due_at <= ?1 ORDER BY due_at, id LIMIT 64"
        ))?
        .query_map([now.0], row_to_reminder)?
        .collect::<Result<_, _>>()?;
    let mut fired = Vec::new();
    for r in due {
        let missed = now.0 - r.due.timestamp().as_millisecond() > grace_ms;
        let text = fire_text(&r, missed);
        let (channel, address): (String, String) = match &r.target {
            Some(t) => (t.channel.clone(), t.address.clone()),
            None => c
                .prepare_cached("SELECT channel, address FROM conversations WHERE id = ?1")?
                .query_row([r.conversation_id.0], |row| Ok((row.get(0)?, row.get(1)?)))?,
        };
        let delivered =
            deliver_text_in(c, outbox, &channel, &address, &text, r.kind.as_str(), now)?;
        let f = Fired {
            reminder: r.clone(),
            text,
            missed,
            delivered,
        };
        let now_z = Timestamp::from_millisecond(now.0)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(r.due.time_zone().clone());
        let next = r
            .rule
            .as_ref()
            .and_then(|rule| next_occurrence(rule, &r.due, &now_z));
        match next {
            Some(n) => {
                c.prepare_cached(
                    "UPDATE reminders SET due_at = ?2, fire_count = fire_count + 1, updated_at = ?3,
                            last_fired_at = ?3 WHERE id = ?1",
                )?
                .execute(params![r.id, n.timestamp().as_millisecond(), now.0])?;
            }
            None => {
                c.prepare_cached(
                    "UPDATE reminders SET status = 'done', fire_count = fire_count + 1, updated_at = ?2,
                            last_fired_at = ?2 WHERE id = ?1",
                )?
                .execute(params![r.id, now.0])?;
            }
        }
        fired.push(f);
    }
    let next: Option<i64> = c
        .prepare_cached("SELECT min(due_at) FROM reminders WHERE status = 'active'")?
        .query_row([], |r| r.get(0))?;
    Ok((fired, next.map(UnixMillis)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> Zoned {
        s.parse().expect("zoned")
    }

    #[test]
    fn daily_keeps_wall_clock_across_dst() {
        let prev = z("2026-03-28T08:00[Europe/Berlin]");
        let next = next_occurrence(&Recurrence::Daily, &prev, &prev).expect("next");
        assert_eq!(next.to_string(), "2026-03-29T08:00:00+02:00[Europe/Berlin]");
    }

    #[test]
    fn weekly_finds_the_next_listed_day_after_now() {
        let prev = z("2026-11-23T07:30[Europe/Berlin]"); // a Monday
        let after = z("2026-11-26T12:00[Europe/Berlin]"); // Thursday
        let rule = Recurrence::Weekly {
            days: vec![Weekday::Monday, Weekday::Friday],
        };
        let next = next_occurrence(&rule, &prev, &after).expect("next");
        assert_eq!(next.to_string(), "2026-11-27T07:30:00+01:00[Europe/Berlin]");
    }

    #[test]
    fn monthly_clamps_to_short_months_and_every_skips_missed_runs() {
        let prev = z("2026-01-31T09:00[UTC]");
        let next = next_occurrence(&Recurrence::Monthly { day: 31 }, &prev, &prev).expect("next");
        assert_eq!(next.date().to_string(), "2026-02-28");
        let every = Recurrence::Every {
            interval: SignedDuration::from_hours(2),
        };
        let after = z("2026-01-31T14:30[UTC]");
        let next = next_occurrence(&every, &prev, &after).expect("next");
        assert_eq!(next.to_string(), "2026-01-31T15:00:00+00:00[UTC]");
    }

    #[test]
    fn rules_round_trip_through_json() {
        for rule in [
            Recurrence::Daily,
            Recurrence::Weekly {
                days: vec![Weekday::Monday, Weekday::Thursday],
            },
            Recurrence::Monthly { day: 4 },
            Recurrence::Every {
                interval: SignedDuration::from_mins(90),
            },
        ] {
            assert_eq!(rule_from_json(&rule_to_json(&rule)), Some(rule));
        }
    }
}
