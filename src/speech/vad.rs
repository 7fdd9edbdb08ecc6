//! Voice activity detection with Silero VAD (ONNX, through [`super::onnx`]): 16 kHz audio in
//! frames of 512 samples (32 ms), the model's recurrent state and 64 samples of context carried
//! from frame to frame, and a segmenter that turns per-frame speech probabilities into
//! speech start/end events with a threshold, minimum speech, minimum silence and padding.
//!
//! Feed any number of samples at a time ([`Vad::push`]); events carry their time from the start
//! of the stream, so a caller can cut the utterance out of its own buffer.

use std::path::Path;

use ort::session::Session;
use ort::value::Tensor;

use super::SpeechError;
use crate::config::VadConfig;

/// Samples per frame at 16 kHz.
pub const FRAME: usize = 512;
/// Context samples the model sees before each frame.
const CONTEXT: usize = 64;
/// The only rate this module takes.
pub const RATE: u32 = 16_000;
/// The manifest model.
pub const MODEL: &str = "silero-vad";

/// A change of voice activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began at this time (ms from the start of the stream, padding included).
    SpeechStart {
        /// Start, ms.
        at_ms: u64,
    },
    /// Speech ended at this time (padding included).
    SpeechEnd {
        /// Start of the segment, ms.
        start_ms: u64,
        /// End, ms.
        at_ms: u64,
    },
}

/// A pause this long starts recognition speculatively ([`Vad::report_pauses`]). If it hears a
/// finished everyday command and the pause lasts `command_silence_ms`, the pause ends the
/// utterance ([`Vad::end_at_pause`]); otherwise the channel waits for `min_silence_ms` and uses
/// that recognition only when the utterance ended where the pause began.
pub const EARLY_PAUSE_MS: u32 = 100;

/// Per-frame speech probability from a model (Silero, or anything else for tests).
pub trait SpeechProbability: Send {
    /// Probability that this 512-sample frame (16 kHz) is speech.
    fn frame(&mut self, frame: &[f32; FRAME]) -> Result<f32, SpeechError>;
    /// Forget all state (a new stream).
    fn reset(&mut self);
}

/// The Silero VAD model.
pub struct Silero {
    session: Session,
    state: Vec<f32>,
    context: [f32; CONTEXT],
    input: Vec<f32>,
}

impl Silero {
    /// Load the model at `path` with `threads` threads (ONNX Runtime must be initialized:
    /// [`super::onnx::init`]).
    pub fn load(
        env: &ort::environment::Environment,
        path: &Path,
        threads: usize,
    ) -> Result<Self, SpeechError> {
        let session = super::onnx::session(env, path, threads)?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for want in ["input", "state", "sr"] {
            if !names.contains(&want) {
                return Err(SpeechError::Model {
                    path: path.to_path_buf(),
                    reason: format!(
                        "not a Silero VAD v5+ model: no input {want:?} (inputs: {names:?})"
                    ),
                });
            }
        }
        Ok(Self {
            session,
            state: vec![0.0; 2 * 128],
            context: [0.0; CONTEXT],
            input: vec![0.0; CONTEXT + FRAME],
        })
    }
}

fn infer(e: impl std::fmt::Display) -> SpeechError {
    SpeechError::Inference {
        engine: "silero-vad",
        reason: e.to_string(),
    }
}

impl SpeechProbability for Silero {
    fn frame(&mut self, frame: &[f32; FRAME]) -> Result<f32, SpeechError> {
        self.input[..CONTEXT].copy_from_slice(&self.context);
        self.input[CONTEXT..].copy_from_slice(frame);
        self.context.copy_from_slice(&frame[FRAME - CONTEXT..]);
        let input =
            Tensor::from_array(([1usize, CONTEXT + FRAME], self.input.clone())).map_err(infer)?;
        let state = Tensor::from_array(([2usize, 1, 128], self.state.clone())).map_err(infer)?;
        let sr = Tensor::from_array(((), vec![i64::from(RATE)])).map_err(infer)?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sr])
            .map_err(infer)?;
        let (_, p) = outputs[0].try_extract_tensor::<f32>().map_err(infer)?;
        let prob = p.first().copied().ok_or_else(|| infer("empty output"))?;
        let (_, s) = outputs[1].try_extract_tensor::<f32>().map_err(infer)?;
        if s.len() != self.state.len() {
            return Err(infer(format!("state of {} values, expected 256", s.len())));
        }
        self.state.copy_from_slice(s);
        Ok(prob)
    }

    fn reset(&mut self) {
        self.state.iter_mut().for_each(|v| *v = 0.0);
        self.context = [0.0; CONTEXT];
    }
}

/// Streaming voice activity: frames a 16 kHz stream, asks the model, and segments.
pub struct Vad<P: SpeechProbability = Silero> {
    model: P,
    segmenter: Segmenter,
    /// A second segmenter on the same probabilities that ends segments at shorter pauses.
    early: Option<Segmenter>,
    pending: Vec<f32>,
    frames: u64,
}

impl<P: SpeechProbability> Vad<P> {
    /// A detector over `model` with the settings `cfg`.
    pub fn new(model: P, cfg: VadConfig) -> Self {
        Self {
            model,
            segmenter: Segmenter::new(cfg),
            early: None,
            pending: Vec::with_capacity(FRAME),
            frames: 0,
        }
    }

    /// Also report pauses of [`EARLY_PAUSE_MS`] (or `command_silence_ms` when shorter, never
    /// longer than `min_silence_ms`), at which voice channels start recognition speculatively.
    pub fn report_pauses(&mut self) {
        let cfg = self.segmenter.cfg;
        let pause = match cfg.command_silence_ms {
            0 => EARLY_PAUSE_MS,
            ms => ms.min(EARLY_PAUSE_MS),
        };
        self.set_early_pause(pause.min(cfg.min_silence_ms));
    }

    /// The settings.
    pub fn config(&self) -> &VadConfig {
        &self.segmenter.cfg
    }

    /// Also watch for pauses of `min_silence_ms` (shorter than the configured end of speech),
    /// reported by [`Vad::push_with_pauses`]: a caller can start work on what was said so far
    /// and drop it if speech goes on.
    pub fn set_early_pause(&mut self, min_silence_ms: u32) {
        let mut cfg = self.segmenter.cfg;
        cfg.min_silence_ms = min_silence_ms;
        self.early = Some(Segmenter::new(cfg));
    }

    /// Feed 16 kHz samples; returns the events they complete.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<VadEvent>, SpeechError> {
        Ok(self.push_with_pauses(samples)?.0)
    }

    /// [`Vad::push`], plus the events of the early-pause segmenter (empty unless
    /// [`Vad::set_early_pause`] was called). Both see the same probabilities, so a pause that
    /// turns out to be the end has the same `SpeechEnd::at_ms` in both.
    pub fn push_with_pauses(
        &mut self,
        samples: &[f32],
    ) -> Result<(Vec<VadEvent>, Vec<VadEvent>), SpeechError> {
        let mut events = Vec::new();
        let mut early = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == FRAME {
                let mut frame = [0.0f32; FRAME];
                frame.copy_from_slice(&self.pending);
                self.pending.clear();
                let p = self.model.frame(&frame)?;
                self.frames += 1;
                events.extend(self.segmenter.frame(p));
                if let Some(e) = &mut self.early {
                    early.extend(e.frame(p));
                }
            }
        }
        Ok((events, early))
    }

    /// End of stream: closes an open segment.
    pub fn finish(&mut self) -> Option<VadEvent> {
        let end = self.frames * FRAME as u64 * 1000 / u64::from(RATE);
        self.segmenter.finish(end)
    }

    /// End the open segment at the pause reported by the early-pause segmenter as
    /// `SpeechEnd { at_ms: pause_at_ms }`, if the audio has stayed silent since and for at
    /// least `min_pause_ms`: the caller decided that pause ends the utterance (a finished
    /// command). `None` (nothing changed) when speech went on, the pause is still shorter, or
    /// no segment is open. Speech after it opens a new segment.
    pub fn end_at_pause(&mut self, pause_at_ms: u64, min_pause_ms: u32) -> Option<VadEvent> {
        let seg = &self.segmenter;
        let from = seg.silence_from?;
        let pad = u64::from(seg.cfg.padding_ms);
        if seg.start_ms.is_none()
            || frame_ms(from) + pad != pause_at_ms
            || frame_ms(seg.frame - from) < u64::from(min_pause_ms)
        {
            return None;
        }
        self.finish()
    }

    /// Start over (a new stream; the time restarts at 0).
    pub fn reset(&mut self) {
        self.model.reset();
        self.segmenter = Segmenter::new(self.segmenter.cfg);
        if let Some(e) = &mut self.early {
            *e = Segmenter::new(e.cfg);
        }
        self.pending.clear();
        self.frames = 0;
    }

    /// Speech probabilities of a whole clip, one per frame (for tools and tests).
    pub fn probabilities(&mut self, samples: &[f32]) -> Result<Vec<f32>, SpeechError> {
        self.model.reset();
        let mut out = Vec::with_capacity(samples.len() / FRAME + 1);
        for chunk in samples.chunks(FRAME) {
            let mut frame = [0.0f32; FRAME];
            frame[..chunk.len()].copy_from_slice(chunk);
            out.push(self.model.frame(&frame)?);
        }
        self.model.reset();
        Ok(out)
    }

    /// Whether a segment is open (speech is going on).
    pub fn in_speech(&self) -> bool {
        self.segmenter.start_ms.is_some()
    }
}

/// Per-frame probabilities to events, like Silero's own `get_speech_timestamps`, streaming:
/// a segment opens once speech has lasted `min_speech_ms`, and closes once probabilities stay
/// below `threshold − 0.15` for `min_silence_ms`; both ends are widened by `padding_ms`.
#[derive(Debug, Clone)]
pub struct Segmenter {
    cfg: VadConfig,
    /// Frames seen.
    frame: u64,
    /// Candidate start (frame index) while speech is shorter than min_speech.
    candidate: Option<u64>,
    /// Open segment: its (padded) start in ms.
    start_ms: Option<u64>,
    /// First silent frame of a possible end.
    silence_from: Option<u64>,
}

const FRAME_MS_X1000: u64 = FRAME as u64 * 1_000_000 / RATE as u64; // 32 000 µs

fn frame_ms(frame: u64) -> u64 {
    frame * FRAME_MS_X1000 / 1000
}

impl Segmenter {
    /// A segmenter with `cfg`.
    pub fn new(cfg: VadConfig) -> Self {
        Self {
            cfg,
            frame: 0,
            candidate: None,
            start_ms: None,
            silence_from: None,
        }
    }

    /// One frame's probability; returns an event when one completes.
    pub fn frame(&mut self, p: f32) -> Option<VadEvent> {
        let i = self.frame;
        self.frame += 1;
        let speech = p >= self.cfg.threshold;
        let silence = p < (self.cfg.threshold - 0.15).max(0.01);
        let pad = u64::from(self.cfg.padding_ms);
        if let Some(start_ms) = self.start_ms {
            if speech {
                self.silence_from = None;
            } else if silence {
                let from = *self.silence_from.get_or_insert(i);
                if frame_ms(i + 1 - from) >= u64::from(self.cfg.min_silence_ms) {
                    self.start_ms = None;
                    self.silence_from = None;
                    self.candidate = None;
                    return Some(VadEvent::SpeechEnd {
                        start_ms,
                        at_ms: frame_ms(from) + pad,
                    });
                }
            }
            return None;
        }
        match (self.candidate, speech) {
            (None, true) => {
                self.candidate = Some(i);
            }
            (Some(_), false) if silence => {
                self.candidate = None;
            }
            _ => {}
        }
        if let Some(c) = self.candidate {
            if frame_ms(i + 1 - c) >= u64::from(self.cfg.min_speech_ms) {
                let at = frame_ms(c).saturating_sub(pad);
                self.start_ms = Some(at);
                self.candidate = None;
                return Some(VadEvent::SpeechStart { at_ms: at });
            }
        }
        None
    }

    /// End of stream at `end_ms`: closes an open segment there.
    pub fn finish(&mut self, end_ms: u64) -> Option<VadEvent> {
        let start_ms = self.start_ms.take()?;
        let at = self.silence_from.take().map_or(end_ms, |f| {
            (frame_ms(f) + u64::from(self.cfg.padding_ms)).min(end_ms)
        });
        Some(VadEvent::SpeechEnd {
            start_ms,
            at_ms: at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VadConfig {
        VadConfig {
            threshold: 0.5,
            min_speech_ms: 96,
            min_silence_ms: 160,
            command_silence_ms: 0,
            padding_ms: 32,
        }
    }

    fn run(probs: &[f32]) -> Vec<VadEvent> {
        let mut s = Segmenter::new(cfg());
        let mut ev: Vec<VadEvent> = probs.iter().filter_map(|&p| s.frame(p)).collect();
        ev.extend(s.finish(frame_ms(probs.len() as u64)));
        ev
    }

    #[test]
    fn a_segment_opens_after_min_speech_and_closes_after_min_silence() {
        // 10 silent frames, 10 speech frames, 10 silent frames.
        let mut p = vec![0.05; 10];
        p.extend(vec![0.9; 10]);
        p.extend(vec![0.05; 10]);
        assert_eq!(
            run(&p),
            vec![
                VadEvent::SpeechStart { at_ms: 320 - 32 },
                VadEvent::SpeechEnd {
                    start_ms: 288,
                    at_ms: 640 + 32
                }
            ]
        );
    }

    #[test]
    fn blips_shorter_than_min_speech_are_ignored_and_short_pauses_do_not_split() {
        let mut p = vec![0.05; 5];
        p.extend([0.9, 0.9, 0.05, 0.05]); // 2 frames: below 96 ms
        p.extend(vec![0.9; 6]);
        p.extend(vec![0.05; 3]); // 96 ms pause: below 160 ms
        p.extend(vec![0.9; 6]);
        p.extend(vec![0.05; 10]);
        let ev = run(&p);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[0], VadEvent::SpeechStart { at_ms: 9 * 32 - 32 });
        assert_eq!(
            ev[1],
            VadEvent::SpeechEnd {
                start_ms: 256,
                at_ms: 24 * 32 + 32
            }
        );
    }

    #[test]
    fn hysteresis_keeps_a_segment_open_between_the_two_thresholds() {
        let mut p = vec![0.9; 5];
        p.extend(vec![0.4; 20]); // between 0.35 and 0.5: neither speech nor silence
        p.extend(vec![0.1; 6]);
        let ev = run(&p);
        assert_eq!(
            ev,
            vec![
                VadEvent::SpeechStart { at_ms: 0 },
                VadEvent::SpeechEnd {
                    start_ms: 0,
                    at_ms: 25 * 32 + 32
                }
            ]
        );
    }

    #[test]
    fn speech_running_at_the_end_is_closed_by_finish() {
        let mut p = vec![0.05; 3];
        p.extend(vec![0.9; 8]);
        let ev = run(&p);
        assert_eq!(
            ev[1],
            VadEvent::SpeechEnd {
                start_ms: 64,
                at_ms: 11 * 32
            }
        );
    }

    /// Probabilities from a script, one per frame.
    struct Script(std::collections::VecDeque<f32>);

    impl SpeechProbability for Script {
        fn frame(&mut self, _frame: &[f32; FRAME]) -> Result<f32, SpeechError> {
            Ok(self.0.pop_front().unwrap_or(0.0))
        }
        fn reset(&mut self) {}
    }

    /// A VAD over `probs` with a 64 ms early pause.
    fn scripted(probs: &[f32]) -> Vad<Script> {
        let mut vad = Vad::new(Script(probs.iter().copied().collect()), cfg());
        vad.set_early_pause(64);
        vad
    }

    fn feed(vad: &mut Vad<Script>, frames: usize) -> (Vec<VadEvent>, Vec<VadEvent>) {
        vad.push_with_pauses(&vec![0.0; frames * FRAME])
            .unwrap_or_default()
    }

    #[test]
    fn a_pause_can_end_the_segment_while_it_lasts_and_not_after_speech_went_on() {
        let mut p = vec![0.9; 6];
        p.extend(vec![0.05; 3]); // 96 ms: an early pause (64 ms), not the end (160 ms)
        p.extend(vec![0.9; 6]);
        p.extend(vec![0.05; 3]);
        p.extend(vec![0.9; 6]);
        let mut vad = scripted(&p);
        let (events, pauses) = feed(&mut vad, 9);
        assert_eq!(events, vec![VadEvent::SpeechStart { at_ms: 0 }]);
        let Some(VadEvent::SpeechEnd { at_ms: pause, .. }) = pauses.last().copied() else {
            panic!("no pause in {pauses:?}");
        };
        assert_eq!(pause, 6 * 32 + 32);
        // Another pause time ends nothing, nor does this one before it lasted long enough.
        assert_eq!(vad.end_at_pause(pause + 32, 64), None);
        assert_eq!(vad.end_at_pause(pause, 128), None);
        assert!(vad.in_speech());
        // Speech goes on: that pause can no longer end the segment.
        let (events, _) = feed(&mut vad, 6);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(vad.end_at_pause(pause, 64), None);
        assert!(vad.in_speech());
        // The next pause, while it lasts, ends it where the pause began.
        let (_, pauses) = feed(&mut vad, 3);
        let Some(VadEvent::SpeechEnd { at_ms: pause, .. }) = pauses.last().copied() else {
            panic!("no second pause in {pauses:?}");
        };
        assert_eq!(
            vad.end_at_pause(pause, 96),
            Some(VadEvent::SpeechEnd {
                start_ms: 0,
                at_ms: 15 * 32 + 32
            })
        );
        assert!(!vad.in_speech());
        // Speech after it opens a new segment.
        let (events, _) = feed(&mut vad, 6);
        assert_eq!(
            events,
            vec![VadEvent::SpeechStart {
                at_ms: 18 * 32 - 32
            }]
        );
    }
}
