//! Real-time phone calls with the real speech models: a simulated Twilio Media Stream (the
//! exact JSON frames Twilio sends, base64 μ-law at 8 kHz, signed by the `twilio` package's
//! RequestValidator) and a Vonage call (NCCO from a JWT-signed answer webhook made with PyJWT,
//! then binary L16 frames on the WebSocket). What the daemon says back is transcribed with
//! Whisper.

#![cfg(all(feature = "espeak", feature = "whisper"))]

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use local_assistant::config::{Config, Secret, VoiceMode};
use local_assistant::domain::PhoneNumber;
use local_assistant::speech::audio::{g711, resample::resample, Audio};
use local_assistant::speech::stt::whisper::WhisperEngine;
use local_assistant::speech::tts::{self, TtsOptions};
use local_assistant::speech::{SpeechToText, SttRequest};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::common::{self, TestDaemon, TestResult};

const PUBLIC: &str = "https://assistant.example.com";
const TWILIO_TOKEN: &str = "twilio-auth-token-for-tests";
const VONAGE_SECRET: &str = "vonage-signature-secret-for-tests";
const CALLER: &str = "+15557654321";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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

/// `X-Twilio-Signature` for a request without parameters, by the official package.
fn twilio_signature(url: &str) -> TestResult<String> {
    run_py(
        "import sys\nfrom twilio.request_validator import RequestValidator\nprint(RequestValidator(sys.argv[1]).compute_signature(sys.argv[2], {}))",
        &[TWILIO_TOKEN, url],
        b"",
    )
}

/// A Vonage webhook JWT made by PyJWT: `iat` shifted by `age` seconds, `payload_hash` of the
/// body read on stdin.
fn vonage_jwt(secret: &str, body: &[u8], age: i64) -> TestResult<String> {
    run_py(
        "import sys, time, hashlib, jwt\nbody = sys.stdin.buffer.read()\nclaims = {'iat': int(time.time()) - int(sys.argv[2]), 'jti': 'j1', 'iss': 'Vonage', 'application_id': 'app'}\nif body: claims['payload_hash'] = hashlib.sha256(body).hexdigest()\nprint(jwt.encode(claims, sys.argv[1], algorithm='HS256'))",
        &[secret, &age.to_string()],
        body,
    )
}

fn repo_models() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("models")
}

fn link_models(dir: &Path) -> TestResult {
    let models = dir.join("models");
    if !models.exists() {
        std::os::unix::fs::symlink(repo_models(), &models)?;
    }
    Ok(())
}

async fn daemon() -> TestResult<TestDaemon> {
    daemon_with(|_| {}).await
}

/// The test daemon, with `tweak` applied to its configuration last.
async fn daemon_with(tweak: impl FnOnce(&mut Config)) -> TestResult<TestDaemon> {
    TestDaemon::start_with(
        |cfg: &mut Config| {
            if let Err(e) = link_models(&cfg.data_dir) {
                eprintln!("cannot link the models: {e}");
            }
            cfg.memory.enabled = false;
            // The caller lives here (an unknown caller may not set timers).
            cfg.routing.household_numbers = PhoneNumber::parse(CALLER).into_iter().collect();
            cfg.twilio.enabled = true;
            cfg.twilio.account_sid = format!("AC{}", "0123456789abcdef".repeat(2));
            cfg.twilio.auth_token = Secret::new(TWILIO_TOKEN);
            cfg.twilio.public_url = PUBLIC.into();
            cfg.twilio.phone_number = PhoneNumber::parse("+15550001111").ok();
            cfg.twilio.voice_mode = VoiceMode::Stream;
            cfg.vonage.enabled = true;
            cfg.vonage.signature_secret = Secret::new(VONAGE_SECRET);
            cfg.vonage.public_url = PUBLIC.into();
            cfg.vonage.voice_mode = VoiceMode::Stream;
            tweak(cfg);
        },
        Vec::new(),
    )
    .await
}

/// `text` in the Piper voice at 16 kHz.
fn speak16(text: &str) -> TestResult<Vec<f32>> {
    let tmp = tempfile::tempdir()?;
    link_models(tmp.path())?;
    let cfg = common::test_config(tmp.path());
    let mut voice = tts::open(&TtsOptions::from_config(&cfg.speech, &cfg.models_dir()))?;
    Ok(voice.synthesize(text)?.resampled(16_000)?.samples)
}

fn transcribe(samples16: &[f32]) -> TestResult<String> {
    let tmp = tempfile::tempdir()?;
    link_models(tmp.path())?;
    let cfg = common::test_config(tmp.path());
    let mut whisper = WhisperEngine::from_config(&cfg.speech, &cfg.models_dir())?;
    let t = whisper.transcribe(
        &Audio::new(16_000, samples16.to_vec()),
        &SttRequest::default(),
        &CancellationToken::new(),
    )?;
    Ok(t.text.to_lowercase())
}

/// The caller's audio as Twilio frames: 20 ms of μ-law at 8 kHz each.
fn mulaw_frames(samples16: &[f32]) -> TestResult<Vec<String>> {
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

fn media(stream: &str, seq: &mut u64, payload: &str) -> Message {
    *seq += 1;
    let chunk = *seq - 2;
    Message::text(
        json!({"event": "media", "sequenceNumber": seq.to_string(), "streamSid": stream,
               "media": {"track": "inbound", "chunk": chunk.to_string(),
                         "timestamp": (chunk * 20).to_string(), "payload": payload}})
        .to_string(),
    )
}

async fn connect_twilio(d: &TestDaemon, signature: Option<&str>) -> TestResult<Ws> {
    let url = format!("ws://{}/twilio/media", d.base.trim_start_matches("http://"));
    let mut req = url.into_client_request()?;
    if let Some(s) = signature {
        req.headers_mut().insert("X-Twilio-Signature", s.parse()?);
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(ws)
}

/// Everything Twilio would receive until `until` says stop or `limit` passes.
#[derive(Default)]
struct Received {
    /// μ-law frames decoded, 8 kHz, with their arrival times.
    frames: Vec<(Instant, Vec<f32>)>,
    marks: Vec<String>,
    clears: usize,
}

async fn receive(
    ws: &mut Ws,
    got: &mut Received,
    limit: Duration,
    until: impl Fn(&Received) -> bool,
) -> TestResult {
    let deadline = Instant::now() + limit;
    while !until(got) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "timed out: {} frames, marks {:?}, {} clears",
                got.frames.len(),
                got.marks,
                got.clears
            )
            .into());
        }
        let Ok(msg) = tokio::time::timeout(left, ws.next()).await else {
            continue;
        };
        let Some(msg) = msg else {
            return Err("the stream closed".into());
        };
        let Message::Text(t) = msg? else { continue };
        let v: Value = serde_json::from_str(t.as_str())?;
        assert_eq!(v["streamSid"], "MZ0001", "{v}");
        match v["event"].as_str() {
            Some("media") => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v["media"]["payload"].as_str().unwrap_or(""))?;
                assert_eq!(bytes.len(), 160, "20 ms of μ-law per frame");
                got.frames.push((Instant::now(), g711::decode_ulaw(&bytes)));
            }
            Some("mark") => got
                .marks
                .push(v["mark"]["name"].as_str().unwrap_or("").to_owned()),
            Some("clear") => got.clears += 1,
            other => return Err(format!("unexpected event {other:?}: {v}").into()),
        }
    }
    Ok(())
}

fn played16(got: &Received) -> TestResult<Vec<f32>> {
    let s8: Vec<f32> = got.frames.iter().flat_map(|(_, f)| f.clone()).collect();
    Ok(resample(&s8, 8_000, 16_000)?)
}

async fn count(d: &TestDaemon, sql: &str) -> TestResult<i64> {
    let conn = common::open_db(&d.dir)?;
    Ok(conn.query_row(sql, [], |r| r.get(0))?)
}

/// Open a signed Twilio media stream and send `connected` and `start` for call `CA0001`.
async fn start_twilio_stream(d: &TestDaemon, stream: &str) -> TestResult<Ws> {
    let sig = twilio_signature("wss://assistant.example.com/twilio/media")?;
    let mut ws = connect_twilio(d, Some(&sig)).await?;
    ws.send(Message::text(
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string(),
    ))
    .await?;
    ws.send(Message::text(
        json!({"event": "start", "sequenceNumber": "1", "streamSid": stream,
               "start": {"accountSid": "AC0123", "streamSid": stream, "callSid": "CA0001",
                         "tracks": ["inbound"],
                         "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                         "customParameters": {"from": CALLER, "callSid": "CA0001"}}})
        .to_string(),
    ))
    .await?;
    Ok(ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_media_stream_is_answered_aloud_with_barge_in_dtmf_and_hang_up() -> TestResult {
    let d = daemon().await?;
    // The upgrade must be signed: unsigned or signed for another URL is refused.
    assert!(connect_twilio(&d, None).await.is_err());
    let wrong = twilio_signature("wss://elsewhere.example.com/twilio/media")?;
    assert!(connect_twilio(&d, Some(&wrong)).await.is_err());

    let stream = "MZ0001";
    let mut ws = start_twilio_stream(&d, stream).await?;
    let mut seq = 1u64;
    let request = speak16("Set a timer for five minutes.")?;
    let silence = vec![0.0f32; 16_000 * 3 / 2];
    let mut caller = Vec::new();
    caller.extend_from_slice(&vec![0.0f32; 8_000]);
    caller.extend_from_slice(&request);
    caller.extend_from_slice(&silence);
    for f in mulaw_frames(&caller)? {
        ws.send(media(stream, &mut seq, &f)).await?;
    }
    let mut got = Received::default();
    // The answer: frames, then a mark after each sentence.
    receive(&mut ws, &mut got, Duration::from_secs(90), |g| {
        !g.marks.is_empty()
    })
    .await?;
    let n = got.frames.len();
    assert!(n > 25, "at least half a second of answer: {n} frames");
    // Paced in real time: n frames of 20 ms cannot arrive much faster than n × 20 ms.
    let spread = got.frames[n - 1].0 - got.frames[0].0;
    let floor = Duration::from_millis(20 * n as u64).saturating_sub(Duration::from_millis(200));
    assert!(spread >= floor, "{n} frames arrived in {spread:?}");
    let heard = transcribe(&played16(&got)?)?;
    // Whisper tiny may hear "Timer set" as "time or set" on 8 kHz μ-law: the number and the
    // unit are what matter; the timer itself is checked in the database.
    assert!(
        heard.contains("minute") && (heard.contains("five") || heard.contains('5')),
        "the answer was {heard:?}"
    );
    assert_eq!(
        count(&d, "SELECT count(*) FROM reminders WHERE kind = 'timer'").await?,
        1
    );

    // Barge-in: the caller talks over a long answer → `clear`.
    let question = speak16("What can you do?")?;
    let mut talk = question.clone();
    talk.extend_from_slice(&silence);
    for f in mulaw_frames(&talk)? {
        ws.send(media(stream, &mut seq, &f)).await?;
    }
    let before = got.frames.len();
    receive(&mut ws, &mut got, Duration::from_secs(90), |g| {
        g.frames.len() > before + 10
    })
    .await?;
    for f in mulaw_frames(&question)? {
        ws.send(media(stream, &mut seq, &f)).await?;
    }
    receive(&mut ws, &mut got, Duration::from_secs(30), |g| g.clears > 0).await?;

    // DTMF: a key is an answer ("1" is yes).
    ws.send(Message::text(
        json!({"event": "dtmf", "streamSid": stream, "sequenceNumber": "900",
               "dtmf": {"track": "inbound_track", "digit": "1"}})
        .to_string(),
    ))
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        &d,
        "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
          WHERE c.channel = 'twilio-call' AND m.direction = 'inbound' AND m.body = 'yes'",
    )
    .await?
        == 0
    {
        assert!(Instant::now() < deadline, "the key press was not answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Hang-up: `stop` ends the session and the socket closes.
    ws.send(Message::text(
        json!({"event": "stop", "sequenceNumber": "901", "streamSid": stream,
               "stop": {"accountSid": "AC0123", "callSid": "CA0001"}})
        .to_string(),
    ))
    .await?;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stream stayed open after stop");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vonage_call_gets_an_ncco_from_a_signed_answer_and_talks_l16() -> TestResult {
    let d = daemon().await?;
    let answer = |token: String| {
        d.client
            .get(d.url(&format!(
                "/vonage/answer?to=15550001111&from={}&uuid=call-0001&conversation_uuid=CON-1",
                CALLER.trim_start_matches('+')
            )))
            .header("Authorization", format!("Bearer {token}"))
            .send()
    };
    // Refused: wrong secret, too old, none.
    let bad = answer(vonage_jwt("another-secret", b"", 0)?).await?;
    assert_eq!(bad.status(), 401);
    let old = answer(vonage_jwt(VONAGE_SECRET, b"", 3600)?).await?;
    assert_eq!(old.status(), 401);
    let none = d
        .client
        .get(d.url("/vonage/answer?from=15557654321"))
        .send()
        .await?;
    assert_eq!(none.status(), 401);

    let ok = answer(vonage_jwt(VONAGE_SECRET, b"", 0)?).await?;
    assert_eq!(ok.status(), 200);
    let ncco: Value = ok.json().await?;
    assert_eq!(ncco[0]["action"], "talk", "{ncco}");
    assert_eq!(ncco[1]["action"], "connect", "{ncco}");
    let ep = &ncco[1]["endpoint"][0];
    assert_eq!(ep["type"], "websocket");
    assert_eq!(ep["content-type"], "audio/l16;rate=16000");
    let uri = ep["uri"].as_str().ok_or("no uri")?;
    let path_q = uri
        .strip_prefix("wss://assistant.example.com")
        .ok_or(format!("uri {uri}"))?;
    let local = format!("ws://{}{path_q}", d.base.trim_start_matches("http://"));
    // The token is bound to the call: another caller with the same token is refused.
    let forged = local.replace("%2B15557654321", "%2B15550000000");
    assert!(tokio_tungstenite::connect_async(forged).await.is_err());

    let (mut ws, _) = tokio_tungstenite::connect_async(local).await?;
    ws.send(Message::text(
        json!({"event": "websocket:connected", "content-type": "audio/l16;rate=16000",
               "from": CALLER, "call": "call-0001"})
        .to_string(),
    ))
    .await?;
    // Said with a short pause in the middle (350 ms: longer than the early pause that starts
    // recognition, shorter than the configured end of speech): one utterance, one turn.
    let trim = |v: Vec<f32>| -> Vec<f32> {
        let a = v.iter().position(|x| x.abs() > 0.01).unwrap_or(0);
        let b = v
            .iter()
            .rposition(|x| x.abs() > 0.01)
            .map_or(v.len(), |i| i + 1);
        v[a..b.max(a)].to_vec()
    };
    let mut caller = vec![0.0f32; 8_000];
    caller.extend(trim(speak16("Set a timer")?));
    caller.extend(vec![0.0f32; 16 * 350]);
    caller.extend(trim(speak16("for ten minutes.")?));
    caller.extend(vec![0.0f32; 24_000]);
    for chunk in caller.chunks(320) {
        let mut bytes = Vec::with_capacity(640);
        for s in chunk {
            bytes.extend_from_slice(&local_assistant::speech::audio::f32_to_i16(*s).to_le_bytes());
        }
        ws.send(Message::binary(bytes)).await?;
    }
    // Collect the answer: binary frames of 20 ms until a second of quiet after they start.
    let mut played: Vec<f32> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let wait = if played.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(1500)
        };
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => break,
            Ok(None) => return Err("the socket closed".into()),
            Ok(Some(m)) => {
                if let Message::Binary(b) = m? {
                    assert_eq!(b.len(), 640, "20 ms of 16-bit 16 kHz audio per frame");
                    played.extend(
                        b.chunks_exact(2)
                            .map(|p| f32::from(i16::from_le_bytes([p[0], p[1]])) / 32768.0),
                    );
                }
            }
        }
    }
    assert!(!played.is_empty(), "no answer");
    let heard = transcribe(&played)?;
    let said: Vec<String> = {
        let conn = common::open_db(&d.dir)?;
        let mut q = conn.prepare(
            "SELECT m.body FROM messages m JOIN conversations c ON c.id = m.conversation_id
              WHERE c.channel = 'vonage-call' AND m.direction = 'inbound' ORDER BY m.id",
        )?;
        let rows = q.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    // Whisper tiny hears "Timer set" as "time or set" at times: the number and the unit are
    // what matter, and the timer itself is checked in the database.
    assert!(
        heard.contains("minute") && (heard.contains("ten") || heard.contains("10")),
        "the answer was {heard:?}; the daemon heard {said:?}"
    );
    assert_eq!(
        count(&d, "SELECT count(*) FROM reminders WHERE kind = 'timer'").await?,
        1
    );
    assert_eq!(
        count(
            &d,
            "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
              WHERE c.channel = 'vonage-call' AND m.direction = 'inbound'"
        )
        .await?,
        1,
        "the pause split the request"
    );
    ws.close(None).await?;
    Ok(())
}

/// Send the caller's audio (16 kHz) as Twilio `media` frames.
async fn send_audio(ws: &mut Ws, stream: &str, seq: &mut u64, samples16: &[f32]) -> TestResult {
    for f in mulaw_frames(samples16)? {
        ws.send(media(stream, seq, &f)).await?;
    }
    Ok(())
}

/// The caller's inbound call messages so far.
fn said_on(d: &TestDaemon, channel: &str) -> TestResult<Vec<String>> {
    let conn = common::open_db(&d.dir)?;
    let mut q = conn.prepare(
        "SELECT m.body FROM messages m JOIN conversations c ON c.id = m.conversation_id
          WHERE c.channel = ?1 AND m.direction = 'inbound' ORDER BY m.id",
    )?;
    let rows = q.query_map([channel], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_command_ends_at_a_short_pause_and_dictation_waits_for_the_end() -> TestResult {
    // The end of speech is 3 s of silence here: only the short pause of a finished command can
    // end an utterance sooner.
    let d = daemon_with(|cfg| {
        cfg.speech.vad.min_silence_ms = 3_000;
        cfg.speech.vad.command_silence_ms = 200;
    })
    .await?;
    let stream = "MZ0001";
    let mut ws = start_twilio_stream(&d, stream).await?;
    let mut seq = 1u64;
    let second = |s: f32| vec![0.0f32; (16_000.0 * s) as usize];

    // "What time is it?" and one second of silence: answered although the end of speech
    // (3 s) never came.
    let mut caller = second(0.5);
    caller.extend(speak16("What time is it?")?);
    caller.extend(second(1.0));
    send_audio(&mut ws, stream, &mut seq, &caller).await?;
    let mut got = Received::default();
    receive(&mut ws, &mut got, Duration::from_secs(90), |g| {
        !g.marks.is_empty()
    })
    .await?;
    let said = said_on(&d, "twilio-call")?;
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].to_lowercase().contains("time"), "{said:?}");

    // Dictation ("add … to my shopping list" may go on) after the same pause: no answer until
    // the end of speech.
    let mut caller = speak16("Add buy milk to my shopping list.")?;
    caller.extend(second(1.0));
    send_audio(&mut ws, stream, &mut seq, &caller).await?;
    let before = got.frames.len();
    let early = receive(&mut ws, &mut got, Duration::from_secs(4), |g| {
        g.frames.len() > before
    })
    .await;
    assert!(
        early.is_err(),
        "dictation was answered before the end of speech"
    );
    assert_eq!(said_on(&d, "twilio-call")?.len(), 1);
    send_audio(&mut ws, stream, &mut seq, &second(3.5)).await?;
    receive(&mut ws, &mut got, Duration::from_secs(90), |g| {
        g.marks.len() >= 2
    })
    .await?;
    let said = said_on(&d, "twilio-call")?;
    assert_eq!(said.len(), 2, "{said:?}");
    // What was heard is dictation indeed (else the wait above proved nothing).
    let ctx = local_assistant::nlu::intents::ParseContext::en(jiff::Zoned::now());
    let intent = local_assistant::nlu::intents::parse(&said[1], &ctx);
    assert!(
        intent
            .as_ref()
            .is_some_and(|i| i.name() == "task.add" && !i.ends_utterance()),
        "{said:?} → {intent:?}"
    );
    ws.close(None).await?;
    Ok(())
}
