//! The conversation engine every channel feeds: inbound text → session state machine → NLU
//! (fast path, else the LLM) → tools (checked by routing) → a reply streamed as sentences →
//! delivery through the outbox of the channel it came from.
//!
//! Invariants:
//! - One turn at a time per conversation; a new message cancels the turn in flight (its
//!   partial reply is kept as `cancelled`, never delivered).
//! - A turn commits its reply, outbox entry, inbox status, turn record and session state in one
//!   transaction; an inbound message whose turn did not commit is answered again after a
//!   restart (tools are idempotent on the source message).
//! - The async runtime never runs inference: the LLM is reached through [`LlmGateway`].

mod calendar;
pub mod chunker;
pub mod llm;
pub mod session;
pub mod speak;
pub mod sql;
pub mod standalone;
mod task_dialogue;
pub mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{AssistantConfig, LlmConfig, RoutingConfig};
use crate::domain::{ConversationId, MessageId, Trust, UnixMillis};
use crate::events::{EventBus, EventKind};
use crate::home::reminders::Reminders;
use crate::messaging::outbox::Outbox;
use crate::nlu::intents::{self, Intent, ParseContext, SlotKind, SlotValue, Target, When};
use crate::nlu::llm::{
    ChatMessage, FinishReason, GenerateRequest, LlmError, Priority, Role, ToolMode,
};
use crate::platform::metrics::{Metrics, StageLabels, TurnLabels};
use crate::store::{Store, StoreError};

use chunker::SentenceChunker;

/// The shortest first clause of an LLM reply sent on its own (see `llm_turn`'s loop).
const FIRST_CLAUSE_CHARS: usize = 16;
pub use llm::{LlmChunk, LlmGateway};
use session::{SessionEvent, SessionKind, SessionRow, SessionState};
use sql::{ReplyRoute, TurnRecord, Work};
use tools::{Router, ToolCallRecord, ToolContext, ToolRegistry};

/// What a turn streams to its caller.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    /// The next sentence of the reply.
    Chunk(String),
    /// The turn is committed.
    Done(TurnSummary),
}

/// Stage timings of a turn, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Timings {
    /// Fast-path parsing (and dialogue state).
    pub nlu_ms: f64,
    /// Until the first reply chunk.
    pub first_chunk_ms: Option<f64>,
    /// Whole turn including the commit.
    pub total_ms: f64,
}

/// The result of a turn.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TurnSummary {
    /// The conversation.
    #[schema(value_type = i64)]
    pub conversation_id: ConversationId,
    /// The stored reply.
    #[schema(value_type = Option<i64>)]
    pub reply_message_id: Option<MessageId>,
    /// The whole reply text.
    pub reply: String,
    /// The fast-path intent (`None` when the LLM answered).
    pub intent: Option<String>,
    /// Tool calls with arguments and results.
    pub tool_calls: Vec<ToolCallRecord>,
    /// `answered`, `asked`, `refused`, `cancelled`, `busy` or `failed`.
    pub outcome: String,
    /// The session state after the turn.
    pub state: SessionState,
    /// Timings.
    pub timings: Timings,
}

/// A running turn: its stream of events. Dropping the handle does not cancel the turn (the
/// reply is still committed and delivered); call [`TurnHandle::cancel`] for barge-in.
pub struct TurnHandle {
    /// Chunks, then `Done`.
    pub events: mpsc::Receiver<TurnEvent>,
    cancel: CancellationToken,
}

impl TurnHandle {
    /// Stop the turn now (barge-in, hang-up).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A token that cancels this turn.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Wait for the summary, discarding chunks.
    pub async fn finish(mut self) -> Option<TurnSummary> {
        while let Some(ev) = self.events.recv().await {
            if let TurnEvent::Done(s) = ev {
                return Some(s);
            }
        }
        None
    }
}

/// One inbound message to answer.
#[derive(Debug, Clone)]
pub struct TurnInput {
    /// The claimed message.
    pub work: Work,
    /// The sender's trust.
    pub trust: Trust,
    /// Text, voice or call.
    pub kind: SessionKind,
    /// LLM queue priority.
    pub priority: Priority,
    /// Return the reply to the caller (API, CLI) instead of the channel's outbox.
    pub direct: bool,
}

/// Why a chat message was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// `conversation_id` names no conversation.
    #[error("no conversation {0}")]
    NoSuchConversation(ConversationId),
    /// The store failed; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An open question, stored with the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Pending {
    Reminder {
        what: Option<String>,
        at: Option<String>,
        repeat: Option<String>,
        attempts: u8,
    },
    Timer {
        label: Option<String>,
        attempts: u8,
    },
    Memory {
        attempts: u8,
    },
    Confirm {
        tool: String,
        args: Value,
        decline: String,
        attempts: u8,
    },
    Appointment {
        title: Option<String>,
        start: Option<String>,
        minutes: Option<i64>,
        with: Option<String>,
        location: Option<String>,
        attempts: u8,
    },
    AppointmentMove {
        args: Value,
        attempts: u8,
    },
    Task(task_dialogue::TaskPending),
}

/// How a turn ends.
enum Decision {
    Say(String),
    Ask(String, Pending),
    Confirm(String, Pending),
    Refuse(String),
    Llm,
}

/// Everything the engine needs.
pub struct Deps {
    /// Store.
    pub store: Store,
    /// Event bus.
    pub events: Arc<EventBus>,
    /// Outbox.
    pub outbox: Outbox,
    /// Reminders.
    pub reminders: Reminders,
    /// Contacts.
    pub contacts: crate::home::contacts::Contacts,
    /// Appointments.
    pub calendar: crate::home::calendar::Calendar,
    /// Tasks.
    pub tasks: crate::home::tasks::Tasks,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// `[assistant]`.
    pub assistant: AssistantConfig,
    /// `[llm]`.
    pub llm_config: LlmConfig,
    /// `[routing]`.
    pub routing: RoutingConfig,
    /// The LLM, if one is configured and loaded.
    pub llm: Option<Arc<dyn LlmGateway>>,
    /// Remembered facts (tools, and context for the LLM), if wired.
    pub memory: Option<crate::home::memory::Memory>,
}

/// The conversation engine (cheap to clone).
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    events: Arc<EventBus>,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    cfg: AssistantConfig,
    llm_cfg: LlmConfig,
    router: Router,
    tools: ToolRegistry,
    llm: Option<Arc<dyn LlmGateway>>,
    memory: Option<crate::home::memory::Memory>,
    active: Mutex<HashMap<ConversationId, CancellationToken>>,
    locks: Mutex<HashMap<ConversationId, Arc<tokio::sync::Mutex<()>>>>,
}

/// Channels whose replies go back to the caller rather than through an outbox.
pub const DIRECT_CHANNELS: &[&str] = &["api", "cli"];

/// The device's own microphone and speaker.
pub const LOCAL_CHANNEL: &str = "local";

impl Orchestrator {
    /// The engine with the built-in tools.
    pub fn new(d: Deps) -> Self {
        let mut tools = tools::builtin(&d.reminders);
        if let Some(m) = &d.memory {
            crate::home::memory::tools::register(&mut tools, m);
        }
        crate::home::contacts::tools::register(&mut tools, &d.contacts);
        crate::home::calendar::tools::register(&mut tools, &d.calendar, &d.contacts);
        crate::home::tasks::tools::register(&mut tools, &d.tasks);
        Self {
            inner: Arc::new(Inner {
                store: d.store,
                events: d.events,
                outbox: d.outbox,
                metrics: d.metrics,
                cfg: d.assistant,
                llm_cfg: d.llm_config,
                router: Router::new(d.routing),
                tools,
                llm: d.llm,
                memory: d.memory,
                active: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The routing rules.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The device time zone.
    pub fn timezone(&self) -> jiff::tz::TimeZone {
        self.inner.cfg.timezone.clone()
    }

    /// Whether `text` is a finished everyday command ([`Intent::ends_utterance`]): voice
    /// channels use it to end an utterance at a short pause. Only parses; changes nothing.
    pub fn ends_utterance(&self, text: &str) -> bool {
        let pctx = ParseContext {
            now: self.inner.now(),
            language: self.inner.cfg.language.clone(),
        };
        intents::parse(text, &pctx).is_some_and(|i| i.ends_utterance())
    }

    /// The tool registry.
    pub fn tools(&self) -> &ToolRegistry {
        &self.inner.tools
    }

    /// Trust of a sender on a channel.
    pub fn trust_for(&self, work: &Work) -> Trust {
        if work.channel == LOCAL_CHANNEL {
            return self.inner.router.local_trust();
        }
        if DIRECT_CHANNELS.contains(&work.channel.as_str())
            && crate::domain::PhoneNumber::parse(&work.address).is_err()
        {
            return self.inner.router.api_trust();
        }
        self.inner
            .router
            .trust_of(&work.address, work.contact_trust)
    }

    /// Start a turn; events stream on the returned handle.
    pub fn start_turn(&self, input: TurnInput) -> TurnHandle {
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let inner = self.inner.clone();
        let token = cancel.clone();
        tokio::spawn(async move { inner.run(input, token, tx).await });
        TurnHandle { events: rx, cancel }
    }

    /// Claim and answer one specific stored message (the chat API and CLI path).
    pub async fn answer_message(
        &self,
        message_id: MessageId,
        priority: Priority,
    ) -> Result<Option<TurnHandle>, StoreError> {
        let work = self
            .inner
            .store
            .write(move |c| sql::claim_message(c, message_id))
            .await?;
        Ok(work.map(|work| {
            let trust = self.trust_for(&work);
            let direct = DIRECT_CHANNELS.contains(&work.channel.as_str());
            self.start_turn(TurnInput {
                work,
                trust,
                kind: SessionKind::Text,
                priority,
                direct,
            })
        }))
    }

    /// Store a chat message (API, CLI) and start answering it; the reply comes back on the
    /// handle (and is stored as delivered). `conversation`: continue that one; else the
    /// `api` conversation of `from` (or of the token holder).
    pub async fn chat(
        &self,
        conversation: Option<ConversationId>,
        from: Option<crate::domain::PhoneNumber>,
        text: String,
        priority: Priority,
    ) -> Result<TurnHandle, ChatError> {
        let (channel, address) = match conversation {
            Some(id) => self
                .inner
                .store
                .read(move |c| sql::conversation(c, id))
                .await?
                .ok_or(ChatError::NoSuchConversation(id))?,
            None => (
                "api".to_owned(),
                from.as_ref()
                    .map_or_else(|| "api".to_owned(), |p| p.as_str().to_owned()),
            ),
        };
        self.converse(&channel, address, text, SessionKind::Text, priority)
            .await
    }

    /// Store what `address` said on `channel` (a direct channel: the API, the CLI, the
    /// device's microphone) and start answering it; the reply comes back on the handle (and is
    /// stored as delivered), never through the outbox.
    pub async fn converse(
        &self,
        channel: &str,
        address: String,
        text: String,
        kind: SessionKind,
        priority: Priority,
    ) -> Result<TurnHandle, ChatError> {
        let channel = channel.to_owned();
        let is_phone = crate::domain::PhoneNumber::parse(&address).is_ok();
        let row = crate::store::messages::NewInbound {
            channel: channel.clone(),
            from: address,
            from_is_phone: is_phone,
            text,
            media: Vec::new(),
            idempotency_key: format!("chat:{}", uuid::Uuid::new_v4()),
            request_hash: String::new(),
            received_at: UnixMillis::now(),
        };
        let work = self
            .inner
            .store
            .write(move |c| {
                let a = crate::store::messages::accept_inbound(c, &row)?;
                sql::claim_message(c, a.message_id)
            })
            .await?
            .ok_or(ChatError::Store(StoreError::NotFound {
                what: "chat message",
                id: 0,
            }))?;
        self.inner.events.publish(EventKind::MessageStored {
            message_id: work.message_id,
            conversation_id: work.conversation_id,
            channel,
            direction: "inbound".into(),
        });
        let trust = self.trust_for(&work);
        Ok(self.start_turn(TurnInput {
            work,
            trust,
            kind,
            priority,
            direct: true,
        }))
    }

    /// At start: prefill the system prompt into the embedded engine's shared prefix cache, in
    /// the background (see `Inner::prewarm_system_prompt`).
    pub fn prewarm_system_prompt(&self) {
        self.inner.prewarm_system_prompt();
    }

    /// At start: resume interrupted inbox work and clean up sessions caught mid-turn.
    pub async fn recover(&self) -> Result<(), StoreError> {
        let open_ms =
            i64::try_from(self.inner.cfg.dialogue_timeout.as_millis()).unwrap_or(i64::MAX);
        let (inbox, sessions) = self
            .inner
            .store
            .write(move |c| {
                Ok((
                    sql::recover(c)?,
                    session::recover(c, UnixMillis::now(), open_ms)?,
                ))
            })
            .await?;
        if inbox > 0 {
            tracing::info!(
                messages = inbox,
                "orchestrator: answering messages interrupted by the last stop"
            );
        }
        for s in sessions {
            tracing::info!(conversation = %s.conversation_id, from = s.from.as_str(), to = s.to.as_str(), "session closed at start");
            self.inner.events.publish(EventKind::SessionStateChanged {
                conversation_id: s.conversation_id,
                from: s.from.as_str().into(),
                to: s.to.as_str().into(),
                cause: "restart".into(),
            });
        }
        Ok(())
    }

    /// Answer every pending inbox message, as they arrive, until `shutdown`.
    pub async fn run_inbox(self, shutdown: CancellationToken) {
        let mut wake = self.inner.events.subscribe();
        let permits = Arc::new(Semaphore::new(8));
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let free = permits.available_permits();
            let claimed = if free == 0 {
                Ok(Vec::new())
            } else {
                self.inner.store.write(move |c| sql::claim(c, free)).await
            };
            match claimed {
                Ok(work) if !work.is_empty() => {
                    for w in work {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            return;
                        };
                        let trust = self.trust_for(&w);
                        // A channel with no transport of its own (the API) keeps the reply in
                        // the conversation; every other reply goes through the outbox.
                        let direct = DIRECT_CHANNELS.contains(&w.channel.as_str())
                            && !self.inner.outbox.has_channel(&w.channel);
                        let handle = self.start_turn(TurnInput {
                            work: w,
                            trust,
                            kind: SessionKind::Text,
                            priority: Priority::Message,
                            direct,
                        });
                        tokio::spawn(async move {
                            let _ = handle.finish().await;
                            drop(permit);
                        });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "orchestrator: cannot claim inbox work; retrying")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = wake.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        return;
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

impl Inner {
    fn lock_for(&self, id: ConversationId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if locks.len() > 4096 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(id).or_default().clone()
    }

    fn now(&self) -> jiff::Zoned {
        jiff::Timestamp::now().to_zoned(self.cfg.timezone.clone())
    }

    async fn run(
        self: Arc<Self>,
        input: TurnInput,
        cancel: CancellationToken,
        tx: mpsc::Sender<TurnEvent>,
    ) {
        let cid = input.work.conversation_id;
        if let Some(prev) = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(cid, cancel.clone())
        {
            prev.cancel();
        }
        let lock = self.lock_for(cid);
        let _guard = lock.lock().await;
        let result = self.turn(&input, &cancel, &tx).await;
        {
            let mut active = self
                .active
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if active
                .get(&cid)
                .is_some_and(|t| t.is_cancelled() || std::ptr::eq(t, &cancel))
            {
                active.remove(&cid);
            }
        }
        match result {
            Ok(summary) => {
                let _ = tx.send(TurnEvent::Done(summary)).await;
            }
            Err(e) => {
                // Nothing committed: the inbox row stays `processing` and is answered again
                // after a restart; tell the caller.
                tracing::error!(conversation = %cid, error = %e, "turn failed");
            }
        }
    }

    fn transition(&self, row: &mut SessionRow, ev: SessionEvent) {
        match session::transition(row.kind, row.state, ev) {
            Ok(to) => {
                if to != row.state {
                    tracing::debug!(conversation = %row.conversation_id, from = row.state.as_str(), to = to.as_str(), event = ?ev, "session");
                    self.events.publish(EventKind::SessionStateChanged {
                        conversation_id: row.conversation_id,
                        from: row.state.as_str().into(),
                        to: to.as_str().into(),
                        cause: serde_json::to_value(ev)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                    });
                }
                row.state = to;
                row.updated_at = UnixMillis::now();
            }
            Err(e) => {
                tracing::warn!(conversation = %row.conversation_id, error = %e, "session transition refused")
            }
        }
    }

    async fn save_session(&self, row: &SessionRow) -> Result<(), StoreError> {
        let r = row.clone();
        self.store.write(move |c| session::save(c, &r)).await
    }

    #[allow(clippy::too_many_lines)]
    async fn turn(
        &self,
        input: &TurnInput,
        cancel: &CancellationToken,
        tx: &mpsc::Sender<TurnEvent>,
    ) -> Result<TurnSummary, StoreError> {
        let t0 = Instant::now();
        let w = &input.work;
        let cid = w.conversation_id;
        let mut row = self.store.read(move |c| session::load(c, cid)).await?;
        row.kind = input.kind;
        // An open question that has expired is dropped first.
        if row.pending.is_some()
            && UnixMillis::now().0 - row.updated_at.0
                > i64::try_from(self.cfg.dialogue_timeout.as_millis()).unwrap_or(i64::MAX)
        {
            row.pending = None;
            self.transition(&mut row, SessionEvent::Timeout);
        }
        if matches!(row.state, SessionState::Closed) {
            row.state = SessionState::Idle;
        }
        self.transition(&mut row, SessionEvent::Utterance);
        self.save_session(&row).await?;

        let now = self.now();
        let pctx = ParseContext {
            now: now.clone(),
            language: self.cfg.language.clone(),
        };
        let tctx = ToolContext {
            conversation_id: cid,
            channel: w.channel.clone(),
            trust: input.trust,
            now: now.clone(),
            source_message_id: Some(w.message_id),
        };
        let mut calls = Vec::new();
        let pending: Option<Pending> = row
            .pending
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok());
        let (decision, intent) = if w.text.trim().is_empty() && !w.media.is_empty() {
            // A picture without words: kept in the media store; looking at it comes with the
            // vision model.
            let n = w.media.iter().filter(|m| m.starts_with("media/")).count();
            let what = if n == 1 {
                "your picture".to_owned()
            } else {
                format!("your {n} pictures")
            };
            let text = if n == 0 {
                "I got your message, but the picture could not be downloaded. Could you send it again?".to_owned()
            } else {
                format!("Thanks, I got {what} and saved it. I can't look at pictures yet.")
            };
            (Decision::Say(text), Some("media.received".to_owned()))
        } else {
            self.decide(&w.text, pending, &pctx, &tctx, &mut calls)
                .await
        };
        let nlu = t0.elapsed();

        let mut out = Reply::new(tx, t0);
        let mut outcome = "answered";
        let mut engine = "fast_path".to_owned();
        let mut next_pending = None;
        let mut end_event = SessionEvent::ReplyDone;
        match decision {
            Decision::Say(text) => out.say(&text, self, &mut row).await?,
            Decision::Refuse(text) => {
                outcome = "refused";
                out.say(&text, self, &mut row).await?;
            }
            Decision::Ask(text, p) => {
                outcome = "asked";
                out.say(&text, self, &mut row).await?;
                next_pending = Some(p);
                end_event = SessionEvent::AskedSlot;
            }
            Decision::Confirm(text, p) => {
                outcome = "asked";
                out.say(&text, self, &mut row).await?;
                next_pending = Some(p);
                end_event = SessionEvent::AskedConfirmation;
            }
            Decision::Llm => {
                let (o, e) = self
                    .llm_turn(input, cancel, &tctx, &mut calls, &mut out, &mut row)
                    .await?;
                outcome = o;
                engine = e;
            }
        }
        if cancel.is_cancelled() && outcome != "busy" {
            outcome = "cancelled";
            next_pending = None;
            end_event = if input.kind == SessionKind::Text {
                SessionEvent::ReplyDone
            } else {
                SessionEvent::BargeIn
            };
        }
        row.pending = next_pending.and_then(|p| serde_json::to_string(&p).ok());
        self.transition(&mut row, end_event);
        let route = if outcome == "cancelled" {
            ReplyRoute::Discard
        } else if input.direct {
            ReplyRoute::Direct
        } else {
            ReplyRoute::Outbox {
                max_attempts: self.outbox.max_attempts(),
            }
        };
        let first_chunk = out.first_chunk;
        let reply = out.text.join(" ");
        let mut record = TurnRecord {
            conversation_id: cid,
            inbox_id: Some(w.inbox_id),
            inbound_message_id: Some(w.message_id),
            channel: w.channel.clone(),
            address: w.address.clone(),
            reply: reply.clone(),
            route,
            intent: intent.clone(),
            tool_calls: serde_json::to_value(&calls).unwrap_or(Value::Null),
            outcome: outcome.to_owned(),
            engine: engine.clone(),
            nlu_us: u64::try_from(nlu.as_micros()).unwrap_or(u64::MAX),
            first_chunk_us: first_chunk.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            total_us: 0,
            session: row.clone(),
        };
        record.total_us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        let committed = self
            .store
            .write(move |c| sql::commit_turn(c, &record))
            .await?;
        if let Some(q) = &committed.queued {
            self.outbox.announce_queued(q, &w.channel);
        } else if let Some(id) = committed.reply_message_id {
            self.events.publish(EventKind::MessageStored {
                message_id: id,
                conversation_id: cid,
                channel: w.channel.clone(),
                direction: "outbound".into(),
            });
        }
        let total = t0.elapsed();
        let stage = |s: &str, d: Duration| {
            self.metrics
                .turn_stage
                .get_or_create(&StageLabels {
                    stage: s.into(),
                    engine: engine.clone(),
                })
                .observe(d.as_secs_f64());
        };
        stage("nlu", nlu);
        if let Some(fc) = first_chunk {
            stage("first_chunk", fc);
        }
        stage("total", total);
        self.metrics
            .turns
            .get_or_create(&TurnLabels {
                intent: intent.clone().unwrap_or_else(|| "llm".into()),
                outcome: outcome.into(),
            })
            .inc();
        let total_ms = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            conversation = %cid,
            intent = intent.as_deref().unwrap_or("llm"),
            outcome,
            engine = %engine,
            nlu_us = nlu.as_micros() as u64,
            first_chunk_ms = first_chunk.map(|d| d.as_millis() as u64),
            total_ms,
            "turn"
        );
        self.events.publish(EventKind::TurnCompleted {
            conversation_id: cid,
            reply_message_id: committed.reply_message_id,
            intent: intent.clone(),
            outcome: outcome.into(),
            total_ms,
        });
        // After the turn is timed and announced: the pre-warm is not part of the answer. Only
        // after the model answered: a fast-path command is usually followed by another, and a
        // pre-warm still computing when it comes slowed its recognition and speech by ~100 ms
        // on two cores (benches/voice.rs, fast-path row).
        if matches!(input.priority, Priority::LocalVoice | Priority::LiveCall)
            && outcome != "cancelled"
            && intent.is_none()
        {
            self.prewarm(&tctx).await;
        }
        Ok(TurnSummary {
            conversation_id: cid,
            reply_message_id: committed.reply_message_id,
            reply,
            intent,
            tool_calls: calls,
            outcome: outcome.into(),
            state: row.state,
            timings: Timings {
                nlu_ms: nlu.as_secs_f64() * 1000.0,
                first_chunk_ms: first_chunk.map(|d| d.as_secs_f64() * 1000.0),
                total_ms: total.as_secs_f64() * 1000.0,
            },
        })
    }

    async fn call_tool(
        &self,
        name: &str,
        args: Value,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        match self
            .tools
            .call(&self.router, name, args.clone(), tctx)
            .await
        {
            Ok(Ok(out)) => {
                calls.push(ToolCallRecord {
                    name: name.into(),
                    arguments: args,
                    result: out.data,
                });
                Decision::Say(out.say)
            }
            Ok(Err(refusal)) => {
                calls.push(ToolCallRecord {
                    name: name.into(),
                    arguments: args,
                    result: json!({ "refused": refusal.group }),
                });
                Decision::Refuse(refusal.say)
            }
            Err(e) => {
                tracing::warn!(tool = name, error = %e, "tool call failed");
                calls.push(ToolCallRecord {
                    name: name.into(),
                    arguments: args,
                    result: json!({ "error": e.to_string() }),
                });
                Decision::Say(format!("Sorry, that didn't work: {e}."))
            }
        }
    }

    /// The dialogue policy: open questions first, then the fast path, else the LLM.
    async fn decide(
        &self,
        text: &str,
        pending: Option<Pending>,
        pctx: &ParseContext,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> (Decision, Option<String>) {
        let intent = intents::parse(text, pctx);
        if let Some(p) = pending {
            let name = intent.as_ref().map(|i| i.name().to_owned());
            if matches!(intent, Some(Intent::Cancel | Intent::Stop))
                || (matches!(intent, Some(Intent::No)) && !matches!(p, Pending::Confirm { .. }))
            {
                return (Decision::Say("Okay, never mind.".into()), name);
            }
            // Err: not an answer, so a new request (handled below).
            if let Ok(d) = self
                .continue_pending(text, p, intent.clone(), pctx, tctx, calls)
                .await
            {
                return d;
            }
        }
        let name = intent.as_ref().map(|i| i.name().to_owned());
        match intent {
            Some(i) => (self.handle(i, tctx, calls).await, name),
            None => (Decision::Llm, None),
        }
    }

    /// Continue an open question; `Err(())` when the text is a new request instead.
    async fn continue_pending(
        &self,
        text: &str,
        p: Pending,
        intent: Option<Intent>,
        pctx: &ParseContext,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Result<(Decision, Option<String>), ()> {
        let new_request = matches!(&intent, Some(i) if !matches!(i, Intent::Yes | Intent::No));
        match p {
            p @ (Pending::Appointment { .. } | Pending::AppointmentMove { .. }) => {
                self.continue_appointment(text, p, intent.as_ref(), pctx, tctx, calls)
                    .await
            }
            Pending::Confirm {
                tool,
                args,
                decline,
                attempts,
            } => match intent {
                Some(Intent::Yes) => Ok((
                    self.call_tool(&tool, args, tctx, calls).await,
                    Some("yes".into()),
                )),
                Some(Intent::No) => Ok((Decision::Say(decline), Some("no".into()))),
                _ if new_request => Err(()),
                _ if attempts >= 1 => Ok((
                    Decision::Say("Okay, I'll leave things as they are.".into()),
                    None,
                )),
                _ => Ok((
                    Decision::Confirm(
                        "Sorry, please answer yes or no.".into(),
                        Pending::Confirm {
                            tool,
                            args,
                            decline,
                            attempts: attempts + 1,
                        },
                    ),
                    None,
                )),
            },
            Pending::Memory { attempts } => match intents::parse_slot(text, SlotKind::Text, pctx) {
                Some(SlotValue::Text(t)) if !new_request && !t.trim().is_empty() => Ok((
                    self.call_tool("memory_remember", json!({ "text": t }), tctx, calls)
                        .await,
                    Some("memory.remember".into()),
                )),
                _ if new_request => Err(()),
                _ if attempts >= 1 => Ok((
                    Decision::Say(
                        "Sorry, I didn't get it, so I haven't remembered anything.".into(),
                    ),
                    None,
                )),
                _ => Ok((
                    Decision::Ask(
                        "Sorry, what should I remember?".into(),
                        Pending::Memory {
                            attempts: attempts + 1,
                        },
                    ),
                    None,
                )),
            },
            Pending::Task(tp) => {
                self.continue_task(text, tp, intent, pctx, tctx, calls)
                    .await
            }
            Pending::Timer { label, attempts } => {
                match intents::parse_slot(text, SlotKind::Duration, pctx) {
                    Some(SlotValue::Duration(d)) => {
                        let mut args = json!({ "seconds": d.as_secs() });
                        if let Some(l) = label {
                            args["label"] = json!(l);
                        }
                        Ok((
                            self.call_tool("timer_set", args, tctx, calls).await,
                            Some("timer.set".into()),
                        ))
                    }
                    _ if new_request => Err(()),
                    _ if attempts >= 1 => Ok((
                        Decision::Say(
                            "Sorry, I still didn't get how long. Let's try again later.".into(),
                        ),
                        None,
                    )),
                    _ => Ok((
                        Decision::Ask(
                            "Sorry, for how long? For example, 10 minutes.".into(),
                            Pending::Timer {
                                label,
                                attempts: attempts + 1,
                            },
                        ),
                        None,
                    )),
                }
            }
            Pending::Reminder {
                mut what,
                mut at,
                mut repeat,
                attempts,
            } => {
                if what.is_none() {
                    // "to call mom tomorrow at 5" may answer both questions at once.
                    let combined = intents::parse(&format!("remind me {text}"), pctx);
                    match combined {
                        Some(Intent::ReminderSet {
                            what: Some(w),
                            when,
                        }) if !new_request => {
                            what = Some(w);
                            if let Some(when) = when {
                                let (a, r) = when_args(&when);
                                at = Some(a);
                                repeat = r;
                            }
                        }
                        _ => match intents::parse_slot(text, SlotKind::Text, pctx) {
                            Some(SlotValue::Text(t)) if !new_request && !t.trim().is_empty() => {
                                what = Some(t)
                            }
                            _ if new_request => return Err(()),
                            _ => {
                                return Ok((
                                    Decision::Ask(
                                        "Sorry, what should I remind you of?".into(),
                                        Pending::Reminder {
                                            what,
                                            at,
                                            repeat,
                                            attempts: attempts + 1,
                                        },
                                    ),
                                    None,
                                ))
                            }
                        },
                    }
                } else if at.is_none() {
                    match intents::parse_slot(text, SlotKind::When, pctx) {
                        Some(SlotValue::When(when)) => {
                            let (a, r) = when_args(&when);
                            at = Some(a);
                            repeat = r;
                        }
                        Some(SlotValue::DateTime(z)) => at = Some(z.to_string()),
                        _ if new_request => return Err(()),
                        _ if attempts >= 2 => {
                            return Ok((Decision::Say("Sorry, I didn't get the time, so I haven't set the reminder.".into()), None))
                        }
                        _ => {
                            return Ok((
                                Decision::Ask(
                                    "Sorry, when should I remind you? For example, tomorrow at 5 PM or in 20 minutes.".into(),
                                    Pending::Reminder { what, at, repeat, attempts: attempts + 1 },
                                ),
                                None,
                            ))
                        }
                    }
                }
                Ok((
                    self.reminder_step(what, at, repeat, tctx, calls).await,
                    Some("reminder.set".into()),
                ))
            }
        }
    }

    async fn reminder_step(
        &self,
        what: Option<String>,
        at: Option<String>,
        repeat: Option<String>,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        if let Err(r) = self.router.check("reminder", &tctx.channel, tctx.trust) {
            return Decision::Refuse(r.say);
        }
        match (what, at) {
            (None, at) => Decision::Ask(
                "What should I remind you of?".into(),
                Pending::Reminder {
                    what: None,
                    at,
                    repeat,
                    attempts: 0,
                },
            ),
            (Some(w), None) => Decision::Ask(
                format!("When should I remind you to {w}?"),
                Pending::Reminder {
                    what: Some(w),
                    at: None,
                    repeat,
                    attempts: 0,
                },
            ),
            (Some(w), Some(a)) => {
                let mut args = json!({ "text": w, "at": a });
                if let Some(r) = repeat {
                    args["repeat"] = json!(r);
                }
                self.call_tool("reminder_set", args, tctx, calls).await
            }
        }
    }

    async fn confirm_or_cancel_all(
        &self,
        kind: crate::home::reminders::Kind,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        let group = kind.as_str();
        let tool = format!("{group}_cancel");
        if let Err(r) = self.router.check(group, &tctx.channel, tctx.trust) {
            return Decision::Refuse(r.say);
        }
        let n = self
            .tools
            .call(&self.router, &format!("{group}_list"), json!({}), tctx)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|o| o.data.as_array().map(Vec::len))
            .unwrap_or(0);
        match n {
            0 => Decision::Say(format!("You have no {group}s to cancel.")),
            1 => {
                self.call_tool(&tool, json!({ "all": true }), tctx, calls)
                    .await
            }
            n => Decision::Confirm(
                format!("Cancel all {n} {group}s?"),
                Pending::Confirm {
                    tool,
                    args: json!({ "all": true }),
                    decline: format!("Okay, I'll keep your {group}s."),
                    attempts: 0,
                },
            ),
        }
    }

    /// "Forget what I said about X": find it, then ask before erasing.
    async fn confirm_forget(
        &self,
        query: Option<String>,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        if let Err(r) = self.router.check("memory", &tctx.channel, tctx.trust) {
            return Decision::Refuse(r.say);
        }
        let Some(q) = query else {
            return Decision::Say(
                "Which memory? Say, for example: forget what I said about the spare key.".into(),
            );
        };
        let args = json!({ "query": q });
        match self
            .tools
            .call(&self.router, "memory_forget", args.clone(), tctx)
            .await
        {
            Ok(Ok(out)) => {
                let ids: Vec<String> = out.data["candidates"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c["id"].as_i64())
                            .map(|i| i.to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                calls.push(ToolCallRecord {
                    name: "memory_forget".into(),
                    arguments: args,
                    result: out.data,
                });
                if ids.is_empty() {
                    return Decision::Say(out.say);
                }
                Decision::Confirm(
                    out.say,
                    Pending::Confirm {
                        tool: "memory_forget".into(),
                        args: json!({ "ids": ids.join(",") }),
                        decline: "Okay, I'll keep it.".into(),
                        attempts: 0,
                    },
                )
            }
            Ok(Err(refusal)) => Decision::Refuse(refusal.say),
            Err(e) => {
                tracing::warn!(tool = "memory_forget", error = %e, "tool call failed");
                calls.push(ToolCallRecord {
                    name: "memory_forget".into(),
                    arguments: args,
                    result: json!({ "error": e.to_string() }),
                });
                Decision::Say(format!("Sorry, that didn't work: {e}."))
            }
        }
    }

    /// A fresh fast-path intent.
    async fn handle(
        &self,
        intent: Intent,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        use crate::home::reminders::Kind;
        match intent {
            Intent::TimeNow => self.call_tool("time_now", json!({}), tctx, calls).await,
            Intent::DateQuery { day } => {
                let args = day.map_or_else(|| json!({}), |d| json!({ "date": d.to_string() }));
                self.call_tool("date_query", args, tctx, calls).await
            }
            Intent::TimerSet { duration, label } => {
                if let Err(r) = self.router.check("timer", &tctx.channel, tctx.trust) {
                    return Decision::Refuse(r.say);
                }
                match duration {
                    Some(d) => {
                        let mut args = json!({ "seconds": d.as_secs() });
                        if let Some(l) = label {
                            args["label"] = json!(l);
                        }
                        self.call_tool("timer_set", args, tctx, calls).await
                    }
                    None => Decision::Ask(
                        "For how long?".into(),
                        Pending::Timer { label, attempts: 0 },
                    ),
                }
            }
            Intent::TimerList => self.call_tool("timer_list", json!({}), tctx, calls).await,
            Intent::TimerCancel { target } => match target {
                Some(Target::All) => self.confirm_or_cancel_all(Kind::Timer, tctx, calls).await,
                Some(Target::Named { text }) => {
                    self.call_tool("timer_cancel", json!({ "match": text }), tctx, calls).await
                }
                _ => self.call_tool("timer_cancel", json!({}), tctx, calls).await,
            },
            Intent::ReminderSet { what, when } => {
                let (at, repeat) = match when {
                    Some(w) => {
                        let (a, r) = when_args(&w);
                        (Some(a), r)
                    }
                    None => (None, None),
                };
                self.reminder_step(what, at, repeat, tctx, calls).await
            }
            Intent::ReminderList => self.call_tool("reminder_list", json!({}), tctx, calls).await,
            Intent::ReminderCancel { target } => match target {
                Some(Target::All) => self.confirm_or_cancel_all(Kind::Reminder, tctx, calls).await,
                Some(Target::Named { text }) => {
                    self.call_tool("reminder_cancel", json!({ "match": text }), tctx, calls).await
                }
                _ => self.call_tool("reminder_cancel", json!({}), tctx, calls).await,
            },
            Intent::ReminderSnooze { minutes } => {
                let args = minutes.map_or_else(|| json!({}), |m| json!({ "minutes": m }));
                self.call_tool("reminder_snooze", args, tctx, calls).await
            }
            i @ (Intent::AppointmentCreate { .. }
            | Intent::AppointmentList { .. }
            | Intent::AppointmentMove { .. }
            | Intent::AppointmentCancel { .. }) => self.appointment(i, tctx, calls).await,
            i @ (Intent::TaskAdd { .. }
            | Intent::TaskList { .. }
            | Intent::TaskComplete { .. }
            | Intent::TaskProgress { .. }) => self.task_intent(i, tctx, calls).await,
            Intent::MemoryRemember { fact } => {
                if let Err(r) = self.router.check("memory", &tctx.channel, tctx.trust) {
                    return Decision::Refuse(r.say);
                }
                match fact {
                    Some(f) => {
                        self.call_tool("memory_remember", json!({ "text": f }), tctx, calls)
                            .await
                    }
                    None => Decision::Ask(
                        "What should I remember?".into(),
                        Pending::Memory { attempts: 0 },
                    ),
                }
            }
            Intent::MemoryRecall { query } => {
                let args = query.map_or_else(|| json!({}), |q| json!({ "query": q }));
                self.call_tool("memory_recall", args, tctx, calls).await
            }
            Intent::MemoryForget { query } => self.confirm_forget(query, tctx, calls).await,
            Intent::Help => Decision::Say(format!(
                "I'm {}. I can set timers and reminders, book and move appointments, keep your task lists, remember things you tell me, tell you the time and the date, and answer simple questions. Try: set a timer for 10 minutes, remind me to call mom tomorrow at 5 PM, add buy milk to my shopping list, or what's on my calendar tomorrow?",
                self.cfg.name
            )),
            Intent::Stop => Decision::Say("Okay.".into()),
            Intent::Cancel => Decision::Say("Okay, nothing to cancel.".into()),
            Intent::Yes | Intent::No => Decision::Say("There's nothing to confirm right now.".into()),
        }
    }

    fn system_prompt(&self) -> String {
        format!(
            "You are {}, a friendly assistant that runs privately on a small computer in this home. \
             Answer in one to three short sentences of plain spoken English, without lists or markdown. \
             If you do not know something, say so briefly.",
            self.cfg.name
        )
    }

    /// Relevant memories, when the sender may use memory: a system note placed right before
    /// the new message, so the fixed system prompt and the history keep the prefix the
    /// engine cached for this conversation (the facts change with every question).
    async fn memory_context(&self, input: &TurnInput, tctx: &ToolContext) -> String {
        let Some(mem) = &self.memory else {
            return String::new();
        };
        if self
            .router
            .check("memory", &tctx.channel, tctx.trust)
            .is_err()
        {
            return String::new();
        }
        let hits = mem.context_for(&input.work.text).await;
        if hits.is_empty() {
            return String::new();
        }
        tracing::debug!(
            memories = hits.len(),
            best = hits[0].score,
            "memories in context"
        );
        let mut s = String::from("Facts the user asked you to remember, use them if they help:");
        for h in hits {
            s.push_str("\n- ");
            s.push_str(h.fact.text.trim());
        }
        s
    }

    /// The start of every LLM prompt of a conversation: the system prompt and the history
    /// window of the messages before `before` (all of them: `None`).
    async fn llm_context(
        &self,
        cid: ConversationId,
        before: Option<MessageId>,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let n = self.cfg.history_messages;
        let history = self
            .store
            .read(move |c| sql::history(c, cid, before, n))
            .await?;
        let mut messages = vec![ChatMessage::new(Role::System, self.system_prompt())];
        for (inbound, body) in history {
            messages.push(ChatMessage::new(
                if inbound { Role::User } else { Role::Assistant },
                body,
            ));
        }
        Ok(messages)
    }

    /// A request in the conversation's LLM session, with the tools its channel and trust allow
    /// (they are part of the prompt, so a pre-warm must offer the same ones).
    fn llm_request(&self, messages: Vec<ChatMessage>, tctx: &ToolContext) -> GenerateRequest {
        let mut req = GenerateRequest::new(messages);
        req.session = Some(format!("conversation-{}", tctx.conversation_id.0));
        req.max_tokens = self.llm_cfg.max_reply_tokens;
        req.temperature = self.llm_cfg.temperature;
        req.repeat_penalty = self.llm_cfg.repeat_penalty;
        req.tools = self.tool_mode(&tctx.channel, tctx.trust);
        req
    }

    /// The tools offered to the model on `channel` at `trust` (none unless `tool_calls`).
    fn tool_mode(&self, channel: &str, trust: Trust) -> ToolMode {
        if !self.llm_cfg.tool_calls {
            return ToolMode::None;
        }
        let specs = self.tools.specs_for(&self.router, channel, trust);
        if specs.is_empty() {
            ToolMode::None
        } else {
            ToolMode::Auto(specs)
        }
    }

    /// After a spoken turn: prefill the next turn's prompt start (system prompt and history
    /// window, this turn's reply included) into the session at Background priority, so that
    /// the next question prefills only itself, even when the window has just moved. Any live
    /// request makes it yield (see the LLM worker), and it waits while speech work runs
    /// (`platform::foreground`); Ollama keeps its own cache, so only the embedded engine is
    /// pre-warmed.
    async fn prewarm(&self, tctx: &ToolContext) {
        let Some(llm) = self.llm.clone() else { return };
        // Nothing to warm where the model is not used: another engine, or a conversation whose
        // channel and trust may not chat.
        if llm.name() != "candle"
            || self
                .router
                .check("chat", &tctx.channel, tctx.trust)
                .is_err()
        {
            return;
        }
        let messages = match self.llm_context(tctx.conversation_id, None).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "llm pre-warm: history unavailable");
                return;
            }
        };
        let mut req = self.llm_request(messages, tctx);
        req.max_tokens = 0;
        req.priority = Priority::Background;
        self.spawn_prewarm(llm, req, format!("conversation {}", tctx.conversation_id));
    }

    /// At start: prefill the system prompt (with the tools the device's own voice may use) into
    /// the embedded engine's shared prefix cache at Background priority, so that the first
    /// question after a start, and the first of every new conversation, prefills only itself
    /// (the system prompt is ~60 of its ~70 tokens: ~0.9 s on one thread here).
    fn prewarm_system_prompt(&self) {
        let Some(llm) = self.llm.clone() else { return };
        let trust = self.router.local_trust();
        if llm.name() != "candle" || self.router.check("chat", LOCAL_CHANNEL, trust).is_err() {
            return;
        }
        let mut req =
            GenerateRequest::new(vec![ChatMessage::new(Role::System, self.system_prompt())]);
        req.max_tokens = 0;
        req.priority = Priority::Background;
        req.tools = self.tool_mode(LOCAL_CHANNEL, trust);
        self.spawn_prewarm(llm, req, "system prompt".into());
    }

    /// Run a pre-warm `req` (max_tokens 0) to its end in the background and count it.
    fn spawn_prewarm(&self, llm: Arc<dyn LlmGateway>, req: GenerateRequest, what: String) {
        let Ok(mut rx) = llm.submit(req) else {
            // A full queue has better things to do.
            return;
        };
        let done = self.metrics.llm_prewarms.clone();
        // The stream is read to its end: dropping it would cancel the pre-warm.
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if let LlmChunk::Done(r) = chunk {
                    match r {
                        Ok(o) => {
                            if o.finish == FinishReason::Length {
                                done.inc();
                            }
                            tracing::debug!(
                                what,
                                prompt_tokens = o.stats.prompt_tokens,
                                cached_tokens = o.stats.cached_tokens,
                                prefill_ms = o.stats.prefill.as_millis() as u64,
                                finish = ?o.finish,
                                "llm pre-warm"
                            );
                        }
                        Err(e) => {
                            tracing::debug!(what, error = %e, "llm pre-warm failed")
                        }
                    }
                    break;
                }
            }
        });
    }

    async fn llm_turn(
        &self,
        input: &TurnInput,
        cancel: &CancellationToken,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
        out: &mut Reply<'_>,
        row: &mut SessionRow,
    ) -> Result<(&'static str, String), StoreError> {
        if let Err(r) = self.router.check("chat", &tctx.channel, tctx.trust) {
            out.say(&r.say, self, row).await?;
            return Ok(("refused", "fast_path".into()));
        }
        let Some(llm) = self.llm.clone() else {
            out.say(
                "Sorry, I only understand commands like timers, reminders and the time right now.",
                self,
                row,
            )
            .await?;
            return Ok(("answered", "fast_path".into()));
        };
        let engine = llm.name().to_owned();
        let mut messages = self
            .llm_context(tctx.conversation_id, Some(input.work.message_id))
            .await?;
        let memories = self.memory_context(input, tctx).await;
        if !memories.is_empty() {
            messages.push(ChatMessage::new(Role::System, memories));
        }
        messages.push(ChatMessage::new(Role::User, input.work.text.clone()));
        let mut req = self.llm_request(messages, tctx);
        req.priority = input.priority;
        req.cancel = cancel.child_token();
        let submitted = llm.submit(req);
        self.metrics
            .llm_queue_depth
            .set(i64::try_from(llm.queue_depth()).unwrap_or(i64::MAX));
        let mut rx = match submitted {
            Ok(rx) => rx,
            Err(LlmError::Busy { depth }) => {
                self.metrics.llm_busy.inc();
                tracing::info!(depth, "llm busy");
                out.say(
                    "I'm busy right now; please ask again in a moment.",
                    self,
                    row,
                )
                .await?;
                return Ok(("busy", engine));
            }
            Err(e) => {
                tracing::warn!(error = %e, "llm unavailable");
                out.say(
                    "Sorry, I can't think right now; please try again later.",
                    self,
                    row,
                )
                .await?;
                return Ok(("failed", engine));
            }
        };
        let mut chunker = SentenceChunker::new();
        let mut result = None;
        // A long first sentence goes out from its first clause on ("The sky looks blue
        // because," then the rest): a voice starts speaking while the model still writes it.
        let mut first = true;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(LlmChunk::Text(piece)) => {
                        for s in chunker.push(&piece) {
                            first = false;
                            out.chunk(s, self, row).await?;
                        }
                        if first {
                            if let Some(head) = chunker.take_clause(FIRST_CLAUSE_CHARS) {
                                first = false;
                                out.chunk(head, self, row).await?;
                            }
                        }
                    }
                    Some(LlmChunk::Done(r)) => { result = Some(r); break; }
                    None => break,
                }
            }
        }
        if cancel.is_cancelled() {
            // Keep what was said so far (stored as cancelled, never delivered).
            if let Some(rest) = chunker.finish() {
                out.text.push(rest);
            }
            return Ok(("cancelled", engine));
        }
        match result {
            Some(Ok(o)) => {
                let st = &o.stats;
                self.metrics
                    .llm_prompt_tokens
                    .inc_by(st.prompt_tokens as u64);
                self.metrics
                    .llm_cached_tokens
                    .inc_by(st.cached_tokens as u64);
                tracing::info!(
                    engine,
                    prompt_tokens = st.prompt_tokens,
                    cached_tokens = st.cached_tokens,
                    generated_tokens = st.generated_tokens,
                    prefill_ms = st.prefill.as_millis() as u64,
                    first_token_ms = st.first_token.as_millis() as u64,
                    total_ms = st.total.as_millis() as u64,
                    "llm reply"
                );
                if let Some(tc) = o.tool_call {
                    if let Decision::Say(s) | Decision::Refuse(s) =
                        self.call_tool(&tc.name, tc.arguments, tctx, calls).await
                    {
                        out.say(&s, self, row).await?;
                    }
                    return Ok(("answered", engine));
                }
                if let Some(rest) = chunker.finish() {
                    out.chunk(rest, self, row).await?;
                }
                if out.text.is_empty() {
                    out.say("Sorry, I don't know what to say to that.", self, row)
                        .await?;
                }
                if o.finish == FinishReason::Cancelled {
                    return Ok(("cancelled", engine));
                }
                Ok(("answered", engine))
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "llm generation failed");
                if let Some(rest) = chunker.finish() {
                    out.chunk(rest, self, row).await?;
                }
                if out.text.is_empty() {
                    out.say(
                        "Sorry, I can't think right now; please try again later.",
                        self,
                        row,
                    )
                    .await?;
                }
                Ok(("failed", engine))
            }
            None => Ok(("cancelled", engine)),
        }
    }
}

/// `at` and `repeat` tool arguments of a resolved time.
fn when_args(w: &When) -> (String, Option<String>) {
    match w {
        When::At { at } => (at.to_string(), None),
        When::Recurring { rule, first } => (first.to_string(), Some(tools::repeat_arg(rule))),
    }
}

/// The reply being built: sentences sent to the caller as they are ready.
struct Reply<'a> {
    tx: &'a mpsc::Sender<TurnEvent>,
    t0: Instant,
    text: Vec<String>,
    first_chunk: Option<Duration>,
}

impl<'a> Reply<'a> {
    fn new(tx: &'a mpsc::Sender<TurnEvent>, t0: Instant) -> Self {
        Self {
            tx,
            t0,
            text: Vec::new(),
            first_chunk: None,
        }
    }

    async fn chunk(
        &mut self,
        s: String,
        inner: &Inner,
        row: &mut SessionRow,
    ) -> Result<(), StoreError> {
        if self.first_chunk.is_none() {
            self.first_chunk = Some(self.t0.elapsed());
            inner.transition(row, SessionEvent::ReplyStarted);
            inner.save_session(row).await?;
        }
        self.text.push(s.clone());
        // A caller that went away does not stop the turn: the reply is still stored.
        let _ = self.tx.send(TurnEvent::Chunk(s)).await;
        Ok(())
    }

    async fn say(
        &mut self,
        text: &str,
        inner: &Inner,
        row: &mut SessionRow,
    ) -> Result<(), StoreError> {
        let mut c = SentenceChunker::new();
        let mut parts = c.push(text);
        parts.extend(c.finish());
        for p in parts {
            self.chunk(p, inner, row).await?;
        }
        Ok(())
    }
}
