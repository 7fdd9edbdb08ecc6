//! A real-time phone conversation, whatever carries its audio (Twilio Media Streams, Vonage
//! WebSockets, later SIP and the GSM modem): the caller's audio at 16 kHz goes through the
//! VAD; each utterance is transcribed, answered by the orchestrator (channel and caller as the
//! transport says) and spoken back sentence by sentence, paced in real time in 20 ms frames.
//!
//! Barge-in: speech from the caller while an answer is being generated or played cancels the
//! turn and asks the transport to drop what it has buffered ([`CallOutput::Clear`]). DTMF
//! digits are answers too: `1` is "yes", `2` is "no", anything else is passed as said.
//!
//! Invariant: no inference on the async runtime (the VAD runs on the call's own worker
//! thread, STT and TTS on the shared workers); outbound audio is never sent faster than real
//! time plus [`LEAD`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::nlu::llm::Priority;
use crate::orchestrator::session::SessionKind;
use crate::orchestrator::Orchestrator;
use crate::speech::tts::stream::{StreamOptions, TtsWorker};
use crate::speech::vad::{Silero, Vad, VadEvent};
use crate::speech::worker::{SttWorker, Worker};
use crate::speech::{Audio, SpeechError, SttRequest};

/// The rate of the audio a transport hands in.
pub const IN_RATE: u32 = 16_000;
/// One outbound frame.
pub const FRAME_MS: u64 = 20;
/// How far ahead of real time outbound audio may be sent (the provider's jitter buffer).
pub const LEAD: Duration = Duration::from_millis(60);
/// Longest turn (recognition, answer, playback).
const TURN_LIMIT: Duration = Duration::from_secs(300);

/// The speech engines calls use. Cheap to clone: every call shares the STT and TTS workers and
/// gets its own VAD.
#[derive(Clone)]
pub struct CallEngines {
    inner: Arc<EnginesInner>,
}

struct EnginesInner {
    env: &'static ort::environment::Environment,
    vad_model: PathBuf,
    vad_cfg: crate::config::speech::VadConfig,
    threads: usize,
    stt: SttWorker,
    tts: Arc<TtsWorker>,
}

impl CallEngines {
    /// Load the VAD model path, STT and TTS as configured. Blocking (model loading).
    pub fn load(cfg: &Config) -> Result<Self, SpeechError> {
        let stt = crate::speech::cli_transcribe::open_configured(cfg)?;
        let stt = Worker::spawn("call-stt", stt, 8)?;
        let tts = crate::speech::tts::open(&crate::speech::tts::TtsOptions::from_config(
            &cfg.speech,
            &cfg.models_dir(),
        ))?;
        Self::with(cfg, stt, Arc::new(TtsWorker::spawn(tts)?))
    }

    /// Calls that share the given STT and TTS workers (the local voice loop's).
    pub fn with(cfg: &Config, stt: SttWorker, tts: Arc<TtsWorker>) -> Result<Self, SpeechError> {
        let env = crate::speech::onnx::init(cfg.speech.onnxruntime.as_deref(), &cfg.models_dir())?;
        let vad_model = crate::speech::listen::model_file(cfg, crate::speech::vad::MODEL, None)?;
        Ok(Self {
            inner: Arc::new(EnginesInner {
                env,
                vad_model,
                vad_cfg: cfg.speech.vad,
                threads: 1,
                stt,
                tts,
            }),
        })
    }

    /// A VAD for one call, also reporting pauses ([`Vad::report_pauses`]).
    fn vad(&self) -> Result<Worker<Vad>, SpeechError> {
        let silero = Silero::load(self.inner.env, &self.inner.vad_model, self.inner.threads)?;
        let mut vad = Vad::new(silero, self.inner.vad_cfg);
        vad.report_pauses();
        Worker::spawn("call-vad", vad, 64)
    }
}

/// What the transport hands the call.
#[derive(Debug)]
pub enum CallInput {
    /// Caller audio, 16 kHz mono.
    Audio(Vec<f32>),
    /// A key pressed.
    Dtmf(char),
    /// The transport played everything up to this mark.
    Mark(String),
}

/// What the call asks the transport to do.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutput {
    /// Play one frame (20 ms at the call's output rate).
    Audio(Vec<f32>),
    /// Tell us when everything before this has played.
    Mark(String),
    /// Drop everything buffered (barge-in).
    Clear,
}

/// What a call is.
#[derive(Debug, Clone)]
pub struct CallParams {
    /// The conversation's channel (`twilio-call`, `vonage-call`).
    pub channel: String,
    /// The caller's address (E.164).
    pub caller: String,
    /// Output sample rate (8 kHz for μ-law, 16 kHz for L16).
    pub out_rate: u32,
}

/// One finished turn of a call, for logs, tests and the benchmark.
#[derive(Debug, Clone, Default)]
pub struct CallTurn {
    /// What the caller said (or the key mapped to words).
    pub heard: String,
    /// The reply.
    pub reply: String,
    /// `answered`, `interrupted`, `no_speech`, `failed`.
    pub outcome: String,
    /// End of speech → first outbound frame, ms.
    pub response_ms: Option<f64>,
}

/// A running call.
pub struct Call {
    /// Audio, keys and marks from the transport.
    pub input: mpsc::Sender<CallInput>,
    /// Frames, marks and clears for the transport.
    pub output: mpsc::Receiver<CallOutput>,
    /// Finished turns.
    pub turns: mpsc::UnboundedReceiver<CallTurn>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Call {
    /// Start a call.
    pub fn start(
        engines: &CallEngines,
        orchestrator: Orchestrator,
        params: CallParams,
    ) -> Result<Self, SpeechError> {
        let vad = engines.vad()?;
        let (in_tx, in_rx) = mpsc::channel(256);
        let (out_tx, out_rx) = mpsc::channel(16);
        let (turn_tx, turn_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let pacer = Pacer::start(out_tx, params.out_rate, cancel.clone());
        let session = Session {
            engines: engines.clone(),
            orchestrator,
            params,
            vad,
            pacer,
            turns: turn_tx,
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(session.run(in_rx));
        Ok(Self {
            input: in_tx,
            output: out_rx,
            turns: turn_rx,
            cancel,
            task,
        })
    }

    /// Hang up: stop listening, generating and playing.
    pub async fn end(self) {
        self.cancel.cancel();
        drop(self.input);
        let _ = self.task.await;
    }
}

/// Paces outbound audio in real time, frame by frame; `clear` drops what is queued.
#[derive(Clone)]
struct Pacer {
    tx: mpsc::UnboundedSender<PacerCmd>,
    /// When the last queued frame will have played.
    busy_until: Arc<std::sync::Mutex<Option<Instant>>>,
    /// The first frame sent after each `first_frame_watch`.
    first_frame: Arc<std::sync::Mutex<Option<Instant>>>,
}

enum PacerCmd {
    Audio(Vec<f32>),
    Mark(String),
    Clear,
}

struct PacerState {
    queue: std::collections::VecDeque<CallOutput>,
    partial: Vec<f32>,
    frame: usize,
    /// When the next frame is due to start playing at the far end.
    clock: Option<Instant>,
}

impl PacerState {
    /// Apply a command; a clear is returned to be sent at once.
    fn apply(&mut self, cmd: PacerCmd) -> Option<CallOutput> {
        match cmd {
            PacerCmd::Audio(s) => {
                self.partial.extend_from_slice(&s);
                while self.partial.len() >= self.frame {
                    let rest = self.partial.split_off(self.frame);
                    let full = std::mem::replace(&mut self.partial, rest);
                    self.queue.push_back(CallOutput::Audio(full));
                }
                None
            }
            PacerCmd::Mark(m) => {
                if !self.partial.is_empty() {
                    self.partial.resize(self.frame, 0.0);
                    let last = std::mem::take(&mut self.partial);
                    self.queue.push_back(CallOutput::Audio(last));
                }
                self.queue.push_back(CallOutput::Mark(m));
                None
            }
            PacerCmd::Clear => {
                self.queue.clear();
                self.partial.clear();
                self.clock = None;
                Some(CallOutput::Clear)
            }
        }
    }
}

impl Pacer {
    fn start(out: mpsc::Sender<CallOutput>, rate: u32, cancel: CancellationToken) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<PacerCmd>();
        let busy_until = Arc::new(std::sync::Mutex::new(None));
        let first_frame = Arc::new(std::sync::Mutex::new(None));
        let me = Self {
            tx,
            busy_until: busy_until.clone(),
            first_frame: first_frame.clone(),
        };
        let frame = usize::try_from(u64::from(rate) * FRAME_MS / 1000)
            .unwrap_or(160)
            .max(1);
        tokio::spawn(async move {
            let mut st = PacerState {
                queue: std::collections::VecDeque::new(),
                partial: Vec::new(),
                frame,
                clock: None,
            };
            loop {
                let now = Instant::now();
                // Sleep until the front frame may go (or a command comes).
                let wait = match st.queue.front() {
                    None => None,
                    Some(CallOutput::Audio(_)) => {
                        let due = st.clock.filter(|c| *c > now).unwrap_or(now);
                        Some(due.saturating_duration_since(now + LEAD))
                    }
                    Some(_) => Some(Duration::ZERO),
                };
                let cmd = match wait {
                    Some(w) if w.is_zero() => None,
                    Some(w) => tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(w) => None,
                        c = rx.recv() => match c { Some(c) => Some(c), None => return },
                    },
                    None => tokio::select! {
                        () = cancel.cancelled() => return,
                        c = rx.recv() => match c { Some(c) => Some(c), None => return },
                    },
                };
                if let Some(c) = cmd {
                    if let Some(clear) = st.apply(c) {
                        set(&busy_until, None);
                        if out.send(clear).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                let Some(next) = st.queue.pop_front() else {
                    continue;
                };
                if let CallOutput::Audio(_) = &next {
                    let now = Instant::now();
                    let due = st.clock.filter(|c| *c > now).unwrap_or(now);
                    let ends = due + Duration::from_millis(FRAME_MS);
                    st.clock = Some(ends);
                    set(&busy_until, Some(ends));
                    first_frame
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert(now);
                }
                if out.send(next).await.is_err() {
                    return;
                }
            }
        });
        me
    }

    fn play(&self, samples: Vec<f32>) {
        let _ = self.tx.send(PacerCmd::Audio(samples));
    }

    fn mark(&self, name: String) {
        let _ = self.tx.send(PacerCmd::Mark(name));
    }

    fn clear(&self) {
        let _ = self.tx.send(PacerCmd::Clear);
    }

    /// Whether audio is still playing at the far end.
    fn playing(&self) -> bool {
        self.busy_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|t| t > Instant::now())
    }

    /// Forget the first frame seen, so that [`Pacer::first_frame`] reports the next one.
    fn watch_first_frame(&self) {
        set(&self.first_frame, None);
    }

    fn first_frame(&self) -> Option<Instant> {
        *self
            .first_frame
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn set(cell: &std::sync::Mutex<Option<Instant>>, v: Option<Instant>) {
    *cell
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = v;
}

/// What a turn starts from.
enum Heard {
    /// Recognition already started on the utterance.
    Speech(
        JoinHandle<Result<crate::speech::Transcript, SpeechError>>,
        CancellationToken,
    ),
    Keys(String),
}

/// The caller's audio since the call began, for cutting utterances by the VAD's times.
struct Timeline {
    samples: Vec<f32>,
    /// Samples dropped from the front.
    base: usize,
}

impl Timeline {
    fn cut(&self, start_ms: u64, end_ms: u64) -> Vec<f32> {
        let at = |ms: u64| {
            usize::try_from(ms * u64::from(IN_RATE) / 1000)
                .unwrap_or(usize::MAX)
                .saturating_sub(self.base)
                .min(self.samples.len())
        };
        self.samples[at(start_ms)..at(end_ms).max(at(start_ms))].to_vec()
    }

    /// Milliseconds of audio heard since the call began.
    fn heard_ms(&self) -> u64 {
        let n = u64::try_from(self.base + self.samples.len()).unwrap_or(u64::MAX);
        n * 1000 / u64::from(IN_RATE)
    }

    /// When the caller's audio at `at_ms` (a VAD time, padding included) was heard.
    fn instant_of(&self, at_ms: u64, padding_ms: u32) -> Instant {
        let ago = self
            .heard_ms()
            .saturating_sub(at_ms.saturating_sub(u64::from(padding_ms)));
        let now = Instant::now();
        now.checked_sub(Duration::from_millis(ago)).unwrap_or(now)
    }

    /// Keep only the last `keep` samples.
    fn trim(&mut self, keep: usize) {
        if self.samples.len() > keep * 2 {
            let drop = self.samples.len() - keep;
            self.samples.drain(..drop);
            self.base += drop;
        }
    }
}

struct Session {
    engines: CallEngines,
    orchestrator: Orchestrator,
    params: CallParams,
    vad: Worker<Vad>,
    pacer: Pacer,
    turns: mpsc::UnboundedSender<CallTurn>,
    cancel: CancellationToken,
}

/// Recognition started at a pause, on the utterance so far.
struct Paused {
    /// Which pause (recognitions report back with it).
    id: u64,
    /// Its recognition is a finished everyday command.
    finished: bool,
    start_ms: u64,
    end_ms: u64,
    stt: JoinHandle<Result<crate::speech::Transcript, SpeechError>>,
    cancel: CancellationToken,
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Session {
    async fn run(self, mut input: mpsc::Receiver<CallInput>) {
        let mut timeline = Timeline {
            samples: Vec::new(),
            base: 0,
        };
        let mut in_speech = false;
        let mut turn: Option<Running> = None;
        let mut paused: Option<Paused> = None;
        let mut pauses = 0u64;
        // Recognitions started at pauses report their text here, to end finished commands.
        let (heard_tx, mut heard_rx) = mpsc::unbounded_channel::<(u64, String)>();
        let command_end = self.engines.inner.vad_cfg.command_silence_ms > 0;
        let padding = self.engines.inner.vad_cfg.padding_ms;
        // Start of the utterance going on, ms.
        let mut speech_from: Option<u64> = None;
        loop {
            let msg = tokio::select! {
                () = self.cancel.cancelled() => break,
                Some((id, text)) = heard_rx.recv() => {
                    if let Some(p) = paused.as_mut().filter(|p| p.id == id) {
                        let text = crate::channels::local::voice::clean_transcript(&text);
                        p.finished = self.orchestrator.ends_utterance(&text);
                    }
                    None
                }
                m = input.recv() => match m {
                    Some(m) => Some(m),
                    None => break,
                },
            };
            match msg {
                None => {}
                Some(CallInput::Audio(samples)) => {
                    timeline.samples.extend_from_slice(&samples);
                    let (events, pause_events) =
                        match self.vad.run(move |v| v.push_with_pauses(&samples)).await {
                            Ok(Ok(ev)) => ev,
                            Ok(Err(e)) | Err(e) => {
                                tracing::warn!(error = %e, "call: the VAD failed; hanging up");
                                break;
                            }
                        };
                    // A pause: recognise what was said so far while waiting to know whether
                    // it is the end.
                    for ev in pause_events {
                        if let (VadEvent::SpeechEnd { at_ms, .. }, Some(start_ms)) =
                            (ev, speech_from)
                        {
                            if let Some(p) = paused.take() {
                                p.cancel.cancel();
                            }
                            pauses += 1;
                            let id = pauses;
                            let audio = Audio::new(IN_RATE, timeline.cut(start_ms, at_ms));
                            let cancel = self.cancel.child_token();
                            let stt = self.engines.inner.stt.clone();
                            let token = cancel.clone();
                            let report = command_end.then(|| heard_tx.clone());
                            paused = Some(Paused {
                                id,
                                finished: false,
                                start_ms,
                                end_ms: at_ms,
                                stt: tokio::spawn(async move {
                                    let t =
                                        stt.transcribe(audio, SttRequest::default(), token).await;
                                    if let (Ok(t), Some(report)) = (&t, report) {
                                        let _ = report.send((id, t.text.clone()));
                                    }
                                    t
                                }),
                                cancel,
                            });
                        }
                    }
                    for ev in events {
                        match ev {
                            VadEvent::SpeechStart { at_ms } => {
                                in_speech = true;
                                speech_from = Some(at_ms);
                                self.barge_in(&mut turn);
                            }
                            VadEvent::SpeechEnd { start_ms, at_ms } => {
                                in_speech = false;
                                speech_from = None;
                                let early = paused
                                    .take()
                                    .filter(|p| p.start_ms == start_ms && p.end_ms == at_ms);
                                let (stt, cancel) = match early {
                                    Some(p) => (p.stt, p.cancel),
                                    None => {
                                        // Speech went on after the pause: the whole utterance.
                                        let audio =
                                            Audio::new(IN_RATE, timeline.cut(start_ms, at_ms));
                                        let cancel = self.cancel.child_token();
                                        let stt = self.engines.inner.stt.clone();
                                        let token = cancel.clone();
                                        let h = tokio::spawn(async move {
                                            stt.transcribe(audio, SttRequest::default(), token)
                                                .await
                                        });
                                        (h, cancel)
                                    }
                                };
                                self.barge_in(&mut turn);
                                let end = timeline.instant_of(at_ms, padding);
                                turn = Some(self.start_turn(Heard::Speech(stt, cancel), end));
                            }
                        }
                    }
                    if !in_speech {
                        if let Some(p) = paused.take() {
                            p.cancel.cancel();
                        }
                    }
                    // An utterance never needs more than a minute of audio; between
                    // utterances two seconds are enough.
                    let keep = if in_speech { 60 } else { 2 };
                    timeline.trim(usize::try_from(u64::from(IN_RATE) * keep).unwrap_or(usize::MAX));
                }
                Some(CallInput::Dtmf(d)) => {
                    let said = match d {
                        '1' => "yes".to_owned(),
                        '2' => "no".to_owned(),
                        d => d.to_string(),
                    };
                    tracing::debug!(digit = %d, said, "call: key pressed");
                    if let Some(p) = paused.take() {
                        p.cancel.cancel();
                    }
                    self.barge_in(&mut turn);
                    turn = Some(self.start_turn(Heard::Keys(said), Instant::now()));
                }
                Some(CallInput::Mark(name)) => {
                    tracing::trace!(mark = name, "call: played");
                }
            }
            // What was said up to a pause is a finished command, and the caller has been
            // silent since for `command_silence_ms`: that pause ends the utterance.
            if in_speech {
                match self.finished_command(&mut paused).await {
                    Err(e) => {
                        tracing::warn!(error = %e, "call: the VAD failed; hanging up");
                        break;
                    }
                    Ok(None) => {}
                    Ok(Some(p)) => {
                        in_speech = false;
                        speech_from = None;
                        tracing::debug!("call: a finished command ends the utterance");
                        self.barge_in(&mut turn);
                        let end = timeline.instant_of(p.end_ms, padding);
                        turn = Some(self.start_turn(Heard::Speech(p.stt, p.cancel), end));
                    }
                }
            }
        }
        if let Some(p) = paused {
            p.cancel.cancel();
        }
        if let Some(t) = turn {
            t.cancel.cancel();
            let _ = t.task.await;
        }
        self.pacer.clear();
    }

    /// The recognition to answer now: it heard a finished command at its pause, and the VAD
    /// confirms the caller has been silent since, for `command_silence_ms` (and closes its
    /// segment there).
    async fn finished_command(
        &self,
        paused: &mut Option<Paused>,
    ) -> Result<Option<Paused>, SpeechError> {
        let Some(at) = paused.as_ref().filter(|p| p.finished).map(|p| p.end_ms) else {
            return Ok(None);
        };
        let min = self.engines.inner.vad_cfg.command_silence_ms;
        let ended = self.vad.run(move |v| v.end_at_pause(at, min)).await?;
        Ok(ended.and_then(|_| paused.take()))
    }

    /// Stop the turn in flight and what is playing.
    fn barge_in(&self, turn: &mut Option<Running>) {
        let active = turn.as_ref().is_some_and(|t| !t.task.is_finished());
        if active || self.pacer.playing() {
            if let Some(t) = turn.take() {
                t.cancel.cancel();
            }
            self.pacer.clear();
            tracing::debug!("call: barge-in");
        }
    }

    /// Start answering what was heard; `speech_end` is when the caller stopped speaking.
    fn start_turn(&self, heard: Heard, speech_end: Instant) -> Running {
        let cancel = self.cancel.child_token();
        let job = TurnJob {
            engines: self.engines.clone(),
            orchestrator: self.orchestrator.clone(),
            params: self.params.clone(),
            pacer: self.pacer.clone(),
            speech_end,
        };
        let turns = self.turns.clone();
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            let t = job.run(heard, token).await;
            tracing::info!(
                heard = t.heard,
                outcome = t.outcome,
                response_ms = t.response_ms,
                "call turn"
            );
            let _ = turns.send(t);
        });
        Running { cancel, task }
    }
}

struct TurnJob {
    engines: CallEngines,
    orchestrator: Orchestrator,
    params: CallParams,
    pacer: Pacer,
    speech_end: Instant,
}

impl TurnJob {
    async fn run(self, heard: Heard, cancel: CancellationToken) -> CallTurn {
        let mut turn = CallTurn::default();
        let r = tokio::time::timeout(TURN_LIMIT, self.converse(heard, &cancel, &mut turn)).await;
        turn.outcome = match r {
            _ if cancel.is_cancelled() => "interrupted".into(),
            Ok(Ok(o)) => o.into(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "call: turn failed");
                "failed".into()
            }
            Err(_) => "failed".into(),
        };
        turn
    }

    async fn converse(
        &self,
        heard: Heard,
        cancel: &CancellationToken,
        turn: &mut CallTurn,
    ) -> Result<&'static str, SpeechError> {
        let inner = &self.engines.inner;
        let text = match heard {
            Heard::Speech(stt, stt_cancel) => {
                let t = tokio::select! {
                    () = cancel.cancelled() => {
                        stt_cancel.cancel();
                        return Err(SpeechError::Cancelled);
                    }
                    t = stt => t.map_err(|e| SpeechError::Runtime {
                        library: "stt".into(),
                        reason: e.to_string(),
                    })??,
                };
                crate::channels::local::voice::clean_transcript(&t.text)
            }
            Heard::Keys(k) => k,
        };
        turn.heard.clone_from(&text);
        if text.trim().is_empty() {
            return Ok("no_speech");
        }
        let (text_tx, audio) = inner.tts.speak(
            StreamOptions {
                rate: Some(self.params.out_rate),
                first_clause: true,
            },
            cancel.child_token(),
        )?;
        let handle = self
            .orchestrator
            .converse(
                &self.params.channel,
                self.params.caller.clone(),
                text,
                SessionKind::Call,
                Priority::LiveCall,
            )
            .await
            .map_err(|e| SpeechError::Runtime {
                library: "orchestrator".into(),
                reason: e.to_string(),
            })?;
        self.pacer.watch_first_frame();
        let pacer = self.pacer.clone();
        let play_cancel = cancel.clone();
        let player = tokio::spawn(async move {
            let mut n = 0u32;
            while let Some(item) = audio.recv().await {
                if play_cancel.is_cancelled() {
                    break;
                }
                match item {
                    Ok(s) => {
                        pacer.play(s.audio.samples);
                        n += 1;
                        pacer.mark(format!("sentence-{n}"));
                    }
                    Err(e) => tracing::warn!(error = %e, "call: a sentence could not be spoken"),
                }
            }
        });
        let summary = super::speak_turn(handle, text_tx, cancel, || {}).await;
        let _ = player.await;
        turn.response_ms = self
            .pacer
            .first_frame()
            .map(|f| f.saturating_duration_since(self.speech_end).as_secs_f64() * 1000.0);
        let Some(summary) = summary else {
            return Err(SpeechError::Cancelled);
        };
        turn.reply = summary.reply;
        Ok("answered")
    }
}
