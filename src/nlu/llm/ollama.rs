//! [`LlmBackend`] that talks to an Ollama server's `/api/chat` (streamed, newline-delimited JSON).
//!
//! Owns the Ollama wire format: the request body (`model`, `messages`, `options`, `keep_alive`,
//! `tools`, `format`), the streamed chunks and the final statistics object, and Ollama's error
//! shapes (a non-2xx status with `{"error": …}`, or an `{"error": …}` line mid-stream).
//!
//! The HTTP exchange runs on a helper thread that forwards each line over a channel, so the
//! caller can notice a cancelled request between lines without waiting for the server's next
//! piece; the helper drops the connection (which makes Ollama stop generating) as soon as it
//! sees the cancellation. This module never runs on the async runtime and never panics on what
//! the server sends.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use super::{
    FinishReason, GenerateOutput, GenerateRequest, GenerateStats, LlmBackend, LlmError, ToolCall,
    ToolMode, ToolSpec,
};

/// Backend name used in errors, logs and metrics.
const NAME: &str = "ollama";
/// How often the caller looks at the cancellation token while waiting for the next line.
const CANCEL_POLL: Duration = Duration::from_millis(10);
/// Longest accepted line of the stream (a single chunk is a few hundred bytes).
const MAX_LINE: usize = 1024 * 1024;
/// Most bytes of an error body kept for the message.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// Lines buffered between the reader thread and the caller.
const LINE_BUFFER: usize = 256;

/// How long Ollama keeps the model loaded after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unload after this long idle (`0` unloads right after the request).
    For(Duration),
    /// Never unload (Ollama's `-1`).
    Forever,
}

impl KeepAlive {
    /// The value of the request's `keep_alive` field: seconds, or `-1` for ever.
    fn to_json(self) -> Value {
        match self {
            KeepAlive::For(d) => json!(d.as_secs()),
            KeepAlive::Forever => json!(-1),
        }
    }
}

/// Settings of an [`OllamaBackend`].
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaOptions {
    /// Server address, e.g. `http://127.0.0.1:11434` (no path).
    pub base_url: String,
    /// Model name as Ollama knows it, e.g. `qwen2.5:1.5b`.
    pub model: String,
    /// Longest wait for the response to start (model load and prompt processing) and, after
    /// that, between two streamed lines.
    pub timeout: Duration,
    /// Longest wait for the TCP connection.
    pub connect_timeout: Duration,
    /// How long Ollama keeps the model loaded; `None` leaves Ollama's default (5 minutes).
    pub keep_alive: Option<KeepAlive>,
    /// Context window (`options.num_ctx`); `None` leaves the model's default.
    pub num_ctx: Option<usize>,
}

impl Default for OllamaOptions {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:11434".to_owned(),
            model: String::new(),
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(5),
            keep_alive: None,
            num_ctx: None,
        }
    }
}

/// An Ollama server reached over HTTP. Cheap to share: one per process is enough.
#[derive(Debug, Clone)]
pub struct OllamaBackend {
    options: OllamaOptions,
    chat_url: String,
    agent: ureq::Agent,
}

impl OllamaBackend {
    /// A backend for `options`. Fails when the URL or the model name cannot be used; does not
    /// contact the server (the first request does).
    pub fn new(options: OllamaOptions) -> Result<Self, LlmError> {
        let base = options.base_url.trim_end_matches('/');
        let config_error = |reason: String| LlmError::Backend {
            backend: NAME,
            reason,
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(config_error(format!(
                "base_url {:?} must start with http:// or https://",
                options.base_url
            )));
        }
        let chat_url = format!("{base}/api/chat");
        if let Err(e) = chat_url.parse::<ureq::http::Uri>() {
            return Err(config_error(format!(
                "base_url {:?} is not a valid URL: {e}",
                options.base_url
            )));
        }
        if options.model.trim().is_empty() {
            return Err(config_error(
                "no model configured (set the Ollama model name, e.g. qwen2.5:1.5b)".to_owned(),
            ));
        }
        if options.timeout.is_zero() || options.connect_timeout.is_zero() {
            return Err(config_error(
                "timeouts must be greater than zero".to_owned(),
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.timeout))
            .timeout_per_read(Some(options.timeout))
            .build()
            .into();
        Ok(Self {
            options,
            chat_url,
            agent,
        })
    }

    /// The settings this backend was built with.
    pub fn options(&self) -> &OllamaOptions {
        &self.options
    }

    /// The JSON body of `/api/chat` for `req`.
    fn request_body(&self, req: &GenerateRequest) -> Value {
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        let mut options = Map::new();
        // The shortest decimal of the f32 (0.7, not 0.699999988…).
        let temperature: f64 = req.temperature.to_string().parse().unwrap_or(0.0);
        options.insert("temperature".into(), json!(temperature));
        // Always sent: Ollama's own default is 1.1, and 1 here means off.
        let penalty: f64 = req.repeat_penalty.to_string().parse().unwrap_or(1.0);
        options.insert("repeat_penalty".into(), json!(penalty));
        options.insert("repeat_last_n".into(), json!(super::REPEAT_WINDOW));
        options.insert("seed".into(), json!(req.seed));
        options.insert("num_predict".into(), json!(req.max_tokens));
        if !req.stop.is_empty() {
            options.insert("stop".into(), json!(req.stop));
        }
        if let Some(n) = self.options.num_ctx {
            options.insert("num_ctx".into(), json!(n));
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(self.options.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), Value::Bool(true));
        body.insert("options".into(), Value::Object(options));
        if let Some(keep) = self.options.keep_alive {
            body.insert("keep_alive".into(), keep.to_json());
        }
        match &req.tools {
            ToolMode::None => {}
            ToolMode::Auto(tools) => {
                body.insert("tools".into(), tools_json(tools));
            }
            ToolMode::Required(tools) => {
                body.insert("tools".into(), tools_json(tools));
                body.insert("format".into(), call_schema(tools));
            }
        }
        Value::Object(body)
    }

    /// An error naming Ollama and this backend's address.
    fn error(&self, reason: impl Into<String>) -> LlmError {
        LlmError::Backend {
            backend: NAME,
            reason: reason.into(),
        }
    }

    /// Turns a non-2xx answer into an error saying what to do.
    fn status_error(&self, status: u16, body: &str) -> LlmError {
        let message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| body.trim().chars().take(300).collect());
        let model = &self.options.model;
        if status == 404 {
            return self.error(format!(
                "model {model:?} is not available on {} ({message}); run `ollama pull {model}`",
                self.options.base_url
            ));
        }
        self.error(format!(
            "{} answered HTTP {status}: {message}",
            self.chat_url
        ))
    }

    /// Describes a transport error (refused connection, timeout, bad response).
    fn transport_error(&self, e: &ureq::Error) -> LlmError {
        let url = &self.options.base_url;
        match e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => self
                .error(format!(
                    "cannot connect to {url}: connection refused (is `ollama serve` running?)"
                )),
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                self.error(format!("cannot connect to {url}: {e}"))
            }
            ureq::Error::Timeout(which) => self.error(format!(
                "no answer from {url} in time ({which}; timeout {:?})",
                self.options.timeout
            )),
            _ => self.error(format!("request to {} failed: {e}", self.chat_url)),
        }
    }

    /// The HTTP exchange, run on the helper thread: sends each line of the answer to `lines`
    /// until the stream ends, the caller goes away or `cancel` fires (dropping the connection).
    fn exchange(
        &self,
        body: String,
        cancel: &CancellationToken,
        lines: &mpsc::SyncSender<Result<String, LlmError>>,
    ) {
        let response = match self
            .agent
            .post(&self.chat_url)
            .header("content-type", "application/json")
            .header("accept", "application/x-ndjson")
            .send(body.as_bytes())
        {
            Ok(r) => r,
            Err(e) => {
                let _ = lines.send(Err(self.transport_error(&e)));
                return;
            }
        };
        let status = response.status().as_u16();
        let body = response.into_body();
        if !(200..300).contains(&status) {
            let mut text = String::new();
            let _ = body
                .into_reader()
                .take(MAX_ERROR_BODY)
                .read_to_string(&mut text);
            let _ = lines.send(Err(self.status_error(status, &text)));
            return;
        }
        let mut reader = BufReader::new(body.into_reader());
        let mut buf = Vec::new();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            buf.clear();
            let read = (&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf);
            match read {
                Ok(0) => return,
                Ok(_) if buf.len() > MAX_LINE => {
                    let _ = lines.send(Err(self.error(format!(
                        "a streamed line from {} exceeds {MAX_LINE} bytes",
                        self.chat_url
                    ))));
                    return;
                }
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim().to_owned();
                    if line.is_empty() {
                        continue;
                    }
                    if lines.send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let reason = if e.kind() == std::io::ErrorKind::TimedOut {
                        format!(
                            "{} stopped streaming for longer than {:?}",
                            self.chat_url, self.options.timeout
                        )
                    } else {
                        format!("reading the stream from {} failed: {e}", self.chat_url)
                    };
                    let _ = lines.send(Err(self.error(reason)));
                    return;
                }
            }
        }
    }
}

/// The `tools` field: Ollama's function-tool list.
fn tools_json(tools: &[ToolSpec]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }
                })
            })
            .collect(),
    )
}

/// The `format` schema of a required call: `{"name": <tool>, "arguments": <its schema>}`, one
/// alternative per tool.
fn call_schema(tools: &[ToolSpec]) -> Value {
    let one = |t: &ToolSpec| {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [t.name]},
                "arguments": t.parameters,
            },
            "required": ["name", "arguments"],
        })
    };
    match tools {
        [single] => one(single),
        many => json!({"anyOf": many.iter().map(one).collect::<Vec<_>>()}),
    }
}

/// One line of the stream.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Chunk {
    message: Option<ChunkMessage>,
    done: bool,
    done_reason: Option<String>,
    error: Option<String>,
    total_duration: Option<u64>,
    prompt_eval_count: Option<u64>,
    prompt_eval_duration: Option<u64>,
    eval_count: Option<u64>,
}

/// The `message` of a chunk.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChunkMessage {
    content: Option<String>,
    tool_calls: Option<Vec<WireToolCall>>,
}

/// One entry of `message.tool_calls`.
#[derive(Debug, Deserialize)]
struct WireToolCall {
    function: WireFunction,
}

/// The function of a tool call.
#[derive(Debug, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

/// What has been read so far.
#[derive(Default)]
struct Progress {
    text: String,
    calls: Vec<(String, Value)>,
    first_token: Option<Duration>,
}

impl LlmBackend for OllamaBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerateOutput, LlmError> {
        let start = Instant::now();
        let mut progress = Progress::default();
        if req.cancel.is_cancelled() {
            return Ok(cancelled(progress, start));
        }
        if !req.temperature.is_finite() || req.temperature < 0.0 {
            return Err(self.error(format!(
                "temperature must be a finite number of at least 0, not {}",
                req.temperature
            )));
        }
        if let Some(e) = req.repeat_penalty_error() {
            return Err(self.error(e));
        }
        let body = self.request_body(req).to_string();
        let stream_visible = !matches!(req.tools, ToolMode::Required(_));
        let (tx, rx) = mpsc::sync_channel(LINE_BUFFER);
        // The helper owns a clone of the client, so a cancelled caller returns at once; the
        // helper drops the connection after its next read. It watches a child of the request's
        // token, which the guard below also fires whenever this call returns (without touching
        // the caller's token).
        let cancel = req.cancel.child_token();
        let guard = cancel.clone().drop_guard();
        let client = self.clone();
        let helper = std::thread::Builder::new()
            .name("ollama-stream".into())
            .spawn(move || client.exchange(body, &cancel, &tx));
        if let Err(e) = helper {
            return Err(self.error(format!("cannot start the stream reader thread: {e}")));
        }
        let result = self.read_stream(req, &rx, &mut progress, stream_visible, on_text, start);
        drop(guard);
        result.map(|final_chunk| match final_chunk {
            Some(chunk) => finish(req, progress, chunk, start),
            None => cancelled(progress, start),
        })
    }
}

impl OllamaBackend {
    /// Reads lines until the final one (returned), cancellation (`None`) or an error.
    fn read_stream(
        &self,
        req: &GenerateRequest,
        rx: &mpsc::Receiver<Result<String, LlmError>>,
        progress: &mut Progress,
        stream_visible: bool,
        on_text: &mut dyn FnMut(&str),
        start: Instant,
    ) -> Result<Option<Chunk>, LlmError> {
        loop {
            if req.cancel.is_cancelled() {
                return Ok(None);
            }
            let line = match rx.recv_timeout(CANCEL_POLL) {
                Ok(line) => line?,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    if req.cancel.is_cancelled() {
                        return Ok(None);
                    }
                    return Err(self.error(format!(
                        "{} closed the stream before the final (\"done\": true) object",
                        self.chat_url
                    )));
                }
            };
            let mut chunk: Chunk = serde_json::from_str(&line).map_err(|e| {
                let shown: String = line.chars().take(200).collect();
                self.error(format!(
                    "unreadable line from {} ({e}): {shown}",
                    self.chat_url
                ))
            })?;
            if let Some(message) = chunk.error.take() {
                return Err(self.error(format!("model {:?} failed: {message}", self.options.model)));
            }
            if let Some(message) = chunk.message.take() {
                let content = message.content.unwrap_or_default();
                let calls = message.tool_calls.unwrap_or_default();
                if !content.is_empty() || !calls.is_empty() {
                    progress.first_token.get_or_insert_with(|| start.elapsed());
                }
                if !content.is_empty() {
                    if stream_visible {
                        on_text(&content);
                    }
                    progress.text.push_str(&content);
                }
                progress.calls.extend(
                    calls
                        .into_iter()
                        .map(|c| (c.function.name, c.function.arguments)),
                );
            }
            if chunk.done {
                return Ok(Some(chunk));
            }
        }
    }
}

/// The output of a cancelled request: what was read so far.
fn cancelled(progress: Progress, start: Instant) -> GenerateOutput {
    GenerateOutput {
        text: progress.text,
        tool_call: None,
        finish: FinishReason::Cancelled,
        stats: GenerateStats {
            first_token: progress.first_token.unwrap_or_default(),
            total: start.elapsed(),
            ..GenerateStats::default()
        },
    }
}

/// The output of a completed stream whose final object is `last`.
fn finish(
    req: &GenerateRequest,
    progress: Progress,
    last: Chunk,
    start: Instant,
) -> GenerateOutput {
    let tools: &[ToolSpec] = match &req.tools {
        ToolMode::None => &[],
        ToolMode::Auto(t) | ToolMode::Required(t) => t,
    };
    let nanos = |n: Option<u64>| Duration::from_nanos(n.unwrap_or(0));
    let stats = GenerateStats {
        prompt_tokens: last.prompt_eval_count.unwrap_or(0) as usize,
        cached_tokens: 0,
        generated_tokens: last.eval_count.unwrap_or(0) as usize,
        prefill: nanos(last.prompt_eval_duration),
        first_token: progress.first_token.unwrap_or_default(),
        total: last
            .total_duration
            .map(Duration::from_nanos)
            .unwrap_or_else(|| start.elapsed()),
    };
    let finish = match last.done_reason.as_deref() {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    };
    // A call comes as `tool_calls`, or (format-constrained, in Required mode) as JSON text.
    let (raw, candidate) = if let Some((name, arguments)) = progress.calls.into_iter().next() {
        let raw = json!({"name": name, "arguments": arguments}).to_string();
        (raw, Some((name, arguments)))
    } else if matches!(req.tools, ToolMode::Required(_)) {
        let parsed = serde_json::from_str::<Value>(progress.text.trim())
            .ok()
            .and_then(|v| match v {
                Value::Object(mut o) => {
                    let name = o.remove("name")?.as_str()?.to_owned();
                    Some((name, o.remove("arguments").unwrap_or(Value::Null)))
                }
                _ => None,
            });
        (progress.text, parsed)
    } else {
        (progress.text, None)
    };
    let tool_call = candidate.and_then(|(name, arguments)| {
        match validate_call(tools, &name, &arguments) {
            Ok(()) => Some(ToolCall { name, arguments }),
            Err(why) => {
                tracing::warn!(backend = NAME, tool = %name, "ignoring an invalid tool call: {why}");
                None
            }
        }
    });
    let finish = if tool_call.is_some() {
        FinishReason::ToolCall
    } else {
        finish
    };
    GenerateOutput {
        text: raw,
        tool_call,
        finish,
        stats,
    }
}

/// Checks a call against the offered tools: a known name and arguments valid for its schema.
fn validate_call(tools: &[ToolSpec], name: &str, arguments: &Value) -> Result<(), String> {
    let tool = tools
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("tool {name:?} was not offered"))?;
    validate_arguments(&tool.parameters, arguments)
}

/// Checks `args` against the schema subset described on [`ToolSpec`]: an object with
/// `properties` of type string (optionally `enum`), integer, number or boolean, and `required`.
fn validate_arguments(schema: &Value, args: &Value) -> Result<(), String> {
    let args = args
        .as_object()
        .ok_or_else(|| format!("arguments must be a JSON object, not {args}"))?;
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !args.contains_key(key) {
                return Err(format!("required argument {key:?} is missing"));
            }
        }
    }
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (key, value) in args {
        let Some(spec) = properties.get(key) else {
            if closed {
                return Err(format!("argument {key:?} is not in the schema"));
            }
            continue;
        };
        let expected = spec.get("type").and_then(Value::as_str).unwrap_or("");
        let ok = match expected {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "" => true,
            other => return Err(format!("argument {key:?} has unsupported type {other:?}")),
        };
        if !ok {
            return Err(format!("argument {key:?} must be {expected}, got {value}"));
        }
        if let Some(allowed) = spec.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                return Err(format!(
                    "argument {key:?} = {value} is not one of {allowed:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "minutes": {"type": "integer"},
                "loud": {"type": "boolean"},
                "level": {"type": "number"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["text", "minutes"],
        })
    }

    #[test]
    fn arguments_are_checked_against_the_schema_subset() {
        let cases: &[(Value, bool)] = &[
            (json!({"text": "tea", "minutes": 5}), true),
            (
                json!({"text": "tea", "minutes": 5, "loud": true, "level": 0.5}),
                true,
            ),
            (
                json!({"text": "tea", "minutes": 5, "unit": "celsius"}),
                true,
            ),
            (json!({"text": "tea", "minutes": 5, "extra": 1}), true),
            (json!({"text": "tea"}), false),
            (json!({"text": "tea", "minutes": "5"}), false),
            (json!({"text": "tea", "minutes": 5.5}), false),
            (json!({"text": 1, "minutes": 5}), false),
            (json!({"text": "tea", "minutes": 5, "loud": "yes"}), false),
            (json!({"text": "tea", "minutes": 5, "level": "high"}), false),
            (
                json!({"text": "tea", "minutes": 5, "unit": "kelvin"}),
                false,
            ),
            (json!(["tea", 5]), false),
        ];
        for (args, valid) in cases {
            assert_eq!(
                validate_arguments(&schema(), args).is_ok(),
                *valid,
                "{args}"
            );
        }
    }

    #[test]
    fn closed_schemas_reject_unknown_arguments() {
        let mut closed = schema();
        closed["additionalProperties"] = json!(false);
        let err =
            validate_arguments(&closed, &json!({"text": "a", "minutes": 1, "x": 1})).unwrap_err();
        assert!(err.contains("\"x\""), "{err}");
    }
}
