//! `local-assistant transcribe FILE.wav`: read any WAV (resampled to 16 kHz, channels
//! averaged), run the configured recognizer and print the text (with `--segments`, one timed
//! line per segment). Timing goes to stderr so stdout holds only the transcript.

use std::path::PathBuf;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{audio::wav, SpeechError, SpeechToText, SttRequest, Transcript};
use crate::config::Config;

/// Which recognizer `transcribe` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// whisper.cpp with the model of `[speech.stt] whisper_model`.
    Whisper,
    /// Vosk with the model of `[speech.stt] vosk_model` (builds with the `vosk` feature).
    Vosk,
}

/// Arguments of `local-assistant transcribe`.
#[derive(Debug, clap::Args)]
pub struct TranscribeArgs {
    /// The WAV file (any sample rate, bit depth and channel count).
    #[arg(value_name = "FILE.wav")]
    pub file: PathBuf,
    /// The recognizer (default: `[speech.stt] engine`).
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// Restrict recognition to these phrases (Vosk; repeat the flag for each phrase).
    #[arg(long, value_name = "PHRASE")]
    pub grammar: Vec<String>,
    /// Model: a manifest name, a ggml file (Whisper) or a model directory (Vosk); overrides
    /// speech.stt.whisper_model / vosk_model.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,
    /// Also print each segment with its start and end time and confidence.
    #[arg(long)]
    pub segments: bool,
    /// Encode whisper.cpp's full 30 s window instead of fitting it to the audio (slower; for
    /// comparison).
    #[arg(long)]
    pub full_window: bool,
    /// State directory (overrides data_dir); models are read from <DIR>/models.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Run `transcribe` with the loaded configuration.
pub fn run(args: &TranscribeArgs, cfg: &Config) -> Result<Transcript, SpeechError> {
    let audio = wav::read(&args.file)?.resampled(16_000)?;
    let mut engine = open_engine(args, cfg)?;
    let started = Instant::now();
    let request = SttRequest {
        grammar: (!args.grammar.is_empty()).then(|| args.grammar.clone()),
        ..SttRequest::default()
    };
    let transcript = engine.transcribe(&audio, &request, &CancellationToken::new())?;
    eprintln!(
        "[{} · {:.1} s of audio in {:.2} s]",
        engine.name(),
        audio.duration_ms() as f64 / 1000.0,
        started.elapsed().as_secs_f64()
    );
    if args.segments {
        for s in &transcript.segments {
            println!(
                "[{} --> {}] ({:.2}) {}",
                clock(s.start_ms),
                clock(s.end_ms),
                s.confidence,
                s.text
            );
        }
    } else {
        println!("{}", transcript.text);
    }
    Ok(transcript)
}

/// The recognizer `[speech.stt]` configures (the voice loop's).
pub fn open_configured(cfg: &Config) -> Result<Box<dyn SpeechToText>, SpeechError> {
    let args = TranscribeArgs {
        file: PathBuf::new(),
        engine: None,
        grammar: Vec::new(),
        model: None,
        segments: false,
        full_window: false,
        data_dir: None,
    };
    open_engine(&args, cfg)
}

fn open_engine(args: &TranscribeArgs, cfg: &Config) -> Result<Box<dyn SpeechToText>, SpeechError> {
    let engine = args.engine.unwrap_or(match cfg.speech.stt_engine {
        crate::config::SttEngineKind::Whisper => EngineArg::Whisper,
        crate::config::SttEngineKind::Vosk => EngineArg::Vosk,
    });
    match engine {
        EngineArg::Whisper => {
            if !args.grammar.is_empty() {
                return Err(SpeechError::Unsupported(
                    "--grammar needs --engine vosk (Whisper does not restrict to phrases)".into(),
                ));
            }
            open_whisper(args, cfg)
        }
        EngineArg::Vosk => open_vosk(args, cfg),
    }
}

#[cfg(feature = "whisper")]
fn open_whisper(args: &TranscribeArgs, cfg: &Config) -> Result<Box<dyn SpeechToText>, SpeechError> {
    use super::stt::whisper::WhisperEngine;
    let mut speech = cfg.speech.clone();
    if let Some(m) = &args.model {
        speech.whisper_model.clone_from(m);
    }
    let mut engine = WhisperEngine::from_config(&speech, &cfg.models_dir())?;
    engine.set_fit_audio_ctx(!args.full_window);
    Ok(Box::new(engine))
}

#[cfg(not(feature = "whisper"))]
fn open_whisper(
    _args: &TranscribeArgs,
    _cfg: &Config,
) -> Result<Box<dyn SpeechToText>, SpeechError> {
    Err(SpeechError::Unsupported(
        "this build has no Whisper engine (built without the `whisper` feature)".into(),
    ))
}

#[cfg(feature = "vosk")]
fn open_vosk(args: &TranscribeArgs, cfg: &Config) -> Result<Box<dyn SpeechToText>, SpeechError> {
    let model = args.model.as_deref().unwrap_or(&cfg.speech.vosk_model);
    let library = super::listen::model_file(cfg, super::vosk::LIBRARY_MODEL, None)?;
    let dir = if model.contains('/') {
        PathBuf::from(model)
    } else {
        crate::models::ModelStore::new(cfg.models_dir())
            .map_err(|e| SpeechError::Model {
                path: cfg.models_dir(),
                reason: e.to_string(),
            })?
            .model_dir(model)
    };
    Ok(Box::new(super::vosk::Vosk::load(&library, &dir)?))
}

#[cfg(not(feature = "vosk"))]
fn open_vosk(_args: &TranscribeArgs, _cfg: &Config) -> Result<Box<dyn SpeechToText>, SpeechError> {
    Err(SpeechError::Unsupported(
        "this build has no Vosk engine (built without the `vosk` feature)".into(),
    ))
}

/// `mm:ss.mmm`.
fn clock(ms: u32) -> String {
    format!("{:02}:{:02}.{:03}", ms / 60_000, ms / 1000 % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_reads_minutes_seconds_millis() {
        assert_eq!(super::clock(0), "00:00.000");
        assert_eq!(super::clock(61_234), "01:01.234");
    }
}
