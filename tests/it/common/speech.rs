//! Speech-to-text test helpers: speech from the `espeak-ng` command line, transcripts compared
//! by their words, and the Python that runs faster-whisper (the peer). Shared by the
//! integration tests and `benches/stt.rs` (included there by path: nothing here may use the
//! rest of `common`).

use std::path::{Path, PathBuf};
use std::process::Command;

use local_assistant::speech::audio::wav;
use local_assistant::speech::Audio;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Speak `text` with espeak-ng and return it at 16 kHz, also written to `dir/<stem>.wav`
/// (16-bit): what every recognizer under test reads.
pub fn speak(dir: &Path, stem: &str, text: &str) -> Result<(PathBuf, Audio)> {
    let raw = dir.join(format!("{stem}.raw.wav"));
    let out = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&raw)
        .arg(text)
        .output()
        .map_err(|e| format!("espeak-ng: {e} (install it: apt-get install espeak-ng)"))?;
    if !out.status.success() {
        return Err(format!("espeak-ng failed: {out:?}").into());
    }
    let audio = wav::read(&raw)?.resampled(16_000)?;
    let path = dir.join(format!("{stem}.wav"));
    wav::write(&path, &audio)?;
    Ok((path.clone(), wav::read(&path)?))
}

/// Lowercase, punctuation removed (apostrophes kept), whitespace collapsed: transcripts are
/// compared by their words, not by how each engine punctuates.
pub fn words(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Python that imports faster-whisper: `$FASTER_WHISPER_PYTHON`, else the venv
/// `make test-deps` creates. `Err` names the interpreter tried and the fix.
pub fn faster_whisper_python() -> std::result::Result<PathBuf, String> {
    let p = std::env::var_os("FASTER_WHISPER_PYTHON")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python"),
            PathBuf::from,
        );
    let ok = Command::new(&p)
        .args(["-c", "import faster_whisper"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(p)
    } else {
        Err(format!(
            "faster-whisper is not importable with {} (run `make test-deps`, or set \
             FASTER_WHISPER_PYTHON to an interpreter that has it)",
            p.display()
        ))
    }
}
