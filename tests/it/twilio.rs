//! The Twilio channel through the real server. Every webhook is signed by Twilio's own helper
//! library (`twilio.request_validator.RequestValidator` in `LA_TEST_PYTHON`), never by our
//! code; the REST API is a local fake that speaks Twilio's formats (`Messages.json` with Basic
//! auth and a form body, `201` JSON resources, Twilio's JSON errors, media behind Basic auth)
//! and records every request. Covered: signature refusals store nothing, an SMS conversation
//! answered inline as TwiML, retried webhooks stored and answered once, late replies through
//! the REST API with status callbacks, outbox retries (server errors, timeouts, a permanent
//! 21211), long replies split (a retry sends only the rest), MMS media, and `<Gather>` calls.

use crate::common;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use common::{open_db, TestDaemon, TestResult};
use local_assistant::config::{Config, Secret, VoiceMode};
use local_assistant::domain::PhoneNumber;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

/// `AC` + 32 hex digits, as Twilio's account SIDs.
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "9f86d081884c7d659a2feaa0c55ad015";
/// Our Twilio number.
const OUR_NUMBER: &str = "+15550001111";
/// The URL Twilio reaches the box at: signatures cover it, requests go to the real address.
const PUBLIC_URL: &str = "https://assistant.example.com";
/// The owner's mobile (may use every tool).
const OWNER: &str = "+15557654321";
/// A contact's number (the contacts API checks numbers against the real numbering plan).
const ANNA: &str = "+12025550143";
/// Somebody unknown (may ask the time).
const STRANGER: &str = "+15559998888";
const GREETING: &str = "Hello, this is your home assistant. How can I help?";

/// A 2×2 RGB PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfd, 0xd4, 0x9a,
    0x73, 0x00, 0x00, 0x00, 0x12, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xc0,
    0x00, 0xc2, 0x0c, 0xff, 0x81, 0x00, 0x00, 0x1f, 0xee, 0x05, 0xfb, 0x0b, 0xd9, 0x68, 0x8b, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// What the fake CDN serves (another picture).
const CDN_PNG: &[u8] = b"\x89PNG\r\n\x1a\n another picture from the CDN";

type Form = Vec<(String, String)>;

fn form(pairs: &[(&str, &str)]) -> Form {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn field<'a>(f: &'a [(String, String)], key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn set(f: &mut Form, key: &str, value: &str) {
    match f.iter_mut().find(|(k, _)| k == key) {
        Some(pair) => pair.1 = value.to_owned(),
        None => f.push((key.to_owned(), value.to_owned())),
    }
}

/// `Basic base64(sid:token)`, what Twilio's REST API expects.
fn basic_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{AUTH_TOKEN}"))
    )
}

/// A Twilio-looking SID: `prefix` + 32 hex digits.
fn sid(prefix: &str, n: u32) -> String {
    format!("{prefix}{n:032x}")
}

// ---------------------------------------------------------------------------------------------
// Signatures by Twilio's Python helper library.

fn python() -> TestResult<String> {
    let py = std::env::var("LA_TEST_PYTHON").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv-test/bin/python")
            .display()
            .to_string()
    });
    let ok = Command::new(&py)
        .args(["-c", "import twilio.request_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return Err(format!(
            "{py} cannot import twilio: run `make test-deps` (it installs the TEST_PY list into .venv-test) or set LA_TEST_PYTHON"
        )
        .into());
    }
    Ok(py)
}

/// `X-Twilio-Signature` for `url` and the POST `params`, computed by
/// `RequestValidator(token).compute_signature(url, params)`.
fn sign(token: &str, url: &str, params: &[(String, String)]) -> TestResult<String> {
    const SCRIPT: &str = "import json, sys\n\
from twilio.request_validator import RequestValidator\n\
params = dict(json.loads(sys.argv[3]))\n\
print(RequestValidator(sys.argv[1]).compute_signature(sys.argv[2], params))\n";
    let pairs: Vec<[&str; 2]> = params
        .iter()
        .map(|(k, v)| [k.as_str(), v.as_str()])
        .collect();
    let out = Command::new(python()?)
        .arg("-c")
        .arg(SCRIPT)
        .arg(token)
        .arg(url)
        .arg(serde_json::to_string(&pairs)?)
        .output()?;
    if !out.status.success() {
        return Err(format!("python failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A webhook answer.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// POST `params` as a form to the daemon's `path`, with `signature` (if any) and no bearer
/// token, as Twilio calls.
async fn post_webhook(
    d: &TestDaemon,
    path: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> TestResult<Answer> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let mut req = d
        .client
        .post(d.url(path))
        .header(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .header(header::USER_AGENT, "TwilioProxy/1.1")
        .body(body);
    if let Some(s) = signature {
        req = req.header("X-Twilio-Signature", s);
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = r.text().await?;
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// POST `params` to `path`, signed over the public URL.
async fn signed(d: &TestDaemon, path: &str, params: &[(String, String)]) -> TestResult<Answer> {
    let sig = sign(AUTH_TOKEN, &format!("{PUBLIC_URL}{path}"), params)?;
    post_webhook(d, path, params, Some(&sig)).await
}

/// An inbound SMS webhook's parameters, as Twilio posts them.
fn sms_params(message_sid: &str, from: &str, body: &str) -> Form {
    form(&[
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", message_sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", message_sid),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", "SAN FRANCISCO"),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", OUR_NUMBER),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", message_sid),
        ("AccountSid", ACCOUNT),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ])
}

/// A message status callback's parameters.
fn status_params(message_sid: &str, to: &str, status: &str, error_code: Option<&str>) -> Form {
    let mut f = form(&[
        ("SmsSid", message_sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", to),
        ("MessageSid", message_sid),
        ("AccountSid", ACCOUNT),
        ("From", OUR_NUMBER),
        ("ApiVersion", "2010-04-01"),
    ]);
    if let Some(code) = error_code {
        set(&mut f, "ErrorCode", code);
    }
    f
}

/// A voice webhook's parameters.
fn voice_params(call_sid: &str, from: &str, status: &str) -> Form {
    form(&[
        ("AccountSid", ACCOUNT),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", status),
        ("Called", OUR_NUMBER),
        ("Caller", from),
        ("Direction", "inbound"),
        ("From", from),
        ("FromCountry", "US"),
        ("To", OUR_NUMBER),
        ("ToCountry", "US"),
    ])
}

// ---------------------------------------------------------------------------------------------
// TwiML.

/// One element of a TwiML document: its path from the root (`Response/Gather/Say`), its
/// attributes and its text (entities resolved).
#[derive(Debug, Clone)]
struct Node {
    path: String,
    attrs: Vec<(String, String)>,
    text: String,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a TwiML document (it must be well-formed XML with a `<Response>` root).
fn parse_twiml(doc: &str) -> TestResult<Vec<Node>> {
    use quick_xml::events::Event;
    if !doc.starts_with("<?xml") {
        return Err(format!("no XML declaration: {doc}").into());
    }
    let mut reader = quick_xml::Reader::from_str(doc);
    let mut nodes: Vec<Node> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    loop {
        let event = reader.read_event()?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let path = match open.last().and_then(|&i| nodes.get(i)) {
                    Some(parent) => format!("{}/{name}", parent.path),
                    None => name,
                };
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a?;
                    attrs.push((
                        String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?
                            .into_owned(),
                    ));
                }
                nodes.push(Node {
                    path,
                    attrs,
                    text: String::new(),
                });
                if matches!(event, Event::Start(_)) {
                    open.push(nodes.len() - 1);
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) => {
                let s = t.decode()?;
                if let Some(n) = open.last().and_then(|&i| nodes.get_mut(i)) {
                    n.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let s = match r.resolve_char_ref()? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode()?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                if let Some(n) = open.last().and_then(|&i| nodes.get_mut(i)) {
                    n.text.push_str(&s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err(format!("unclosed elements in {doc}").into());
    }
    if nodes.first().map(|n| n.path.as_str()) != Some("Response") {
        return Err(format!("the root is not <Response>: {doc}").into());
    }
    Ok(nodes)
}

/// The texts of the `<Message>`s of an SMS webhook's answer.
fn messages_of(a: &Answer) -> TestResult<Vec<String>> {
    if a.status != 200 || !a.content_type.starts_with("text/xml") {
        return Err(format!(
            "expected 200 TwiML, got {} {:?}: {}",
            a.status, a.content_type, a.body
        )
        .into());
    }
    let nodes = parse_twiml(&a.body)?;
    if let Some(other) = nodes
        .iter()
        .find(|n| n.path != "Response" && n.path != "Response/Message")
    {
        return Err(format!("unexpected <{}> in {}", other.path, a.body).into());
    }
    Ok(nodes
        .into_iter()
        .filter(|n| n.path == "Response/Message")
        .map(|n| n.text)
        .collect())
}

/// Whether the answer is an empty `<Response/>` (nothing said now).
fn is_empty_response(a: &Answer) -> TestResult<bool> {
    Ok(a.status == 200 && parse_twiml(&a.body)?.len() == 1)
}

// ---------------------------------------------------------------------------------------------
// A fake Twilio REST API.

/// What the fake does with the next `Messages.json` request for a recipient.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Accept it.
    Created,
    /// Answer `500` with Twilio's error 20500.
    ServerError,
    /// Take this long, then accept (longer than the client waits).
    Slow(Duration),
    /// Answer `400` with Twilio's error 21211 (invalid `To`).
    InvalidTo,
}

/// One request the fake received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    form: Form,
    status: u16,
    /// The SID it created (`Messages.json` answered 201).
    sid: Option<String>,
}

struct FakeState {
    /// Scripted answers per `To`; without one, a message is accepted.
    plans: Mutex<HashMap<String, VecDeque<Plan>>>,
    seen: Mutex<Vec<Seen>>,
    next_sid: AtomicU32,
}

struct FakeTwilio {
    url: String,
    state: Arc<FakeState>,
    task: JoinHandle<()>,
}

impl FakeTwilio {
    async fn start() -> TestResult<Self> {
        let state = Arc::new(FakeState {
            plans: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            next_sid: AtomicU32::new(1),
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(create_message),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                post(create_call),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}",
                get(fetch_media),
            )
            .route("/cdn/{object}", get(cdn))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake twilio stopped: {e}");
            }
        });
        Ok(Self { url, state, task })
    }

    /// Script the next answers to messages for `to`.
    fn plan(&self, to: &str, plans: &[Plan]) {
        let mut p = self
            .state
            .plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        p.entry(to.to_owned())
            .or_default()
            .extend(plans.iter().copied());
    }

    fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The `Messages.json` requests so far.
    fn message_requests(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path.ends_with("/Messages.json"))
            .collect()
    }

    /// A media URL under this account; `name` `ok` serves the PNG, anything else is a 404.
    fn media_url(&self, name: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{ACCOUNT}/Messages/{}/Media/ME{name}",
            self.url,
            sid("MM", 77)
        )
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn record(state: &FakeState, seen: Seen) {
    state
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(seen);
}

async fn create_message(
    State(state): State<Arc<FakeState>>,
    UrlPath(account): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f: Form = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let authorization = header_str(&headers, header::AUTHORIZATION);
    let mut seen = Seen {
        method: "POST".into(),
        path: format!("/2010-04-01/Accounts/{account}/Messages.json"),
        authorization: authorization.clone(),
        content_type: header_str(&headers, header::CONTENT_TYPE),
        form: f.clone(),
        status: 201,
        sid: None,
    };
    if authorization.as_deref() != Some(basic_auth().as_str()) || account != ACCOUNT {
        seen.status = 401;
        record(&state, seen);
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let to = field(&f, "To").unwrap_or("").to_owned();
    let from = field(&f, "From").unwrap_or("").to_owned();
    let text = field(&f, "Body").unwrap_or("").to_owned();
    if from != OUR_NUMBER {
        seen.status = 400;
        record(&state, seen);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21606,
            &format!("The From phone number {from} is not a valid, SMS-capable inbound phone number or short code for your account."),
        );
    }
    if text.is_empty() || text.chars().count() > 1600 {
        seen.status = 400;
        record(&state, seen);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    let plan = state
        .plans
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_mut(&to)
        .and_then(VecDeque::pop_front);
    match plan {
        Some(Plan::ServerError) => {
            seen.status = 500;
            record(&state, seen);
            return twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "An internal server error has occurred",
            );
        }
        Some(Plan::InvalidTo) => {
            seen.status = 400;
            record(&state, seen);
            return twilio_error(
                StatusCode::BAD_REQUEST,
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            );
        }
        Some(Plan::Slow(_) | Plan::Created) | None => {}
    }
    let message_sid = sid("SM", state.next_sid.fetch_add(1, Ordering::SeqCst));
    seen.sid = Some(message_sid.clone());
    record(&state, seen);
    if let Some(Plan::Slow(d)) = plan {
        tokio::time::sleep(d).await;
    }
    let now = "Mon, 16 Aug 2021 18:00:00 +0000";
    (
        StatusCode::CREATED,
        Json(json!({
            "account_sid": ACCOUNT,
            "api_version": "2010-04-01",
            "body": text,
            "date_created": now,
            "date_sent": null,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": from,
            "messaging_service_sid": null,
            "num_media": "0",
            "num_segments": "1",
            "price": null,
            "price_unit": "USD",
            "sid": message_sid,
            "status": "queued",
            "subresource_uris": {
                "media": format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/{message_sid}/Media.json")
            },
            "to": to,
            "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/{message_sid}.json"),
        })),
    )
        .into_response()
}

async fn fetch_media(
    State(state): State<Arc<FakeState>>,
    UrlPath((account, message, media)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let authorization = header_str(&headers, header::AUTHORIZATION);
    let mut seen = Seen {
        method: "GET".into(),
        path: format!("/2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}"),
        authorization: authorization.clone(),
        content_type: None,
        form: Vec::new(),
        status: 200,
        sid: None,
    };
    if authorization.as_deref() != Some(basic_auth().as_str()) || account != ACCOUNT {
        seen.status = 401;
        record(&state, seen);
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if media == "MEredirect" {
        // Twilio answers media requests with a redirect to its CDN.
        record(&state, seen);
        let host = header_str(&headers, header::HOST).unwrap_or_default();
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(
                header::LOCATION,
                format!("http://{host}/cdn/{account}-{message}.png"),
            )],
        )
            .into_response();
    }
    if media != "MEok" {
        seen.status = 404;
        record(&state, seen);
        return twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            &format!("The requested resource /2010-04-01/Accounts/{account}/Messages/{message}/Media/{media}.json was not found"),
        );
    }
    record(&state, seen);
    ([(header::CONTENT_TYPE, "image/png")], PNG.to_vec()).into_response()
}

/// The media CDN a media URL redirects to: a pre-signed URL that, like S3, refuses a request
/// that also carries an `Authorization` header.
async fn cdn(
    State(state): State<Arc<FakeState>>,
    UrlPath(object): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let authorization = header_str(&headers, header::AUTHORIZATION);
    let refused = authorization.is_some();
    record(
        &state,
        Seen {
            method: "GET".into(),
            path: format!("/cdn/{object}"),
            authorization,
            content_type: None,
            form: Vec::new(),
            status: if refused { 400 } else { 200 },
            sid: None,
        },
    );
    if refused {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/xml")],
            "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "image/png; charset=binary")],
        CDN_PNG.to_vec(),
    )
        .into_response()
}

async fn create_call(
    State(state): State<Arc<FakeState>>,
    UrlPath(account): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let f: Form = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let authorization = header_str(&headers, header::AUTHORIZATION);
    let mut seen = Seen {
        method: "POST".into(),
        path: format!("/2010-04-01/Accounts/{account}/Calls.json"),
        authorization: authorization.clone(),
        content_type: header_str(&headers, header::CONTENT_TYPE),
        form: f.clone(),
        status: 201,
        sid: None,
    };
    if authorization.as_deref() != Some(basic_auth().as_str()) || account != ACCOUNT {
        seen.status = 401;
        record(&state, seen);
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if field(&f, "Twiml").is_none() && field(&f, "Url").is_none() {
        seen.status = 400;
        record(&state, seen);
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21205,
            "Url, ApplicationSid or Twiml is required",
        );
    }
    let call_sid = sid("CA", state.next_sid.fetch_add(1, Ordering::SeqCst));
    seen.sid = Some(call_sid.clone());
    record(&state, seen);
    (
        StatusCode::CREATED,
        Json(json!({
            "account_sid": ACCOUNT,
            "api_version": "2010-04-01",
            "direction": "outbound-api",
            "from": field(&f, "From"),
            "sid": call_sid,
            "status": "queued",
            "to": field(&f, "To"),
            "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{call_sid}.json"),
        })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The daemon and the database.

async fn start(fake: &FakeTwilio, tweak: impl FnOnce(&mut Config)) -> TestResult<TestDaemon> {
    let number = PhoneNumber::parse(OUR_NUMBER)?;
    let owner = PhoneNumber::parse(OWNER)?;
    let api_base = fake.url.clone();
    TestDaemon::start_with(
        move |cfg| {
            cfg.twilio.enabled = true;
            cfg.twilio.account_sid = ACCOUNT.to_owned();
            cfg.twilio.auth_token = Secret::new(AUTH_TOKEN);
            cfg.twilio.phone_number = Some(number);
            cfg.twilio.public_url = PUBLIC_URL.to_owned();
            cfg.twilio.api_base = api_base;
            cfg.twilio.voice_mode = VoiceMode::Gather;
            cfg.memory.enabled = false;
            cfg.routing.owner_numbers = vec![owner];
            tweak(cfg);
        },
        Vec::new(),
    )
    .await
}

fn count(dir: &Path, sql: &str, params: impl rusqlite::Params) -> TestResult<i64> {
    Ok(open_db(dir)?.query_row(sql, params, |r| r.get(0))?)
}

/// Rows of `messages` and `inbox`.
fn stored(dir: &Path) -> TestResult<(i64, i64)> {
    Ok((
        count(dir, "SELECT count(*) FROM messages", [])?,
        count(dir, "SELECT count(*) FROM inbox", [])?,
    ))
}

/// Poll `f` until it gives a value (a deadline, not a sleep, decides).
async fn until<T>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> TestResult<Option<T>>,
) -> TestResult<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An outbox row: (status, attempts, last_error, message_id).
type OutboxRow = (String, i64, Option<String>, Option<i64>);

fn outbox_row(dir: &Path, id: i64) -> TestResult<OutboxRow> {
    Ok(open_db(dir)?.query_row(
        "SELECT status, attempts, last_error, message_id FROM outbox WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?)
}

async fn wait_outbox(dir: &Path, id: i64, status: &str) -> TestResult<OutboxRow> {
    let mut last = None;
    until(
        &format!("outbox {id} to be {status}"),
        Duration::from_secs(20),
        || {
            let row = outbox_row(dir, id)?;
            if row.0 == status {
                return Ok(Some(row));
            }
            if row.0 == "delivered" || row.0 == "dead" {
                return Err(format!("outbox {id} ended {row:?}, wanted {status}").into());
            }
            last = Some(row);
            Ok(None)
        },
    )
    .await
    .map_err(|e| format!("{e} (last seen {last:?})").into())
}

/// A provider item: (sid, kind, outbox_id, message_id, address, status, error_code).
type Item = (
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
    String,
    Option<String>,
);

fn items(dir: &Path, where_: &str, param: &dyn rusqlite::ToSql) -> TestResult<Vec<Item>> {
    let conn = open_db(dir)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT sid, kind, outbox_id, message_id, address, status, error_code
           FROM provider_items WHERE provider = 'twilio' AND {where_} ORDER BY created_at, sid"
    ))?;
    let rows = stmt
        .query_map([param], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn message_status(dir: &Path, id: i64) -> TestResult<String> {
    Ok(
        open_db(dir)?.query_row("SELECT status FROM messages WHERE id = ?1", [id], |r| {
            r.get(0)
        })?,
    )
}

/// Queue an outbound SMS through the API; returns the outbox id and the message id.
async fn queue_sms(d: &TestDaemon, to: &str, text: &str) -> TestResult<(i64, i64)> {
    let r = d
        .post("/api/v1/messages/outbound")
        .json(&json!({"channel": "twilio", "to": to, "text": text}))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    assert_eq!(status, 202, "{v}");
    let outbox = v["outbox_id"].as_i64().ok_or("no outbox_id")?;
    let message = v["id"].as_i64().ok_or("no id")?;
    Ok((outbox, message))
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Only requests signed over the public URL with the account's token are read; every other
/// one is refused with 403 before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_or_mis_signed_webhooks_are_refused_and_store_nothing() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let url = format!("{PUBLIC_URL}/twilio/sms");
    let p = sms_params(&sid("SM", 0x100), STRANGER, "what time is it");
    let good = sign(AUTH_TOKEN, &url, &p)?;
    assert_eq!(stored(&d.dir)?, (0, 0));

    let mut tampered = p.clone();
    set(&mut tampered, "Body", "what time is it in Tokyo");
    let mut other_sender = p.clone();
    set(&mut other_sender, "From", OWNER);
    let mut extra = p.clone();
    set(&mut extra, "Injected", "1");
    let wrong_token = sign("0123456789abcdef0123456789abcdef", &url, &p)?;
    let other_path = sign(AUTH_TOKEN, &format!("{PUBLIC_URL}/twilio/voice"), &p)?;
    let other_host = sign(AUTH_TOKEN, "https://evil.example.net/twilio/sms", &p)?;
    let local_addr = sign(AUTH_TOKEN, &d.url("/twilio/sms"), &p)?;
    let cases: Vec<(&str, &Form, Option<&str>)> = vec![
        ("no signature header", &p, None),
        ("an empty signature", &p, Some("")),
        ("the body changed after signing", &tampered, Some(&good)),
        (
            "the sender changed after signing",
            &other_sender,
            Some(&good),
        ),
        ("a parameter added after signing", &extra, Some(&good)),
        ("signed with another token", &p, Some(&wrong_token)),
        ("signed for another path", &p, Some(&other_path)),
        ("signed for another host", &p, Some(&other_host)),
        (
            "signed for the daemon's local address",
            &p,
            Some(&local_addr),
        ),
    ];
    for (what, params, sig) in cases {
        let a = post_webhook(&d, "/twilio/sms", params, sig).await?;
        assert_eq!(a.status, 403, "{what}: {} {}", a.status, a.body);
        assert_eq!(stored(&d.dir)?, (0, 0), "{what}: something was stored");
    }
    // The API token is no substitute for a signature.
    let a = d
        .client
        .post(d.url("/twilio/sms"))
        .bearer_auth(common::TOKEN)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(p.iter())
                .finish(),
        )
        .send()
        .await?;
    assert_eq!(a.status(), 403);
    // Status callbacks and calls are guarded the same way.
    let st = status_params(&sid("SM", 0x101), OWNER, "delivered", None);
    let a = post_webhook(&d, "/twilio/status", &st, Some(&good)).await?;
    assert_eq!(a.status, 403, "status callback: {}", a.body);
    let call = voice_params(&sid("CA", 0x102), STRANGER, "ringing");
    let a = post_webhook(&d, "/twilio/voice", &call, None).await?;
    assert_eq!(a.status, 403, "voice: {}", a.body);
    assert_eq!(stored(&d.dir)?, (0, 0));

    // The genuine request is read, stored and answered.
    let a = post_webhook(&d, "/twilio/sms", &p, Some(&good)).await?;
    let said = messages_of(&a)?;
    assert_eq!(said.len(), 1, "{}", a.body);
    assert!(said[0].starts_with("It's "), "{said:?}");
    assert_eq!(
        count(
            &d.dir,
            "SELECT count(*) FROM messages WHERE channel = 'twilio' AND direction = 'inbound' AND body = 'what time is it'",
            [],
        )?,
        1
    );
    assert_eq!(stored(&d.dir)?.1, 1);
    // Twilio may sign the URL with the default port; its validator accepts both forms.
    let q = sms_params(&sid("SM", 0x103), STRANGER, "what time is it");
    let with_port = sign(
        AUTH_TOKEN,
        "https://assistant.example.com:443/twilio/sms",
        &q,
    )?;
    let a = post_webhook(&d, "/twilio/sms", &q, Some(&with_port)).await?;
    assert_eq!(a.status, 200, "signed with :443: {}", a.body);
    assert_eq!(stored(&d.dir)?.1, 2);
    Ok(())
}

/// A slot-filling conversation over SMS: every reply comes back inline in the webhook's TwiML
/// (nothing through the REST API), and the appointment is booked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_conversation_books_an_appointment_with_inline_replies() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let turns = [
        ("book an appointment", "What is the appointment?"),
        ("dentist", "When is dentist?"),
    ];
    for (i, (text, want)) in turns.iter().enumerate() {
        let n = u32::try_from(i)? + 0x200;
        let a = signed(&d, "/twilio/sms", &sms_params(&sid("SM", n), OWNER, text)).await?;
        assert_eq!(messages_of(&a)?, vec![(*want).to_owned()], "{text}");
    }
    let a = signed(
        &d,
        "/twilio/sms",
        &sms_params(&sid("SM", 0x2ff), OWNER, "next friday at 3pm"),
    )
    .await?;
    let said = messages_of(&a)?;
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].starts_with("Booked dentist "), "{said:?}");
    assert!(said[0].contains("at 3 PM until 4 PM"), "{said:?}");

    let list: Value = d
        .get("/api/v1/calendar?q=dentist")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["title"], "dentist", "{list}");
    assert!(
        list["items"][0]["start"]
            .as_str()
            .is_some_and(|s| s.contains("T15:00:00")),
        "{list}"
    );

    // One conversation on the twilio channel with the owner: three in, three out, delivered
    // (the outbox records the hand-over to the webhook just after the webhook answers).
    let dir = d.dir.clone();
    let rows = until(
        "the replies marked delivered",
        Duration::from_secs(10),
        || {
            let conn = open_db(&dir)?;
            let rows: Vec<(String, String, String)> = conn
                .prepare(
                    "SELECT m.direction, m.body, m.status FROM messages m
                   JOIN conversations c ON c.id = m.conversation_id
                  WHERE c.channel = 'twilio' AND c.address = ?1 ORDER BY m.id",
                )?
                .query_map([OWNER], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            let done = rows.len() == 6
                && rows
                    .iter()
                    .filter(|r| r.0 == "outbound")
                    .all(|r| r.2 == "delivered");
            Ok(done.then_some(rows))
        },
    )
    .await?;
    let directions: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        directions,
        ["inbound", "outbound", "inbound", "outbound", "inbound", "outbound"],
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .filter(|r| r.0 == "outbound")
            .all(|r| r.2 == "delivered"),
        "{rows:?}"
    );
    assert!(
        fake.message_requests().is_empty(),
        "inline replies must not also go through the REST API: {:?}",
        fake.message_requests()
    );
    Ok(())
}

/// Twilio retries a webhook it did not get an answer to: the same MessageSid is stored and
/// answered once, whether the retry comes after the answer or at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_webhook_is_stored_and_answered_once() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let message = sid("SM", 0x300);
    let p = sms_params(&message, OWNER, "set a timer for 5 minutes");
    let first = signed(&d, "/twilio/sms", &p).await?;
    assert_eq!(messages_of(&first)?, vec!["Timer set for 5 minutes."]);
    let again = signed(&d, "/twilio/sms", &p).await?;
    assert!(is_empty_response(&again)?, "{}", again.body);

    let dir = d.dir.clone();
    let once = |key: &str| -> TestResult<(i64, i64, i64)> {
        Ok((
            count(
                &dir,
                "SELECT count(*) FROM inbox WHERE channel = 'twilio' AND idempotency_key = ?1",
                [key],
            )?,
            count(
                &dir,
                "SELECT count(*) FROM messages WHERE channel = 'twilio' AND direction = 'inbound'",
                [],
            )?,
            count(
                &dir,
                "SELECT count(*) FROM messages WHERE channel = 'twilio' AND direction = 'outbound'",
                [],
            )?,
        ))
    };
    assert_eq!(once(&message)?, (1, 1, 1));
    assert_eq!(
        count(
            &d.dir,
            "SELECT count(*) FROM outbox WHERE channel = 'twilio'",
            []
        )?,
        1
    );

    // Two deliveries of the same webhook at once: one answer between them.
    let message2 = sid("SM", 0x301);
    let p2 = sms_params(&message2, OWNER, "what time is it");
    let (a, b) = tokio::join!(
        signed(&d, "/twilio/sms", &p2),
        signed(&d, "/twilio/sms", &p2)
    );
    let (a, b) = (messages_of(&a?)?, messages_of(&b?)?);
    let answers: Vec<&String> = a.iter().chain(b.iter()).collect();
    assert_eq!(answers.len(), 1, "{a:?} / {b:?}");
    assert!(answers[0].starts_with("It's "), "{answers:?}");
    assert_eq!(once(&message2)?, (1, 2, 2));
    assert!(fake.message_requests().is_empty(), "{:?}", fake.seen());
    Ok(())
}

/// With no time to answer inline the webhook says nothing, the reply goes out through
/// `Messages.json`, and status callbacks move it to delivered or failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_goes_through_the_rest_api_and_status_callbacks_track_it() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |c| c.twilio.reply_budget = Duration::ZERO).await?;
    let a = signed(
        &d,
        "/twilio/sms",
        &sms_params(&sid("SM", 0x400), OWNER, "set a timer for 5 minutes"),
    )
    .await?;
    assert!(is_empty_response(&a)?, "{}", a.body);

    let sent = until("a Messages.json request", Duration::from_secs(20), || {
        Ok(fake.message_requests().first().cloned())
    })
    .await?;
    assert_eq!(sent.status, 201);
    assert_eq!(sent.authorization.as_deref(), Some(basic_auth().as_str()));
    assert!(
        sent.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
        "{sent:?}"
    );
    assert_eq!(field(&sent.form, "From"), Some(OUR_NUMBER), "{sent:?}");
    assert_eq!(field(&sent.form, "To"), Some(OWNER), "{sent:?}");
    assert_eq!(
        field(&sent.form, "Body"),
        Some("Timer set for 5 minutes."),
        "{sent:?}"
    );
    assert_eq!(
        field(&sent.form, "StatusCallback"),
        Some("https://assistant.example.com/twilio/status"),
        "{sent:?}"
    );
    let sm = sent.sid.clone().ok_or("no sid")?;

    // The provider's id is recorded against our outbound message and its outbox entry.
    let outbox: i64 = open_db(&d.dir)?.query_row(
        "SELECT id FROM outbox WHERE channel = 'twilio' AND recipient = ?1",
        [OWNER],
        |r| r.get(0),
    )?;
    let (_, attempts, _, message) = wait_outbox(&d.dir, outbox, "delivered").await?;
    assert_eq!(attempts, 1);
    let message = message.ok_or("the outbox entry has no message")?;
    let body: String = open_db(&d.dir)?.query_row(
        "SELECT body FROM messages WHERE id = ?1 AND direction = 'outbound'",
        [message],
        |r| r.get(0),
    )?;
    assert_eq!(body, "Timer set for 5 minutes.");
    let item = until("the provider item", Duration::from_secs(5), || {
        Ok(items(&d.dir, "sid = ?1", &sm)?.into_iter().next())
    })
    .await?;
    assert_eq!(
        item,
        (
            sm.clone(),
            "message".to_owned(),
            Some(outbox),
            Some(message),
            OWNER.to_owned(),
            "queued".to_owned(),
            None
        )
    );

    // A forged callback changes nothing.
    let forged = status_params(&sm, OWNER, "undelivered", Some("30003"));
    let bad = sign(
        "0123456789abcdef0123456789abcdef",
        &format!("{PUBLIC_URL}/twilio/status"),
        &forged,
    )?;
    let a = post_webhook(&d, "/twilio/status", &forged, Some(&bad)).await?;
    assert_eq!(a.status, 403);
    assert_eq!(items(&d.dir, "sid = ?1", &sm)?[0].5, "queued");

    // sent, then delivered.
    let a = signed(
        &d,
        "/twilio/status",
        &status_params(&sm, OWNER, "sent", None),
    )
    .await?;
    assert!((200..300).contains(&a.status), "{} {}", a.status, a.body);
    assert_eq!(items(&d.dir, "sid = ?1", &sm)?[0].5, "sent");
    let a = signed(
        &d,
        "/twilio/status",
        &status_params(&sm, OWNER, "delivered", None),
    )
    .await?;
    assert!((200..300).contains(&a.status), "{} {}", a.status, a.body);
    assert_eq!(items(&d.dir, "sid = ?1", &sm)?[0].5, "delivered");
    assert_eq!(message_status(&d.dir, message)?, "delivered");

    // A second reply that the carrier cannot deliver.
    let a = signed(
        &d,
        "/twilio/sms",
        &sms_params(&sid("SM", 0x401), OWNER, "set a timer for 10 minutes"),
    )
    .await?;
    assert!(is_empty_response(&a)?, "{}", a.body);
    let sent2 = until(
        "a second Messages.json request",
        Duration::from_secs(20),
        || Ok(fake.message_requests().get(1).cloned()),
    )
    .await?;
    assert_eq!(
        field(&sent2.form, "Body"),
        Some("Timer set for 10 minutes."),
        "{sent2:?}"
    );
    let sm2 = sent2.sid.clone().ok_or("no sid")?;
    let item2 = until("the second provider item", Duration::from_secs(20), || {
        Ok(items(&d.dir, "sid = ?1", &sm2)?.into_iter().next())
    })
    .await?;
    let message2 = item2.3.ok_or("the item has no message")?;
    let outbox2 = item2.2.ok_or("the item has no outbox entry")?;
    wait_outbox(&d.dir, outbox2, "delivered").await?;
    let a = signed(
        &d,
        "/twilio/status",
        &status_params(&sm2, OWNER, "undelivered", Some("30003")),
    )
    .await?;
    assert!((200..300).contains(&a.status), "{} {}", a.status, a.body);
    let item2 = items(&d.dir, "sid = ?1", &sm2)?;
    assert_eq!(item2[0].5, "undelivered");
    assert_eq!(item2[0].6.as_deref(), Some("30003"));
    assert_eq!(message_status(&d.dir, message2)?, "failed");
    // The first message is untouched.
    assert_eq!(message_status(&d.dir, message)?, "delivered");

    // A callback for something we never sent is acknowledged and ignored.
    let a = signed(
        &d,
        "/twilio/status",
        &status_params(&sid("SM", 0xdead), OWNER, "delivered", None),
    )
    .await?;
    assert!((200..300).contains(&a.status), "{} {}", a.status, a.body);
    assert_eq!(count(&d.dir, "SELECT count(*) FROM provider_items", [])?, 2);
    Ok(())
}

/// Twilio answering 500 is retried by the outbox until it accepts the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_server_errors_are_retried_until_delivered() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let to = "+15550002001";
    fake.plan(to, &[Plan::ServerError, Plan::ServerError]);
    let (outbox, message) = queue_sms(&d, to, "The heating is back on.").await?;
    let (_, attempts, last_error, _) = wait_outbox(&d.dir, outbox, "delivered").await?;
    assert_eq!(attempts, 3);
    assert_eq!(last_error, None);
    let seen = fake.message_requests();
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [500, 500, 201],
        "{seen:?}"
    );
    for s in &seen {
        assert_eq!(s.authorization.as_deref(), Some(basic_auth().as_str()));
        assert_eq!(field(&s.form, "To"), Some(to));
        assert_eq!(field(&s.form, "From"), Some(OUR_NUMBER));
        assert_eq!(field(&s.form, "Body"), Some("The heating is back on."));
    }
    let sm = seen[2].sid.clone().ok_or("no sid")?;
    let got = items(&d.dir, "outbox_id = ?1", &outbox)?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, sm);
    assert_eq!(got[0].3, Some(message));
    assert_eq!(message_status(&d.dir, message)?, "delivered");
    Ok(())
}

/// A request Twilio does not answer within `request_timeout` is abandoned and retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_request_that_times_out_is_retried() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |c| {
        c.twilio.request_timeout = Duration::from_millis(300);
        c.outbox.attempt_timeout = Duration::from_secs(10);
    })
    .await?;
    let to = "+15550002002";
    fake.plan(to, &[Plan::Slow(Duration::from_secs(3))]);
    let (outbox, message) = queue_sms(&d, to, "Dinner is ready.").await?;
    let (_, attempts, _, _) = wait_outbox(&d.dir, outbox, "delivered").await?;
    assert_eq!(attempts, 2);
    let seen = fake.message_requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Only the answer the daemon read is recorded.
    let got = items(&d.dir, "outbox_id = ?1", &outbox)?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(Some(got[0].0.clone()), seen[1].sid);
    assert_eq!(message_status(&d.dir, message)?, "delivered");
    Ok(())
}

/// An invalid number (21211) cannot succeed later: dead-lettered after one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_number_is_dead_lettered_without_retries() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let to = "+15550002003";
    fake.plan(to, &[Plan::InvalidTo]);
    let (outbox, message) = queue_sms(&d, to, "Hello?").await?;
    let (_, attempts, last_error, _) = wait_outbox(&d.dir, outbox, "dead").await?;
    assert_eq!(attempts, 1);
    let last_error = last_error.unwrap_or_default();
    assert!(last_error.contains("21211"), "{last_error}");
    assert_eq!(fake.message_requests().len(), 1);
    assert!(items(&d.dir, "outbox_id = ?1", &outbox)?.is_empty());
    assert_eq!(message_status(&d.dir, message)?, "failed");
    Ok(())
}

/// A reply over Twilio's 1600-character limit goes out in parts; a retry after a failed part
/// sends only the parts not yet accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_reply_is_split_and_a_retry_sends_only_the_rest() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let to = "+15550002004";
    let text = (1..=40)
        .map(|i| format!("Sentence number {i} of the weekly household summary."))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.chars().count() > 1600 && text.chars().count() < 3200);
    // The first part is accepted, the second fails once.
    fake.plan(to, &[Plan::Created, Plan::ServerError]);
    let (outbox, message) = queue_sms(&d, to, &text).await?;
    let (_, attempts, _, _) = wait_outbox(&d.dir, outbox, "delivered").await?;
    assert_eq!(attempts, 2);
    let seen = fake.message_requests();
    let bodies: Vec<&str> = seen
        .iter()
        .map(|s| field(&s.form, "Body").unwrap_or(""))
        .collect();
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        [201, 500, 201],
        "{bodies:?}"
    );
    assert_eq!(
        bodies[1], bodies[2],
        "the retry sends the failed part again"
    );
    assert!(
        bodies.iter().all(|p| p.chars().count() <= 1600),
        "{bodies:?}"
    );
    assert!(
        bodies[0].ends_with('.'),
        "split at a sentence end: {:?}",
        bodies[0]
    );
    assert_eq!(format!("{} {}", bodies[0], bodies[2]), text);
    let got = items(&d.dir, "outbox_id = ?1", &outbox)?;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|i| i.3 == Some(message)), "{got:?}");
    Ok(())
}

/// An MMS picture is fetched with the account's credentials into the media store before the
/// message is stored; one that cannot be fetched is kept as its URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mms_media_is_fetched_into_the_media_store() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let url = fake.media_url("ok");
    let message = sid("MM", 0x600);
    let mut p = sms_params(&message, OWNER, "");
    set(&mut p, "NumMedia", "1");
    set(&mut p, "MediaContentType0", "image/png");
    set(&mut p, "MediaUrl0", &url);
    let a = signed(&d, "/twilio/sms", &p).await?;
    let said = messages_of(&a)?;
    assert_eq!(said.len(), 1, "{}", a.body);
    assert!(
        said[0].starts_with("Thanks, I got your picture"),
        "{said:?}"
    );

    let hash = hex::encode(Sha256::digest(PNG));
    let reference = format!("media/{hash}.png");
    assert_eq!(std::fs::read(d.dir.join(&reference))?, PNG);
    let media: String = open_db(&d.dir)?.query_row(
        "SELECT m.media FROM inbox i JOIN messages m ON m.id = i.message_id
          WHERE i.channel = 'twilio' AND i.idempotency_key = ?1",
        [&message],
        |r| r.get(0),
    )?;
    let media: Vec<String> = serde_json::from_str(&media)?;
    assert_eq!(media, vec![reference]);
    let fetched: Vec<Seen> = fake
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert_eq!(fetched.len(), 1, "{fetched:?}");
    assert_eq!(fetched[0].status, 200);
    assert_eq!(
        fetched[0].authorization.as_deref(),
        Some(basic_auth().as_str())
    );

    // Behind Twilio's redirect to its CDN, where the account's credentials must not go.
    let message3 = sid("MM", 0x602);
    let mut p = sms_params(&message3, OWNER, "");
    set(&mut p, "NumMedia", "1");
    set(&mut p, "MediaContentType0", "image/png");
    set(&mut p, "MediaUrl0", &fake.media_url("redirect"));
    let a = signed(&d, "/twilio/sms", &p).await?;
    let said = messages_of(&a)?;
    assert!(
        said.first()
            .is_some_and(|s| s.starts_with("Thanks, I got your picture")),
        "{said:?}"
    );
    let cdn_ref = format!("media/{}.png", hex::encode(Sha256::digest(CDN_PNG)));
    let media: String = open_db(&d.dir)?.query_row(
        "SELECT m.media FROM inbox i JOIN messages m ON m.id = i.message_id
          WHERE i.channel = 'twilio' AND i.idempotency_key = ?1",
        [&message3],
        |r| r.get(0),
    )?;
    let media: Vec<String> = serde_json::from_str(&media)?;
    assert_eq!(media, vec![cdn_ref.clone()]);
    assert_eq!(std::fs::read(d.dir.join(&cdn_ref))?, CDN_PNG);
    let cdn: Vec<Seen> = fake
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/cdn/"))
        .collect();
    assert_eq!(cdn.len(), 1, "{cdn:?}");
    assert_eq!(cdn[0].authorization, None, "credentials leaked to the CDN");

    // Gone at Twilio: the message is still stored, with the URL to fetch it later.
    let missing = fake.media_url("gone");
    let message2 = sid("MM", 0x601);
    let mut p = sms_params(&message2, OWNER, "");
    set(&mut p, "NumMedia", "1");
    set(&mut p, "MediaContentType0", "image/jpeg");
    set(&mut p, "MediaUrl0", &missing);
    let a = signed(&d, "/twilio/sms", &p).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let media: String = open_db(&d.dir)?.query_row(
        "SELECT m.media FROM inbox i JOIN messages m ON m.id = i.message_id
          WHERE i.channel = 'twilio' AND i.idempotency_key = ?1",
        [&message2],
        |r| r.get(0),
    )?;
    let media: Vec<String> = serde_json::from_str(&media)?;
    assert_eq!(media, vec![format!("unfetched:{missing}")]);
    let files = std::fs::read_dir(d.dir.join("media"))?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(files, 2, "only the fetched pictures are in the media store");
    Ok(())
}

/// A call in gather mode: a greeting inside a speech `<Gather>` that posts back to the voice
/// webhook, then one answer per thing said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gather_call_greets_and_answers() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let call = sid("CA", 0x800);
    let a = signed(
        &d,
        "/twilio/voice",
        &voice_params(&call, STRANGER, "ringing"),
    )
    .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("text/xml"), "{}", a.content_type);
    let nodes = parse_twiml(&a.body)?;
    let gather = nodes
        .iter()
        .find(|n| n.path == "Response/Gather")
        .ok_or_else(|| format!("no <Gather>: {}", a.body))?;
    assert_eq!(gather.attr("input"), Some("speech dtmf"), "{}", a.body);
    assert_eq!(
        gather.attr("action"),
        Some("https://assistant.example.com/twilio/voice"),
        "{}",
        a.body
    );
    assert_eq!(gather.attr("method"), Some("POST"));
    let say = nodes
        .iter()
        .find(|n| n.path == "Response/Gather/Say")
        .ok_or_else(|| format!("no greeting: {}", a.body))?;
    assert_eq!(say.text, GREETING);

    let mut heard = voice_params(&call, STRANGER, "in-progress");
    set(&mut heard, "SpeechResult", "what time is it");
    set(&mut heard, "Confidence", "0.92");
    let a = signed(&d, "/twilio/voice", &heard).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let nodes = parse_twiml(&a.body)?;
    let say = nodes
        .iter()
        .find(|n| n.path == "Response/Gather/Say")
        .ok_or_else(|| format!("no answer inside a <Gather>: {}", a.body))?;
    assert!(say.text.starts_with("It's "), "{}", a.body);
    let gather = nodes
        .iter()
        .find(|n| n.path == "Response/Gather")
        .ok_or("no <Gather>")?;
    assert_eq!(
        gather.attr("action"),
        Some("https://assistant.example.com/twilio/voice")
    );
    assert_eq!(
        count(
            &d.dir,
            "SELECT count(*) FROM messages WHERE channel = 'twilio-call' AND direction = 'inbound' AND body = 'what time is it'",
            [],
        )?,
        1
    );
    // The incoming call is recorded, and its status callbacks follow it.
    assert_eq!(items(&d.dir, "sid = ?1", &call)?[0].5, "ringing");
    let mut done = voice_params(&call, STRANGER, "completed");
    set(&mut done, "CallDuration", "31");
    let a = signed(&d, "/twilio/status", &done).await?;
    assert!((200..300).contains(&a.status), "{} {}", a.status, a.body);
    assert_eq!(items(&d.dir, "sid = ?1", &call)?[0].5, "completed");
    Ok(())
}

/// A known caller is greeted by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_caller_is_greeted_by_name() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let r = d
        .post("/api/v1/contacts")
        .json(&json!({"display_name": "Anna Berg", "phones": [{"number": ANNA}]}))
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await?;
    assert_eq!(status, 201, "{body}");
    let a = signed(
        &d,
        "/twilio/voice",
        &voice_params(&sid("CA", 0x850), ANNA, "ringing"),
    )
    .await?;
    let nodes = parse_twiml(&a.body)?;
    let say = nodes
        .iter()
        .find(|n| n.path == "Response/Gather/Say")
        .ok_or_else(|| format!("no greeting: {}", a.body))?;
    assert_eq!(say.text, format!("Hello Anna Berg. {GREETING}"));
    Ok(())
}

/// A reminder on the calls channel places a call through `Calls.json` whose TwiML reads it
/// out and asks back to `/twilio/voice?outbox=N`; pressing 2 ends it, and the call's status
/// callback is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_call_is_placed_and_answered() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |_| {}).await?;
    let r = d
        .post("/api/v1/reminders")
        .json(&json!({
            "text": "take the pills",
            "in_seconds": 1,
            "deliver_to": {"channel": "twilio-call", "address": OWNER},
        }))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    assert_eq!(status, 201, "{v}");
    let placed = until("a Calls.json request", Duration::from_secs(20), || {
        Ok(fake
            .seen()
            .into_iter()
            .find(|s| s.path.ends_with("/Calls.json")))
    })
    .await?;
    assert_eq!(placed.status, 201, "{placed:?}");
    assert_eq!(placed.authorization.as_deref(), Some(basic_auth().as_str()));
    assert_eq!(field(&placed.form, "From"), Some(OUR_NUMBER));
    assert_eq!(field(&placed.form, "To"), Some(OWNER));
    assert_eq!(
        field(&placed.form, "StatusCallback"),
        Some("https://assistant.example.com/twilio/status")
    );
    let doc = field(&placed.form, "Twiml").ok_or("no Twiml")?;
    let nodes = parse_twiml(doc)?;
    assert!(
        nodes
            .iter()
            .any(|n| n.path == "Response/Gather/Say" && n.text.contains("take the pills")),
        "{doc}"
    );
    let action = nodes
        .iter()
        .find(|n| n.path == "Response/Gather")
        .and_then(|n| n.attr("action"))
        .ok_or_else(|| format!("no <Gather action>: {doc}"))?
        .to_owned();
    let path = action
        .strip_prefix(PUBLIC_URL)
        .filter(|p| p.starts_with("/twilio/voice?outbox="))
        .ok_or_else(|| format!("unexpected action {action}"))?;
    let call_sid = placed.sid.clone().ok_or("no call sid")?;
    let item = until("the call's provider item", Duration::from_secs(10), || {
        Ok(items(&d.dir, "sid = ?1", &call_sid)?.into_iter().next())
    })
    .await?;
    assert_eq!(item.1, "call");
    assert_eq!(item.4, OWNER);

    // The callee presses 2: done. (Twilio signs the action URL with its query.)
    let mut answer = form(&[
        ("AccountSid", ACCOUNT),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", &call_sid),
        ("CallStatus", "in-progress"),
        ("Called", OWNER),
        ("Caller", OUR_NUMBER),
        ("Direction", "outbound-api"),
        ("From", OUR_NUMBER),
        ("To", OWNER),
        ("Digits", "2"),
    ]);
    let a = signed(&d, path, &answer).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let nodes = parse_twiml(&a.body)?;
    let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
    assert_eq!(
        paths,
        ["Response", "Response/Say", "Response/Hangup"],
        "{}",
        a.body
    );
    // The same answer signed without the query is refused.
    let sig = sign(AUTH_TOKEN, &format!("{PUBLIC_URL}/twilio/voice"), &answer)?;
    let refused = post_webhook(&d, path, &answer, Some(&sig)).await?;
    assert_eq!(refused.status, 403);

    set(&mut answer, "CallStatus", "completed");
    answer.retain(|(k, _)| k != "Digits");
    set(&mut answer, "CallDuration", "12");
    let a = signed(&d, "/twilio/status", &answer).await?;
    assert!((200..300).contains(&a.status), "{} {}", a.status, a.body);
    assert_eq!(items(&d.dir, "sid = ?1", &call_sid)?[0].5, "completed");
    Ok(())
}

/// `voice_mode = "stream"` without speech models still answers calls, with `<Gather>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_mode_without_speech_models_falls_back_to_gather() -> TestResult {
    let fake = FakeTwilio::start().await?;
    let d = start(&fake, |c| c.twilio.voice_mode = VoiceMode::Stream).await?;
    let a = signed(
        &d,
        "/twilio/voice",
        &voice_params(&sid("CA", 0x900), STRANGER, "ringing"),
    )
    .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let nodes = parse_twiml(&a.body)?;
    assert!(
        !nodes.iter().any(|n| n.path.contains("Stream")),
        "{}",
        a.body
    );
    let gather = nodes
        .iter()
        .find(|n| n.path == "Response/Gather")
        .ok_or_else(|| format!("no <Gather>: {}", a.body))?;
    assert_eq!(
        gather.attr("action"),
        Some("https://assistant.example.com/twilio/voice")
    );
    Ok(())
}
