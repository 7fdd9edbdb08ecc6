//! Process metrics in the OpenMetrics text format (what Prometheus scrapes): HTTP request
//! counts and latency by route, store latency and commit batch sizes, inbox/outbox depth,
//! event-stream subscribers, outbox delivery outcomes.
//!
//! Depth gauges are refreshed from the store when `/metrics` is scraped; everything else is
//! recorded where it happens. This module never decides anything from a metric.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::StoreMetrics;

/// Content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of a finished HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route pattern (e.g. `/api/v1/conversations/{id}/messages`) or `unmatched`.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels of a route's latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route pattern.
    pub route: String,
    /// HTTP method.
    pub method: String,
}

/// Labels of a status count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// Row status.
    pub status: String,
}

/// Labels of a delivery attempt.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// Channel.
    pub channel: String,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
}

/// Labels of a turn-stage timing.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `nlu`, `first_chunk` or `total`.
    pub stage: String,
    /// `fast_path` or the LLM backend name.
    pub engine: String,
}

/// Labels of a finished turn.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TurnLabels {
    /// Intent name or `llm`.
    pub intent: String,
    /// `answered`, `asked`, `refused`, `cancelled`, `busy`, `failed`.
    pub outcome: String,
}

/// Labels of a voice-turn timing.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VoiceStageLabels {
    /// `response` (first audio out − end of speech), `stt`, `first_text`, `first_audio`.
    pub stage: String,
}

/// Labels of a finished voice turn.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VoiceTurnLabels {
    /// `wake`, `button` or `follow_up`.
    pub trigger: String,
    /// `answered`, `no_speech`, `interrupted`, `failed`.
    pub outcome: String,
}

fn turn_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn http_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Every metric of the process.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Finished HTTP requests.
    pub http_requests: Family<RequestLabels, Counter>,
    /// HTTP request latency.
    pub http_duration: HistogramFamily<RouteLabels>,
    /// Inbox rows not yet handled.
    pub inbox_depth: Gauge,
    /// Outbox rows by status.
    pub outbox_depth: Family<StatusLabels, Gauge>,
    /// Delivery attempts by outcome.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// Connected event-stream clients.
    pub event_subscribers: Gauge,
    /// Event-stream clients dropped for being too slow.
    pub event_clients_dropped: Counter,
    /// Store operations waiting for the writer.
    pub store_write_queue: Gauge,
    /// Turn timings per stage.
    pub turn_stage: HistogramFamily<StageLabels>,
    /// Finished turns.
    pub turns: Family<TurnLabels, Counter>,
    /// Requests waiting for the language model.
    pub llm_queue_depth: Gauge,
    /// Requests refused because the language model's queue was full.
    pub llm_busy: Counter,
    /// Prompt tokens of the LLM's answers.
    pub llm_prompt_tokens: Counter,
    /// Of those, the tokens taken from the KV cache instead of prefilled.
    pub llm_cached_tokens: Counter,
    /// Finished cache pre-warms (after spoken turns).
    pub llm_prewarms: Counter,
    /// Voice-turn timings from the end of speech.
    pub voice_stage: HistogramFamily<VoiceStageLabels>,
    /// Finished voice turns.
    pub voice_turns: Family<VoiceTurnLabels, Counter>,
}

impl Metrics {
    /// Build and register every metric, including the store's histograms.
    pub fn new(store: &StoreMetrics) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(http_histogram);
        let inbox_depth = Gauge::default();
        let outbox_depth = Family::<StatusLabels, Gauge>::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let event_subscribers = Gauge::default();
        let event_clients_dropped = Counter::default();
        let store_write_queue = Gauge::default();
        let turn_stage: HistogramFamily<StageLabels> = Family::new_with_constructor(turn_histogram);
        let turns = Family::<TurnLabels, Counter>::default();
        let llm_queue_depth = Gauge::default();
        let llm_busy = Counter::default();
        let llm_prompt_tokens = Counter::default();
        let llm_cached_tokens = Counter::default();
        let llm_prewarms = Counter::default();
        let voice_stage: HistogramFamily<VoiceStageLabels> =
            Family::new_with_constructor(turn_histogram);
        let voice_turns = Family::<VoiceTurnLabels, Counter>::default();
        registry.register(
            "voice_latency_seconds",
            "Local voice turns, from the end of speech: response (first audio out), stt, first_text, first_audio",
            voice_stage.clone(),
        );
        registry.register(
            "voice_turns",
            "Local voice turns by trigger and outcome",
            voice_turns.clone(),
        );
        registry.register(
            "turn_stage_duration_seconds",
            "Conversation turn timings: NLU, first reply chunk, total",
            turn_stage.clone(),
        );
        registry.register(
            "turns",
            "Finished conversation turns by intent and outcome",
            turns.clone(),
        );
        registry.register(
            "llm_queue_depth",
            "Requests waiting for the language model",
            llm_queue_depth.clone(),
        );
        registry.register(
            "llm_busy",
            "Requests answered busy because the language model queue was full",
            llm_busy.clone(),
        );
        registry.register(
            "llm_prompt_tokens",
            "Prompt tokens of the language model's answers",
            llm_prompt_tokens.clone(),
        );
        registry.register(
            "llm_cached_tokens",
            "Prompt tokens of the language model's answers taken from its KV cache",
            llm_cached_tokens.clone(),
        );
        registry.register(
            "llm_prewarms",
            "KV-cache pre-warms finished after spoken turns",
            llm_prewarms.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and method",
            http_duration.clone(),
        );
        registry.register(
            "db_write_duration_seconds",
            "Store write latency from submission to committed result",
            store.write_latency.clone(),
        );
        registry.register(
            "db_read_duration_seconds",
            "Store read latency from submission to result",
            store.read_latency.clone(),
        );
        registry.register(
            "db_commit_batch_size",
            "Write operations committed per transaction (group commit)",
            store.batch_size.clone(),
        );
        registry.register(
            "db_write_queue",
            "Write operations waiting for the writer thread",
            store_write_queue.clone(),
        );
        registry.register(
            "inbox_depth",
            "Inbound messages not yet handled",
            inbox_depth.clone(),
        );
        registry.register(
            "outbox_depth",
            "Outbox entries by status",
            outbox_depth.clone(),
        );
        registry.register(
            "outbox_attempts",
            "Delivery attempts by channel and outcome",
            deliveries.clone(),
        );
        registry.register(
            "events_subscribers",
            "Connected event-stream clients",
            event_subscribers.clone(),
        );
        registry.register(
            "events_clients_dropped",
            "Event-stream clients dropped for falling behind",
            event_clients_dropped.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            http_requests,
            http_duration,
            inbox_depth,
            outbox_depth,
            deliveries,
            event_subscribers,
            event_clients_dropped,
            store_write_queue,
            turn_stage,
            turns,
            llm_queue_depth,
            llm_busy,
            llm_prompt_tokens,
            llm_cached_tokens,
            llm_prewarms,
            voice_stage,
            voice_turns,
        }
    }

    /// The OpenMetrics exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = match self.registry.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}
