//! Cloud telephony: a Twilio Media Stream's turn latency, and signed SMS webhook throughput.
//!
//! * **media stream** — the daemon in-process with the default speech models (Silero VAD,
//!   Whisper tiny.en, the Piper voice) answers a simulated Twilio Media Stream: a WebSocket
//!   client sends the caller's audio as Twilio does (base64 μ-law at 8 kHz, one 20 ms `media`
//!   frame every 20 ms, silence between requests) and measures **last inbound speech frame →
//!   first outbound `media` frame** for fast-path commands (median, p90, max over
//!   `BENCH_TURNS`, default 10). "Last speech frame" is the frame holding the utterance's last
//!   sample above −34 dBFS. Goal ≤ 600 ms. The pause that ends a finished command
//!   (`command_silence_ms`; other utterances wait `min_silence_ms`) is part of it; both are
//!   printed.
//! * **SMS webhook** — `POST /twilio/sms` with a valid `X-Twilio-Signature` and a unique
//!   `MessageSid` from 64 concurrent senders (one keep-alive connection each) for `BENCH_SECS`
//!   (default 5) after a 1 s warm-up, `reply_budget_ms = 0` so each 200 means "committed to the
//!   inbox" (durable); the peer is a bare axum handler on the same runtime that parses the same
//!   form and answers the same empty TwiML without a signature check or a database. Replies go
//!   to a local fake of Twilio's REST API. At the end the number of stored inbox rows must equal
//!   the number of 200s.
//!
//! The issue names no peer program for the stream latency; the goal is the yardstick. Without
//! `--bench` (under `cargo test --all-targets`) it is a smoke run: two turns, one second of
//! webhooks.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use local_assistant::app::App;
use local_assistant::channels::twilio::signature;
use local_assistant::config::{Config, Secret, VoiceMode};
use local_assistant::domain::PhoneNumber;
use local_assistant::speech::audio::{g711, resample::resample};
use local_assistant::speech::tts::{self, TtsOptions};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const PUBLIC: &str = "https://assistant.example.com";
const AUTH: &str = "bench-twilio-auth-token";
const CALLER: &str = "+15557654321";
const COMMANDS: &[&str] = &[
    "What time is it?",
    "Set a timer for ten minutes.",
    "What's the date today?",
];

fn config(dir: &Path, api_base: &str) -> Result<Config> {
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join("models"),
        dir.join("models"),
    )?;
    let mut cfg = Config::defaults();
    cfg.server.listen = "127.0.0.1:0".parse()?;
    cfg.data_dir = dir.to_path_buf();
    cfg.api.token = Some(Secret::new("bench-token-0123456789"));
    cfg.memory.enabled = false;
    cfg.llm.backend = local_assistant::config::LlmBackendKind::None;
    cfg.routing.household_numbers = vec![PhoneNumber::parse(CALLER)?];
    cfg.twilio.enabled = true;
    cfg.twilio.account_sid = format!("AC{}", "0123456789abcdef".repeat(2));
    cfg.twilio.auth_token = Secret::new(AUTH);
    cfg.twilio.public_url = PUBLIC.into();
    cfg.twilio.phone_number = Some(PhoneNumber::parse("+15550001111")?);
    cfg.twilio.voice_mode = VoiceMode::Stream;
    cfg.twilio.api_base = api_base.into();
    cfg.twilio.reply_budget = Duration::ZERO;
    Ok(cfg)
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.5), rank(0.9), v[v.len() - 1])
}

/// A fake Twilio REST API: every message is accepted.
async fn fake_twilio() -> Result<String> {
    let n = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/2010-04-01/Accounts/{sid}/Messages.json",
        post(move || {
            let n = n.clone();
            async move {
                let i = n.fetch_add(1, Ordering::Relaxed);
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(json!({"sid": format!("SM{i:032x}"), "status": "queued"})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn frames(samples16: &[f32]) -> Result<Vec<String>> {
    let s8 = resample(samples16, 16_000, 8_000)?;
    Ok(s8
        .chunks(160)
        .map(|c| {
            let mut c = c.to_vec();
            c.resize(160, 0.0);
            base64::engine::general_purpose::STANDARD.encode(g711::encode_ulaw(&c))
        })
        .collect())
}

/// One turn: send `speech` then silence in real time; latency from the last speech frame to
/// the first answer frame. Returns after the answer has been quiet for 600 ms.
async fn turn(ws: &mut Ws, speech: &[String], last_speech: usize, silence: &str) -> Result<f64> {
    let mut sent_last = None;
    let mut first = None;
    let mut quiet_since = None;
    let start = Instant::now();
    let mut i = 0usize;
    loop {
        let due = start + Duration::from_millis(20 * i as u64);
        // Read whatever arrived until the next frame is due.
        loop {
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, ws.next()).await {
                Err(_) => break,
                Ok(None) => return Err("the stream closed".into()),
                Ok(Some(m)) => {
                    if let Message::Text(t) = m? {
                        let v: Value = serde_json::from_str(t.as_str())?;
                        if v["event"] == "media" {
                            first.get_or_insert_with(Instant::now);
                            quiet_since = Some(Instant::now());
                        }
                    }
                }
            }
        }
        let payload = speech.get(i).map_or(silence, String::as_str);
        ws.send(Message::text(
            json!({"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "payload": payload}})
                .to_string(),
        ))
        .await?;
        if i == last_speech {
            sent_last = Some(Instant::now());
        }
        i += 1;
        if let (Some(q), Some(_)) = (quiet_since, first) {
            if q.elapsed() > Duration::from_millis(600) {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("no answer within a minute".into());
        }
    }
    let (Some(f), Some(l)) = (first, sent_last) else {
        return Err("no answer".into());
    };
    Ok(f.saturating_duration_since(l).as_secs_f64() * 1000.0)
}

async fn media_stream(turns: usize) -> Result {
    let tmp = tempfile::tempdir()?;
    let api = fake_twilio().await?;
    let cfg = config(tmp.path(), &api)?;
    let min_silence = cfg.speech.vad.min_silence_ms;
    let command_silence = cfg.speech.vad.command_silence_ms;
    let mut voice = tts::open(&TtsOptions::from_config(&cfg.speech, &cfg.models_dir()))?;
    let mut clips = Vec::new();
    for c in COMMANDS {
        let s = voice.synthesize(c)?.resampled(16_000)?.samples;
        let last = s.iter().rposition(|x| x.abs() > 0.02).unwrap_or(s.len());
        clips.push((frames(&s)?, last * 8_000 / 16_000 / 160));
    }
    let app = App::builder(cfg).start().await?;
    let url = format!("ws://{}/twilio/media", app.local_addr());
    let mut req = url.into_client_request()?;
    let sig = signature::compute(AUTH, "wss://assistant.example.com/twilio/media", &[]);
    req.headers_mut().insert("X-Twilio-Signature", sig.parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(Message::text(
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string(),
    ))
    .await?;
    ws.send(Message::text(
        json!({"event": "start", "streamSid": "MZ1", "start": {"callSid": "CA1", "streamSid": "MZ1",
               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
               "customParameters": {"from": CALLER}}})
        .to_string(),
    ))
    .await?;
    let silence = frames(&[0.0; 320])?.remove(0);
    let mut lat = Vec::new();
    for i in 0..turns {
        let (f, last) = &clips[i % clips.len()];
        let ms = turn(&mut ws, f, *last, &silence).await?;
        println!(
            "  turn {:>2}: {:>6.0} ms  ({})",
            i + 1,
            ms,
            COMMANDS[i % COMMANDS.len()]
        );
        lat.push(ms);
    }
    let (p50, p90, max) = stats(lat);
    println!(
        "media stream: last speech frame -> first answer frame: median {p50:.0} ms, p90 {p90:.0} ms, max {max:.0} ms over {turns} turns (goal <= 600 ms; VAD min_silence_ms = {min_silence}, command_silence_ms = {command_silence})"
    );
    let _ = ws.close(None).await;
    app.stop().await?;
    Ok(())
}

/// `n` senders posting for `secs` (plus 1 s warm-up) to `url`; returns (ok count measured,
/// total 2xx, latencies ms).
async fn hammer(url: String, n: usize, secs: f64, signed: bool) -> Result<(u64, u64, Vec<f64>)> {
    let counter = Arc::new(AtomicU64::new(0));
    let ok_total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let warm = Duration::from_secs(1);
    let end = warm + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for t in 0..n {
        let url = url.clone();
        let counter = counter.clone();
        let ok_total = ok_total.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut lat = Vec::new();
            let mut ok = 0u64;
            while start.elapsed() < end {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let params = vec![
                    ("MessageSid".to_owned(), format!("SM{t:04}{i:028x}")),
                    (
                        "AccountSid".to_owned(),
                        format!("AC{}", "0123456789abcdef".repeat(2)),
                    ),
                    ("From".to_owned(), format!("+1555{:07}", t)),
                    ("To".to_owned(), "+15550001111".to_owned()),
                    ("Body".to_owned(), format!("note number {i}")),
                    ("NumMedia".to_owned(), "0".to_owned()),
                ];
                let sig = signature::compute(AUTH, &format!("{PUBLIC}/twilio/sms"), &params);
                let body: String = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params.iter())
                    .finish();
                let t0 = Instant::now();
                let mut req = client
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body);
                if signed {
                    req = req.header("X-Twilio-Signature", sig);
                }
                let resp = req.send().await?;
                let good = resp.status().is_success();
                let _ = resp.bytes().await?;
                if good {
                    ok_total.fetch_add(1, Ordering::Relaxed);
                }
                if t0.duration_since(start) >= warm && good {
                    ok += 1;
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((ok, lat))
        }));
    }
    let mut ok = 0;
    let mut lat = Vec::new();
    for t in tasks {
        let (o, l) = t.await??;
        ok += o;
        lat.extend(l);
    }
    Ok((ok, ok_total.load(Ordering::Relaxed), lat))
}

fn p99(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((0.99 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

async fn webhooks(secs: f64) -> Result {
    let tmp = tempfile::tempdir()?;
    let api = fake_twilio().await?;
    let mut cfg = config(tmp.path(), &api)?;
    cfg.twilio.voice_mode = VoiceMode::Gather;
    let app = App::builder(cfg).start().await?;
    let (ok, total, lat) = hammer(
        format!("http://{}/twilio/sms", app.local_addr()),
        64,
        secs,
        true,
    )
    .await?;
    let rate = ok as f64 / secs;
    let p = p99(lat);

    // The peer: parse the same form, answer the same TwiML, store nothing.
    let bare = axum::Router::new().route(
        "/twilio/sms",
        post(|body: axum::body::Bytes| async move {
            let n = form_urlencoded::parse(&body).count();
            (
                [("content-type", "text/xml")],
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/><!-- {n} -->"),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, bare).await });
    let (bok, _, blat) = hammer(format!("http://{bare_addr}/twilio/sms"), 64, secs, false).await?;
    let brate = bok as f64 / secs;
    let bp = p99(blat);

    let store = app.store().clone();
    let rows: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM inbox WHERE channel = 'twilio'",
                [],
                |r| r.get(0),
            )?)
        })
        .await?;
    app.stop().await?;
    println!(
        "signed SMS webhook, 64 senders: {rate:.0} msg/s durable, p99 {p:.1} ms; bare axum peer {brate:.0} req/s, p99 {bp:.1} ms; ratio {:.2}",
        rate / brate
    );
    if rows != i64::try_from(total)? {
        return Err(
            format!("{total} webhooks answered 200 but {rows} inbox rows are stored").into(),
        );
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result {
    let full = std::env::args().any(|a| a == "--bench");
    let turns = std::env::var("BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 10 } else { 2 });
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 5.0 } else { 1.0 });
    media_stream(turns).await?;
    webhooks(secs).await?;
    Ok(())
}
