//! Wake words with openWakeWord (ONNX, through [`super::onnx`]): 16 kHz audio in 1280-sample
//! (80 ms) steps → `melspectrogram.onnx` (32 mel bands, scaled `x/10 + 2`) → `embedding_model.onnx`
//! over the last 76 mel frames (one 96-value embedding per step) → every wake model over its last
//! 16 embeddings. This is the Python package's streaming pipeline step by step, including its
//! warm-up (features of 10 s of silence; the first five scores are 0), so scores match it.
//!
//! Several wake models run at once; each has its threshold and a refractory period after a
//! detection. Custom openWakeWord models (`.onnx`) load the same way as the bundled ones.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use super::SpeechError;

/// Samples per step (80 ms at 16 kHz).
pub const STEP: usize = 1280;
/// The only rate this module takes.
pub const RATE: u32 = 16_000;
/// The manifest model holding `melspectrogram.onnx` and `embedding_model.onnx`.
pub const FEATURES_MODEL: &str = "openwakeword-features";

const MEL_BANDS: usize = 32;
const MEL_WINDOW: usize = 76;
const MEL_MAX: usize = 970;
const EMBEDDING: usize = 96;
const EMBEDDINGS_MAX: usize = 120;
/// Raw samples the mel model sees beyond the new ones (3 frames of 160).
const MEL_OVERLAP: usize = 480;
const WARMUP_SCORES: u32 = 5;

/// One wake word heard.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The wake model's name (file stem, e.g. `hey_jarvis_v0.1`).
    pub model: String,
    /// Its score, 0..1.
    pub score: f32,
    /// End of the 80 ms step that fired, ms from the start of the stream.
    pub at_ms: u64,
}

/// A wake model with its own threshold and refractory period.
#[derive(Debug, Clone)]
pub struct WakeModelSpec {
    /// Path of the `.onnx` wake model.
    pub path: PathBuf,
    /// Score that counts as a detection.
    pub threshold: f32,
    /// Quiet time after a detection, ms.
    pub refractory_ms: u32,
}

struct WakeModel {
    name: String,
    session: Session,
    input_name: String,
    frames: usize,
    threshold: f32,
    refractory_ms: u32,
    quiet_until_ms: u64,
    scores: u32,
}

/// The streaming detector.
pub struct WakeDetector {
    mel: Session,
    embed: Session,
    models: Vec<WakeModel>,
    /// Last samples, as int16 values in f32 (the mel model's input scale).
    raw: VecDeque<f32>,
    /// Samples not yet processed (less than one step).
    pending: Vec<f32>,
    mels: VecDeque<[f32; MEL_BANDS]>,
    embeddings: VecDeque<[f32; EMBEDDING]>,
    steps: u64,
}

fn infer(e: impl std::fmt::Display) -> SpeechError {
    SpeechError::Inference {
        engine: "openwakeword",
        reason: e.to_string(),
    }
}

impl WakeDetector {
    /// Load the feature models from `features_dir` (holding `melspectrogram.onnx` and
    /// `embedding_model.onnx`) and the wake models.
    pub fn load(
        env: &Environment,
        features_dir: &Path,
        models: &[WakeModelSpec],
        threads: usize,
    ) -> Result<Self, SpeechError> {
        if models.is_empty() {
            return Err(SpeechError::Unsupported(
                "no wake models configured ([speech.wake] models)".into(),
            ));
        }
        let mel = super::onnx::session(env, &features_dir.join("melspectrogram.onnx"), threads)?;
        let embed = super::onnx::session(env, &features_dir.join("embedding_model.onnx"), threads)?;
        let mut loaded = Vec::new();
        for spec in models {
            let session = super::onnx::session(env, &spec.path, threads)?;
            let bad = |reason: String| SpeechError::Model {
                path: spec.path.clone(),
                reason,
            };
            let input = session
                .inputs()
                .first()
                .ok_or_else(|| bad("the model has no input".into()))?;
            let shape = input
                .dtype()
                .tensor_shape()
                .ok_or_else(|| bad("the input is not a tensor".into()))?;
            let dims: Vec<i64> = shape.iter().copied().collect();
            let frames = match dims.as_slice() {
                [_, n, e] if *e == EMBEDDING as i64 && *n > 0 && *n <= EMBEDDINGS_MAX as i64 => {
                    usize::try_from(*n).unwrap_or(16)
                }
                other => {
                    return Err(bad(format!(
                        "not an openWakeWord model: input shape {other:?}, expected [1, frames, 96]"
                    )))
                }
            };
            let name = spec
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "wake".into());
            loaded.push(WakeModel {
                name,
                input_name: input.name().to_owned(),
                session,
                frames,
                threshold: spec.threshold,
                refractory_ms: spec.refractory_ms,
                quiet_until_ms: 0,
                scores: 0,
            });
        }
        let mut d = Self {
            mel,
            embed,
            models: loaded,
            raw: VecDeque::with_capacity(STEP + MEL_OVERLAP),
            pending: Vec::with_capacity(STEP),
            mels: VecDeque::new(),
            embeddings: VecDeque::new(),
            steps: 0,
        };
        d.warm_up()?;
        Ok(d)
    }

    /// The Python package's initial state: mel buffer of ones, embeddings of 10 s of silence.
    fn warm_up(&mut self) -> Result<(), SpeechError> {
        self.raw.clear();
        self.pending.clear();
        self.mels = std::iter::repeat_n([1.0; MEL_BANDS], MEL_WINDOW).collect();
        let silence = self.melspectrogram(&vec![0.0; 160_000])?;
        self.embeddings.clear();
        let mut i = 0;
        while i + MEL_WINDOW <= silence.len() {
            let e = self.embedding(&silence[i..i + MEL_WINDOW])?;
            self.embeddings.push_back(e);
            i += 8;
        }
        while self.embeddings.len() > EMBEDDINGS_MAX {
            self.embeddings.pop_front();
        }
        for m in &mut self.models {
            m.scores = 0;
            m.quiet_until_ms = 0;
        }
        self.steps = 0;
        Ok(())
    }

    /// Start over (a new stream; the time restarts at 0).
    pub fn reset(&mut self) -> Result<(), SpeechError> {
        self.warm_up()
    }

    /// The loaded models' names.
    pub fn model_names(&self) -> Vec<String> {
        self.models.iter().map(|m| m.name.clone()).collect()
    }

    fn melspectrogram(&mut self, samples: &[f32]) -> Result<Vec<[f32; MEL_BANDS]>, SpeechError> {
        let input =
            Tensor::from_array(([1usize, samples.len()], samples.to_vec())).map_err(infer)?;
        let out = self.mel.run(ort::inputs![input]).map_err(infer)?;
        let (_, v) = out[0].try_extract_tensor::<f32>().map_err(infer)?;
        Ok(v.chunks_exact(MEL_BANDS)
            .map(|c| {
                let mut row = [0.0; MEL_BANDS];
                for (r, x) in row.iter_mut().zip(c) {
                    *r = x / 10.0 + 2.0;
                }
                row
            })
            .collect())
    }

    fn embedding<'a>(
        &mut self,
        window: impl IntoIterator<Item = &'a [f32; MEL_BANDS]>,
    ) -> Result<[f32; EMBEDDING], SpeechError> {
        let flat: Vec<f32> = window.into_iter().flatten().copied().collect();
        if flat.len() != MEL_WINDOW * MEL_BANDS {
            return Err(infer("embedding window of the wrong size"));
        }
        let input =
            Tensor::from_array(([1usize, MEL_WINDOW, MEL_BANDS, 1], flat)).map_err(infer)?;
        let out = self.embed.run(ort::inputs![input]).map_err(infer)?;
        let (_, v) = out[0].try_extract_tensor::<f32>().map_err(infer)?;
        let mut e = [0.0; EMBEDDING];
        if v.len() != EMBEDDING {
            return Err(infer(format!(
                "embedding of {} values, expected 96",
                v.len()
            )));
        }
        e.copy_from_slice(v);
        Ok(e)
    }

    /// Feed 16 kHz samples (−1..1); returns the detections of the completed 80 ms steps.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<Detection>, SpeechError> {
        let mut out = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (STEP - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == STEP {
                let step = std::mem::take(&mut self.pending);
                let scores = self.step(&step)?;
                let at_ms = self.steps * 80;
                for (m, score) in self.models.iter_mut().zip(scores) {
                    if score >= m.threshold && at_ms >= m.quiet_until_ms {
                        m.quiet_until_ms = at_ms + u64::from(m.refractory_ms);
                        out.push(Detection {
                            model: m.name.clone(),
                            score,
                            at_ms,
                        });
                    }
                }
                self.pending = step;
                self.pending.clear();
            }
        }
        Ok(out)
    }

    /// Every model's score for each 80 ms step of a whole clip (for tools, tests, benchmarks).
    pub fn scores(&mut self, samples: &[f32]) -> Result<Vec<Vec<f32>>, SpeechError> {
        self.reset()?;
        let mut out = Vec::with_capacity(samples.len() / STEP);
        for chunk in samples.chunks_exact(STEP) {
            out.push(self.step(chunk)?);
        }
        self.reset()?;
        Ok(out)
    }

    /// One 80 ms step: returns each model's score.
    fn step(&mut self, step: &[f32]) -> Result<Vec<f32>, SpeechError> {
        for &s in step {
            // The models expect 16-bit PCM values (as float).
            self.raw
                .push_back((s * 32768.0).round().clamp(-32768.0, 32767.0));
        }
        while self.raw.len() > STEP + MEL_OVERLAP {
            self.raw.pop_front();
        }
        let raw: Vec<f32> = self.raw.iter().copied().collect();
        let mels = self.melspectrogram(&raw)?;
        self.mels.extend(mels);
        while self.mels.len() > MEL_MAX {
            self.mels.pop_front();
        }
        if self.mels.len() >= MEL_WINDOW {
            let from = self.mels.len() - MEL_WINDOW;
            let window: Vec<[f32; MEL_BANDS]> = self.mels.range(from..).copied().collect();
            let e = self.embedding(&window)?;
            self.embeddings.push_back(e);
            while self.embeddings.len() > EMBEDDINGS_MAX {
                self.embeddings.pop_front();
            }
        }
        self.steps += 1;
        let mut scores = Vec::with_capacity(self.models.len());
        for i in 0..self.models.len() {
            let n = self.models[i].frames;
            let from = self.embeddings.len().saturating_sub(n);
            let feats: Vec<f32> = self.embeddings.range(from..).flatten().copied().collect();
            if feats.len() != n * EMBEDDING {
                scores.push(0.0);
                continue;
            }
            let m = &mut self.models[i];
            let input = Tensor::from_array(([1usize, n, EMBEDDING], feats)).map_err(infer)?;
            let out = m
                .session
                .run(ort::inputs![m.input_name.as_str() => input])
                .map_err(infer)?;
            let (_, v) = out[0].try_extract_tensor::<f32>().map_err(infer)?;
            let mut score = v.first().copied().unwrap_or(0.0);
            if m.scores < WARMUP_SCORES {
                score = 0.0;
            }
            m.scores += 1;
            scores.push(score);
        }
        Ok(scores)
    }
}
