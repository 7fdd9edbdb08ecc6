//! The voice loop: wake word (any configured model) or button → chime, LEDs "listening" →
//! VAD-bounded utterance → speech to text → an orchestrator turn (the same engine as SMS and
//! the API) → the reply streamed to the speaker sentence by sentence → back to waiting.
//!
//! One capture thread owns the microphone, the VAD and the wake detectors and runs the state
//! machine below on the audio's own clock (`t_ms`, the samples read so far); every turn and
//! announcement runs as a task on the async runtime (STT and TTS on their worker threads) and
//! reports back over a channel. The speaker is shared: the task queues audio, the capture
//! thread stops it at once on barge-in.
//!
//! ```text
//!  Idle ──wake/press──▶ Listening ──end of speech──▶ Busy (turn) ──played──▶ FollowUp ──timeout──▶ Idle
//!   ▲  ╲                    │ no speech / timeout        │ wake/press: barge-in       │ speech: Listening
//!   │   ╲ announcement       ▼                            ▼                            │ wake/press: Listening
//!   │    ▶ Announcing ──done or wake/press──▶ (Idle, or Listening after a wake word)
//! ```
//!
//! Invariants:
//! - Nothing is captured while muted (a long press toggles it): no wake detection, no VAD.
//! - Announcements never cut off a conversation: they start only from Idle.
//! - The button stops a ringing timer or an answer when it goes down; the gesture that press
//!   makes (recognised later) then starts nothing, except a long press, which still mutes.
//! - The device does not wake on its own voice: a wake word that the audio it is playing also
//!   triggers (a second detector runs on the speaker's reference signal) is ignored; the
//!   person can still interrupt it with the wake word.
//! - In fast mode (files), time passes only while the loop waits for the person or plays
//!   audio, never while it thinks; latencies are always measured on the wall clock.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::button::{Button, ButtonEvent};
use super::leds::{LedState, Leds};
use super::{AudioSink, AudioSource, Read, RATE};
use crate::config::{Config, VoiceConfig};
use crate::domain::{ConversationId, MessageId, UnixMillis};
use crate::messaging::outbox::{Delivery, DeliveryError, DeliveryHandler};
use crate::nlu::llm::Priority;
use crate::orchestrator::session::{SessionKind, SessionState};
use crate::orchestrator::{Orchestrator, LOCAL_CHANNEL};
use crate::platform::metrics::{Metrics, VoiceStageLabels, VoiceTurnLabels};
use crate::speech::tts::stream::{StreamOptions, TtsWorker};
use crate::speech::vad::{Vad, VadEvent};
use crate::speech::wake::WakeDetector;
use crate::speech::worker::{SttWorker, Worker};
use crate::speech::{Audio, SpeechError, SpeechToText, SttRequest, Transcript};
use crate::store::Store;

/// The speech engines the loop uses.
pub struct Engines {
    vad: Vad,
    wake: WakeDetector,
    echo: WakeDetector,
    stt: SttWorker,
    tts: Arc<TtsWorker>,
}

impl Engines {
    /// The STT and TTS workers, to share with phone calls.
    pub fn speech(&self) -> (SttWorker, Arc<TtsWorker>) {
        (self.stt.clone(), self.tts.clone())
    }

    /// Load VAD, wake words (twice: microphone and speaker reference), STT and TTS as
    /// configured. Blocking (model loading).
    pub fn load(cfg: &Config) -> Result<Self, SpeechError> {
        let (mut vad, wake) = crate::speech::listen::engines(cfg)?;
        vad.report_pauses();
        // The speaker's own audio is clean: be quicker to call it a wake word there, so that
        // anything close to one in the device's voice is not taken for the person.
        let echo = crate::speech::listen::wake_detector(cfg, ECHO_THRESHOLD)?;
        let stt: Box<dyn SpeechToText> = crate::speech::cli_transcribe::open_configured(cfg)?;
        let stt = Worker::spawn("stt", stt, 4)?;
        let tts = crate::speech::tts::open(&crate::speech::tts::TtsOptions::from_config(
            &cfg.speech,
            &cfg.models_dir(),
        ))?;
        Ok(Self {
            vad,
            wake,
            echo,
            stt,
            tts: Arc::new(TtsWorker::spawn(tts)?),
        })
    }
}

/// The device's controls and audio.
pub struct Devices {
    /// Microphone.
    pub source: Box<dyn AudioSource>,
    /// Speaker.
    pub sink: Arc<dyn AudioSink>,
    /// Push button.
    pub button: Box<dyn Button>,
    /// LEDs.
    pub leds: Box<dyn Leds>,
    /// Files as fast as possible: time passes only while waiting for the person or playing.
    pub fast: bool,
}

/// What started a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A wake word.
    Wake,
    /// The button.
    Button,
    /// Speech in the follow-up window.
    FollowUp,
}

impl Trigger {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wake => "wake",
            Self::Button => "button",
            Self::FollowUp => "follow_up",
        }
    }
}

/// Wall-clock timings of a voice turn, in ms from the end of speech.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VoiceTimings {
    /// Speech to text done.
    pub stt_ms: Option<f64>,
    /// First reply text from the orchestrator.
    pub first_text_ms: Option<f64>,
    /// First audio handed to the speaker: the response latency.
    pub first_audio_ms: Option<f64>,
}

/// One finished voice turn (also stored in `voice_turns`).
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceTurn {
    /// What started it.
    pub trigger: Trigger,
    /// The wake model, for wake turns.
    pub wake_model: Option<String>,
    /// Stream time of the trigger, ms.
    pub at_ms: u64,
    /// Stream time of the end of speech, ms.
    pub speech_end_ms: Option<u64>,
    /// Wall-clock time of the trigger.
    pub triggered_at: UnixMillis,
    /// Wall-clock time of the end of speech.
    pub speech_end_at: Option<UnixMillis>,
    /// What was heard.
    pub transcript: String,
    /// What was said back.
    pub reply: String,
    /// `answered`, `no_speech`, `interrupted` or `failed`.
    pub outcome: String,
    /// The orchestrator's intent, if the fast path answered.
    pub intent: Option<String>,
    /// Timings.
    pub timings: VoiceTimings,
}

/// Something the loop reports as it happens (for `voice` to print, and tests).
#[derive(Debug, Clone, PartialEq)]
pub enum VoiceEvent {
    /// Listening started.
    Listening {
        /// Trigger.
        trigger: Trigger,
        /// Stream time, ms.
        at_ms: u64,
    },
    /// Playback was stopped for the person (wake word or button during playback).
    BargeIn {
        /// Stream time of the detection, ms.
        at_ms: u64,
    },
    /// A wake word heard in the device's own voice was ignored.
    EchoIgnored {
        /// Wake model.
        model: String,
        /// Stream time, ms.
        at_ms: u64,
    },
    /// The microphone was muted or unmuted.
    Muted {
        /// Now muted.
        muted: bool,
        /// Stream time, ms.
        at_ms: u64,
    },
    /// An announcement (reminder, timer, alarm) started.
    Announcement {
        /// Its text.
        text: String,
        /// A timer that rings until stopped.
        ring: bool,
        /// Stream time, ms.
        at_ms: u64,
    },
    /// An announcement ended.
    AnnouncementDone {
        /// Stopped by the person (rather than finished or timed out).
        stopped: bool,
        /// Stream time, ms.
        at_ms: u64,
    },
    /// A turn finished.
    Turn(VoiceTurn),
}

/// A text to speak that did not come from a conversation turn.
#[derive(Debug)]
struct Announcement {
    key: i64,
    text: String,
    ring: bool,
    started: Option<oneshot::Sender<()>>,
}

/// The delivery handler of the `local` channel: reminders, timers and alarms addressed to the
/// device are spoken by the voice loop. A delivery succeeds once its announcement has started
/// playing; retries of the same outbox entry are not spoken twice.
#[derive(Clone)]
pub struct LocalDelivery {
    tx: mpsc::Sender<Announcement>,
    wait: Duration,
}

/// The receiving side of [`LocalDelivery`], handed to the loop.
pub struct Announcements {
    rx: mpsc::Receiver<Announcement>,
}

/// A delivery handler and the queue the voice loop reads; `wait` is how long a delivery waits
/// for its announcement to start before it is retried (keep it under the outbox's attempt timeout).
pub fn local_channel(wait: Duration) -> (LocalDelivery, Announcements) {
    let (tx, rx) = mpsc::channel(64);
    (LocalDelivery { tx, wait }, Announcements { rx })
}

impl DeliveryHandler for LocalDelivery {
    fn deliver<'a>(
        &'a self,
        d: &'a Delivery,
    ) -> futures_util::future::BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let Some(text) = d.payload.get("text").and_then(|t| t.as_str()) else {
                return Err(DeliveryError::permanent("local delivery without a text"));
            };
            let ring = d.payload.get("kind").and_then(|k| k.as_str()) == Some("timer");
            let (started, wait) = oneshot::channel();
            self.tx
                .send(Announcement {
                    key: d.id.0,
                    text: text.to_owned(),
                    ring,
                    started: Some(started),
                })
                .await
                .map_err(|_| DeliveryError::retry("the voice loop is not running"))?;
            match tokio::time::timeout(self.wait, wait).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(DeliveryError::retry(
                    "the voice loop stopped before speaking",
                )),
                Err(_) => Err(DeliveryError::retry(
                    "still waiting to be spoken (a conversation is going on)",
                )),
            }
        })
    }
}

/// A running voice loop (cheap to clone).
#[derive(Clone)]
pub struct VoiceLoop {
    stop: CancellationToken,
    finished: tokio::sync::watch::Receiver<bool>,
    turns: Arc<std::sync::Mutex<Vec<VoiceTurn>>>,
}

impl VoiceLoop {
    /// Start the loop on its own thread (on the current tokio runtime). `events` receives
    /// what happens as it happens. The loop ends when `stop` is cancelled, or when a file
    /// source ends and nothing is left to say.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        cfg: VoiceConfig,
        devices: Devices,
        engines: Engines,
        announcements: Announcements,
        orchestrator: Orchestrator,
        store: Store,
        metrics: Arc<Metrics>,
        health: Option<crate::platform::health::Health>,
        events: Option<std_mpsc::Sender<VoiceEvent>>,
        stop: CancellationToken,
    ) -> Result<Self, SpeechError> {
        let rt = tokio::runtime::Handle::current();
        let token = stop.clone();
        let (done_tx, finished) = tokio::sync::watch::channel(false);
        let turns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = turns.clone();
        std::thread::Builder::new()
            .name("la-voice".into())
            .spawn(move || {
                let mut l = Loop::new(
                    cfg,
                    devices,
                    engines,
                    announcements,
                    Shared {
                        orchestrator,
                        store,
                        metrics,
                        health,
                    },
                    events,
                    rt,
                    token,
                );
                l.run();
                if let Ok(mut t) = out.lock() {
                    *t = std::mem::take(&mut l.turns);
                }
                let _ = done_tx.send(true);
            })
            .map_err(|e| SpeechError::Runtime {
                library: "voice loop".into(),
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(Self {
            stop,
            finished,
            turns,
        })
    }

    /// Wait until the loop has ended (file input over and nothing left to say, or stopped).
    pub async fn finished(&self) {
        let mut f = self.finished.clone();
        let _ = f.wait_for(|done| *done).await;
    }

    /// The turns of a loop that has ended.
    pub fn turns(&self) -> Vec<VoiceTurn> {
        self.turns.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Stop the loop and wait for it.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.finished().await;
    }
}

#[derive(Clone)]
struct Shared {
    orchestrator: Orchestrator,
    store: Store,
    metrics: Arc<Metrics>,
    health: Option<crate::platform::health::Health>,
}

/// What a turn or announcement task reports when it ends.
enum Done {
    Turn {
        turn: Box<VoiceTurn>,
        follow_up: bool,
    },
    Announcement {
        stopped: bool,
        /// Not spoken: the outbox entry with this id may be delivered again.
        failed: Option<i64>,
    },
}

enum State {
    Idle,
    Listening {
        trigger: Trigger,
        wake_model: Option<String>,
        /// Stream time of `audio[0]` (and of the VAD's 0).
        since_ms: u64,
        speech_start: Option<u64>,
        audio: Vec<f32>,
        /// Audio from before the wake word fired at the start of `audio`, ms.
        preroll_ms: u64,
        /// Recognition started at the last pause.
        paused: Option<Paused>,
    },
    Busy,
    Announcing {
        ring: bool,
    },
    FollowUp {
        until_ms: u64,
        since_ms: u64,
        audio: Vec<f32>,
    },
}

/// Recognition started at a pause of the utterance being listened to (VAD times, ms from the
/// start of the listening buffer). Dropping it cancels the recognition.
struct Paused {
    start_ms: u64,
    end_ms: u64,
    rx: oneshot::Receiver<Result<Transcript, SpeechError>>,
    /// The result, once in.
    result: Option<Result<Transcript, SpeechError>>,
    /// It heard a finished everyday command.
    finished: bool,
    cancel: tokio_util::sync::DropGuard,
}

impl Paused {
    /// Take the result if it is in; note whether it is a finished command.
    fn poll(&mut self, orchestrator: &Orchestrator) {
        if self.result.is_some() {
            return;
        }
        if let Ok(r) = self.rx.try_recv() {
            if let Ok(t) = &r {
                self.finished = orchestrator.ends_utterance(&clean_transcript(&t.text));
            }
            self.result = Some(r);
        }
    }

    /// What the turn starts from when the utterance ended at this pause (a failed
    /// recognition is made again on the whole utterance).
    fn heard(self, utterance: Vec<f32>) -> Heard {
        match self.result {
            Some(Ok(t)) => Heard::Text(t),
            Some(Err(_)) => Heard::Audio(Audio::new(RATE, utterance)),
            None => Heard::Pending(self.rx, self.cancel.disarm()),
        }
    }
}

/// What a turn starts from.
enum Heard {
    /// The utterance, to recognise.
    Audio(Audio),
    /// Recognised already.
    Text(Transcript),
    /// Being recognised (cancel it with the token).
    Pending(
        oneshot::Receiver<Result<Transcript, SpeechError>>,
        CancellationToken,
    ),
}

/// `audio[start_ms..end_ms]`, clamped.
fn cut(audio: &[f32], start_ms: u64, end_ms: u64) -> Vec<f32> {
    let from = ms_to_samples(start_ms).min(audio.len());
    let to = ms_to_samples(end_ms).clamp(from, audio.len());
    audio[from..to].to_vec()
}

const STEP_MS: u64 = 20;

struct Loop {
    cfg: VoiceConfig,
    dev: Devices,
    vad: Vad,
    wake: WakeDetector,
    echo: WakeDetector,
    stt: SttWorker,
    tts: Arc<TtsWorker>,
    announcements: Announcements,
    shared: Shared,
    events: Option<std_mpsc::Sender<VoiceEvent>>,
    rt: tokio::runtime::Handle,
    stop: CancellationToken,
    state: State,
    t_ms: u64,
    muted: bool,
    /// The button was down at the last block.
    button_was_down: bool,
    /// The press now under way already stopped something: its gesture starts nothing.
    press_spent: bool,
    input_over: bool,
    queue: VecDeque<Announcement>,
    spoken: VecDeque<i64>,
    task: Option<(CancellationToken, std_mpsc::Receiver<Done>)>,
    echo_heard: HashMap<String, u64>,
    last_played_ms: Option<u64>,
    turns: Vec<VoiceTurn>,
    fed: u64,
    echo_fed: u64,
    samples: u64,
    speaker: Speaker,
    interrupted: Vec<std_mpsc::Receiver<Done>>,
    shown: Option<LedState>,
    triggered_at: UnixMillis,
    live: Option<(bool, bool)>,
    recent: VecDeque<f32>,
    /// The speaker's reference padded to a block (reused: this runs 50 times a second).
    padded: Vec<f32>,
}

impl Loop {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cfg: VoiceConfig,
        dev: Devices,
        e: Engines,
        announcements: Announcements,
        shared: Shared,
        events: Option<std_mpsc::Sender<VoiceEvent>>,
        rt: tokio::runtime::Handle,
        stop: CancellationToken,
    ) -> Self {
        let speaker = Speaker::new(dev.sink.clone());
        Self {
            cfg,
            dev,
            vad: e.vad,
            wake: e.wake,
            echo: e.echo,
            stt: e.stt,
            tts: e.tts,
            announcements,
            shared,
            events,
            rt,
            stop,
            state: State::Idle,
            t_ms: 0,
            muted: false,
            button_was_down: false,
            press_spent: false,
            input_over: false,
            queue: VecDeque::new(),
            spoken: VecDeque::new(),
            task: None,
            echo_heard: HashMap::new(),
            last_played_ms: None,
            turns: Vec::new(),
            fed: 0,
            echo_fed: 0,
            samples: 0,
            speaker,
            interrupted: Vec::new(),
            shown: None,
            triggered_at: UnixMillis(0),
            live: None,
            recent: VecDeque::new(),
            padded: Vec::new(),
        }
    }

    fn emit(&self, e: VoiceEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    fn leds(&mut self, s: LedState) {
        if self.muted && s != LedState::Muted && s != LedState::Error {
            // Muted shows until unmuted, whatever else happens.
            return;
        }
        self.show(s);
    }

    fn show(&mut self, s: LedState) {
        if self.shown != Some(s) {
            self.shown = Some(s);
            self.dev.leds.show(s);
        }
    }

    fn run(&mut self) {
        self.leds(LedState::Idle);
        let mut block = Vec::with_capacity(2 * super::file::BLOCK);
        let mut reference = Vec::with_capacity(2 * super::file::BLOCK);
        let mut tail_ms = 0u64;
        let tail_max = self.cfg.timer_ring.as_millis() as u64 + 60_000;
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            self.hold();
            self.poll_task();
            self.poll_announcements();
            if matches!(self.state, State::Idle) && self.task.is_none() {
                if let Some(a) = self.queue.pop_front() {
                    self.start_announcement(a);
                }
            }
            if self.input_over {
                let idle = matches!(self.state, State::Idle | State::FollowUp { .. })
                    && self.task.is_none()
                    && self.interrupted.is_empty()
                    && self.queue.is_empty()
                    && self.dev.sink.pending().is_zero();
                if idle || tail_ms > tail_max {
                    break;
                }
                tail_ms += STEP_MS;
            }
            block.clear();
            match self.dev.source.read(&mut block) {
                Ok(Read::Samples(_)) => {}
                Ok(Read::End) => {
                    self.input_over = true;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "voice: microphone read failed");
                    self.leds(LedState::Error);
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
            let before = self.t_ms;
            self.samples += block.len() as u64;
            self.t_ms = self.samples * 1000 / u64::from(RATE);
            if self.t_ms / 1000 != before / 1000 {
                self.check_devices();
            }
            reference.clear();
            self.dev.sink.echo_reference(block.len(), &mut reference);
            if let Err(e) = self.step(&block, &reference) {
                // What was being listened to is lost; a turn in flight goes on.
                tracing::warn!(error = %e, "voice: speech engine failed on a block");
                if !matches!(self.state, State::Busy | State::Announcing { .. }) {
                    self.go_idle();
                }
            }
        }
        if let Some((cancel, _)) = self.task.take() {
            self.speaker.interrupt(&cancel);
        }
        self.dev.sink.stop();
        self.leds(LedState::Idle);
    }

    /// Fast mode: while a task thinks and nothing is left to play, time does not pass.
    fn hold(&mut self) {
        if !self.dev.fast {
            return;
        }
        while let Some((_, rx)) = &self.task {
            if !self.dev.sink.pending().is_zero() || self.stop.is_cancelled() {
                return;
            }
            match rx.recv_timeout(Duration::from_millis(2)) {
                Ok(done) => {
                    self.task = None;
                    self.finished(done);
                    return;
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    self.task = None;
                    self.go_idle();
                    return;
                }
            }
        }
    }

    fn poll_task(&mut self) {
        let mut reports = Vec::new();
        self.interrupted.retain(|rx| match rx.try_recv() {
            Ok(done) => {
                reports.push(done);
                false
            }
            Err(std_mpsc::TryRecvError::Empty) => true,
            Err(std_mpsc::TryRecvError::Disconnected) => false,
        });
        for done in reports {
            if let Done::Turn { turn, .. } = done {
                self.emit(VoiceEvent::Turn((*turn).clone()));
                self.turns.push(*turn);
            }
        }
        let Some((_, rx)) = &self.task else { return };
        match rx.try_recv() {
            Ok(done) => {
                self.task = None;
                self.finished(done);
            }
            Err(std_mpsc::TryRecvError::Empty) => {}
            Err(std_mpsc::TryRecvError::Disconnected) => {
                self.task = None;
                self.go_idle();
            }
        }
    }

    fn poll_announcements(&mut self) {
        while let Ok(mut a) = self.announcements.rx.try_recv() {
            if self.spoken.contains(&a.key) {
                // A retry of one already spoken.
                if let Some(s) = a.started.take() {
                    let _ = s.send(());
                }
                continue;
            }
            if let Some(q) = self.queue.iter_mut().find(|q| q.key == a.key) {
                q.started = a.started.take();
                continue;
            }
            self.queue.push_back(a);
        }
    }

    fn finished(&mut self, done: Done) {
        match done {
            Done::Turn { turn, follow_up } => {
                // Muted: no follow-up window (nothing would be heard in it).
                let answered = turn.outcome == "answered" && !self.muted;
                self.emit(VoiceEvent::Turn((*turn).clone()));
                self.turns.push(*turn);
                if answered && follow_up {
                    self.vad.reset();
                    let window = if self.cfg.follow_up.is_zero() {
                        Duration::from_secs(5)
                    } else {
                        self.cfg.follow_up
                    };
                    self.state = State::FollowUp {
                        until_ms: self.t_ms + window.as_millis() as u64,
                        since_ms: self.t_ms,
                        audio: Vec::new(),
                    };
                    self.leds(LedState::Idle);
                } else {
                    self.go_idle();
                }
            }
            Done::Announcement { stopped, failed } => {
                if let Some(key) = failed {
                    self.spoken.retain(|k| *k != key);
                }
                self.emit(VoiceEvent::AnnouncementDone {
                    stopped,
                    at_ms: self.t_ms,
                });
                self.go_idle();
            }
        }
    }

    fn go_idle(&mut self) {
        self.state = State::Idle;
        self.leds(LedState::Idle);
    }

    /// One block of audio (20 ms).
    fn step(&mut self, block: &[f32], reference: &[f32]) -> Result<(), SpeechError> {
        let mut press = false;
        for p in self.dev.button.poll(self.t_ms) {
            match p.event {
                ButtonEvent::LongPress => {
                    self.press_spent = false;
                    self.toggle_mute();
                }
                ButtonEvent::Press | ButtonEvent::DoublePress => {
                    // The gesture of a press that already stopped something starts nothing.
                    press = !std::mem::take(&mut self.press_spent);
                }
            }
        }
        // A ringing timer or an answer stops the moment the button goes down, not once its
        // gesture is known (a short press is recognised only after the double-press window,
        // ~0.5 s later); the gesture that press then makes is spent.
        let down = self.dev.button.is_down();
        if down
            && !self.button_was_down
            && matches!(self.state, State::Announcing { .. } | State::Busy)
        {
            press = true;
            self.press_spent = true;
        }
        self.button_was_down = down;
        if self.muted {
            // Nothing is captured: the audio is dropped before any detector sees it.
            if press {
                self.interrupt();
                self.go_idle();
            }
            return Ok(());
        }
        self.recent.extend(block.iter().copied());
        let excess = self.recent.len().saturating_sub(ms_to_samples(PREROLL_MS));
        self.recent.drain(..excess);
        let wake = self.detect_wake(block, reference)?;
        let trigger = match (press, wake) {
            (true, _) => Some((Trigger::Button, None)),
            (false, Some(model)) => Some((Trigger::Wake, Some(model))),
            _ => None,
        };
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => {
                if let Some((t, m)) = trigger {
                    self.listen(t, m);
                }
            }
            State::FollowUp {
                until_ms,
                since_ms,
                mut audio,
            } => {
                if let Some((t, m)) = trigger {
                    self.listen(t, m);
                } else {
                    // The VAD's clock started with the window, like `audio`: a reply is cut
                    // from it with the VAD's own padding, words before the start included.
                    audio.extend_from_slice(block);
                    let heard = self.vad.push(block)?;
                    let started = heard.iter().find_map(|e| match e {
                        VadEvent::SpeechStart { at_ms } => Some(since_ms + at_ms),
                        VadEvent::SpeechEnd { .. } => None,
                    });
                    if let Some(start) = started {
                        self.triggered_at = UnixMillis::now();
                        self.emit(VoiceEvent::Listening {
                            trigger: Trigger::FollowUp,
                            at_ms: self.t_ms,
                        });
                        self.leds(LedState::Listening);
                        self.state = State::Listening {
                            trigger: Trigger::FollowUp,
                            wake_model: None,
                            since_ms,
                            speech_start: Some(start),
                            audio,
                            preroll_ms: 0,
                            paused: None,
                        };
                    } else if self.t_ms >= until_ms {
                        self.go_idle();
                    } else {
                        self.state = State::FollowUp {
                            until_ms,
                            since_ms,
                            audio,
                        };
                    }
                }
            }
            State::Listening {
                trigger: t,
                wake_model,
                since_ms,
                mut speech_start,
                mut audio,
                preroll_ms,
                mut paused,
            } => {
                if press {
                    // A press while listening: stop listening.
                    self.go_idle();
                    return Ok(());
                }
                if !matches!(t, Trigger::FollowUp) || speech_start.is_some() {
                    audio.extend_from_slice(block);
                }
                let mut end = None;
                let (events, pauses) = self.vad.push_with_pauses(block)?;
                for e in events {
                    match e {
                        VadEvent::SpeechStart { at_ms } => {
                            speech_start.get_or_insert(since_ms + at_ms);
                        }
                        VadEvent::SpeechEnd { at_ms, .. } if at_ms <= preroll_ms + WAKE_TAIL_MS => {
                            // The end of the wake phrase itself, then a pause: keep listening
                            // for the request.
                            speech_start = None;
                        }
                        VadEvent::SpeechEnd { start_ms, at_ms } => end = Some((start_ms, at_ms)),
                    }
                }
                // A pause in the request: recognise what was said so far while waiting to
                // know whether it is the end.
                for e in pauses {
                    if let (VadEvent::SpeechEnd { at_ms, .. }, Some(start), None) =
                        (e, speech_start, end)
                    {
                        if at_ms > preroll_ms + WAKE_TAIL_MS {
                            paused =
                                Some(self.recognise(&audio, start.saturating_sub(since_ms), at_ms));
                        }
                    }
                }
                // What was said up to the pause is a finished command, and the person has
                // been silent since for `command_silence_ms`: that pause ends the request.
                if let (Some(p), None) = (paused.as_mut(), end) {
                    p.poll(&self.shared.orchestrator);
                    let min = self.vad.config().command_silence_ms;
                    if p.finished && min > 0 {
                        if let Some(VadEvent::SpeechEnd { start_ms, at_ms }) =
                            self.vad.end_at_pause(p.end_ms, min)
                        {
                            end = Some((start_ms, at_ms));
                        }
                    }
                }
                let elapsed = self.t_ms - since_ms;
                let speaking_for = self.t_ms - speech_start.unwrap_or(since_ms);
                if end.is_none()
                    && speech_start.is_some()
                    && speaking_for >= self.cfg.max_utterance.as_millis() as u64
                {
                    end = Some((speech_start.unwrap_or(since_ms) - since_ms, elapsed));
                }
                if let Some((start_ms, end_ms)) = end {
                    let utterance = cut(&audio, start_ms, end_ms);
                    // Recognition from the pause where it ended, if it ended there.
                    let heard = match paused {
                        Some(p) if p.start_ms == start_ms && p.end_ms == end_ms => {
                            p.heard(utterance)
                        }
                        _ => Heard::Audio(Audio::new(RATE, utterance)),
                    };
                    self.start_turn(t, wake_model, since_ms, heard);
                } else if speech_start.is_none()
                    && elapsed >= self.cfg.listen_timeout.as_millis() as u64
                {
                    let turn = VoiceTurn {
                        trigger: t,
                        wake_model,
                        at_ms: since_ms,
                        speech_end_ms: None,
                        triggered_at: self.triggered_at,
                        speech_end_at: None,
                        transcript: String::new(),
                        reply: String::new(),
                        outcome: "no_speech".into(),
                        intent: None,
                        timings: VoiceTimings::default(),
                    };
                    self.record(turn.clone());
                    self.emit(VoiceEvent::Turn(turn.clone()));
                    self.turns.push(turn);
                    self.go_idle();
                } else {
                    self.state = State::Listening {
                        trigger: t,
                        wake_model,
                        since_ms,
                        speech_start,
                        audio,
                        preroll_ms,
                        paused,
                    };
                }
            }
            State::Busy => {
                if trigger.is_none() && !self.dev.sink.pending().is_zero() {
                    self.leds(LedState::Speaking);
                }
                if let Some((t, m)) = trigger {
                    self.emit(VoiceEvent::BargeIn { at_ms: self.t_ms });
                    self.interrupt();
                    self.listen(t, m);
                } else {
                    self.state = State::Busy;
                }
            }
            State::Announcing { ring } => {
                if let Some((t, m)) = trigger {
                    self.interrupt();
                    self.emit(VoiceEvent::AnnouncementDone {
                        stopped: true,
                        at_ms: self.t_ms,
                    });
                    if t == Trigger::Wake {
                        // "Hey Jarvis, stop": listen, the words after it are a turn.
                        self.listen(t, m);
                    } else {
                        self.go_idle();
                    }
                } else {
                    self.state = State::Announcing { ring };
                }
            }
        }
        Ok(())
    }

    /// Wake words heard by the microphone, minus those the speaker's own audio explains.
    fn detect_wake(
        &mut self,
        block: &[f32],
        reference: &[f32],
    ) -> Result<Option<String>, SpeechError> {
        let playing = reference.iter().any(|s| s.abs() > 1e-4);
        let window = self.cfg.echo_window.as_millis() as u64;
        let was_active = self
            .last_played_ms
            .is_some_and(|t| self.t_ms.saturating_sub(t) <= window + STEP_MS);
        if playing {
            self.last_played_ms = Some(self.t_ms);
        }
        // A zero window turns the guard off.
        let echo_active = window > 0
            && self
                .last_played_ms
                .is_some_and(|t| self.t_ms.saturating_sub(t) <= window);
        if echo_active {
            let step = crate::speech::wake::STEP as u64;
            let gap = (self.fed % step + step - self.echo_fed % step) % step;
            if !was_active && gap > 0 {
                // Bring the reference detector back in step with the microphone's, so that
                // both score the same 80 ms of audio at the same block.
                self.echo.push(&vec![0.0; gap as usize])?;
                self.echo_fed += gap;
            }
            let mut r = std::mem::take(&mut self.padded);
            r.clear();
            r.extend_from_slice(reference);
            r.resize(block.len(), 0.0);
            self.echo_fed += r.len() as u64;
            let heard = self.echo.push(&r);
            self.padded = r;
            for d in heard? {
                self.echo_heard.insert(d.model, self.t_ms);
            }
        }
        self.fed += block.len() as u64;
        let mut heard = None;
        for d in self.wake.push(block)? {
            let echoed = window > 0
                && self
                    .echo_heard
                    .get(&d.model)
                    .is_some_and(|&t| self.t_ms.saturating_sub(t) <= window);
            if echoed {
                self.emit(VoiceEvent::EchoIgnored {
                    model: d.model,
                    at_ms: self.t_ms,
                });
                continue;
            }
            heard.get_or_insert(d.model);
        }
        Ok(heard)
    }

    /// Report a lost (or recovered) microphone or speaker as the `voice` component's state.
    fn check_devices(&mut self) {
        let live = (self.dev.source.is_live(), self.dev.sink.is_live());
        if self.live == Some(live) {
            return;
        }
        self.live = Some(live);
        let Some(h) = &self.shared.health else { return };
        use crate::platform::health::ComponentState;
        match live {
            (true, true) => h.set("voice", ComponentState::Ready, "listening"),
            (mic, speaker) => {
                let lost: Vec<String> = [
                    (!mic).then(|| format!("microphone {}", self.dev.source.name())),
                    (!speaker).then(|| format!("speaker {}", self.dev.sink.name())),
                ]
                .into_iter()
                .flatten()
                .collect();
                h.set(
                    "voice",
                    ComponentState::Degraded,
                    format!("{} not there; retrying", lost.join(" and ")),
                );
            }
        }
    }

    fn toggle_mute(&mut self) {
        self.muted = !self.muted;
        self.emit(VoiceEvent::Muted {
            muted: self.muted,
            at_ms: self.t_ms,
        });
        if self.muted {
            if let State::Listening { .. } | State::FollowUp { .. } = self.state {
                self.state = State::Idle;
            }
            self.show(LedState::Muted);
        } else {
            self.vad.reset();
            let _ = self.wake.reset();
            self.fed = 0;
            self.show(LedState::Idle);
        }
    }

    /// Stop whatever is playing or being worked on.
    fn interrupt(&mut self) {
        if let Some((cancel, rx)) = self.task.take() {
            self.speaker.interrupt(&cancel);
            // Its report (an interrupted turn) still comes in.
            self.interrupted.push(rx);
        } else {
            self.dev.sink.stop();
        }
    }

    fn listen(&mut self, trigger: Trigger, wake_model: Option<String>) {
        self.vad.reset();
        self.triggered_at = UnixMillis::now();
        // The wake word fires a little after it was said, and people go straight on ("Hey
        // Jarvis, add milk"): the recent audio is part of the request. The VAD hears it too,
        // so its clock starts with the buffer.
        let audio: Vec<f32> = if trigger == Trigger::Wake {
            self.recent.iter().copied().collect()
        } else {
            Vec::new()
        };
        let preroll_ms = audio.len() as u64 * 1000 / u64::from(RATE);
        let mut speech_start = None;
        if !audio.is_empty() {
            match self.vad.push(&audio) {
                Ok(events) => {
                    for e in events {
                        match e {
                            VadEvent::SpeechStart { at_ms } => speech_start = Some(at_ms),
                            VadEvent::SpeechEnd { .. } => speech_start = None,
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "voice: VAD failed on the pre-roll"),
            }
        }
        let since_ms = self.t_ms.saturating_sub(preroll_ms);
        if self.cfg.chime {
            let _ = self.dev.sink.play(&chime(&[880.0, 1320.0]));
        }
        self.emit(VoiceEvent::Listening {
            trigger,
            at_ms: self.t_ms,
        });
        self.leds(LedState::Listening);
        self.state = State::Listening {
            trigger,
            wake_model,
            since_ms,
            speech_start: speech_start.map(|s| since_ms + s),
            audio,
            preroll_ms,
            paused: None,
        };
    }

    fn record(&self, turn: VoiceTurn) {
        let shared = self.shared.clone();
        self.rt
            .spawn(async move { store_turn(&shared, &turn, None).await });
    }

    /// Start recognising `audio[start_ms..end_ms]` (a pause in the request) on the STT worker.
    fn recognise(&self, audio: &[f32], start_ms: u64, end_ms: u64) -> Paused {
        let clip = Audio::new(RATE, cut(audio, start_ms, end_ms));
        let cancel = CancellationToken::new();
        let (tx, rx) = oneshot::channel();
        let stt = self.stt.clone();
        let token = cancel.clone();
        self.rt.spawn(async move {
            let _ = tx.send(stt.transcribe(clip, SttRequest::default(), token).await);
        });
        Paused {
            start_ms,
            end_ms,
            rx,
            result: None,
            finished: false,
            cancel: cancel.drop_guard(),
        }
    }

    fn start_turn(
        &mut self,
        trigger: Trigger,
        wake_model: Option<String>,
        at_ms: u64,
        heard: Heard,
    ) {
        let speech_end = Instant::now();
        self.state = State::Busy;
        self.leds(LedState::Thinking);
        let cancel = CancellationToken::new();
        let (tx, rx) = std_mpsc::channel();
        self.task = Some((cancel.clone(), rx));
        let job = TurnJob {
            shared: self.shared.clone(),
            stt: self.stt.clone(),
            tts: self.tts.clone(),
            speaker: self.speaker.clone(),
            address: self.cfg.address.clone(),
            follow_up: !self.cfg.follow_up.is_zero(),
            turn: VoiceTurn {
                trigger,
                wake_model,
                at_ms,
                speech_end_ms: Some(self.t_ms),
                triggered_at: self.triggered_at,
                speech_end_at: Some(UnixMillis::now()),
                transcript: String::new(),
                reply: String::new(),
                outcome: "failed".into(),
                intent: None,
                timings: VoiceTimings::default(),
            },
            speech_end,
        };
        self.rt.spawn(async move {
            let done = job.run(heard, cancel).await;
            let _ = tx.send(done);
        });
    }

    fn start_announcement(&mut self, mut a: Announcement) {
        if self.spoken.len() == SPOKEN_KEPT {
            self.spoken.pop_front();
        }
        self.spoken.push_back(a.key);
        self.state = State::Announcing { ring: a.ring };
        self.leds(LedState::Announcing);
        self.emit(VoiceEvent::Announcement {
            text: a.text.clone(),
            ring: a.ring,
            at_ms: self.t_ms,
        });
        let cancel = CancellationToken::new();
        let (tx, rx) = std_mpsc::channel();
        self.task = Some((cancel.clone(), rx));
        let tts = self.tts.clone();
        let speaker = self.speaker.clone();
        let chime_on = self.cfg.chime;
        let ring_for = self.cfg.timer_ring;
        let started = a.started.take();
        let key = a.key;
        self.rt.spawn(async move {
            let said = tokio::time::timeout(
                TASK_LIMIT,
                announce(
                    &tts, &speaker, &a.text, a.ring, chime_on, ring_for, started, &cancel,
                ),
            )
            .await;
            let done = match said {
                Ok(Ok(stopped)) => Done::Announcement {
                    stopped,
                    failed: None,
                },
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "voice: cannot speak an announcement");
                    Done::Announcement {
                        stopped: false,
                        failed: Some(key),
                    }
                }
                Err(_) => Done::Announcement {
                    stopped: false,
                    failed: None,
                },
            };
            let _ = tx.send(done);
        });
    }
}

/// The speaker as the capture thread and the tasks share it: a play and an interruption never
/// interleave, so nothing a cancelled task still had in hand plays after a barge-in.
#[derive(Clone)]
struct Speaker {
    sink: Arc<dyn AudioSink>,
    gate: Arc<std::sync::Mutex<()>>,
}

impl Speaker {
    fn new(sink: Arc<dyn AudioSink>) -> Self {
        Self {
            sink,
            gate: Arc::new(std::sync::Mutex::new(())),
        }
    }

    /// Queue `samples` unless `cancel` is set; false when not played.
    fn play(&self, cancel: &CancellationToken, samples: &[f32]) -> bool {
        let _g = self
            .gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cancel.is_cancelled() {
            return false;
        }
        match self.sink.play(samples) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "voice: speaker failed");
                false
            }
        }
    }

    /// Cancel `cancel` and silence the speaker, as one step.
    fn interrupt(&self, cancel: &CancellationToken) {
        let _g = self
            .gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cancel.cancel();
        self.sink.stop();
    }

    fn pending(&self) -> Duration {
        self.sink.pending()
    }
}

/// Audio before the wake word's detection that belongs to the request.
const PREROLL_MS: u64 = 600;
/// A speech segment ending this soon after the pre-roll is the wake phrase's own tail.
const WAKE_TAIL_MS: u64 = 300;

/// Announcements remembered, so that a retried delivery is not spoken twice.
const SPOKEN_KEPT: usize = 256;

/// The longest a turn (recognition, answer, playback) or an announcement may take.
const TASK_LIMIT: Duration = Duration::from_secs(300);

/// The echo detector's thresholds, relative to the microphone's.
const ECHO_THRESHOLD: f32 = 0.5;

fn ms_to_samples(ms: u64) -> usize {
    usize::try_from(ms * u64::from(RATE) / 1000).unwrap_or(usize::MAX)
}

/// A short chime of the given tones (16 kHz), 90 ms each with soft edges.
pub fn chime(tones: &[f32]) -> Vec<f32> {
    let n = ms_to_samples(90);
    let fade = ms_to_samples(10);
    let mut out = Vec::with_capacity(n * tones.len());
    for &f in tones {
        for i in 0..n {
            let edge = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
            let phase = 2.0 * std::f32::consts::PI * f * i as f32 / RATE as f32;
            out.push(0.25 * edge * phase.sin());
        }
    }
    out
}

/// Wait until the speaker has played everything (or `cancel`).
async fn drained(speaker: &Speaker, cancel: &CancellationToken) {
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let left = speaker.pending();
        if left.is_zero() {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(left.min(Duration::from_millis(20)).max(Duration::from_millis(2))) => {}
        }
    }
}

/// Speak an announcement (ringing: again and again, with a pause, until `ring_for` of audio
/// has played). `started` is answered once the first sentence is queued.
#[allow(clippy::too_many_arguments)]
async fn announce(
    tts: &Arc<TtsWorker>,
    speaker: &Speaker,
    text: &str,
    ring: bool,
    chime_on: bool,
    ring_for: Duration,
    mut started: Option<oneshot::Sender<()>>,
    cancel: &CancellationToken,
) -> Result<bool, SpeechError> {
    let mut played = Duration::ZERO;
    loop {
        if chime_on || ring {
            let c = chime(&[1320.0, 990.0, 1320.0]);
            played += Duration::from_millis(c.len() as u64 * 1000 / u64::from(RATE));
            speaker.play(cancel, &c);
        }
        let mut first = None;
        match speak(tts, speaker, text, cancel, Some(&mut first)).await {
            Ok(d) => played += d,
            Err(_) if cancel.is_cancelled() => return Ok(true),
            Err(e) => return Err(e),
        }
        if first.is_some() {
            if let Some(s) = started.take() {
                let _ = s.send(());
            }
        }
        drained(speaker, cancel).await;
        if cancel.is_cancelled() {
            return Ok(true);
        }
        if !ring || played >= ring_for {
            return Ok(false);
        }
        // A pause between rings, played as silence so that it passes on the audio's clock.
        let pause = vec![0.0; ms_to_samples(1500)];
        played += Duration::from_millis(1500);
        speaker.play(cancel, &pause);
        drained(speaker, cancel).await;
        if cancel.is_cancelled() {
            return Ok(true);
        }
    }
}

/// Speak `text` sentence by sentence; returns the duration queued. `first` is set when the
/// first sentence's audio is handed to the speaker.
async fn speak(
    tts: &Arc<TtsWorker>,
    speaker: &Speaker,
    text: &str,
    cancel: &CancellationToken,
    first: Option<&mut Option<Instant>>,
) -> Result<Duration, SpeechError> {
    let (tx, audio) = tts.speak(
        StreamOptions {
            rate: Some(RATE),
            ..StreamOptions::default()
        },
        cancel.child_token(),
    )?;
    tx.send(text).await?;
    tx.finish();
    let mut total = Duration::ZERO;
    let mut first = first;
    while let Some(item) = audio.recv().await {
        let s = item?;
        if !speaker.play(cancel, &s.audio.samples) {
            break;
        }
        if let Some(f) = first.take() {
            f.get_or_insert_with(Instant::now);
        }
        total += Duration::from_millis(s.audio.duration_ms());
    }
    if cancel.is_cancelled() {
        return Err(SpeechError::Cancelled);
    }
    Ok(total)
}

struct TurnJob {
    shared: Shared,
    stt: SttWorker,
    tts: Arc<TtsWorker>,
    speaker: Speaker,
    address: String,
    follow_up: bool,
    turn: VoiceTurn,
    speech_end: Instant,
}

impl TurnJob {
    async fn run(mut self, heard: Heard, cancel: CancellationToken) -> Done {
        let mut ids = (None, None);
        let answered = tokio::time::timeout(TASK_LIMIT, self.converse(heard, &cancel, &mut ids))
            .await
            .unwrap_or_else(|_| {
                Err(SpeechError::Runtime {
                    library: "voice turn".into(),
                    reason: format!("took longer than {} s", TASK_LIMIT.as_secs()),
                })
            });
        let follow_up = match answered {
            Ok(f) => f,
            Err(e) => {
                if cancel.is_cancelled() {
                    self.turn.outcome = "interrupted".into();
                } else {
                    tracing::warn!(error = %e, "voice: turn failed");
                    self.turn.outcome = "failed".into();
                    // Say so rather than go quiet.
                    let _ = speak(
                        &self.tts,
                        &self.speaker,
                        "Sorry, something went wrong.",
                        &cancel,
                        None,
                    )
                    .await;
                    drained(&self.speaker, &cancel).await;
                }
                false
            }
        };
        store_turn(&self.shared, &self.turn, Some(ids)).await;
        Done::Turn {
            turn: Box::new(self.turn),
            follow_up,
        }
    }

    fn since_end(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.speech_end).as_secs_f64() * 1000.0
    }

    async fn converse(
        &mut self,
        heard: Heard,
        cancel: &CancellationToken,
        ids: &mut (Option<ConversationId>, Option<MessageId>),
    ) -> Result<bool, SpeechError> {
        let heard = match heard {
            Heard::Audio(utterance) => {
                self.stt
                    .transcribe(utterance, SttRequest::default(), cancel.clone())
                    .await?
            }
            Heard::Text(t) => t,
            Heard::Pending(rx, stt_cancel) => {
                let _guard = stt_cancel.drop_guard();
                tokio::select! {
                    () = cancel.cancelled() => return Err(SpeechError::Cancelled),
                    r = rx => r.map_err(|_| SpeechError::Cancelled)??,
                }
            }
        };
        self.turn.timings.stt_ms = Some(self.since_end(Instant::now()));
        let text = clean_transcript(&heard.text);
        self.turn.transcript.clone_from(&text);
        if text.is_empty() {
            self.turn.outcome = "no_speech".into();
            return Ok(false);
        }
        // The voice first, so that a reply is never committed with nothing to speak it. A long
        // first sentence is spoken from its first clause on (sooner audio, mostly for the LLM).
        let (text_tx, audio) = self.tts.speak(
            StreamOptions {
                rate: Some(RATE),
                first_clause: true,
            },
            cancel.child_token(),
        )?;
        let handle = self
            .shared
            .orchestrator
            .converse(
                LOCAL_CHANNEL,
                self.address.clone(),
                text,
                SessionKind::Voice,
                Priority::LocalVoice,
            )
            .await
            .map_err(|e| SpeechError::Runtime {
                library: "orchestrator".into(),
                reason: e.to_string(),
            })?;
        // Play sentences as they are synthesized, while later text still arrives.
        let speaker = self.speaker.clone();
        let play_cancel = cancel.clone();
        let player = tokio::spawn(async move {
            let mut first = None;
            while let Some(item) = audio.recv().await {
                match item {
                    Ok(s) => {
                        if !speaker.play(&play_cancel, &s.audio.samples) {
                            break;
                        }
                        first.get_or_insert_with(Instant::now);
                    }
                    Err(e) => tracing::warn!(error = %e, "voice: a sentence could not be spoken"),
                }
            }
            first
        });
        let end = self.speech_end;
        let first_text = &mut self.turn.timings.first_text_ms;
        let summary = crate::channels::speak_turn(handle, text_tx, cancel, || {
            *first_text =
                Some(Instant::now().saturating_duration_since(end).as_secs_f64() * 1000.0);
        })
        .await;
        let first = player.await.unwrap_or(None);
        self.turn.timings.first_audio_ms = first.map(|f| self.since_end(f));
        let Some(summary) = summary else {
            return Err(SpeechError::Cancelled);
        };
        *ids = (Some(summary.conversation_id), summary.reply_message_id);
        self.turn.reply.clone_from(&summary.reply);
        self.turn.intent.clone_from(&summary.intent);
        drained(&self.speaker, cancel).await;
        if cancel.is_cancelled() {
            return Err(SpeechError::Cancelled);
        }
        self.turn.outcome = "answered".into();
        let question = matches!(
            summary.state,
            SessionState::AwaitingSlot | SessionState::AwaitingConfirmation
        );
        Ok(question || self.follow_up)
    }
}

/// The transcript without non-speech markers (`[BLANK_AUDIO]`, `(music)`) and without the wake
/// phrase when it was said in one breath with the request.
pub fn clean_transcript(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '[' | '(' | '*' => depth += 1,
            ']' | ')' => depth = (depth - 1).max(0),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
        if c == '*' && depth > 1 {
            depth -= 2;
        }
    }
    let trimmed = out.trim();
    // The wake phrase comes first when the pre-roll caught it, and Whisper may mishear its
    // first word ("Be Jarvis"): drop everything up to its last word when that is among the
    // first three words. ASCII lowercasing keeps byte offsets.
    let lower = trimmed.to_ascii_lowercase();
    for key in ["jarvis", "mycroft", "alexa"] {
        let Some(at) = lower.find(key) else { continue };
        let end = at + key.len();
        let words_before = lower[..at].split_whitespace().count();
        let whole = lower[end..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric());
        if words_before <= 2 && whole && trimmed.is_char_boundary(end) {
            return trimmed[end..]
                .trim_start_matches(|c: char| c == ',' || c == '.' || c == '!' || c.is_whitespace())
                .to_owned();
        }
    }
    trimmed.to_owned()
}

/// Store a finished turn and observe its metrics.
async fn store_turn(
    shared: &Shared,
    turn: &VoiceTurn,
    ids: Option<(Option<ConversationId>, Option<MessageId>)>,
) {
    let m = &shared.metrics;
    m.voice_turns
        .get_or_create(&VoiceTurnLabels {
            trigger: turn.trigger.as_str().into(),
            outcome: turn.outcome.clone(),
        })
        .inc();
    let t = turn.timings;
    for (stage, v) in [
        ("stt", t.stt_ms),
        ("first_text", t.first_text_ms),
        ("first_audio", t.first_audio_ms),
        ("response", t.first_audio_ms),
    ] {
        if let Some(ms) = v {
            m.voice_stage
                .get_or_create(&VoiceStageLabels {
                    stage: stage.into(),
                })
                .observe(ms / 1000.0);
        }
    }
    let (cid, mid) = ids.unwrap_or((None, None));
    let turn = turn.clone();
    let r = shared
        .store
        .write(move |c| {
            c.prepare_cached(
                "INSERT INTO voice_turns (conversation_id, message_id, trigger, wake_model,
                 transcript, reply, outcome, triggered_at, speech_end_at, stt_ms, first_text_ms,
                 first_audio_ms, response_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            )?
            .execute(rusqlite::params![
                cid.map(|c| c.0),
                mid.map(|m| m.0),
                turn.trigger.as_str(),
                turn.wake_model,
                turn.transcript,
                turn.reply,
                turn.outcome,
                turn.triggered_at.0,
                turn.speech_end_at.map(|t| t.0),
                turn.timings.stt_ms,
                turn.timings.first_text_ms,
                turn.timings.first_audio_ms,
            ])?;
            Ok(())
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "voice: cannot record a turn");
    }
    // The turn's buffers (the utterance, Whisper's and Piper's work) are free now.
    let _ = tokio::task::spawn_blocking(crate::platform::heap::release).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_lose_markers_and_a_leading_wake_phrase() {
        assert_eq!(clean_transcript(" [BLANK_AUDIO] "), "");
        assert_eq!(clean_transcript("(music) Hello."), "Hello.");
        assert_eq!(
            clean_transcript("Hey Jarvis, set a timer for five minutes."),
            "set a timer for five minutes."
        );
        assert_eq!(clean_transcript("What time is it?"), "What time is it?");
        assert_eq!(clean_transcript("İİİİ hey"), "İİİİ hey");
        assert_eq!(clean_transcript("Alexa"), "");
        assert_eq!(clean_transcript("Be Jarvis. Stop."), "Stop.");
        assert_eq!(
            clean_transcript("Remind me to say hey Jarvis to Grandma."),
            "Remind me to say hey Jarvis to Grandma."
        );
        assert_eq!(clean_transcript("Jarvisland is far."), "Jarvisland is far.");
        assert_eq!(
            clean_transcript("Jarvis. Add milk to my shopping list."),
            "Add milk to my shopping list."
        );
    }

    #[test]
    fn the_chime_is_short_and_quiet() {
        let c = chime(&[880.0, 1320.0]);
        assert_eq!(c.len(), 2 * ms_to_samples(90));
        assert!(c.iter().all(|s| s.abs() <= 0.25));
        assert!(c[0].abs() < 1e-3, "soft start");
    }
}
