//! Channels: adapters between the outside world and the core. Each turns its transport into
//! inbound messages (through the inbox or a direct turn) and registers a
//! [`crate::messaging::outbox::DeliveryHandler`] for what goes out. Nothing in the core knows
//! which channel it talks to.

pub mod call;
pub mod local;
pub mod telephony;
pub mod twilio;
pub mod vonage;

use std::sync::Arc;

use crate::events::EventBus;
use crate::messaging::inbox::Inbox;
use crate::orchestrator::Orchestrator;
use crate::store::Store;

/// What a channel's webhooks reach: the core, as every channel sees it.
#[derive(Clone)]
pub struct ChannelContext {
    /// The store.
    pub store: Store,
    /// The inbox (inbound messages are committed here before the source is answered).
    pub inbox: Inbox,
    /// The event bus.
    pub events: Arc<EventBus>,
    /// The conversation engine.
    pub orchestrator: Orchestrator,
    /// Where received pictures are kept.
    pub media: telephony::MediaStore,
    /// Speech engines for real-time calls, when they loaded.
    pub calls: Option<call::CallEngines>,
    /// Metrics.
    pub metrics: Arc<crate::platform::metrics::Metrics>,
}

/// Speak a turn: its reply, chunk by chunk, into a TTS stream until the turn is done or
/// `cancel` (barge-in, hang-up). A turn that did not finish is cancelled (a dropped handle
/// would not stop it). `first_chunk` runs at the first chunk. The voice channels (the
/// device's own, calls) share it.
pub(crate) async fn speak_turn(
    mut handle: crate::orchestrator::TurnHandle,
    text: crate::speech::tts::stream::TextSink,
    cancel: &tokio_util::sync::CancellationToken,
    first_chunk: impl FnOnce(),
) -> Option<crate::orchestrator::TurnSummary> {
    use crate::orchestrator::TurnEvent;
    let mut first_chunk = Some(first_chunk);
    let mut summary = None;
    loop {
        let ev = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            ev = handle.events.recv() => ev,
        };
        match ev {
            Some(TurnEvent::Chunk(s)) => {
                if let Some(f) = first_chunk.take() {
                    f();
                }
                if text.send_sentence(&s).await.is_err() {
                    break;
                }
            }
            Some(TurnEvent::Done(s)) => {
                summary = Some(s);
                break;
            }
            None => break,
        }
    }
    if summary.is_none() {
        handle.cancel_token().cancel();
    }
    text.finish();
    summary
}

impl ChannelContext {
    /// One turn of a phone call given as text (the provider's own speech recognition, a key
    /// press): the whole reply, or `None` when it failed or took longer than `budget` (the
    /// turn is then cancelled).
    pub async fn call_turn(
        &self,
        channel: &str,
        caller: &str,
        text: String,
        budget: std::time::Duration,
    ) -> Option<String> {
        let handle = match self
            .orchestrator
            .converse(
                channel,
                caller.to_owned(),
                text,
                crate::orchestrator::session::SessionKind::Call,
                crate::nlu::llm::Priority::LiveCall,
            )
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(channel, error = %e, "call turn failed");
                return None;
            }
        };
        let cancel = handle.cancel_token();
        match tokio::time::timeout(budget, handle.finish()).await {
            Ok(Some(summary)) => Some(summary.reply),
            _ => {
                cancel.cancel();
                None
            }
        }
    }
}
