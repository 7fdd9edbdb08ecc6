//! Sentence streaming: text fragments in as they arrive (an LLM's tokens), one [`Audio`] per
//! sentence out, synthesized on the voice's own worker thread while later text still arrives.
//!
//! A [`TtsWorker`] owns one voice on one thread and speaks one utterance at a time;
//! [`TtsWorker::speak`] opens an utterance as a [`TextSink`] (bounded, `send` async or
//! blocking) and an [`AudioStream`] (bounded, `recv` async or blocking). Sentences are found
//! with the orchestrator's [`SentenceChunker`] (pure text logic, shared rather than copied).
//! Cancellation is checked between sentences: pending text is dropped and the audio stream
//! ends. Audio is at the voice's rate, or resampled per sentence to the requested rate.
//!
//! **Invariant:** synthesis never runs on the async runtime; the channels between the two
//! are bounded.

use std::collections::VecDeque;
use std::thread::JoinHandle;

use tokio_util::sync::CancellationToken;

use crate::orchestrator::chunker::SentenceChunker;
use crate::speech::audio::resample::Resampler;
use crate::speech::{Audio, SpeechError, TextToSpeech};

/// Text fragments buffered between the producer and the worker.
const TEXT_CAPACITY: usize = 64;
/// Sentences of audio buffered between the worker and the consumer.
const AUDIO_CAPACITY: usize = 4;
/// Utterances queued behind the one being spoken.
const QUEUE_CAPACITY: usize = 4;

/// One spoken sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct SpokenSentence {
    /// The sentence as it came in (before normalization).
    pub text: String,
    /// Its audio, at the stream's rate.
    pub audio: Audio,
}

/// Options of one utterance.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamOptions {
    /// Output rate (8000 for telephony, 16000/48000 for speakers); `None`: the voice's rate.
    pub rate: Option<u32>,
    /// Synthesize a long first sentence's first clause on its own ("Today is Sunday," then
    /// the rest), so that the first audio is ready sooner.
    pub first_clause: bool,
}

/// The shortest first clause spoken on its own, in characters.
const MIN_PART: usize = 10;

/// A long first sentence split after its first comma, when both parts are long enough to be
/// worth it; else the sentence itself.
pub fn first_clause(sentence: &str) -> Vec<String> {
    const MIN_SENTENCE: usize = 28;
    if sentence.chars().count() >= MIN_SENTENCE {
        for (i, _) in sentence.match_indices(", ") {
            let (head, tail) = (&sentence[..=i], sentence[i + 2..].trim());
            if head.chars().count() >= MIN_PART && tail.chars().count() >= MIN_PART {
                return vec![head.to_owned(), tail.to_owned()];
            }
        }
    }
    vec![sentence.to_owned()]
}

type Item = Result<SpokenSentence, SpeechError>;

struct Job {
    text: async_channel::Receiver<String>,
    audio: async_channel::Sender<Item>,
    cancel: CancellationToken,
    rate: Option<u32>,
    first_clause: bool,
}

/// The sending half of an utterance: push text fragments, then [`TextSink::finish`] (or drop).
#[derive(Debug, Clone)]
pub struct TextSink {
    tx: async_channel::Sender<String>,
    cancel: CancellationToken,
}

impl TextSink {
    fn closed(&self) -> SpeechError {
        if self.cancel.is_cancelled() {
            SpeechError::Cancelled
        } else {
            SpeechError::WorkerGone("text to speech")
        }
    }

    /// Add a fragment (any piece of text; sentences are found across fragments).
    pub async fn send(&self, fragment: impl Into<String>) -> Result<(), SpeechError> {
        self.tx
            .send(fragment.into())
            .await
            .map_err(|_| self.closed())
    }

    /// Add a complete sentence (or any unit that must not wait for more text, such as the
    /// orchestrator's reply chunks): it is spoken as soon as the worker is free, without
    /// waiting for the next fragment to show where it ends, and never runs into the next one.
    pub async fn send_sentence(&self, sentence: &str) -> Result<(), SpeechError> {
        // A line break always ends a unit for the chunker.
        self.send(format!("{}\n", sentence.trim_end())).await
    }

    /// [`TextSink::send`] for callers on plain threads.
    pub fn send_blocking(&self, fragment: impl Into<String>) -> Result<(), SpeechError> {
        self.tx
            .send_blocking(fragment.into())
            .map_err(|_| self.closed())
    }

    /// End of the text: the rest is spoken, then the audio stream ends.
    pub fn finish(self) {
        self.tx.close();
    }
}

/// The receiving half of an utterance: one item per sentence, in order, then the end.
#[derive(Debug)]
pub struct AudioStream {
    rx: async_channel::Receiver<Item>,
    rate: u32,
}

impl AudioStream {
    /// The rate of every sentence's audio.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The next sentence; `None` once the utterance is over (all text spoken, or cancelled).
    /// A sentence that failed is an `Err` and the stream goes on.
    pub async fn recv(&self) -> Option<Item> {
        self.rx.recv().await.ok()
    }

    /// [`AudioStream::recv`] for callers on plain threads.
    pub fn recv_blocking(&self) -> Option<Item> {
        self.rx.recv_blocking().ok()
    }
}

/// One voice on its own thread, speaking one utterance at a time.
#[derive(Debug)]
pub struct TtsWorker {
    jobs: async_channel::Sender<Job>,
    name: &'static str,
    rate: u32,
    thread: Option<JoinHandle<()>>,
}

impl TtsWorker {
    /// Move `tts` onto a new worker thread.
    pub fn spawn(mut tts: Box<dyn TextToSpeech>) -> Result<Self, SpeechError> {
        let (jobs, rx) = async_channel::bounded::<Job>(QUEUE_CAPACITY);
        let name = tts.name();
        let rate = tts.sample_rate();
        let thread = std::thread::Builder::new()
            .name(format!("la-tts-{name}"))
            .spawn(move || {
                // A tiny runtime only to wait for text or cancellation, whichever comes first.
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
                    tracing::error!("text to speech worker: cannot build its runtime");
                    return;
                };
                while let Ok(job) = rx.recv_blocking() {
                    run_job(tts.as_mut(), &rt, job);
                    if rx.is_empty() {
                        tts.idle();
                    }
                }
            })
            .map_err(|e| SpeechError::Runtime {
                library: "text to speech worker".into(),
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(Self {
            jobs,
            name,
            rate,
            thread: Some(thread),
        })
    }

    /// The voice's engine name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The voice's own rate.
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Start an utterance. It is spoken after those already queued; `cancel` stops it between
    /// sentences (its pending text is dropped and its audio stream ends).
    pub fn speak(
        &self,
        options: StreamOptions,
        cancel: CancellationToken,
    ) -> Result<(TextSink, AudioStream), SpeechError> {
        if options.rate == Some(0) {
            return Err(SpeechError::Unsupported("output rate 0 Hz".into()));
        }
        let (text_tx, text_rx) = async_channel::bounded(TEXT_CAPACITY);
        let (audio_tx, audio_rx) = async_channel::bounded(AUDIO_CAPACITY);
        let job = Job {
            text: text_rx,
            audio: audio_tx,
            cancel: cancel.clone(),
            rate: options.rate,
            first_clause: options.first_clause,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            async_channel::TrySendError::Full(_) => SpeechError::Unsupported(format!(
                "text to speech is busy: {QUEUE_CAPACITY} utterances are already waiting"
            )),
            async_channel::TrySendError::Closed(_) => SpeechError::WorkerGone("text to speech"),
        })?;
        Ok((
            TextSink {
                tx: text_tx,
                cancel,
            },
            AudioStream {
                rx: audio_rx,
                rate: options.rate.unwrap_or(self.rate),
            },
        ))
    }

    /// Stop taking utterances and wait for the worker to finish the current ones.
    pub fn shutdown(mut self) {
        self.jobs.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TtsWorker {
    fn drop(&mut self) {
        // The thread ends after the utterances already queued; nobody waits for it here.
        self.jobs.close();
    }
}

/// Start a worker for `tts` and one utterance on it (the worker's thread ends with it).
pub fn synthesize_stream(
    tts: Box<dyn TextToSpeech>,
    options: StreamOptions,
    cancel: CancellationToken,
) -> Result<(TextSink, AudioStream), SpeechError> {
    let worker = TtsWorker::spawn(tts)?;
    worker.speak(options, cancel)
}

/// Speak one utterance: sentences as soon as they are complete, between them the next text.
fn run_job(tts: &mut dyn TextToSpeech, rt: &tokio::runtime::Runtime, job: Job) {
    speak_job(tts, rt, &job);
    // Refuse further text before the audio stream ends, so that a producer that sees the
    // end can rely on its next send failing.
    job.text.close();
    drop(job);
}

fn speak_job(tts: &mut dyn TextToSpeech, rt: &tokio::runtime::Runtime, job: &Job) {
    let Job {
        text,
        audio,
        cancel,
        rate,
        first_clause: split_first,
    } = job;
    let resampler = match *rate {
        Some(r) if r != tts.sample_rate() => match Resampler::new(tts.sample_rate(), r) {
            Ok(rs) => Some(rs),
            Err(e) => {
                let _ = audio.send_blocking(Err(e));
                return;
            }
        },
        _ => None,
    };
    let mut chunker = SentenceChunker::new();
    let mut ready: VecDeque<String> = VecDeque::new();
    let mut ended = false;
    // Whether the first sentence is still to come (it may be split at its first clause).
    let mut first = *split_first;
    let add = |ready: &mut VecDeque<String>, first: &mut bool, sentences: Vec<String>| {
        for s in sentences {
            if std::mem::take(first) {
                ready.extend(first_clause(&s));
            } else {
                ready.push_back(s);
            }
        }
    };
    loop {
        while let Some(sentence) = ready.pop_front() {
            if cancel.is_cancelled() {
                return;
            }
            let item = {
                let _fg = crate::platform::foreground::enter();
                speak_sentence(tts, &sentence, resampler.as_ref())
            };
            let sent = rt.block_on(async {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => false,
                    r = audio.send(item) => r.is_ok(),
                }
            });
            if !sent {
                // Cancelled, or nobody listens any more.
                return;
            }
        }
        if ended {
            return;
        }
        let next = rt.block_on(async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                r = text.recv() => Some(r),
            }
        });
        match next {
            None => return,
            Some(Ok(fragment)) => {
                add(&mut ready, &mut first, chunker.push(&fragment));
                // A first sentence still being written is spoken from its first clause on, as
                // soon as that clause is there (an LLM writes a long sentence in about a second).
                if first {
                    if let Some(head) = chunker.take_clause(MIN_PART) {
                        first = false;
                        ready.push_back(head);
                    }
                }
            }
            Some(Err(_)) => {
                add(
                    &mut ready,
                    &mut first,
                    chunker.finish().into_iter().collect(),
                );
                ended = true;
            }
        }
    }
}

fn speak_sentence(
    tts: &mut dyn TextToSpeech,
    sentence: &str,
    resampler: Option<&Resampler>,
) -> Item {
    let audio = tts.synthesize(sentence)?;
    let audio = match resampler {
        Some(r) => {
            // Each sentence on its own (sentences are separated by silence): exact lengths,
            // no tail carried into the next sentence.
            let mut r = r.clone();
            let mut samples = r.process(&audio.samples);
            samples.extend(r.flush());
            Audio::new(r.to_rate(), samples)
        }
        None => audio,
    };
    Ok(SpokenSentence {
        text: sentence.to_owned(),
        audio,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_first_sentence_is_split_after_its_first_clause() {
        assert_eq!(
            first_clause("Today is Sunday, November 29th, 2026."),
            vec!["Today is Sunday,", "November 29th, 2026."]
        );
        // Short sentences, short heads and short tails stay whole.
        assert_eq!(first_clause("Yes, it is."), vec!["Yes, it is."]);
        assert_eq!(
            first_clause("Ok, the timer is set for ten minutes now."),
            vec!["Ok, the timer is set for ten minutes now."]
        );
        assert_eq!(
            first_clause("The timer for the pasta is set, sure."),
            vec!["The timer for the pasta is set, sure."]
        );
    }

    use super::*;
    use std::sync::{Arc, Mutex};

    /// A voice that logs what it is asked and answers with 10 ms per character.
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl TextToSpeech for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn sample_rate(&self) -> u32 {
            1000
        }
        fn synthesize(&mut self, text: &str) -> Result<Audio, SpeechError> {
            self.0.lock().unwrap().push(text.to_owned());
            Ok(Audio::new(1000, vec![0.1; text.len() * 10]))
        }
    }

    /// A voice that logs what it speaks and when it is told the worker is idle.
    struct Idler(Arc<Mutex<Vec<String>>>);

    impl TextToSpeech for Idler {
        fn name(&self) -> &'static str {
            "idler"
        }
        fn sample_rate(&self) -> u32 {
            1000
        }
        fn synthesize(&mut self, text: &str) -> Result<Audio, SpeechError> {
            self.0.lock().unwrap().push(text.to_owned());
            Ok(Audio::new(1000, vec![0.1; 10]))
        }
        fn idle(&mut self) {
            self.0.lock().unwrap().push("<idle>".into());
        }
    }

    /// The worker tells the voice when nothing is left to speak (to give its working memory
    /// back): after the last queued utterance, not between two that wait back to back.
    #[test]
    fn the_voice_is_told_when_the_worker_runs_out_of_work() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let worker = TtsWorker::spawn(Box::new(Idler(log.clone()))).unwrap();
        let (s1, a1) = worker
            .speak(StreamOptions::default(), CancellationToken::new())
            .unwrap();
        let (s2, a2) = worker
            .speak(StreamOptions::default(), CancellationToken::new())
            .unwrap();
        s1.send_blocking("One.").unwrap();
        s1.finish();
        s2.send_blocking("Two.").unwrap();
        s2.finish();
        for audio in [a1, a2] {
            while audio.recv_blocking().is_some() {}
        }
        worker.shutdown();
        assert_eq!(*log.lock().unwrap(), ["One.", "Two.", "<idle>"]);
    }

    /// With `first_clause`, a long first sentence still being written is spoken from its first
    /// clause on, before the sentence (or the text) ends; only the first sentence is split,
    /// and never at a comma inside a number or after too short a head.
    #[test]
    fn the_first_clause_of_a_sentence_still_being_written_is_spoken_at_once() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sink, audio) = synthesize_stream(
            Box::new(Recorder(log.clone())),
            StreamOptions {
                first_clause: true,
                ..StreamOptions::default()
            },
            CancellationToken::new(),
        )
        .unwrap();
        // What is spoken, as it is spoken (a stream that waited for the sentence's end would
        // time out here instead of hanging the test).
        let (tx, spoken) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Some(item) = audio.recv_blocking() {
                let _ = tx.send(item.map(|s| s.text));
            }
        });
        let next = || spoken.recv_timeout(std::time::Duration::from_secs(20));
        for piece in [
            "Well, from 1,000 m up the sky looks",
            " blue because",
            ", as sunlight",
        ] {
            sink.send_blocking(piece).unwrap();
        }
        // Spoken while the sentence is still open.
        assert_eq!(
            next().unwrap().unwrap(),
            "Well, from 1,000 m up the sky looks blue because,"
        );
        for piece in [
            " crosses 1,000 km of air, blue",
            " scatters most. Later, ",
            "it is red.",
        ] {
            sink.send_blocking(piece).unwrap();
        }
        sink.finish();
        let mut got = Vec::new();
        while let Ok(item) = next() {
            got.push(item.unwrap());
        }
        assert_eq!(
            got,
            [
                "as sunlight crosses 1,000 km of air, blue scatters most.",
                "Later, it is red."
            ]
        );
        // Without the option, nothing is split.
        let (sink, audio) = synthesize_stream(
            Box::new(Recorder(log)),
            StreamOptions::default(),
            CancellationToken::new(),
        )
        .unwrap();
        sink.send_blocking("The sky looks blue because, as sunlight crosses the air, it scatters.")
            .unwrap();
        sink.finish();
        assert_eq!(
            audio.recv_blocking().unwrap().unwrap().text,
            "The sky looks blue because, as sunlight crosses the air, it scatters."
        );
    }

    #[test]
    fn fragments_become_sentences_in_order_and_resampled() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sink, audio) = synthesize_stream(
            Box::new(Recorder(log.clone())),
            StreamOptions {
                rate: Some(2000),
                ..StreamOptions::default()
            },
            CancellationToken::new(),
        )
        .unwrap();
        for piece in ["Hel", "lo there. How", " are you? Fine", " thanks"] {
            sink.send_blocking(piece).unwrap();
        }
        sink.finish();
        let mut got = Vec::new();
        while let Some(item) = audio.recv_blocking() {
            let s = item.unwrap();
            assert_eq!(s.audio.rate, 2000);
            assert_eq!(s.audio.samples.len(), s.text.len() * 20);
            got.push(s.text);
        }
        assert_eq!(got, vec!["Hello there.", "How are you?", "Fine thanks"]);
        assert_eq!(*log.lock().unwrap(), got);
    }

    /// The orchestrator streams whole sentences without the space that would show where each
    /// ends: each is spoken at once, not when the next one (or the end) arrives, and two never
    /// run together.
    #[test]
    fn whole_sentences_are_spoken_before_more_text_arrives() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sink, audio) = synthesize_stream(
            Box::new(Recorder(log.clone())),
            StreamOptions::default(),
            CancellationToken::new(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for s in ["The sky is blue.", "Dr. Rayleigh explained it", "Bye!"] {
            rt.block_on(sink.send_sentence(s)).unwrap();
            // Spoken while the sink is still open.
            assert_eq!(audio.recv_blocking().unwrap().unwrap().text, s);
        }
        sink.finish();
        assert!(audio.recv_blocking().is_none());
        assert_eq!(
            *log.lock().unwrap(),
            ["The sky is blue.", "Dr. Rayleigh explained it", "Bye!"]
        );
    }

    #[test]
    fn cancellation_drops_pending_text_and_ends_the_stream() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let worker = TtsWorker::spawn(Box::new(Recorder(log.clone()))).unwrap();
        let (sink, audio) = worker
            .speak(StreamOptions::default(), cancel.clone())
            .unwrap();
        sink.send_blocking("One. ").unwrap();
        assert_eq!(audio.recv_blocking().unwrap().unwrap().text, "One.");
        cancel.cancel();
        // Sending may still succeed until the worker notices; nothing more is spoken.
        let _ = sink.send_blocking("Two. Three.");
        assert!(audio.recv_blocking().is_none());
        assert!(matches!(
            sink.send_blocking("Four."),
            Err(SpeechError::Cancelled)
        ));
        // The worker takes the next utterance.
        let (sink2, audio2) = worker
            .speak(StreamOptions::default(), CancellationToken::new())
            .unwrap();
        sink2.send_blocking("Next one.").unwrap();
        sink2.finish();
        assert_eq!(audio2.recv_blocking().unwrap().unwrap().text, "Next one.");
        assert!(audio2.recv_blocking().is_none());
        worker.shutdown();
        assert_eq!(*log.lock().unwrap(), vec!["One.", "Next one."]);
    }
}
