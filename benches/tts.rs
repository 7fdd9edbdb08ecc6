//! Text to speech: our Piper runner (ort + libespeak-ng, streamed by sentence through
//! `TtsWorker`) beside the `piper-tts` Python API (`benches/tts_peer.py`) on the same voice,
//! thread count and a three-sentence answer.
//!
//! Per engine and thread count (1 and 2):
//! * **load** — time to open the voice (ONNX session; ours also loads espeak-ng);
//! * **first audio** — from handing over the whole answer to the first sentence's audio;
//! * **total** — until the last sentence's audio;
//! * **RTF** — real-time factor, total synthesis time / seconds of audio (lower is faster).
//!
//! Best of `BENCH_REPS` (default 3) by total time, each answer after a pause of 300 ms (answers
//! come seconds apart; ours gives its working memory back in between, as the daemon does). The peer runs with `$PIPER_TTS_PYTHON` or
//! `./.venv/bin/python` if that python imports `piper` (`make bench-deps` installs it); else its
//! rows say so. `BENCH_THREADS=1,2` picks thread counts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use local_assistant::speech::tts::piper::{PiperOptions, PiperVoice};
use local_assistant::speech::tts::stream::{StreamOptions, TtsWorker};
use local_assistant::speech::TextToSpeech;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

#[path = "support/args.rs"]
mod args;

/// Pause before each answer (both engines).
const PAUSE: Duration = Duration::from_millis(300);

/// A typical spoken answer: three sentences.
const ANSWER: &str = "Good morning, Anna. It is sunny and twelve degrees outside, with light rain \
expected after four in the afternoon. Don't forget that Daniel has his piano lesson at half past five.";

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/models")
}

fn voice_path() -> PathBuf {
    models_dir().join("piper-en-us-joe-medium/en_US-joe-medium.onnx")
}

struct Row {
    load: Duration,
    first: Duration,
    total: Duration,
    audio_s: f64,
}

fn ours(threads: usize, reps: usize) -> Result<Row, String> {
    let started = Instant::now();
    let env =
        local_assistant::speech::onnx::init(None, &models_dir()).map_err(|e| e.to_string())?;
    let mut voice = PiperVoice::load(
        env,
        &voice_path(),
        &PiperOptions {
            threads,
            ..PiperOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let load = started.elapsed();
    voice.synthesize("Warming up.").map_err(|e| e.to_string())?;
    let rate = voice.sample_rate();
    let worker = TtsWorker::spawn(Box::new(voice)).map_err(|e| e.to_string())?;
    let mut best: Option<Row> = None;
    for _ in 0..reps {
        // Answers come seconds apart: the worker's idle work after one (giving its memory back)
        // is not on the way to the next one's audio.
        std::thread::sleep(PAUSE);
        let (sink, audio) = worker
            .speak(StreamOptions::default(), CancellationToken::new())
            .map_err(|e| e.to_string())?;
        let start = Instant::now();
        sink.send_blocking(ANSWER).map_err(|e| e.to_string())?;
        sink.finish();
        let mut first = None;
        let mut samples = 0usize;
        while let Some(item) = audio.recv_blocking() {
            let s = item.map_err(|e| e.to_string())?;
            first.get_or_insert_with(|| start.elapsed());
            samples += s.audio.samples.len();
        }
        let total = start.elapsed();
        #[allow(clippy::cast_precision_loss)]
        let row = Row {
            load,
            first: first.unwrap_or(total),
            total,
            audio_s: samples as f64 / f64::from(rate),
        };
        if best.as_ref().is_none_or(|b| row.total < b.total) {
            best = Some(row);
        }
    }
    worker.shutdown();
    best.ok_or_else(|| "no repetitions".into())
}

fn peer_python() -> Option<PathBuf> {
    std::env::var_os("PIPER_TTS_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
        ))
        .find(|p| {
            Command::new(p)
                .args(["-c", "import piper"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn peer(python: &Path, threads: usize, reps: usize) -> Result<Row, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/tts_peer.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(voice_path())
        .arg(threads.to_string())
        .arg(reps.to_string())
        .arg(ANSWER)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "peer failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no JSON from the peer: {stdout}"))?;
    let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let f = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| format!("peer JSON lacks {k}: {v}"))
    };
    Ok(Row {
        load: Duration::from_secs_f64(f("load_s")?),
        first: Duration::from_secs_f64(f("first_audio_ms")? / 1000.0),
        total: Duration::from_secs_f64(f("total_ms")? / 1000.0),
        audio_s: f("audio_s")?,
    })
}

fn rtf(r: &Row) -> f64 {
    r.total.as_secs_f64() / r.audio_s.max(1e-9)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --all-targets`) is a smoke
    // run: one repetition, one thread, no peer.
    let full = std::env::args().any(|a| a == "--bench");
    if !voice_path().is_file() {
        eprintln!(
            "tts bench: {} is missing; run `make models`",
            voice_path().display()
        );
        std::process::exit(1);
    }
    let reps = args::reps(full);
    let threads = args::threads(full);
    let python = if full { peer_python() } else { None };
    println!(
        "text to speech, {} characters in 3 sentences, best of {reps}",
        ANSWER.len()
    );
    println!(
        "| engine | threads | load s | first audio ms | total ms | audio s | RTF | peer/ours RTF | peer/ours first audio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut json_rows = Vec::new();
    for &t in &threads {
        let us = ours(t, reps);
        let them = match &python {
            Some(p) => peer(p, t, reps),
            None => Err("peer missing: `make bench-deps` installs piper-tts into .venv (or set PIPER_TTS_PYTHON)".into()),
        };
        for (name, row) in [
            ("ours (ort + libespeak-ng)", &us),
            ("piper-tts (Python)", &them),
        ] {
            match row {
                Ok(r) => {
                    let ratios = match (&us, &them) {
                        (Ok(a), Ok(b)) if name.starts_with("piper") => format!(
                            "{:.2}× | {:.2}×",
                            rtf(b) / rtf(a),
                            b.first.as_secs_f64() / a.first.as_secs_f64().max(1e-9)
                        ),
                        _ => " | ".into(),
                    };
                    println!(
                        "| {name} | {t} | {:.2} | {:.0} | {:.0} | {:.2} | {:.3} | {ratios} |",
                        r.load.as_secs_f64(),
                        r.first.as_secs_f64() * 1000.0,
                        r.total.as_secs_f64() * 1000.0,
                        r.audio_s,
                        rtf(r),
                    );
                    json_rows.push(json!({
                        "engine": name, "threads": t,
                        "load_s": r.load.as_secs_f64(),
                        "first_audio_ms": r.first.as_secs_f64() * 1000.0,
                        "total_ms": r.total.as_secs_f64() * 1000.0,
                        "audio_s": r.audio_s, "rtf": rtf(r),
                    }));
                }
                Err(e) => println!("| {name} | {t} | {e} | | | | | | |"),
            }
        }
    }
    if let Ok(path) = std::env::var("BENCH_JSON") {
        let _ = std::fs::write(path, Value::Array(json_rows).to_string());
    }
}
