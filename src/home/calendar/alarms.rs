//! Appointment alarms (VALARM, minutes before each instance's start): one scheduler task finds
//! the triggers that are due, delivers a spoken-style message and remembers each firing.
//!
//! Where an alarm goes: the conversation that booked the appointment (by chat, SMS, voice),
//! else `[calendar] alarm_channel`/`alarm_address` (the local speaker by default) — through the
//! outbox when that channel has a transport, else kept in its conversation like any reply.
//!
//! Invariants: a firing (its message, its outbox entry and its row in `calendar_alarms`, keyed by
//! event, instance start and lead time) commits in one transaction, so a crash neither loses
//! nor repeats one. An alarm whose time passed while the device was off fires once, with a
//! "missed while offline" note, as long as its appointment has not ended; an alarm whose time
//! was already past when the appointment was booked or last changed does not fire. Moving an
//! appointment makes new instance starts, so its alarms fire again for the new time.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp, Zoned};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::db;
use crate::domain::UnixMillis;
use crate::events::{EventBus, EventKind};
use crate::messaging::outbox::{deliver_text_in, Delivered, Outbox};
use crate::orchestrator::speak;
use crate::store::{Store, StoreError};

/// The longest lead time an alarm may have (4 weeks), as validated on events.
pub const MAX_LEAD_MINUTES: i64 = 40_320;
/// Fired-alarm rows older than this (by instance start, in ms) are pruned.
const KEEP_FIRED_MS: i64 = 30 * 24 * 3600 * 1000;
/// The scheduler looks again at least this often (a change wakes it at once).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// One alarm that fired.
#[derive(Debug, Clone)]
pub struct FiredAlarm {
    /// The appointment.
    pub uid: String,
    /// The instance's start.
    pub start: Zoned,
    /// Minutes before the start.
    pub minutes: i64,
    /// The text delivered.
    pub text: String,
    /// Delivered late because the device was off.
    pub missed: bool,
    delivered: Delivered,
}

/// The alarm scheduler.
#[derive(Clone)]
pub struct Alarms {
    store: Store,
    events: Arc<EventBus>,
    outbox: Outbox,
    channel: String,
    address: String,
    missed_grace: Duration,
}

impl Alarms {
    /// Alarms of the calendar in `store`, delivered through `outbox`; `channel`/`address` is
    /// where alarms of appointments not booked in a conversation go.
    pub fn new(
        store: Store,
        events: Arc<EventBus>,
        outbox: Outbox,
        channel: String,
        address: String,
        missed_grace: Duration,
    ) -> Self {
        Self {
            store,
            events,
            outbox,
            channel,
            address,
            missed_grace,
        }
    }

    /// Run until `shutdown`: fire what is due, sleep until the next trigger (at most
    /// [`MAX_SLEEP`]) or until `changed` (the calendar's [`super::Calendar::changed`]) fires.
    pub async fn run(self, changed: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let wait = match self.fire_due().await {
                Ok(next) => next.map_or(MAX_SLEEP, |at| {
                    let ms = at.0.saturating_sub(UnixMillis::now().0).max(0);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(MAX_SLEEP)
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "calendar alarms: cannot fire; retrying");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = changed.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Fire every alarm due now; returns when the next one is due (within the look-ahead).
    pub async fn fire_due(&self) -> Result<Option<UnixMillis>, StoreError> {
        let (outbox, channel, address) = (
            self.outbox.clone(),
            self.channel.clone(),
            self.address.clone(),
        );
        let grace = SignedDuration::try_from(self.missed_grace).unwrap_or(SignedDuration::ZERO);
        let (fired, next) = self
            .store
            .write(move |c| fire_due_in(c, &outbox, &channel, &address, Timestamp::now(), grace))
            .await?;
        for f in fired {
            self.outbox.announce_delivered(&f.delivered);
            tracing::info!(uid = %f.uid, minutes = f.minutes, missed = f.missed, "appointment alarm fired");
            self.events.publish(EventKind::CalendarAlarm {
                uid: f.uid.clone(),
                start: f.start.to_string(),
                minutes: f.minutes,
                text: f.text.clone(),
                missed: f.missed,
            });
        }
        Ok(next)
    }
}

/// The sentence an alarm delivers: "Coming up in 15 minutes: dentist today at 3 PM at
/// Main Street 4."
pub fn alarm_text(title: &str, location: Option<&str>, start: &Zoned, now: &Zoned) -> String {
    let lead = start.timestamp().duration_since(now.timestamp());
    let when = speak::day_and_time(start, now);
    let place = location
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!(" at {}", l.trim_end_matches('.')))
        .unwrap_or_default();
    let title = title.trim().trim_end_matches('.');
    if lead <= SignedDuration::from_secs(30) {
        format!("Starting now: {title}{place}.")
    } else {
        // Rounded to the minute: the alarm fires on its minute, a few seconds late at most.
        let mins = (lead.as_secs() + 30) / 60;
        format!(
            "Coming up in {}: {title} {when}{place}.",
            speak::duration(SignedDuration::from_mins(mins))
        )
    }
}

/// Where an alarm of `e` goes: its booking conversation, else the configured target.
fn target_of(
    c: &Connection,
    source: Option<i64>,
    channel: &str,
    address: &str,
) -> Result<(String, String), StoreError> {
    if let Some(src) = source {
        let found: Option<(String, String)> = c
            .prepare_cached(
                "SELECT v.channel, v.address FROM messages m
                   JOIN conversations v ON v.id = m.conversation_id WHERE m.id = ?1",
            )?
            .query_row([src], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some(t) = found {
            return Ok(t);
        }
    }
    Ok((channel.to_owned(), address.to_owned()))
}

fn fire_due_in(
    c: &Connection,
    outbox: &Outbox,
    channel: &str,
    address: &str,
    now: Timestamp,
    grace: SignedDuration,
) -> Result<(Vec<FiredAlarm>, Option<UnixMillis>), StoreError> {
    let now_ms = now.as_millisecond();
    c.prepare_cached("DELETE FROM calendar_alarms WHERE occurrence_at < ?1")?
        .execute([now_ms.saturating_sub(KEEP_FIRED_MS)])?;
    // Instances that have not ended and start within the longest lead time.
    let horizon = now
        .checked_add(SignedDuration::from_mins(MAX_LEAD_MINUTES + 1))
        .unwrap_or(now);
    let events = db::with_alarms_in_range(c, now_ms, horizon.as_millisecond())?;
    let mut fired = Vec::new();
    let mut next: Option<i64> = None;
    for (e, source) in events {
        let lead_max = e.alarms.iter().copied().max().unwrap_or(0);
        let to = now
            .checked_add(SignedDuration::from_mins(lead_max + 1))
            .unwrap_or(now);
        let changed = e.updated_at.max(e.created_at);
        for o in e.occurrences(now, to, 256) {
            if o.end.timestamp() <= now {
                continue;
            }
            let start_ms = o.start.timestamp().as_millisecond();
            for &m in &e.alarms {
                let Ok(trigger) = o
                    .start
                    .timestamp()
                    .checked_sub(SignedDuration::from_mins(m))
                else {
                    continue;
                };
                if trigger > now {
                    let t = trigger.as_millisecond();
                    next = Some(next.map_or(t, |n: i64| n.min(t)));
                    continue;
                }
                if trigger < changed {
                    // Already past when booked or changed: nobody needs this one.
                    continue;
                }
                let done: bool = c
                    .prepare_cached(
                        "SELECT 1 FROM calendar_alarms WHERE uid = ?1 AND occurrence_at = ?2
                           AND minutes = ?3",
                    )?
                    .exists(params![e.uid, start_ms, m])?;
                if done {
                    continue;
                }
                let missed = now.duration_since(trigger) > grace;
                let now_z = now.to_zoned(o.start.time_zone().clone());
                let mut text = alarm_text(&o.title, o.location.as_deref(), &o.start, &now_z);
                if missed {
                    text = format!("Missed while I was offline: {text}");
                }
                let (ch, addr) = target_of(c, source, channel, address)?;
                let delivered =
                    deliver_text_in(c, outbox, &ch, &addr, &text, "alarm", UnixMillis(now_ms))?;
                c.prepare_cached(
                    "INSERT INTO calendar_alarms (uid, occurrence_at, minutes, fired_at)
                       VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![e.uid, start_ms, m, now_ms])?;
                fired.push(FiredAlarm {
                    uid: e.uid.clone(),
                    start: o.start.clone(),
                    minutes: m,
                    text,
                    missed,
                    delivered,
                });
            }
        }
    }
    Ok((fired, next.map(UnixMillis)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> Zoned {
        s.parse().unwrap_or_else(|_| Zoned::now())
    }

    #[test]
    fn the_text_says_how_soon_what_and_where() {
        let now = z("2026-03-02T14:45:00+01:00[Europe/Berlin]");
        let start = z("2026-03-02T15:00:00+01:00[Europe/Berlin]");
        assert_eq!(
            alarm_text("Dentist.", Some("Main Street 4"), &start, &now),
            "Coming up in 15 minutes: Dentist today at 3 PM at Main Street 4."
        );
        assert_eq!(
            alarm_text("dentist", None, &start, &start),
            "Starting now: dentist."
        );
        let day_before = z("2026-03-01T15:00:05+01:00[Europe/Berlin]");
        assert_eq!(
            alarm_text("dentist", None, &start, &day_before),
            "Coming up in 1 day: dentist tomorrow at 3 PM."
        );
    }
}
