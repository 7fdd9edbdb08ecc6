//! `local-assistant listen FILE.wav`: runs voice activity detection and the configured wake
//! words over a recording and prints the speech segments and detections with their times.
//! The same engines and settings the voice loop uses; for checking a device's recordings.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::audio::wav;
use super::vad::{Silero, Vad, VadEvent};
use super::wake::{WakeDetector, WakeModelSpec};
use super::SpeechError;
use crate::config::Config;

/// What `listen` found.
#[derive(Debug, Default)]
pub struct Listening {
    /// Speech segments (start, end) in ms.
    pub segments: Vec<(u64, u64)>,
    /// Wake detections.
    pub detections: Vec<super::wake::Detection>,
}

/// A model named in the config: a value with a `/` is a path, else a manifest name resolved
/// to its main file (or `file` inside its directory when given).
pub fn model_file(cfg: &Config, name: &str, file: Option<&str>) -> Result<PathBuf, SpeechError> {
    let path = match file {
        Some(f) if !name.contains('/') => cfg.models_dir().join(name).join(f),
        _ => crate::models::resolve(&cfg.models_dir(), name).map_err(|e| SpeechError::Model {
            path: cfg.models_dir().join(name),
            reason: e.to_string(),
        })?,
    };
    if !path.exists() {
        return Err(SpeechError::Model {
            path,
            reason: format!("missing; run `local-assistant models pull {name}`"),
        });
    }
    Ok(path)
}

/// The configured wake models with their thresholds.
pub fn wake_specs(cfg: &Config) -> Result<Vec<WakeModelSpec>, SpeechError> {
    cfg.speech
        .wake
        .models
        .iter()
        .map(|m| {
            let (threshold, refractory_ms) = cfg.speech.wake.for_model(m);
            Ok(WakeModelSpec {
                path: model_file(cfg, m, None)?,
                threshold,
                refractory_ms,
            })
        })
        .collect()
}

/// Load the VAD and the wake detector as configured.
pub fn engines(cfg: &Config) -> Result<(Vad, WakeDetector), SpeechError> {
    let env = super::onnx::init(cfg.speech.onnxruntime.as_deref(), &cfg.models_dir())?;
    let silero = Silero::load(
        env,
        &model_file(cfg, super::vad::MODEL, None)?,
        cfg.speech.threads,
    )?;
    Ok((Vad::new(silero, cfg.speech.vad), wake_detector(cfg, 1.0)?))
}

/// The configured wake models, each threshold multiplied by `threshold_scale`.
pub fn wake_detector(cfg: &Config, threshold_scale: f32) -> Result<WakeDetector, SpeechError> {
    let env = super::onnx::init(cfg.speech.onnxruntime.as_deref(), &cfg.models_dir())?;
    let features = model_file(
        cfg,
        super::wake::FEATURES_MODEL,
        Some("melspectrogram.onnx"),
    )?;
    let features_dir = features.parent().map(Path::to_path_buf).unwrap_or_default();
    let specs: Vec<WakeModelSpec> = wake_specs(cfg)?
        .into_iter()
        .map(|mut s| {
            s.threshold *= threshold_scale;
            s
        })
        .collect();
    let mut wake = WakeDetector::load(env, &features_dir, &specs, cfg.speech.threads)?;
    wake.set_quiet_gate(cfg.speech.wake.quiet_gate);
    Ok(wake)
}

/// Run VAD and wake words over a whole recording (any WAV; resampled to 16 kHz).
pub fn listen_file(cfg: &Config, path: &Path) -> Result<Listening, SpeechError> {
    let audio = wav::read(path)?.resampled(super::vad::RATE)?;
    let (mut vad, mut wake) = engines(cfg)?;
    let mut out = Listening::default();
    // Feed in 20 ms pieces, as a live source would.
    for chunk in audio.samples.chunks(320) {
        for e in vad.push(chunk)? {
            if let VadEvent::SpeechEnd { start_ms, at_ms } = e {
                out.segments.push((start_ms, at_ms));
            }
        }
        out.detections.extend(wake.push(chunk)?);
    }
    if let Some(VadEvent::SpeechEnd { start_ms, at_ms }) = vad.finish() {
        out.segments.push((start_ms, at_ms));
    }
    Ok(out)
}

/// The CLI: print one line per segment and detection, in time order.
pub fn run(cfg: &Config, path: &Path) -> Result<(), SpeechError> {
    let found = listen_file(cfg, path)?;
    let mut lines: Vec<(u64, String)> = found
        .segments
        .iter()
        .map(|(s, e)| {
            (
                *s,
                format!(
                    "speech {:>8.2} s – {:.2} s",
                    *s as f64 / 1000.0,
                    *e as f64 / 1000.0
                ),
            )
        })
        .chain(found.detections.iter().map(|d| {
            (
                d.at_ms,
                format!(
                    "wake   {:>8.2} s   {} (score {:.3})",
                    d.at_ms as f64 / 1000.0,
                    d.model,
                    d.score
                ),
            )
        }))
        .collect();
    lines.sort_by_key(|(t, _)| *t);
    let mut out = std::io::stdout().lock();
    for (_, l) in lines {
        let _ = writeln!(out, "{l}");
    }
    Ok(())
}
