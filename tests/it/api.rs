//! The HTTP API against the real server on an ephemeral port and a real SQLite file: every
//! route, auth refusals, each error status, paging, inbox idempotency, OpenAPI coverage.

use crate::common;

use std::collections::BTreeSet;

use common::{open_db, TestDaemon, TestResult, TOKEN};
use serde_json::{json, Value};

async fn error_of(resp: reqwest::Response) -> TestResult<(u16, String, String)> {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        ct.starts_with("application/json"),
        "status {status}: content-type {ct:?}"
    );
    let v: Value = resp.json().await?;
    let code = v["error"]["code"].as_str().unwrap_or_default().to_owned();
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !code.is_empty() && !message.is_empty(),
        "status {status}: error body {v}"
    );
    Ok((status, code, message))
}

#[tokio::test]
async fn health_and_readiness_are_open_and_report_components() -> TestResult {
    let d = TestDaemon::start().await?;
    let r = d.client.get(d.url("/healthz")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await?["status"], "ok");

    let r = d.client.get(d.url("/readyz")).send().await?;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v["ready"], true);
    for c in ["store", "http", "outbox"] {
        assert_eq!(v["components"][c]["state"], "ready", "{v}");
    }
    Ok(())
}

#[tokio::test]
async fn stopping_is_announced_as_a_component_state_change() -> TestResult {
    let d = TestDaemon::start().await?;
    let app = d.app();
    // Stopping flips http to "stopping" before the listener closes; observe it via the bus.
    let mut rx = app.events().subscribe();
    app.shutdown_token().cancel();
    let mut saw_stopping = false;
    while let Ok(Ok(e)) = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await {
        let v = serde_json::to_value(&e)?;
        if v["type"] == "component.state_changed" && v["state"] == "stopping" {
            saw_stopping = true;
            break;
        }
    }
    assert!(
        saw_stopping,
        "no component.state_changed to stopping was published"
    );
    Ok(())
}

#[tokio::test]
async fn every_protected_route_refuses_missing_and_wrong_tokens() -> TestResult {
    let d = TestDaemon::start().await?;
    let routes = [
        ("GET", "/metrics"),
        ("GET", "/api/v1/version"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/conversations"),
        ("GET", "/api/v1/conversations/1/messages"),
        ("POST", "/api/v1/messages/inbound"),
        ("POST", "/api/v1/messages/outbound"),
        ("GET", "/api/v1/events"),
    ];
    for (method, path) in routes {
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let r = d.client.request(m.clone(), d.url(path)).send().await?;
        assert_eq!(
            r.headers().get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let (status, code, _) = error_of(r).await?;
        assert_eq!(
            (status, code.as_str()),
            (401, "unauthorized"),
            "{method} {path} without token"
        );

        let r = d
            .client
            .request(m, d.url(path))
            .bearer_auth("wrong-token-wrong-token")
            .send()
            .await?;
        let (status, _, message) = error_of(r).await?;
        assert_eq!(status, 401, "{method} {path} with a wrong token");
        assert!(message.contains("invalid"), "{message}");
    }
    Ok(())
}

#[tokio::test]
async fn version_and_metrics_answer_with_the_token() -> TestResult {
    // Store only, so the message is still in the inbox when the metrics are read (an answering
    // daemon may already have handled it).
    let d = TestDaemon::start_with(|c| c.assistant.answer_inbound = false, Vec::new()).await?;
    let v: Value = d.get("/api/v1/version").send().await?.json().await?;
    assert_eq!(v["name"], "local-assistant");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["schema_version"].as_i64().is_some_and(|n| n >= 1));

    d.post("/api/v1/messages/inbound")
        .json(&json!({"from": "+15551234567", "text": "hello", "idempotency_key": "m-1"}))
        .send()
        .await?;
    let r = d.get("/metrics").send().await?;
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().await?;
    for needle in [
        "http_requests_total{route=\"/api/v1/messages/inbound\",method=\"POST\",status=\"202\"} 1",
        "http_request_duration_seconds_bucket{",
        "db_write_duration_seconds_count",
        "db_commit_batch_size_bucket",
        "inbox_depth 1",
        "outbox_depth{status=\"pending\"} 0",
        "# EOF",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    Ok(())
}

#[tokio::test]
async fn inbound_messages_are_stored_and_listed_with_paging() -> TestResult {
    // Store only: the replies of the conversation engine are covered in tests/chat.rs.
    let d = TestDaemon::start_with(|c| c.assistant.answer_inbound = false, Vec::new()).await?;
    let mut conv_of = std::collections::BTreeMap::new();
    for i in 0..5 {
        for from in ["+15550000001", "+15550000002", "+15550000003"] {
            let r = d
                .post("/api/v1/messages/inbound")
                .json(&json!({"from": from, "text": format!("msg {i} from {from}"), "idempotency_key": format!("{from}-{i}")}))
                .send()
                .await?;
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await?;
            assert_eq!(v["replayed"], false);
            let conv = v["conversation_id"].as_i64().unwrap_or_default();
            assert_eq!(
                *conv_of.entry(from).or_insert(conv),
                conv,
                "one conversation per sender"
            );
        }
    }
    // Conversations: page size 2 → 2 + 1, most recent first (the last sender wrote last).
    let p1: Value = d
        .get("/api/v1/conversations?limit=2")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(p1["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(p1["items"][0]["address"], "+15550000003");
    assert_eq!(p1["items"][0]["channel"], "api");
    assert_eq!(p1["items"][0]["message_count"], 5);
    let cursor = p1["next_cursor"].as_str().unwrap_or_default().to_owned();
    assert!(!cursor.is_empty());
    let p2: Value = d
        .get(&format!("/api/v1/conversations?limit=2&cursor={cursor}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(p2["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(p2["items"][0]["address"], "+15550000001");
    assert!(p2["next_cursor"].is_null());

    // Messages of one conversation: oldest first, paged by 2.
    let conv = conv_of["+15550000002"];
    let mut texts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/conversations/{conv}/messages?limit=2&cursor={c}"),
            None => format!("/api/v1/conversations/{conv}/messages?limit=2"),
        };
        let page: Value = d.get(&path).send().await?.json().await?;
        for m in page["items"].as_array().into_iter().flatten() {
            assert_eq!(m["direction"], "inbound");
            assert_eq!(m["status"], "received");
            texts.push(m["text"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let want: Vec<String> = (0..5)
        .map(|i| format!("msg {i} from +15550000002"))
        .collect();
    assert_eq!(texts, want);

    // And it is all in the real SQLite file, with the inbox rows pending for the orchestrator.
    let db = open_db(&d.dir)?;
    let (msgs, inbox): (i64, i64) = db.query_row(
        "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM inbox WHERE status = 'pending')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert_eq!((msgs, inbox), (15, 15));
    Ok(())
}

#[tokio::test]
async fn the_same_idempotency_key_is_stored_once_and_answered_the_same() -> TestResult {
    let d = TestDaemon::start().await?;
    let body =
        json!({"from": "+15551234567", "text": "turn on the lights", "idempotency_key": "abc-123"});
    let first: Value = d
        .post("/api/v1/messages/inbound")
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    // Concurrent retries of the same request.
    let mut handles = Vec::new();
    for _ in 0..8 {
        let req = d.post("/api/v1/messages/inbound").json(&body);
        handles.push(tokio::spawn(async move { req.send().await }));
    }
    for h in handles {
        let r = h.await??;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await?;
        assert_eq!(v["id"], first["id"]);
        assert_eq!(v["conversation_id"], first["conversation_id"]);
        assert_eq!(v["replayed"], true);
    }
    let rows: i64 = open_db(&d.dir)?.query_row(
        "SELECT count(*) FROM inbox WHERE idempotency_key = 'abc-123'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(rows, 1);
    let msgs: i64 =
        open_db(&d.dir)?.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    assert_eq!(msgs, 1);

    // The same key with different content is refused, not silently merged.
    let r = d
        .post("/api/v1/messages/inbound")
        .json(&json!({"from": "+15551234567", "text": "something else", "idempotency_key": "abc-123"}))
        .send()
        .await?;
    let (status, code, message) = error_of(r).await?;
    assert_eq!((status, code.as_str()), (422, "idempotency_conflict"));
    assert!(message.contains("abc-123"), "{message}");
    Ok(())
}

#[tokio::test]
async fn each_error_status_has_a_json_body_naming_the_problem() -> TestResult {
    let d = TestDaemon::start_with(|c| c.server.max_body_bytes = 2048, Vec::new()).await?;
    let inbound = d.url("/api/v1/messages/inbound");

    // 400 malformed JSON.
    let r = d
        .client
        .post(&inbound)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{\"from\": ")
        .send()
        .await?;
    let (s, code, _) = error_of(r).await?;
    assert_eq!((s, code.as_str()), (400, "bad_request"));

    // 400 bad query and bad path id.
    let (s, _, m) = error_of(d.get("/api/v1/conversations?limit=0").send().await?).await?;
    assert_eq!(s, 400);
    assert!(m.contains("limit"), "{m}");
    let (s, _, m) = error_of(d.get("/api/v1/conversations?limit=abc").send().await?).await?;
    assert_eq!(s, 400, "{m}");
    let (s, _, m) = error_of(d.get("/api/v1/conversations/abc/messages").send().await?).await?;
    assert_eq!(s, 400);
    assert!(m.contains("conversation id"), "{m}");
    let (s, _, _) = error_of(d.get("/api/v1/conversations?cursor=zzz").send().await?).await?;
    assert_eq!(s, 400);

    // 404 unknown route and unknown conversation.
    let (s, code, m) = error_of(d.get("/api/v1/nope").send().await?).await?;
    assert_eq!((s, code.as_str()), (404, "not_found"));
    assert!(m.contains("/api/v1/nope"), "{m}");
    let (s, _, m) = error_of(d.get("/api/v1/conversations/999/messages").send().await?).await?;
    assert_eq!(s, 404);
    assert!(m.contains("conversation 999"), "{m}");

    // 405 wrong method.
    let (s, code, _) = error_of(d.client.delete(&inbound).bearer_auth(TOKEN).send().await?).await?;
    assert_eq!((s, code.as_str()), (405, "method_not_allowed"));
    let (s, _, _) = error_of(d.post("/api/v1/conversations").send().await?).await?;
    assert_eq!(s, 405);

    // 413 body over the configured limit.
    let big = json!({"from": "+15551234567", "text": "x".repeat(4096), "idempotency_key": "big"});
    let (s, code, m) =
        error_of(d.post("/api/v1/messages/inbound").json(&big).send().await?).await?;
    assert_eq!((s, code.as_str()), (413, "payload_too_large"));
    assert!(m.contains("max_body_bytes"), "{m}");

    // 415 wrong content type.
    let r = d
        .client
        .post(&inbound)
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await?;
    let (s, code, _) = error_of(r).await?;
    assert_eq!((s, code.as_str()), (415, "unsupported_media_type"));

    // 422 semantic errors, each naming the field.
    let cases = [
        (json!({"from": "5551234567", "text": "hi"}), "from"),
        (json!({"from": "+15551234567", "text": "   "}), "text"),
        (json!({"from": "+15551234567"}), "text"),
        (
            json!({"from": "+15551234567", "text": "hi", "idempotency_key": ""}),
            "idempotency_key",
        ),
        (
            json!({"from": "+15551234567", "text": "hi", "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let (s, _, m) = error_of(
            d.post("/api/v1/messages/inbound")
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        assert_eq!(s, 422, "{body}: {m}");
        assert!(m.contains(field), "{body}: {m}");
    }
    let (s, code, m) = error_of(
        d.post("/api/v1/messages/outbound")
            .json(&json!({"channel": "carrier-pigeon", "to": "+15551234567", "text": "hi"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!((s, code.as_str()), (422, "unknown_channel"));
    assert!(m.contains("carrier-pigeon"), "{m}");

    // 400 for a WebSocket route hit without an upgrade.
    let (s, _, m) = error_of(d.get("/api/v1/events").send().await?).await?;
    assert_eq!(s, 400, "{m}");

    // Nothing refused was stored.
    let msgs: i64 =
        open_db(&d.dir)?.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
    assert_eq!(msgs, 0);
    Ok(())
}

#[tokio::test]
async fn a_message_over_the_text_limit_is_refused_with_the_limit_named() -> TestResult {
    let d = TestDaemon::start_with(|c| c.inbox.max_text_chars = 10, Vec::new()).await?;
    let (s, _, m) = error_of(
        d.post("/api/v1/messages/inbound")
            .json(&json!({"from": "+15551234567", "text": "ünïcödé chars x"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(s, 422);
    assert!(
        m.contains("15 characters") && m.contains("inbox.max_text_chars"),
        "{m}"
    );
    Ok(())
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() -> TestResult {
    let d = TestDaemon::start().await?;
    let doc: Value = d.get("/api/v1/openapi.json").send().await?.json().await?;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let mut have = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            have.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let want: BTreeSet<String> = [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /api/v1/version",
        "GET /api/v1/openapi.json",
        "GET /api/v1/conversations",
        "GET /api/v1/conversations/{id}/messages",
        "POST /api/v1/messages/inbound",
        "POST /api/v1/messages/outbound",
        "GET /api/v1/events",
        "POST /api/v1/chat",
        // Home data.
        "GET /api/v1/calendar",
        "POST /api/v1/calendar",
        "GET /api/v1/calendar/{uid}",
        "PATCH /api/v1/calendar/{uid}",
        "DELETE /api/v1/calendar/{uid}",
        "GET /api/v1/calendar/free-slots",
        "POST /api/v1/calendar/import",
        "GET /api/v1/calendar/sync",
        "POST /api/v1/calendar/sync",
        "GET /calendar.ics",
        "GET /api/v1/contacts",
        "POST /api/v1/contacts",
        "GET /api/v1/contacts/{id}",
        "PATCH /api/v1/contacts/{id}",
        "DELETE /api/v1/contacts/{id}",
        "GET /api/v1/contacts/export.vcf",
        "POST /api/v1/contacts/import",
        "GET /api/v1/memories",
        "POST /api/v1/memories",
        "DELETE /api/v1/memories",
        "GET /api/v1/memories/{id}",
        "DELETE /api/v1/memories/{id}",
        "GET /api/v1/reminders",
        "POST /api/v1/reminders",
        "GET /api/v1/reminders/{id}",
        "PATCH /api/v1/reminders/{id}",
        "DELETE /api/v1/reminders/{id}",
        "POST /api/v1/reminders/{id}/snooze",
        "GET /api/v1/tasks",
        "POST /api/v1/tasks",
        "GET /api/v1/tasks/{uuid}",
        "PATCH /api/v1/tasks/{uuid}",
        "DELETE /api/v1/tasks/{uuid}",
        "POST /api/v1/tasks/{uuid}/complete",
        "POST /api/v1/tasks/{uuid}/annotations",
        "GET /api/v1/tasks/export",
        "POST /api/v1/tasks/import",
        "POST /api/v1/tasks/sync",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(have, want);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every documented route is actually served (not 404) by the router.
    for route in &want {
        let (method, path) = route.split_once(' ').unwrap_or_default();
        let path = path
            .replace("{id}", "1")
            .replace("{uid}", "no-such-uid")
            .replace("{uuid}", "00000000-0000-4000-8000-000000000000");
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let r = d
            .client
            .request(m, d.url(&path))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        let status = r.status().as_u16();
        let body = r.text().await?;
        // A 404 from a handler (no such record) is fine; the router's own is not.
        assert!(
            status != 404 || !body.contains("no route for"),
            "{route}: {status} {body}"
        );
        assert_ne!(status, 405, "{route}");
    }
    Ok(())
}
