//! Wake word + voice activity detection beside openWakeWord's Python package (0.4.0) on the
//! same wake and feature models and the same audio: CPU seconds per second of audio.
//!
//! The audio is ~60 s of household speech (espeak-ng sentences, some with "hey jarvis") and
//! pauses, 16 kHz, fed in 80 ms steps as a microphone would. Rows:
//! * **wake** — openWakeWord alone (mel → embedding → hey_jarvis);
//! * **wake+VAD** — plus voice activity: ours runs Silero VAD v6 on every 32 ms frame; the Python
//!   package's built-in VAD (`vad_threshold`) runs the Silero model it bundles.
//!
//! CPU time is the process's (`getrusage`), so ONNX Runtime threads count; one intra-op thread
//! each. The peer runs with `$LA_TEST_PYTHON` (the venv `make test-deps` makes). Without
//! `--bench` (i.e. under `cargo test --all-targets`) it is a smoke run on 5 s of audio.

use std::path::{Path, PathBuf};
use std::process::Command;

use local_assistant::config::Config;
use local_assistant::speech::audio::{wav, Audio};
use local_assistant::speech::listen;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

fn espeak(text: &str, voice: &str, dir: &Path) -> Option<Audio> {
    let p = dir.join("s.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(&p)
        .arg(text)
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    wav::read(&p).ok()?.resampled(16_000).ok()
}

fn clip(dir: &Path, secs: u64) -> Option<Audio> {
    let lines = [
        "hey jarvis, what time is it",
        "set a timer for ten minutes",
        "the weather is nice today, let's go for a walk",
        "remind me to call my mother tomorrow at five",
        "hey jarvis, turn off the kitchen lights",
        "we are out of coffee again",
        "add eggs and milk to the shopping list",
        "what is on my calendar next week",
    ];
    let mut a = Audio::silence(16_000, 1000);
    while a.duration_ms() < secs * 1000 {
        for (i, l) in lines.iter().enumerate() {
            a.append(&espeak(l, ["en-us", "en-gb"][i % 2], dir)?).ok()?;
            a.append(&Audio::silence(16_000, 1500)).ok()?;
        }
    }
    Some(a)
}

fn ours(cfg: &Config, audio: &Audio, vad_on: bool) -> Result<f64, String> {
    let (mut vad, mut wake) = listen::engines(cfg).map_err(|e| e.to_string())?;
    let start = cpu_seconds();
    for step in audio.samples.chunks(1280) {
        wake.push(step).map_err(|e| e.to_string())?;
        if vad_on {
            vad.push(step).map_err(|e| e.to_string())?;
        }
    }
    Ok((cpu_seconds() - start) / (audio.duration_ms() as f64 / 1000.0))
}

const PEER: &str = r#"
import sys, time, wave, numpy as np
from openwakeword.model import Model
feat, wakem, path, vad = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
m = Model(wakeword_model_paths=[wakem], melspec_onnx_model_path=feat + "/melspectrogram.onnx",
          embedding_onnx_model_path=feat + "/embedding_model.onnx", vad_threshold=vad)
with wave.open(path) as f:
    x = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
t = time.process_time()
for i in range(0, len(x) - 1279, 1280):
    m.predict(x[i:i+1280])
print(time.process_time() - t)
"#;

fn peer(cfg: &Config, wav_path: &Path, secs: f64, vad_on: bool) -> Result<f64, String> {
    let python = std::env::var("LA_TEST_PYTHON").unwrap_or_else(|_| ".venv-test/bin/python".into());
    let feat = listen::model_file(cfg, "openwakeword-features", Some("melspectrogram.onnx"))
        .map_err(|e| e.to_string())?;
    let wake = listen::model_file(cfg, "wake-hey-jarvis", None).map_err(|e| e.to_string())?;
    let out = Command::new(&python)
        .env("OMP_NUM_THREADS", "1")
        .arg("-c")
        .arg(PEER)
        .arg(feat.parent().unwrap_or(Path::new(".")))
        .arg(wake)
        .arg(wav_path)
        .arg(if vad_on { "0.5" } else { "0" })
        .output()
        .map_err(|e| format!("{python}: {e} (run `make test-deps`)"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .to_owned());
    }
    let cpu: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("peer output: {e}"))?;
    Ok(cpu / secs)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --all-targets`) is a smoke run
    // on a few seconds of audio.
    let full = std::env::args().any(|a| a == "--bench");
    let mut cfg = Config::defaults();
    cfg.data_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data");
    let Ok(dir) = tempfile::tempdir() else {
        eprintln!("no temp dir");
        return;
    };
    let Some(audio) = clip(dir.path(), if full { 60 } else { 5 }) else {
        eprintln!("espeak-ng is needed to make the bench audio");
        return;
    };
    let wav_path = dir.path().join("bench.wav");
    if let Err(e) = wav::write(&wav_path, &audio) {
        eprintln!("{e}");
        return;
    }
    let audio = match wav::read(&wav_path) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    let secs = audio.duration_ms() as f64 / 1000.0;
    println!("\nwake word + VAD, {secs:.0} s of audio, CPU seconds per second of audio (lower is better)\n");
    println!("| pipeline | ours | openWakeWord (Python) | ours / peer | ours, % of one core |");
    println!("|---|--:|--:|--:|--:|");
    for (label, vad_on) in [("wake", false), ("wake+VAD", true)] {
        let o = ours(&cfg, &audio, vad_on);
        let p = peer(&cfg, &wav_path, secs, vad_on);
        match (o, p) {
            (Ok(o), Ok(p)) => println!(
                "| {label} | {o:.4} | {p:.4} | {:.2}× | {:.2} % |",
                o / p,
                o * 100.0
            ),
            (Ok(o), Err(e)) => println!("| {label} | {o:.4} | {e} | – | {:.2} % |", o * 100.0),
            (Err(e), _) => println!("| {label} | {e} | – | – | – |"),
        }
    }
}
