//! Conversations the fast path does not understand, answered by the real embedded model
//! (SmolLM2-135M GGUF from `make models`): streamed answers, cancellation mid-stream by the
//! client going away and by a newer message, and the records of each turn.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::{TestDaemon, TestResult};
use futures_util::StreamExt;
use local_assistant::config::{Config, LlmBackendKind};
use serde_json::{json, Value};

fn model() -> PathBuf {
    let p = std::env::var("LOCAL_ASSISTANT_TEST_LLM").map_or_else(
        |_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("data/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.q8_0.gguf")
        },
        PathBuf::from,
    );
    assert!(p.exists(), "{} is missing: run `make models`", p.display());
    p
}

fn with_llm(c: &mut Config) {
    c.llm.backend = LlmBackendKind::Candle;
    c.llm.model = model().display().to_string();
    c.llm.threads = 1;
    c.llm.max_reply_tokens = 48;
}

/// Read SSE events until `stop` says so; returns (event, data) pairs.
async fn read_events(
    resp: reqwest::Response,
    mut stop: impl FnMut(&str, &Value) -> bool,
) -> TestResult<Vec<(String, Value)>> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(bytes) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&bytes?));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let event = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            let data: Value = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            if event.is_empty() {
                continue;
            }
            let done = stop(&event, &data);
            out.push((event, data));
            if done {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[tokio::test]
async fn chit_chat_streams_from_the_model_and_is_recorded() -> TestResult {
    let d = TestDaemon::start_with(with_llm, Vec::new()).await?;
    let resp = d
        .post("/api/v1/chat")
        .header("accept", "text/event-stream")
        .json(&json!({ "text": "Tell me something nice about cats." }))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let events = read_events(resp, |e, _| e == "done").await?;
    let chunks: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e == "chunk")
        .filter_map(|(_, d)| d["text"].as_str())
        .collect();
    assert!(!chunks.is_empty(), "{events:?}");
    let (_, done) = events.last().cloned().unwrap_or_default();
    assert_eq!(done["intent"], Value::Null);
    assert_eq!(done["outcome"], "answered");
    assert_eq!(done["reply"], chunks.join(" "));
    assert!(done["timings"]["first_chunk_ms"].as_f64().is_some());
    let db = common::open_db(&d.dir)?;
    let (engine, first): (String, Option<i64>) = db.query_row(
        "SELECT engine, first_chunk_us FROM turns ORDER BY id DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert_eq!(engine, "candle");
    assert!(first.is_some());
    let metrics = d.get("/metrics").send().await?.text().await?;
    assert!(metrics
        .contains("turn_stage_duration_seconds_count{stage=\"first_chunk\",engine=\"candle\"}"));
    Ok(())
}

async fn wait_turn_outcome(dir: &std::path::Path, n: i64) -> TestResult<Vec<String>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let db = common::open_db(dir)?;
        let outcomes: Vec<String> = db
            .prepare("SELECT outcome FROM turns ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if outcomes.len() as i64 >= n {
            return Ok(outcomes);
        }
        assert!(std::time::Instant::now() < deadline, "turns: {outcomes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_that_goes_away_mid_stream_cancels_the_turn() -> TestResult {
    let d = TestDaemon::start_with(
        |c| {
            with_llm(c);
            c.llm.max_reply_tokens = 400;
        },
        Vec::new(),
    )
    .await?;
    let resp = d
        .post("/api/v1/chat")
        .header("accept", "text/event-stream")
        .json(&json!({ "text": "Write a long story about a dragon who learns to bake bread." }))
        .send()
        .await?;
    let first = read_events(resp, |e, _| e == "chunk").await?;
    assert_eq!(first.len(), 1, "{first:?}");
    // The response (and its connection) is dropped here.
    let outcomes = wait_turn_outcome(&d.dir, 1).await?;
    assert_eq!(outcomes, vec!["cancelled"]);
    let db = common::open_db(&d.dir)?;
    let (status, body): (String, String) = db.query_row(
        "SELECT status, body FROM messages WHERE direction = 'outbound'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert_eq!(
        status, "cancelled",
        "a cancelled reply is kept, never delivered"
    );
    assert!(
        body.starts_with(first[0].1["text"].as_str().unwrap_or("?")),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_newer_message_cancels_the_answer_in_flight() -> TestResult {
    let d = TestDaemon::start_with(
        |c| {
            with_llm(c);
            c.llm.max_reply_tokens = 400;
        },
        Vec::new(),
    )
    .await?;
    let resp = d
        .post("/api/v1/chat")
        .header("accept", "text/event-stream")
        .json(&json!({ "text": "Tell me a very long story about the sea." }))
        .send()
        .await?;
    let mut stream_events = Vec::new();
    let mut first_chunk = tokio::spawn(read_events(resp, |_, _| false));
    // Wait until the model is talking, then interrupt with a command.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let db = common::open_db(&d.dir)?;
        let speaking: i64 = db.query_row(
            "SELECT count(*) FROM sessions WHERE state = 'speaking'",
            [],
            |r| r.get(0),
        )?;
        if speaking == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the model never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let conv: i64 =
        common::open_db(&d.dir)?.query_row("SELECT id FROM conversations", [], |r| r.get(0))?;
    let t: Value = d
        .post("/api/v1/chat")
        .json(&json!({ "text": "what time is it", "conversation_id": conv }))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(t["intent"], "time.now");
    assert_eq!(t["outcome"], "answered");
    if let Ok(Ok(Ok(ev))) = tokio::time::timeout(Duration::from_secs(30), &mut first_chunk).await {
        stream_events = ev;
    }
    let done = stream_events
        .iter()
        .find(|(e, _)| e == "done")
        .map(|(_, d)| d.clone());
    assert_eq!(done.map(|d| d["outcome"].clone()), Some(json!("cancelled")));
    let outcomes = wait_turn_outcome(&d.dir, 2).await?;
    assert_eq!(outcomes, vec!["cancelled", "answered"]);
    Ok(())
}

/// A counter from `/metrics` (0 while it has not been counted).
async fn counter(d: &TestDaemon, name: &str) -> TestResult<u64> {
    let text = d.get("/metrics").send().await?.text().await?;
    let prefix = format!("{name}_total ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_spoken_turn_the_next_prompt_start_is_prefilled_even_when_the_window_moves(
) -> TestResult {
    use local_assistant::nlu::llm::Priority;
    use local_assistant::orchestrator::session::SessionKind;
    use local_assistant::orchestrator::TurnEvent;
    // Two messages of history: from the third turn on, the window moves on every turn, and
    // the prompt no longer starts like the session's last one.
    let d = TestDaemon::start_with(
        |c| {
            with_llm(c);
            c.llm.max_reply_tokens = 24;
            c.assistant.history_messages = 2;
            c.memory.enabled = false;
        },
        Vec::new(),
    )
    .await?;
    let o = d.app.as_ref().ok_or("no app")?.orchestrator().clone();
    // One spoken turn in the kitchen, to its end.
    let say = |text: &'static str| {
        let o = o.clone();
        async move {
            let mut h = o
                .converse(
                    "local",
                    "kitchen".into(),
                    text.into(),
                    SessionKind::Voice,
                    Priority::LocalVoice,
                )
                .await?;
            while let Some(ev) = h.events.recv().await {
                if let TurnEvent::Done(s) = ev {
                    return Ok(s);
                }
            }
            let unfinished: TestResult<_> = Err(format!("no end to the turn {text:?}").into());
            unfinished
        }
    };
    // The system prompt is pre-warmed at start: wait for it as the first question would.
    let wait_prewarms = |n: u64, after: &'static str| {
        let d = &d;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while counter(d, "llm_prewarms").await? < n {
                if std::time::Instant::now() > deadline {
                    let late: TestResult = Err(format!("no pre-warm after {after}").into());
                    return late;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        }
    };
    wait_prewarms(1, "the start").await?;
    let mut prewarms = counter(&d, "llm_prewarms").await?;
    assert_eq!(prewarms, 1, "one pre-warm at start");
    let mut uncached = Vec::new();
    for text in [
        "Tell me about cats.",
        "What do cats eat?",
        "Where do cats like to sleep?",
    ] {
        let (p0, c0) = (
            counter(&d, "llm_prompt_tokens").await?,
            counter(&d, "llm_cached_tokens").await?,
        );
        let s = say(text).await?;
        assert_eq!(s.outcome, "answered", "{s:?}");
        let (p1, c1) = (
            counter(&d, "llm_prompt_tokens").await?,
            counter(&d, "llm_cached_tokens").await?,
        );
        assert!(p1 > p0, "no LLM answer to {text:?}");
        uncached.push(p1 - p0 - (c1 - c0));
        // Each spoken turn is followed by one pre-warm; wait for it like a person listening to
        // the answer would.
        prewarms += 1;
        wait_prewarms(prewarms, text).await?;
    }
    // Only the new question (and its chat markup) is prefilled, not the system prompt in the
    // first turn, nor the previous answer or the moved window in the others (measured: 14, 13
    // and 15 tokens; 66, 17 and 53 without the pre-warms).
    assert!(uncached[0] < 20, "prefilled per turn: {uncached:?}");
    assert!(uncached[1] < 20, "prefilled per turn: {uncached:?}");
    assert!(uncached[2] < 20, "prefilled per turn: {uncached:?}");

    // A fast-path command is not followed by a pre-warm: the model is not asked at all.
    let p0 = counter(&d, "llm_prompt_tokens").await?;
    let s = say("What time is it?").await?;
    assert_eq!(s.outcome, "answered", "{s:?}");
    assert!(s.intent.is_some(), "not the fast path: {s:?}");
    // A pre-warm would start at once and take well under a second here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(counter(&d, "llm_prewarms").await?, prewarms);
    assert_eq!(counter(&d, "llm_prompt_tokens").await?, p0);
    Ok(())
}
