//! Text → speech → text: the Piper voice speaks household sentences full of times, dates,
//! names and numbers; Whisper (our ggml conversion of tiny.en) writes them down again; the word
//! error rate over all of them must stay at or under 10 %. Both sides are compared in one
//! canonical written form (see `words`), so "3:30 pm" and Whisper's "3.30 p.m." agree.
//! Also: "hey jarvis" in the Piper voice wakes the detector.

#![cfg(feature = "espeak")]

use std::path::{Path, PathBuf};

use local_assistant::config::Config;
use local_assistant::speech::audio::Audio;
use local_assistant::speech::stt::whisper::WhisperEngine;
use local_assistant::speech::tts::{self, TtsOptions};
use local_assistant::speech::{listen, SpeechToText, SttRequest};
use tokio_util::sync::CancellationToken;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn config() -> Config {
    let mut cfg = Config::defaults();
    cfg.data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    cfg
}

fn models_dir() -> PathBuf {
    config().models_dir()
}

const SENTENCES: &[&str] = &[
    "Remind me to call Anna at 3:30 pm tomorrow.",
    "Set a timer for 25 minutes.",
    "Your dentist appointment is on Friday the 4th at 9 am.",
    "The meeting was moved to December 12.",
    "Add 6 eggs and 2 liters of milk to the shopping list.",
    "It is 7:45 in the morning.",
    "You have 3 appointments tomorrow.",
    "Call Daniel on his mobile phone.",
    "The package will arrive on Monday between 10 and 12.",
    "I have set an alarm for 6:15 am.",
    "Your next reminder is in 40 minutes.",
    "The temperature outside is 18 degrees.",
    "Ben is picking up the children at 4 pm.",
    "Cancel all 5 timers.",
    "The dog needs a walk at seven in the evening.",
    "Your flight leaves on March 21 at 11:20 am.",
    "Water the plants every Monday and Thursday.",
    "The electricity bill was 84 dollars.",
    "Clara has a piano lesson on Wednesday at 5 pm.",
    "Book a table for 4 people on Saturday night.",
    "Today is the 29th of November.",
    "Remember that the spare key is under the blue pot.",
];

/// Words in a canonical written form, applied to both sides alike: lower case; "p.m." → "pm";
/// separators inside numbers dropped ("3:30" and Whisper's "3.30" or "330" all become "330");
/// a number glued to a word split ("9am" → "9 am"); "$8" → "8 dollars"; "three" → "3" up to
/// twelve; "4th" → "4"; no punctuation.
fn words(text: &str) -> Vec<String> {
    let t = text
        .to_lowercase()
        .replace("p.m.", "pm")
        .replace("a.m.", "am")
        .replace(" p m", " pm")
        .replace(" a m", " am");
    let chars: Vec<char> = t.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let digit = |x: Option<char>| x.is_some_and(|x| x.is_ascii_digit());
        if (c == ':' || c == '.' || c == ',') && digit(prev) && digit(next) {
            continue;
        }
        if c.is_alphabetic() && digit(prev)
            || c.is_ascii_digit() && prev.is_some_and(char::is_alphabetic)
        {
            out.push(' ');
        }
        out.push(c);
    }
    let mut words = Vec::new();
    for w in out.split(|c: char| !(c.is_alphanumeric() || c == '$' || c == '\'')) {
        if let Some(n) = w.strip_prefix('$') {
            words.push(n.to_owned());
            words.push("dollars".to_owned());
        } else if !w.is_empty() {
            words.push(w.to_owned());
        }
    }
    // The voice reads "4th" and "fourth", "3" and "three" alike; Whisper writes either.
    const SMALL: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    words
        .into_iter()
        .map(|w| match SMALL.iter().position(|n| *n == w) {
            Some(i) => i.to_string(),
            None => w,
        })
        .map(|w| {
            let n: String = w.chars().take_while(char::is_ascii_digit).collect();
            if !n.is_empty() && ["st", "nd", "rd", "th"].contains(&&w[n.len()..]) {
                n
            } else {
                w
            }
        })
        .collect()
}

/// Word-level edit distance.
fn edits(a: &[String], b: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[test]
fn word_error_rate_of_piper_then_whisper_is_at_most_10_percent() -> TestResult {
    let cfg = config();
    let mut voice = tts::open(&TtsOptions::from_config(&cfg.speech, &models_dir()))?;
    let clips = tts::synthesize_16k(voice.as_mut(), SENTENCES)?;
    let mut stt = WhisperEngine::from_config(&cfg.speech, &models_dir())?;
    let (mut errors, mut total) = (0, 0);
    let mut report = Vec::new();
    for (text, clip) in SENTENCES.iter().zip(&clips) {
        let heard = stt.transcribe(clip, &SttRequest::default(), &CancellationToken::new())?;
        let (r, h) = (words(text), words(&heard.text));
        let e = edits(&r, &h);
        errors += e;
        total += r.len();
        if e > 0 {
            report.push(format!("{text:?} -> {:?} ({e})", heard.text));
        }
    }
    let wer = errors as f64 / total as f64;
    println!(
        "WER {:.1} % ({errors}/{total} words)\n{}",
        wer * 100.0,
        report.join("\n")
    );
    assert!(
        wer <= 0.10,
        "word error rate {:.1} % over {} sentences:\n{}",
        wer * 100.0,
        SENTENCES.len(),
        report.join("\n")
    );
    Ok(())
}

#[test]
fn the_piper_voice_saying_hey_jarvis_wakes_the_detector() -> TestResult {
    let cfg = config();
    let mut voice = tts::open(&TtsOptions::from_config(&cfg.speech, &models_dir()))?;
    let (_, mut wake) = listen::engines(&cfg)?;
    let mut clip = Audio::silence(16_000, 500);
    clip.append(
        &voice
            .synthesize("Hey Jarvis, what time is it?")?
            .resampled(16_000)?,
    )?;
    clip.append(&Audio::silence(16_000, 1000))?;
    let mut found = Vec::new();
    for chunk in clip.samples.chunks(320) {
        found.extend(wake.push(chunk)?.into_iter().map(|d| d.model));
    }
    assert_eq!(found, ["hey_jarvis_v0.1"]);
    // The same voice saying other things does not.
    let mut other = Audio::silence(16_000, 500);
    for s in &SENTENCES[..8] {
        other.append(&voice.synthesize(s)?.resampled(16_000)?)?;
    }
    let mut found = Vec::new();
    wake.reset()?;
    for chunk in other.samples.chunks(320) {
        found.extend(wake.push(chunk)?.into_iter().map(|d| d.model));
    }
    assert!(found.is_empty(), "{found:?}");
    Ok(())
}
