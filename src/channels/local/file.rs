//! WAV files as the microphone and the speaker: `voice --in IN.wav --out OUT.wav`, the tests and
//! the benchmarks run the same voice loop as a device, above the same traits.
//!
//! A [`FileDevice`] is one shared timeline. Each [`FileSource::read`] of n samples moves the
//! clock by n samples: it plays the next n samples of what the [`FileSink`] has queued into
//! the output recording (silence when nothing is queued), so the output WAV lines up sample
//! for sample with the input. In real-time mode a read also waits for the wall clock; in fast
//! mode it does not (the loop decides when time may pass). An optional **echo** mixes what
//! was played back into what is captured, as a speaker next to a microphone would, so
//! self-wake handling can be tested. After the input ends, reads give silence (the tail in
//! which the last answer is played).
//!
//! Input and recording are held as 16-bit samples, what a microphone delivers and what the
//! output WAV stores: half the memory of f32 (an hour of input is 115 MB, not 230), and the
//! recording grows by an eighth at a time rather than doubling.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{AudioError, AudioSink, AudioSource, Read, RATE};
use crate::speech::audio::{f32_to_i16, i16_to_f32, wav};
use crate::speech::Audio;

/// Samples per read: 20 ms.
pub const BLOCK: usize = RATE as usize / 50;
/// Played audio kept for [`AudioSink::echo_reference`]: 2 s.
const REFERENCE: usize = 2 * RATE as usize;

#[derive(Debug, Default)]
struct Timeline {
    input: Vec<i16>,
    pos: usize,
    queue: VecDeque<f32>,
    output: Vec<i16>,
    reference: VecDeque<f32>,
    echo_gain: f32,
}

impl Timeline {
    /// Advance by `n` samples: play, record, capture (with echo).
    fn advance(&mut self, n: usize, out: &mut Vec<f32>) {
        let start = out.len();
        if self.output.len() + n > self.output.capacity() {
            let more = (self.output.len() / 8).max(10 * RATE as usize).max(n);
            self.output.reserve_exact(more);
        }
        for i in 0..n {
            let played = self.queue.pop_front().unwrap_or(0.0);
            self.output.push(f32_to_i16(played));
            if self.reference.len() == REFERENCE {
                self.reference.pop_front();
            }
            self.reference.push_back(played);
            let heard = self.input.get(self.pos + i).map_or(0.0, |&s| i16_to_f32(s));
            out.push((heard + self.echo_gain * played).clamp(-1.0, 1.0));
        }
        debug_assert_eq!(out.len() - start, n);
        self.pos += n;
    }
}

/// One input file and one output recording on a shared clock.
#[derive(Debug, Clone)]
pub struct FileDevice {
    timeline: Arc<Mutex<Timeline>>,
    input: PathBuf,
}

impl FileDevice {
    /// Read `input` (any WAV: mixed to mono and resampled to 16 kHz).
    pub fn open(input: &Path) -> Result<Self, AudioError> {
        let audio = wav::read(input)
            .and_then(|a| a.resampled(RATE))
            .map_err(|e| AudioError::Device {
                device: input.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self::from_audio(input, audio.samples))
    }

    /// A device over samples already at 16 kHz (`name` is for messages).
    pub fn from_audio(name: &Path, samples: Vec<f32>) -> Self {
        let input: Vec<i16> = samples.iter().map(|&s| f32_to_i16(s)).collect();
        drop(samples);
        Self {
            timeline: Arc::new(Mutex::new(Timeline {
                // The recording is as long as the input, plus the last answer's tail.
                output: Vec::with_capacity(input.len() + 10 * RATE as usize),
                input,
                ..Timeline::default()
            })),
            input: name.to_path_buf(),
        }
    }

    /// Mix `gain` × the played audio into the capture (0 = no echo).
    pub fn set_echo(&self, gain: f32) {
        self.lock().echo_gain = gain.clamp(0.0, 1.0);
    }

    fn lock(&self) -> MutexGuard<'_, Timeline> {
        // A panic while holding the lock leaves plain sample buffers; keep using them.
        self.timeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The source half; `realtime` paces reads by the wall clock.
    pub fn source(&self, realtime: bool) -> FileSource {
        FileSource {
            device: self.clone(),
            realtime,
            started: None,
            ended: false,
        }
    }

    /// The sink half.
    pub fn sink(&self) -> FileSink {
        FileSink {
            device: self.clone(),
        }
    }

    /// Length of the input, ms.
    pub fn input_ms(&self) -> u64 {
        self.lock().input.len() as u64 * 1000 / u64::from(RATE)
    }

    /// Bytes the device's own buffers hold (input and recording), which a microphone and a
    /// speaker do not: for memory measurements.
    pub fn buffer_bytes(&self) -> usize {
        let t = self.lock();
        (t.input.capacity() + t.output.capacity()) * std::mem::size_of::<i16>()
    }

    /// What was played so far, on the input's timeline (16 kHz).
    pub fn recording(&self) -> Audio {
        Audio::new(
            RATE,
            self.lock().output.iter().map(|&s| i16_to_f32(s)).collect(),
        )
    }

    /// Write [`FileDevice::recording`] as a 16-bit WAV.
    pub fn write_recording(&self, path: &Path) -> Result<(), AudioError> {
        wav::write(path, &self.recording()).map_err(|e| AudioError::Device {
            device: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// Reads the input file as a microphone would deliver it.
#[derive(Debug)]
pub struct FileSource {
    device: FileDevice,
    realtime: bool,
    started: Option<Instant>,
    ended: bool,
}

impl AudioSource for FileSource {
    fn name(&self) -> String {
        format!("file {}", self.device.input.display())
    }

    fn read(&mut self, out: &mut Vec<f32>) -> Result<Read, AudioError> {
        let pos = {
            let t = self.device.lock();
            if !self.ended && t.pos >= t.input.len() {
                self.ended = true;
                return Ok(Read::End);
            }
            t.pos
        };
        if self.realtime {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = started
                + Duration::from_micros(((pos + BLOCK) as u64) * 1_000_000 / u64::from(RATE));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.device.lock().advance(BLOCK, out);
        Ok(Read::Samples(BLOCK))
    }
}

/// Records what the loop plays, on the input's timeline.
#[derive(Debug, Clone)]
pub struct FileSink {
    device: FileDevice,
}

impl AudioSink for FileSink {
    fn name(&self) -> String {
        "file recording".into()
    }

    fn play(&self, samples: &[f32]) -> Result<(), AudioError> {
        self.device.lock().queue.extend(samples.iter().copied());
        Ok(())
    }

    fn stop(&self) {
        self.device.lock().queue.clear();
    }

    fn pending(&self) -> Duration {
        let n = self.device.lock().queue.len() as u64;
        Duration::from_micros(n * 1_000_000 / u64::from(RATE))
    }

    fn echo_reference(&self, n: usize, out: &mut Vec<f32>) {
        let t = self.device.lock();
        let skip = t.reference.len().saturating_sub(n);
        out.clear();
        out.extend(t.reference.iter().skip(skip).copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playback_and_capture_share_one_timeline_with_echo() {
        let input: Vec<f32> = (0..BLOCK * 3)
            .map(|i| if i < BLOCK { 0.5 } else { 0.0 })
            .collect();
        let dev = FileDevice::from_audio(Path::new("mem"), input);
        dev.set_echo(0.5);
        let mut src = dev.source(false);
        let sink = dev.sink();
        let mut buf = Vec::new();
        assert_eq!(src.read(&mut buf).expect("read"), Read::Samples(BLOCK));
        assert!(buf.iter().all(|&s| (s - 0.5).abs() < 1e-6));
        sink.play(&vec![0.2; BLOCK + 10]).expect("play");
        assert_eq!(sink.pending(), Duration::from_micros(20_625));
        buf.clear();
        src.read(&mut buf).expect("read");
        // The input is silent here: what is heard is the echo of what was played.
        assert!(
            buf.iter().all(|&s| (s - 0.1).abs() < 1e-6),
            "{:?}",
            &buf[..4]
        );
        let mut reference = Vec::new();
        sink.echo_reference(BLOCK, &mut reference);
        assert_eq!(reference, vec![0.2; BLOCK]);
        sink.stop();
        assert_eq!(sink.pending(), Duration::ZERO);
        buf.clear();
        src.read(&mut buf).expect("read");
        assert_eq!(src.read(&mut buf).expect("end"), Read::End);
        // Past the end: silence, and the clock still moves (the tail).
        assert_eq!(src.read(&mut buf).expect("tail"), Read::Samples(BLOCK));
        let rec = dev.recording();
        assert_eq!(rec.samples.len(), BLOCK * 4);
        // Recorded as 16-bit PCM, as the output WAV stores it.
        assert!((rec.samples[BLOCK] - 0.2).abs() <= 1.0 / 32768.0);
        assert_eq!(
            rec.samples[3 * BLOCK - 1],
            0.0,
            "stopped audio is not played"
        );
    }

    #[test]
    fn input_and_recording_are_held_as_16_bit_samples_without_doubling() {
        let minute = 60 * RATE as usize;
        let dev = FileDevice::from_audio(Path::new("mem"), vec![0.25; minute]);
        let mut src = dev.source(false);
        let mut buf = Vec::new();
        // The whole input, then 25 s of tail (an answer longer than the room reserved).
        for _ in 0..(minute + 25 * RATE as usize) / BLOCK {
            buf.clear();
            if src.read(&mut buf).expect("read") == Read::End {
                src.read(&mut buf).expect("tail");
            }
        }
        let t = dev.lock();
        assert_eq!(t.input.len(), minute);
        assert_eq!(t.input[0], f32_to_i16(0.25));
        assert_eq!(t.output.len(), minute + 25 * RATE as usize);
        // Grown by ten seconds at a time past the reserved tail, not doubled.
        assert!(
            t.output.capacity() <= t.output.len() + 10 * RATE as usize,
            "capacity {} for {} samples",
            t.output.capacity(),
            t.output.len()
        );
    }

    #[test]
    fn a_missing_input_names_the_file() {
        let e = FileDevice::open(Path::new("/nonexistent/in.wav")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/in.wav"), "{e}");
    }
}
