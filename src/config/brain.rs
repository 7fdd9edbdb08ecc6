//! The Brain's sections: `[assistant]`, `[llm]` and `[routing]` (raw form, defaults and
//! resolution into typed values).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::domain::{PhoneNumber, Trust};

/// `[assistant]`: the conversation engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAssistant {
    /// Name the assistant uses for itself.
    pub name: String,
    /// Language of the fast path and the replies (`en`).
    pub language: String,
    /// IANA time zone, e.g. `Europe/Berlin`; empty: the system's.
    pub timezone: String,
    /// Recent messages of the conversation given to the LLM as context.
    pub history_messages: u64,
    /// How long an unanswered question ("what should I remind you of?") stays open, in seconds.
    pub dialogue_timeout_secs: u64,
    /// A reminder found overdue by more than this at start is delivered with a "missed" note.
    pub missed_grace_secs: u64,
    /// Answer inbound messages; false only stores them (an archive-only box).
    pub answer_inbound: bool,
}

impl Default for RawAssistant {
    fn default() -> Self {
        Self {
            name: "Assistant".into(),
            language: "en".into(),
            timezone: String::new(),
            history_messages: 12,
            dialogue_timeout_secs: 300,
            missed_grace_secs: 120,
            answer_inbound: true,
        }
    }
}

/// `[llm]`: the language model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLlm {
    /// `candle` (embedded GGUF), `ollama` (an Ollama server) or `none`.
    pub backend: String,
    /// For `candle`: a model name from the manifest or a path to a `.gguf` file.
    pub model: String,
    /// Inference threads of the embedded model. It pauses between steps while speech is
    /// recognised or synthesized, so it may use every core.
    pub threads: u64,
    /// Context window in tokens.
    pub context_tokens: u64,
    /// Longest reply in tokens.
    pub max_reply_tokens: u64,
    /// Sampling temperature (0 = greedy, deterministic).
    pub temperature: f64,
    /// Penalty on recently used tokens (1 = off).
    pub repeat_penalty: f64,
    /// Requests that may wait for the model before new ones get "busy".
    pub queue_depth: u64,
    /// Let the model call tools when the fast path did not understand a request.
    pub tool_calls: bool,
    /// Ollama server URL.
    pub ollama_url: String,
    /// Ollama model tag.
    pub ollama_model: String,
    /// Longest Ollama request, in seconds.
    pub ollama_timeout_secs: u64,
}

impl Default for RawLlm {
    fn default() -> Self {
        Self {
            backend: "candle".into(),
            model: "smollm2-135m-instruct".into(),
            threads: 2,
            context_tokens: 2048,
            max_reply_tokens: 160,
            temperature: 0.0,
            repeat_penalty: 1.1,
            queue_depth: 16,
            tool_calls: false,
            ollama_url: "http://127.0.0.1:11434".into(),
            ollama_model: "qwen2.5:1.5b-instruct".into(),
            ollama_timeout_secs: 120,
        }
    }
}

/// `[routing]`: who may use which tools.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouting {
    /// Trust of requests made with the API token (`/api/v1/chat` without `from`).
    pub api_trust: String,
    /// Trust of whoever speaks to the device's own microphone (the `local` channel).
    pub local_trust: String,
    /// Phone numbers of the owner(s) (E.164).
    pub owner_numbers: Vec<String>,
    /// Phone numbers of the household (E.164).
    pub household_numbers: Vec<String>,
    /// Lowest trust allowed to use each tool group.
    pub min_trust: BTreeMap<String, String>,
    /// Extra denials per channel.
    pub deny: Vec<RawDenyRule>,
}

/// One `[[routing.deny]]` rule.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawDenyRule {
    /// Channel name, or `*` for every channel.
    pub channel: String,
    /// The rule applies to senders whose trust is at most this.
    pub max_trust: String,
    /// Tool groups denied (`calendar`, `timer`, …) or `*`.
    pub groups: Vec<String>,
}

/// The tool groups and their default lowest trust.
pub const TOOL_GROUPS: &[(&str, Trust)] = &[
    ("chat", Trust::Unknown),
    ("time", Trust::Unknown),
    ("timer", Trust::Known),
    ("reminder", Trust::Known),
    ("calendar", Trust::Household),
    ("task", Trust::Household),
    ("memory", Trust::Household),
    ("contact", Trust::Owner),
];

impl Default for RawRouting {
    fn default() -> Self {
        Self {
            api_trust: "owner".into(),
            local_trust: "household".into(),
            owner_numbers: Vec::new(),
            household_numbers: Vec::new(),
            min_trust: TOOL_GROUPS
                .iter()
                .map(|(g, t)| ((*g).to_owned(), t.as_str().to_owned()))
                .collect(),
            deny: Vec::new(),
        }
    }
}

/// The assistant's resolved settings.
#[derive(Debug, Clone)]
pub struct AssistantConfig {
    /// Its name.
    pub name: String,
    /// Language tag.
    pub language: String,
    /// Device time zone.
    pub timezone: jiff::tz::TimeZone,
    /// Messages of history given to the LLM.
    pub history_messages: usize,
    /// Open-question lifetime.
    pub dialogue_timeout: Duration,
    /// Overdue threshold for the "missed while offline" note.
    pub missed_grace: Duration,
    /// Answer inbound messages.
    pub answer_inbound: bool,
}

/// Which LLM backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmBackendKind {
    /// Embedded candle engine.
    Candle,
    /// An Ollama server.
    Ollama,
    /// No LLM: the fast path only.
    None,
}

/// The LLM's resolved settings.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// Backend.
    pub backend: LlmBackendKind,
    /// Model name or path.
    pub model: String,
    /// Threads.
    pub threads: usize,
    /// Context window.
    pub context_tokens: usize,
    /// Reply limit.
    pub max_reply_tokens: usize,
    /// Temperature.
    pub temperature: f32,
    /// Penalty on recently used tokens (1 = off).
    pub repeat_penalty: f32,
    /// Queue capacity.
    pub queue_depth: usize,
    /// LLM tool calls allowed.
    pub tool_calls: bool,
    /// Ollama URL.
    pub ollama_url: String,
    /// Ollama model.
    pub ollama_model: String,
    /// Ollama timeout.
    pub ollama_timeout: Duration,
}

/// A resolved deny rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyRule {
    /// Channel or `*`.
    pub channel: String,
    /// Applies up to this trust.
    pub max_trust: Trust,
    /// Denied groups (or `*`).
    pub groups: Vec<String>,
}

/// Resolved routing.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Trust of the API token holder.
    pub api_trust: Trust,
    /// Trust of the device's own microphone.
    pub local_trust: Trust,
    /// Owner numbers.
    pub owner_numbers: Vec<PhoneNumber>,
    /// Household numbers.
    pub household_numbers: Vec<PhoneNumber>,
    /// Lowest trust per tool group.
    pub min_trust: BTreeMap<String, Trust>,
    /// Extra denials.
    pub deny: Vec<DenyRule>,
}

fn key_err(key: &str, message: String) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        message,
    }
}

fn trust(key: &str, v: &str) -> Result<Trust, ConfigError> {
    Trust::parse(v).ok_or_else(|| {
        key_err(
            key,
            format!("expected \"owner\", \"household\", \"known\" or \"unknown\"; got {v:?}"),
        )
    })
}

fn range(key: &str, v: u64, lo: u64, hi: u64) -> Result<usize, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(usize::try_from(v).unwrap_or(usize::MAX))
    } else {
        Err(key_err(
            key,
            format!("expected a number from {lo} to {hi}; got {v}"),
        ))
    }
}

/// Resolve `[assistant]`.
pub fn resolve_assistant(raw: RawAssistant) -> Result<AssistantConfig, ConfigError> {
    let timezone = match raw.timezone.trim() {
        "" => jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC),
        name => jiff::tz::TimeZone::get(name).map_err(|e| {
            key_err(
                "assistant.timezone",
                format!("expected an IANA time zone such as \"Europe/Berlin\" or \"America/New_York\"; got {name:?} ({e})"),
            )
        })?,
    };
    if raw.language != "en" {
        return Err(key_err(
            "assistant.language",
            format!("only \"en\" is supported so far; got {:?}", raw.language),
        ));
    }
    if raw.name.trim().is_empty() {
        return Err(key_err("assistant.name", "must not be empty".into()));
    }
    Ok(AssistantConfig {
        name: raw.name.trim().to_owned(),
        language: raw.language,
        answer_inbound: raw.answer_inbound,
        timezone,
        history_messages: range("assistant.history_messages", raw.history_messages, 0, 200)?,
        dialogue_timeout: Duration::from_secs(range(
            "assistant.dialogue_timeout_secs",
            raw.dialogue_timeout_secs,
            5,
            86_400,
        )? as u64),
        missed_grace: Duration::from_secs(range(
            "assistant.missed_grace_secs",
            raw.missed_grace_secs,
            0,
            86_400,
        )? as u64),
    })
}

/// Resolve `[llm]`.
pub fn resolve_llm(raw: RawLlm) -> Result<LlmConfig, ConfigError> {
    let backend = match raw.backend.as_str() {
        "candle" => LlmBackendKind::Candle,
        "ollama" => LlmBackendKind::Ollama,
        "none" => LlmBackendKind::None,
        other => {
            return Err(key_err(
                "llm.backend",
                format!("expected \"candle\", \"ollama\" or \"none\"; got {other:?}"),
            ))
        }
    };
    if backend == LlmBackendKind::Candle && raw.model.trim().is_empty() {
        return Err(key_err(
            "llm.model",
            "must name a model (see `local-assistant models list`) or a .gguf path".into(),
        ));
    }
    if !(0.0..=2.0).contains(&raw.temperature) {
        return Err(key_err(
            "llm.temperature",
            format!("expected a number from 0 to 2; got {}", raw.temperature),
        ));
    }
    if !(1.0..=2.0).contains(&raw.repeat_penalty) {
        return Err(key_err(
            "llm.repeat_penalty",
            format!(
                "expected a number from 1 (off) to 2; got {}",
                raw.repeat_penalty
            ),
        ));
    }
    if !(raw.ollama_url.starts_with("http://") || raw.ollama_url.starts_with("https://")) {
        return Err(key_err(
            "llm.ollama_url",
            format!(
                "expected an http:// or https:// URL; got {:?}",
                raw.ollama_url
            ),
        ));
    }
    Ok(LlmConfig {
        backend,
        model: raw.model.trim().to_owned(),
        threads: range("llm.threads", raw.threads, 1, 256)?,
        context_tokens: range("llm.context_tokens", raw.context_tokens, 256, 131_072)?,
        max_reply_tokens: range("llm.max_reply_tokens", raw.max_reply_tokens, 1, 8192)?,
        #[allow(clippy::cast_possible_truncation)]
        temperature: raw.temperature as f32,
        #[allow(clippy::cast_possible_truncation)]
        repeat_penalty: raw.repeat_penalty as f32,
        queue_depth: range("llm.queue_depth", raw.queue_depth, 1, 10_000)?,
        tool_calls: raw.tool_calls,
        ollama_url: raw.ollama_url.trim_end_matches('/').to_owned(),
        ollama_model: raw.ollama_model,
        ollama_timeout: Duration::from_secs(range(
            "llm.ollama_timeout_secs",
            raw.ollama_timeout_secs,
            1,
            3600,
        )? as u64),
    })
}

/// Resolve `[routing]`.
pub fn resolve_routing(raw: RawRouting) -> Result<RoutingConfig, ConfigError> {
    let numbers = |key: &str, list: &[String]| -> Result<Vec<PhoneNumber>, ConfigError> {
        list.iter()
            .map(|n| PhoneNumber::parse(n).map_err(|e| key_err(key, e.to_string())))
            .collect()
    };
    let mut min_trust: BTreeMap<String, Trust> = TOOL_GROUPS
        .iter()
        .map(|(g, t)| ((*g).to_owned(), *t))
        .collect();
    for (group, level) in &raw.min_trust {
        let key = format!("routing.min_trust.{group}");
        if !min_trust.contains_key(group) {
            let known: Vec<&str> = TOOL_GROUPS.iter().map(|(g, _)| *g).collect();
            return Err(key_err(
                &key,
                format!("unknown tool group; expected one of {}", known.join(", ")),
            ));
        }
        min_trust.insert(group.clone(), trust(&key, level)?);
    }
    let mut deny = Vec::new();
    for (i, r) in raw.deny.iter().enumerate() {
        let key = format!("routing.deny[{i}]");
        if r.channel.trim().is_empty() {
            return Err(key_err(
                &format!("{key}.channel"),
                "must name a channel or \"*\"".into(),
            ));
        }
        for g in &r.groups {
            if g != "*" && !min_trust.contains_key(g) {
                return Err(key_err(
                    &format!("{key}.groups"),
                    format!("unknown tool group {g:?}"),
                ));
            }
        }
        deny.push(DenyRule {
            channel: r.channel.trim().to_owned(),
            max_trust: trust(&format!("{key}.max_trust"), &r.max_trust)?,
            groups: r.groups.clone(),
        });
    }
    Ok(RoutingConfig {
        api_trust: trust("routing.api_trust", &raw.api_trust)?,
        local_trust: trust("routing.local_trust", &raw.local_trust)?,
        owner_numbers: numbers("routing.owner_numbers", &raw.owner_numbers)?,
        household_numbers: numbers("routing.household_numbers", &raw.household_numbers)?,
        min_trust,
        deny,
    })
}
