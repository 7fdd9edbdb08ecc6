//! The candle LLM engine on the real SmolLM2-135M-Instruct GGUF: tokenizer against reference
//! ids, streaming, stops, cancellation, KV-cache reuse, constrained tool calls, requantizing.
//!
//! The model is the one the appliance runs: `SmolLM2-135M-Instruct.Q4_1.q8_0.gguf`, which
//! `make models` requantizes from the Q4_1 download into `data/models/smollm2-135m-instruct/`
//! under the crate, or `$LOCAL_ASSISTANT_TEST_LLM`; without it every test fails with a message
//! saying so. The requantizer test starts from the Q4_1 download itself.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use local_assistant::nlu::llm::candle::{requantize_gguf, CandleBackend, CandleOptions};
use local_assistant::nlu::llm::{
    ChatMessage, FinishReason, GenerateRequest, LlmBackend, Priority, Role, ToolMode, ToolSpec,
};
use serde_json::json;

fn installed(file: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data/models/smollm2-135m-instruct")
        .join(file);
    assert!(
        path.is_file(),
        "LLM test model {} is missing: run `make models` (or set LOCAL_ASSISTANT_TEST_LLM)",
        path.display()
    );
    path
}

/// The model the engine runs (what `models path smollm2-135m-instruct` prints).
fn model_path() -> PathBuf {
    std::env::var_os("LOCAL_ASSISTANT_TEST_LLM")
        .map(PathBuf::from)
        .unwrap_or_else(|| installed("SmolLM2-135M-Instruct.Q4_1.q8_0.gguf"))
}

/// The Q4_1 file as downloaded.
fn source_model() -> PathBuf {
    installed("SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn opts() -> CandleOptions {
    CandleOptions {
        threads: 1,
        context_tokens: 1024,
        ..CandleOptions::default()
    }
}

/// One shared engine (loading takes a moment); tests use distinct session keys.
fn engine() -> Arc<CandleBackend> {
    static ENGINE: OnceLock<Arc<CandleBackend>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(CandleBackend::load(&model_path(), opts()).expect("load model")))
        .clone()
}

fn chat(user: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(
            Role::System,
            "You are a helpful home assistant. Answer briefly.",
        ),
        ChatMessage::new(Role::User, user),
    ]
}

#[test]
fn tokenizer_matches_reference_ids_on_tricky_strings() {
    // Expected ids come from an independent implementation: Hugging Face `tokenizers` (Python)
    // built from this GGUF's vocab + merges (read with the `gguf` package) with
    // pre_tokenizer = Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)]
    // and the control tokens (token_type 3) added as special tokens.
    let cases: &[(&str, &[u32])] = &[
        ("2026", &[34, 32, 34, 38]),
        ("  leading spaces", &[216, 2899, 5600]),
        (
            "héllo 👋 wörld",
            &[88, 2756, 31394, 15107, 235, 229, 267, 29989, 400],
        ),
        (
            "<|im_start|>user\nWhat time is it?<|im_end|>\n",
            &[1, 4093, 198, 1780, 655, 314, 357, 47, 2, 198],
        ),
        (
            "don't stop: 12.5% of $1,000!!",
            &[
                12420, 982, 2853, 42, 216, 33, 34, 30, 37, 21, 282, 1885, 33, 28, 32, 32, 32, 10095,
            ],
        ),
        (
            "tabs\tand\n\nnewlines   ",
            &[100, 7366, 197, 397, 198, 198, 2241, 5110, 333],
        ),
        (
            "日本語のテキスト",
            &[
                23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100,
                226,
            ],
        ),
    ];
    let e = engine();
    let tok = e.tokenizer();
    for (text, ids) in cases {
        assert_eq!(&tok.encode(text), ids, "encoding {text:?}");
        assert_eq!(
            &tok.decode(ids),
            &text.replace("<|im_start|>", "").replace("<|im_end|>", "")
        );
    }
    assert!(tok.is_control(2), "<|im_end|> is a control token");
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
}

#[test]
fn answer_is_streamed_in_pieces_that_add_up_to_the_text() {
    let e = engine();
    let mut req = GenerateRequest::new(chat("What is the capital of France?"));
    req.max_tokens = 24;
    let mut pieces = Vec::new();
    let out = e
        .generate(&req, &mut |p| pieces.push(p.to_string()))
        .unwrap();
    assert!(
        pieces.len() >= 3,
        "only {} pieces: {pieces:?}",
        pieces.len()
    );
    assert_eq!(pieces.concat(), out.text);
    assert!(!out.text.trim().is_empty());
    assert!(out.text.contains("Paris"), "{:?}", out.text);
    assert!(matches!(
        out.finish,
        FinishReason::Stop | FinishReason::Length
    ));
    assert!(out.stats.prompt_tokens > 10);
    assert!(out.stats.generated_tokens > 0 && out.stats.generated_tokens <= 24);
    assert!(out.stats.first_token <= out.stats.total);
}

#[test]
fn generation_stops_at_max_tokens() {
    let e = engine();
    let mut req = GenerateRequest::new(chat("Write a long story about a dragon and a knight."));
    req.max_tokens = 5;
    let out = e.generate(&req, &mut |_| {}).unwrap();
    assert_eq!(out.finish, FinishReason::Length);
    assert_eq!(out.stats.generated_tokens, 5);
}

#[test]
fn stop_string_ends_generation_and_is_never_emitted() {
    let e = engine();
    let mut req = GenerateRequest::new(chat("Count from 1 to 20, separated by commas."));
    req.max_tokens = 48;
    let free = e.generate(&req, &mut |_| {}).unwrap();
    assert!(
        free.text.contains("5"),
        "reference answer lacks 5: {:?}",
        free.text
    );
    req.stop = vec!["5".into()];
    let mut streamed = String::new();
    let out = e.generate(&req, &mut |p| streamed.push_str(p)).unwrap();
    assert_eq!(out.finish, FinishReason::Stop);
    assert!(
        !out.text.contains('5') && !streamed.contains('5'),
        "{:?}",
        out.text
    );
    assert_eq!(streamed, out.text);
    assert!(free.text.starts_with(&out.text));
}

#[test]
fn cancelling_after_the_third_piece_stops_before_the_next_token() {
    let e = engine();
    let mut req = GenerateRequest::new(chat("Tell me about the history of Rome."));
    req.max_tokens = 32;
    let cancel = req.cancel.clone();
    let mut pieces = 0;
    let out = e
        .generate(&req, &mut |_| {
            pieces += 1;
            if pieces == 3 {
                cancel.cancel();
            }
        })
        .unwrap();
    assert_eq!(out.finish, FinishReason::Cancelled);
    assert_eq!(pieces, 3, "no piece after cancellation");
    assert!(out.stats.generated_tokens < 32);
}

#[test]
fn second_turn_reuses_the_session_cache_and_matches_a_cold_run() {
    let e = engine();
    let mut first = GenerateRequest::new(chat("Name a fruit."));
    first.session = Some("cache-test".into());
    first.max_tokens = 16;
    let a = e.generate(&first, &mut |_| {}).unwrap();

    let mut msgs = chat("Name a fruit.");
    msgs.push(ChatMessage::new(Role::Assistant, a.text.clone()));
    msgs.push(ChatMessage::new(Role::User, "And a vegetable?"));
    let mut second = GenerateRequest::new(msgs);
    second.session = Some("cache-test".into());
    second.max_tokens = 16;
    let warm = e.generate(&second, &mut |_| {}).unwrap();
    assert!(
        warm.stats.cached_tokens > a.stats.prompt_tokens,
        "cached {} of {} prompt tokens",
        warm.stats.cached_tokens,
        warm.stats.prompt_tokens
    );

    let cold_engine = CandleBackend::load(
        &model_path(),
        CandleOptions {
            kv_reuse: false,
            ..opts()
        },
    )
    .unwrap();
    let cold = cold_engine.generate(&second, &mut |_| {}).unwrap();
    assert_eq!(cold.stats.cached_tokens, 0);
    assert_eq!(
        warm.text, cold.text,
        "cached and cold greedy answers differ"
    );
    assert_eq!(warm.stats.prompt_tokens, cold.stats.prompt_tokens);
}

#[test]
fn a_prewarm_prefills_the_next_prompt_start_and_a_cancelled_one_keeps_nothing_wrong() {
    let e = engine();
    let session = Some("prewarm-test".to_string());
    // The history window has moved: the next prompt starts with other messages than the
    // session's last one, so without a pre-warm only the system prompt would be reused.
    let mut first = GenerateRequest::new(chat("Name a fruit."));
    first.session = session.clone();
    first.max_tokens = 8;
    e.generate(&first, &mut |_| {}).unwrap();
    let mut window = chat("What colour is the sky on a clear day?");
    window.push(ChatMessage::new(Role::Assistant, "It is blue."));
    window.push(ChatMessage::new(Role::User, "And the grass in spring?"));
    window.push(ChatMessage::new(Role::Assistant, "The grass is green."));

    // A cancelled Background request stops before its first chunk and leaves the session
    // usable.
    let mut cancelled = GenerateRequest::new(window.clone());
    cancelled.session = session.clone();
    cancelled.max_tokens = 0;
    cancelled.priority = Priority::Background;
    cancelled.cancel.cancel();
    let c = e.generate(&cancelled, &mut |_| {}).unwrap();
    assert_eq!(c.finish, FinishReason::Cancelled);
    assert_eq!(c.stats.generated_tokens, 0);

    let mut warm = GenerateRequest::new(window.clone());
    warm.session = session.clone();
    warm.max_tokens = 0;
    warm.priority = Priority::Background;
    let w = e.generate(&warm, &mut |_| {}).unwrap();
    assert_eq!(w.finish, FinishReason::Length);
    assert_eq!(w.stats.generated_tokens, 0);
    assert_eq!(w.text, "");

    let mut msgs = window;
    msgs.push(ChatMessage::new(Role::User, "And snow?"));
    let mut next = GenerateRequest::new(msgs);
    next.session = session;
    next.max_tokens = 8;
    let n = e.generate(&next, &mut |_| {}).unwrap();
    // All of the pre-warmed prompt but its closing "assistant" header is reused.
    assert!(
        n.stats.cached_tokens + 3 >= w.stats.prompt_tokens,
        "pre-warmed {} tokens, the next turn reused {} of {}",
        w.stats.prompt_tokens,
        n.stats.cached_tokens,
        n.stats.prompt_tokens
    );
    assert!(n.stats.prompt_tokens - n.stats.cached_tokens < 16);
}

/// When a conversation's oldest messages leave its history window, the session's cache drops
/// them and keeps the messages after them (their keys re-rotated for their new positions):
/// only the new question is prefilled, not the whole window again.
#[test]
fn a_moved_history_window_reuses_the_messages_that_stayed() {
    let e = engine();
    let session = Some("window-shift-test".to_string());
    let turns = [
        ("Name a fruit.", "An apple."),
        ("What colour is the sky on a clear day?", "It is blue."),
        ("And the grass in spring?", "The grass is green."),
        ("What do cows eat?", "Cows eat grass and hay."),
    ];
    let mut all = chat("Hello there.");
    all.push(ChatMessage::new(Role::Assistant, "Hello! How can I help?"));
    for (q, a) in turns {
        all.push(ChatMessage::new(Role::User, q));
        all.push(ChatMessage::new(Role::Assistant, a));
    }
    // The session has seen the whole conversation.
    let mut seen = GenerateRequest::new(all.clone());
    seen.session = session.clone();
    seen.max_tokens = 0;
    e.generate(&seen, &mut |_| {}).unwrap();

    // The window moves: the first two exchanges are gone, a question is added.
    let mut window = vec![all[0].clone()];
    window.extend(all[5..].iter().cloned());
    window.push(ChatMessage::new(Role::User, "And what do sheep eat?"));
    let mut next = GenerateRequest::new(window.clone());
    next.session = session;
    next.max_tokens = 12;
    let n = e.generate(&next, &mut |_| {}).unwrap();
    let prefilled = n.stats.prompt_tokens - n.stats.cached_tokens;
    // The new question and its chat markup: under 20 tokens (82 without the shift).
    assert!(
        prefilled < 20,
        "prefilled {prefilled} of {} prompt tokens",
        n.stats.prompt_tokens
    );
    assert!(!n.text.trim().is_empty(), "no answer after the shift");
}

/// The model alone (no engine, no cache policy), for a context of `ctx` tokens.
fn raw_model(ctx: usize) -> local_assistant::nlu::llm::candle::model::Model {
    use candle_core::quantized::gguf_file;
    let mut reader = std::io::BufReader::new(std::fs::File::open(model_path()).unwrap());
    let ct = gguf_file::Content::read(&mut reader).unwrap();
    local_assistant::nlu::llm::candle::model::Model::load(&ct, &mut reader, ctx).unwrap()
}

/// The largest absolute difference between two tensors of one shape.
fn max_abs_diff(a: candle_core::Tensor, b: candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The shift's arithmetic on the real model: after dropping tokens from a cache, the first
/// layer's keys and values (which depend on each token alone and its position) equal a fresh
/// prefill of the tokens that remain; deeper layers still carry the dropped context.
#[test]
fn dropped_tokens_leave_first_layer_keys_as_a_fresh_prefill_would() {
    use local_assistant::nlu::llm::candle::model::KvState;
    let model = raw_model(256);
    let tokens: Vec<u32> = (0..48u32).map(|i| 100 + i * 37).collect();
    let mut shifted = KvState::empty();
    model.forward(&tokens, &mut shifted).unwrap();
    model.drop_tokens(&mut shifted, 6, 17).unwrap();
    let kept: Vec<u32> = tokens[..6].iter().chain(&tokens[23..]).copied().collect();
    assert_eq!(shifted.tokens, kept);
    let mut fresh = KvState::empty();
    model.forward(&kept, &mut fresh).unwrap();
    let last = model.cfg.n_layer - 1;
    assert!(max_abs_diff(shifted.keys(0).unwrap(), fresh.keys(0).unwrap()) < 1e-3);
    assert!(max_abs_diff(shifted.values(0).unwrap(), fresh.values(0).unwrap()) < 1e-3);
    // Not a vacuous comparison: deeper down the dropped tokens are still felt.
    assert!(max_abs_diff(shifted.keys(last).unwrap(), fresh.keys(last).unwrap()) > 1e-2);
    // And the shifted cache goes on like any other.
    let logits = model.forward(&[tokens[0]], &mut shifted).unwrap();
    assert_eq!(logits.len(), model.vocab_size());
    assert!(logits.iter().all(|l| l.is_finite()));
}

/// A snapshot kept only to be forked again holds exactly its tokens (a system prompt of 200
/// tokens held 512 tokens' room before: 11 MB more per snapshot for SmolLM2); a fork that
/// will grow gets room, and both hold the same keys and values as the state they came from.
#[test]
fn kv_snapshots_hold_exactly_their_tokens() {
    use local_assistant::nlu::llm::candle::model::{KvState, KV_STEP};
    let model = raw_model(2048);
    let tokens: Vec<u32> = (0..40u32).map(|i| 200 + i * 11).collect();
    let mut state = KvState::empty();
    model.forward(&tokens, &mut state).unwrap();
    let (cfg, dev) = (&model.cfg, model.device());
    let snapshot = state.fork(cfg, dev, 30, 0).unwrap();
    assert_eq!(snapshot.capacity(), 30);
    assert_eq!(snapshot.tokens, tokens[..30]);
    let growing = snapshot.fork(cfg, dev, 30, KV_STEP).unwrap();
    assert_eq!(growing.capacity(), 30 + KV_STEP);
    let same = |a, b| max_abs_diff(a, b) == 0.0;
    for layer in [0, cfg.n_layer - 1] {
        let first30 = |t: candle_core::Tensor| t.narrow(2, 0, 30).unwrap();
        assert!(same(
            first30(state.keys(layer).unwrap()),
            growing.keys(layer).unwrap()
        ));
        assert!(same(
            first30(state.values(layer).unwrap()),
            growing.values(layer).unwrap()
        ));
    }
}

/// A pre-warm does not compute while speech work a person waits for is under way
/// (`platform::foreground`): held off for 600 ms and then cancelled, it has prefilled nothing,
/// exactly like a pre-warm cancelled before it began. Without the hold it would have prefilled
/// several 8-token chunks in that time.
#[test]
fn a_prewarm_waits_while_speech_work_is_under_way() {
    let e = engine();
    let mut window = chat("What colour is the sky on a clear day?");
    window.push(ChatMessage::new(Role::Assistant, "It is blue."));
    window.push(ChatMessage::new(Role::User, "And the grass in spring?"));
    window.push(ChatMessage::new(Role::Assistant, "The grass is green."));
    let request = |session: &str, priority: Priority, max_tokens: usize, msgs: Vec<ChatMessage>| {
        let mut r = GenerateRequest::new(msgs);
        r.session = Some(session.to_string());
        r.priority = priority;
        r.max_tokens = max_tokens;
        r
    };
    // What a session holds after a pre-warm of `window`, seen as the tokens the next
    // pre-warm of it reuses.
    let held_after = |session: &str, prewarm: &dyn Fn(GenerateRequest)| -> usize {
        let first = request(session, Priority::Message, 4, chat("Name a fruit."));
        e.generate(&first, &mut |_| {}).unwrap();
        prewarm(request(session, Priority::Background, 0, window.clone()));
        let again = request(session, Priority::Background, 0, window.clone());
        e.generate(&again, &mut |_| {}).unwrap().stats.cached_tokens
    };

    let never_began = held_after("prewarm-not-begun", &|r| {
        r.cancel.cancel();
        let out = e.generate(&r, &mut |_| {}).unwrap();
        assert_eq!(out.finish, FinishReason::Cancelled);
    });
    let held_off = held_after("prewarm-held-off", &|r| {
        let speech = local_assistant::platform::foreground::enter();
        let cancel = r.cancel.clone();
        let engine = Arc::clone(&e);
        let run = std::thread::spawn(move || engine.generate(&r, &mut |_| {}));
        std::thread::sleep(std::time::Duration::from_millis(600));
        cancel.cancel();
        let out = run.join().unwrap().unwrap();
        drop(speech);
        assert_eq!(out.finish, FinishReason::Cancelled);
    });
    assert_eq!(
        held_off, never_began,
        "the pre-warm prefilled while speech work was under way"
    );
}

#[test]
fn system_prompt_is_prefilled_once_for_different_requests() {
    // Its own engine: other tests running in parallel on the shared one would evict its
    // system-prompt snapshot from the small LRU.
    let e = CandleBackend::load(&model_path(), opts()).unwrap();
    let sys = "You are the kitchen assistant of the Miller family. Keep answers short.";
    let mk = |u: &str| {
        let mut r = GenerateRequest::new(vec![
            ChatMessage::new(Role::System, sys),
            ChatMessage::new(Role::User, u),
        ]);
        r.max_tokens = 4;
        r
    };
    let a = e.generate(&mk("Hello!"), &mut |_| {}).unwrap();
    let b = e.generate(&mk("What can you cook?"), &mut |_| {}).unwrap();
    // The first request may share a few leading tokens ("<|im_start|>system\nYou are") with
    // other tests' system prompts; the second must reuse this whole system prompt.
    assert!(
        b.stats.cached_tokens >= a.stats.cached_tokens + 15,
        "system prompt not reused: {} then {} cached",
        a.stats.cached_tokens,
        b.stats.cached_tokens
    );
}

fn reminder_tool() -> ToolSpec {
    ToolSpec {
        name: "reminder_set".into(),
        description: "Set a reminder to do something in some minutes".into(),
        parameters: json!({"type": "object", "properties": {
            "what": {"type": "string"}, "minutes": {"type": "integer"}},
            "required": ["what", "minutes"]}),
    }
}

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "weather_get".into(),
        description: "Get the weather forecast for a day".into(),
        parameters: json!({"type": "object", "properties": {
            "day": {"type": "string", "enum": ["today", "tomorrow"]}},
            "required": ["day"]}),
    }
}

#[test]
fn required_tool_call_is_schema_valid_json() {
    let e = engine();
    let tools = vec![reminder_tool(), weather_tool()];
    let mut req = GenerateRequest::new(chat("remind me to call mom in 10 minutes"));
    req.tools = ToolMode::Required(tools.clone());
    req.max_tokens = 48;
    let mut pieces = 0;
    let out = e.generate(&req, &mut |_| pieces += 1).unwrap();
    let call = out
        .tool_call
        .unwrap_or_else(|| panic!("no valid tool call in {:?}", out.text));
    assert_eq!(out.finish, FinishReason::ToolCall);
    assert_eq!(pieces, 0, "tool-call JSON is not streamed as text");
    let tool = tools.iter().find(|t| t.name == call.name).unwrap();
    local_assistant::nlu::llm::constrain::validate_arguments(&tool.parameters, &call.arguments)
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(parsed["name"], json!(call.name));
}

#[test]
fn auto_tool_mode_answers_chit_chat_with_text() {
    let e = engine();
    let mut req = GenerateRequest::new(chat("Hi! How are you today?"));
    req.tools = ToolMode::Auto(vec![weather_tool()]);
    req.max_tokens = 16;
    let mut streamed = String::new();
    let out = e.generate(&req, &mut |p| streamed.push_str(p)).unwrap();
    if out.tool_call.is_none() {
        assert_eq!(streamed, out.text);
    } else {
        assert_eq!(out.finish, FinishReason::ToolCall);
    }
}

#[test]
fn prompt_longer_than_the_context_drops_old_turns_then_overflows() {
    let e = engine();
    let filler = "blah ".repeat(300);
    let mut msgs = vec![ChatMessage::new(Role::System, "Be brief.")];
    for _ in 0..3 {
        msgs.push(ChatMessage::new(Role::User, filler.clone()));
        msgs.push(ChatMessage::new(Role::Assistant, "ok"));
    }
    msgs.push(ChatMessage::new(Role::User, "Say hi."));
    let mut req = GenerateRequest::new(msgs);
    req.max_tokens = 4;
    let out = e.generate(&req, &mut |_| {}).unwrap();
    assert!(
        out.stats.prompt_tokens + 4 <= 1024,
        "{}",
        out.stats.prompt_tokens
    );

    let mut huge = GenerateRequest::new(chat(&"word ".repeat(1500)));
    huge.max_tokens = 4;
    let err = e.generate(&huge, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[test]
fn loading_a_file_that_is_not_gguf_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"not a model").unwrap();
    let err = CandleBackend::load(&bad, opts()).err().unwrap().to_string();
    assert!(err.contains("bad.gguf") && err.contains("GGUF"), "{err}");
    let missing = dir.path().join("missing.gguf");
    let err = CandleBackend::load(&missing, opts())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing.gguf"), "{err}");
}

#[test]
fn requantized_q8_0_model_loads_and_answers_alike() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("q8.gguf");
    requantize_gguf(&source_model(), &dst, "q8_0").unwrap();
    let mut reader = std::io::BufReader::new(std::fs::File::open(&dst).unwrap());
    let ct = candle_core::quantized::gguf_file::Content::read(&mut reader).unwrap();
    let q8 = ct
        .tensor_infos
        .values()
        .filter(|i| i.ggml_dtype == candle_core::quantized::GgmlDType::Q8_0)
        .count();
    assert!(q8 >= 30 * 7, "only {q8} Q8_0 tensors");
    assert!(ct.metadata.contains_key("tokenizer.ggml.merges"));
    let e = CandleBackend::load(&dst, opts()).unwrap();
    let mut req = GenerateRequest::new(chat("What is the capital of France?"));
    req.max_tokens = 12;
    let out = e.generate(&req, &mut |_| {}).unwrap();
    assert!(out.text.contains("Paris"), "{:?}", out.text);
    let err = requantize_gguf(&source_model(), &dst, "q3_x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("q3_x"), "{err}");
}

/// Sentences that occur more than once in `text`.
fn repeated_sentences(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    text.split(['.', '!', '?'])
        .map(|s| s.trim().to_lowercase())
        .filter(|s| s.split_whitespace().count() >= 3)
        .filter(|s| !seen.insert(s.clone()))
        .collect()
}

#[test]
fn the_repeat_penalty_stops_a_reply_from_looping_on_one_sentence() {
    let e = engine();
    let ask = |penalty: f32| {
        let mut req = GenerateRequest::new(chat("Tell me a fun fact about dogs."));
        req.max_tokens = 160;
        req.repeat_penalty = penalty;
        e.generate(&req, &mut |_| {}).unwrap()
    };
    let plain = ask(1.0);
    let penalized = ask(1.1);
    eprintln!(
        "without: {:?} {:?}\nwith: {:?} {:?}",
        plain.finish, plain.text, penalized.finish, penalized.text
    );
    // Greedy decoding of this question loops until the token limit...
    assert_eq!(plain.finish, FinishReason::Length, "{:?}", plain.text);
    assert!(
        !repeated_sentences(&plain.text).is_empty(),
        "{:?}",
        plain.text
    );
    // ...and with the penalty the model ends its answer without repeating itself.
    assert_eq!(penalized.finish, FinishReason::Stop, "{:?}", penalized.text);
    assert!(
        repeated_sentences(&penalized.text).is_empty(),
        "{:?}",
        penalized.text
    );
    let bad = GenerateRequest {
        repeat_penalty: f32::NAN,
        ..GenerateRequest::new(chat("Hi"))
    };
    let err = e.generate(&bad, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("repeat_penalty"), "{err}");
}
