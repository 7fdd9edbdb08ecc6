//! Conversation sessions: an explicit state machine per conversation (or call), persisted in
//! the `sessions` table so that a restart resumes open questions and cleanly closes the rest.
//!
//! ```text
//!  Idle ──wake──▶ Listening ──utterance──▶ Thinking ──reply──▶ Speaking ──done──▶ Idle
//!   │                 ▲                       │                    ├──ask slot──▶ AwaitingSlot
//!   └──ring──▶ Ringing ┘ (answer)             └────(done/ask)──────┴──confirm───▶ AwaitingConfirmation
//!  AwaitingSlot / AwaitingConfirmation ──utterance──▶ Thinking;  ──timeout──▶ Idle
//!  any ──barge-in──▶ Listening;  any ──hang-up──▶ Closed (final)
//! ```
//! Text sessions go Idle → Thinking directly (there is no listening phase); calls return to
//! Listening instead of Idle after a reply.

use serde::{Deserialize, Serialize};

use crate::domain::{ConversationId, UnixMillis};
use crate::store::StoreError;

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Nothing going on.
    Idle,
    /// A call is ringing.
    Ringing,
    /// Capturing the person's speech.
    Listening,
    /// Working on a reply.
    Thinking,
    /// Delivering a reply.
    Speaking,
    /// A question for a missing detail is open.
    AwaitingSlot,
    /// A yes/no confirmation is open.
    AwaitingConfirmation,
    /// The call ended; final.
    Closed,
}

impl SessionState {
    /// Snake-case name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Ringing => "ringing",
            Self::Listening => "listening",
            Self::Thinking => "thinking",
            Self::Speaking => "speaking",
            Self::AwaitingSlot => "awaiting_slot",
            Self::AwaitingConfirmation => "awaiting_confirmation",
            Self::Closed => "closed",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "idle" => Self::Idle,
            "ringing" => Self::Ringing,
            "listening" => Self::Listening,
            "thinking" => Self::Thinking,
            "speaking" => Self::Speaking,
            "awaiting_slot" => Self::AwaitingSlot,
            "awaiting_confirmation" => Self::AwaitingConfirmation,
            "closed" => Self::Closed,
            _ => return None,
        })
    }
}

/// Text, local voice or a phone call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// SMS, API, chat.
    Text,
    /// The local microphone.
    Voice,
    /// A phone call.
    Call,
}

impl SessionKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Voice => "voice",
            Self::Call => "call",
        }
    }
}

/// What happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEvent {
    /// Wake word or button.
    Wake,
    /// An incoming call rings.
    Ring,
    /// The call was answered.
    Answer,
    /// A complete utterance or message arrived.
    Utterance,
    /// The first piece of the reply is out.
    ReplyStarted,
    /// The reply ended and nothing is open.
    ReplyDone,
    /// The reply asked for a missing detail.
    AskedSlot,
    /// The reply asked for a yes/no confirmation.
    AskedConfirmation,
    /// Barge-in: the person interrupted.
    BargeIn,
    /// An open question expired, or the person said "cancel".
    Timeout,
    /// The call hung up / the session ended.
    HangUp,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session cannot go from {from:?} on {event:?}")]
pub struct InvalidTransition {
    /// The state.
    pub from: SessionState,
    /// The event.
    pub event: SessionEvent,
}

/// The transition function: the whole table.
pub fn transition(
    kind: SessionKind,
    from: SessionState,
    event: SessionEvent,
) -> Result<SessionState, InvalidTransition> {
    use SessionEvent as E;
    use SessionState as S;
    let after_reply = if kind == SessionKind::Call {
        S::Listening
    } else {
        S::Idle
    };
    let to = match (from, event) {
        (S::Closed, _) => None,
        (_, E::HangUp) => Some(S::Closed),
        (S::Idle | S::AwaitingSlot | S::AwaitingConfirmation, E::Wake) => Some(S::Listening),
        (S::Idle, E::Ring) => Some(S::Ringing),
        (S::Ringing, E::Answer) => Some(S::Listening),
        (S::Idle | S::Listening | S::AwaitingSlot | S::AwaitingConfirmation, E::Utterance) => {
            Some(S::Thinking)
        }
        (S::Thinking, E::ReplyStarted) => Some(S::Speaking),
        (S::Thinking | S::Speaking, E::ReplyDone) => Some(after_reply),
        (S::Thinking | S::Speaking, E::AskedSlot) => Some(S::AwaitingSlot),
        (S::Thinking | S::Speaking, E::AskedConfirmation) => Some(S::AwaitingConfirmation),
        (S::Thinking | S::Speaking | S::Listening, E::BargeIn) => Some(S::Listening),
        (S::AwaitingSlot | S::AwaitingConfirmation | S::Listening, E::Timeout) => Some(after_reply),
        _ => None,
    };
    to.ok_or(InvalidTransition { from, event })
}

/// A stored session row.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Kind.
    pub kind: SessionKind,
    /// State.
    pub state: SessionState,
    /// The open dialogue (JSON), if any.
    pub pending: Option<String>,
    /// Last change.
    pub updated_at: UnixMillis,
}

/// Load a session (a missing one is `Idle`).
pub fn load(
    conn: &rusqlite::Connection,
    conversation_id: ConversationId,
) -> Result<SessionRow, StoreError> {
    use rusqlite::OptionalExtension;
    let row: Option<(String, String, Option<String>, i64)> = conn
        .prepare_cached(
            "SELECT kind, state, pending, updated_at FROM sessions WHERE conversation_id = ?1",
        )?
        .query_row([conversation_id.0], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    Ok(match row {
        Some((kind, state, pending, at)) => SessionRow {
            conversation_id,
            kind: match kind.as_str() {
                "voice" => SessionKind::Voice,
                "call" => SessionKind::Call,
                _ => SessionKind::Text,
            },
            state: SessionState::parse(&state).unwrap_or(SessionState::Idle),
            pending,
            updated_at: UnixMillis(at),
        },
        None => SessionRow {
            conversation_id,
            kind: SessionKind::Text,
            state: SessionState::Idle,
            pending: None,
            updated_at: UnixMillis(0),
        },
    })
}

/// Store a session's state and open dialogue.
pub fn save(conn: &rusqlite::Connection, row: &SessionRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO sessions (conversation_id, kind, state, pending, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (conversation_id) DO UPDATE
           SET kind = excluded.kind, state = excluded.state, pending = excluded.pending,
               updated_at = excluded.updated_at",
    )?
    .execute(rusqlite::params![
        row.conversation_id.0,
        row.kind.as_str(),
        row.state.as_str(),
        row.pending,
        row.updated_at.0
    ])?;
    Ok(())
}

/// What [`recover`] did to one session at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// State before.
    pub from: SessionState,
    /// State after.
    pub to: SessionState,
}

/// At start: sessions caught mid-turn (thinking/speaking/listening/ringing) are closed back to
/// idle (calls to closed) — their inbound message is processed again by the inbox; open
/// questions younger than `open_for` are resumed, older ones expire to idle.
pub fn recover(
    conn: &rusqlite::Connection,
    now: UnixMillis,
    open_for_ms: i64,
) -> Result<Vec<Recovered>, StoreError> {
    let rows: Vec<(i64, String, String, i64)> = conn
        .prepare("SELECT conversation_id, kind, state, updated_at FROM sessions WHERE state NOT IN ('idle', 'closed')")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (id, kind, state, at) in rows {
        let Some(from) = SessionState::parse(&state) else {
            continue;
        };
        let open = matches!(
            from,
            SessionState::AwaitingSlot | SessionState::AwaitingConfirmation
        );
        if open && now.0 - at < open_for_ms {
            continue;
        }
        let to = if kind == "call" {
            SessionState::Closed
        } else {
            SessionState::Idle
        };
        conn.execute(
            "UPDATE sessions SET state = ?2, pending = NULL, updated_at = ?3 WHERE conversation_id = ?1",
            rusqlite::params![id, to.as_str(), now.0],
        )?;
        out.push(Recovered {
            conversation_id: ConversationId(id),
            from,
            to,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionEvent as E;
    use SessionState as S;

    const ALL_STATES: [S; 8] = [
        S::Idle,
        S::Ringing,
        S::Listening,
        S::Thinking,
        S::Speaking,
        S::AwaitingSlot,
        S::AwaitingConfirmation,
        S::Closed,
    ];
    const ALL_EVENTS: [E; 11] = [
        E::Wake,
        E::Ring,
        E::Answer,
        E::Utterance,
        E::ReplyStarted,
        E::ReplyDone,
        E::AskedSlot,
        E::AskedConfirmation,
        E::BargeIn,
        E::Timeout,
        E::HangUp,
    ];

    /// The full table for text sessions: every (state, event) pair, allowed or not.
    #[test]
    fn text_transition_table() {
        let allowed: &[(S, E, S)] = &[
            (S::Idle, E::Wake, S::Listening),
            (S::Idle, E::Ring, S::Ringing),
            (S::Idle, E::Utterance, S::Thinking),
            (S::Idle, E::HangUp, S::Closed),
            (S::Ringing, E::Answer, S::Listening),
            (S::Ringing, E::HangUp, S::Closed),
            (S::Listening, E::Utterance, S::Thinking),
            (S::Listening, E::BargeIn, S::Listening),
            (S::Listening, E::Timeout, S::Idle),
            (S::Listening, E::HangUp, S::Closed),
            (S::Thinking, E::ReplyStarted, S::Speaking),
            (S::Thinking, E::ReplyDone, S::Idle),
            (S::Thinking, E::AskedSlot, S::AwaitingSlot),
            (S::Thinking, E::AskedConfirmation, S::AwaitingConfirmation),
            (S::Thinking, E::BargeIn, S::Listening),
            (S::Thinking, E::HangUp, S::Closed),
            (S::Speaking, E::ReplyDone, S::Idle),
            (S::Speaking, E::AskedSlot, S::AwaitingSlot),
            (S::Speaking, E::AskedConfirmation, S::AwaitingConfirmation),
            (S::Speaking, E::BargeIn, S::Listening),
            (S::Speaking, E::HangUp, S::Closed),
            (S::AwaitingSlot, E::Wake, S::Listening),
            (S::AwaitingSlot, E::Utterance, S::Thinking),
            (S::AwaitingSlot, E::Timeout, S::Idle),
            (S::AwaitingSlot, E::HangUp, S::Closed),
            (S::AwaitingConfirmation, E::Wake, S::Listening),
            (S::AwaitingConfirmation, E::Utterance, S::Thinking),
            (S::AwaitingConfirmation, E::Timeout, S::Idle),
            (S::AwaitingConfirmation, E::HangUp, S::Closed),
        ];
        for from in ALL_STATES {
            for event in ALL_EVENTS {
                let expected = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                let got = transition(SessionKind::Text, from, event).ok();
                assert_eq!(got, expected, "{from:?} --{event:?}-->");
            }
        }
    }

    #[test]
    fn calls_return_to_listening_and_close_for_good() {
        assert_eq!(
            transition(SessionKind::Call, S::Speaking, E::ReplyDone),
            Ok(S::Listening)
        );
        assert_eq!(
            transition(SessionKind::Call, S::AwaitingSlot, E::Timeout),
            Ok(S::Listening)
        );
        for event in ALL_EVENTS {
            assert!(transition(SessionKind::Call, S::Closed, event).is_err());
        }
    }

    #[test]
    fn names_round_trip() {
        for s in ALL_STATES {
            assert_eq!(SessionState::parse(s.as_str()), Some(s));
        }
        assert_eq!(SessionState::parse("dancing"), None);
    }
}
