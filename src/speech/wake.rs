//! Wake words with openWakeWord (ONNX, through [`super::onnx`]): 16 kHz audio in 1280-sample
//! (80 ms) steps → `melspectrogram.onnx` (32 mel bands, scaled `x/10 + 2`) → `embedding_model.onnx`
//! over the last 76 mel frames (one 96-value embedding per step) → every wake model over its last
//! 16 embeddings. This is the Python package's streaming pipeline step by step, including its
//! warm-up (features of 10 s of silence; the first five scores are 0), so scores match it.
//!
//! The embedding model, most of the work, runs as a streaming network of our own
//! ([`super::wake_embed`]: each step computes only the new rows of each layer) when its file is
//! the convolution stack it is; any other embedding model runs through ONNX Runtime.
//!
//! Several wake models run at once; each has its threshold and a refractory period after a
//! detection. Custom openWakeWord models (`.onnx`) load the same way as the bundled ones.
//!
//! **Quiet gate** (on by default in [`WakeDetector::push`]): a quiet room costs almost nothing.
//! Each 80 ms step's level is compared with a tracked noise floor; while no step within the wake
//! models' receptive field (the embedding's 76 mel frames plus the model's embeddings: about
//! 2 s) rose [`GATE_MARGIN_DB`] above the floor, no model runs and the scores are 0. The raw
//! audio of that field is kept, so when a step is loud the skipped steps are caught up (mel
//! frames, then the embeddings the models will read) before scoring: every score computed is
//! the one the ungated pipeline computes, at the same step. In a loud room (floor above
//! [`GATE_LOUD_FLOOR_DB`]) the gate stays open.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use super::wake_embed::StreamingEmbedding;
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
/// Steps covering the embedding's mel window (76 frames of the 8 each step adds, rounded up).
const MEL_STEPS: usize = MEL_WINDOW.div_ceil(8);
/// A step this many dB above the noise floor opens the quiet gate.
pub const GATE_MARGIN_DB: f32 = 6.0;
/// A noise floor above this (dBFS) keeps the gate open: in a loud room nothing is skipped.
pub const GATE_LOUD_FLOOR_DB: f32 = -45.0;
/// How fast the noise floor may rise, dB per step (falls at once): 1.25 dB/s.
const GATE_FLOOR_RISE_DB: f32 = 0.1;
/// The lowest level counted (one 16-bit step of dither is about −90 dBFS).
const GATE_MIN_DB: f32 = -90.0;

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

/// Level of one step, dBFS (RMS about its mean, so a DC offset is not sound).
fn level_db(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return GATE_MIN_DB;
    }
    let n = samples.len() as f32;
    let mean = samples.iter().sum::<f32>() / n;
    let power = samples.iter().map(|s| (s - mean) * (s - mean)).sum::<f32>() / n;
    (10.0 * power.max(1e-12).log10()).max(GATE_MIN_DB)
}

/// Tracks the noise floor and says whether anything the wake models would see was loud.
#[derive(Debug)]
struct QuietGate {
    floor_db: f32,
    /// Steps seen.
    seen: u64,
    /// Steps since the last loud one (`u64::MAX`: none yet).
    since_loud: u64,
    /// Steps a loud step keeps the gate open: the models' receptive field.
    hold: u64,
}

impl QuietGate {
    fn new(hold: usize) -> Self {
        Self {
            floor_db: GATE_MIN_DB,
            seen: 0,
            since_loud: u64::MAX,
            hold: hold as u64,
        }
    }

    /// Observe one step; true when the models must run on it.
    fn open(&mut self, step: &[f32]) -> bool {
        let db = level_db(step);
        let loud = self.seen == 0
            || db >= self.floor_db + GATE_MARGIN_DB
            || self.floor_db > GATE_LOUD_FLOOR_DB;
        self.floor_db = if self.seen == 0 {
            db
        } else {
            (self.floor_db + GATE_FLOOR_RISE_DB).min(db)
        };
        self.seen += 1;
        self.since_loud = if loud {
            0
        } else {
            self.since_loud.saturating_add(1)
        };
        // Until the floor is known (the first field of steps), everything runs.
        self.seen <= self.hold || self.since_loud < self.hold
    }
}

/// Runs the embedding model.
enum Embedder {
    Streaming(Box<StreamingEmbedding>),
    Onnx(Session),
}

/// The streaming detector.
pub struct WakeDetector {
    mel: Session,
    embed: Embedder,
    models: Vec<WakeModel>,
    /// Last samples, as int16 values in f32 (the mel model's input scale).
    raw: VecDeque<f32>,
    /// Samples not yet processed (less than one step).
    pending: Vec<f32>,
    mels: VecDeque<[f32; MEL_BANDS]>,
    embeddings: VecDeque<[f32; EMBEDDING]>,
    steps: u64,
    /// The quiet gate of [`Self::push`] (`None`: every step runs).
    gate: Option<QuietGate>,
    /// Steps fed but not yet through the mel and embedding models (the gate was shut).
    behind: u64,
    /// Steps the gate kept from the models, since loading.
    skipped: u64,
    /// Steps a catch-up recomputes at most: the receptive field of the widest wake model.
    field: usize,
}

/// The embedding model `path` as our streaming network when it is one, else an ONNX Runtime
/// session. A file neither can read is an error naming it.
fn embedder(env: &Environment, path: &Path, threads: usize) -> Result<Embedder, SpeechError> {
    let streaming = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| super::onnx_graph::parse(&bytes))
        .and_then(|g| StreamingEmbedding::from_graph(&g, MEL_WINDOW, MEL_BANDS))
        .and_then(|net| {
            if net.output_len() == EMBEDDING && net.hop() == 8 {
                Ok(net)
            } else {
                Err(format!(
                    "{} values every {} frames, not {EMBEDDING} every 8",
                    net.output_len(),
                    net.hop()
                ))
            }
        });
    match streaming {
        Ok(net) => Ok(Embedder::Streaming(Box::new(net))),
        Err(reason) => {
            tracing::info!(path = %path.display(), %reason, "wake: the embedding model runs in ONNX Runtime");
            Ok(Embedder::Onnx(super::onnx::session(env, path, threads)?))
        }
    }
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
        let embed = embedder(env, &features_dir.join("embedding_model.onnx"), threads)?;
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
        let field = loaded.iter().map(|m| m.frames).max().unwrap_or(16) + MEL_STEPS;
        let mut d = Self {
            mel,
            embed,
            models: loaded,
            raw: VecDeque::with_capacity(field * STEP + MEL_OVERLAP),
            pending: Vec::with_capacity(STEP),
            mels: VecDeque::new(),
            embeddings: VecDeque::new(),
            steps: 0,
            gate: Some(QuietGate::new(field)),
            behind: 0,
            skipped: 0,
            field,
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
        self.behind = 0;
        if self.gate.is_some() {
            self.gate = Some(QuietGate::new(self.field));
        }
        Ok(())
    }

    /// Turn the quiet gate on (the default) or off (every step runs every model).
    pub fn set_quiet_gate(&mut self, on: bool) {
        self.gate = on.then(|| QuietGate::new(self.field));
    }

    /// Steps the quiet gate kept from the models since loading.
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
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

    /// Which runner the embedding model got: `"streaming"` or `"onnxruntime"`.
    pub fn embedding_runner(&self) -> &'static str {
        match self.embed {
            Embedder::Streaming(_) => "streaming",
            Embedder::Onnx(_) => "onnxruntime",
        }
    }

    fn embedding<'a>(
        &mut self,
        window: impl IntoIterator<Item = &'a [f32; MEL_BANDS]>,
    ) -> Result<[f32; EMBEDDING], SpeechError> {
        let flat: Vec<f32> = window.into_iter().flatten().copied().collect();
        if flat.len() != MEL_WINDOW * MEL_BANDS {
            return Err(infer("embedding window of the wrong size"));
        }
        let mut e = [0.0; EMBEDDING];
        let session = match &mut self.embed {
            Embedder::Streaming(net) => {
                let v = net.embed(&flat).map_err(infer)?;
                if v.len() != EMBEDDING {
                    return Err(infer(format!(
                        "embedding of {} values, expected 96",
                        v.len()
                    )));
                }
                e.copy_from_slice(v);
                return Ok(e);
            }
            Embedder::Onnx(session) => session,
        };
        let input =
            Tensor::from_array(([1usize, MEL_WINDOW, MEL_BANDS, 1], flat)).map_err(infer)?;
        let out = session.run(ort::inputs![input]).map_err(infer)?;
        let (_, v) = out[0].try_extract_tensor::<f32>().map_err(infer)?;
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
                let scores = self.gated_step(&step)?;
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
    /// Every step runs (no quiet gate).
    pub fn scores(&mut self, samples: &[f32]) -> Result<Vec<Vec<f32>>, SpeechError> {
        self.reset()?;
        let mut out = Vec::with_capacity(samples.len() / STEP);
        for chunk in samples.chunks_exact(STEP) {
            out.push(self.step(chunk)?);
        }
        self.reset()?;
        Ok(out)
    }

    /// One step through the quiet gate: skipped (scores 0) while the room is quiet, else the
    /// steps skipped within the models' receptive field are caught up and the step scored.
    fn gated_step(&mut self, step: &[f32]) -> Result<Vec<f32>, SpeechError> {
        let Some(gate) = self.gate.as_mut() else {
            return self.step(step);
        };
        let open = gate.open(step);
        self.ingest(step);
        self.behind += 1;
        if !open {
            self.skipped += 1;
            self.steps += 1;
            for m in &mut self.models {
                m.scores = m.scores.saturating_add(1);
            }
            return Ok(vec![0.0; self.models.len()]);
        }
        // Steps older than the field were dropped from `raw`: the mel frames restart after a
        // gap, so the first MEL_STEPS of the catch-up only fill the mel window.
        let gap = self.behind > self.field as u64;
        let todo = self.behind.min(self.field as u64) as usize;
        for k in (0..todo).rev() {
            let nth = todo - 1 - k;
            self.features(k, !(gap && nth < MEL_STEPS))?;
        }
        self.behind = 0;
        self.steps += 1;
        self.score()
    }

    /// One 80 ms step, every model run: returns each model's score.
    fn step(&mut self, step: &[f32]) -> Result<Vec<f32>, SpeechError> {
        self.ingest(step);
        self.features(0, true)?;
        self.steps += 1;
        self.score()
    }

    /// Keep a step's samples (as 16-bit PCM values, the models' scale).
    fn ingest(&mut self, step: &[f32]) {
        for &s in step {
            self.raw
                .push_back((s * 32768.0).round().clamp(-32768.0, 32767.0));
        }
        let keep = if self.gate.is_some() {
            self.field * STEP + MEL_OVERLAP
        } else {
            STEP + MEL_OVERLAP
        };
        while self.raw.len() > keep {
            self.raw.pop_front();
        }
    }

    /// Mel frames (and, with `embed`, the embedding) of the step `back` steps before the newest.
    fn features(&mut self, back: usize, embed: bool) -> Result<(), SpeechError> {
        let end = self.raw.len().saturating_sub(back * STEP);
        let start = end.saturating_sub(STEP + MEL_OVERLAP);
        let raw: Vec<f32> = self.raw.range(start..end).copied().collect();
        let mels = self.melspectrogram(&raw)?;
        self.mels.extend(mels);
        while self.mels.len() > MEL_MAX {
            self.mels.pop_front();
        }
        if embed && self.mels.len() >= MEL_WINDOW {
            let from = self.mels.len() - MEL_WINDOW;
            let window: Vec<[f32; MEL_BANDS]> = self.mels.range(from..).copied().collect();
            let e = self.embedding(&window)?;
            self.embeddings.push_back(e);
            while self.embeddings.len() > EMBEDDINGS_MAX {
                self.embeddings.pop_front();
            }
        }
        Ok(())
    }

    /// Every wake model's score over the newest embeddings.
    fn score(&mut self) -> Result<Vec<f32>, SpeechError> {
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
