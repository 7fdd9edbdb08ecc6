//! The Vonage channel through the real server: JWT-signed webhooks (every token made by PyJWT,
//! and checked against Vonage's own verifier, `vonage_jwt.verify_signature`), inbound SMS as
//! the Messages API posts them, replies through a fake Messages API (`POST /v1/messages`),
//! status callbacks, outbox retries and dead letters, and calls in `input` (gather) mode.
//!
//! The WebSocket call and the stream-mode answer NCCO are covered by `calls.rs`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use local_assistant::config::{Config, Secret, VoiceMode};
use local_assistant::domain::PhoneNumber;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::common::{self, TestDaemon, TestResult};

const SECRET: &str = "vonage-signature-secret-for-tests";
const API_KEY: &str = "a1b2c3d4";
const API_SECRET: &str = "vonage-api-secret-for-tests";
const OUR_NUMBER: &str = "447700900000";
const CALLER: &str = "447700900001";
const CALLER_E164: &str = "+447700900001";
const PUBLIC: &str = "https://assistant.example.com";
const APPLICATION: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";

// ---------------------------------------------------------------------------------------------
// A fake Vonage Messages API.

/// One request the fake Messages API received.
#[derive(Debug, Clone)]
struct Sent {
    auth: String,
    content_type: String,
    body: Value,
    /// The status it was answered with.
    status: u16,
}

#[derive(Clone, Default)]
struct FakeState {
    sent: Arc<Mutex<Vec<Sent>>>,
    /// Statuses to answer with, in order; 202 once it is empty.
    script: Arc<Mutex<VecDeque<u16>>>,
    accepted: Arc<AtomicU64>,
    /// `POST /v1/calls` requests: (Authorization header, JSON body).
    calls: Arc<Mutex<Vec<(String, Value)>>>,
}

/// `POST /v1/messages` on 127.0.0.1, answering as Vonage does; stops when dropped.
struct FakeVonage {
    url: String,
    state: FakeState,
    task: JoinHandle<()>,
}

impl Drop for FakeVonage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `message_uuid` of the `n`-th accepted message (the first is the documented example).
fn message_uuid(n: u64) -> String {
    format!("aaaaaaaa-bbbb-4ccc-8ddd-{:012x}", 0x0123_4567_89ab_u64 + n)
}

/// An error body as Vonage writes it (RFC 7807 style).
fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> Response {
    (
        status,
        Json(json!({
            "type": format!("https://developer.vonage.com/api-errors{kind}"),
            "title": title,
            "detail": detail,
            "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
        })),
    )
        .into_response()
}

fn expected_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{API_KEY}:{API_SECRET}"))
    )
}

async fn fake_messages(State(s): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let text = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let auth = text(header::AUTHORIZATION);
    let content_type = text(header::CONTENT_TYPE);
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = if auth != expected_auth() {
        401
    } else {
        s.script
            .lock()
            .ok()
            .and_then(|mut q| q.pop_front())
            .unwrap_or(202)
    };
    if let Ok(mut log) = s.sent.lock() {
        log.push(Sent {
            auth,
            content_type,
            body: parsed,
            status,
        });
    }
    match status {
        202 => {
            let n = s.accepted.fetch_add(1, Ordering::SeqCst);
            (
                StatusCode::ACCEPTED,
                Json(json!({"message_uuid": message_uuid(n)})),
            )
                .into_response()
        }
        401 => problem(
            StatusCode::UNAUTHORIZED,
            "#unauthorized",
            "Unauthorized",
            "You did not provide correct credentials.",
        ),
        422 => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "/messages#1150",
            "Invalid params",
            "The value of one or more parameters is invalid.",
        ),
        _ => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "#internal-error",
            "Internal Error",
            "Something went wrong.",
        ),
    }
}

/// `POST /v1/calls` (Voice API): records the request, answers 201 as Vonage does.
async fn fake_calls(State(s): State<FakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = match s.calls.lock() {
        Ok(mut l) => {
            l.push((auth, parsed));
            l.len()
        }
        Err(_) => 0,
    };
    (
        StatusCode::CREATED,
        Json(
            json!({"uuid": format!("63f61863-4a51-4f6b-86e1-46edebcf{n:04}"),
                    "status": "started", "direction": "outbound",
                    "conversation_uuid": format!("CON-f972836a-550f-45fa-956c-12a2ab5b{n:04}")}),
        ),
    )
        .into_response()
}

impl FakeVonage {
    async fn start() -> TestResult<Self> {
        let state = FakeState::default();
        let app = Router::new()
            .route("/v1/messages", post(fake_messages))
            .route("/v1/calls", post(fake_calls))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake Vonage stopped: {e}");
            }
        });
        Ok(Self { url, state, task })
    }

    fn calls(&self) -> Vec<(String, Value)> {
        match self.state.calls.lock() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn sent(&self) -> Vec<Sent> {
        match self.state.sent.lock() {
            Ok(l) => l.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Answer the next requests with these statuses (then 202 again).
    fn script(&self, statuses: &[u16]) {
        if let Ok(mut q) = self.state.script.lock() {
            q.extend(statuses.iter().copied());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon, Python and polling.

async fn daemon(fake: &FakeVonage) -> TestResult<TestDaemon> {
    daemon_with(fake, |_| {}).await
}

async fn daemon_with(
    fake: &FakeVonage,
    tweak: impl FnOnce(&mut Config) + Send,
) -> TestResult<TestDaemon> {
    let api_base = fake.url.clone();
    TestDaemon::start_with(
        move |cfg: &mut Config| {
            cfg.memory.enabled = false;
            // The sender lives here (an unknown sender may not set timers).
            cfg.routing.household_numbers = PhoneNumber::parse(CALLER_E164).into_iter().collect();
            cfg.vonage.enabled = true;
            cfg.vonage.signature_secret = Secret::new(SECRET);
            cfg.vonage.api_key = API_KEY.into();
            cfg.vonage.api_secret = Secret::new(API_SECRET);
            cfg.vonage.phone_number = PhoneNumber::parse("+447700900000").ok();
            cfg.vonage.public_url = PUBLIC.into();
            cfg.vonage.api_base = api_base;
            cfg.vonage.voice_mode = VoiceMode::Gather;
            tweak(cfg);
        },
        Vec::new(),
    )
    .await
}

fn python() -> String {
    std::env::var("LA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run_py(script: &str, args: &[&str], stdin: &[u8]) -> TestResult<String> {
    use std::io::Write;
    let mut child = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "python failed (run `make test-deps`): {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// How a webhook JWT is made.
struct Mint<'a> {
    /// Signs with this secret.
    secret: &'a str,
    /// `iat` this many seconds ago.
    age: i64,
    api_key: &'a str,
    /// `HS256`, or `none` for an unsigned token.
    alg: &'a str,
}

impl Default for Mint<'_> {
    fn default() -> Self {
        Self {
            secret: SECRET,
            age: 0,
            api_key: API_KEY,
            alg: "HS256",
        }
    }
}

/// A PyJWT token and what Vonage's verifier says of it with our signature secret.
struct Token {
    jwt: String,
    /// `True`, `False` or `error: <exception>`.
    vonage_says: String,
}

const MINT_PY: &str = r#"
import sys, time, uuid, hashlib, jwt, vonage_jwt
secret, age, api_key, alg, ours = sys.argv[1:6]
body = sys.stdin.buffer.read()
claims = {'iat': int(time.time()) - int(age), 'jti': str(uuid.uuid4()), 'iss': 'Vonage',
          'api_key': api_key, 'application_id': sys.argv[6],
          'payload_hash': hashlib.sha256(body).hexdigest()}
if alg == 'none':
    token = jwt.encode(claims, None, algorithm='none')
else:
    token = jwt.encode(claims, secret, algorithm=alg)
try:
    verdict = str(vonage_jwt.verify_signature(token, ours))
except Exception as e:
    verdict = 'error: ' + type(e).__name__
print(token)
print(verdict)
"#;

/// A webhook JWT over `body`, made by PyJWT as Vonage makes them.
fn mint(m: &Mint<'_>, body: &[u8]) -> TestResult<Token> {
    let out = run_py(
        MINT_PY,
        &[
            m.secret,
            &m.age.to_string(),
            m.api_key,
            m.alg,
            SECRET,
            APPLICATION,
        ],
        body,
    )?;
    let mut lines = out.lines();
    let jwt = lines.next().ok_or("no token")?.trim().to_owned();
    let vonage_says = lines.next().ok_or("no verdict")?.trim().to_owned();
    Ok(Token { jwt, vonage_says })
}

/// A valid token over `body`, which Vonage's verifier accepts too.
fn valid(body: &[u8]) -> TestResult<String> {
    let t = mint(&Mint::default(), body)?;
    assert_eq!(t.vonage_says, "True", "vonage_jwt rejects our valid token");
    Ok(t.jwt)
}

/// POST `body` (JSON) to `path` with `Authorization: Bearer <jwt>` if any.
async fn send_webhook(
    d: &TestDaemon,
    path: &str,
    body: &str,
    jwt: Option<&str>,
) -> TestResult<(u16, String)> {
    let mut req = d
        .client
        .post(d.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    if let Some(t) = jwt {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await?))
}

/// POST `body`, signed with a fresh valid JWT.
async fn post_signed(d: &TestDaemon, path: &str, body: &str) -> TestResult<(u16, String)> {
    let jwt = valid(body.as_bytes())?;
    send_webhook(d, path, body, Some(&jwt)).await
}

/// An inbound SMS as the Messages API posts it.
fn inbound_sms(uuid: &str, text: &str) -> String {
    json!({
        "channel": "sms",
        "message_uuid": uuid,
        "to": OUR_NUMBER,
        "from": CALLER,
        "text": text,
        "timestamp": "2026-11-29T10:00:00Z",
        "message_type": "text",
        "sms": {"num_messages": "1", "count_total": "1"},
    })
    .to_string()
}

/// One value from the daemon's database.
fn one<T: rusqlite::types::FromSql>(
    d: &TestDaemon,
    sql: &str,
    params: impl rusqlite::Params,
) -> TestResult<T> {
    Ok(common::open_db(&d.dir)?.query_row(sql, params, |r| r.get(0))?)
}

/// Poll `check` until it yields a value, for at most `secs` seconds.
async fn poll<T>(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> TestResult<Option<T>>,
) -> TestResult<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Wait until the fake Messages API has received `n` requests; returns them all.
async fn wait_sent(fake: &FakeVonage, n: usize) -> TestResult<Vec<Sent>> {
    poll(&format!("{n} requests to the Messages API"), 20, || {
        let s = fake.sent();
        Ok((s.len() >= n).then_some(s))
    })
    .await
}

/// Wait until outbox entry `id` has `status`; returns (attempts, last_error).
async fn wait_outbox(d: &TestDaemon, id: i64, status: &str) -> TestResult<(i64, Option<String>)> {
    poll(&format!("outbox {id} to be {status}"), 20, || {
        let row: (String, i64, Option<String>) = common::open_db(&d.dir)?.query_row(
            "SELECT status, attempts, last_error FROM outbox WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok((row.0 == status).then_some((row.1, row.2)))
    })
    .await
}

/// Queue `text` to the caller on the `vonage` channel: (message id, outbox id).
async fn send_outbound(d: &TestDaemon, text: &str) -> TestResult<(i64, i64)> {
    let r = d
        .post("/api/v1/messages/outbound")
        .json(&json!({"channel": "vonage", "to": CALLER_E164, "text": text}))
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await?;
    Ok((
        v["id"].as_i64().ok_or("no id")?,
        v["outbox_id"].as_i64().ok_or("no outbox_id")?,
    ))
}

/// The Messages API item recorded for an outbox entry: (sid, status, error_code, message_id).
type Item = (String, String, Option<String>, Option<i64>);

async fn wait_item(d: &TestDaemon, outbox: i64) -> TestResult<Item> {
    poll(&format!("the provider item of outbox {outbox}"), 20, || {
        let conn = common::open_db(&d.dir)?;
        let mut stmt = conn.prepare(
            "SELECT sid, status, error_code, message_id FROM provider_items
              WHERE provider = 'vonage' AND outbox_id = ?1",
        )?;
        let rows: Vec<Item> = stmt
            .query_map([outbox], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows.into_iter().next())
    })
    .await
}

fn assert_sms(sent: &Sent, text: &str) {
    assert_eq!(sent.auth, expected_auth(), "Basic api_key:api_secret");
    assert!(
        sent.content_type.starts_with("application/json"),
        "{}",
        sent.content_type
    );
    assert_eq!(
        sent.body,
        json!({"message_type": "text", "channel": "sms", "to": CALLER,
               "from": OUR_NUMBER, "text": text}),
        "the Messages API request"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_inbound_sms_is_stored_once_and_answered_through_the_messages_api() -> TestResult {
    let fake = FakeVonage::start().await?;
    let d = daemon(&fake).await?;
    let uuid = "aaaaaaaa-bbbb-4ccc-8ddd-000000000001";
    let body = inbound_sms(uuid, "set a timer for 5 minutes");
    let (status, text) = post_signed(&d, "/vonage/sms", &body).await?;
    assert_eq!(status, 200, "{text}");

    // Stored once: an inbox row on `vonage` for the E.164 sender.
    let stored = "SELECT count(*) FROM inbox i
                    JOIN messages m ON m.id = i.message_id
                    JOIN conversations c ON c.id = m.conversation_id
                   WHERE i.channel = 'vonage' AND i.idempotency_key = ?1
                     AND c.channel = 'vonage' AND c.address = ?2
                     AND m.direction = 'inbound' AND m.body = 'set a timer for 5 minutes'";
    assert_eq!(one::<i64>(&d, stored, (uuid, CALLER_E164))?, 1);

    // The reply goes out through the Messages API, authenticated, numbers without a plus.
    let sent = wait_sent(&fake, 1).await?;
    assert_sms(&sent[0], "Timer set for 5 minutes.");
    assert_eq!(
        one::<i64>(
            &d,
            "SELECT count(*) FROM reminders WHERE kind = 'timer'",
            []
        )?,
        1
    );
    let outbox: i64 = one(
        &d,
        "SELECT id FROM outbox WHERE channel = 'vonage' AND recipient = ?1",
        [CALLER_E164],
    )?;
    wait_outbox(&d, outbox, "delivered").await?;
    let (sid, item_status, _, message) = wait_item(&d, outbox).await?;
    assert_eq!(sid, message_uuid(0), "the uuid Vonage answered");
    assert_eq!(item_status, "submitted");
    let reply: String = one(
        &d,
        "SELECT body FROM messages WHERE id = ?1 AND direction = 'outbound'",
        [message.ok_or("the item has no message")?],
    )?;
    assert_eq!(reply, "Timer set for 5 minutes.");

    // Vonage retries the webhook (same message_uuid, a new JWT): accepted, nothing new.
    let (status, text) = post_signed(&d, "/vonage/sms", &body).await?;
    assert_eq!(status, 200, "{text}");
    // A later message is answered; by then a reply to the retry would have gone out too.
    let (status, text) = post_signed(
        &d,
        "/vonage/sms",
        &inbound_sms("aaaaaaaa-bbbb-4ccc-8ddd-000000000002", "what time is it"),
    )
    .await?;
    assert_eq!(status, 200, "{text}");
    let sent = wait_sent(&fake, 2).await?;
    let second = sent[1].body["text"].as_str().unwrap_or("");
    assert!(second.starts_with("It's "), "{second}");
    poll("both replies to be delivered", 20, || {
        let n: i64 = one(
            &d,
            "SELECT count(*) FROM outbox WHERE channel = 'vonage' AND status = 'delivered'",
            [],
        )?;
        Ok((n == 2).then_some(()))
    })
    .await?;
    assert_eq!(
        fake.sent().len(),
        2,
        "no second reply to the retried webhook"
    );
    assert_eq!(
        one::<i64>(
            &d,
            "SELECT count(*) FROM inbox WHERE channel = 'vonage'",
            []
        )?,
        2
    );
    assert_eq!(
        one::<i64>(
            &d,
            "SELECT count(*) FROM messages WHERE body = 'set a timer for 5 minutes'",
            []
        )?,
        1
    );
    assert_eq!(
        one::<i64>(
            &d,
            "SELECT count(*) FROM reminders WHERE kind = 'timer'",
            []
        )?,
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_without_a_valid_jwt_are_refused_before_anything_is_stored() -> TestResult {
    let fake = FakeVonage::start().await?;
    let d = daemon(&fake).await?;
    let body = inbound_sms("aaaaaaaa-bbbb-4ccc-8ddd-000000000010", "what time is it");
    let bytes = body.as_bytes();
    let nothing_stored = |d: &TestDaemon| -> TestResult {
        assert_eq!(one::<i64>(d, "SELECT count(*) FROM messages", [])?, 0);
        assert_eq!(one::<i64>(d, "SELECT count(*) FROM inbox", [])?, 0);
        Ok(())
    };

    // No Authorization header.
    let (status, why) = send_webhook(&d, "/vonage/sms", &body, None).await?;
    assert_eq!(status, 401, "{why}");
    assert!(why.contains("Authorization"), "{why}");
    nothing_stored(&d)?;

    // Signed with another secret: Vonage's verifier says False too.
    let other = mint(
        &Mint {
            secret: "another-signature-secret",
            ..Mint::default()
        },
        bytes,
    )?;
    assert_eq!(other.vonage_says, "False");
    let (status, why) = send_webhook(&d, "/vonage/sms", &body, Some(&other.jwt)).await?;
    assert_eq!(status, 401, "{why}");
    assert!(why.contains("signature"), "{why}");
    nothing_stored(&d)?;

    // Issued an hour ago (max age 300 s). Vonage's verifier checks the signature only (no
    // `exp` in the token), so it says True: the age is the application's check.
    let old = mint(
        &Mint {
            age: 3600,
            ..Mint::default()
        },
        bytes,
    )?;
    assert_eq!(old.vonage_says, "True");
    let (status, why) = send_webhook(&d, "/vonage/sms", &body, Some(&old.jwt)).await?;
    assert_eq!(status, 401, "{why}");
    assert!(why.contains("expired"), "{why}");
    nothing_stored(&d)?;

    // The body changed after signing: payload_hash no longer matches (the signature still
    // verifies, so Vonage's verifier says True; the hash is the application's check).
    let signed = mint(&Mint::default(), bytes)?;
    assert_eq!(signed.vonage_says, "True");
    let changed = body.replace("what time is it", "set a timer for 9 minutes");
    assert_ne!(changed, body);
    let (status, why) = send_webhook(&d, "/vonage/sms", &changed, Some(&signed.jwt)).await?;
    assert_eq!(status, 401, "{why}");
    assert!(why.contains("payload_hash"), "{why}");
    nothing_stored(&d)?;

    // `alg: none`: Vonage's verifier refuses it (an error), so do we.
    let none = mint(
        &Mint {
            alg: "none",
            ..Mint::default()
        },
        bytes,
    )?;
    assert!(none.jwt.ends_with('.'), "an unsigned token: {}", none.jwt);
    assert!(
        none.vonage_says.starts_with("error"),
        "{}",
        none.vonage_says
    );
    let (status, why) = send_webhook(&d, "/vonage/sms", &body, Some(&none.jwt)).await?;
    assert_eq!(status, 401, "{why}");
    assert!(why.contains("none"), "{why}");
    nothing_stored(&d)?;

    // Correctly signed, but for another account's API key.
    let foreign = mint(
        &Mint {
            api_key: "ffffffff",
            ..Mint::default()
        },
        bytes,
    )?;
    assert_eq!(foreign.vonage_says, "True");
    let (status, why) = send_webhook(&d, "/vonage/sms", &body, Some(&foreign.jwt)).await?;
    assert_eq!(status, 401, "{why}");
    assert!(why.contains("API key"), "{why}");
    nothing_stored(&d)?;

    // The refusals were about the tokens: the same body with a valid JWT is taken.
    let (status, why) = post_signed(&d, "/vonage/sms", &body).await?;
    assert_eq!(status, 200, "{why}");
    assert_eq!(one::<i64>(&d, "SELECT count(*) FROM inbox", [])?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_mark_messages_delivered_or_failed() -> TestResult {
    let fake = FakeVonage::start().await?;
    let d = daemon(&fake).await?;
    let (message, outbox) = send_outbound(&d, "Your parcel has arrived.").await?;
    wait_outbox(&d, outbox, "delivered").await?;
    assert_sms(&wait_sent(&fake, 1).await?[0], "Your parcel has arrived.");
    let (sid, status, _, linked) = wait_item(&d, outbox).await?;
    assert_eq!(sid, message_uuid(0));
    assert_eq!(status, "submitted");
    assert_eq!(linked, Some(message));

    let status_body = |uuid: &str, status: &str, error: Option<Value>| {
        let mut v = json!({
            "message_uuid": uuid, "to": CALLER, "from": OUR_NUMBER,
            "timestamp": "2026-11-29T10:00:05.000Z", "status": status, "channel": "sms",
            "usage": {"currency": "EUR", "price": "0.0333"},
        });
        if let (Some(e), Some(o)) = (error, v.as_object_mut()) {
            o.insert("error".into(), e);
        }
        v.to_string()
    };
    let item = |sid: &str| -> TestResult<(String, Option<String>)> {
        Ok(common::open_db(&d.dir)?.query_row(
            "SELECT status, error_code FROM provider_items WHERE provider = 'vonage' AND sid = ?1",
            [sid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    };
    let message_status =
        |id: i64| one::<String>(&d, "SELECT status FROM messages WHERE id = ?1", [id]);

    // Delivered.
    let (code, text) =
        post_signed(&d, "/vonage/event", &status_body(&sid, "delivered", None)).await?;
    assert!((200..300).contains(&code), "{code} {text}");
    assert_eq!(item(&sid)?, ("delivered".to_owned(), None));
    assert_eq!(message_status(message)?, "delivered");

    // Rejected, with Vonage's error object: the message failed.
    let (message2, outbox2) = send_outbound(&d, "Dinner is at seven.").await?;
    wait_outbox(&d, outbox2, "delivered").await?;
    let (sid2, _, _, _) = wait_item(&d, outbox2).await?;
    assert_eq!(sid2, message_uuid(1));
    let error = json!({
        "type": "https://developer.vonage.com/api-errors/messages#1320",
        "title": "1320",
        "detail": "Message failed because the number is barred.",
        "instance": "bf0ca0bf927b3b52e3cb03217e1a1ddf",
    });
    // A forged rejection (wrong secret) changes nothing.
    let forged_body = status_body(&sid2, "rejected", Some(error.clone()));
    let forged = mint(
        &Mint {
            secret: "another-signature-secret",
            ..Mint::default()
        },
        forged_body.as_bytes(),
    )?;
    assert_eq!(forged.vonage_says, "False");
    let (code, _) = send_webhook(&d, "/vonage/event", &forged_body, Some(&forged.jwt)).await?;
    assert_eq!(code, 401);
    assert_eq!(item(&sid2)?.0, "submitted");
    assert_eq!(message_status(message2)?, "delivered");

    let (code, text) = post_signed(&d, "/vonage/event", &forged_body).await?;
    assert!((200..300).contains(&code), "{code} {text}");
    let (s, e) = item(&sid2)?;
    assert_eq!(s, "rejected");
    assert_eq!(
        e.as_deref(),
        Some("https://developer.vonage.com/api-errors/messages#1320")
    );
    assert_eq!(message_status(message2)?, "failed");
    // The first message is untouched.
    assert_eq!(message_status(message)?, "delivered");
    Ok(())
}

/// Vonage's Messages API reports `undeliverable` when it could not reach the provider; the
/// message did not arrive, so it must count as failed like `rejected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_status_marks_the_message_failed() -> TestResult {
    let fake = FakeVonage::start().await?;
    let d = daemon(&fake).await?;
    let (message, outbox) = send_outbound(&d, "The heating is on.").await?;
    wait_outbox(&d, outbox, "delivered").await?;
    let (sid, _, _, _) = wait_item(&d, outbox).await?;
    let body = json!({
        "message_uuid": sid, "to": CALLER, "from": OUR_NUMBER,
        "timestamp": "2026-11-29T10:00:05.000Z", "status": "undeliverable", "channel": "sms",
        "error": {"type": "https://developer.vonage.com/api-errors/messages#1300",
                  "title": "1300", "detail": "Vonage could not reach the provider."},
    })
    .to_string();
    let (code, text) = post_signed(&d, "/vonage/event", &body).await?;
    assert!((200..300).contains(&code), "{code} {text}");
    let item: String = one(
        &d,
        "SELECT status FROM provider_items WHERE provider = 'vonage' AND sid = ?1",
        [&sid],
    )?;
    assert_eq!(item, "undeliverable");
    let status: String = one(&d, "SELECT status FROM messages WHERE id = ?1", [message])?;
    assert_eq!(
        status, "failed",
        "an undeliverable message is not delivered"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sends_are_retried_and_refused_ones_dead_lettered() -> TestResult {
    let fake = FakeVonage::start().await?;
    let d = daemon(&fake).await?;

    // 500, 500, then 202: delivered on the third attempt, with the same request each time.
    fake.script(&[500, 500]);
    let (message, outbox) = send_outbound(&d, "Take the bins out.").await?;
    let (attempts, last_error) = wait_outbox(&d, outbox, "delivered").await?;
    assert_eq!(attempts, 3);
    assert_eq!(last_error, None);
    let sent = fake.sent();
    assert_eq!(
        sent.iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![500, 500, 202]
    );
    for s in &sent {
        assert_sms(s, "Take the bins out.");
    }
    let (sid, _, _, linked) = wait_item(&d, outbox).await?;
    assert_eq!(sid, message_uuid(0));
    assert_eq!(linked, Some(message));
    assert_eq!(
        one::<i64>(
            &d,
            "SELECT count(*) FROM provider_items WHERE outbox_id = ?1",
            [outbox]
        )?,
        1,
        "one Vonage message for the entry"
    );

    // 422: refused for good after one attempt.
    fake.script(&[422]);
    let (message, outbox) = send_outbound(&d, "Water the plants.").await?;
    let (attempts, last_error) = wait_outbox(&d, outbox, "dead").await?;
    assert_eq!(attempts, 1);
    let last_error = last_error.unwrap_or_default();
    assert!(
        last_error.contains("422") && last_error.contains("Invalid params"),
        "{last_error}"
    );
    let sent = fake.sent();
    assert_eq!(sent.len(), 4, "no retry after a 422");
    assert_eq!(sent[3].status, 422);
    assert_eq!(
        one::<String>(&d, "SELECT status FROM messages WHERE id = ?1", [message])?,
        "failed"
    );
    assert_eq!(
        one::<i64>(
            &d,
            "SELECT count(*) FROM provider_items WHERE outbox_id = ?1",
            [outbox]
        )?,
        0
    );
    Ok(())
}

/// "It's 10:05 AM." as the fast path says it, in the test time zone.
fn spoken_time(at: jiff::Timestamp) -> TestResult<String> {
    let z = at.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin")?);
    let (h, m) = (z.hour(), z.minute());
    let t = match (h, m) {
        (12, 0) => "noon".to_owned(),
        (0, 0) => "midnight".to_owned(),
        _ => {
            let suffix = if h < 12 { "AM" } else { "PM" };
            let h12 = if h % 12 == 0 { 12 } else { h % 12 };
            if m == 0 {
                format!("{h12} {suffix}")
            } else {
                format!("{h12}:{m:02} {suffix}")
            }
        }
    };
    Ok(format!("It's {t}."))
}

fn assert_input_ncco(ncco: &Value) {
    let actions = ncco.as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(actions, 2, "{ncco}");
    assert_eq!(ncco[0]["action"], "talk", "{ncco}");
    assert_eq!(ncco[1]["action"], "input", "{ncco}");
    assert_eq!(ncco[1]["type"], json!(["speech", "dtmf"]), "{ncco}");
    assert_eq!(
        ncco[1]["eventUrl"],
        json!(["https://assistant.example.com/vonage/event"]),
        "{ncco}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_gather_mode_is_a_loop_of_talk_and_input() -> TestResult {
    let fake = FakeVonage::start().await?;
    let d = daemon(&fake).await?;
    let call = "63f61863-4a51-4f6b-86e1-46edebcf9356";
    let conversation = "CON-f972836a-550f-45fa-956c-12a2ab5b7d22";

    // The answer webhook (GET, signed, no body).
    let answer = d
        .client
        .get(d.url(&format!(
            "/vonage/answer?to={OUR_NUMBER}&from={CALLER}&uuid={call}&conversation_uuid={conversation}"
        )))
        .header("Authorization", format!("Bearer {}", valid(b"")?))
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let ncco: Value = answer.json().await?;
    assert_input_ncco(&ncco);
    assert_eq!(
        ncco[0]["text"],
        "Hello, this is your home assistant. How can I help?"
    );

    // The caller speaks: the `input` result as Vonage posts it to the eventUrl.
    let said = |speech: Value, digits: &str| {
        json!({
            "from": CALLER, "to": OUR_NUMBER, "uuid": call, "conversation_uuid": conversation,
            "timestamp": "2026-11-29T10:00:10.000Z",
            "dtmf": {"digits": digits, "timed_out": false},
            "speech": speech,
        })
        .to_string()
    };
    let before = jiff::Timestamp::now();
    let (code, text) = post_signed(
        &d,
        "/vonage/event",
        &said(
            json!({"results": [{"confidence": "0.9", "text": "what time is it"}]}),
            "",
        ),
    )
    .await?;
    let after = jiff::Timestamp::now();
    assert_eq!(code, 200, "{text}");
    let ncco: Value = serde_json::from_str(&text)?;
    assert_input_ncco(&ncco);
    let spoken = ncco[0]["text"].as_str().unwrap_or("");
    assert!(
        spoken == spoken_time(before)? || spoken == spoken_time(after)?,
        "{spoken:?}, expected {:?}",
        spoken_time(before)?
    );

    // Nothing heard: asked again.
    let (code, text) = post_signed(
        &d,
        "/vonage/event",
        &said(json!({"timeout_reason": "start_timeout"}), ""),
    )
    .await?;
    assert_eq!(code, 200, "{text}");
    let ncco: Value = serde_json::from_str(&text)?;
    assert_input_ncco(&ncco);
    assert_eq!(
        ncco[0]["text"],
        "I did not catch that. Please say it again."
    );

    // A timer by voice: set, and said.
    let (code, text) = post_signed(
        &d,
        "/vonage/event",
        &said(
            json!({"results": [{"confidence": "0.8", "text": "set a timer for 5 minutes"}]}),
            "",
        ),
    )
    .await?;
    assert_eq!(code, 200, "{text}");
    let ncco: Value = serde_json::from_str(&text)?;
    assert_input_ncco(&ncco);
    assert_eq!(ncco[0]["text"], "Timer set for 5 minutes.");
    assert_eq!(
        one::<i64>(
            &d,
            "SELECT count(*) FROM reminders WHERE kind = 'timer'",
            []
        )?,
        1
    );

    // The turns belong to the call's conversation, and the answers were spoken, not texted.
    assert_eq!(
        one::<i64>(
            &d,
            "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
              WHERE c.channel = 'vonage-call' AND c.address = ?1 AND m.direction = 'inbound'",
            [CALLER_E164]
        )?,
        2
    );
    assert_eq!(one::<i64>(&d, "SELECT count(*) FROM outbox", [])?, 0);
    assert!(fake.sent().is_empty(), "no SMS for a spoken answer");

    // An unsigned input result is refused.
    let (code, _) = send_webhook(
        &d,
        "/vonage/event",
        &said(
            json!({"results": [{"confidence": "0.9", "text": "set a timer for 1 minute"}]}),
            "",
        ),
        None,
    )
    .await?;
    assert_eq!(code, 401);
    assert_eq!(
        one::<i64>(
            &d,
            "SELECT count(*) FROM reminders WHERE kind = 'timer'",
            []
        )?,
        1
    );
    Ok(())
}

/// A reminder for `vonage-call` places a call through the Voice API, authenticated by an
/// RS256 JWT made with the application's private key (checked here by PyJWT with the public
/// key); the callee's "done" (key 2) ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_call_is_placed_with_an_rs256_application_jwt() -> TestResult {
    let fake = FakeVonage::start().await?;
    let keys = tempfile::tempdir()?;
    let key = keys.path().join("private.key");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .status()?;
    assert!(made.success(), "openssl genpkey failed");
    let key_for_cfg = key.clone();
    let d = daemon_with(&fake, move |cfg| {
        cfg.vonage.application = Some((APPLICATION.into(), key_for_cfg));
    })
    .await?;
    let r = d
        .post("/api/v1/messages/outbound")
        .json(&json!({"channel": "vonage-call", "to": CALLER_E164, "text": "Time to take the pills."}))
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    let outbox = r.json::<Value>().await?["outbox_id"]
        .as_i64()
        .ok_or("no outbox_id")?;
    let (auth, body) = poll("the call request", 20, || {
        Ok(fake.calls().into_iter().next())
    })
    .await?;
    let token = auth.strip_prefix("Bearer ").ok_or("no bearer token")?;
    let app = run_py(
        "import sys, jwt\nfrom cryptography.hazmat.primitives import serialization\nkey = serialization.load_pem_private_key(open(sys.argv[2], 'rb').read(), None)\nc = jwt.decode(sys.argv[1], key.public_key(), algorithms=['RS256'])\nassert c['exp'] > c['iat'] and c['jti']\nprint(c['application_id'])",
        &[token, &key.to_string_lossy()],
        b"",
    )?;
    assert_eq!(app, APPLICATION);
    assert_eq!(body["to"][0]["number"], CALLER, "{body}");
    assert_eq!(body["from"]["number"], OUR_NUMBER, "{body}");
    assert_eq!(body["ncco"][0]["text"], "Time to take the pills.", "{body}");
    let input = &body["ncco"][2];
    assert_eq!(input["action"], "input", "{body}");
    let event = input["eventUrl"][0].as_str().ok_or("no eventUrl")?;
    assert_eq!(event, format!("{PUBLIC}/vonage/event?outbox={outbox}"));
    let uuid = poll("the call item", 20, || {
        let conn = common::open_db(&d.dir)?;
        let r: Option<(String, String)> = conn
            .query_row(
                "SELECT sid, status FROM provider_items WHERE provider = 'vonage' AND kind = 'call' AND outbox_id = ?1",
                [outbox],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        Ok(r)
    })
    .await?;
    assert_eq!(uuid.1, "started");
    // The callee presses 2: done, goodbye.
    let answer = json!({"from": OUR_NUMBER, "to": CALLER, "uuid": uuid.0,
                        "conversation_uuid": "CON-1", "dtmf": {"digits": "2", "timed_out": false},
                        "speech": {"results": []}})
    .to_string();
    let path = format!("/vonage/event?outbox={outbox}");
    let (code, text) = post_signed(&d, &path, &answer).await?;
    assert_eq!(code, 200, "{text}");
    let ncco: Value = serde_json::from_str(&text)?;
    assert_eq!(ncco[0]["action"], "talk", "{ncco}");
    assert_eq!(ncco[0]["text"], "Good. Goodbye.", "{ncco}");
    // A key that is not a private key is a permanent failure, named.
    std::fs::write(&key, "not a key")?;
    let r = d
        .post("/api/v1/messages/outbound")
        .json(&json!({"channel": "vonage-call", "to": CALLER_E164, "text": "Again."}))
        .send()
        .await?;
    let bad = r.json::<Value>().await?["outbox_id"]
        .as_i64()
        .ok_or("no outbox_id")?;
    let err = poll("the dead letter", 20, || {
        let conn = common::open_db(&d.dir)?;
        Ok(conn
            .query_row(
                "SELECT last_error FROM outbox WHERE id = ?1 AND status = 'dead'",
                [bad],
                |r| r.get::<_, String>(0),
            )
            .ok())
    })
    .await?;
    assert!(err.contains("PKCS#8"), "{err}");
    Ok(())
}
