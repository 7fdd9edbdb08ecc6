//! Scripted conversations through the real API (`POST /api/v1/chat`) on the fast path: slot
//! filling, confirmations, refusals by trust, open questions surviving a restart, timers that
//! fire, reminders missed while the device was off, SSE streaming, and the turn records.

use crate::common;

use std::time::Duration;

use common::{TestDaemon, TestResult};
use serde_json::{json, Value};

async fn say(d: &TestDaemon, conv: Option<i64>, text: &str) -> TestResult<Value> {
    let mut body = json!({ "text": text });
    if let Some(c) = conv {
        body["conversation_id"] = json!(c);
    }
    let resp = d.post("/api/v1/chat").json(&body).send().await?;
    assert_eq!(resp.status(), 200, "{text}");
    let v: Value = resp.json().await?;
    eprintln!(
        "> {text}\n< {} [{} {}]",
        v["reply"], v["intent"], v["outcome"]
    );
    Ok(v)
}

async fn say_from(d: &TestDaemon, from: &str, text: &str) -> TestResult<Value> {
    let resp = d
        .post("/api/v1/chat")
        .json(&json!({ "text": text, "from": from }))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    Ok(resp.json().await?)
}

fn conv(v: &Value) -> Option<i64> {
    v["conversation_id"].as_i64()
}

#[tokio::test]
async fn reminder_slot_filling_over_three_turns() -> TestResult {
    let d = TestDaemon::start().await?;
    let a = say(&d, None, "remind me").await?;
    assert_eq!(a["reply"], "What should I remind you of?");
    assert_eq!(a["state"], "awaiting_slot");
    assert_eq!(a["outcome"], "asked");
    let c = conv(&a);
    let b = say(&d, c, "to call mom").await?;
    assert_eq!(b["reply"], "When should I remind you to call mom?");
    assert_eq!(b["state"], "awaiting_slot");
    let r = say(&d, c, "tomorrow at 5pm").await?;
    assert_eq!(r["state"], "idle");
    assert_eq!(r["tool_calls"][0]["name"], "reminder_set");
    assert_eq!(r["tool_calls"][0]["arguments"]["text"], "call mom");
    let at = r["tool_calls"][0]["arguments"]["at"].as_str().unwrap_or("");
    assert!(at.contains("T17:00:00"), "{at}");
    assert!(
        r["reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("Okay, I'll remind you to call mom tomorrow at 5 PM"),
        "{}",
        r["reply"]
    );
    let l = say(&d, c, "what are my reminders").await?;
    assert!(
        l["reply"]
            .as_str()
            .unwrap_or("")
            .contains("call mom tomorrow at 5 PM"),
        "{}",
        l["reply"]
    );
    // Both details in one answer.
    let a = say(&d, c, "remind me").await?;
    assert_eq!(a["state"], "awaiting_slot");
    let r = say(&d, c, "to water the plants in 20 minutes").await?;
    assert_eq!(
        r["tool_calls"][0]["arguments"]["text"], "water the plants",
        "{r}"
    );
    // "never mind" drops an open question.
    say(&d, c, "remind me").await?;
    let n = say(&d, c, "cancel").await?;
    assert_eq!(n["reply"], "Okay, never mind.");
    assert_eq!(n["state"], "idle");
    Ok(())
}

#[tokio::test]
async fn cancel_all_asks_for_confirmation_first() -> TestResult {
    let d = TestDaemon::start().await?;
    let t = say(&d, None, "set a timer for 10 minutes").await?;
    assert_eq!(t["reply"], "Timer set for 10 minutes.");
    let c = conv(&t);
    let p = say(&d, c, "set a pasta timer for 8 minutes").await?;
    assert_eq!(p["reply"], "Pasta timer set for 8 minutes.");
    let q = say(&d, c, "cancel all timers").await?;
    assert_eq!(q["reply"], "Cancel all 2 timers?");
    assert_eq!(q["state"], "awaiting_confirmation");
    let no = say(&d, c, "no").await?;
    assert_eq!(no["reply"], "Okay, I'll keep your timers.");
    let l = say(&d, c, "list my timers").await?;
    assert!(
        l["reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("You have 2 timers"),
        "{}",
        l["reply"]
    );
    say(&d, c, "cancel all timers").await?;
    let huh = say(&d, c, "maybe").await?;
    assert_eq!(huh["state"], "awaiting_confirmation", "{huh}");
    let yes = say(&d, c, "yes").await?;
    assert_eq!(yes["reply"], "Cancelled 2 timers.");
    assert_eq!(yes["tool_calls"][0]["name"], "timer_cancel");
    let l = say(&d, c, "list my timers").await?;
    assert_eq!(l["reply"], "You have no timers running.");
    Ok(())
}

#[tokio::test]
async fn unknown_numbers_are_refused_politely_and_the_owner_is_not() -> TestResult {
    let d = TestDaemon::start_with(
        |c| {
            c.routing.owner_numbers =
                vec![local_assistant::domain::PhoneNumber::parse("+15550001111").expect("number")];
        },
        Vec::new(),
    )
    .await?;
    let r = say_from(&d, "+15559998888", "set a timer for 5 minutes").await?;
    assert_eq!(r["outcome"], "refused");
    assert!(
        r["reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("Sorry, I can't help you with timers"),
        "{}",
        r["reply"]
    );
    let r = say_from(&d, "+15559998888", "what's on my calendar tomorrow").await?;
    assert_eq!(r["outcome"], "refused");
    let t = say_from(&d, "+15559998888", "what time is it").await?;
    assert_eq!(t["outcome"], "answered");
    assert!(t["reply"].as_str().unwrap_or("").starts_with("It's "));
    let ok = say_from(&d, "+15550001111", "set a timer for 5 minutes").await?;
    assert_eq!(ok["outcome"], "answered");
    // The owner may read the calendar.
    let cal = say_from(&d, "+15550001111", "what's on my calendar tomorrow").await?;
    assert_eq!(cal["outcome"], "answered");
    assert_eq!(cal["reply"], "You have no appointments tomorrow.");
    Ok(())
}

#[tokio::test]
async fn inbound_messages_are_answered_through_the_inbox() -> TestResult {
    let d = TestDaemon::start().await?;
    let resp = d
        .post("/api/v1/messages/inbound")
        .json(&json!({ "from": "+15557776666", "text": "set a timer for 3 minutes", "idempotency_key": "k1" }))
        .send()
        .await?;
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await?;
    let c = accepted["conversation_id"].as_i64().unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page: Value = d
            .get(&format!("/api/v1/conversations/{c}/messages"))
            .send()
            .await?
            .json()
            .await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if let Some(reply) = items.iter().find(|m| m["direction"] == "outbound") {
            assert!(
                reply["text"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("Sorry, I can't help you with timers"),
                "{reply}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reply in {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let db = common::open_db(&d.dir)?;
    let status: String = db.query_row("SELECT status FROM inbox", [], |r| r.get(0))?;
    assert_eq!(status, "done");
    Ok(())
}

#[tokio::test]
async fn an_open_question_survives_a_restart() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut d = TestDaemon::start_in(tmp.path(), |_| {}, Vec::new()).await?;
    let a = say(&d, None, "remind me to feed the cat").await?;
    assert_eq!(a["reply"], "When should I remind you to feed the cat?");
    let c = conv(&a);
    d.stop().await?;
    let d = TestDaemon::start_in(tmp.path(), |_| {}, Vec::new()).await?;
    let r = say(&d, c, "at 8pm").await?;
    assert_eq!(
        r["tool_calls"][0]["arguments"]["text"], "feed the cat",
        "{r}"
    );
    assert_eq!(r["state"], "idle");
    Ok(())
}

#[tokio::test]
async fn a_timer_fires_into_its_conversation() -> TestResult {
    let d = TestDaemon::start().await?;
    let mut events = d.app().events().subscribe();
    let t = say(&d, None, "set a timer for 1 second").await?;
    assert_eq!(t["reply"], "Timer set for 1 second.");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv()).await??;
        let v = serde_json::to_value(&ev)?;
        if v["type"] == "reminder.fired" {
            assert_eq!(v["text"], "Your timer is done.");
            assert_eq!(v["missed"], false);
            break;
        }
    }
    let c = conv(&t).unwrap_or(0);
    let page: Value = d
        .get(&format!("/api/v1/conversations/{c}/messages"))
        .send()
        .await?
        .json()
        .await?;
    let bodies: Vec<&str> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(bodies.contains(&"Your timer is done."), "{bodies:?}");
    // "Snooze" right after it went off: due again in 5 minutes.
    let z = say(&d, Some(c), "snooze it for 5 minutes").await?;
    assert_eq!(z["intent"], "reminder.snooze", "{z}");
    assert_eq!(
        z["reply"], "Okay, I'll remind you again in 5 minutes (the timer).",
        "{z}"
    );
    assert_eq!(z["tool_calls"][0]["result"]["snoozed"], true, "{z}");
    Ok(())
}

#[tokio::test]
async fn a_reminder_due_while_off_fires_once_with_a_missed_note() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut d = TestDaemon::start_in(tmp.path(), |_| {}, Vec::new()).await?;
    let r = say(&d, None, "remind me to take the pills in 10 minutes").await?;
    let id = r["tool_calls"][0]["result"]["id"].as_i64().unwrap_or(0);
    d.stop().await?;
    {
        // The device was off for an hour past the due time.
        let db = common::open_db(tmp.path())?;
        let past = jiff::Timestamp::now().as_millisecond() - 3_600_000;
        db.execute(
            "UPDATE reminders SET due_at = ?1 WHERE id = ?2",
            rusqlite::params![past, id],
        )?;
    }
    let d = TestDaemon::start_in(tmp.path(), |_| {}, Vec::new()).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let db = common::open_db(tmp.path())?;
        let (status, count): (String, i64) = db.query_row(
            "SELECT status, fire_count FROM reminders WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if status == "done" {
            assert_eq!(count, 1);
            let body: String = db.query_row(
                "SELECT body FROM messages WHERE direction = 'outbound' ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?;
            assert!(body.starts_with("Missed while I was offline"), "{body}");
            assert!(body.ends_with("Reminder: take the pills."), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "reminder never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(d);
    Ok(())
}

/// A chat SSE body's chunk texts, in order, and its `done` event's data (`Null` if none).
fn sse_chunks_and_done(body: &str) -> (Vec<String>, Value) {
    let data = |e: &str| -> Option<Value> {
        e.lines()
            .find_map(|l| l.strip_prefix("data: "))
            .and_then(|d| serde_json::from_str(d).ok())
    };
    let chunks = body
        .split("\n\n")
        .filter(|e| e.contains("event: chunk"))
        .filter_map(data)
        .filter_map(|c| c["text"].as_str().map(str::to_owned))
        .collect();
    let done = body
        .split("\n\n")
        .find(|e| e.contains("event: done"))
        .and_then(data)
        .unwrap_or(Value::Null);
    (chunks, done)
}

#[tokio::test]
async fn replies_stream_as_server_sent_events_and_turns_are_recorded() -> TestResult {
    let d = TestDaemon::start().await?;
    let resp = d
        .post("/api/v1/chat")
        .header("accept", "text/event-stream")
        .json(&json!({ "text": "help" }))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()?
        .starts_with("text/event-stream"));
    let body = resp.text().await?;
    let (chunks, done) = sse_chunks_and_done(&body);
    assert!(chunks.len() >= 3, "help is several sentences: {body}");
    assert_eq!(done["reply"], chunks.join(" "));
    assert_eq!(done["intent"], "help");
    let db = common::open_db(&d.dir)?;
    let (intent, outcome, nlu_us, total_us): (String, String, i64, i64) = db.query_row(
        "SELECT intent, outcome, nlu_us, total_us FROM turns ORDER BY id DESC LIMIT 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    assert_eq!((intent.as_str(), outcome.as_str()), ("help", "answered"));
    assert!(nlu_us > 0 && total_us >= nlu_us);
    let metrics = d.get("/metrics").send().await?.text().await?;
    assert!(
        metrics.contains("turn_stage_duration_seconds_count{stage=\"nlu\",engine=\"fast_path\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("turns_total{intent=\"help\",outcome=\"answered\"} 1"));
    // Bad input is named.
    let bad = d
        .post("/api/v1/chat")
        .json(&json!({ "text": "  " }))
        .send()
        .await?;
    assert_eq!(bad.status(), 422);
    let bad = d
        .post("/api/v1/chat")
        .json(&json!({ "text": "hi", "conversation_id": 999 }))
        .send()
        .await?;
    assert_eq!(bad.status(), 404);
    let bad = d
        .post("/api/v1/chat")
        .json(&json!({ "text": "hi", "from": "12" }))
        .send()
        .await?;
    assert_eq!(bad.status(), 422);
    Ok(())
}

/// The household's day in one conversation: an appointment booked, moved and cancelled, and a
/// task added and completed, with a slot-filling question interrupted by another request.
#[tokio::test]
async fn one_conversation_books_moves_and_cancels_an_appointment_and_adds_and_completes_a_task(
) -> TestResult {
    let d = TestDaemon::start().await?;
    let a = say(&d, None, "book a plumber appointment tomorrow at 9am").await?;
    assert_eq!(a["intent"], "appointment.create", "{a}");
    assert_eq!(a["tool_calls"][0]["result"]["booked"], true, "{a}");
    let c = a["conversation_id"].as_i64();
    let uid = a["tool_calls"][0]["result"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(!uid.is_empty(), "{a}");

    // A question left open by "add a task" gives way to a new request.
    let q = say(&d, c, "add a task").await?;
    assert_eq!(q["state"], "awaiting_slot");
    let m = say(&d, c, "move the plumber to tomorrow at 11am").await?;
    assert_eq!(m["intent"], "appointment.move", "{m}");
    assert_eq!(m["tool_calls"][0]["result"]["uid"], uid.as_str());
    let ev: Value = d
        .get(&format!("/api/v1/calendar/{uid}"))
        .send()
        .await?
        .json()
        .await?;
    assert!(
        ev["start"]
            .as_str()
            .is_some_and(|s| s.contains("T11:00:00")),
        "{ev}"
    );

    let t = say(&d, c, "add call the insurance to my tasks").await?;
    assert_eq!(t["tool_calls"][0]["name"], "task_add", "{t}");
    let k = say(&d, c, "cancel the plumber appointment").await?;
    assert_eq!(k["intent"], "appointment.cancel", "{k}");
    let r = d.get(&format!("/api/v1/calendar/{uid}")).send().await?;
    assert_eq!(r.status(), 404);
    let done = say(&d, c, "mark call the insurance as done").await?;
    assert_eq!(done["tool_calls"][0]["name"], "task_complete", "{done}");

    let open: Value = d.get("/api/v1/tasks").send().await?.json().await?;
    assert_eq!(open["total"], 0, "{open}");
    let completed: Value = d
        .get("/api/v1/tasks?status=completed")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(completed["items"][0]["description"], "call the insurance");
    let cal: Value = d.get("/api/v1/calendar").send().await?.json().await?;
    assert_eq!(cal["total"], 0, "{cal}");
    Ok(())
}

/// An Ollama-shaped server writing one long first sentence in pieces, 50 ms apart.
async fn slow_writer() -> axum::response::Response {
    let pieces = [
        "The sky looks",
        " blue because",
        ", as sunlight crosses",
        " the air, blue light",
        " scatters most.",
        " Sunsets are red.",
    ];
    let lines = pieces
        .iter()
        .map(|p| {
            json!({"model": "m", "created_at": "2025-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": p}, "done": false})
            .to_string()
        })
        .chain(std::iter::once(
            json!({"model": "m", "created_at": "2025-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": ""}, "done_reason": "stop", "done": true})
            .to_string(),
        ))
        .collect::<Vec<_>>();
    let body = futures_util::StreamExt::then(futures_util::stream::iter(lines), |l| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, std::convert::Infallible>(format!("{l}\n"))
    });
    axum::response::Response::new(axum::body::Body::from_stream(body))
}

/// An LLM reply's long first sentence goes out from its first clause on, while the model is
/// still writing the sentence (a voice starts speaking sooner); the stored reply is whole.
#[tokio::test]
async fn a_long_first_llm_sentence_streams_from_its_first_clause() -> TestResult {
    let app = axum::Router::new().route("/api/chat", axum::routing::post(slow_writer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let d = TestDaemon::start_with(
        move |c| {
            c.llm.backend = local_assistant::config::LlmBackendKind::Ollama;
            c.llm.ollama_url = format!("http://{addr}");
        },
        Vec::new(),
    )
    .await?;
    let resp = d
        .post("/api/v1/chat")
        .header("accept", "text/event-stream")
        .json(&json!({ "text": "why does the sky look blue" }))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await?;
    let (chunks, done) = sse_chunks_and_done(&text);
    assert_eq!(
        chunks,
        [
            "The sky looks blue because,",
            "as sunlight crosses the air, blue light scatters most.",
            "Sunsets are red."
        ],
        "{text}"
    );
    assert_eq!(
        done["reply"],
        "The sky looks blue because, as sunlight crosses the air, blue light scatters most. Sunsets are red."
    );
    Ok(())
}
