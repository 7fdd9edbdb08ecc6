//! The local voice channel: the device's own microphone, speaker, button and LEDs.
//!
//! - [`AudioSource`] / [`AudioSink`]: capture (16 kHz mono out, whatever the device does) and
//!   playback (flushable at once for barge-in). Two real implementations: ALSA
//!   ([`alsa`]) and WAV files ([`file`]); everything above the traits is shared.
//! - [`button`] and [`leds`]: the physical controls, behind traits, with GPIO/SPI
//!   implementations and simulated twins.
//! - [`voice`]: the loop (wake word or button → VAD-bounded utterance → STT → orchestrator turn
//!   → streamed TTS), barge-in, follow-up, announcements, per-turn timings.

pub mod alsa;
pub mod button;
pub mod cli;
pub mod file;
pub mod leds;
pub mod voice;

use std::time::Duration;

/// The rate every [`AudioSource`] delivers and every [`AudioSink`] takes.
pub const RATE: u32 = 16_000;

/// Why audio I/O failed.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The device could not be opened or configured (name, reason).
    #[error("audio device {device}: {reason}")]
    Device {
        /// The device name as configured (`hw:1,0`, `default`, a file path).
        device: String,
        /// What went wrong.
        reason: String,
    },
    /// The device went away (USB unplugged) or failed mid-stream; reopening may help.
    #[error("audio device {device} lost: {reason}")]
    Lost {
        /// The device.
        device: String,
        /// What happened.
        reason: String,
    },
}

/// What one [`AudioSource::read`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many samples were appended.
    Samples(usize),
    /// The source is over (end of a file); a live device never ends.
    End,
}

/// A microphone: mono 16 kHz `f32` samples in −1..1, after channel selection or downmix and
/// resampling from the device's native format.
pub trait AudioSource: Send {
    /// A name for logs and `doctor`.
    fn name(&self) -> String;
    /// Block until the next block of audio (about 20 ms) and append it to `out`.
    fn read(&mut self, out: &mut Vec<f32>) -> Result<Read, AudioError>;
    /// Whether the device is there now (false while a lost one is being reopened).
    fn is_live(&self) -> bool {
        true
    }
}

/// A speaker. Audio is queued and played in order; [`AudioSink::stop`] drops everything at once.
/// Shared between the thread that feeds it and the one that interrupts it.
pub trait AudioSink: Send + Sync {
    /// A name for logs and `doctor`.
    fn name(&self) -> String;
    /// Queue mono 16 kHz samples for playback (returns at once).
    fn play(&self, samples: &[f32]) -> Result<(), AudioError>;
    /// Stop now: what is queued or buffered is dropped (barge-in).
    fn stop(&self);
    /// Audio queued or buffered and not played yet.
    fn pending(&self) -> Duration;
    /// Replace `out` with the last `n` samples the speaker played, for echo handling (16 kHz).
    /// Sinks that cannot tell leave `out` empty.
    fn echo_reference(&self, n: usize, out: &mut Vec<f32>);
    /// Whether the device is there now (false while a lost one is being reopened).
    fn is_live(&self) -> bool {
        true
    }
}

/// The device's real microphone, speaker, button and LEDs as `[voice]` configures them. A
/// device that is missing now is logged and retried (audio) or left out (button, LEDs): the
/// daemon serves its other channels meanwhile.
pub fn devices(cfg: &crate::config::VoiceConfig) -> Result<voice::Devices, AudioError> {
    let source = alsa::AlsaSource::open_lenient(&cfg.capture_device, cfg.capture_channel);
    let sink = alsa::AlsaSink::open_lenient(&cfg.playback_device)?;
    let button: Box<dyn button::Button> = match &cfg.button_line {
        Some(line) => match button::GpioButton::open(
            line,
            cfg.button_active_low,
            cfg.long_press.as_millis() as u64,
            cfg.double_press.as_millis() as u64,
        ) {
            Ok(b) => Box::new(b),
            Err(e) => {
                tracing::warn!(error = %e, "voice: no button");
                Box::new(button::NoButton)
            }
        },
        None => Box::new(button::NoButton),
    };
    let leds: Box<dyn leds::Leds> = match &cfg.leds_spi {
        Some(path) => match leds::Apa102::open(path, cfg.leds_count, cfg.leds_brightness) {
            Ok(l) => Box::new(l),
            Err(e) => {
                tracing::warn!(error = %e, "voice: no LEDs");
                Box::new(leds::NoLeds)
            }
        },
        None => Box::new(leds::NoLeds),
    };
    Ok(voice::Devices {
        source: Box::new(source),
        sink: std::sync::Arc::new(sink),
        button,
        leds,
        fast: false,
    })
}
