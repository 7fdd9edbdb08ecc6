//! The Whisper recognizer: whisper.cpp (vendored by `whisper-rs`) on a ggml model made by
//! [`super::convert`]. 16 kHz mono in (other rates are refused: callers resample with
//! [`crate::speech::Audio::resampled`]); text with timed segments out.
//!
//! Per utterance the encoder context is sized to the audio (`audio_ctx`, 50 frames per second
//! plus a margin) instead of whisper.cpp's fixed 30 s window: a 3 s command costs a fraction
//! of the full encoder. Cancellation reaches inside whisper.cpp through its abort callback,
//! which ggml polls between graph nodes.
//!
//! Architecture Invariant: no panic crosses the FFI boundary and no input reaches a
//! `whisper-rs` call that would panic on it (NUL bytes in prompts are removed first); a model
//! file is checked for the ggml header before whisper.cpp sees it.

use std::ffi::c_void;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use crate::config::SpeechConfig;
use crate::speech::{Audio, Segment, SpeechError, SpeechToText, SttRequest, Transcript};

/// The only rate whisper.cpp takes.
pub const SAMPLE_RATE: u32 = 16_000;
/// Encoder frames per second of audio (whisper's 30 s window is 1500 frames).
const FRAMES_PER_SECOND: u64 = 50;
/// Frames added to the utterance's own: the encoder sees a little padding after the speech.
const AUDIO_CTX_MARGIN: u64 = 64;
/// Fitted windows are rounded up to a multiple of this many frames. The attention's product
/// over the window (softmax × V) has the window as its inner dimension, and llamafile's tiled
/// kernels take only multiples of their vector width (16 F16 values with AVX-512, 8 with AVX2
/// or Arm FP16): otherwise ggml falls back to one dot product per row pair, which cost about a
/// quarter of the encoder's time.
const AUDIO_CTX_ALIGN: u64 = 16;
const FULL_AUDIO_CTX: u64 = 1500;
/// Smallest fitted window by default (frames of 20 ms): 384 (7.7 s). Fitted tightly to short
/// commands, tiny.en hallucinates and repeats itself (word error rate above 100 % on the
/// round-trip sentences); from 384 up it matches the full window (6.9 % vs 6.3 %) at a seventh of
/// its time.
pub const DEFAULT_AUDIO_CTX_FLOOR: u32 = 384;

/// One recognition at a time in the whole process (local voice, calls, the CLI's tools).
/// whisper.cpp's threads (ggml built without OpenMP) meet at spin barriers that never yield:
/// with two recognitions at once on a small CPU, each spins while the other's threads hold the
/// cores. Measured on 2 cores: a 7 s clip takes 0.45 s alone and 7.5 to 10 s with three at
/// once; serialized, the three take 1.4 s together.
static COMPUTE: Mutex<()> = Mutex::new(());
/// How often a recognition waiting for [`COMPUTE`] looks at its cancellation token.
const GATE_POLL: Duration = Duration::from_millis(2);

/// Take `gate`, waiting for the recognition that holds it; a cancelled wait gives up.
fn enter<'a>(
    gate: &'a Mutex<()>,
    cancel: &CancellationToken,
) -> Result<MutexGuard<'a, ()>, SpeechError> {
    loop {
        if cancel.is_cancelled() {
            return Err(SpeechError::Cancelled);
        }
        match gate.try_lock() {
            Ok(g) => return Ok(g),
            // The guard protects no data: a recognition that panicked leaves nothing broken.
            Err(TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => std::thread::sleep(GATE_POLL),
        }
    }
}

/// How to run the recognizer.
#[derive(Debug, Clone)]
pub struct WhisperOptions {
    /// ISO 639-1 code, or `auto` (multilingual models only).
    pub language: String,
    /// Words that help recognition, given to Whisper as its initial prompt.
    pub hints: Vec<String>,
    /// Inference threads.
    pub threads: usize,
    /// Size `audio_ctx` to each utterance (true) or always encode the full 30 s window.
    pub fit_audio_ctx: bool,
    /// Smallest fitted `audio_ctx` (frames of 20 ms).
    pub audio_ctx_floor: u32,
}

impl Default for WhisperOptions {
    fn default() -> Self {
        Self {
            language: "en".into(),
            hints: Vec::new(),
            threads: 1,
            fit_audio_ctx: true,
            audio_ctx_floor: DEFAULT_AUDIO_CTX_FLOOR,
        }
    }
}

/// Hyperparameters from a ggml Whisper file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlHeader {
    /// Vocabulary size (51864: English-only, 51865+: multilingual).
    pub n_vocab: i32,
    /// Encoder layers.
    pub n_audio_layer: i32,
    /// Mel bands.
    pub n_mels: i32,
}

impl GgmlHeader {
    /// True for multilingual models.
    pub fn multilingual(&self) -> bool {
        self.n_vocab >= 51865
    }
}

/// Read and sanity-check the header of the ggml file `path`, so that whisper.cpp is never
/// handed something that is not one.
pub fn check_ggml(path: &Path) -> Result<GgmlHeader, SpeechError> {
    let err = |reason: String| SpeechError::Model {
        path: path.to_path_buf(),
        reason,
    };
    let mut f = std::fs::File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mut head = [0u8; 48];
    f.read_exact(&mut head)
        .map_err(|_| err("too short to be a ggml Whisper model".into()))?;
    let word = |i: usize| i32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    match &head[..4] {
        b"lmgg" => {}
        b"GGUF" => return Err(err("a GGUF file, not a ggml Whisper model".into())),
        [6, 0, 0, 0] => {
            return Err(err(
                "a CTranslate2 model: convert it with `local-assistant models pull` (convert = \"whisper-ggml\")"
                    .into(),
            ))
        }
        _ => return Err(err("not a ggml Whisper model (bad magic)".into())),
    }
    let h = GgmlHeader {
        n_vocab: word(4),
        n_audio_layer: word(20),
        n_mels: word(40),
    };
    let plausible = (50_000..=52_000).contains(&h.n_vocab)
        && (1..=64).contains(&h.n_audio_layer)
        && (h.n_mels == 80 || h.n_mels == 128)
        && (1..=1500).contains(&word(8))
        && (1..=8192).contains(&word(12));
    if !plausible {
        return Err(err(format!(
            "not a Whisper ggml model (implausible header: vocab {}, layers {}, mels {})",
            h.n_vocab, h.n_audio_layer, h.n_mels
        )));
    }
    if word(44) % 1000 == 0 {
        // whisper.cpp 1.8 then keeps the convolutions in f32, which its im2col aborts on.
        return Err(err(
            "an all-f32 ggml model: whisper.cpp cannot run it; convert to f16 or q8_0".into(),
        ));
    }
    Ok(h)
}

/// The ggml file for `spec`: a manifest name (its converted file under `models_dir`) or, when
/// it contains a `/`, a path.
pub fn resolve_model(spec: &str, models_dir: &Path) -> Result<PathBuf, SpeechError> {
    if spec.contains('/') {
        let p = PathBuf::from(spec);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(SpeechError::Model {
                path: p,
                reason: "no such file".into(),
            })
        };
    }
    crate::models::resolve(models_dir, spec).map_err(|e| SpeechError::Model {
        path: models_dir.join(spec),
        reason: e.to_string(),
    })
}

/// The Whisper engine: one loaded model and one decoding state, used from one thread at a time.
pub struct WhisperEngine {
    path: PathBuf,
    state: whisper_rs::WhisperState,
    // The state keeps the context alive too; kept for token ids and vocabulary.
    ctx: WhisperContext,
    base: FullParams<'static, 'static>,
    options: WhisperOptions,
    language: &'static str,
}

impl std::fmt::Debug for WhisperEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperEngine")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The most tokens a short utterance's one segment may take: about twice what the fastest
/// speech needs. A decode that loops ("Why do we need sleep? Why do we need sleep? …", which
/// tiny.en does on some short requests in a fitted window) stops there instead of at 224
/// tokens, and [`collapse_loop`] keeps its first sentence.
///
/// Short utterances are decoded once (no temperature fallback). whisper.cpp's fallback
/// decoded such a loop again at up to five temperatures, each to 224 tokens, and the hottest
/// gave gibberish: 6.8 s for a 1.3 s request from the voice bench, where one capped greedy
/// decode and the collapse take 0.55 s (`transcribe`, model load included) and give the
/// sentence said.
fn max_tokens_for(samples: usize) -> i32 {
    let seconds = samples.div_ceil(SAMPLE_RATE as usize);
    i32::try_from(40 + 8 * seconds).unwrap_or(i32::MAX)
}

/// A decode that repeats its first sentence until the token cap ("Why do we need sleep? Why do
/// we need sleep? Why do"): the first sentence, or `None` when the text is not such a loop. A
/// sentence is the words up to one ending in `.`, `?` or `!`; at least as many words must
/// follow it, all repeating it, the last one possibly cut off.
fn collapse_loop(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let norm = |w: &str| {
        w.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let keys: Vec<String> = words.iter().map(|w| norm(w)).collect();
    let last = words.len().saturating_sub(1);
    for p in 1..=words.len() / 2 {
        if !words[p - 1].ends_with(['.', '?', '!']) {
            continue;
        }
        let repeats = (p..words.len()).all(|i| {
            let (got, want) = (&keys[i], &keys[i % p]);
            got == want || (i == last && !got.is_empty() && want.starts_with(got.as_str()))
        });
        if repeats {
            return Some(words[..p].join(" "));
        }
    }
    None
}

/// Words joined as Whisper's initial prompt, without NUL bytes (whisper-rs panics on them).
fn prompt_of<'a>(hints: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let words: Vec<String> = hints
        .into_iter()
        .map(|h| h.replace('\0', "").trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    (!words.is_empty()).then(|| format!("{}.", words.join(", ")))
}

/// whisper.cpp's abort callback: `data` points at the `CancellationToken` of the running call.
unsafe extern "C" fn abort_if_cancelled(data: *mut c_void) -> bool {
    if data.is_null() {
        return false;
    }
    // SAFETY: `transcribe` passes a pointer to a token that outlives `whisper_full`, and
    // `is_cancelled` only reads an atomic; nothing here can unwind.
    let token = unsafe { &*(data as *const CancellationToken) };
    token.is_cancelled()
}

/// `audio_ctx` for `samples` at 16 kHz: 50 frames per second plus a margin, 0 (whisper.cpp's
/// full window) for audio that fills it anyway.
pub fn audio_ctx_for(samples: usize) -> i32 {
    audio_ctx_with_floor(samples, 0)
}

/// [`audio_ctx_for`], but never below `floor` frames.
pub fn audio_ctx_with_floor(samples: usize, floor: u32) -> i32 {
    let frames = (samples as u64 * FRAMES_PER_SECOND).div_ceil(u64::from(SAMPLE_RATE));
    let ctx = (frames + AUDIO_CTX_MARGIN)
        .max(u64::from(floor))
        .next_multiple_of(AUDIO_CTX_ALIGN);
    if ctx >= FULL_AUDIO_CTX {
        0
    } else {
        ctx as i32
    }
}

impl WhisperEngine {
    /// Load the ggml model `path`.
    pub fn load(path: &Path, options: WhisperOptions) -> Result<WhisperEngine, SpeechError> {
        let header = check_ggml(path)?;
        let language: &'static str = match options.language.as_str() {
            "auto" if header.multilingual() => "auto",
            "auto" | "en" if !header.multilingual() => "en",
            lang if !header.multilingual() => {
                return Err(SpeechError::Unsupported(format!(
                    "{} is an English-only Whisper model but speech.stt.language is {lang:?}; \
                     use \"en\" or a multilingual model",
                    path.display()
                )))
            }
            lang => whisper_rs::get_lang_id(lang)
                .and_then(whisper_rs::get_lang_str)
                .ok_or_else(|| {
                    SpeechError::Unsupported(format!("Whisper does not know the language {lang:?}"))
                })?,
        };
        if options.threads == 0 {
            return Err(SpeechError::Unsupported(
                "Whisper needs at least 1 thread".into(),
            ));
        }
        install_logging();
        let path_str = path.to_str().ok_or_else(|| SpeechError::Model {
            path: path.to_path_buf(),
            reason: "the path is not UTF-8".into(),
        })?;
        let mut cparams = WhisperContextParameters::default();
        cparams.use_gpu(false);
        let ctx =
            WhisperContext::new_with_params(path_str, cparams).map_err(|e| SpeechError::Model {
                path: path.to_path_buf(),
                reason: format!("whisper.cpp could not load it ({e}); see the log"),
            })?;
        let state = ctx.create_state().map_err(|e| SpeechError::Model {
            path: path.to_path_buf(),
            reason: format!("whisper.cpp could not create a decoding state: {e}"),
        })?;
        let mut base = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        base.set_language(Some(language));
        base.set_translate(false);
        base.set_no_context(true);
        base.set_print_special(false);
        base.set_print_progress(false);
        base.set_print_realtime(false);
        base.set_print_timestamps(false);
        base.set_suppress_blank(true);
        // Like OpenAI Whisper and faster-whisper: never emit symbols nobody speaks.
        base.set_suppress_nst(true);
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        base.set_n_threads(options.threads.min(64) as i32);
        if let Some(prompt) = prompt_of(&options.hints) {
            base.set_initial_prompt(&prompt);
        }
        Ok(WhisperEngine {
            path: path.to_path_buf(),
            state,
            ctx,
            base,
            options,
            language,
        })
    }

    /// Load the model `[speech.stt] whisper_model` names, with the language, hints and threads
    /// of the configuration.
    pub fn from_config(
        cfg: &SpeechConfig,
        models_dir: &Path,
    ) -> Result<WhisperEngine, SpeechError> {
        let path = resolve_model(&cfg.whisper_model, models_dir)?;
        WhisperEngine::load(
            &path,
            WhisperOptions {
                language: cfg.language.clone(),
                hints: cfg.hints.clone(),
                threads: cfg.stt_threads,
                fit_audio_ctx: true,
                audio_ctx_floor: DEFAULT_AUDIO_CTX_FLOOR,
            },
        )
    }

    /// The model file.
    pub fn model_path(&self) -> &Path {
        &self.path
    }

    /// Never fit the window below `frames` (20 ms each).
    pub fn set_audio_ctx_floor(&mut self, frames: u32) {
        self.options.audio_ctx_floor = frames;
    }

    /// Always encode the full 30 s window (false) or fit it to each utterance (true).
    pub fn set_fit_audio_ctx(&mut self, fit: bool) {
        self.options.fit_audio_ctx = fit;
    }

    fn run(
        &mut self,
        audio: &Audio,
        request: &SttRequest,
        cancel: &CancellationToken,
    ) -> Result<Transcript, SpeechError> {
        if audio.rate != SAMPLE_RATE {
            return Err(SpeechError::BadAudio(format!(
                "Whisper takes {SAMPLE_RATE} Hz audio, got {} Hz (resample it first)",
                audio.rate
            )));
        }
        if audio.samples.is_empty() {
            return Err(SpeechError::BadAudio("no samples".into()));
        }
        if audio.samples.len() > i32::MAX as usize {
            return Err(SpeechError::BadAudio("audio too long".into()));
        }
        if cancel.is_cancelled() {
            return Err(SpeechError::Cancelled);
        }
        let mut params = self.base.clone();
        if self.options.fit_audio_ctx {
            let ctx = audio_ctx_with_floor(audio.samples.len(), self.options.audio_ctx_floor);
            params.set_audio_ctx(ctx);
            // A short command in a shortened window invites a second segment repeating the
            // first ("Call Daniel. Call Daniel."): one that fits the floor is one segment.
            let floor = u64::from(self.options.audio_ctx_floor).next_multiple_of(AUDIO_CTX_ALIGN);
            let single = ctx != 0 && u64::try_from(ctx).is_ok_and(|c| c <= floor);
            params.set_single_segment(single);
            if single {
                // One decode, capped: see `max_tokens_for` and `collapse_loop`.
                params.set_max_tokens(max_tokens_for(audio.samples.len()));
                params.set_temperature_inc(0.0);
            }
        }
        if !request.hints.is_empty() {
            if let Some(prompt) = prompt_of(self.options.hints.iter().chain(&request.hints)) {
                params.set_initial_prompt(&prompt);
            }
        }
        // SAFETY: the callback only reads the token through the pointer, and the token
        // (borrowed for this whole call) outlives `full`, after which whisper.cpp no longer
        // calls it.
        unsafe {
            params.set_abort_callback(Some(abort_if_cancelled));
            params.set_abort_callback_user_data(
                std::ptr::from_ref::<CancellationToken>(cancel) as *mut c_void
            );
        }
        let result = {
            let _turn = enter(&COMPUTE, cancel)?;
            self.state.full(params, &audio.samples)
        };
        if cancel.is_cancelled() {
            return Err(SpeechError::Cancelled);
        }
        result.map_err(|e| SpeechError::Inference {
            engine: "whisper",
            reason: e.to_string(),
        })?;
        let mut transcript = self.collect(audio)?;
        if let [one] = transcript.segments.as_mut_slice() {
            if let Some(first) = collapse_loop(&one.text) {
                tracing::debug!(heard = %one.text, kept = %first, "whisper: a repetition loop cut");
                one.text.clone_from(&first);
                transcript.text = first;
            }
        }
        Ok(transcript)
    }

    fn collect(&self, audio: &Audio) -> Result<Transcript, SpeechError> {
        let eot = self.ctx.token_eot();
        let duration_ms = u32::try_from(audio.duration_ms()).unwrap_or(u32::MAX);
        let mut segments = Vec::new();
        for seg in self.state.as_iter() {
            let text = seg
                .to_str_lossy()
                .map_err(|e| SpeechError::Inference {
                    engine: "whisper",
                    reason: format!("segment text: {e}"),
                })?
                .trim()
                .to_owned();
            let (mut sum, mut n) = (0.0f32, 0u32);
            for i in 0..seg.n_tokens() {
                if let Some(tok) = seg.get_token(i) {
                    if tok.token_id() < eot {
                        sum += tok.token_probability();
                        n += 1;
                    }
                }
            }
            // Timestamps are in 10 ms units; keep them inside the audio and ordered.
            let ms = |t: i64| u32::try_from(t.max(0).saturating_mul(10)).unwrap_or(u32::MAX);
            let start_ms = ms(seg.start_timestamp()).min(duration_ms);
            let end_ms = ms(seg.end_timestamp()).clamp(start_ms, duration_ms);
            if text.is_empty() {
                continue;
            }
            #[allow(clippy::cast_precision_loss)]
            segments.push(Segment {
                start_ms,
                end_ms,
                text,
                confidence: if n == 0 { 0.0 } else { sum / n as f32 },
            });
        }
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let language = if self.language == "auto" {
            whisper_rs::get_lang_str(self.state.full_lang_id_from_state())
                .unwrap_or("auto")
                .to_owned()
        } else {
            self.language.to_owned()
        };
        Ok(Transcript {
            text,
            segments,
            language,
        })
    }
}

impl SpeechToText for WhisperEngine {
    fn name(&self) -> &'static str {
        "whisper"
    }

    /// Recognize 16 kHz mono `audio`. `request.grammar` is ignored (Whisper has no phrase
    /// lists here); `request.hints` are added to the configured hints in the prompt.
    fn transcribe(
        &mut self,
        audio: &Audio,
        request: &SttRequest,
        cancel: &CancellationToken,
    ) -> Result<Transcript, SpeechError> {
        self.run(audio, request, cancel)
    }
}

/// Route whisper.cpp's and ggml's log lines into `tracing` (once per process) instead of
/// stderr.
fn install_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(whisper_rs::install_logging_hooks);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decode_that_repeats_its_first_sentence_is_cut_to_it() {
        let cut = |t: &str| collapse_loop(t);
        assert_eq!(
            cut("Why do we need sleep? Why do we need sleep? Why do we need sl").as_deref(),
            Some("Why do we need sleep?")
        );
        assert_eq!(
            cut("Call Daniel. call daniel.").as_deref(),
            Some("Call Daniel.")
        );
        assert_eq!(cut("Stop. Stop. Stop.").as_deref(), Some("Stop."));
        // Not loops: one sentence, different sentences, repeated words within a sentence, a
        // repetition that is not the first sentence, a partial repetition only.
        assert_eq!(cut("Why do we need sleep?"), None);
        assert_eq!(cut("Set a timer. Set an alarm."), None);
        assert_eq!(cut("No, no, no."), None);
        assert_eq!(cut("Hi. Call Daniel. Call Daniel."), None);
        assert_eq!(cut("Why do we need sleep? Why do"), None);
        assert_eq!(cut(""), None);
    }

    /// The cap on a short utterance's tokens leaves room for the fastest speech (5 tokens a
    /// second, twice over, and a sentence or two of punctuation) in any window up to the
    /// default floor, and is well below the 224 tokens of an uncapped loop.
    #[test]
    fn a_short_utterances_token_cap_leaves_room_for_the_fastest_speech() {
        let floor_secs = DEFAULT_AUDIO_CTX_FLOOR as usize / FRAMES_PER_SECOND as usize;
        for tenths in 1..=floor_secs * 10 {
            let samples = tenths * SAMPLE_RATE as usize / 10;
            let cap = max_tokens_for(samples);
            assert!(cap as usize >= 10 * tenths / 10 + 16, "{tenths}: {cap}");
            assert!(cap < 224, "{tenths}: {cap} is no cap");
        }
    }

    #[test]
    fn one_recognition_runs_at_a_time_and_a_cancelled_wait_gives_up() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = Mutex::new(());
        let (active, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let g = enter(&gate, &CancellationToken::new());
                        assert!(g.is_ok());
                        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        active.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(peak.load(Ordering::SeqCst), 1);

        let held = enter(&gate, &CancellationToken::new());
        assert!(held.is_ok());
        let cancel = CancellationToken::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| enter(&gate, &cancel).map(drop));
            std::thread::sleep(Duration::from_millis(20));
            cancel.cancel();
            assert!(matches!(waiter.join(), Ok(Err(SpeechError::Cancelled))));
        });
        drop(held);
        assert!(enter(&gate, &CancellationToken::new()).is_ok());
    }

    #[test]
    fn audio_ctx_follows_the_utterance_and_falls_back_to_the_full_window() {
        // 50 frames a second plus 64, rounded up to a multiple of 16.
        assert_eq!(audio_ctx_for(16_000), 128);
        assert_eq!(audio_ctx_for(48_000), 224);
        assert_eq!(audio_ctx_for(1), 80);
        assert_eq!(audio_ctx_for(16_000 * 88 / 10), 512);
        assert_eq!(audio_ctx_with_floor(16_000, 384), 384);
        assert_eq!(audio_ctx_with_floor(16_000, 390), 400);
        assert_eq!(audio_ctx_for(16_000 * 29), 0);
        assert_eq!(audio_ctx_for(16_000 * 60), 0);
    }

    #[test]
    fn prompts_join_hints_and_drop_nul_bytes() {
        let hints = vec!["Anna".to_string(), " ".into(), "Jar\0vis".into()];
        assert_eq!(prompt_of(&hints).as_deref(), Some("Anna, Jarvis."));
        assert_eq!(prompt_of(&Vec::new()), None);
    }

    #[test]
    fn non_ggml_files_are_refused_before_whisper_cpp_sees_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, bytes, want) in [
            ("empty.bin", Vec::new(), "too short"),
            (
                "model.bin",
                {
                    let mut v = vec![6u8, 0, 0, 0];
                    v.resize(64, 0);
                    v
                },
                "CTranslate2",
            ),
            (
                "x.gguf",
                {
                    let mut v = b"GGUF".to_vec();
                    v.resize(64, 0);
                    v
                },
                "GGUF",
            ),
            ("junk.bin", vec![0x41; 64], "bad magic"),
            (
                "zero.bin",
                {
                    let mut v = b"lmgg".to_vec();
                    v.resize(64, 0);
                    v
                },
                "implausible",
            ),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).expect("write");
            let s = check_ggml(&p).expect_err(name).to_string();
            assert!(s.contains(name) && s.contains(want), "{s}");
            let s = WhisperEngine::load(&p, WhisperOptions::default())
                .expect_err(name)
                .to_string();
            assert!(s.contains(want), "{s}");
        }
    }

    #[test]
    fn a_path_that_does_not_exist_is_named() {
        let e = resolve_model("/nonexistent/ggml.bin", Path::new("models")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/ggml.bin"), "{e}");
    }
}
