//! The WebSocket event stream: events arrive in order with a type tag and a sequence number,
//! and a stalled client is dropped without holding back the others.

use crate::common;

use std::time::Duration;

use common::{TestDaemon, TestResult};
use futures_util::StreamExt;
use local_assistant::events::EventKind;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> TestResult<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await?
            .ok_or("stream ended")??;
        match msg {
            Message::Text(t) => return Ok(serde_json::from_str(&t)?),
            Message::Close(f) => return Err(format!("closed: {f:?}").into()),
            _ => {}
        }
    }
}

#[tokio::test]
async fn stored_messages_arrive_in_order_with_type_and_sequence() -> TestResult {
    // The bus alone: no replies, session or turn events in between.
    let d = TestDaemon::start_with(|c| c.assistant.answer_inbound = false, Vec::new()).await?;
    let (mut ws, resp) = tokio_tungstenite::connect_async(d.ws_url("/api/v1/events")).await?;
    assert_eq!(resp.status(), 101);
    // A bearer header works as well as ?access_token=.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        d.url("/api/v1/events").replace("http://", "ws://"),
    )?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", common::TOKEN).parse()?,
    );
    let (mut ws2, _) = tokio_tungstenite::connect_async(req).await?;

    let mut ids = Vec::new();
    for i in 0..20 {
        let v: Value = d
            .post("/api/v1/messages/inbound")
            .json(&json!({"from": "+15551230000", "text": format!("n{i}"), "idempotency_key": format!("k{i}")}))
            .send()
            .await?
            .json()
            .await?;
        ids.push(v["id"].clone());
    }
    for client in [&mut ws, &mut ws2] {
        let mut last_seq = 0;
        for id in &ids {
            let e = next_json(client).await?;
            assert_eq!(e["type"], "message.stored", "{e}");
            assert_eq!(&e["message_id"], id, "{e}");
            assert_eq!(e["direction"], "inbound");
            assert_eq!(e["channel"], "api");
            let seq = e["seq"].as_u64().unwrap_or_default();
            assert!(seq > last_seq, "seq {seq} after {last_seq}");
            last_seq = seq;
            assert!(e["at"].as_str().is_some_and(|t| t.ends_with('Z')));
        }
    }
    // A replayed key is not a new event: the next one is the next real message.
    d.post("/api/v1/messages/inbound")
        .json(&json!({"from": "+15551230000", "text": "n0", "idempotency_key": "k0"}))
        .send()
        .await?;
    let v: Value = d
        .post("/api/v1/messages/inbound")
        .json(&json!({"from": "+15551230000", "text": "fresh", "idempotency_key": "k-fresh"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(next_json(&mut ws).await?["message_id"], v["id"]);
    ws.close(None).await?;
    Ok(())
}

#[tokio::test]
async fn a_stalled_client_is_dropped_and_does_not_stall_others() -> TestResult {
    let d = TestDaemon::start_with(
        |c| {
            c.events.buffer = 100_000;
            c.events.send_timeout = Duration::from_millis(1000);
            // The bus alone: no replies, session or turn events in between.
            c.assistant.answer_inbound = false;
        },
        Vec::new(),
    )
    .await?;
    // The stalled client connects and then never reads.
    let (stalled, _) = tokio_tungstenite::connect_async(d.ws_url("/api/v1/events")).await?;
    let (mut fast, _) = tokio_tungstenite::connect_async(d.ws_url("/api/v1/events")).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // ~40 MB of events: far more than the socket buffers of the stalled connection hold.
    let detail = "x".repeat(2000);
    let n = 20_000u64;
    let bus = d.app().events().clone();
    let publisher = tokio::spawn(async move {
        let mut first = 0;
        for i in 0..n {
            let seq = bus.publish(EventKind::ComponentStateChanged {
                component: "test".into(),
                state: "ready".into(),
                detail: detail.clone(),
            });
            if i == 0 {
                first = seq;
            }
            if i % 500 == 0 {
                tokio::task::yield_now().await;
            }
        }
        first
    });
    let mut received = 0u64;
    let mut prev = None;
    while received < n {
        let e = next_json(&mut fast).await?;
        if e["component"] != "test" {
            continue;
        }
        let seq = e["seq"].as_u64().unwrap_or_default();
        if let Some(p) = prev {
            assert_eq!(seq, p + 1, "the fast client missed or reordered events");
        }
        prev = Some(seq);
        received += 1;
    }
    let first = publisher.await?;
    assert_eq!(prev, Some(first + n - 1));

    // The stalled client is dropped once one frame has waited `send_timeout` for its full
    // socket: the fast client may have read everything before that, so wait for the count
    // (bounded) instead of expecting it at once.
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = d.get("/metrics").send().await?.text().await?;
        if metrics.contains("events_clients_dropped_total 1")
            && metrics.contains("events_subscribers 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("events_clients_dropped_total 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("events_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut stalled = stalled;
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(m)) = stalled.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the stalled connection was not closed by the server"
    );
    assert!(
        metrics.contains("events_subscribers 1"),
        "only the fast client remains subscribed"
    );
    Ok(())
}

#[tokio::test]
async fn clients_are_told_goodbye_at_shutdown() -> TestResult {
    let mut d = TestDaemon::start().await?;
    let (mut ws, _) = tokio_tungstenite::connect_async(d.ws_url("/api/v1/events")).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    d.stop().await?;
    let mut close_code = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let Message::Close(Some(f)) = m {
            close_code = Some(u16::from(f.code));
            break;
        }
    }
    assert_eq!(close_code, Some(1001));
    Ok(())
}
