//! The `[voice]` section: the local voice channel (microphone, speaker, button, LEDs and the
//! voice loop's timing), raw form, defaults and resolution.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[voice]`: the device's own microphone and speaker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawVoice {
    /// Run the voice loop in `serve`.
    pub enabled: bool,
    /// ALSA capture device (`default`, `hw:1,0`, `plughw:CARD=ArrayUAC10,DEV=0`).
    pub capture_device: String,
    /// Capture channel to use (0-based); -1 mixes all channels.
    pub capture_channel: i64,
    /// ALSA playback device.
    pub playback_device: String,
    /// Address of the device's conversation on the `local` channel.
    pub address: String,
    /// After an answer, how long a reply is taken without the wake word, in ms (0: never).
    pub follow_up_ms: u64,
    /// After the wake word, how long to wait for speech to start, in ms.
    pub listen_timeout_ms: u64,
    /// Longest utterance, in ms (it is cut there and answered).
    pub max_utterance_ms: u64,
    /// Play a short chime when listening starts and before announcements.
    pub chime: bool,
    /// How long a finished timer rings when nobody stops it, in seconds.
    pub timer_ring_secs: u64,
    /// Ignore a wake word the speaker's own audio also triggered within this many ms.
    pub echo_window_ms: u64,
    /// GPIO line of the push button by name (`GPIO17`) or `gpiochipN:OFFSET`; empty: none.
    pub button_line: String,
    /// The button pulls the line low when pressed.
    pub button_active_low: bool,
    /// Held this long, a press is a long press (mute), in ms.
    pub long_press_ms: u64,
    /// Two presses within this many ms are a double press.
    pub double_press_ms: u64,
    /// spidev device of an APA102 LED ring (`/dev/spidev0.0`); empty: no LEDs.
    pub leds_spi: String,
    /// LEDs on the ring.
    pub leds_count: u64,
    /// LED brightness, 0 to 31.
    pub leds_brightness: u64,
}

impl Default for RawVoice {
    fn default() -> Self {
        Self {
            enabled: false,
            capture_device: "default".into(),
            capture_channel: -1,
            playback_device: "default".into(),
            address: "speaker".into(),
            follow_up_ms: 5_000,
            listen_timeout_ms: 5_000,
            max_utterance_ms: 15_000,
            chime: true,
            timer_ring_secs: 60,
            echo_window_ms: 2_000,
            button_line: String::new(),
            button_active_low: true,
            long_press_ms: 1_000,
            double_press_ms: 400,
            leds_spi: String::new(),
            leds_count: 12,
            leds_brightness: 8,
        }
    }
}

/// Resolved `[voice]`.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    /// Run the loop in `serve`.
    pub enabled: bool,
    /// Capture device.
    pub capture_device: String,
    /// Capture channel; `None`: mix all.
    pub capture_channel: Option<usize>,
    /// Playback device.
    pub playback_device: String,
    /// Conversation address on `local`.
    pub address: String,
    /// Follow-up window (zero: off).
    pub follow_up: Duration,
    /// Wait for speech after the wake word.
    pub listen_timeout: Duration,
    /// Longest utterance.
    pub max_utterance: Duration,
    /// Chimes on.
    pub chime: bool,
    /// Longest ringing of a timer.
    pub timer_ring: Duration,
    /// Echo window for self-wake suppression.
    pub echo_window: Duration,
    /// Button line, if any.
    pub button_line: Option<String>,
    /// Button is active low.
    pub button_active_low: bool,
    /// Long press threshold.
    pub long_press: Duration,
    /// Double press window.
    pub double_press: Duration,
    /// LED ring spidev, if any.
    pub leds_spi: Option<String>,
    /// LEDs on the ring.
    pub leds_count: usize,
    /// LED brightness 0..=31.
    pub leds_brightness: u8,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        resolve_voice(RawVoice::default()).unwrap_or_else(|_| Self {
            enabled: false,
            capture_device: "default".into(),
            capture_channel: None,
            playback_device: "default".into(),
            address: "speaker".into(),
            follow_up: Duration::from_secs(5),
            listen_timeout: Duration::from_secs(5),
            max_utterance: Duration::from_secs(15),
            chime: true,
            timer_ring: Duration::from_secs(60),
            echo_window: Duration::from_secs(2),
            button_line: None,
            button_active_low: true,
            long_press: Duration::from_secs(1),
            double_press: Duration::from_millis(400),
            leds_spi: None,
            leds_count: 12,
            leds_brightness: 8,
        })
    }
}

fn range(key: &'static str, v: u64, lo: u64, hi: u64) -> Result<u64, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::Key {
            key: key.into(),
            message: format!("{v} is outside {lo}..={hi}"),
        })
    }
}

fn non_empty(key: &'static str, v: String) -> Result<String, ConfigError> {
    if v.trim().is_empty() {
        Err(ConfigError::Key {
            key: key.into(),
            message: "must not be empty".into(),
        })
    } else {
        Ok(v.trim().to_owned())
    }
}

/// Check and type `[voice]`.
pub fn resolve_voice(raw: RawVoice) -> Result<VoiceConfig, ConfigError> {
    let capture_channel = match raw.capture_channel {
        -1 => None,
        c @ 0..=63 => usize::try_from(c).ok(),
        c => {
            return Err(ConfigError::Key {
                key: "voice.capture_channel".into(),
                message: format!("{c} is not a channel (0 to 63, or -1 to mix all)"),
            })
        }
    };
    let ms = |key, v, lo, hi| range(key, v, lo, hi).map(Duration::from_millis);
    Ok(VoiceConfig {
        enabled: raw.enabled,
        capture_device: non_empty("voice.capture_device", raw.capture_device)?,
        capture_channel,
        playback_device: non_empty("voice.playback_device", raw.playback_device)?,
        address: non_empty("voice.address", raw.address)?,
        follow_up: ms("voice.follow_up_ms", raw.follow_up_ms, 0, 60_000)?,
        listen_timeout: ms(
            "voice.listen_timeout_ms",
            raw.listen_timeout_ms,
            500,
            60_000,
        )?,
        max_utterance: ms(
            "voice.max_utterance_ms",
            raw.max_utterance_ms,
            1_000,
            120_000,
        )?,
        chime: raw.chime,
        timer_ring: Duration::from_secs(range(
            "voice.timer_ring_secs",
            raw.timer_ring_secs,
            1,
            3_600,
        )?),
        echo_window: ms("voice.echo_window_ms", raw.echo_window_ms, 0, 10_000)?,
        button_line: Some(raw.button_line.trim().to_owned()).filter(|s| !s.is_empty()),
        button_active_low: raw.button_active_low,
        long_press: ms("voice.long_press_ms", raw.long_press_ms, 200, 10_000)?,
        double_press: ms("voice.double_press_ms", raw.double_press_ms, 100, 2_000)?,
        leds_spi: Some(raw.leds_spi.trim().to_owned()).filter(|s| !s.is_empty()),
        leds_count: usize::try_from(range("voice.leds_count", raw.leds_count, 1, 256)?)
            .unwrap_or(12),
        leds_brightness: u8::try_from(range("voice.leds_brightness", raw.leds_brightness, 0, 31)?)
            .unwrap_or(8),
    })
}
