//! The domain event bus: every stored message, delivery outcome and component state change,
//! numbered in publication order.
//!
//! Publishing never blocks and never fails: subscribers get a bounded buffer each, and one
//! that falls behind by more than the buffer is told it lagged (the API then drops it).
//! Architecture Invariant: the bus knows nothing about WebSockets or HTTP.

use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::domain::{ConversationId, MessageId, OutboxId, UnixMillis};

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type")]
pub enum EventKind {
    /// A message was committed to the store (inbound or outbound).
    #[serde(rename = "message.stored")]
    MessageStored {
        /// The message.
        message_id: MessageId,
        /// Its conversation.
        conversation_id: ConversationId,
        /// Its channel.
        channel: String,
        /// `inbound` or `outbound`.
        direction: String,
    },
    /// An outbox entry was delivered.
    #[serde(rename = "outbox.delivered")]
    OutboxDelivered {
        /// The entry.
        outbox_id: OutboxId,
        /// Its channel.
        channel: String,
        /// Attempts it took.
        attempts: u32,
    },
    /// A delivery attempt failed and will be retried.
    #[serde(rename = "outbox.retry_scheduled")]
    OutboxRetryScheduled {
        /// The entry.
        outbox_id: OutboxId,
        /// Its channel.
        channel: String,
        /// Attempts so far.
        attempts: u32,
        /// When the next attempt is due (RFC 3339).
        next_attempt_at: String,
        /// Why it failed.
        error: String,
    },
    /// An outbox entry gave up.
    #[serde(rename = "outbox.dead_lettered")]
    OutboxDeadLettered {
        /// The entry.
        outbox_id: OutboxId,
        /// Its channel.
        channel: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// A conversation session changed state.
    #[serde(rename = "session.state_changed")]
    SessionStateChanged {
        /// The conversation.
        conversation_id: ConversationId,
        /// State before.
        from: String,
        /// State after.
        to: String,
        /// The event that caused it.
        cause: String,
    },
    /// A turn finished (answered, asked, refused, cancelled or failed).
    #[serde(rename = "turn.completed")]
    TurnCompleted {
        /// The conversation.
        conversation_id: ConversationId,
        /// The stored reply, if any.
        reply_message_id: Option<MessageId>,
        /// The fast-path intent, if one was recognised.
        intent: Option<String>,
        /// `answered`, `asked`, `refused`, `cancelled`, `busy` or `failed`.
        outcome: String,
        /// Whole turn in milliseconds.
        total_ms: u64,
    },
    /// A reminder or timer fired.
    #[serde(rename = "reminder.fired")]
    ReminderFired {
        /// The reminder.
        reminder_id: i64,
        /// Its conversation.
        conversation_id: ConversationId,
        /// `reminder` or `timer`.
        kind: String,
        /// What was said.
        text: String,
        /// Delivered late because the device was off.
        missed: bool,
    },
    /// A fact was remembered, or a near-identical one replaced by the new wording.
    #[serde(rename = "memory.stored")]
    MemoryStored {
        /// The memory.
        memory_id: i64,
        /// The contact it belongs to, if any.
        contact_id: Option<i64>,
        /// `true` when an existing memory was updated instead of a new one added.
        updated: bool,
    },
    /// Memories were forgotten.
    #[serde(rename = "memory.deleted")]
    MemoryDeleted {
        /// The memories.
        memory_ids: Vec<i64>,
        /// Set when a contact's memories were erased together.
        contact_id: Option<i64>,
    },
    /// A reminder or timer was created.
    #[serde(rename = "reminder.created")]
    ReminderCreated {
        /// The reminder.
        reminder_id: i64,
        /// Its conversation.
        conversation_id: ConversationId,
        /// `reminder` or `timer`.
        kind: String,
        /// Its text.
        text: String,
        /// When it is due (RFC 3339 with zone).
        due: String,
    },
    /// A reminder's text or due time was changed.
    #[serde(rename = "reminder.updated")]
    ReminderUpdated {
        /// The reminder.
        reminder_id: i64,
        /// Its conversation.
        conversation_id: ConversationId,
        /// When it is due now.
        due: String,
    },
    /// A reminder was snoozed.
    #[serde(rename = "reminder.snoozed")]
    ReminderSnoozed {
        /// The reminder that is due again (a one-off copy for a recurring one).
        reminder_id: i64,
        /// Its conversation.
        conversation_id: ConversationId,
        /// When it is due again.
        due: String,
        /// By how many minutes.
        minutes: i64,
    },
    /// A reminder or timer was cancelled.
    #[serde(rename = "reminder.cancelled")]
    ReminderCancelled {
        /// The reminder.
        reminder_id: i64,
        /// Its conversation.
        conversation_id: ConversationId,
    },
    /// A contact was created.
    #[serde(rename = "contact.created")]
    ContactCreated {
        /// The contact.
        contact_id: i64,
        /// Its name.
        display_name: String,
    },
    /// A contact was changed.
    #[serde(rename = "contact.updated")]
    ContactUpdated {
        /// The contact.
        contact_id: i64,
        /// Its name.
        display_name: String,
    },
    /// A contact was deleted.
    #[serde(rename = "contact.deleted")]
    ContactDeleted {
        /// The contact.
        contact_id: i64,
        /// Its name.
        display_name: String,
    },
    /// A vCard file was imported.
    #[serde(rename = "contacts.imported")]
    ContactsImported {
        /// New contacts.
        created: usize,
        /// Updated contacts.
        updated: usize,
    },
    /// An appointment was created, updated or deleted (locally, by import or by sync).
    #[serde(rename = "calendar.changed")]
    CalendarChanged {
        /// The event's uid.
        uid: String,
        /// `created`, `updated` or `deleted`.
        action: String,
        /// Its change-feed version.
        version: i64,
    },
    /// An appointment's alarm fired (its message is delivered like a reminder's).
    #[serde(rename = "calendar.alarm")]
    CalendarAlarm {
        /// The appointment's uid.
        uid: String,
        /// The instance's start (RFC 3339 with zone).
        start: String,
        /// Minutes before the start.
        minutes: i64,
        /// The text delivered.
        text: String,
        /// Delivered late because the device was off.
        missed: bool,
    },
    /// A task was created, updated, completed, deleted or imported.
    #[serde(rename = "task.changed")]
    TaskChanged {
        /// The task's UUID.
        uuid: String,
        /// `created`, `updated`, `completed`, `deleted` or `imported`.
        change: String,
        /// Its description after the change.
        description: String,
    },
    /// A component changed state.
    #[serde(rename = "component.state_changed")]
    ComponentStateChanged {
        /// Component name.
        component: String,
        /// New state.
        state: String,
        /// Human-readable detail.
        detail: String,
    },
}

/// An event with its sequence number and time.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// Strictly increasing, starting at 1 for each daemon run.
    pub seq: u64,
    /// When it was published (RFC 3339).
    pub at: String,
    /// What happened; its `type` tag is flattened into this object.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The bus. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    /// Guards the counter so that sequence order equals delivery order.
    seq: Mutex<u64>,
}

impl EventBus {
    /// A bus whose subscribers may fall `buffer` events behind before they lag.
    pub fn new(buffer: usize) -> Self {
        let (tx, _) = broadcast::channel(buffer.max(1));
        Self {
            tx,
            seq: Mutex::new(0),
        }
    }

    /// Publish an event; returns its sequence number.
    pub fn publish(&self, kind: EventKind) -> u64 {
        let mut seq = match self.seq.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *seq += 1;
        let event = Event {
            seq: *seq,
            at: UnixMillis::now().to_rfc3339(),
            kind,
        };
        // No subscribers is fine: events are a live feed, the store is the record.
        let _ = self.tx.send(event);
        *seq
    }

    /// A new subscription that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Current number of subscribers.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_a_type_tag_and_sequence() {
        let bus = EventBus::new(4);
        let mut rx = bus.subscribe();
        bus.publish(EventKind::ComponentStateChanged {
            component: "store".into(),
            state: "ready".into(),
            detail: String::new(),
        });
        let e = rx.try_recv().ok();
        let v = serde_json::to_value(e).unwrap_or_default();
        assert_eq!(v["type"], "component.state_changed");
        assert_eq!(v["seq"], 1);
        assert_eq!(v["component"], "store");
    }
}
