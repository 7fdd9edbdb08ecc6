//! Piper voices (VITS, ONNX) on ONNX Runtime: the voice's `.onnx.json`, phonemes → ids exactly
//! like Piper (`^`, `_`, then each phoneme followed by `_`, then `$`), one model run per
//! sentence, audio at the voice's rate, peak-normalized like Piper's.
//!
//! Phonemes come from espeak-ng ([`super::espeak`]), so this module exists only with the
//! `espeak` feature. It never touches the async runtime; callers run it on a worker thread
//! ([`super::stream`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::session::{RunOptions, Session};
use ort::value::Tensor;
use serde::Deserialize;

use super::{espeak, normalize};
use crate::speech::bf16::{self, Engine};
use crate::speech::bf16_op;
use crate::speech::region::Region;
use crate::speech::{onnx_2d, onnx_graph};
use crate::speech::{Audio, SpeechError, TextToSpeech};

/// Beginning of an utterance, end, and the pad that follows every phoneme.
const BOS: char = '^';
const EOS: char = '$';
const PAD: char = '_';
/// Peak of each sentence's audio after normalization (Piper uses 1.0; a little headroom keeps
/// resampling overshoot from clipping).
const PEAK: f32 = 0.95;

/// What the `.onnx.json` beside a voice says (the keys we use).
#[derive(Debug, Clone, Deserialize)]
struct RawVoiceConfig {
    audio: RawAudio,
    #[serde(default)]
    espeak: Option<RawEspeak>,
    #[serde(default)]
    inference: RawInference,
    #[serde(default)]
    phoneme_type: Option<String>,
    #[serde(default = "one")]
    num_speakers: u32,
    #[serde(default)]
    speaker_id_map: HashMap<String, i64>,
    phoneme_id_map: HashMap<String, Vec<i64>>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
struct RawAudio {
    sample_rate: u32,
}

#[derive(Debug, Clone, Deserialize)]
struct RawEspeak {
    voice: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct RawInference {
    noise_scale: f32,
    length_scale: f32,
    noise_w: f32,
}

impl Default for RawInference {
    fn default() -> Self {
        Self {
            noise_scale: 0.667,
            length_scale: 1.0,
            noise_w: 0.8,
        }
    }
}

/// How a voice turns text into phonemes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phonemes {
    /// IPA from espeak-ng with this espeak voice (`en-us`).
    Espeak(String),
    /// The text's own code points (after NFD).
    Text,
}

/// A voice's settings from its `.onnx.json`.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    /// Output rate in Hz.
    pub sample_rate: u32,
    /// Phonemizer.
    pub phonemes: Phonemes,
    /// Noise of the generator.
    pub noise_scale: f32,
    /// Phoneme length (larger is slower).
    pub length_scale: f32,
    /// Noise of the phoneme durations.
    pub noise_w: f32,
    /// Speakers of the voice (1: single speaker).
    pub num_speakers: u32,
    /// Speaker names → ids.
    pub speaker_id_map: HashMap<String, i64>,
    /// Phoneme (one code point) → ids.
    pub phoneme_id_map: HashMap<char, Vec<i64>>,
}

impl VoiceConfig {
    /// Read and check the `.onnx.json` at `path`.
    pub fn from_file(path: &Path) -> Result<Self, SpeechError> {
        let err = |reason: String| SpeechError::Model {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(if e.kind() == std::io::ErrorKind::NotFound {
                "the voice's .onnx.json is missing (it must sit beside the .onnx)".into()
            } else {
                e.to_string()
            })
        })?;
        Self::parse(&text).map_err(err)
    }

    /// Parse the text of a `.onnx.json`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawVoiceConfig =
            serde_json::from_str(text).map_err(|e| format!("not a Piper voice config: {e}"))?;
        let phonemes = match raw.phoneme_type.as_deref().unwrap_or("espeak") {
            "espeak" => Phonemes::Espeak(
                raw.espeak
                    .map(|e| e.voice)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or("phoneme_type is espeak but espeak.voice is missing")?,
            ),
            "text" => Phonemes::Text,
            other => {
                return Err(format!(
                    "phoneme_type {other:?} is not supported (only \"espeak\" and \"text\")"
                ))
            }
        };
        if !(8000..=192_000).contains(&raw.audio.sample_rate) {
            return Err(format!(
                "audio.sample_rate {} is not a plausible rate",
                raw.audio.sample_rate
            ));
        }
        let mut map = HashMap::with_capacity(raw.phoneme_id_map.len());
        for (k, v) in raw.phoneme_id_map {
            let mut chars = k.chars();
            // Piper's phonemes are single code points; longer keys can never match.
            if let (Some(c), None) = (chars.next(), chars.next()) {
                map.insert(c, v);
            }
        }
        for required in [BOS, EOS, PAD] {
            if map.get(&required).is_none_or(Vec::is_empty) {
                return Err(format!("phoneme_id_map lacks {required:?}"));
            }
        }
        Ok(Self {
            sample_rate: raw.audio.sample_rate,
            phonemes,
            noise_scale: raw.inference.noise_scale,
            length_scale: raw.inference.length_scale,
            noise_w: raw.inference.noise_w,
            num_speakers: raw.num_speakers.max(1),
            speaker_id_map: raw.speaker_id_map,
            phoneme_id_map: map,
        })
    }

    /// Piper's ids for one sentence of phonemes: BOS, PAD, then each known phoneme followed by
    /// PAD, then EOS. Phonemes missing from the map are skipped (as Piper does).
    pub fn phoneme_ids(&self, phonemes: &[char]) -> Vec<i64> {
        let get = |c: char| self.phoneme_id_map.get(&c).map_or(&[][..], Vec::as_slice);
        let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
        ids.extend_from_slice(get(BOS));
        ids.extend_from_slice(get(PAD));
        for &p in phonemes {
            let Some(id) = self.phoneme_id_map.get(&p) else {
                tracing::debug!(phoneme = %p, "phoneme missing from the voice's id map");
                continue;
            };
            ids.extend_from_slice(id);
            ids.extend_from_slice(get(PAD));
        }
        ids.extend_from_slice(get(EOS));
        ids
    }
}

/// Settings of one Piper voice instance.
#[derive(Debug, Clone)]
pub struct PiperOptions {
    /// Speaker of a multi-speaker voice.
    pub speaker: u32,
    /// Speaking rate (divides the voice's length scale).
    pub speed: f32,
    /// ONNX Runtime intra-op threads, and the threads of our decoder ([`Self::bf16_decoder`]).
    pub threads: usize,
    /// When ONNX Runtime runs the decoder: its 1-D convolutions as 2-D ones
    /// ([`crate::speech::onnx_2d`]), the same arithmetic in ONNX Runtime's blocked (NCHWc)
    /// kernels. Taken only with one thread: there it
    /// was 0.83–0.86× the 1-D run's time here, while with two ONNX Runtime splits the blocked
    /// kernels' work worse than its im2col path (1.05–1.13×). Off to compare.
    pub convs_2d: bool,
    /// Run the decoder with our bfloat16 kernels ([`crate::speech::region`]) where the CPU has
    /// bfloat16 dot products ([`bf16::available`]); ONNX Runtime runs the rest of the model.
    /// The audio differs from float32's by about −40 dB (far less than the voice's own noise
    /// changes it from run to run). Off to compare, or for float32's exact samples.
    pub bf16_decoder: bool,
    /// With [`Self::bf16_decoder`] in effect: the flow's convolutions too, as a custom operator
    /// inside ONNX Runtime ([`crate::speech::bf16_op`], its output channels shared among ONNX
    /// Runtime's threads). Its audio is further from
    /// float32's sample by sample (about 24–28 dB with the noise off: the flow's output is
    /// inverted into the decoder), while its spectrum stays close (log-spectral distance 0.016,
    /// against 0.15 between two float32 runs that differ by the voice's own noise).
    pub bf16_flow: bool,
    /// With [`Self::bf16_decoder`] in effect: the text encoder's convolutions too (its
    /// attention's projections and feed-forward layers; 37 in this voice). The encoder feeds
    /// the duration predictor, so a phoneme whose duration sits on a frame boundary can come out
    /// a frame (11.6 ms) longer or shorter than with float32: 1 frame in the bench's 900 here,
    /// where the voice's own duration noise (`noise_w`) moves far more every run.
    pub bf16_encoder: bool,
}

impl Default for PiperOptions {
    fn default() -> Self {
        Self {
            speaker: 0,
            speed: 1.0,
            threads: 1,
            convs_2d: true,
            bf16_decoder: true,
            bf16_flow: true,
            bf16_encoder: true,
        }
    }
}

/// A loaded Piper voice.
pub struct PiperVoice {
    session: Session,
    config: VoiceConfig,
    model: PathBuf,
    speaker: Option<i64>,
    speed: f32,
    convs_2d: usize,
    /// How many of the flow's convolutions run on our kernels.
    flow_convs: usize,
    /// How many of the text encoder's convolutions run on our kernels.
    encoder_convs: usize,
    /// The buffers of those convolutions (given back with ONNX Runtime's arena).
    op_scratch: Option<bf16_op::Shared>,
    /// Run options that empty ONNX Runtime's arena ([`TextToSpeech::idle`]).
    shrink: RunOptions,
    /// Run options of a sentence.
    plain: RunOptions,
    /// Whether a sentence ran since the arena was last emptied.
    arena_used: bool,
    /// The decoder on our kernels, and the session's outputs it reads, when the session runs
    /// the rest of the model.
    decoder: Option<(Region, Vec<String>)>,
}

impl std::fmt::Debug for PiperVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiperVoice")
            .field("model", &self.model)
            .field("sample_rate", &self.config.sample_rate)
            .field("speaker", &self.speaker)
            .field("speed", &self.speed)
            .field("convs_2d", &self.convs_2d)
            .field("bf16_decoder", &self.decoder.is_some())
            .finish_non_exhaustive()
    }
}

/// Prefix of the names of the decoder's nodes (HiFi-GAN) in Piper's exported voices.
const DECODER: &str = "/dec/";
/// Prefix of the flow's nodes (VITS's normalizing flow, run in reverse).
const FLOW: &str = "/flow/";
/// The text encoder's nodes.
const ENCODER: &str = "/enc_p/";

/// `<model>.json` (Piper's convention: `voice.onnx` + `voice.onnx.json`).
pub fn config_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

impl PiperVoice {
    /// Load the voice at `model` (its `.onnx.json` beside it) into a session of `env`.
    pub fn load(
        env: &Environment,
        model: &Path,
        options: &PiperOptions,
    ) -> Result<Self, SpeechError> {
        let model_err = |reason: String| SpeechError::Model {
            path: model.to_path_buf(),
            reason,
        };
        if !model.is_file() {
            return Err(model_err(
                "voice model missing; run `local-assistant models pull <voice>` or give the path of a .onnx voice".into(),
            ));
        }
        let config = VoiceConfig::from_file(&config_path(model))?;
        let speaker = if config.num_speakers > 1 {
            if options.speaker >= config.num_speakers {
                return Err(SpeechError::Unsupported(format!(
                    "speaker {} does not exist: {} has speakers 0..{}",
                    options.speaker,
                    model.display(),
                    config.num_speakers - 1
                )));
            }
            Some(i64::from(options.speaker))
        } else {
            None
        };
        if let Phonemes::Espeak(_) = config.phonemes {
            espeak::available()?;
        }
        let ours = options.bf16_decoder && bf16::available();
        let bytes = if ours || (options.convs_2d && options.threads == 1) {
            Some(std::fs::read(model).map_err(|e| model_err(format!("cannot read it: {e}")))?)
        } else {
            None
        };
        let split = match &bytes {
            Some(b) if ours => split_decoder(b, options.threads)
                .inspect_err(|reason| {
                    tracing::info!(model = %model.display(), %reason, "the decoder stays in ONNX Runtime");
                })
                .ok(),
            _ => None,
        };
        let rewritten = match &bytes {
            Some(b) if split.is_none() && options.convs_2d && options.threads == 1 => {
                onnx_2d::convs_as_2d(b, DECODER)
                    .inspect_err(|reason| {
                        tracing::info!(model = %model.display(), %reason, "decoder convolutions stay 1-D");
                    })
                    .ok()
            }
            _ => None,
        };
        drop(bytes);
        // The flow's and the text encoder's convolutions on our kernels too, inside ONNX Runtime
        // (a custom operator).
        let prefixes: Vec<&str> = [(options.bf16_flow, FLOW), (options.bf16_encoder, ENCODER)]
            .into_iter()
            .filter_map(|(on, prefix)| on.then_some(prefix))
            .collect();
        let mut flow = match &split {
            Some((front, _, _)) if !prefixes.is_empty() => onnx_2d::convs_to_domain(front, &prefixes, bf16_op::DOMAIN)
                .inspect_err(|reason| {
                    tracing::info!(model = %model.display(), %reason, "the flow and the encoder stay in ONNX Runtime's kernels");
                })
                .ok(),
            _ => None,
        };
        let moved = |prefix: &str| {
            flow.as_ref()
                .and_then(|m| {
                    let i = prefixes.iter().position(|p| *p == prefix)?;
                    m.counts.get(i).copied()
                })
                .unwrap_or(0)
        };
        let (flow_convs, encoder_convs) = (moved(FLOW), moved(ENCODER));
        let (operators, op_scratch) = match &mut flow {
            Some(m) => {
                let weights = std::mem::take(&mut m.weights);
                let (domain, scratch) = bf16_op::domain(options.threads, weights)
                    .map_err(|e| model_err(e.to_string()))?;
                (Some(domain), Some(scratch))
            }
            None => (None, None),
        };
        let session_bytes = match (&flow, &split, &rewritten) {
            (Some(m), _, _) => Some(m.bytes.as_slice()),
            (None, Some((front, _, _)), _) => Some(front.as_slice()),
            (None, None, Some(r)) => Some(r.bytes.as_slice()),
            (None, None, None) => None,
        };
        let session = crate::speech::onnx::session_from(
            env,
            model,
            session_bytes,
            options.threads,
            true,
            operators,
        )?;
        // The session has packed the weights into its kernels.
        if let Some(s) = &op_scratch {
            s.forget_weights();
        }
        let shrink = crate::speech::onnx::shrink_arena()?;
        let plain = RunOptions::new().map_err(|e| SpeechError::Runtime {
            library: "ONNX Runtime".into(),
            reason: format!("run options: {e}"),
        })?;
        let mut voice = Self {
            session,
            config,
            model: model.to_path_buf(),
            speaker,
            speed: 1.0,
            convs_2d: rewritten.map_or(0, |r| r.convs),
            flow_convs,
            encoder_convs,
            op_scratch,
            shrink,
            plain,
            arena_used: false,
            decoder: split.map(|(_, region, entries)| (region, entries)),
        };
        voice.set_speed(options.speed)?;
        // Loading parsed and rewrote the model, and held the weights taken out of it: tens of
        // MB freed now, which malloc would otherwise keep (27 MB more resident here).
        crate::platform::heap::release();
        Ok(voice)
    }

    /// Change the speaking rate (0.25 to 4; 1.0 normal).
    pub fn set_speed(&mut self, speed: f32) -> Result<(), SpeechError> {
        if !(speed.is_finite() && (0.25..=4.0).contains(&speed)) {
            return Err(SpeechError::Unsupported(format!(
                "speed {speed} is outside 0.25..4"
            )));
        }
        self.speed = speed;
        Ok(())
    }

    /// The voice's settings.
    pub fn config(&self) -> &VoiceConfig {
        &self.config
    }

    /// Set the noise of the voice's generator and of its durations (Piper's `noise_scale` and
    /// `noise_w`; 0 and 0 make the output deterministic).
    pub fn set_noise(&mut self, scale: f32, w: f32) -> Result<(), SpeechError> {
        for (name, v) in [("noise scale", scale), ("noise w", w)] {
            if !(v.is_finite() && (0.0..=2.0).contains(&v)) {
                return Err(SpeechError::Unsupported(format!(
                    "{name} {v} is outside 0..2"
                )));
            }
        }
        self.config.noise_scale = scale;
        self.config.noise_w = w;
        Ok(())
    }

    /// How many of the decoder's convolutions run as 2-D ones (0: the model runs as it is).
    pub fn convs_2d(&self) -> usize {
        self.convs_2d
    }

    /// Whether our bfloat16 kernels run the decoder.
    pub fn bf16_decoder(&self) -> bool {
        self.decoder.is_some()
    }

    /// How many of the flow's convolutions run on our bfloat16 kernels.
    pub fn bf16_flow_convs(&self) -> usize {
        self.flow_convs
    }

    /// How many of the text encoder's convolutions run on our bfloat16 kernels.
    pub fn bf16_encoder_convs(&self) -> usize {
        self.encoder_convs
    }

    /// Values per piece of the decoder's segments ([`Region::set_tile`]; 0: whole), to compare.
    pub fn set_decoder_tile(&mut self, values: usize) {
        if let Some((region, _)) = &mut self.decoder {
            region.set_tile(values);
        }
    }

    /// Text (already normalized) → sentences of phonemes.
    pub fn phonemize(&self, text: &str) -> Result<Vec<Vec<char>>, SpeechError> {
        match &self.config.phonemes {
            Phonemes::Espeak(voice) => espeak::phonemize(voice, text),
            Phonemes::Text => Ok(vec![espeak::nfd(text)]),
        }
    }

    /// Run the model on one sentence's ids; audio peak-normalized.
    pub fn synthesize_ids(&mut self, ids: &[i64]) -> Result<Vec<f32>, SpeechError> {
        let mut audio = self.run(ids, false)?;
        normalize_peak(&mut audio);
        Ok(audio)
    }

    /// Run the model on `ids`; with `shrink`, ONNX Runtime's arena is emptied after the run.
    fn run(&mut self, ids: &[i64], shrink: bool) -> Result<Vec<f32>, SpeechError> {
        let infer = |reason: String| SpeechError::Inference {
            engine: "piper",
            reason,
        };
        let n = ids.len();
        let input = Tensor::from_array(([1usize, n], ids.to_vec()))
            .map_err(|e| infer(format!("input tensor: {e}")))?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64]))
            .map_err(|e| infer(format!("input_lengths tensor: {e}")))?;
        let scales = Tensor::from_array((
            [3usize],
            vec![
                self.config.noise_scale,
                self.config.length_scale / self.speed,
                self.config.noise_w,
            ],
        ))
        .map_err(|e| infer(format!("scales tensor: {e}")))?;
        let options = if shrink { &self.shrink } else { &self.plain };
        let outputs = match self.speaker {
            Some(sid) => {
                let sid = Tensor::from_array(([1usize], vec![sid]))
                    .map_err(|e| infer(format!("sid tensor: {e}")))?;
                self.session.run_with_options(
                    ort::inputs![
                        "input" => input,
                        "input_lengths" => lengths,
                        "scales" => scales,
                        "sid" => sid,
                    ],
                    options,
                )
            }
            None => self.session.run_with_options(
                ort::inputs![
                    "input" => input,
                    "input_lengths" => lengths,
                    "scales" => scales,
                ],
                options,
            ),
        }
        .map_err(|e| infer(format!("{}: {e}", self.model.display())))?;
        if outputs.len() == 0 {
            return Err(infer("the model returned no output".into()));
        }
        let audio = match &mut self.decoder {
            Some((region, entries)) => {
                let mut inputs = Vec::with_capacity(entries.len());
                for name in entries.iter() {
                    let value = outputs
                        .get(name.as_str())
                        .ok_or_else(|| infer(format!("the model returned no {name}")))?;
                    let (shape, data) = value
                        .try_extract_tensor::<f32>()
                        .map_err(|e| infer(format!("{name}: {e}")))?;
                    inputs.push((&shape[..], data));
                }
                let audio = region
                    .run(&inputs)
                    .map_err(|e| infer(format!("decoder: {e}")));
                if shrink {
                    region.idle();
                }
                audio?
            }
            None => {
                let (_, audio) = outputs[0]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| infer(format!("output: {e}")))?;
                audio.to_vec()
            }
        };
        if let (true, Some(s)) = (shrink, &self.op_scratch) {
            s.clear();
        }
        self.arena_used = !shrink;
        Ok(audio)
    }
}

/// Piper's model cut before its decoder, and the decoder compiled for our kernels, with the
/// tensors it reads.
fn split_decoder(bytes: &[u8], threads: usize) -> Result<(Vec<u8>, Region, Vec<String>), String> {
    let graph = onnx_graph::parse(bytes)?;
    let split = onnx_2d::split_parsed(bytes, &graph, DECODER)?;
    let region = Region::new(
        &graph,
        DECODER,
        &split.entries,
        &split.exit,
        Engine::best(),
        threads,
    )?;
    Ok((split.front, region, split.entries))
}

/// Scale to [`PEAK`] (silence stays silence), like Piper's `normalize_audio`.
fn normalize_peak(audio: &mut [f32]) {
    let peak = audio.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak < 1e-8 || !peak.is_finite() {
        audio.iter_mut().for_each(|s| *s = 0.0);
        return;
    }
    let k = PEAK / peak;
    audio.iter_mut().for_each(|s| *s *= k);
}

impl TextToSpeech for PiperVoice {
    fn name(&self) -> &'static str {
        "piper"
    }

    fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    fn synthesize(&mut self, text: &str) -> Result<Audio, SpeechError> {
        if text.trim().is_empty() {
            return Err(SpeechError::Unsupported(
                "nothing to say: the text is empty".into(),
            ));
        }
        let spoken = normalize::normalize(text);
        let sentences = self.phonemize(&spoken)?;
        let mut samples = Vec::new();
        for phonemes in sentences.iter().filter(|p| !p.is_empty()) {
            let ids = self.config.phoneme_ids(phonemes);
            samples.extend(self.synthesize_ids(&ids)?);
        }
        Ok(Audio::new(self.config.sample_rate, samples))
    }

    fn idle(&mut self) {
        if !self.arena_used {
            return;
        }
        let ids = self.config.phoneme_ids(&[]);
        if let Err(e) = self.run(&ids, true) {
            tracing::warn!(error = %e, "piper: cannot empty ONNX Runtime's arena");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"audio":{"sample_rate":22050},"espeak":{"voice":"en-us"},
        "inference":{"noise_scale":0.5,"length_scale":1.1,"noise_w":0.7},
        "num_speakers":1,"speaker_id_map":{},
        "phoneme_id_map":{"_":[0],"^":[1],"$":[2]," ":[3],"h":[20],"ə":[59],"ˈ":[120]}}"#;

    #[test]
    fn ids_are_bos_pad_then_phoneme_pad_pairs_then_eos() {
        let c = VoiceConfig::parse(JSON).unwrap();
        assert_eq!(c.phonemes, Phonemes::Espeak("en-us".into()));
        assert_eq!(c.length_scale, 1.1);
        // 'x' is not in the map: skipped, like Piper.
        assert_eq!(
            c.phoneme_ids(&['h', 'ˈ', 'ə', 'x', ' ']),
            vec![1, 0, 20, 0, 120, 0, 59, 0, 3, 0, 2]
        );
    }

    #[test]
    fn bad_voice_configs_are_refused_with_the_reason() {
        assert!(VoiceConfig::parse("{")
            .unwrap_err()
            .contains("not a Piper voice config"));
        let no_pad = JSON.replace(r#""_":[0],"#, "");
        assert!(VoiceConfig::parse(&no_pad).unwrap_err().contains("'_'"));
        let tashkeel = JSON.replace(r#""audio""#, r#""phoneme_type":"arpa","audio""#);
        assert!(VoiceConfig::parse(&tashkeel)
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn normalization_scales_the_peak_and_keeps_silence() {
        let mut a = vec![0.1, -0.5, 0.25];
        normalize_peak(&mut a);
        assert!((a[1] + PEAK).abs() < 1e-6);
        let mut s = vec![0.0; 4];
        normalize_peak(&mut s);
        assert_eq!(s, vec![0.0; 4]);
    }
}
