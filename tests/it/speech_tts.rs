//! Text to speech with the real Piper voice (`piper-en-us-joe-medium`) on the real ONNX
//! Runtime and libespeak-ng: rates, plausible lengths and levels, speed, sentence streaming
//! (first audio before the rest of the text exists), the espeak-ng fallback, the `say` CLI and
//! the errors people hit.
//!
//! The voice and the runtime are `data/models/{piper-en-us-joe-medium,onnxruntime}` under the
//! crate (`make models` puts them there); without them every test fails saying so. Nothing
//! here asserts timings.

#![cfg(feature = "espeak")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use local_assistant::speech::audio::{self, Audio};
use local_assistant::speech::tts::piper::{PiperOptions, PiperVoice};
use local_assistant::speech::tts::stream::{StreamOptions, TtsWorker};
use local_assistant::speech::tts::{self, TtsOptions};
use local_assistant::speech::{SpeechError, TextToSpeech};
use tokio_util::sync::CancellationToken;

const VOICE: &str = "piper-en-us-joe-medium";

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn models_dir() -> PathBuf {
    let dir = data_dir().join("models");
    for needed in [VOICE, "onnxruntime"] {
        assert!(
            dir.join(needed).is_dir(),
            "{} is missing: run `make models` (or `local-assistant models pull {needed}`)",
            dir.join(needed).display()
        );
    }
    dir
}

fn options(voice: &str, speed: f32) -> TtsOptions {
    TtsOptions {
        voice: voice.into(),
        speaker: 0,
        speed,
        threads: 1,
        onnxruntime: None,
        models_dir: models_dir(),
    }
}

fn voice_path() -> PathBuf {
    models_dir().join(VOICE).join("en_US-joe-medium.onnx")
}

/// The Piper voice, loaded once (a session takes seconds to build) and shared by the tests.
fn piper() -> MutexGuard<'static, PiperVoice> {
    static VOICE: OnceLock<Mutex<PiperVoice>> = OnceLock::new();
    let voice = VOICE.get_or_init(|| {
        let models = models_dir();
        let env = local_assistant::speech::onnx::init(None, &models).expect("ONNX Runtime");
        Mutex::new(PiperVoice::load(env, &voice_path(), &PiperOptions::default()).expect("voice"))
    });
    let mut guard = voice
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    guard.set_speed(1.0).expect("speed");
    guard
}

/// The shared Piper voice as an owned engine (for a worker thread); a real voice, not a mock.
struct SharedPiper;

impl TextToSpeech for SharedPiper {
    fn name(&self) -> &'static str {
        "piper"
    }
    fn sample_rate(&self) -> u32 {
        piper().sample_rate()
    }
    fn synthesize(&mut self, text: &str) -> Result<Audio, SpeechError> {
        piper().synthesize(text)
    }
}

fn open(voice: &str, speed: f32) -> Box<dyn TextToSpeech> {
    match tts::open(&options(voice, speed)) {
        Ok(v) => v,
        Err(e) => panic!("cannot open voice {voice}: {e}"),
    }
}

/// Seconds of audio per character of text must be what people speak (0.04–0.15 s).
fn assert_plausible(text: &str, audio: &Audio) {
    #[allow(clippy::cast_precision_loss)]
    let per_char = audio.samples.len() as f64 / f64::from(audio.rate) / text.chars().count() as f64;
    assert!(
        (0.04..=0.15).contains(&per_char),
        "{per_char:.3} s per character for {text:?}"
    );
    let level = audio.level();
    assert!(
        level.rms_dbfs() > -35.0 && level.peak > 0.3,
        "too quiet: {:.1} dBFS, peak {:.2}",
        level.rms_dbfs(),
        level.peak
    );
    assert!(level.peak <= 1.0);
}

const TEXT: &str = "The weather today is sunny with a light breeze from the west.";

/// With one thread the decoder's 1-D convolutions run as 2-D ones (ONNX Runtime's blocked
/// kernels): all 23 of this voice's, and the audio stays the model's own. With the noise off both runs are
/// deterministic, so the rewritten model must give the original's samples to rounding. After the
/// idle call empties ONNX Runtime's arena, the same sentence comes out the same again.
#[test]
fn the_decoder_as_2d_convolutions_gives_the_models_own_audio() {
    let env = local_assistant::speech::onnx::init(None, &models_dir()).expect("ONNX Runtime");
    let load = |convs_2d| {
        let options = PiperOptions {
            convs_2d,
            threads: 1,
            bf16_decoder: false,
            ..PiperOptions::default()
        };
        let mut voice = PiperVoice::load(env, &voice_path(), &options).expect("voice");
        voice.set_noise(0.0, 0.0).expect("noise");
        voice
    };
    let (mut original, mut rewritten) = (load(false), load(true));
    assert_eq!(original.convs_2d(), 0);
    assert_eq!(
        rewritten.convs_2d(),
        23,
        "conv_pre, 3 upsamplers, 18 in resblocks, conv_post"
    );
    let phonemes = rewritten
        .phonemize("Don't forget that Daniel has his piano lesson at half past five.")
        .expect("phonemes");
    let ids = rewritten.config().phoneme_ids(&phonemes[0]);
    let a = original.synthesize_ids(&ids).expect("original");
    let b = rewritten.synthesize_ids(&ids).expect("rewritten");
    assert_eq!(a.len(), b.len());
    assert!(a.len() > 22_050, "{} samples", a.len());
    let diff = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max)
    };
    assert!(diff(&a, &b) < 1e-4, "largest difference {}", diff(&a, &b));
    rewritten.idle();
    let c = rewritten.synthesize_ids(&ids).expect("after idle");
    assert_eq!(b.len(), c.len());
    assert!(diff(&b, &c) < 1e-6, "after idle: {}", diff(&b, &c));
    // With two threads the 1-D run is the faster one (see `PiperOptions::convs_2d`).
    let two = PiperOptions {
        threads: 2,
        bf16_decoder: false,
        ..PiperOptions::default()
    };
    let two = PiperVoice::load(env, &voice_path(), &two).expect("voice, 2 threads");
    assert_eq!(two.convs_2d(), 0);
    assert!(original.set_noise(-1.0, 0.8).is_err());
    assert!(original.set_noise(0.667, f32::NAN).is_err());
}

/// Log power spectrogram: 512-sample Hann frames every 256 samples, 32 bands of 8 DFT bins,
/// floored 50 dB under the loudest band (differences under that are not heard).
fn log_spectrogram(x: &[f32]) -> Vec<f64> {
    const N: usize = 512;
    let window: Vec<f64> = (0..N)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N as f64).cos())
        .collect();
    let (cos, sin): (Vec<f64>, Vec<f64>) = (0..N)
        .map(|i| (2.0 * std::f64::consts::PI * i as f64 / N as f64).sin_cos())
        .map(|(s, c)| (c, s))
        .unzip();
    let mut out = Vec::new();
    let mut start = 0;
    while start + N <= x.len() {
        let frame: Vec<f64> = (0..N)
            .map(|i| f64::from(x[start + i]) * window[i])
            .collect();
        for band in 0..32 {
            let mut power = 0.0;
            for k in band * 8..band * 8 + 8 {
                let (mut re, mut im) = (0.0, 0.0);
                for (i, v) in frame.iter().enumerate() {
                    let p = (i * k) % N;
                    re += v * cos[p];
                    im -= v * sin[p];
                }
                power += re * re + im * im;
            }
            out.push(power);
        }
        start += 256;
    }
    let floor = out.iter().fold(0.0f64, |m, p| m.max(*p)) * 1e-5 + 1e-12;
    out.into_iter().map(|p| (p + floor).log10()).collect()
}

/// [`spectral_distance`] after aligning the frames in time (dynamic time warping: each frame
/// of one matched to the nearest of the other along a monotonic path), for audio whose
/// durations differ.
fn aligned_spectral_distance(a: &[f32], b: &[f32]) -> f64 {
    let (x, y) = (log_spectrogram(a), log_spectrogram(b));
    let (n, m) = (x.len() / 32, y.len() / 32);
    let d = |i: usize, j: usize| -> f64 {
        (0..32)
            .map(|k| (x[i * 32 + k] - y[j * 32 + k]).powi(2))
            .sum()
    };
    // cost[i][j]: (sum, steps) of the cheapest path to (i, j).
    let mut cost = vec![(f64::INFINITY, 0usize); n * m];
    for i in 0..n {
        for j in 0..m {
            let best = [(i > 0, 1, 0), (j > 0, 0, 1), (i > 0 && j > 0, 1, 1)]
                .into_iter()
                .filter(|c| c.0)
                .map(|(_, di, dj)| cost[(i - di) * m + j - dj])
                .min_by(|p, q| p.0.total_cmp(&q.0))
                .unwrap_or((0.0, 0));
            cost[i * m + j] = (best.0 + d(i, j), best.1 + 1);
        }
    }
    let (sum, steps) = cost[n * m - 1];
    (sum / (steps * 32) as f64).sqrt()
}

fn spectral_distance(a: &[f32], b: &[f32]) -> f64 {
    let (x, y) = (log_spectrogram(a), log_spectrogram(b));
    assert_eq!(x.len(), y.len());
    (x.iter().zip(&y).map(|(p, q)| (p - q).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Where the CPU has bfloat16 dot products, our kernels run the decoder, and the flow's
/// convolutions too (a custom operator inside ONNX Runtime). Against float32 (ONNX
/// Runtime, noise off, so the same durations and no randomness):
/// * the decoder alone differs by about −40 dB sample by sample (bound 35 dB; rounding every
///   operand to bfloat16 measured 40.4–41.4 dB in ONNX Runtime itself);
/// * with the flow, the samples drift further (its output is inverted into the decoder), but
///   the spectrum stays close: the log-spectral distance must be under a third of the distance
///   between two float32 runs that differ only by the voice's own noise (measured 0.016 against
///   0.15; the decoder alone 0.004).
/// * with the text encoder's convolutions too, durations may move by a frame: the length stays
///   within 1 % and the spectrum aligned in time (dynamic time warping) as close.
///
/// Two threads cut the decoder's input in two along time, each piece with its context: the
/// samples equal one thread's exactly, and so do the decoder's stages run in pieces of any size
/// or whole. After `idle` (buffers given back) the same sentence comes out again.
#[test]
fn the_bfloat16_kernels_keep_the_voice() {
    let env = local_assistant::speech::onnx::init(None, &models_dir()).expect("ONNX Runtime");
    let load = |bf16_decoder, bf16_flow, bf16_encoder, threads| {
        let options = PiperOptions {
            threads,
            bf16_decoder,
            bf16_flow,
            bf16_encoder,
            ..PiperOptions::default()
        };
        let mut voice = PiperVoice::load(env, &voice_path(), &options).expect("voice");
        voice.set_noise(0.0, 0.0).expect("noise");
        voice
    };
    let mut float = load(false, false, false, 1);
    let mut both = load(true, true, false, 1);
    assert!(!float.bf16_decoder());
    let available = local_assistant::speech::bf16::available();
    assert_eq!(both.bf16_decoder(), available);
    if !available {
        eprintln!("this CPU has no bfloat16 dot products: the model stays in ONNX Runtime");
        return;
    }
    assert_eq!(
        both.bf16_flow_convs(),
        40,
        "4 coupling layers: pre, 4 dilated, 4 residual/skip, post"
    );
    assert_eq!(both.bf16_encoder_convs(), 0);
    let mut decoder = load(true, false, false, 1);
    assert_eq!(decoder.bf16_flow_convs(), 0);
    let mut all = load(true, true, true, 1);
    assert_eq!(
        all.bf16_encoder_convs(),
        37,
        "6 layers: q, k, v, o and 2 feed-forward; the projection"
    );
    let mut two = load(true, true, true, 2);
    assert_eq!(two.bf16_flow_convs(), 40);
    assert_eq!(two.bf16_encoder_convs(), 37);
    let phonemes = both
        .phonemize("It is sunny and twelve degrees outside, with light rain expected after four in the afternoon.")
        .expect("phonemes");
    let ids = both.config().phoneme_ids(&phonemes[0]);
    let f = float.synthesize_ids(&ids).expect("float32");
    let a = decoder.synthesize_ids(&ids).expect("bfloat16 decoder");
    let c = both
        .synthesize_ids(&ids)
        .expect("bfloat16 decoder and flow");
    assert_eq!(f.len(), a.len());
    assert_eq!(f.len(), c.len());
    assert!(a.len() > 3 * 22_050, "{} samples", a.len());
    let power = |x: &[f32]| x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
    let noise: Vec<f32> = f.iter().zip(&a).map(|(x, y)| x - y).collect();
    let snr = 10.0 * (power(&f) / power(&noise)).log10();
    assert!(snr > 35.0, "bfloat16 decoder vs float32: {snr:.1} dB");
    float.set_noise(0.667, 0.0).expect("noise");
    let n1 = float.synthesize_ids(&ids).expect("float32, noise");
    let n2 = float.synthesize_ids(&ids).expect("float32, noise again");
    let (ours, own) = (spectral_distance(&f, &c), spectral_distance(&n1, &n2));
    eprintln!(
        "decoder {snr:.1} dB (log-spectral distance {:.4}); with the flow: {ours:.4}; two float32 runs {own:.4}",
        spectral_distance(&f, &a)
    );
    assert!(
        ours < own / 3.0,
        "log-spectral distance {ours:.4} to float32, against {own:.4} between two of its runs"
    );
    // With the encoder too, a phoneme's duration may move by a frame (the encoder feeds the
    // duration predictor): the length stays within 1 %, and the spectrum, aligned in time,
    // as close as with the decoder and the flow alone.
    let e = all
        .synthesize_ids(&ids)
        .expect("bfloat16 encoder, flow and decoder");
    let frames = |x: &[f32]| x.len() as f64 / 256.0;
    assert!(
        (frames(&e) - frames(&f)).abs() <= 0.01 * frames(&f),
        "{} frames against float32's {}",
        frames(&e),
        frames(&f)
    );
    let (with_encoder, own_aligned) = (
        aligned_spectral_distance(&f, &e),
        aligned_spectral_distance(&n1, &n2),
    );
    eprintln!("with the encoder (aligned): {with_encoder:.4}; two float32 runs {own_aligned:.4}");
    assert!(
        with_encoder < own_aligned / 3.0,
        "aligned log-spectral distance {with_encoder:.4} to float32, against {own_aligned:.4} between two of its runs"
    );
    let b = two.synthesize_ids(&ids).expect("two threads");
    same(&e, &b, "two pieces must give one piece's samples");
    // The stages of 64 and 32 channels run in pieces along time (cache-sized); whole, or in
    // smaller pieces, the samples are the same.
    decoder.set_decoder_tile(0);
    same(
        &decoder.synthesize_ids(&ids).expect("whole"),
        &a,
        "whole segments",
    );
    decoder.set_decoder_tile(4096);
    same(
        &decoder.synthesize_ids(&ids).expect("pieces"),
        &a,
        "small pieces",
    );
    two.idle();
    same(
        &two.synthesize_ids(&ids).expect("after idle"),
        &b,
        "after idle",
    );
}

/// `a` and `b` are the same samples (the first difference named, not a megabyte of them).
fn same(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        panic!("{what}: sample {i} of {} is {} and {}", a.len(), a[i], b[i]);
    }
}

#[test]
fn piper_speaks_at_the_voices_rate_with_a_plausible_length_and_level() {
    let mut voice = piper();
    assert_eq!(voice.name(), "piper");
    assert_eq!(voice.sample_rate(), 22050);
    let audio = voice.synthesize(TEXT).expect("synthesis");
    assert_eq!(audio.rate, 22050);
    assert_plausible(TEXT, &audio);
}

/// Ids from the `piper-tts` 1.8 Python package for the same text and voice: clause splitting,
/// punctuation, pads, BOS and EOS exactly like Piper's phonemizer (these sentences phonemize
/// the same in espeak-ng 1.51 and Piper's bundled espeak-ng).
#[test]
fn phoneme_ids_match_piper_tts_for_reference_sentences() {
    let voice = piper();
    let cases: &[(&str, &[&[i64]])] = &[
        (
            "Hello, world. How are you today?",
            &[
                &[
                    1, 0, 20, 0, 59, 0, 24, 0, 120, 0, 27, 0, 100, 0, 8, 0, 3, 0, 35, 0, 120, 0,
                    62, 0, 122, 0, 24, 0, 17, 0, 10, 0, 2,
                ],
                &[
                    1, 0, 20, 0, 121, 0, 14, 0, 100, 0, 3, 0, 51, 0, 122, 0, 88, 0, 3, 0, 22, 0,
                    33, 0, 122, 0, 3, 0, 32, 0, 59, 0, 17, 0, 120, 0, 18, 0, 74, 0, 13, 0, 2,
                ],
            ],
        ),
        (
            "Your reminder: call mom.",
            &[&[
                1, 0, 22, 0, 100, 0, 88, 0, 3, 0, 88, 0, 128, 0, 25, 0, 120, 0, 14, 0, 74, 0, 26,
                0, 17, 0, 60, 0, 11, 0, 3, 0, 23, 0, 120, 0, 54, 0, 122, 0, 24, 0, 3, 0, 25, 0,
                120, 0, 51, 0, 122, 0, 25, 0, 10, 0, 2,
            ]],
        ),
    ];
    for (text, want) in cases {
        let sentences = voice.phonemize(text).expect("phonemize");
        let got: Vec<Vec<i64>> = sentences
            .iter()
            .map(|p| voice.config().phoneme_ids(p))
            .collect();
        let want: Vec<Vec<i64>> = want.iter().map(|w| w.to_vec()).collect();
        assert_eq!(got, want, "{text}");
    }
}

#[test]
fn speed_one_and_a_half_is_shorter_than_normal_speed() {
    let text = "Your appointment with the dentist is tomorrow morning.";
    let mut voice = piper();
    let normal = voice.synthesize(text).expect("normal");
    voice.set_speed(1.5).expect("speed");
    let fast = voice.synthesize(text).expect("fast");
    voice.set_speed(1.0).expect("speed");
    let ratio = fast.samples.len() as f64 / normal.samples.len() as f64;
    // 1/1.5 = 0.67, give or take the model's duration noise.
    assert!(
        ratio < 0.85,
        "speed 1.5 gave {ratio:.2} of the normal length"
    );
    assert_plausible(text, &normal);
    assert!(fast.level().rms_dbfs() > -35.0);
}

#[test]
fn numbers_and_times_are_spoken_as_words() {
    // "3:30 pm" said as words takes clearly longer than espeak's "3 30 pm" would; the real
    // check is that it sounds like speech of the normalized length.
    let mut voice = piper();
    let text = "It is 3:30 pm on 2026-12-04.";
    let spoken = tts::normalize::normalize(text);
    assert_eq!(
        spoken,
        "It is three thirty p m on Friday, December fourth, twenty twenty-six."
    );
    let audio = voice.synthesize(text).expect("synthesis");
    assert_plausible(&spoken, &audio);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_speaks_a_long_first_sentence_clause_by_clause() {
    let worker = TtsWorker::spawn(Box::new(SharedPiper)).expect("worker");
    let (sink, audio) = worker
        .speak(
            StreamOptions {
                rate: Some(8_000),
                first_clause: true,
            },
            CancellationToken::new(),
        )
        .expect("speak");
    sink.send("Today is Sunday, November 29th, 2026. Enjoy it, and the rest of the week.")
        .await
        .expect("send");
    sink.finish();
    let mut parts = Vec::new();
    while let Some(item) = audio.recv().await {
        let s = item.expect("sentence");
        assert_eq!(s.audio.rate, 8_000);
        parts.push(s.text);
    }
    // Only the first sentence is split.
    assert_eq!(
        parts,
        vec![
            "Today is Sunday,",
            "November 29th, 2026.",
            "Enjoy it, and the rest of the week."
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_yields_the_first_sentence_before_the_rest_of_the_text_is_sent() {
    let worker = TtsWorker::spawn(Box::new(SharedPiper)).expect("worker");
    let (sink, audio) = worker
        .speak(
            StreamOptions {
                rate: Some(16_000),
                ..StreamOptions::default()
            },
            CancellationToken::new(),
        )
        .expect("speak");
    assert_eq!(audio.rate(), 16_000);
    let mut log: Vec<String> = Vec::new();

    // Fragments as an LLM produces them; the second sentence is still incomplete.
    for piece in ["Good", " morning", ", Alex. ", "The next", " train"] {
        sink.send(piece).await.expect("send");
    }
    log.push("sent first sentence".into());
    // A guard against hanging, not a timing assertion: a stream that waited for all the
    // text would never deliver here.
    let first = tokio::time::timeout(Duration::from_secs(120), audio.recv())
        .await
        .expect("the first sentence's audio must come before the rest of the text")
        .expect("stream open")
        .expect("first sentence");
    log.push(format!("audio: {}", first.text));
    assert_eq!(first.text, "Good morning, Alex.");
    assert_eq!(first.audio.rate, 16_000);
    assert_plausible(&first.text, &first.audio);

    sink.send(" leaves at 7:45. Have a nice day!")
        .await
        .expect("send");
    log.push("sent the rest".into());
    sink.finish();
    while let Some(item) = audio.recv().await {
        log.push(format!("audio: {}", item.expect("sentence").text));
    }
    assert_eq!(
        log,
        vec![
            "sent first sentence",
            "audio: Good morning, Alex.",
            "sent the rest",
            "audio: The next train leaves at 7:45.",
            "audio: Have a nice day!",
        ]
    );
    tokio::task::spawn_blocking(move || worker.shutdown())
        .await
        .expect("shutdown");
}

#[test]
fn cancelling_a_stream_stops_between_sentences() {
    let worker = TtsWorker::spawn(open("espeak", 1.0)).expect("worker");
    let cancel = CancellationToken::new();
    let (sink, audio) = worker
        .speak(StreamOptions::default(), cancel.clone())
        .expect("speak");
    sink.send_blocking("First sentence. ").expect("send");
    let first = audio.recv_blocking().expect("open").expect("first");
    assert_eq!(first.text, "First sentence.");
    cancel.cancel();
    let _ = sink.send_blocking("Second sentence. Third sentence.");
    assert!(audio.recv_blocking().is_none(), "nothing after cancel");
    worker.shutdown();
}

#[test]
fn the_espeak_fallback_voice_speaks() {
    let mut voice = open("espeak", 1.0);
    assert_eq!(voice.name(), "espeak");
    assert_eq!(voice.sample_rate(), 22050);
    let audio = voice.synthesize(TEXT).expect("synthesis");
    assert_eq!(audio.rate, 22050);
    assert_plausible(TEXT, &audio);
    let fast = open("espeak", 2.0).synthesize(TEXT).expect("fast");
    assert!(fast.samples.len() < audio.samples.len());
}

#[test]
fn sentences_become_16_khz_wavs_for_a_speech_to_text_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut voice = piper();
    let paths = tts::synthesize_16k_wavs(
        &mut *voice,
        &["Turn on the kitchen lights.", "What time is it?"],
        dir.path(),
    )
    .expect("wavs");
    assert_eq!(paths.len(), 2);
    for p in paths {
        let clip = audio::wav::read(&p).expect("read back");
        assert_eq!(clip.rate, 16_000);
        assert!(clip.duration_ms() > 500, "{}", p.display());
    }
}

fn say(args: &[&str]) -> std::process::Output {
    let data = data_dir();
    let data = data.to_str().expect("utf-8 path");
    Command::new(env!("CARGO_BIN_EXE_local-assistant"))
        .arg("say")
        .args(args)
        .args(["--data-dir", data])
        .env_remove("LOCAL_ASSISTANT_CONFIG")
        .output()
        .expect("run local-assistant say")
}

#[test]
fn say_writes_a_16_bit_wav_at_the_requested_rate() {
    models_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("call.wav");
    let text = "Hello, this is your assistant calling.";
    let run = say(&[text, "-o", out.to_str().expect("utf-8"), "--rate", "8000"]);
    assert!(
        run.status.success(),
        "say failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (clip, format) =
        audio::wav::read_with(&out, audio::ChannelMix::Downmix).expect("read the wav");
    assert_eq!(clip.rate, 8000);
    assert_eq!(format.bits, 16);
    assert_eq!(format.channels, 1);
    assert_plausible(text, &clip);
}

#[test]
fn say_refuses_empty_text_and_unknown_voices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("x.wav");
    let out = out.to_str().expect("utf-8");
    let empty = say(&["  ", "-o", out]);
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("nothing to say"));
    let unknown = say(&["Hi.", "-o", out, "--voice", "no-such-voice"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown voice \"no-such-voice\""));
    assert!(!Path::new(out).exists());
}

#[test]
fn empty_text_is_an_error_not_silence() {
    let mut voice = open("espeak", 1.0);
    assert!(matches!(
        voice.synthesize(" \n "),
        Err(SpeechError::Unsupported(m)) if m.contains("empty")
    ));
}

#[test]
fn missing_voice_files_and_bad_voice_configs_are_reported_with_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open_err = |voice: &Path| {
        tts::open(&options(voice.to_str().expect("utf-8"), 1.0))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };

    // No .onnx at all.
    let missing = dir.path().join("absent.onnx");
    let e = open_err(&missing);
    assert!(e.contains("absent.onnx") && e.contains("missing"), "{e}");

    // The .onnx without its .onnx.json.
    let lonely = dir.path().join("lonely.onnx");
    std::os::unix::fs::symlink(voice_path(), &lonely).expect("symlink");
    let e = open_err(&lonely);
    assert!(
        e.contains("lonely.onnx.json") && e.contains(".onnx.json is missing"),
        "{e}"
    );

    // A .onnx.json that is not a voice config.
    let broken = dir.path().join("broken.onnx");
    std::os::unix::fs::symlink(voice_path(), &broken).expect("symlink");
    std::fs::write(dir.path().join("broken.onnx.json"), "{\"audio\": 5}").expect("write");
    let e = open_err(&broken);
    assert!(
        e.contains("broken.onnx.json") && e.contains("not a Piper voice config"),
        "{e}"
    );

    // A manifest voice that is not installed.
    let e = tts::open(&TtsOptions {
        models_dir: dir.path().to_path_buf(),
        ..options(VOICE, 1.0)
    })
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("models pull piper-en-us-joe-medium"), "{e}");
}
