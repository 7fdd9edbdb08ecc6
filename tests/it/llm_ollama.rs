//! The Ollama backend against a local fake Ollama server that checks the `/api/chat` request
//! the way Ollama reads it and streams newline-delimited JSON shaped like Ollama's own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use local_assistant::nlu::llm::ollama::{KeepAlive, OllamaBackend, OllamaOptions};
use local_assistant::nlu::llm::worker::{LlmEvent, LlmService, WorkerOptions};
use local_assistant::nlu::llm::{
    ChatMessage, FinishReason, GenerateOutput, GenerateRequest, LlmBackend, LlmError, Priority,
    Role, ToolMode, ToolSpec,
};

// ---- the fake server -------------------------------------------------------------------------

/// `/api/chat`'s body as Ollama reads it (unknown fields are a test failure here).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    model: String,
    messages: Vec<WireMessage>,
    stream: Option<bool>,
    options: Option<serde_json::Map<String, Value>>,
    keep_alive: Option<Value>,
    tools: Option<Vec<WireTool>>,
    format: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    role: String,
    content: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireTool {
    #[serde(rename = "type")]
    kind: String,
    function: WireFunction,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFunction {
    name: String,
    description: String,
    parameters: Value,
}

/// What the fake answers.
#[derive(Clone)]
enum Script {
    /// 200 with these lines, `delay` before each.
    Stream { lines: Vec<String>, delay: Duration },
    /// This status with this JSON body.
    Status(StatusCode, Value),
}

#[derive(Clone)]
struct Fake {
    script: Script,
    requests: Arc<Mutex<Vec<WireRequest>>>,
    sent: Arc<AtomicUsize>,
    completed: Arc<AtomicBool>,
    disconnected: Arc<AtomicBool>,
}

/// Marks the response stream as abandoned by the client when dropped before its end.
struct StreamGuard {
    completed: Arc<AtomicBool>,
    disconnected: Arc<AtomicBool>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.completed.load(Ordering::SeqCst) {
            self.disconnected.store(true, Ordering::SeqCst);
        }
    }
}

async fn chat(State(fake): State<Fake>, Json(req): Json<WireRequest>) -> Response {
    fake.requests.lock().unwrap().push(req);
    match fake.script.clone() {
        Script::Status(status, body) => (status, Json(body)).into_response(),
        Script::Stream { lines, delay } => {
            let guard = StreamGuard {
                completed: fake.completed.clone(),
                disconnected: fake.disconnected.clone(),
            };
            let sent = fake.sent.clone();
            let stream = futures_util::stream::unfold(
                (lines.into_iter(), guard),
                move |(mut lines, guard)| {
                    let sent = sent.clone();
                    async move {
                        let line = lines.next()?;
                        tokio::time::sleep(delay).await;
                        sent.fetch_add(1, Ordering::SeqCst);
                        if lines.len() == 0 {
                            guard.completed.store(true, Ordering::SeqCst);
                        }
                        Some((
                            Ok::<_, std::convert::Infallible>(format!("{line}\n")),
                            (lines, guard),
                        ))
                    }
                },
            );
            Response::builder()
                .header(header::CONTENT_TYPE, "application/x-ndjson")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

impl Fake {
    async fn start(script: Script) -> (Self, SocketAddr) {
        let fake = Fake {
            script,
            requests: Arc::default(),
            sent: Arc::default(),
            completed: Arc::default(),
            disconnected: Arc::default(),
        };
        let app = Router::new()
            .route("/api/chat", post(chat))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (fake, addr)
    }

    fn request(&self) -> WireRequest {
        let requests = self.requests.lock().unwrap();
        assert_eq!(requests.len(), 1, "expected exactly one request");
        requests[0].clone()
    }
}

// ---- Ollama-shaped lines ---------------------------------------------------------------------

const MODEL: &str = "llama3.2";

fn piece(content: &str) -> String {
    json!({
        "model": MODEL,
        "created_at": "2023-08-04T08:52:19.385406455-07:00",
        "message": {"role": "assistant", "content": content},
        "done": false
    })
    .to_string()
}

fn tool_calls_piece(calls: Value) -> String {
    json!({
        "model": MODEL,
        "created_at": "2025-05-27T22:54:57.641643Z",
        "message": {"role": "assistant", "content": "", "tool_calls": calls},
        "done": false
    })
    .to_string()
}

fn done(reason: &str) -> String {
    json!({
        "model": MODEL,
        "created_at": "2023-08-04T19:22:45.499127Z",
        "message": {"role": "assistant", "content": ""},
        "done_reason": reason,
        "done": true,
        "total_duration": 4_883_583_458u64,
        "load_duration": 1_334_875u64,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342_546_000u64,
        "eval_count": 4,
        "eval_duration": 4_535_599_000u64
    })
    .to_string()
}

fn stream(lines: Vec<String>) -> Script {
    Script::Stream {
        lines,
        delay: Duration::from_millis(1),
    }
}

// ---- helpers ---------------------------------------------------------------------------------

fn backend(addr: SocketAddr) -> OllamaBackend {
    OllamaBackend::new(OllamaOptions {
        base_url: format!("http://{addr}"),
        model: MODEL.into(),
        timeout: Duration::from_secs(10),
        keep_alive: Some(KeepAlive::For(Duration::from_secs(300))),
        num_ctx: Some(2048),
        ..OllamaOptions::default()
    })
    .unwrap()
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(Role::System, "You are a helpful home assistant."),
        ChatMessage::new(Role::User, "Why is the sky blue?"),
    ]
}

fn reminder_tool() -> ToolSpec {
    ToolSpec {
        name: "reminder_set".into(),
        description: "Set a reminder".into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "minutes": {"type": "integer"},
            },
            "required": ["text", "minutes"],
        }),
    }
}

fn timer_tool() -> ToolSpec {
    ToolSpec {
        name: "timer_start".into(),
        description: "Start a timer".into(),
        parameters: json!({
            "type": "object",
            "properties": {"seconds": {"type": "integer"}},
            "required": ["seconds"],
        }),
    }
}

/// Runs `generate` off the runtime, returning the result and the pieces given to `on_text`.
async fn generate(
    backend: OllamaBackend,
    req: GenerateRequest,
) -> (Result<GenerateOutput, LlmError>, Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let mut pieces = Vec::new();
        let result = backend.generate(&req, &mut |p| pieces.push(p.to_owned()));
        (result, pieces)
    })
    .await
    .unwrap()
}

fn backend_reason(result: Result<GenerateOutput, LlmError>) -> String {
    match result {
        Err(LlmError::Backend { backend, reason }) => {
            assert_eq!(backend, "ollama");
            reason
        }
        other => panic!("expected an Ollama backend error, got {other:?}"),
    }
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_reaches_on_text_piece_by_piece_from_an_ollama_shaped_request() {
    let (fake, addr) = Fake::start(stream(vec![
        piece("The"),
        piece(" sky"),
        piece(" is"),
        piece(" blue."),
        done("stop"),
    ]))
    .await;
    let mut req = GenerateRequest::new(conversation());
    req.temperature = 0.7;
    req.repeat_penalty = 1.15;
    req.seed = 42;
    req.max_tokens = 64;
    req.stop = vec!["\nUser:".into()];
    let started = Instant::now();
    let (result, pieces) = generate(backend(addr), req).await;
    let elapsed = started.elapsed();
    let out = result.unwrap();
    assert_eq!(pieces, ["The", " sky", " is", " blue."]);
    assert_eq!(out.text, "The sky is blue.");
    assert_eq!(out.finish, FinishReason::Stop);
    assert_eq!(out.tool_call, None);

    let sent = fake.request();
    assert_eq!(sent.model, MODEL);
    assert_eq!(sent.stream, Some(true));
    let roles: Vec<_> = sent.messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user"]);
    assert_eq!(sent.messages[1].content, "Why is the sky blue?");
    assert_eq!(
        Value::Object(sent.options.unwrap()),
        json!({"temperature": 0.7, "repeat_penalty": 1.15, "repeat_last_n": 64, "seed": 42,
               "num_predict": 64, "stop": ["\nUser:"], "num_ctx": 2048})
    );
    assert_eq!(sent.keep_alive, Some(json!(300)));
    assert!(sent.tools.is_none() && sent.format.is_none());

    // Stats come from the final object (durations in nanoseconds) and the measured first piece.
    assert_eq!(out.stats.prompt_tokens, 26);
    assert_eq!(out.stats.generated_tokens, 4);
    assert_eq!(out.stats.cached_tokens, 0);
    assert_eq!(out.stats.prefill, Duration::from_nanos(342_546_000));
    assert_eq!(out.stats.total, Duration::from_nanos(4_883_583_458));
    assert!(out.stats.first_token > Duration::ZERO && out.stats.first_token <= elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_reason_length_maps_to_length_and_defaults_are_left_to_ollama() {
    let (fake, addr) = Fake::start(stream(vec![piece("Once upon"), done("length")])).await;
    let backend = OllamaBackend::new(OllamaOptions {
        base_url: format!("http://{addr}/"),
        model: MODEL.into(),
        ..OllamaOptions::default()
    })
    .unwrap();
    let (result, _) = generate(backend, GenerateRequest::new(conversation())).await;
    assert_eq!(result.unwrap().finish, FinishReason::Length);
    let sent = fake.request();
    assert_eq!(sent.keep_alive, None);
    let options = sent.options.unwrap();
    assert!(!options.contains_key("num_ctx") && !options.contains_key("stop"));
    assert_eq!(options["temperature"], json!(0.0));
    // No penalty is sent as 1 (Ollama's own default would be 1.1).
    assert_eq!(options["repeat_penalty"], json!(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_tool_call_is_returned_and_the_tools_are_offered_in_ollama_format() {
    let (fake, addr) = Fake::start(stream(vec![
        tool_calls_piece(json!([{"function": {
            "name": "reminder_set",
            "arguments": {"text": "take the bread out", "minutes": 10}
        }}])),
        done("stop"),
    ]))
    .await;
    let mut req = GenerateRequest::new(conversation());
    req.tools = ToolMode::Auto(vec![reminder_tool(), timer_tool()]);
    let (result, pieces) = generate(backend(addr), req).await;
    let out = result.unwrap();
    assert!(pieces.is_empty());
    assert_eq!(out.finish, FinishReason::ToolCall);
    let call = out.tool_call.unwrap();
    assert_eq!(call.name, "reminder_set");
    assert_eq!(
        call.arguments,
        json!({"text": "take the bread out", "minutes": 10})
    );
    let raw: Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(raw["name"], "reminder_set");

    let sent = fake.request();
    let tools = sent.tools.unwrap();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0].kind, "function");
    assert_eq!(tools[0].function.name, "reminder_set");
    assert_eq!(tools[0].function.description, "Set a reminder");
    assert_eq!(tools[0].function.parameters, reminder_tool().parameters);
    assert_eq!(tools[1].function.name, "timer_start");
    assert!(sent.format.is_none(), "Auto mode must not force a format");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tools_and_bad_arguments_yield_no_tool_call() {
    let bad_calls = [
        json!({"name": "door_unlock", "arguments": {"door": "front"}}),
        json!({"name": "reminder_set", "arguments": {"text": "tea"}}),
        json!({"name": "reminder_set", "arguments": {"text": "tea", "minutes": "ten"}}),
        json!({"name": "reminder_set", "arguments": "text=tea"}),
    ];
    for call in bad_calls {
        let (_fake, addr) = Fake::start(stream(vec![
            tool_calls_piece(json!([{"function": call}])),
            done("stop"),
        ]))
        .await;
        let mut req = GenerateRequest::new(conversation());
        req.tools = ToolMode::Auto(vec![reminder_tool()]);
        let out = generate(backend(addr), req).await.0.unwrap();
        assert_eq!(out.tool_call, None, "accepted {call}");
        assert_eq!(out.finish, FinishReason::Stop, "{call}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_mode_constrains_the_format_and_reads_the_call_from_the_json_text() {
    let (fake, addr) = Fake::start(stream(vec![
        piece("{\"name\": \"timer_start\", "),
        piece("\"arguments\": {\"seconds\": 90}}"),
        done("stop"),
    ]))
    .await;
    let mut req = GenerateRequest::new(conversation());
    req.tools = ToolMode::Required(vec![reminder_tool(), timer_tool()]);
    let (result, pieces) = generate(backend(addr), req).await;
    let out = result.unwrap();
    assert!(
        pieces.is_empty(),
        "tool-call JSON is not visible text: {pieces:?}"
    );
    assert_eq!(out.finish, FinishReason::ToolCall);
    assert_eq!(out.tool_call.unwrap().arguments, json!({"seconds": 90}));

    let sent = fake.request();
    assert_eq!(sent.tools.unwrap().len(), 2);
    let format = sent.format.expect("Required mode sends a format schema");
    let alternatives = format["anyOf"].as_array().unwrap();
    assert_eq!(alternatives.len(), 2);
    assert_eq!(
        alternatives[1]["properties"]["name"]["enum"],
        json!(["timer_start"])
    );
    assert_eq!(
        alternatives[1]["properties"]["arguments"],
        timer_tool().parameters
    );
    assert_eq!(alternatives[1]["required"], json!(["name", "arguments"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_line_mid_stream_is_a_backend_error_with_ollamas_message() {
    let (_fake, addr) = Fake::start(stream(vec![
        piece("The"),
        json!({"error": "an error was encountered while running the model: unexpected EOF"})
            .to_string(),
    ]))
    .await;
    let (result, pieces) = generate(backend(addr), GenerateRequest::new(conversation())).await;
    assert_eq!(pieces, ["The"]);
    let reason = backend_reason(result);
    assert!(reason.contains("unexpected EOF"), "{reason}");
    assert!(reason.contains(MODEL), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_says_to_pull_it() {
    let (_fake, addr) = Fake::start(Script::Status(
        StatusCode::NOT_FOUND,
        json!({"error": format!("model \"{MODEL}\" not found, try pulling it first")}),
    ))
    .await;
    let reason = backend_reason(
        generate(backend(addr), GenerateRequest::new(conversation()))
            .await
            .0,
    );
    assert!(reason.contains(&format!("ollama pull {MODEL}")), "{reason}");
    assert!(
        reason.contains("not found, try pulling it first"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_names_the_status_and_ollamas_message() {
    let (_fake, addr) = Fake::start(Script::Status(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": "server busy, please try again.  maximum pending requests exceeded"}),
    ))
    .await;
    let reason = backend_reason(
        generate(backend(addr), GenerateRequest::new(conversation()))
            .await
            .0,
    );
    assert!(reason.contains("503"), "{reason}");
    assert!(
        reason.contains("maximum pending requests exceeded"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_names_the_url() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let reason = backend_reason(
        generate(backend(addr), GenerateRequest::new(conversation()))
            .await
            .0,
    );
    assert!(reason.contains(&format!("http://{addr}")), "{reason}");
    assert!(reason.contains("refused"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_mid_stream_returns_cancelled_and_drops_the_connection() {
    let mut lines: Vec<String> = (0..100).map(|i| piece(&format!(" w{i}"))).collect();
    lines.push(done("stop"));
    let (fake, addr) = Fake::start(Script::Stream {
        lines,
        delay: Duration::from_millis(100),
    })
    .await;
    let req = GenerateRequest::new(conversation());
    let cancel = req.cancel.clone();
    let backend = backend(addr);
    let (result, pieces, returned_after_cancel) = tokio::task::spawn_blocking(move || {
        let mut pieces = Vec::new();
        let mut cancelled_at = None;
        let result = backend.generate(&req, &mut |p| {
            pieces.push(p.to_owned());
            if pieces.len() == 2 {
                cancel.cancel();
                cancelled_at = Some(Instant::now());
            }
        });
        (result, pieces, cancelled_at.map(|t| t.elapsed()))
    })
    .await
    .unwrap();
    let out = result.unwrap();
    assert_eq!(out.finish, FinishReason::Cancelled);
    assert_eq!(pieces, [" w0", " w1"]);
    assert_eq!(out.text, " w0 w1");
    println!("generate returned {returned_after_cancel:?} after the cancel");
    // The server notices the client is gone long before it would have finished (10 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.disconnected.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the server never saw the client leave"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!fake.completed.load(Ordering::SeqCst));
    assert!(fake.sent.load(Ordering::SeqCst) < 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_truncated_streams_are_errors_not_answers() {
    let (_fake, addr) = Fake::start(stream(vec![piece("Hi"), "<html>oops</html>".into()])).await;
    let reason = backend_reason(
        generate(backend(addr), GenerateRequest::new(conversation()))
            .await
            .0,
    );
    assert!(
        reason.contains("unreadable line") && reason.contains("<html>"),
        "{reason}"
    );

    let (_fake, addr) = Fake::start(stream(vec![piece("Hi"), piece(" there")])).await;
    let reason = backend_reason(
        generate(backend(addr), GenerateRequest::new(conversation()))
            .await
            .0,
    );
    assert!(reason.contains("before the final"), "{reason}");
}

#[test]
fn bad_options_are_refused_with_a_reason() {
    let cases = [
        (
            OllamaOptions {
                base_url: "127.0.0.1:11434".into(),
                model: MODEL.into(),
                ..OllamaOptions::default()
            },
            "http://",
        ),
        (
            OllamaOptions {
                model: " ".into(),
                ..OllamaOptions::default()
            },
            "no model",
        ),
        (
            OllamaOptions {
                model: MODEL.into(),
                timeout: Duration::ZERO,
                ..OllamaOptions::default()
            },
            "greater than zero",
        ),
    ];
    for (options, expected) in cases {
        let err = OllamaBackend::new(options).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_finite_temperature_is_refused_before_contacting_the_server() {
    let (fake, addr) = Fake::start(stream(vec![done("stop")])).await;
    let mut req = GenerateRequest::new(conversation());
    req.temperature = f32::NAN;
    let reason = backend_reason(generate(backend(addr), req).await.0);
    assert!(reason.contains("temperature"), "{reason}");
    assert!(fake.requests.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_streams_ollama_pieces_to_an_async_caller() {
    let (_fake, addr) =
        Fake::start(stream(vec![piece("Hello"), piece(", world"), done("stop")])).await;
    let svc = LlmService::start(Arc::new(backend(addr)), WorkerOptions::default()).unwrap();
    let mut req = GenerateRequest::new(conversation());
    req.priority = Priority::LiveCall;
    let mut g = svc.submit(req).await.unwrap();
    let mut pieces = Vec::new();
    let out = loop {
        match g.recv().await.unwrap() {
            LlmEvent::Text(t) => pieces.push(t),
            LlmEvent::Done(r) => break r.unwrap(),
        }
    };
    assert_eq!(pieces, ["Hello", ", world"]);
    assert_eq!(out.text, "Hello, world");
    assert_eq!(svc.stats().completed, 1);
}
