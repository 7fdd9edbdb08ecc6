//! Speech engines shared by every voice channel (local microphone, calls): speech to text
//! (Whisper, Vosk), text to speech (Piper, espeak-ng), voice activity (Silero) and wake words
//! (openWakeWord), plus the audio utilities they need.
//!
//! Each engine is a plain synchronous type behind a trait; CPU-bound inference runs on the
//! engine's own worker thread(s) (e.g. [`tts::stream`]), never on the async runtime. Audio inside the
//! program is mono `f32` in −1..1 with its sample rate ([`audio::Audio`]); conversion from and
//! to files, codecs and device formats happens at the edges.
//!
//! This module knows nothing about channels, the orchestrator or HTTP: it turns audio into
//! text and events, and text into audio.

pub mod audio;
pub mod bf16;
pub mod bf16_op;
pub mod cli_say;
pub mod cli_transcribe;
pub mod error;
pub mod listen;
pub mod onnx;
pub mod onnx_2d;
pub mod onnx_graph;
pub mod region;
pub mod stt;
pub mod tts;
pub mod vad;
#[cfg(feature = "vosk")]
pub mod vosk;
pub mod wake;
pub mod wake_embed;
pub mod worker;

pub use audio::Audio;
pub use error::SpeechError;

/// One recognized stretch of speech.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start, in milliseconds from the beginning of the audio.
    pub start_ms: u32,
    /// End, in milliseconds.
    pub end_ms: u32,
    /// The text.
    pub text: String,
    /// Confidence from 0 to 1 (mean token probability for Whisper).
    pub confidence: f32,
}

/// What a recognizer heard.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    /// The whole text, trimmed.
    pub text: String,
    /// Its segments with times.
    pub segments: Vec<Segment>,
    /// Language detected or configured.
    pub language: String,
}

/// Options of one recognition.
#[derive(Debug, Clone, Default)]
pub struct SttRequest {
    /// Words and names that help recognition (contact names, the wake phrase).
    pub hints: Vec<String>,
    /// Restrict recognition to these phrases (grammar), where the engine supports it.
    pub grammar: Option<Vec<String>>,
}

/// Speech to text: 16 kHz mono in, text with timed segments out.
pub trait SpeechToText: Send {
    /// The engine's name (`whisper`, `vosk`).
    fn name(&self) -> &'static str;
    /// Recognize `audio` (16 kHz mono). Returns [`SpeechError::Cancelled`] soon after `cancel`
    /// is triggered.
    fn transcribe(
        &mut self,
        audio: &Audio,
        request: &SttRequest,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<Transcript, SpeechError>;
}

/// Text to speech: one sentence (or a few) in, audio at the voice's rate out.
pub trait TextToSpeech: Send {
    /// The engine's name (`piper`, `espeak`).
    fn name(&self) -> &'static str;
    /// The rate of the audio [`TextToSpeech::synthesize`] returns.
    fn sample_rate(&self) -> u32;
    /// Speak `text` (already split into sentences by the caller when streaming).
    fn synthesize(&mut self, text: &str) -> Result<Audio, SpeechError>;
    /// Nothing is left to speak: give working memory kept for the next sentence back to the
    /// system. Called by the worker between utterances, not on the way to any audio.
    fn idle(&mut self) {}
}
