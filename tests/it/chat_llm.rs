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
