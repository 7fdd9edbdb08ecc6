//! espeak-ng through its C API, loaded at run time from `libespeak-ng.so.1` (Debian
//! `libespeak-ng1`): IPA phonemes for Piper ([`phonemize`]) and espeak-ng's own synthesizer as
//! a fallback voice ([`EspeakVoice`]).
//!
//! espeak-ng is GPL-3.0-or-later; this module exists only with the `espeak` cargo feature.
//! The library is opened with `dlopen`, so building needs no espeak-ng package (the aarch64
//! cross build needs no arm64 dev package); running needs `libespeak-ng1` and its data.
//!
//! **Invariant:** espeak-ng keeps global state and is not thread-safe: every call into it
//! happens while holding the one process-wide lock of this module, and nothing here panics
//! across the FFI boundary (the synth callback catches unwinds).

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::speech::{Audio, SpeechError, TextToSpeech};

/// The shared object opened at run time.
pub const LIBRARY: &str = "libespeak-ng.so.1";
/// The Debian package that ships it (with `espeak-ng-data`).
pub const PACKAGE: &str = "libespeak-ng1";

// speak_lib.h (espeak-ng 1.51).
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const ESPEAK_INITIALIZE_DONT_EXIT: c_int = 0x8000;
const ESPEAK_CHARS_UTF8: c_int = 1;
const ESPEAK_PHONEMES_IPA: c_int = 0x02;
const ESPEAK_ENDPAUSE: c_uint = 0x1000;
const POS_CHARACTER: c_int = 1;
const ESPEAK_RATE: c_int = 1;
const EE_OK: c_int = 0;
/// espeak-ng's normal rate in words per minute, and its limits.
const RATE_NORMAL: f32 = 175.0;
const RATE_MIN: f32 = 80.0;
const RATE_MAX: f32 = 450.0;

type SynthCallback = unsafe extern "C" fn(*mut c_short, c_int, *mut c_void) -> c_int;

/// The entry points we use, copied out of the library (which stays loaded for the process).
struct Api {
    _lib: libloading::Library,
    initialize: unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int,
    set_voice_by_name: unsafe extern "C" fn(*const c_char) -> c_int,
    text_to_phonemes: unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char,
    set_synth_callback: unsafe extern "C" fn(Option<SynthCallback>),
    synth: unsafe extern "C" fn(
        *const c_void,
        usize,
        c_uint,
        c_int,
        c_uint,
        c_uint,
        *mut c_uint,
        *mut c_void,
    ) -> c_int,
    set_parameter: unsafe extern "C" fn(c_int, c_int, c_int) -> c_int,
    synchronize: unsafe extern "C" fn() -> c_int,
}

/// espeak-ng after `espeak_Initialize`, behind the process-wide lock.
struct Engine {
    api: Api,
    sample_rate: u32,
    voice: Option<String>,
}

static ENGINE: OnceLock<Result<Mutex<Engine>, String>> = OnceLock::new();

fn runtime_err(reason: String) -> SpeechError {
    SpeechError::Runtime {
        library: "espeak-ng".into(),
        reason,
    }
}

fn load() -> Result<Engine, String> {
    // SAFETY: loading espeak-ng runs no initialisers beyond the C runtime's.
    let lib = unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| {
        format!(
            "cannot load {LIBRARY} ({e}); install the Debian package `{PACKAGE}` \
             (apt-get install {PACKAGE} espeak-ng-data)"
        )
    })?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the signatures match speak_lib.h of espeak-ng 1.51 (stable C API).
            *unsafe { lib.get($name) }
                .map_err(|e| format!("{LIBRARY} lacks {}: {e}", stringify!($name)))?
        };
    }
    let api = Api {
        initialize: sym!(b"espeak_Initialize\0"),
        set_voice_by_name: sym!(b"espeak_SetVoiceByName\0"),
        text_to_phonemes: sym!(b"espeak_TextToPhonemes\0"),
        set_synth_callback: sym!(b"espeak_SetSynthCallback\0"),
        synth: sym!(b"espeak_Synth\0"),
        set_parameter: sym!(b"espeak_SetParameter\0"),
        synchronize: sym!(b"espeak_Synchronize\0"),
        _lib: lib,
    };
    // SAFETY: first and only initialisation, under OnceLock; NULL path = the packaged data.
    let rate = unsafe {
        (api.initialize)(
            AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            std::ptr::null(),
            ESPEAK_INITIALIZE_DONT_EXIT,
        )
    };
    if rate <= 0 {
        return Err(format!(
            "espeak_Initialize failed ({rate}); is `espeak-ng-data` installed (package {PACKAGE})?"
        ));
    }
    // SAFETY: a plain function pointer that never unwinds (see `synth_callback`).
    unsafe { (api.set_synth_callback)(Some(synth_callback)) };
    Ok(Engine {
        api,
        sample_rate: u32::try_from(rate).unwrap_or(22050),
        voice: None,
    })
}

/// Lock espeak-ng for one use, loading and initialising it on first use.
fn engine() -> Result<MutexGuard<'static, Engine>, SpeechError> {
    let engine = ENGINE
        .get_or_init(|| load().map(Mutex::new))
        .as_ref()
        .map_err(|e| runtime_err(e.clone()))?;
    // A panic while holding the lock leaves espeak-ng itself consistent: keep going.
    Ok(engine
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// Whether espeak-ng can be loaded here (for `doctor` and test skips).
pub fn available() -> Result<(), SpeechError> {
    engine().map(drop)
}

impl Engine {
    fn set_voice(&mut self, voice: &str) -> Result<(), SpeechError> {
        if self.voice.as_deref() == Some(voice) {
            return Ok(());
        }
        let name = CString::new(voice)
            .map_err(|_| SpeechError::Unsupported(format!("bad espeak voice name {voice:?}")))?;
        // SAFETY: NUL-terminated string; lock held.
        let rc = unsafe { (self.api.set_voice_by_name)(name.as_ptr()) };
        if rc != EE_OK {
            self.voice = None;
            return Err(SpeechError::Unsupported(format!(
                "espeak-ng has no voice {voice:?} (error {rc}); `espeak-ng --voices` lists them"
            )));
        }
        self.voice = Some(voice.to_owned());
        Ok(())
    }

    /// IPA of one clause (no clause punctuation inside): espeak's phoneme words joined by a space.
    fn clause_ipa(&mut self, clause: &str) -> Result<String, SpeechError> {
        let text = CString::new(clause.replace('\0', " "))
            .map_err(|e| SpeechError::Unsupported(e.to_string()))?;
        let mut ptr: *const c_void = text.as_ptr().cast();
        let mut out = String::new();
        // espeak_TextToPhonemes translates one clause per call and advances `ptr`, setting it
        // to NULL at the end of the text; a clause of ours may still be several of its own.
        for _ in 0..10_000 {
            if ptr.is_null() {
                break;
            }
            // SAFETY: `ptr` points into `text` (kept alive) or is advanced by espeak within it;
            // the returned buffer is espeak's static storage, copied before the next call.
            let res = unsafe {
                (self.api.text_to_phonemes)(&mut ptr, ESPEAK_CHARS_UTF8, ESPEAK_PHONEMES_IPA)
            };
            if res.is_null() {
                break;
            }
            // SAFETY: espeak returns a NUL-terminated string.
            let s = unsafe { CStr::from_ptr(res) }.to_string_lossy();
            let s = s.trim();
            if !s.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s);
            }
        }
        Ok(out)
    }
}

/// Clause punctuation kept in Piper's phoneme stream, and whether it ends a sentence.
fn clause_mark(c: char) -> Option<(char, bool)> {
    match c {
        '.' => Some(('.', true)),
        // An ellipsis pauses without ending the sentence (Piper's phonemizer drops it and
        // glues the words around it together; a comma pause is what a reader does).
        '…' => Some((',', false)),
        '!' => Some(('!', true)),
        '?' => Some(('?', true)),
        ',' | '—' | '–' => Some((',', false)),
        ';' => Some((';', false)),
        ':' => Some((':', false)),
        _ => None,
    }
}

/// Splits `text` into clauses `(text, punctuation)` the way espeak-ng's reader does: a run of
/// clause punctuation counts only when whitespace (after closing quotes or brackets) or the end
/// follows, so `3.5`, `1,000` and `10:30` stay inside their clause. The first mark of a run
/// decides, like espeak-ng (`?!` → `?`); two or more dots are an ellipsis (`,`).
pub fn split_clauses(text: &str) -> Vec<(String, Option<char>)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        if clause_mark(chars[i]).is_none() {
            i += 1;
            continue;
        }
        let mut end = i;
        while end + 1 < chars.len() && clause_mark(chars[end + 1]).is_some() {
            end += 1;
        }
        let mut after = end + 1;
        while after < chars.len() && matches!(chars[after], '"' | '\'' | ')' | ']' | '”' | '’')
        {
            after += 1;
        }
        let dash = matches!(chars[i], '—' | '–');
        if after >= chars.len() || chars[after].is_whitespace() || dash {
            let ellipsis = end > i && chars[i..=end].iter().all(|&c| c == '.');
            let mark = if ellipsis {
                Some('…')
            } else {
                Some(chars[i])
            };
            let clause: String = chars[start..i].iter().collect();
            out.push((clause, mark));
            start = after;
            i = after;
        } else {
            i = end + 1;
        }
    }
    if start < chars.len() {
        let rest: String = chars[start..].iter().collect();
        if !rest.trim().is_empty() {
            out.push((rest, None));
        }
    }
    out
}

/// Text → sentences of phonemes (Unicode code points after NFD decomposition), as Piper's
/// phonemizer makes them: each clause's IPA, then its punctuation (`,` `:` `;` followed by a
/// space; `.` `!` `?` closing the sentence). Language-switch marks like `(fr)` are removed.
pub fn phonemize(voice: &str, text: &str) -> Result<Vec<Vec<char>>, SpeechError> {
    let clauses = split_clauses(text);
    let mut engine = engine()?;
    engine.set_voice(voice)?;
    let mut sentences = Vec::new();
    let mut sentence = String::new();
    for (clause, mark) in clauses {
        let ipa = strip_language_flags(&engine.clause_ipa(&clause)?);
        if ipa.is_empty() && mark.is_none() {
            continue;
        }
        sentence.push_str(&ipa);
        match mark.and_then(clause_mark) {
            Some((m, true)) => {
                sentence.push(m);
                sentences.push(std::mem::take(&mut sentence));
            }
            Some((m, false)) => {
                sentence.push(m);
                sentence.push(' ');
            }
            None => {}
        }
    }
    if !sentence.trim().is_empty() {
        sentences.push(sentence);
    }
    drop(engine);
    Ok(sentences
        .into_iter()
        .filter(|s| s.chars().any(char::is_alphabetic))
        .map(|s| nfd(&s))
        .collect())
}

/// Remove espeak's language-switch flags (`(en)`, `(fr)`) around foreign words.
fn strip_language_flags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0u32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Canonical decomposition of the precomposed letters espeak's IPA can contain (Piper splits
/// phonemes into code points after NFD, e.g. `ç` → `c` + U+0327).
pub(crate) fn nfd(s: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        let (base, mark) = match c {
            'ç' => ('c', '\u{327}'),
            'Ç' => ('C', '\u{327}'),
            'ã' => ('a', '\u{303}'),
            'õ' => ('o', '\u{303}'),
            'ñ' => ('n', '\u{303}'),
            'ẽ' => ('e', '\u{303}'),
            'ĩ' => ('i', '\u{303}'),
            'ũ' => ('u', '\u{303}'),
            'ỹ' => ('y', '\u{303}'),
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push(base);
        out.push(mark);
    }
    out
}

thread_local! {
    /// Samples of the synthesis in progress on this thread (espeak calls back synchronously,
    /// on the calling thread, while the lock is held).
    static SYNTH_BUF: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
}

/// espeak-ng's synth callback: appends the samples to this thread's buffer. Never unwinds.
unsafe extern "C" fn synth_callback(wav: *mut c_short, n: c_int, _events: *mut c_void) -> c_int {
    let ok = std::panic::catch_unwind(|| {
        let Ok(n) = usize::try_from(n) else { return };
        if wav.is_null() || n == 0 {
            return;
        }
        // SAFETY: espeak passes `n` valid samples at `wav` for the duration of the call.
        let samples = unsafe { std::slice::from_raw_parts(wav, n) };
        SYNTH_BUF.with(|b| {
            if let Ok(mut b) = b.try_borrow_mut() {
                b.extend_from_slice(samples);
            }
        });
    });
    // 0: continue, 1: abort.
    c_int::from(ok.is_err())
}

/// espeak-ng's own synthesizer as a voice (`voice = "espeak"`): robotic but always there.
#[derive(Debug, Clone)]
pub struct EspeakVoice {
    voice: String,
    speed: f32,
    rate: u32,
}

impl EspeakVoice {
    /// The espeak voice `voice` (e.g. `en-us`) at `speed` (1.0 normal).
    pub fn new(voice: &str, speed: f32) -> Result<Self, SpeechError> {
        let mut engine = engine()?;
        engine.set_voice(voice)?;
        Ok(Self {
            voice: voice.to_owned(),
            speed,
            rate: engine.sample_rate,
        })
    }
}

impl TextToSpeech for EspeakVoice {
    fn name(&self) -> &'static str {
        "espeak"
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn synthesize(&mut self, text: &str) -> Result<Audio, SpeechError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SpeechError::Unsupported(
                "nothing to say: the text is empty".into(),
            ));
        }
        let spoken = super::normalize::normalize(text);
        let c_text = CString::new(spoken.replace('\0', " "))
            .map_err(|e| SpeechError::Unsupported(e.to_string()))?;
        let mut engine = engine()?;
        engine.set_voice(&self.voice)?;
        #[allow(clippy::cast_possible_truncation)]
        let wpm = (RATE_NORMAL * self.speed).clamp(RATE_MIN, RATE_MAX).round() as c_int;
        SYNTH_BUF.with(|b| b.borrow_mut().clear());
        // SAFETY: lock held; the text outlives the synchronous call; the callback appends to
        // this thread's buffer.
        let rc = unsafe {
            (engine.api.set_parameter)(ESPEAK_RATE, wpm, 0);
            let rc = (engine.api.synth)(
                c_text.as_ptr().cast(),
                c_text.as_bytes_with_nul().len(),
                0,
                POS_CHARACTER,
                0,
                ESPEAK_CHARS_UTF8 as c_uint | ESPEAK_ENDPAUSE,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            (engine.api.synchronize)();
            rc
        };
        let samples = SYNTH_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        drop(engine);
        if rc != EE_OK {
            return Err(SpeechError::Inference {
                engine: "espeak",
                reason: format!("espeak_Synth failed (error {rc})"),
            });
        }
        Ok(Audio::new(
            self.rate,
            samples
                .into_iter()
                .map(crate::speech::audio::i16_to_f32)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(text: &str) -> Vec<(String, Option<char>)> {
        split_clauses(text)
            .into_iter()
            .map(|(t, m)| (t.trim().to_owned(), m))
            .collect()
    }

    #[test]
    fn clauses_split_at_punctuation_followed_by_space_or_end() {
        assert_eq!(
            marks("Hello, world. It costs 3.50; really? Yes!"),
            vec![
                ("Hello".into(), Some(',')),
                ("world".into(), Some('.')),
                ("It costs 3.50".into(), Some(';')),
                ("really".into(), Some('?')),
                ("Yes".into(), Some('!')),
            ]
        );
        assert_eq!(
            marks("Wait... what?! \"Stop.\" Then"),
            vec![
                ("Wait".into(), Some('…')),
                ("what".into(), Some('?')),
                ("\"Stop".into(), Some('.')),
                ("Then".into(), None),
            ]
        );
        assert_eq!(
            marks("1,000 at 10:30"),
            vec![("1,000 at 10:30".into(), None)]
        );
    }

    #[test]
    fn language_flags_are_removed_and_cedilla_decomposed() {
        assert_eq!(strip_language_flags("(fr)bɔ̃ʒuːʁ(en) hi"), "bɔ̃ʒuːʁ hi");
        assert_eq!(nfd("ça"), vec!['c', '\u{327}', 'a']);
    }
}
