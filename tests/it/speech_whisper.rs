//! Whisper end to end with the real models (`make models`): our CTranslate2 → ggml conversion
//! transcribes like faster-whisper on the original CTranslate2 model, cancellation aborts
//! inside whisper.cpp, segment times are sane, and `local-assistant transcribe` accepts any
//! WAV and names bad files.
//!
//! Test audio is spoken at test time by the `espeak-ng` CLI and resampled to 16 kHz by our
//! resampler; both recognizers read the same 16-bit file. faster-whisper runs from the venv
//! `make test-deps` creates (`FASTER_WHISPER_PYTHON`, default `.venv-test/bin/python`); when
//! it is missing the agreement test fails with the command that fixes it.

#![cfg(feature = "whisper")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use local_assistant::speech::audio::wav;
use local_assistant::speech::stt::whisper::{resolve_model, WhisperEngine, WhisperOptions};
use local_assistant::speech::worker::{SttWorker, Worker};
use local_assistant::speech::{Audio, SpeechError, SpeechToText, SttRequest};
use tokio_util::sync::CancellationToken;

use crate::common::speech::{faster_whisper_python, speak, words as normalize};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TINY: &str = "whisper-tiny.en-ct2";
const BASE: &str = "whisper-base-ct2";

/// Sentences both recognizers hear the same way (espeak-ng's voice trips Whisper up on some
/// others; numbers are avoided because "4" and "four" are both right).
const SENTENCES: &[&str] = &[
    "The meeting has been moved to Thursday afternoon.",
    "Switch off the television in the living room.",
    "How long does it take to drive from London to Paris?",
    "Play some relaxing music in the bedroom.",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn models_dir() -> PathBuf {
    root().join("data").join("models")
}

/// The converted ggml file of manifest model `name`; fails with the fix when it is missing.
fn ggml(name: &str) -> TestResult<PathBuf> {
    resolve_model(name, &models_dir())
        .map_err(|e| format!("{e}\n(run `make models` to fetch and convert the models)").into())
}

fn engine(name: &str) -> TestResult<WhisperEngine> {
    Ok(WhisperEngine::load(
        &ggml(name)?,
        WhisperOptions::default(),
    )?)
}

/// faster-whisper on the original CTranslate2 model: greedy, no temperature fallback, English,
/// float32 on one CPU thread (the closest it gets to our f16 weights).
const PEER: &str = r#"
import json, sys
from faster_whisper import WhisperModel
m = WhisperModel(sys.argv[1], device="cpu", compute_type="float32", cpu_threads=1)
for f in sys.argv[2:]:
    segs, _ = m.transcribe(f, beam_size=1, temperature=[0.0], language="en",
                           condition_on_previous_text=False, vad_filter=False)
    print(json.dumps(" ".join(s.text.strip() for s in segs)))
"#;

fn faster_whisper(model_dir: &Path, files: &[PathBuf]) -> TestResult<Vec<String>> {
    let out = Command::new(faster_whisper_python()?)
        .arg("-c")
        .arg(PEER)
        .arg(model_dir)
        .args(files)
        .output()?;
    assert!(
        out.status.success(),
        "faster-whisper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let texts = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str::<String>)
        .collect::<Result<Vec<_>, _>>()?;
    assert_eq!(texts.len(), files.len(), "one line per file");
    Ok(texts)
}

fn agreement(model: &str) -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    let mut clips = Vec::new();
    for (i, s) in SENTENCES.iter().enumerate() {
        let (path, audio) = speak(dir.path(), &format!("s{i}"), s)?;
        files.push(path);
        clips.push(audio);
    }
    let theirs = faster_whisper(&models_dir().join(model), &files)?;
    let mut ours = engine(model)?;
    let mut differ = Vec::new();
    for ((clip, theirs), said) in clips.iter().zip(&theirs).zip(SENTENCES) {
        let t = ours.transcribe(clip, &SttRequest::default(), &CancellationToken::new())?;
        let (a, b) = (normalize(&t.text), normalize(theirs));
        // Not a test of Whisper's accuracy, but a converted model that hears nothing useful
        // must not pass because both sides happened to agree.
        assert!(
            normalize(said).split(' ').filter(|w| a.contains(w)).count() * 2
                > normalize(said).split(' ').count(),
            "{model}: {a:?} has little to do with {said:?}"
        );
        if a != b {
            differ.push(format!("ours {a:?} vs faster-whisper {b:?}"));
        }
    }
    assert!(differ.is_empty(), "{model}: {differ:#?}");
    Ok(())
}

#[test]
fn tiny_en_converted_to_ggml_transcribes_like_faster_whisper_on_the_ct2_model() -> TestResult {
    agreement(TINY)
}

#[test]
fn base_converted_to_ggml_transcribes_like_faster_whisper_on_the_ct2_model() -> TestResult {
    agreement(BASE)
}

/// whisper.cpp 1.8 polls the abort callback after each encoder pass and each decoder step (not
/// inside the encoder graph), so a cancel lands within one pass. Proof that it lands at all:
/// 60 s of speech is two 30 s windows; cancelled early, the call must return in less time than
/// one window takes uncancelled, where ignoring the cancel would take about two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_aborts_a_long_transcription_inside_whisper_cpp() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_, speech) = speak(dir.path(), "long", SENTENCES.join(" ").as_str())?;
    let mut long = Audio::new(16_000, Vec::new());
    while long.duration_ms() < 60_000 {
        long.append(&speech)?;
        long.append(&Audio::silence(16_000, 300))?;
    }
    let window = Audio::new(16_000, long.samples[..16_000 * 30].to_vec());
    let worker: SttWorker = Worker::spawn(
        "whisper",
        Box::new(engine(TINY)?) as Box<dyn SpeechToText>,
        1,
    )?;

    let started = Instant::now();
    let one = worker
        .transcribe(window, SttRequest::default(), CancellationToken::new())
        .await?;
    let one_window = started.elapsed();
    assert!(normalize(&one.text).contains("television"), "{one:?}");

    let cancel = CancellationToken::new();
    let job = tokio::spawn({
        let (worker, cancel) = (worker.clone(), cancel.clone());
        async move { worker.transcribe(long, SttRequest::default(), cancel).await }
    });
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(120), job).await??;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(SpeechError::Cancelled)),
        "expected Cancelled, got {result:?}"
    );
    assert!(
        took < one_window,
        "cancelled 60 s took {took:?}; one uncancelled 30 s window took {one_window:?}"
    );
    Ok(())
}

#[test]
fn segment_times_are_ordered_and_inside_the_audio() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut audio = Audio::new(16_000, Vec::new());
    for (i, s) in SENTENCES.iter().enumerate() {
        audio.append(&speak(dir.path(), &format!("s{i}"), s)?.1)?;
        audio.append(&Audio::silence(16_000, 1200))?;
    }
    let t = engine(TINY)?.transcribe(&audio, &SttRequest::default(), &CancellationToken::new())?;
    assert!(t.segments.len() >= 2, "{t:#?}");
    assert_eq!(t.language, "en");
    let duration = u32::try_from(audio.duration_ms())?;
    let mut previous_start = 0;
    for s in &t.segments {
        assert!(s.start_ms <= s.end_ms, "{s:?}");
        assert!(s.end_ms <= duration, "{s:?} beyond {duration} ms");
        assert!(
            s.start_ms >= previous_start,
            "{s:?} starts before the one before it"
        );
        assert!(
            (0.0..=1.0).contains(&s.confidence) && s.confidence > 0.2,
            "{s:?}"
        );
        assert!(!s.text.is_empty());
        previous_start = s.start_ms;
    }
    assert!(normalize(&t.text).contains("london to paris"), "{}", t.text);
    Ok(())
}

#[test]
fn audio_at_another_rate_is_refused_with_the_rate_named() -> TestResult {
    let e = engine(TINY)?
        .transcribe(
            &Audio::silence(48_000, 500),
            &SttRequest::default(),
            &CancellationToken::new(),
        )
        .expect_err("48 kHz");
    assert!(e.to_string().contains("48000 Hz"), "{e}");
    Ok(())
}

fn transcribe_cli(file: &Path) -> TestResult<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_local-assistant"))
        .env_remove("LOCAL_ASSISTANT_CONFIG")
        .arg("transcribe")
        .arg(file)
        .arg("--data-dir")
        .arg(root().join("data"))
        .output()?)
}

#[test]
fn transcribe_cli_reads_a_48_khz_stereo_wav() -> TestResult {
    ggml(TINY)?;
    let dir = tempfile::tempdir()?;
    let (_, mono) = speak(dir.path(), "paris", SENTENCES[2])?;
    let hi = mono.resampled(48_000)?;
    let path = dir.path().join("stereo48k.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec)?;
    for s in hi.to_i16() {
        w.write_sample(s)?;
        w.write_sample(s / 2)?;
    }
    w.finalize()?;
    let out = transcribe_cli(&path)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heard = normalize(&stdout);
    assert!(
        heard.contains("london") && heard.contains("paris"),
        "stdout: {stdout}"
    );
    Ok(())
}

#[test]
fn transcribe_cli_names_truncated_empty_and_non_wav_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.wav");
    wav::write(&good, &Audio::silence(16_000, 1000))?;
    let bytes = std::fs::read(&good)?;

    let truncated = dir.path().join("truncated.wav");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2])?;
    let empty = dir.path().join("empty.wav");
    wav::write(&empty, &Audio::new(16_000, Vec::new()))?;
    let zero = dir.path().join("zero-bytes.wav");
    std::fs::write(&zero, b"")?;
    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "this is not audio\n")?;

    for (file, why) in [
        (&truncated, "truncated"),
        (&empty, "no audio"),
        (&zero, "not a usable WAV"),
        (&text, "not a usable WAV"),
    ] {
        let out = transcribe_cli(file)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was accepted", file.display());
        assert!(
            stderr.contains(&file.display().to_string()) && stderr.contains(why),
            "{}: {stderr}",
            file.display()
        );
    }
    Ok(())
}
