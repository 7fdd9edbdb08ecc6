//! `local-assistant say "text" -o out.wav`: speak text with the configured (or a given) voice
//! into a 16-bit mono WAV file, optionally resampled (`--rate 8000` for telephony). Prints one
//! summary line; errors go back to `main`, which prints them and exits non-zero.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use super::tts::{self, TtsOptions};
use super::{audio, SpeechError};
use crate::config::Config;

/// Arguments of `say`.
#[derive(Debug, Clone, clap::Args)]
pub struct SayArgs {
    /// The text to speak (`-` reads it from standard input).
    #[arg(value_name = "TEXT")]
    pub text: String,
    /// The WAV file to write (16-bit mono PCM).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Output rate in Hz (default: the voice's own, 22050 for Piper medium voices).
    #[arg(long, value_name = "HZ")]
    pub rate: Option<u32>,
    /// A voice from `local-assistant models list`, a .onnx path, or `espeak[:VOICE]`
    /// (default: `[speech.tts] voice`).
    #[arg(long, value_name = "NAME|PATH|espeak")]
    pub voice: Option<String>,
    /// Speaking rate, 0.25 to 4 (default: `[speech.tts] speed`).
    #[arg(long, value_name = "FACTOR")]
    pub speed: Option<f32>,
    /// State directory (overrides data_dir); voices live in <DIR>/models.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Run `say` with the loaded configuration (its data directory already overridden).
pub fn run(args: &SayArgs, config: &Config) -> Result<(), SpeechError> {
    let text = if args.text == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| {
            SpeechError::Unsupported(format!("cannot read the text from stdin: {e}"))
        })?;
        s
    } else {
        args.text.clone()
    };
    if text.trim().is_empty() {
        return Err(SpeechError::Unsupported(
            "nothing to say: the text is empty".into(),
        ));
    }
    if let Some(rate) = args.rate {
        if !(4000..=192_000).contains(&rate) {
            return Err(SpeechError::Unsupported(format!(
                "--rate {rate}: expected 4000 to 192000 Hz"
            )));
        }
    }
    let mut options = TtsOptions::from_config(&config.speech, &config.models_dir());
    if let Some(v) = &args.voice {
        options.voice.clone_from(v);
    }
    if let Some(speed) = args.speed {
        if !(speed.is_finite() && (0.25..=4.0).contains(&speed)) {
            return Err(SpeechError::Unsupported(format!(
                "--speed {speed}: expected 0.25 to 4"
            )));
        }
        options.speed = speed;
    }
    let mut voice = tts::open(&options)?;
    let started = Instant::now();
    let spoken = voice.synthesize(&text)?;
    let took = started.elapsed();
    if spoken.samples.is_empty() {
        return Err(SpeechError::Unsupported(format!(
            "nothing to say: {text:?} has no words to speak"
        )));
    }
    let out = match args.rate {
        Some(rate) => spoken.resampled(rate)?,
        None => spoken,
    };
    audio::wav::write(&args.output, &out)?;
    #[allow(clippy::cast_precision_loss)]
    let secs = out.samples.len() as f64 / f64::from(out.rate.max(1));
    println!(
        "{}: {secs:.2} s at {} Hz ({} voice, synthesized in {:.2} s, real-time factor {:.2})",
        args.output.display(),
        out.rate,
        voice.name(),
        took.as_secs_f64(),
        if secs > 0.0 {
            took.as_secs_f64() / secs
        } else {
            0.0
        }
    );
    Ok(())
}
