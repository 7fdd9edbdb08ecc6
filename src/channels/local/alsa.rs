//! ALSA capture and playback for the local voice channel: [`AlsaSource`] (microphone → 16 kHz
//! mono), [`AlsaSink`] (16 kHz mono → speaker, flushable at once for barge-in), and the device
//! listing and checks `doctor` shows.
//!
//! Devices are opened in a format of their own where they allow it (S16_LE, S32_LE, FLOAT_LE or
//! S24_3LE; the rate nearest to 16 kHz; their channel count). Channel selection, downmix and
//! resampling happen here, with the project's [`Resampler`]; ALSA's own (linear) rate conversion
//! is turned off wherever the device allows it.
//!
//! A device that goes away (USB unplugged) is reopened with backoff, 100 ms doubling to 5 s, with
//! one warning per outage. Meanwhile the source delivers silence and the sink discards what it
//! is given, both paced in real time, so the voice loop keeps turning and the daemon keeps
//! serving its other channels. Streams that ALSA does not clock (the `null` plugin) are paced
//! the same way.
//!
//! This module knows nothing about wake words, turns or the configuration file: it moves samples
//! between ALSA and the [`AudioSource`] / [`AudioSink`] traits.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alsa::pcm::{Access, Format, Frames, HwParams, State, PCM};
use alsa::{Direction, ValueOr};

use super::{AudioError, AudioSink, AudioSource, Read, RATE};
use crate::speech::audio::resample::Resampler;

/// Device periods per second: 20 ms blocks.
const PERIODS_PER_SECOND: u32 = 50;
/// One block at [`RATE`] (20 ms).
const BLOCK: usize = (RATE / PERIODS_PER_SECOND) as usize;
/// Capture buffer in periods: generous, since it only costs memory, never latency.
const CAPTURE_PERIODS: Frames = 16;
/// Playback buffer in periods: what a `stop` throws away, and what covers scheduling hiccups.
const PLAYBACK_PERIODS: Frames = 8;
/// First reopen attempt after a device is lost; the delay doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between reopen attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A capture device that delivers nothing for this long is treated as lost.
const CAPTURE_TIMEOUT_MS: u32 = 2_000;
/// Consecutive recoverable errors (overruns, underruns) before a device counts as lost.
const RETRIES: u32 = 5;
/// How far an unclocked capture stream may run ahead of real time.
const CAPTURE_SLACK: Duration = Duration::from_millis(60);
/// How much more than its buffer an unclocked playback stream may run ahead of real time.
const PLAYBACK_SLACK: Duration = Duration::from_millis(40);
/// The echo reference keeps this many seconds of what was handed to the speaker.
const ECHO_SECONDS: usize = 4;
/// Pacing restarts after this long, so a device clock that drifts from ours is never throttled.
const REANCHOR: Duration = Duration::from_secs(10);
/// A paced stream this far behind real time (its reader stalled) restarts pacing from now.
const BEHIND_LIMIT: Duration = Duration::from_millis(500);
/// A device lost again this soon after it came back continues the same outage (no new warning,
/// no reset of the backoff): a flapping device must not flood the log.
const FLAP_WINDOW: Duration = Duration::from_secs(30);
/// When the queue runs empty, the clip is finished (resampler flushed, device started) only once
/// the device holds less than this: audio streamed in pieces plays on seamlessly.
const FINISH_MARGIN: Duration = Duration::from_millis(40);

/// The sample formats we accept from a device, in order of preference (all little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleFormat {
    /// `S16_LE`.
    S16,
    /// `S32_LE`.
    S32,
    /// `FLOAT_LE`.
    F32,
    /// `S24_3LE`: 24 bits packed in 3 bytes, common on USB microphones.
    S24Packed,
}

impl SampleFormat {
    const PREFERENCE: [Self; 4] = [Self::S16, Self::S32, Self::F32, Self::S24Packed];

    fn alsa(self) -> Format {
        match self {
            Self::S16 => Format::S16LE,
            Self::S32 => Format::S32LE,
            Self::F32 => Format::FloatLE,
            Self::S24Packed => Format::S243LE,
        }
    }

    /// Bytes per sample.
    fn width(self) -> usize {
        match self {
            Self::S16 => 2,
            Self::S24Packed => 3,
            Self::S32 | Self::F32 => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::S16 => "S16_LE",
            Self::S32 => "S32_LE",
            Self::F32 => "FLOAT_LE",
            Self::S24Packed => "S24_3LE",
        }
    }

    /// One sample (`b.len() == self.width()`) as −1..1.
    #[allow(clippy::cast_precision_loss)]
    fn decode(self, b: &[u8]) -> f32 {
        match (self, b) {
            (Self::S16, &[b0, b1]) => f32::from(i16::from_le_bytes([b0, b1])) / 32_768.0,
            (Self::S32, &[b0, b1, b2, b3]) => {
                i32::from_le_bytes([b0, b1, b2, b3]) as f32 / 2_147_483_648.0
            }
            (Self::F32, &[b0, b1, b2, b3]) => f32::from_le_bytes([b0, b1, b2, b3]),
            (Self::S24Packed, &[b0, b1, b2]) => {
                i32::from_le_bytes([0, b0, b1, b2]) as f32 / 2_147_483_648.0
            }
            _ => 0.0,
        }
    }

    /// Append one sample in −1..1 (clamped).
    #[allow(clippy::cast_possible_truncation)]
    fn encode(self, v: f32, out: &mut Vec<u8>) {
        let v = if v.is_nan() { 0.0 } else { v.clamp(-1.0, 1.0) };
        match self {
            Self::S16 => out.extend_from_slice(&((v * 32_767.0).round() as i16).to_le_bytes()),
            Self::S32 => out.extend_from_slice(
                &((f64::from(v) * 2_147_483_647.0).round() as i32).to_le_bytes(),
            ),
            Self::F32 => out.extend_from_slice(&v.to_le_bytes()),
            Self::S24Packed => {
                let b = ((v * 8_388_607.0).round() as i32).to_le_bytes();
                out.extend_from_slice(&b[..3]);
            }
        }
    }
}

impl fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Interleaved device samples (`channels` per frame, in `format`) to mono `f32`, appended to
/// `out`: channel `channel` if it exists, otherwise the mean of all channels. A trailing partial
/// frame is ignored.
fn decode_mono(
    bytes: &[u8],
    format: SampleFormat,
    channels: usize,
    channel: Option<usize>,
    out: &mut Vec<f32>,
) {
    let channels = channels.max(1);
    let width = format.width();
    let channel = channel.filter(|&c| c < channels);
    #[allow(clippy::cast_precision_loss)]
    let scale = 1.0 / channels as f32;
    out.reserve(bytes.len() / (width * channels));
    for frame in bytes.chunks_exact(width * channels) {
        out.push(match channel {
            Some(c) => format.decode(&frame[c * width..(c + 1) * width]),
            None => {
                frame
                    .chunks_exact(width)
                    .map(|s| format.decode(s))
                    .sum::<f32>()
                    * scale
            }
        });
    }
}

/// Mono `f32` to interleaved device samples, each sample repeated on every channel.
fn encode_mono(samples: &[f32], format: SampleFormat, channels: usize, out: &mut Vec<u8>) {
    out.reserve(samples.len() * format.width() * channels.max(1));
    for &v in samples {
        for _ in 0..channels.max(1) {
            format.encode(v, out);
        }
    }
}

/// What a device was opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Params {
    format: SampleFormat,
    channels: usize,
    rate: u32,
    /// Frames per period.
    period: usize,
    /// Frames in the device buffer.
    buffer: usize,
}

impl Params {
    fn frame_bytes(&self) -> usize {
        self.format.width() * self.channels
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} Hz, {} channel{}, {}, period {} frames, buffer {} frames",
            self.rate,
            self.channels,
            if self.channels == 1 { "" } else { "s" },
            self.format,
            self.period,
            self.buffer
        )
    }
}

fn duration_of(frames: u64, rate: u32) -> Duration {
    Duration::from_nanos(frames.saturating_mul(1_000_000_000) / u64::from(rate.max(1)))
}

fn frames_usize(f: Frames) -> usize {
    usize::try_from(f).unwrap_or(0)
}

/// An ALSA error for a person: what it means here, then ALSA's own words.
fn explain(e: &alsa::Error) -> String {
    let hint = match e.errno() {
        libc::EBUSY => "busy: another program (or a running local-assistant) is using it; ",
        libc::EACCES | libc::EPERM => {
            "permission denied: the service user must be in the `audio` group; "
        }
        libc::ENODEV | libc::ENXIO | libc::EBADFD => "the device is gone (unplugged?); ",
        _ => "",
    };
    format!(
        "{hint}{} failed: {}",
        e.func(),
        std::io::Error::from_raw_os_error(e.errno())
    )
}

/// Why `snd_pcm_open` failed, for a person.
fn explain_open(e: &alsa::Error) -> String {
    match e.errno() {
        libc::ENOENT | libc::EINVAL => format!(
            "cannot open it: no such device or card; `local-assistant doctor` lists the names \
             ALSA knows ({})",
            explain(e)
        ),
        _ => format!("cannot open it: {}", explain(e)),
    }
}

/// Open `device` and negotiate its format, rate (nearest to 16 kHz, no ALSA resampling), about
/// `want_channels` channels, 20 ms periods and `periods` periods of buffer.
fn open_pcm(
    device: &str,
    dir: Direction,
    want_channels: u32,
    periods: Frames,
) -> Result<(PCM, Params), AudioError> {
    let fail = |reason: String| AudioError::Device {
        device: device.to_owned(),
        reason,
    };
    let setup = |e: alsa::Error| fail(format!("cannot configure it: {}", explain(&e)));
    let name = CString::new(device).map_err(|_| fail("the name contains a NUL byte".into()))?;
    let pcm = PCM::open(&name, dir, false).map_err(|e| fail(explain_open(&e)))?;
    let format = {
        let hw = HwParams::any(&pcm).map_err(setup)?;
        hw.set_access(Access::RWInterleaved).map_err(setup)?;
        let format = SampleFormat::PREFERENCE
            .into_iter()
            .find(|f| hw.test_format(f.alsa()).is_ok())
            .ok_or_else(|| {
                fail(
                    "it offers none of the sample formats S16_LE, S32_LE, FLOAT_LE, S24_3LE".into(),
                )
            })?;
        hw.set_format(format.alsa()).map_err(setup)?;
        // Our resampler is better than ALSA's linear one: let the device keep its own rate.
        // Devices that cannot turn resampling off simply keep it.
        let _ = hw.set_rate_resample(false);
        let rate = hw.set_rate_near(RATE, ValueOr::Nearest).map_err(setup)?;
        let lo = hw.get_channels_min().map_err(setup)?.max(1);
        let hi = hw.get_channels_max().map_err(setup)?.max(lo);
        hw.set_channels_near(want_channels.clamp(lo, hi))
            .map_err(setup)?;
        let period = hw
            .set_period_size_near(
                Frames::from(rate / PERIODS_PER_SECOND).max(16),
                ValueOr::Nearest,
            )
            .map_err(setup)?;
        hw.set_buffer_size_near(period.saturating_mul(periods))
            .map_err(setup)?;
        pcm.hw_params(&hw).map_err(setup)?;
        format
    };
    let params = {
        let hw = pcm.hw_params_current().map_err(setup)?;
        Params {
            format,
            channels: usize::try_from(hw.get_channels().map_err(setup)?).unwrap_or(1),
            rate: hw.get_rate().map_err(setup)?,
            period: frames_usize(hw.get_period_size().map_err(setup)?),
            buffer: frames_usize(hw.get_buffer_size().map_err(setup)?),
        }
    };
    if params.channels == 0 || params.rate == 0 || params.period == 0 {
        return Err(fail(format!("it negotiated an unusable setup ({params})")));
    }
    Ok((pcm, params))
}

/// A resampler from 16 kHz to `rate` (or back), or none if the device runs at 16 kHz.
fn resampler(from: u32, to: u32, device: &str) -> Result<Option<Resampler>, AudioError> {
    if from == to {
        return Ok(None);
    }
    Resampler::new(from, to)
        .map(Some)
        .map_err(|e| AudioError::Device {
            device: device.to_owned(),
            reason: format!("cannot resample {from} Hz to {to} Hz: {e}"),
        })
}

/// Keeps a stream that ALSA does not clock (the `null` plugin, a lost device) to real time: it
/// counts frames against the monotonic clock and says how long to wait to stay at most `slack`
/// ahead. A real device is never throttled: its own clock keeps it behind, and pacing restarts
/// every [`REANCHOR`] so drift between the clocks cannot add up.
#[derive(Debug, Clone)]
struct Pacer {
    rate: u32,
    slack: Duration,
    anchor: Instant,
    frames: u64,
}

impl Pacer {
    fn new(rate: u32, slack: Duration, now: Instant) -> Self {
        Self {
            rate,
            slack,
            anchor: now,
            frames: 0,
        }
    }

    /// Start counting afresh from `now`.
    fn reset(&mut self, now: Instant) {
        self.anchor = now;
        self.frames = 0;
    }

    /// Count `n` more frames; returns how long to wait before the next.
    fn advance(&mut self, n: usize, now: Instant) -> Duration {
        self.frames = self.frames.saturating_add(n as u64);
        let audio = duration_of(self.frames, self.rate);
        let elapsed = now.saturating_duration_since(self.anchor);
        let wait = audio.saturating_sub(elapsed + self.slack);
        if elapsed > audio + BEHIND_LIMIT || elapsed >= REANCHOR {
            self.anchor = now + wait;
            self.frames = 0;
        }
        wait
    }

    /// How far the counted frames run ahead of the clock.
    fn ahead(&self, now: Instant) -> Duration {
        duration_of(self.frames, self.rate)
            .saturating_sub(now.saturating_duration_since(self.anchor))
    }
}

/// A lost device and when to try it again.
#[derive(Debug, Clone, Copy)]
struct Outage {
    since: Instant,
    backoff: Duration,
    next_attempt: Instant,
}

impl Outage {
    fn begin(now: Instant) -> Self {
        Self {
            since: now,
            backoff: BACKOFF_START,
            next_attempt: now + BACKOFF_START,
        }
    }

    /// A reopen attempt failed at `now`: wait twice as long (up to [`BACKOFF_MAX`]).
    fn retry_failed(&mut self, now: Instant) {
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.next_attempt = now + self.backoff;
    }

    /// The device, back since `back_at` after this outage, was lost again at `now`. Returns the
    /// outage to wait out and whether it is news worth a warning: a loss soon after coming back
    /// continues this outage with its backoff.
    fn lost_again(self, back_at: Option<Instant>, now: Instant) -> (Self, bool) {
        if back_at.is_some_and(|t| now.saturating_duration_since(t) < FLAP_WINDOW) {
            let mut outage = self;
            outage.retry_failed(now);
            (outage, false)
        } else {
            (Self::begin(now), true)
        }
    }
}

/// An open capture device.
struct Capture {
    device: String,
    pcm: PCM,
    params: Params,
    channel: Option<usize>,
    bytes: Vec<u8>,
    mono: Vec<f32>,
    resampler: Option<Resampler>,
    pacer: Pacer,
}

impl Capture {
    fn open(device: &str, channel: Option<usize>) -> Result<Self, AudioError> {
        let want = channel.map_or(1, |c| c.saturating_add(1));
        let (pcm, params) = open_pcm(
            device,
            Direction::Capture,
            u32::try_from(want).unwrap_or(u32::MAX),
            CAPTURE_PERIODS,
        )?;
        if let Some(c) = channel.filter(|&c| c >= params.channels) {
            return Err(AudioError::Device {
                device: device.to_owned(),
                reason: format!(
                    "channel {c} was asked for but the device has {} (channels count from 0)",
                    params.channels
                ),
            });
        }
        Ok(Self {
            device: device.to_owned(),
            resampler: resampler(params.rate, RATE, device)?,
            bytes: vec![0; params.period * params.frame_bytes()],
            mono: Vec::with_capacity(params.period),
            pacer: Pacer::new(params.rate, CAPTURE_SLACK, Instant::now()),
            pcm,
            params,
            channel,
        })
    }

    /// Read one period and append it, as 16 kHz mono, to `out`; `Err` says why the device
    /// counts as lost.
    fn read_block(&mut self, out: &mut Vec<f32>) -> Result<usize, String> {
        let mut failures = 0;
        loop {
            match self.read_once(out) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {
                    return Err(format!(
                        "no audio for {} s",
                        CAPTURE_TIMEOUT_MS.div_ceil(1000)
                    ))
                }
                Err(e) => {
                    failures += 1;
                    if failures > RETRIES || self.pcm.try_recover(e, true).is_err() {
                        return Err(explain(&e));
                    }
                    tracing::debug!(device = %self.device, error = %e, "capture recovered (overrun?)");
                }
            }
        }
    }

    /// `Ok(None)`: the device delivered nothing before the timeout.
    fn read_once(&mut self, out: &mut Vec<f32>) -> alsa::Result<Option<usize>> {
        if self.pcm.state() == State::Prepared {
            self.pcm.start()?;
        }
        if !self.pcm.wait(Some(CAPTURE_TIMEOUT_MS))? {
            return Ok(None);
        }
        // Some plugins (`null`) return frames without writing them: make those silence.
        self.bytes.fill(0);
        let frames = self.pcm.io_bytes().readi(&mut self.bytes)?;
        let got = &self.bytes[..(frames * self.params.frame_bytes()).min(self.bytes.len())];
        self.mono.clear();
        decode_mono(
            got,
            self.params.format,
            self.params.channels,
            self.channel,
            &mut self.mono,
        );
        let before = out.len();
        match &mut self.resampler {
            Some(r) => out.extend(r.process(&self.mono)),
            None => out.extend_from_slice(&self.mono),
        }
        let wait = self.pacer.advance(frames, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        Ok(Some(out.len() - before))
    }
}

/// A microphone on ALSA: 16 kHz mono out, whatever the device does. Overruns are recovered on
/// the spot; a device that goes away is reopened in the background while [`AudioSource::read`]
/// delivers silence in real time.
pub struct AlsaSource {
    device: String,
    channel: Option<usize>,
    live: Option<Capture>,
    /// The current outage, or the last one while the device is live.
    outage: Outage,
    /// When the device came back from `outage`.
    back_at: Option<Instant>,
    silence: Pacer,
}

impl AlsaSource {
    /// Open `device` (`default`, `hw:1,0`, `plughw:CARD=ArrayUAC10,DEV=0`, …), taking channel
    /// `channel` (from 0) or, with `None`, the mean of all channels. Fails if the device cannot
    /// be opened and configured now.
    pub fn open(device: &str, channel: Option<usize>) -> Result<Self, AudioError> {
        let live = Capture::open(device, channel)?;
        tracing::info!(device, params = %live.params, "audio input open");
        let now = Instant::now();
        Ok(Self {
            device: device.to_owned(),
            channel,
            live: Some(live),
            outage: Outage::begin(now),
            back_at: None,
            silence: Pacer::new(RATE, Duration::ZERO, now),
        })
    }

    /// Like [`AlsaSource::open`], but a device that cannot be opened now is retried in the
    /// background (with a warning) while [`AudioSource::read`] delivers silence: for the daemon,
    /// which must start without its microphone.
    pub fn open_lenient(device: &str, channel: Option<usize>) -> Self {
        match Self::open(device, channel) {
            Ok(source) => source,
            Err(e) => {
                tracing::warn!(error = %e, "audio input unavailable; retrying in the background, silence meanwhile");
                let now = Instant::now();
                Self {
                    device: device.to_owned(),
                    channel,
                    live: None,
                    outage: Outage::begin(now),
                    back_at: None,
                    silence: Pacer::new(RATE, Duration::ZERO, now),
                }
            }
        }
    }

    /// Whether the device is open now (false while it is being reopened).
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }
}

impl AudioSource for AlsaSource {
    fn is_live(&self) -> bool {
        AlsaSource::is_live(self)
    }

    fn name(&self) -> String {
        format!("alsa:{}", self.device)
    }

    fn read(&mut self, out: &mut Vec<f32>) -> Result<Read, AudioError> {
        loop {
            if let Some(capture) = &mut self.live {
                match capture.read_block(out) {
                    Ok(0) => continue,
                    Ok(n) => return Ok(Read::Samples(n)),
                    Err(reason) => {
                        self.live = None;
                        let now = Instant::now();
                        let (outage, news) = self.outage.lost_again(self.back_at, now);
                        if news {
                            tracing::warn!(device = %self.device, error = %reason, "audio input lost; reopening in the background, silence meanwhile");
                        } else {
                            tracing::debug!(device = %self.device, error = %reason, "audio input lost again");
                        }
                        self.outage = outage;
                        self.silence.reset(now);
                    }
                }
            }
            let now = Instant::now();
            if now >= self.outage.next_attempt {
                match Capture::open(&self.device, self.channel) {
                    Ok(capture) => {
                        tracing::info!(
                            device = %self.device,
                            params = %capture.params,
                            after_s = now.duration_since(self.outage.since).as_secs(),
                            "audio input is back"
                        );
                        self.live = Some(capture);
                        self.back_at = Some(now);
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "audio input still unavailable");
                        self.outage.retry_failed(now);
                    }
                }
            }
            let wait = self.silence.advance(BLOCK, Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            out.extend(std::iter::repeat_n(0.0, BLOCK));
            return Ok(Read::Samples(BLOCK));
        }
    }
}

/// An open playback device, owned by the sink's thread.
struct Playback {
    pcm: PCM,
    params: Params,
    resampler: Option<Resampler>,
    device: String,
    bytes: Vec<u8>,
    /// Counts 16 kHz samples written.
    pacer: Pacer,
}

impl Playback {
    fn open(device: &str) -> Result<Self, AudioError> {
        let (pcm, params) = open_pcm(device, Direction::Playback, 1, PLAYBACK_PERIODS)?;
        {
            let setup = |e: alsa::Error| AudioError::Device {
                device: device.to_owned(),
                reason: format!("cannot configure it: {}", explain(&e)),
            };
            let sw = pcm.sw_params_current().map_err(setup)?;
            // Start once half the buffer is full (or at the end of a clip, see `finish`), so a
            // clip does not underrun between its first blocks.
            let half = Frames::try_from(params.buffer / 2).unwrap_or(1).max(1);
            sw.set_start_threshold(half).map_err(setup)?;
            sw.set_avail_min(Frames::try_from(params.period).unwrap_or(1))
                .map_err(setup)?;
            pcm.sw_params(&sw).map_err(setup)?;
        }
        let slack = duration_of(params.buffer as u64, params.rate) + PLAYBACK_SLACK;
        Ok(Self {
            resampler: resampler(RATE, params.rate, device)?,
            device: device.to_owned(),
            bytes: Vec::new(),
            pacer: Pacer::new(RATE, slack, Instant::now()),
            pcm,
            params,
        })
    }

    /// Write 16 kHz mono samples (blocks while the device buffer is full).
    fn write(&mut self, samples: &[f32]) -> Result<(), String> {
        match &mut self.resampler {
            Some(r) => {
                let converted = r.process(samples);
                self.write_device(&converted)
            }
            None => self.write_device(samples),
        }
    }

    /// Write samples at the device rate.
    fn write_device(&mut self, samples: &[f32]) -> Result<(), String> {
        self.bytes.clear();
        encode_mono(
            samples,
            self.params.format,
            self.params.channels,
            &mut self.bytes,
        );
        if self.pcm.state() == State::XRun {
            // It ran dry while we were idle: that is expected, not an error.
            self.pcm.prepare().map_err(|e| explain(&e))?;
        }
        let frame = self.params.frame_bytes();
        let mut offset = 0;
        let mut failures = 0;
        while offset < self.bytes.len() {
            let written = self.pcm.io_bytes().writei(&self.bytes[offset..]);
            match written {
                Ok(frames) => {
                    offset += frames * frame;
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    if failures > RETRIES || self.pcm.try_recover(e, true).is_err() {
                        return Err(explain(&e));
                    }
                    tracing::debug!(device = %self.device, error = %e, "playback recovered (underrun?)");
                }
            }
        }
        Ok(())
    }

    /// End of a clip: write what the resampler still holds and make sure playback starts.
    fn finish(&mut self) -> Result<(), String> {
        if let Some(r) = &mut self.resampler {
            let tail = r.flush();
            *r = Resampler::new(RATE, self.params.rate).map_err(|e| e.to_string())?;
            self.write_device(&tail)?;
        }
        if self.pcm.state() == State::Prepared {
            self.pcm.start().map_err(|e| explain(&e))?;
        }
        Ok(())
    }

    /// Barge-in: drop what the device holds and get ready for the next clip.
    fn stop(&mut self) -> Result<(), String> {
        let _ = self.pcm.drop();
        self.pcm.prepare().map_err(|e| explain(&e))?;
        if self.resampler.is_some() {
            self.resampler =
                Some(Resampler::new(RATE, self.params.rate).map_err(|e| e.to_string())?);
        }
        self.pacer.reset(Instant::now());
        Ok(())
    }

    /// Audio written and not played yet.
    fn held(&self, now: Instant) -> Duration {
        let delay = self
            .pcm
            .delay()
            .map(|d| duration_of(u64::try_from(d).unwrap_or(0), self.params.rate))
            .unwrap_or_default();
        delay.max(self.pacer.ahead(now))
    }
}

/// The playback thread's device.
enum Device {
    Ready(Playback),
    Lost(Outage),
}

/// What the sink's callers and its thread share.
struct SinkState {
    /// 16 kHz mono samples not yet taken by the thread.
    queue: VecDeque<f32>,
    /// Bumped by every `stop`.
    generation: u64,
    /// When what the thread has handed to the device will have played.
    held_until: Instant,
    /// The last [`ECHO_SECONDS`] of 16 kHz samples handed to the device.
    echo: VecDeque<f32>,
    /// Whether the device is open (false while it is being reopened).
    live: bool,
    shutdown: bool,
}

struct SinkShared {
    state: Mutex<SinkState>,
    wake: Condvar,
}

impl SinkShared {
    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the playback thread does next.
enum Job {
    /// Write (or, while the device is lost, discard in real time) these samples.
    Play(Vec<f32>),
    /// The queue ran empty after playing: flush and start.
    Finish,
    /// `stop` was called.
    Stop,
    /// Time to try reopening the lost device.
    Reopen,
}

/// A speaker on ALSA. [`AudioSink::play`] queues and returns at once; a thread of its own owns
/// the device, resamples to its rate, copies to its channels and writes 20 ms at a time;
/// [`AudioSink::stop`] empties the queue and the device buffer (barge-in). A device that goes
/// away is reopened in the background while queued audio is discarded in real time.
pub struct AlsaSink {
    device: String,
    shared: Arc<SinkShared>,
    thread: Option<JoinHandle<()>>,
}

impl AlsaSink {
    /// Open `device` for playback and start its thread. Fails if the device cannot be opened
    /// and configured now.
    pub fn open(device: &str) -> Result<Self, AudioError> {
        let playback = Playback::open(device)?;
        tracing::info!(device, params = %playback.params, "audio output open");
        Self::start(device, Device::Ready(playback))
    }

    /// Like [`AlsaSink::open`], but a device that cannot be opened now is retried in the
    /// background (with a warning): for the daemon, which must start without its speaker. Fails
    /// only if the playback thread cannot be started.
    pub fn open_lenient(device: &str) -> Result<Self, AudioError> {
        match Playback::open(device) {
            Ok(playback) => {
                tracing::info!(device, params = %playback.params, "audio output open");
                Self::start(device, Device::Ready(playback))
            }
            Err(e) => {
                tracing::warn!(error = %e, "audio output unavailable; retrying in the background");
                Self::start(device, Device::Lost(Outage::begin(Instant::now())))
            }
        }
    }

    fn start(device: &str, dev: Device) -> Result<Self, AudioError> {
        let live = matches!(dev, Device::Ready(_));
        let shared = Arc::new(SinkShared {
            state: Mutex::new(SinkState {
                live,
                queue: VecDeque::new(),
                generation: 0,
                held_until: Instant::now(),
                echo: VecDeque::with_capacity(ECHO_SECONDS * RATE as usize),
                shutdown: false,
            }),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("alsa-playback".into())
            .spawn({
                let shared = Arc::clone(&shared);
                let device = device.to_owned();
                move || playback_thread(&shared, &device, dev)
            })
            .map_err(|e| AudioError::Device {
                device: device.to_owned(),
                reason: format!("cannot start the playback thread: {e}"),
            })?;
        Ok(Self {
            device: device.to_owned(),
            shared,
            thread: Some(thread),
        })
    }

    /// Whether the device is open now (false while it is being reopened).
    pub fn is_live(&self) -> bool {
        self.shared.lock().live
    }
}

impl Drop for AlsaSink {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl AudioSink for AlsaSink {
    fn is_live(&self) -> bool {
        AlsaSink::is_live(self)
    }

    fn name(&self) -> String {
        format!("alsa:{}", self.device)
    }

    fn play(&self, samples: &[f32]) -> Result<(), AudioError> {
        if samples.is_empty() {
            return Ok(());
        }
        self.shared.lock().queue.extend(samples.iter().copied());
        self.shared.wake.notify_all();
        Ok(())
    }

    fn stop(&self) {
        {
            let mut st = self.shared.lock();
            st.queue.clear();
            st.generation = st.generation.wrapping_add(1);
            st.held_until = Instant::now();
        }
        self.shared.wake.notify_all();
    }

    fn pending(&self) -> Duration {
        let st = self.shared.lock();
        duration_of(st.queue.len() as u64, RATE)
            + st.held_until.saturating_duration_since(Instant::now())
    }

    /// Replaces `out` with the last `n` (or as many as kept, up to [`ECHO_SECONDS`] s) 16 kHz
    /// samples handed to the device, oldest first.
    fn echo_reference(&self, n: usize, out: &mut Vec<f32>) {
        out.clear();
        let st = self.shared.lock();
        let start = st.echo.len().saturating_sub(n);
        out.extend(st.echo.range(start..).copied());
    }
}

/// The playback thread: takes 20 ms at a time from the queue and writes it, sleeps on the
/// condvar when there is nothing to do, and reopens a lost device with backoff.
fn playback_thread(shared: &SinkShared, device: &str, mut dev: Device) {
    let mut generation = shared.lock().generation;
    // Pacing: the next block is not taken before this.
    let mut not_before: Option<Instant> = None;
    // Something was written since the last `Finish`.
    let mut busy = false;
    // Paces the discarding while the device is lost.
    let mut discard = Pacer::new(RATE, Duration::ZERO, Instant::now());
    // The current or last outage, and when the device came back from it.
    let mut outage = match &dev {
        Device::Lost(o) => *o,
        Device::Ready(_) => Outage::begin(Instant::now()),
    };
    let mut back_at: Option<Instant> = None;
    loop {
        let job = {
            let mut st = shared.lock();
            loop {
                if st.shutdown {
                    return;
                }
                if st.generation != generation {
                    generation = st.generation;
                    break Job::Stop;
                }
                let now = Instant::now();
                let retry_at = match &dev {
                    Device::Lost(o) => Some(o.next_attempt),
                    Device::Ready(_) => None,
                };
                if retry_at.is_some_and(|t| t <= now) {
                    break Job::Reopen;
                }
                let wake_at = if st.queue.is_empty() {
                    if busy {
                        let finish_at = st.held_until.checked_sub(FINISH_MARGIN).unwrap_or(now);
                        if finish_at <= now {
                            break Job::Finish;
                        }
                        Some(retry_at.map_or(finish_at, |r| r.min(finish_at)))
                    } else {
                        retry_at
                    }
                } else if let Some(t) = not_before.filter(|&t| t > now) {
                    Some(retry_at.map_or(t, |r| r.min(t)))
                } else {
                    let n = BLOCK.min(st.queue.len());
                    let chunk: Vec<f32> = st.queue.drain(..n).collect();
                    if matches!(dev, Device::Ready(_)) {
                        let overflow =
                            (st.echo.len() + n).saturating_sub(ECHO_SECONDS * RATE as usize);
                        let len = st.echo.len();
                        st.echo.drain(..overflow.min(len));
                        st.echo.extend(chunk.iter().copied());
                    }
                    break Job::Play(chunk);
                };
                st = match wake_at {
                    Some(t) => {
                        shared
                            .wake
                            .wait_timeout(st, t.saturating_duration_since(now))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
                };
            }
        };

        let now = Instant::now();
        let mut lost: Option<String> = None;
        let mut reopened: Option<Playback> = None;
        let mut held = Duration::ZERO;
        match (job, &mut dev) {
            (Job::Play(chunk), Device::Ready(pb)) => {
                if !busy {
                    pb.pacer.reset(now);
                    busy = true;
                }
                match pb.write(&chunk) {
                    Ok(()) => {
                        let now = Instant::now();
                        let wait = pb.pacer.advance(chunk.len(), now);
                        not_before = (!wait.is_zero()).then(|| now + wait);
                        held = pb.held(now);
                    }
                    Err(reason) => lost = Some(reason),
                }
            }
            (Job::Play(chunk), Device::Lost(_)) => {
                if !busy {
                    discard.reset(now);
                    busy = true;
                }
                let wait = discard.advance(chunk.len(), now);
                not_before = (!wait.is_zero()).then(|| now + wait);
                held = discard.ahead(now);
            }
            (Job::Finish, Device::Ready(pb)) => {
                busy = false;
                match pb.finish() {
                    Ok(()) => held = pb.held(Instant::now()),
                    Err(reason) => lost = Some(reason),
                }
            }
            (Job::Finish, Device::Lost(_)) => {
                busy = false;
                held = discard.ahead(now);
            }
            (Job::Stop, Device::Ready(pb)) => {
                busy = false;
                not_before = None;
                if let Err(reason) = pb.stop() {
                    lost = Some(reason);
                }
            }
            (Job::Stop, Device::Lost(_)) => {
                busy = false;
                not_before = None;
                discard.reset(now);
            }
            (Job::Reopen, Device::Lost(current)) => match Playback::open(device) {
                Ok(pb) => {
                    tracing::info!(
                        device,
                        params = %pb.params,
                        after_s = now.duration_since(current.since).as_secs(),
                        "audio output is back"
                    );
                    outage = *current;
                    back_at = Some(now);
                    reopened = Some(pb);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "audio output still unavailable");
                    current.retry_failed(Instant::now());
                }
            },
            (Job::Reopen, Device::Ready(_)) => {}
        }

        if let Some(pb) = reopened {
            busy = false;
            dev = Device::Ready(pb);
        }
        if let Some(reason) = lost {
            let now = Instant::now();
            let (next, news) = outage.lost_again(back_at, now);
            if news {
                tracing::warn!(device, error = %reason, "audio output lost; reopening in the background, discarding audio meanwhile");
            } else {
                tracing::debug!(device, error = %reason, "audio output lost again");
            }
            outage = next;
            dev = Device::Lost(outage);
            discard.reset(now);
            busy = false;
            not_before = None;
            held = Duration::ZERO;
        }
        let mut st = shared.lock();
        st.live = matches!(dev, Device::Ready(_));
        if st.generation == generation {
            st.held_until = Instant::now() + held;
        }
    }
}

/// A PCM device ALSA knows, from its device name hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to configure (`default`, `hw:CARD=ArrayUAC10,DEV=0`, `null`, …).
    pub name: String,
    /// ALSA's description, on one line.
    pub description: String,
    /// Whether it records.
    pub capture: bool,
    /// Whether it plays.
    pub playback: bool,
}

/// The PCM devices ALSA's configuration and the sound cards offer (empty if ALSA cannot tell).
pub fn list_devices() -> Vec<DeviceInfo> {
    let Ok(hints) = alsa::device_name::HintIter::new_str(None, "pcm") else {
        return Vec::new();
    };
    hints
        .filter_map(|hint| {
            let name = hint.name?;
            let description = hint
                .desc
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            Some(DeviceInfo {
                name,
                description,
                capture: hint.direction != Some(Direction::Playback),
                playback: hint.direction != Some(Direction::Capture),
            })
        })
        .collect()
}

/// Open `name` briefly for capture (`capture`) or playback and describe what it negotiated
/// (rate, channels, sample format, period and buffer).
pub fn check_device(name: &str, capture: bool) -> Result<String, AudioError> {
    let (dir, periods) = if capture {
        (Direction::Capture, CAPTURE_PERIODS)
    } else {
        (Direction::Playback, PLAYBACK_PERIODS)
    };
    let (_pcm, params) = open_pcm(name, dir, 1, periods)?;
    Ok(if params.rate == RATE {
        params.to_string()
    } else {
        format!("{params}; resampled to {RATE} Hz")
    })
}

/// `doctor`'s audio lines (ok, message): the capture and playback devices ALSA knows, then a
/// check of the configured `capture` and `playback` devices.
pub fn doctor_lines(capture: &str, playback: &str) -> Vec<(bool, String)> {
    let devices = list_devices();
    let names = |pick: fn(&DeviceInfo) -> bool| {
        let names: Vec<&str> = devices
            .iter()
            .filter(|d| pick(d))
            .map(|d| d.name.as_str())
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let mut lines = vec![
        (
            true,
            format!("ALSA capture devices: {}", names(|d| d.capture)),
        ),
        (
            true,
            format!("ALSA playback devices: {}", names(|d| d.playback)),
        ),
    ];
    for (name, is_capture, what) in [(capture, true, "microphone"), (playback, false, "speaker")] {
        lines.push(match check_device(name, is_capture) {
            Ok(desc) => (true, format!("{what} {name}: {desc}")),
            Err(e) => (false, format!("{what}: {e}")),
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s16(values: &[i16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn interleaved_samples_of_every_format_become_mono() {
        // (format, bytes of two stereo frames, channel, expected mono)
        let s32: Vec<u8> = [i32::MAX / 2, 0, i32::MIN, i32::MIN / 2]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f32s: Vec<u8> = [0.5f32, -0.5, 0.25, 0.75]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // S24_3LE: 0x400000 = 0.5, 0xC00000 = -0.5.
        let s24 = vec![
            0x00, 0x00, 0x40, 0x00, 0x00, 0xC0, 0, 0, 0, 0x00, 0x00, 0x40,
        ];
        type Case = (SampleFormat, Vec<u8>, Option<usize>, Vec<f32>);
        let cases: Vec<Case> = vec![
            (
                SampleFormat::S16,
                s16(&[16384, -16384, 0, 8192]),
                Some(0),
                vec![0.5, 0.0],
            ),
            (
                SampleFormat::S16,
                s16(&[16384, -16384, 0, 8192]),
                Some(1),
                vec![-0.5, 0.25],
            ),
            (
                SampleFormat::S16,
                s16(&[16384, -16384, 0, 8192]),
                None,
                vec![0.0, 0.125],
            ),
            // A channel the device does not have falls back to the mean.
            (
                SampleFormat::S16,
                s16(&[16384, -16384, 0, 8192]),
                Some(5),
                vec![0.0, 0.125],
            ),
            (SampleFormat::S32, s32, None, vec![0.25, -0.75]),
            (SampleFormat::F32, f32s.clone(), Some(1), vec![-0.5, 0.75]),
            (SampleFormat::F32, f32s, None, vec![0.0, 0.5]),
            (SampleFormat::S24Packed, s24, None, vec![0.0, 0.25]),
        ];
        for (format, bytes, channel, want) in cases {
            let mut got = vec![9.0];
            decode_mono(&bytes, format, 2, channel, &mut got);
            assert_eq!(got[0], 9.0, "appends");
            assert_eq!(got.len(), 1 + want.len(), "{format} {channel:?}");
            for (g, w) in got[1..].iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-4,
                    "{format} {channel:?}: {got:?} vs {want:?}"
                );
            }
        }
        // Six channels (a mic array), channel 3; a trailing partial frame is ignored.
        let mut bytes = s16(&[0, 0, 0, 3276, 0, 0, 0, 0, 0, -3276, 0, 0]);
        bytes.push(7);
        let mut got = Vec::new();
        decode_mono(&bytes, SampleFormat::S16, 6, Some(3), &mut got);
        assert_eq!(got.len(), 2);
        assert!(
            (got[0] - 0.1).abs() < 1e-3 && (got[1] + 0.1).abs() < 1e-3,
            "{got:?}"
        );
    }

    #[test]
    fn mono_is_encoded_on_every_channel_and_survives_the_round_trip() {
        let samples = [0.0, 0.5, -0.25, 1.5, -1.0];
        for format in SampleFormat::PREFERENCE {
            let mut bytes = Vec::new();
            encode_mono(&samples, format, 2, &mut bytes);
            assert_eq!(bytes.len(), samples.len() * 2 * format.width(), "{format}");
            let (mut left, mut right) = (Vec::new(), Vec::new());
            decode_mono(&bytes, format, 2, Some(0), &mut left);
            decode_mono(&bytes, format, 2, Some(1), &mut right);
            assert_eq!(left, right, "{format}: channels are copies");
            for (got, want) in left.iter().zip(samples) {
                assert!(
                    (got - want.clamp(-1.0, 1.0)).abs() < 1e-3,
                    "{format}: {left:?}"
                );
            }
        }
    }

    #[test]
    fn pacer_holds_an_unclocked_stream_to_real_time_and_never_slows_a_late_one() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Pacer::new(RATE, ms(60), t0);
        // Instant blocks: the first three fit in the slack, the fourth must wait 20 ms.
        assert_eq!(p.advance(BLOCK, t0), Duration::ZERO);
        assert_eq!(p.advance(BLOCK, t0), Duration::ZERO);
        assert_eq!(p.advance(BLOCK, t0), Duration::ZERO);
        assert_eq!(p.advance(BLOCK, t0), ms(20));
        assert_eq!(p.ahead(t0), ms(80));
        // A device that blocks in real time is never made to wait.
        let mut p = Pacer::new(RATE, Duration::ZERO, t0);
        for i in 1..=100u64 {
            assert_eq!(p.advance(BLOCK, t0 + ms(20 * i)), Duration::ZERO);
        }
        // A stalled reader far behind restarts from now instead of bursting to catch up.
        let mut p = Pacer::new(RATE, Duration::ZERO, t0);
        assert_eq!(p.advance(BLOCK, t0 + ms(2000)), Duration::ZERO);
        assert_eq!(p.advance(BLOCK, t0 + ms(2000)), ms(20));
    }

    #[test]
    fn reopen_backoff_doubles_from_100_ms_to_5_s() {
        let t0 = Instant::now();
        let mut o = Outage::begin(t0);
        let mut waits = vec![o.backoff];
        for _ in 0..8 {
            o.retry_failed(t0);
            waits.push(o.backoff);
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(o.next_attempt, t0 + BACKOFF_MAX);
    }

    #[test]
    fn a_device_lost_again_soon_after_coming_back_continues_its_outage() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let first = Outage::begin(t0);
        // Back at 1 s, lost again at 3 s: same outage, longer wait, no new warning.
        let (again, news) = first.lost_again(Some(t0 + s(1)), t0 + s(3));
        assert!(!news);
        assert_eq!(
            (again.since, again.backoff),
            (t0, Duration::from_millis(200))
        );
        // Lost long after coming back: a new outage, worth a warning.
        let (fresh, news) = again.lost_again(Some(t0 + s(1)), t0 + s(100));
        assert!(news);
        assert_eq!((fresh.since, fresh.backoff), (t0 + s(100), BACKOFF_START));
        // Lost while it had never been lost: news.
        assert!(first.lost_again(None, t0 + s(2)).1);
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i % 1000) as f32 / 1000.0 - 0.5).collect()
    }

    #[test]
    fn null_sink_queues_reports_pending_and_stops_at_once() -> Result<(), AudioError> {
        let sink = AlsaSink::open("null")?;
        assert_eq!(sink.name(), "alsa:null");
        assert!(sink.is_live());
        let clip = ramp(RATE as usize);
        sink.play(&clip)?;
        std::thread::sleep(Duration::from_millis(100));
        let pending = sink.pending();
        assert!(pending > Duration::from_millis(500), "{pending:?}");
        assert!(pending <= Duration::from_millis(1000), "{pending:?}");

        // What went to the device is the start of the clip, in order.
        let mut echo = Vec::new();
        sink.echo_reference(BLOCK, &mut echo);
        assert_eq!(echo.len(), BLOCK);
        let at = clip.windows(BLOCK).position(|w| w == echo.as_slice());
        assert!(at.is_some(), "echo reference is not a stretch of the clip");

        sink.stop();
        assert!(
            sink.pending() < Duration::from_millis(5),
            "{:?}",
            sink.pending()
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            sink.pending() < Duration::from_millis(5),
            "{:?}",
            sink.pending()
        );

        // It plays again after a stop, and finishes.
        sink.play(&clip[..BLOCK * 5])?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.pending() > Duration::ZERO && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.pending(), Duration::ZERO);
        let mut echo = Vec::new();
        sink.echo_reference(3, &mut echo);
        assert_eq!(echo, clip[BLOCK * 5 - 3..BLOCK * 5]);
        Ok(())
    }

    #[test]
    fn null_source_delivers_paced_blocks_of_silence() -> Result<(), AudioError> {
        let mut source = AlsaSource::open("null", None)?;
        assert!(source.is_live());
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..25 {
            let before = out.len();
            let read = source.read(&mut out)?;
            assert_eq!(read, Read::Samples(BLOCK));
            assert_eq!(out.len() - before, BLOCK);
        }
        assert_eq!(out.len(), 25 * BLOCK);
        // `null` returns frames without writing them; they must come out as silence.
        assert!(out.iter().all(|&v| v == 0.0));
        // 0.5 s of audio cannot come much faster than 0.5 s.
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
        Ok(())
    }

    #[test]
    fn a_missing_card_is_an_error_naming_the_device() {
        for result in [
            AlsaSource::open("hw:99,0", None).map(|_| ()),
            AlsaSink::open("hw:99,0").map(|_| ()),
            check_device("hw:99,0", true).map(|_| ()),
        ] {
            match result {
                Err(e @ AudioError::Device { .. }) => {
                    assert!(e.to_string().contains("hw:99,0"), "{e}");
                    assert!(e.to_string().contains("doctor"), "{e}");
                }
                other => panic!("expected a device error, got {other:?}"),
            }
        }
    }

    #[test]
    fn lenient_source_on_a_missing_card_delivers_silence() -> Result<(), AudioError> {
        let mut source = AlsaSource::open_lenient("hw:99,0", None);
        assert!(!source.is_live());
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..10 {
            assert_eq!(source.read(&mut out)?, Read::Samples(BLOCK));
        }
        assert_eq!(out.len(), 10 * BLOCK);
        assert!(out.iter().all(|&v| v == 0.0));
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "{:?}",
            start.elapsed()
        );
        assert!(!source.is_live());
        Ok(())
    }

    #[test]
    fn lenient_sink_on_a_missing_card_discards_in_real_time() -> Result<(), AudioError> {
        let sink = AlsaSink::open_lenient("hw:99,0")?;
        assert!(!sink.is_live());
        sink.play(&ramp(BLOCK * 10))?;
        assert!(sink.pending() > Duration::from_millis(100));
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.pending() > Duration::ZERO && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.pending(), Duration::ZERO);
        let mut echo = vec![1.0];
        sink.echo_reference(100, &mut echo);
        assert!(echo.is_empty(), "nothing reached a speaker");
        Ok(())
    }

    /// A capture device made of ALSA's `file` plugin reading `infile` (over `null`), written
    /// inline as `plug`'s SLAVE argument: no configuration file or environment needed.
    fn file_capture(infile: &std::path::Path) -> String {
        format!(
            "plug:{{SLAVE {{type file slave.pcm null file \"/dev/null\" infile \"{}\" format raw}}}}",
            infile.display()
        )
    }

    #[test]
    fn capture_selects_the_configured_channel_from_real_alsa_data(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let infile = tmp.path().join("in.raw");
        // Stereo S16_LE: left counts up, right counts down.
        let frames = BLOCK * 20;
        let interleaved: Vec<i16> = (0..frames)
            .flat_map(|i| {
                let v = i16::try_from(i % 10_000).unwrap_or(0);
                [v, -v]
            })
            .collect();
        std::fs::write(&infile, s16(&interleaved))?;

        let mut source = AlsaSource::open(&file_capture(&infile), Some(1))?;
        let params = source.live.as_ref().map(|c| c.params);
        assert_eq!(
            params.map(|p| (p.rate, p.channels, p.format)),
            Some((RATE, 2, SampleFormat::S16)),
            "{params:?}"
        );
        let mut out = Vec::new();
        while out.len() < BLOCK * 10 {
            source.read(&mut out)?;
        }
        for (i, v) in out.iter().enumerate() {
            let want = -((i % 10_000) as f32) / 32_768.0;
            assert!((v - want).abs() < 1e-6, "sample {i}: {v} vs {want}");
        }
        Ok(())
    }

    #[test]
    fn playback_writes_the_clip_to_the_device() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let outfile = tmp.path().join("out.raw");
        let clip = ramp(BLOCK * 7 + 13);
        {
            let sink = AlsaSink::open(&format!("file:{{FILE \"{}\"}}", outfile.display()))?;
            sink.play(&clip)?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while sink.pending() > Duration::ZERO && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let bytes = std::fs::read(&outfile)?;
        let mut got = Vec::new();
        decode_mono(&bytes, SampleFormat::S16, 1, None, &mut got);
        assert_eq!(got.len(), clip.len());
        for (i, (g, w)) in got.iter().zip(&clip).enumerate() {
            assert!((g - w).abs() < 1e-4, "sample {i}: {g} vs {w}");
        }
        Ok(())
    }

    /// A device that can be unplugged and plugged back in, made of real ALSA: the `file`
    /// plugin copies every period that passes through it into a FIFO in a directory of its own,
    /// and a reader thread drains the FIFO (keeping what it read). Unplugging removes the
    /// directory and closes the reader, so the stream's next write fails (EPIPE) and ALSA returns
    /// an I/O error that no recovery fixes, as a stream on a removed USB device does. While the
    /// directory is gone, a reopened stream fails at its first period. Plugging in recreates
    /// the directory, the FIFO, a fresh reader and (for capture) the `infile`.
    struct Hotplug {
        dir: std::path::PathBuf,
        /// What the current reader has read.
        tapped: Arc<Mutex<Vec<u8>>>,
        /// Tells the current reader to close the FIFO after its next read.
        unplugged: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Hotplug {
        fn new(root: &std::path::Path) -> Self {
            Self {
                dir: root.join("card"),
                tapped: Arc::default(),
                unplugged: Arc::default(),
            }
        }

        fn capture_device(&self) -> String {
            format!(
                "plug:{{SLAVE {{type file slave.pcm null file \"{}\" infile \"{}\" format raw}}}}",
                self.dir.join("tap").display(),
                self.dir.join("in.raw").display()
            )
        }

        fn playback_device(&self) -> String {
            format!(
                "plug:{{SLAVE {{type file slave.pcm null file \"{}\" format raw}}}}",
                self.dir.join("tap").display()
            )
        }

        /// Plug in; a capture device delivers `infile` (raw S16_LE mono at 16 kHz). The card is
        /// made beside its place and renamed into it, so a reopen never sees half of it.
        fn plug(&mut self, infile: &[u8]) -> std::io::Result<()> {
            use std::sync::atomic::Ordering;
            let staging = self.dir.with_extension("new");
            std::fs::create_dir(&staging)?;
            std::fs::write(staging.join("in.raw"), infile)?;
            let made = std::process::Command::new("mkfifo")
                .arg(staging.join("tap"))
                .status()?;
            assert!(made.success(), "mkfifo failed");
            std::fs::rename(&staging, &self.dir)?;
            self.tapped = Arc::default();
            self.unplugged = Arc::default();
            let (tapped, unplugged) = (Arc::clone(&self.tapped), Arc::clone(&self.unplugged));
            let fifo = self.dir.join("tap");
            // Detached: it ends at the first read after `unplug` (or with the test process).
            std::thread::spawn(move || {
                use std::io::Read as _;
                // Blocks until ALSA opens the FIFO for writing.
                let Ok(mut f) = std::fs::File::open(&fifo) else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                while !unplugged.load(Ordering::SeqCst) {
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => tapped
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .extend_from_slice(&buf[..n]),
                    }
                }
            });
            Ok(())
        }

        /// Unplug: the card leaves its place at once (a reopen must not find the FIFO without
        /// a reader: opening it would block), then the reader closes the FIFO.
        fn unplug(&self) -> std::io::Result<()> {
            let gone = self.dir.with_extension("gone");
            std::fs::rename(&self.dir, &gone)?;
            std::fs::remove_dir_all(&gone)?;
            self.unplugged
                .store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }

        /// Whether the current reader got a sample at `level`.
        fn heard(&self, level: f32) -> bool {
            self.tapped().iter().any(|v| (v - level).abs() < 1e-3)
        }

        fn tapped(&self) -> Vec<f32> {
            let bytes = self
                .tapped
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let mut out = Vec::new();
            decode_mono(&bytes, SampleFormat::S16, 1, None, &mut out);
            out
        }
    }

    fn constant_s16(value: i16, seconds: usize) -> Vec<u8> {
        s16(&vec![value; RATE as usize * seconds])
    }

    #[test]
    fn a_microphone_unplugged_mid_stream_gives_paced_silence_and_comes_back(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mut card = Hotplug::new(tmp.path());
        card.plug(&constant_s16(5, 30))?;
        let mut source = AlsaSource::open(&card.capture_device(), None)?;
        let level = |v: i16| f32::from(v) / 32_768.0;
        let mut out = Vec::new();
        while out.len() < RATE as usize / 2 {
            source.read(&mut out)?;
        }
        assert!(out.iter().all(|&v| v == level(5)), "the device's audio");

        // Unplugged while streaming: every read still returns, with silence, in real time.
        card.unplug()?;
        let start = Instant::now();
        let mut lost_seen = false;
        let mut after_loss = Vec::new();
        out.clear();
        while out.len() < RATE as usize * 3 / 2 {
            let before = out.len();
            assert_eq!(source.read(&mut out)?, Read::Samples(out.len() - before));
            if !source.is_live() {
                lost_seen = true;
            }
            if lost_seen {
                after_loss.extend_from_slice(&out[before..]);
            }
        }
        assert!(lost_seen, "the loss was never noticed");
        assert!(
            after_loss.iter().all(|&v| v == 0.0),
            "only silence once the device is gone"
        );
        // 1.5 s of audio cannot come much faster than 1.5 s: no busy loop while it is gone.
        assert!(
            start.elapsed() >= Duration::from_millis(1_200),
            "{:?}",
            start.elapsed()
        );

        // Plugged back: its audio returns within the backoff (at most 5 s between attempts).
        card.plug(&constant_s16(9, 30))?;
        let mut heard = false;
        out.clear();
        while out.len() < RATE as usize * 15 {
            let before = out.len();
            source.read(&mut out)?;
            if out[before..].iter().any(|&v| v == level(9)) {
                heard = true;
                break;
            }
        }
        assert!(heard, "the device came back but its audio did not");
        assert!(source.is_live());
        Ok(())
    }

    #[test]
    fn a_speaker_unplugged_mid_stream_discards_in_real_time_and_comes_back(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let mut card = Hotplug::new(tmp.path());
        card.plug(&[])?;
        let sink = AlsaSink::open(&card.playback_device())?;
        let wait_done = |what: &str| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while sink.pending() > Duration::ZERO {
                assert!(Instant::now() < deadline, "{what} never finished");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        sink.play(&vec![0.25; RATE as usize / 2])?;
        wait_done("the first clip");
        assert!(card.heard(0.25), "the clip reached the device");

        // Unplugged while a clip plays: the sink notices, and what is queued meanwhile is
        // discarded at the pace it would have played.
        sink.play(&vec![0.25; RATE as usize])?;
        card.unplug()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while sink.is_live() {
            assert!(Instant::now() < deadline, "the loss was never noticed");
            sink.play(&vec![0.25; BLOCK * 5])?;
            std::thread::sleep(Duration::from_millis(50));
        }
        sink.stop();
        let start = Instant::now();
        sink.play(&vec![0.5; RATE as usize])?;
        wait_done("discarding");
        // Paced, not dropped at once: at most the device buffer and the pacing slack (200 ms),
        // plus what a stream reopened while the card was gone took before failing, go faster.
        assert!(
            start.elapsed() >= Duration::from_millis(500),
            "1 s of audio discarded in {:?}",
            start.elapsed()
        );

        // Plugged back: audio reaches the device again (a clip played on the stream opened
        // while it was gone may fail once: the sink then reopens it).
        card.plug(&[])?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !card.heard(0.75) {
            assert!(
                Instant::now() < deadline,
                "the device came back but nothing reached it"
            );
            sink.play(&vec![0.75; BLOCK * 5])?;
            wait_done("a clip after the device came back");
        }
        assert!(sink.is_live());
        assert!(
            !card.heard(0.5),
            "audio queued while it was gone was played late"
        );
        Ok(())
    }

    #[test]
    fn devices_are_listed_and_checked_for_doctor() {
        let devices = list_devices();
        let null = devices.iter().find(|d| d.name == "null");
        assert!(null.is_some_and(|d| d.capture && d.playback), "{devices:?}");

        let lines = doctor_lines("null", "hw:99,0");
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].0 && lines[0].1.contains("null"), "{lines:?}");
        assert!(lines[2].0 && lines[2].1.contains("16000 Hz"), "{lines:?}");
        assert!(!lines[3].0 && lines[3].1.contains("hw:99,0"), "{lines:?}");
    }
}
