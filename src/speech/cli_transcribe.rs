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
}

/// Arguments of `local-assistant transcribe`.
#[derive(Debug, clap::Args)]
pub struct TranscribeArgs {
    /// The WAV file (any sample rate, bit depth and channel count).
    #[arg(value_name = "FILE.wav")]
    pub file: PathBuf,
    /// The recognizer.
    #[arg(long, value_enum, default_value = "whisper")]
    pub engine: EngineArg,
    /// Whisper model: a manifest name or a ggml file (overrides speech.stt.whisper_model).
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
    let transcript =
        engine.transcribe(&audio, &SttRequest::default(), &CancellationToken::new())?;
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

#[cfg(feature = "whisper")]
fn open_engine(args: &TranscribeArgs, cfg: &Config) -> Result<Box<dyn SpeechToText>, SpeechError> {
    use super::stt::whisper::WhisperEngine;
    match args.engine {
        EngineArg::Whisper => {
            let mut speech = cfg.speech.clone();
            if let Some(m) = &args.model {
                speech.whisper_model.clone_from(m);
            }
            let mut engine = WhisperEngine::from_config(&speech, &cfg.models_dir())?;
            engine.set_fit_audio_ctx(!args.full_window);
            Ok(Box::new(engine))
        }
    }
}

#[cfg(not(feature = "whisper"))]
fn open_engine(
    _args: &TranscribeArgs,
    _cfg: &Config,
) -> Result<Box<dyn SpeechToText>, SpeechError> {
    Err(SpeechError::Unsupported(
        "this build has no Whisper engine (built without the `whisper` feature)".into(),
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
