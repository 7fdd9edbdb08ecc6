//! Speech to text: our Whisper engine (whisper.cpp through whisper-rs, on the ggml file our
//! converter makes from the CTranslate2 model) beside faster-whisper int8 on that same
//! CTranslate2 model, on the same WAV files: a 3 s and an 8 s utterance spoken by espeak-ng.
//!
//! Per engine, thread count (1 and 2) and clip: the time to transcribe it (best of
//! `BENCH_REPS`, default 3, after a warm-up; faster-whisper's lazy segments are consumed inside
//! the timing), and whether both heard the same words. Goal: ours ≤ 0.5× faster-whisper's
//! time, same transcript.
//!
//! The peer runs with `$FASTER_WHISPER_PYTHON` or `./.venv-test/bin/python` (`make test-deps`
//! installs faster-whisper there); without it the peer's columns say so. `BENCH_THREADS=1,2`
//! picks thread counts, `BENCH_STT_MODEL` another manifest model (default
//! `whisper-tiny.en-ct2`). Without `--bench` (under `cargo test --all-targets`) it is a smoke
//! run: the 3 s clip, one thread, one repetition, no peer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use local_assistant::speech::stt::whisper::{resolve_model, WhisperEngine, WhisperOptions};
use local_assistant::speech::{Audio, SpeechToText, SttRequest};
use tokio_util::sync::CancellationToken;

#[path = "support/args.rs"]
mod args;

#[path = "../tests/it/common/speech.rs"]
mod speech;
use speech::{faster_whisper_python, speak, words};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// About 3 s and about 8 s of speech.
const CLIPS: &[(&str, &str)] = &[
    (
        "3 s",
        "Switch off the television in the living room, please.",
    ),
    (
        "8 s",
        "The meeting has been moved to Thursday afternoon. Play some relaxing music in the \
         bedroom, and switch off the lights in the kitchen when everybody has gone to bed.",
    ),
];

/// faster-whisper: load, warm up on the first file, then per file the best time of `reps`.
/// One JSON line per file: `[seconds, text]`.
const PEER: &str = r#"
import json, sys, time
from faster_whisper import WhisperModel
model_dir, threads, reps, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
m = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
def run(f):
    segs, _ = m.transcribe(f, beam_size=1, temperature=[0.0], language="en",
                           condition_on_previous_text=False, vad_filter=False)
    return "".join(s.text for s in segs).strip()
run(files[0])
for f in files:
    best, text = None, ""
    for _ in range(reps):
        t0 = time.perf_counter()
        text = run(f)
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    print(json.dumps([best, text]))
"#;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Our engine: per clip, the best time of `reps` after a warm-up, and the text.
fn ours(
    model: &Path,
    threads: usize,
    reps: usize,
    clips: &[Audio],
) -> Result<Vec<(Duration, String)>> {
    let mut engine = WhisperEngine::load(
        model,
        WhisperOptions {
            threads,
            ..WhisperOptions::default()
        },
    )?;
    let req = SttRequest::default();
    let cancel = CancellationToken::new();
    if let Some(first) = clips.first() {
        engine.transcribe(first, &req, &cancel)?;
    }
    let mut rows = Vec::new();
    for clip in clips {
        let mut best = Duration::MAX;
        let mut text = String::new();
        for _ in 0..reps {
            let t0 = Instant::now();
            text = engine.transcribe(clip, &req, &cancel)?.text;
            best = best.min(t0.elapsed());
        }
        rows.push((best, text));
    }
    Ok(rows)
}

fn peer(
    python: &Path,
    model_dir: &Path,
    threads: usize,
    reps: usize,
    files: &[PathBuf],
) -> Result<Vec<(Duration, String)>> {
    let out = Command::new(python)
        .arg("-c")
        .arg(PEER)
        .arg(model_dir)
        .arg(threads.to_string())
        .arg(reps.to_string())
        .args(files)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "faster-whisper failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut rows = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let (secs, text): (f64, String) = serde_json::from_str(line)?;
        rows.push((Duration::from_secs_f64(secs.max(0.0)), text));
    }
    if rows.len() != files.len() {
        return Err(format!(
            "faster-whisper gave {} rows for {} files",
            rows.len(),
            files.len()
        )
        .into());
    }
    Ok(rows)
}

fn main() -> Result {
    // `cargo bench` passes `--bench`; anything else is a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let name = std::env::var("BENCH_STT_MODEL").unwrap_or_else(|_| "whisper-tiny.en-ct2".into());
    let models = root().join("data").join("models");
    let ggml = resolve_model(&name, &models).map_err(|e| format!("{e} (run `make models`)"))?;
    let ct2 = models.join(&name);
    let reps = args::reps(full);
    let threads = args::threads(full);
    let python = if full {
        faster_whisper_python().ok()
    } else {
        None
    };
    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    let mut clips = Vec::new();
    let mut labels = Vec::new();
    for (i, (label, text)) in CLIPS
        .iter()
        .enumerate()
        .take(if full { CLIPS.len() } else { 1 })
    {
        let (path, audio) = speak(dir.path(), &format!("clip{i}"), text)?;
        labels.push(format!(
            "{label} ({:.1} s)",
            audio.duration_ms() as f64 / 1000.0
        ));
        files.push(path);
        clips.push(audio);
    }
    println!(
        "speech to text, {name}: ours (ggml {}) vs faster-whisper int8 (CTranslate2), best of {reps}",
        ggml.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned())
    );
    println!("| clip | threads | ours ms | faster-whisper ms | ours/theirs | same words |");
    println!("|---|---|---|---|---|---|");
    for &t in &threads {
        let mine = ours(&ggml, t, reps, &clips)?;
        let theirs = match &python {
            Some(py) => Some(peer(py, &ct2, t, reps, &files)?),
            None => None,
        };
        for (i, (d, text)) in mine.iter().enumerate() {
            let ms = d.as_secs_f64() * 1000.0;
            let (peer_ms, ratio, same) = match theirs.as_ref().and_then(|r| r.get(i)) {
                Some((pd, ptext)) => {
                    let p = pd.as_secs_f64() * 1000.0;
                    (
                        format!("{p:.0}"),
                        format!("{:.2}", ms / p),
                        if words(text) == words(ptext) {
                            "yes".to_owned()
                        } else {
                            format!("no: {:?} vs {:?}", words(text), words(ptext))
                        },
                    )
                }
                None if !full => (
                    "not run (smoke run)".to_owned(),
                    "—".to_owned(),
                    "—".to_owned(),
                ),
                None => (
                    "no peer (make test-deps)".to_owned(),
                    "—".to_owned(),
                    "—".to_owned(),
                ),
            };
            println!(
                "| {} | {t} | {ms:.0} | {peer_ms} | {ratio} | {same} |",
                labels[i]
            );
            if words(text).is_empty() {
                return Err(format!("ours heard nothing in the {} clip", labels[i]).into());
            }
        }
    }
    println!("goal: ours/theirs <= 0.5 with the same words");
    Ok(())
}
