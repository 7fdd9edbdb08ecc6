//! The speech engines' error type: what failed, with the file, model or value that caused it.

use std::path::PathBuf;

/// Why a speech operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// An audio file could not be read or written.
    #[error("audio file {path}: {reason}")]
    AudioFile {
        /// The file.
        path: PathBuf,
        /// What was wrong (format, truncation, I/O).
        reason: String,
    },
    /// Audio data was not usable (empty, wrong rate, wrong length).
    #[error("bad audio: {0}")]
    BadAudio(String),
    /// A model file is missing or cannot be loaded.
    #[error("model {path}: {reason}")]
    Model {
        /// The model file or directory.
        path: PathBuf,
        /// What was wrong; says how to fetch it when missing.
        reason: String,
    },
    /// A native runtime (ONNX Runtime, espeak-ng, libvosk) is missing or failed to load.
    #[error("{library}: {reason}")]
    Runtime {
        /// Which library.
        library: String,
        /// What was wrong.
        reason: String,
    },
    /// Inference failed inside an engine.
    #[error("{engine}: {reason}")]
    Inference {
        /// The engine (`whisper`, `piper`, `silero-vad`, `openwakeword`, `vosk`).
        engine: &'static str,
        /// What failed.
        reason: String,
    },
    /// The request was cancelled (barge-in, hang-up).
    #[error("cancelled")]
    Cancelled,
    /// The engine's worker is gone (shutting down or crashed).
    #[error("{0} worker stopped")]
    WorkerGone(&'static str),
    /// Input the engine cannot handle (unsupported language, empty text).
    #[error("{0}")]
    Unsupported(String),
}
