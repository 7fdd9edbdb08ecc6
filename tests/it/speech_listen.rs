//! Voice activity (Silero) and wake words (openWakeWord) on real models and real speech made
//! by espeak-ng at test time: segments of a composed clip, wake phrases detected in several
//! voices and unrelated sentences not, several wake models at once, the refractory period,
//! scores equal to the openWakeWord Python package's, the quiet gate (skipping changes no
//! score), the streaming embedding network equal to ONNX Runtime's, and the `listen` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use local_assistant::config::Config;
use local_assistant::speech::audio::{wav, Audio};
use local_assistant::speech::listen;
use local_assistant::speech::vad::VadEvent;
use local_assistant::speech::wake::WakeModelSpec;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn config() -> Config {
    let mut cfg = Config::defaults();
    cfg.data_dir = data_dir();
    cfg
}

/// `text` spoken by espeak-ng with `voice`, at 16 kHz.
fn espeak(text: &str, voice: &str) -> TestResult<Audio> {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("s.wav");
    let out = Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(&p)
        .arg(text)
        .output()?;
    if !out.status.success() {
        return Err(format!("espeak-ng failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(wav::read(&p)?.resampled(16_000)?)
}

/// First and last sample louder than −40 dBFS, in ms.
fn voiced_span(a: &Audio) -> (u64, u64) {
    let first = a.samples.iter().position(|s| s.abs() > 0.01).unwrap_or(0);
    let last = a.samples.iter().rposition(|s| s.abs() > 0.01).unwrap_or(0);
    (
        first as u64 * 1000 / u64::from(a.rate),
        last as u64 * 1000 / u64::from(a.rate),
    )
}

#[test]
fn vad_finds_the_segments_of_a_composed_clip_within_100_ms() -> TestResult {
    let mut cfg = config();
    cfg.speech.vad.padding_ms = 0;
    let (mut vad, _) = listen::engines(&cfg)?;
    let parts = [
        espeak("please set a timer for ten minutes", "en-us")?,
        espeak("and remind me to call my sister tomorrow", "en-gb")?,
        espeak("thank you", "en-us+f2")?,
    ];
    // silence 1.0 s, speech, 1.5 s, speech, 2.0 s, speech, 1.0 s
    let gaps = [1000, 1500, 2000];
    let mut clip = Audio::new(16_000, Vec::new());
    let mut truth = Vec::new();
    for (part, gap) in parts.iter().zip(gaps) {
        clip.append(&Audio::silence(16_000, gap))?;
        let (s, e) = voiced_span(part);
        let offset = clip.duration_ms();
        truth.push((offset + s, offset + e));
        clip.append(part)?;
    }
    clip.append(&Audio::silence(16_000, 1000))?;

    let mut found = Vec::new();
    for chunk in clip.samples.chunks(160) {
        for e in vad.push(chunk)? {
            if let VadEvent::SpeechEnd { start_ms, at_ms } = e {
                found.push((start_ms, at_ms));
            }
        }
    }
    found.extend(vad.finish().into_iter().filter_map(|e| match e {
        VadEvent::SpeechEnd { start_ms, at_ms } => Some((start_ms, at_ms)),
        VadEvent::SpeechStart { .. } => None,
    }));
    assert_eq!(
        found.len(),
        truth.len(),
        "found {found:?}, expected {truth:?}"
    );
    for ((fs, fe), (ts, te)) in found.iter().zip(&truth) {
        assert!(
            fs.abs_diff(*ts) <= 100,
            "start {fs} vs {ts} ({found:?} / {truth:?})"
        );
        assert!(
            fe.abs_diff(*te) <= 100,
            "end {fe} vs {te} ({found:?} / {truth:?})"
        );
    }
    Ok(())
}

#[test]
fn silence_and_noise_make_no_segment() -> TestResult {
    let (mut vad, _) = listen::engines(&config())?;
    let mut x = 12345u32;
    let noise: Vec<f32> = (0..16_000 * 3)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((x >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.02
        })
        .collect();
    let mut events = vad.push(&vec![0.0; 16_000])?;
    events.extend(vad.push(&noise)?);
    events.extend(vad.finish());
    assert!(events.is_empty(), "{events:?}");
    Ok(())
}

const UNRELATED: &[&str] = &[
    "what time is it",
    "set a timer for ten minutes",
    "remind me to buy milk tomorrow morning",
    "the weather is nice today",
    "call my mother at five",
    "how many days until Christmas",
    "turn off the kitchen lights",
    "I would like a cup of tea",
    "play some music in the living room",
    "add eggs to the shopping list",
    "what is on my calendar next week",
    "the meeting was moved to Thursday afternoon",
    "please cancel all my timers",
    "hello there, how are you",
    "my brother Jarrod is visiting on Sunday",
    "hey Jeff, can you pass the salt",
    "the car needs new tires",
    "we are out of coffee again",
    "remember that the spare key is under the mat",
    "open the garage door",
    "good night everyone",
    "harvest the carrots in October",
];

fn detections_in(cfg: &Config, audio: &Audio) -> TestResult<Vec<String>> {
    let (_, mut wake) = listen::engines(cfg)?;
    let mut padded = Audio::silence(16_000, 500);
    padded.append(audio)?;
    padded.append(&Audio::silence(16_000, 1000))?;
    let mut names = Vec::new();
    for chunk in padded.samples.chunks(320) {
        names.extend(wake.push(chunk)?.into_iter().map(|d| d.model));
    }
    Ok(names)
}

#[test]
fn hey_jarvis_is_detected_in_several_voices_and_unrelated_speech_is_not() -> TestResult {
    let cfg = config();
    let mut missed = Vec::new();
    for voice in ["en-us", "en-gb", "en-us+f3", "en-gb+f2"] {
        for text in ["hey jarvis", "hey jarvis, what time is it"] {
            let found = detections_in(&cfg, &espeak(text, voice)?)?;
            if found != ["hey_jarvis_v0.1"] {
                missed.push(format!("{voice} {text:?}: {found:?}"));
            }
        }
    }
    assert!(
        missed.is_empty(),
        "wake phrase not detected exactly once: {missed:?}"
    );

    // All unrelated sentences as one stream, as a kitchen would hear them.
    let mut talk = Audio::new(16_000, Vec::new());
    for (i, text) in UNRELATED.iter().enumerate() {
        let voice = ["en-us", "en-gb", "en-us+f2"][i % 3];
        talk.append(&espeak(text, voice)?)?;
        talk.append(&Audio::silence(16_000, 300))?;
    }
    let found = detections_in(&cfg, &talk)?;
    assert!(
        found.is_empty(),
        "false wakes on unrelated speech: {found:?}"
    );
    Ok(())
}

#[test]
fn several_wake_models_listen_at_once_each_with_its_own_name() -> TestResult {
    let mut cfg = config();
    cfg.speech.wake.models = vec![
        "wake-hey-jarvis".into(),
        "wake-alexa".into(),
        "wake-hey-mycroft".into(),
    ];
    let mut clip = espeak("alexa, what is the weather", "en-us")?;
    clip.append(&Audio::silence(16_000, 1500))?;
    // espeak-ng says "mycroft" oddly; spelled apart it sounds as people say it.
    clip.append(&espeak("hey my croft", "en-us")?)?;
    clip.append(&Audio::silence(16_000, 1500))?;
    clip.append(&espeak("hey jarvis", "en-us")?)?;
    let found = detections_in(&cfg, &clip)?;
    assert_eq!(
        found,
        ["alexa_v0.1", "hey_mycroft_v0.1", "hey_jarvis_v0.1"],
        "each phrase wakes its own model, in order"
    );
    Ok(())
}

#[test]
fn the_refractory_period_suppresses_a_repeat() -> TestResult {
    let once = espeak("hey jarvis", "en-us")?;
    let mut twice = once.clone();
    twice.append(&Audio::silence(16_000, 700))?;
    twice.append(&once)?;
    let mut cfg = config();
    cfg.speech.wake.refractory_ms = 5000;
    assert_eq!(detections_in(&cfg, &twice)?.len(), 1);
    cfg.speech.wake.refractory_ms = 500;
    assert_eq!(detections_in(&cfg, &twice)?.len(), 2);
    // A per-model period overrides the default.
    cfg.speech
        .wake
        .refractory
        .insert("wake-hey-jarvis".into(), 5000);
    assert_eq!(detections_in(&cfg, &twice)?.len(), 1);
    Ok(())
}

/// `audio` with deterministic white noise at `rms_db` dBFS added (a room's hiss).
fn with_noise(audio: &Audio, rms_db: f32, seed: u64) -> Audio {
    // Uniform in [-a, a] has an RMS of a/√3.
    let a = 10f32.powf(rms_db / 20.0) * 3f32.sqrt();
    let mut x = seed;
    let samples = audio
        .samples
        .iter()
        .map(|s| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 40) as f32 / (1u64 << 24) as f32;
            s + a * (2.0 * u - 1.0)
        })
        .collect();
    Audio::new(audio.rate, samples)
}

fn scaled(audio: &Audio, gain: f32) -> Audio {
    Audio::new(audio.rate, audio.samples.iter().map(|s| s * gain).collect())
}

/// A detection as (model, ms, score).
type Scored = (String, u64, f32);

/// Every step scoring at least the threshold (with refractory 0), and the steps the quiet gate
/// skipped.
fn all_scores(cfg: &Config, audio: &Audio, gate: bool) -> TestResult<(Vec<Scored>, u64)> {
    let (_, mut wake) = listen::engines(cfg)?;
    wake.set_quiet_gate(gate);
    let mut out = Vec::new();
    for chunk in audio.samples.chunks(320) {
        out.extend(
            wake.push(chunk)?
                .into_iter()
                .map(|d| (d.model, d.at_ms, d.score)),
        );
    }
    Ok((out, wake.skipped_steps()))
}

#[test]
fn the_quiet_gate_skips_a_quiet_room_and_scores_speech_exactly_as_without_it() -> TestResult {
    let mut cfg = config();
    cfg.speech.wake.models = vec!["wake-hey-jarvis".into(), "wake-alexa".into()];
    // Low threshold, no refractory period: nearly every step near speech is compared.
    cfg.speech.wake.threshold = 0.02;
    cfg.speech.wake.refractory_ms = 0;
    let quiet = |ms| Audio::silence(16_000, ms);
    let mut clip = quiet(5000);
    clip.append(&espeak("hey jarvis", "en-us")?)?;
    // Pauses longer than the models' ~2 s field: the gate shuts and the next word catches up.
    clip.append(&quiet(4000))?;
    clip.append(&espeak("alexa, what is the weather", "en-gb")?)?;
    clip.append(&quiet(3000))?;
    clip.append(&espeak("we are out of coffee again", "en-us+f2")?)?;
    clip.append(&quiet(2500))?;
    // Spoken softly, 26 dB down: still well above the hiss.
    clip.append(&scaled(
        &espeak("hey jarvis, what time is it", "en-gb")?,
        0.05,
    ))?;
    clip.append(&quiet(1200))?;
    clip.append(&espeak("hey jarvis", "en-us+f3")?)?;
    clip.append(&quiet(3000))?;
    let room = with_noise(&clip, -65.0, 7);

    let (ungated, none) = all_scores(&cfg, &room, false)?;
    let (gated, skipped) = all_scores(&cfg, &room, true)?;
    assert_eq!(none, 0, "the gate was off");
    let steps = room.samples.len() as u64 / 1280;
    assert!(
        skipped * 4 >= steps,
        "a quiet room must be mostly skipped: {skipped} of {steps} steps"
    );
    let wakes = |v: &[Scored], m: &str| v.iter().filter(|d| d.0 == m && d.2 >= 0.5).count();
    assert!(
        wakes(&ungated, "hey_jarvis_v0.1") >= 3 && wakes(&ungated, "alexa_v0.1") >= 1,
        "the clip must wake both models: {ungated:?}"
    );
    assert_eq!(
        gated.len(),
        ungated.len(),
        "gated {gated:?}\nungated {ungated:?}"
    );
    for (g, u) in gated.iter().zip(&ungated) {
        assert!(
            g.0 == u.0 && g.1 == u.1 && (g.2 - u.2).abs() < 1e-5,
            "gated {g:?} against ungated {u:?}"
        );
    }

    // A loud room (hiss at -40 dBFS, above the gate's -45 dBFS floor) is never gated.
    let loud = with_noise(&clip, -40.0, 11);
    let (_, skipped) = all_scores(&cfg, &loud, true)?;
    assert_eq!(skipped, 0, "steps skipped in a loud room");
    Ok(())
}

#[test]
fn a_custom_model_file_loads_and_a_non_wake_model_is_refused() -> TestResult {
    let cfg = config();
    let jarvis = listen::model_file(&cfg, "wake-hey-jarvis", None)?;
    // A copy under another name behaves as a custom model and reports its own name.
    let dir = tempfile::tempdir()?;
    let custom = dir.path().join("kitchen_helper.onnx");
    std::fs::copy(&jarvis, &custom)?;
    let mut cfg2 = config();
    cfg2.speech.wake.models = vec![custom.display().to_string()];
    assert_eq!(
        detections_in(&cfg2, &espeak("hey jarvis", "en-us")?)?,
        ["kitchen_helper"]
    );
    // The VAD model is an ONNX file but not a wake model.
    let env = local_assistant::speech::onnx::init(None, &cfg.models_dir())?;
    let features = listen::model_file(&cfg, "openwakeword-features", Some("melspectrogram.onnx"))?;
    let err = local_assistant::speech::wake::WakeDetector::load(
        env,
        features.parent().unwrap_or(Path::new(".")),
        &[WakeModelSpec {
            path: listen::model_file(&cfg, "silero-vad", None)?,
            threshold: 0.5,
            refractory_ms: 1000,
        }],
        1,
    )
    .err()
    .ok_or("a VAD model loaded as a wake model")?
    .to_string();
    assert!(
        err.contains("silero_vad.onnx") && err.contains("not an openWakeWord model"),
        "{err}"
    );
    Ok(())
}

/// The port is exact: scores equal those of the openWakeWord Python package (0.4.0) on the same
/// models and audio, step by step.
#[test]
fn scores_match_the_openwakeword_python_package() -> TestResult {
    let python = std::env::var("LA_TEST_PYTHON").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv-test/bin/python")
            .display()
            .to_string()
    });
    let cfg = config();
    let mut clip = Audio::silence(16_000, 1000);
    clip.append(&espeak("hey jarvis, turn on the lights", "en-us")?)?;
    clip.append(&Audio::silence(16_000, 1000))?;
    let dir = tempfile::tempdir()?;
    let wav_path = dir.path().join("c.wav");
    wav::write(&wav_path, &clip)?;
    // The file holds 16-bit samples: score exactly what Python reads.
    let clip = wav::read(&wav_path)?;
    let script = r#"
import sys, wave, numpy as np
from openwakeword.model import Model
feat, wake, path = sys.argv[1:4]
m = Model(wakeword_model_paths=[wake], melspec_onnx_model_path=feat + "/melspectrogram.onnx",
          embedding_onnx_model_path=feat + "/embedding_model.onnx")
with wave.open(path) as f:
    x = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
print(" ".join(f"{list(m.predict(x[i:i+1280]).values())[0]:.6f}" for i in range(0, len(x) - 1279, 1280)))
"#;
    let features = listen::model_file(&cfg, "openwakeword-features", Some("melspectrogram.onnx"))?;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(features.parent().unwrap_or(Path::new(".")))
        .arg(listen::model_file(&cfg, "wake-hey-jarvis", None)?)
        .arg(&wav_path)
        .output()
        .map_err(|e| format!("{python} (the test venv from `make test`): {e}"))?;
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<f32> = String::from_utf8(out.stdout)?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let (_, mut wake) = listen::engines(&cfg)?;
    let ours: Vec<f32> = wake
        .scores(&clip.samples)?
        .into_iter()
        .map(|s| s[0])
        .collect();
    assert_eq!(ours.len(), theirs.len());
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-3,
        "largest score difference {worst}\nours   {ours:?}\ntheirs {theirs:?}"
    );
    assert!(
        theirs.iter().any(|&s| s > 0.5),
        "the clip must actually wake: {theirs:?}"
    );
    Ok(())
}

/// Our streaming run of `embedding_model.onnx` gives ONNX Runtime's embedding for every window,
/// whether computed whole (the first, after a gap) or from the last window's layers; and the
/// detector uses it.
#[test]
fn the_streaming_embedding_equals_onnx_runtime_whole_and_streamed() -> TestResult {
    use local_assistant::speech::{onnx, onnx_graph, wake_embed::StreamingEmbedding};
    let cfg = config();
    let path = listen::model_file(&cfg, "openwakeword-features", Some("embedding_model.onnx"))?;
    let graph = onnx_graph::parse(&std::fs::read(&path)?)?;
    let mut net = StreamingEmbedding::from_graph(&graph, 76, 32)?;
    assert_eq!((net.hop(), net.output_len()), (8, 96));
    let env = onnx::init(None, &cfg.models_dir())?;
    let mut session = onnx::session(env, &path, 1)?;
    // Mel-like frames (the model's input range, about 0..4): smooth bands plus noise.
    let mut seed = 0x2545_f491_u32;
    let frames: Vec<f32> = (0..76 + 8 * 30)
        .flat_map(|t| (0..32).map(move |b| (t, b)))
        .map(|(t, b)| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 8) as f32 / (1u32 << 24) as f32;
            2.0 + 1.5 * ((t as f32 * 0.21 + b as f32 * 0.37).sin()) * noise
        })
        .collect();
    let mut starts: Vec<usize> = (0..=30).map(|i| i * 8).collect();
    starts.push(3); // not a step on from the last window: computed whole
    let mut worst = 0.0f32;
    for &start in &starts {
        let window = &frames[start * 32..(start + 76) * 32];
        let ours = net.embed(window)?.to_vec();
        let input = ort::value::Tensor::from_array(([1usize, 76, 32, 1], window.to_vec()))?;
        let out = session.run(ort::inputs![input])?;
        let (_, theirs) = out[0].try_extract_tensor::<f32>()?;
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(theirs) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    assert!(worst < 1e-4, "largest relative difference {worst}");
    assert_eq!(
        net.runs(),
        (2, 30),
        "31 windows a step apart, then one that is not"
    );
    let (_, wake) = listen::engines(&cfg)?;
    assert_eq!(wake.embedding_runner(), "streaming");
    Ok(())
}

#[test]
fn listen_cli_prints_segments_and_wakes_and_refuses_bad_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut clip = Audio::silence(16_000, 800);
    clip.append(&espeak("hey jarvis, what time is it", "en-us")?)?;
    clip.append(&Audio::silence(16_000, 800))?;
    // At 44.1 kHz, to go through the resampler like a real recording.
    let p = dir.path().join("in.wav");
    wav::write(&p, &clip.resampled(44_100)?)?;
    let bin = env!("CARGO_BIN_EXE_local-assistant");
    let out = Command::new(bin)
        .arg("listen")
        .arg(&p)
        .arg("--data-dir")
        .arg(data_dir())
        .env_remove("LOCAL_ASSISTANT_CONFIG")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("speech"), "{stdout}");
    assert!(
        lines[1].starts_with("wake") && lines[1].contains("hey_jarvis_v0.1"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"RIFF\x10\x00\x00\x00WAVEfmt ")?;
    let out = Command::new(bin)
        .arg("listen")
        .arg(&bad)
        .arg("--data-dir")
        .arg(data_dir())
        .env_remove("LOCAL_ASSISTANT_CONFIG")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.wav"), "{stderr}");
    Ok(())
}
