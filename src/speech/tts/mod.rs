//! Text to speech: Piper voices on ONNX Runtime with phonemes from espeak-ng ([`piper`],
//! [`espeak`]), espeak-ng's own synthesizer as a fallback voice, text normalization
//! ([`normalize`]: numbers, times, dates said as words) and sentence streaming ([`stream`]).
//!
//! [`open`] turns `[speech.tts]` into a running voice. Piper and espeak-ng exist only with the
//! `espeak` cargo feature (espeak-ng is GPL-3.0-or-later); without it [`open`] says so.
//!
//! **Architecture Invariant:** nothing here knows about channels, calls or the orchestrator;
//! text goes in, [`Audio`] at the voice's rate comes out. Synthesis is blocking and runs on
//! the caller's (worker) thread, never on the async runtime.

#[cfg(feature = "espeak")]
pub mod espeak;
pub mod normalize;
#[cfg(feature = "espeak")]
pub mod piper;
pub mod stream;

use std::path::{Path, PathBuf};

use super::{Audio, SpeechError, TextToSpeech};
use crate::config::SpeechConfig;

/// The value of `[speech.tts] voice` that selects espeak-ng's own synthesizer
/// (`espeak:<voice>` picks an espeak voice other than `en-us`).
pub const ESPEAK_VOICE: &str = "espeak";
/// espeak-ng voice of the fallback when none is named.
pub const DEFAULT_ESPEAK_VOICE: &str = "en-us";

/// Everything needed to open a voice.
#[derive(Debug, Clone)]
pub struct TtsOptions {
    /// A manifest voice name, a `.onnx` path, `espeak` or `espeak:<voice>`.
    pub voice: String,
    /// Speaker of a multi-speaker voice.
    pub speaker: u32,
    /// Speaking rate (1.0 normal).
    pub speed: f32,
    /// Inference threads.
    pub threads: usize,
    /// Explicit `libonnxruntime.so`.
    pub onnxruntime: Option<PathBuf>,
    /// The models directory (`<data_dir>/models`).
    pub models_dir: PathBuf,
}

impl TtsOptions {
    /// From the resolved `[speech]` section and the models directory.
    pub fn from_config(speech: &SpeechConfig, models_dir: &Path) -> Self {
        Self {
            voice: speech.voice.clone(),
            speaker: speech.speaker,
            speed: speech.speed,
            threads: speech.tts_threads,
            onnxruntime: speech.onnxruntime.clone(),
            models_dir: models_dir.to_path_buf(),
        }
    }
}

/// Where a voice setting points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceSource {
    /// espeak-ng's synthesizer with this espeak voice.
    Espeak(String),
    /// A Piper `.onnx` file.
    Piper(PathBuf),
}

/// Resolve `voice`: `espeak[:<voice>]`, a path (contains `/` or ends in `.onnx`), or a
/// manifest model of role `tts` installed under `models_dir`.
pub fn resolve_voice(voice: &str, models_dir: &Path) -> Result<VoiceSource, SpeechError> {
    let voice = voice.trim();
    if voice.is_empty() {
        return Err(SpeechError::Unsupported(
            "no voice given: name a voice from `local-assistant models list`, a .onnx path or \"espeak\"".into(),
        ));
    }
    if voice == ESPEAK_VOICE {
        return Ok(VoiceSource::Espeak(DEFAULT_ESPEAK_VOICE.into()));
    }
    if let Some(v) = voice.strip_prefix("espeak:") {
        return Ok(VoiceSource::Espeak(v.trim().to_owned()));
    }
    if voice.contains('/') || voice.ends_with(".onnx") {
        return Ok(VoiceSource::Piper(PathBuf::from(voice)));
    }
    let store =
        crate::models::store::ModelStore::new(models_dir).map_err(|e| SpeechError::Model {
            path: models_dir.to_path_buf(),
            reason: e.to_string(),
        })?;
    let entry = store.manifest().get(voice).map_err(|_| {
        SpeechError::Unsupported(format!(
            "unknown voice {voice:?}: not a voice of the model manifest (`local-assistant models list`), \
             not a .onnx path and not \"espeak\""
        ))
    })?;
    if entry.role != "tts" {
        return Err(SpeechError::Unsupported(format!(
            "{voice:?} is a {} model, not a voice",
            entry.role
        )));
    }
    store
        .path_of(voice)
        .map(VoiceSource::Piper)
        .map_err(|e| SpeechError::Model {
            path: store.model_dir(voice),
            reason: e.to_string(),
        })
}

/// Open the voice `options` describe.
pub fn open(options: &TtsOptions) -> Result<Box<dyn TextToSpeech>, SpeechError> {
    let source = resolve_voice(&options.voice, &options.models_dir)?;
    open_source(&source, options)
}

#[cfg(feature = "espeak")]
fn open_source(
    source: &VoiceSource,
    options: &TtsOptions,
) -> Result<Box<dyn TextToSpeech>, SpeechError> {
    match source {
        VoiceSource::Espeak(v) => Ok(Box::new(espeak::EspeakVoice::new(v, options.speed)?)),
        VoiceSource::Piper(model) => {
            let env = super::onnx::init(options.onnxruntime.as_deref(), &options.models_dir)?;
            Ok(Box::new(piper::PiperVoice::load(
                env,
                model,
                &piper::PiperOptions {
                    speaker: options.speaker,
                    speed: options.speed,
                    threads: options.threads,
                    ..piper::PiperOptions::default()
                },
            )?))
        }
    }
}

#[cfg(not(feature = "espeak"))]
fn open_source(
    _source: &VoiceSource,
    _options: &TtsOptions,
) -> Result<Box<dyn TextToSpeech>, SpeechError> {
    Err(SpeechError::Unsupported(
        "text to speech needs espeak-ng: this build was made without the `espeak` cargo feature"
            .into(),
    ))
}

/// Speak each of `sentences` with `tts` and resample to 16 kHz (what the recognizers take):
/// one clip per sentence, e.g. for a speech → text round trip.
pub fn synthesize_16k(
    tts: &mut dyn TextToSpeech,
    sentences: &[&str],
) -> Result<Vec<Audio>, SpeechError> {
    sentences
        .iter()
        .map(|s| tts.synthesize(s)?.resampled(16_000))
        .collect()
}

/// [`synthesize_16k`], writing `<dir>/<index>.wav` (16-bit mono 16 kHz); returns the paths.
pub fn synthesize_16k_wavs(
    tts: &mut dyn TextToSpeech,
    sentences: &[&str],
    dir: &Path,
) -> Result<Vec<PathBuf>, SpeechError> {
    let clips = synthesize_16k(tts, sentences)?;
    clips
        .iter()
        .enumerate()
        .map(|(i, clip)| {
            let path = dir.join(format!("{i:03}.wav"));
            super::audio::wav::write(&path, clip)?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_resolve_to_espeak_paths_or_manifest_entries() {
        let dir = Path::new("no-such-models-dir");
        assert_eq!(
            resolve_voice("espeak", dir).unwrap(),
            VoiceSource::Espeak("en-us".into())
        );
        assert_eq!(
            resolve_voice("espeak:de", dir).unwrap(),
            VoiceSource::Espeak("de".into())
        );
        assert_eq!(
            resolve_voice("voices/x.onnx", dir).unwrap(),
            VoiceSource::Piper("voices/x.onnx".into())
        );
        let unknown = resolve_voice("no-such-voice", dir).unwrap_err().to_string();
        assert!(unknown.contains("unknown voice"), "{unknown}");
        let not_voice = resolve_voice("onnxruntime", dir).unwrap_err().to_string();
        assert!(not_voice.contains("not a voice"), "{not_voice}");
        let missing = resolve_voice("piper-en-us-joe-medium", dir)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("piper-en-us-joe-medium"), "{missing}");
        assert!(resolve_voice("  ", dir).is_err());
    }
}
