//! Language-model engines behind one blocking trait, run by [`worker::LlmService`] in their own
//! thread(s) behind a bounded priority queue.
//!
//! Backends: [`candle`] (embedded GGUF, the default) and [`ollama`] (an Ollama server's
//! `/api/chat`). A backend never runs on the async runtime: [`LlmBackend::generate`] is called
//! on a worker thread and reports tokens through a callback, checking the request's
//! cancellation token between tokens.

pub mod candle;
pub mod constrain;
pub mod ollama;
pub mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Tokens looked back on by [`GenerateRequest::repeat_penalty`] (Ollama's `repeat_last_n`).
pub const REPEAT_WINDOW: usize = 64;

/// Who said a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system prompt.
    System,
    /// The person.
    User,
    /// The assistant.
    Assistant,
    /// A tool result fed back to the model.
    Tool,
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A tool the model may call: its name, a description, and the JSON schema of its arguments.
///
/// Supported schema subset (what [`constrain`] enforces): `{"type":"object","properties":{…},
/// "required":[…]}` whose properties are `{"type":"string"}` (optionally with `"enum"`),
/// `{"type":"integer"}`, `{"type":"number"}` or `{"type":"boolean"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Tool name, e.g. `reminder_set`.
    pub name: String,
    /// What it does, for the prompt.
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// What the model must produce.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ToolMode {
    /// Plain text only.
    #[default]
    None,
    /// Plain text, or a tool call if the model starts one (then decoding is constrained to
    /// `{"name": <one of the tools>, "arguments": <that tool's schema>}`).
    Auto(Vec<ToolSpec>),
    /// Must emit exactly one call, constrained, to one of these tools.
    Required(Vec<ToolSpec>),
}

/// Queue priority: higher is served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Summaries, memory housekeeping.
    Background = 0,
    /// Text messages (SMS, API).
    Message = 1,
    /// The local microphone.
    LocalVoice = 2,
    /// A live phone call.
    LiveCall = 3,
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The whole conversation, system prompt first. Backends that keep a KV cache reuse the
    /// longest cached prefix of its tokens.
    pub messages: Vec<ChatMessage>,
    /// Cache key: a session keeps its KV cache between turns under this key.
    pub session: Option<String>,
    /// Tool calling mode.
    pub tools: ToolMode,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Extra stop strings (the template's end-of-turn token always stops).
    pub stop: Vec<String>,
    /// Sampling temperature; 0 means greedy.
    pub temperature: f32,
    /// Penalty on tokens among the last [`REPEAT_WINDOW`] (positive logits divided by it,
    /// negative ones multiplied, as llama.cpp and Ollama do); 1 is off. Tiny models otherwise
    /// loop on one sentence until `max_tokens`. candle looks at the reply's tokens only;
    /// Ollama's window also reaches into the prompt.
    pub repeat_penalty: f32,
    /// Sampling seed.
    pub seed: u64,
    /// Queue priority.
    pub priority: Priority,
    /// Cancelled → generation stops before the next token.
    pub cancel: CancellationToken,
}

impl GenerateRequest {
    /// A greedy, tool-less request for `messages`.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            session: None,
            tools: ToolMode::None,
            max_tokens: 256,
            stop: Vec::new(),
            temperature: 0.0,
            repeat_penalty: 1.0,
            seed: 0,
            priority: Priority::Message,
            cancel: CancellationToken::new(),
        }
    }

    /// Why [`GenerateRequest::repeat_penalty`] cannot be used, if it cannot.
    pub fn repeat_penalty_error(&self) -> Option<String> {
        (!self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0).then(|| {
            format!(
                "repeat_penalty must be a finite number above 0, not {}",
                self.repeat_penalty
            )
        })
    }
}

/// A tool call the model made (arguments valid against the tool's schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The tool.
    pub name: String,
    /// Its arguments.
    pub arguments: serde_json::Value,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-turn token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The cancellation token fired.
    Cancelled,
    /// A tool call was completed.
    ToolCall,
}

/// Timings and counts of one generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenerateStats {
    /// Prompt tokens in total.
    pub prompt_tokens: usize,
    /// Prompt tokens served from the KV cache (not recomputed).
    pub cached_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Time to process the uncached prompt.
    pub prefill: Duration,
    /// Time from start to the first generated token.
    pub first_token: Duration,
    /// Whole generation.
    pub total: Duration,
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOutput {
    /// The text produced (for a tool call: the raw JSON text).
    pub text: String,
    /// The tool call, if the model made a valid one.
    pub tool_call: Option<ToolCall>,
    /// Why it ended.
    pub finish: FinishReason,
    /// Timings.
    pub stats: GenerateStats,
}

/// Errors of a backend or the service.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The model file could not be loaded.
    #[error("cannot load model {path}: {reason}")]
    Load {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The prompt does not fit the context window even after trimming history.
    #[error("prompt of {tokens} tokens does not fit the context window of {ctx}")]
    ContextOverflow {
        /// Prompt tokens.
        tokens: usize,
        /// Context size.
        ctx: usize,
    },
    /// The queue is full: the caller should answer "busy" now.
    #[error("the language model is busy ({depth} requests queued)")]
    Busy {
        /// Queue depth.
        depth: usize,
    },
    /// The service is shut down.
    #[error("the language model service is stopped")]
    Stopped,
    /// Inference failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A remote backend failed.
    #[error("{backend} backend: {reason}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
}

/// A language-model engine. Blocking: called only on a worker thread.
pub trait LlmBackend: Send + Sync + 'static {
    /// Short name for logs and metrics (`candle`, `ollama`).
    fn name(&self) -> &'static str;
    /// Generate a reply for `req`, calling `on_text` with each new piece of visible text as it
    /// is decoded (not for tool-call JSON). Returns when done, stopped or cancelled.
    fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerateOutput, LlmError>;
}
