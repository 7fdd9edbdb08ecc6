//! The LEDs of the local voice channel: one [`LedState`] at a time, shown by whatever is fitted.
//!
//! - [`Leds`] is what the voice loop sees: [`Leds::show`] the state it is in; it returns at
//!   once (animations and device writes run on a thread of their own).
//! - [`Apa102`]: an APA102/SK9822 ring (the ReSpeaker 2-, 4- and 6-mic HATs: 3 or 12 LEDs)
//!   written through Linux spidev. The bytes on the wire come from the pure [`frame`], the
//!   colours of each state from the pure [`pattern`].
//! - [`GpioLed`]: a single LED on a GPIO line (on while busy, blinking while muted).
//! - [`SimulatedLeds`] records the states shown (tests); [`NoLeds`] shows nothing.
//!
//! This module knows nothing about why a state is shown; a failing LED never fails the voice
//! loop (write errors are logged, once).

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use gpiocdev::line::Value;

use super::button::{find_line, LineError};

/// The most LEDs an [`Apa102`] ring may have (a frame stays well below spidev's 4096-byte
/// transfer limit).
pub const MAX_LEDS: usize = 1_000;
/// The SPI clock asked for: what the ReSpeaker drivers use, safe for APA102 and SK9822.
const SPI_HZ: u32 = 8_000_000;
/// One step of the [`LedState::Thinking`] spin.
const SPIN_STEP: Duration = Duration::from_millis(100);
/// Half a period of the [`LedState::Error`] blink on a ring.
const ERROR_BLINK: Duration = Duration::from_millis(400);

const OFF: (u8, u8, u8) = (0, 0, 0);
const BLUE: (u8, u8, u8) = (0, 0, 255);
const CYAN: (u8, u8, u8) = (0, 255, 255);
const CYAN_TAIL: (u8, u8, u8) = (0, 80, 80);
const CYAN_FAINT: (u8, u8, u8) = (0, 20, 20);
const GREEN: (u8, u8, u8) = (0, 255, 0);
const RED: (u8, u8, u8) = (255, 0, 0);
const ORANGE: (u8, u8, u8) = (255, 64, 0);
const WARM_WHITE: (u8, u8, u8) = (255, 180, 60);

/// What the assistant is doing, as the LEDs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedState {
    /// Waiting for the wake word or the button (off).
    Idle,
    /// Recording what is said (blue).
    Listening,
    /// Transcribing and working out the answer (spinning cyan).
    Thinking,
    /// Speaking the answer (green).
    Speaking,
    /// The microphone is muted (red).
    Muted,
    /// Something failed (blinking orange).
    Error,
    /// Playing an announcement, a timer or a reminder (warm white).
    Announcing,
}

impl LedState {
    /// Every state, in declaration order.
    pub const ALL: [LedState; 7] = [
        LedState::Idle,
        LedState::Listening,
        LedState::Thinking,
        LedState::Speaking,
        LedState::Muted,
        LedState::Error,
        LedState::Announcing,
    ];

    /// A short lowercase name for logs and the API (`idle`, `listening`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            LedState::Idle => "idle",
            LedState::Listening => "listening",
            LedState::Thinking => "thinking",
            LedState::Speaking => "speaking",
            LedState::Muted => "muted",
            LedState::Error => "error",
            LedState::Announcing => "announcing",
        }
    }
}

/// LEDs as the voice loop sees them.
pub trait Leds: Send {
    /// Show `state` from now on. Returns at once; showing the state already shown does nothing.
    fn show(&mut self, state: LedState);
}

/// No LEDs: [`Leds::show`] does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLeds;

impl Leds for NoLeds {
    fn show(&mut self, _state: LedState) {}
}

/// LEDs that record the states shown, for tests: each change is appended to a shared log
/// (showing the state already shown is not a change).
#[derive(Debug, Clone, Default)]
pub struct SimulatedLeds {
    log: Arc<Mutex<Vec<LedState>>>,
}

impl SimulatedLeds {
    /// LEDs with an empty log, showing [`LedState::Idle`] (not logged).
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle on the log of changes; it stays valid after the LEDs are moved or dropped.
    pub fn log(&self) -> Arc<Mutex<Vec<LedState>>> {
        Arc::clone(&self.log)
    }
}

impl Leds for SimulatedLeds {
    fn show(&mut self, state: LedState) {
        let mut log = lock(&self.log);
        if log.last().copied().unwrap_or(LedState::Idle) != state {
            log.push(state);
        }
    }
}

/// Why the LEDs could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LedError {
    /// The spidev device could not be opened.
    #[error("LED ring {path}: {reason}")]
    Open {
        /// The device (`/dev/spidev0.0`).
        path: String,
        /// Why, with a hint how to fix it.
        reason: String,
    },
    /// The first frame could not be written to the device.
    #[error("LED ring {path}: writing a frame failed: {reason}")]
    Write {
        /// The device.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// The ring size is out of range.
    #[error("LED ring {path}: {leds} LEDs is not a ring size this supports (1 to {MAX_LEDS})")]
    BadCount {
        /// The device.
        path: String,
        /// The size asked for.
        leds: usize,
    },
    /// A GPIO LED's line could not be found or requested.
    #[error("LED line {line}: {reason}")]
    Line {
        /// The line as configured (`GPIO27`, `gpiochip0:27`).
        line: String,
        /// Why.
        reason: LineError,
    },
    /// The thread that drives the LEDs could not be started.
    #[error("LEDs {device}: cannot start the LED thread: {reason}")]
    Thread {
        /// The device or line.
        device: String,
        /// What the OS said.
        reason: String,
    },
}

/// The bytes of one APA102/SK9822 update for `colors` (red, green, blue per LED, first LED
/// first) at global `brightness` (0 to 31; more is taken as 31).
///
/// - start frame: 32 zero bits;
/// - one 32-bit frame per LED: `0b111` and the 5-bit brightness, then blue, green, red;
/// - reset frame: 32 zero bits (an SK9822 only latches the new colours on it; an APA102 takes
///   it as extra clock);
/// - end frame: n/2 more clock edges, rounded up to whole bytes of zeros (each LED delays the
///   data by half a clock, so the last LED only gets its bits after them). Zeros rather than
///   the datasheet's ones, which an SK9822 could take as the start of a white LED frame.
pub fn frame(colors: &[(u8, u8, u8)], brightness: u8) -> Vec<u8> {
    let n = colors.len();
    let mut out = Vec::with_capacity(4 + 4 * n + 4 + n.div_ceil(16));
    out.extend_from_slice(&[0; 4]);
    let header = 0xE0 | brightness.min(31);
    for &(r, g, b) in colors {
        out.extend_from_slice(&[header, b, g, r]);
    }
    out.extend_from_slice(&[0; 4]);
    out.resize(out.len() + n.div_ceil(16), 0);
    out
}

/// The colours (red, green, blue) of a ring of `leds` showing `state` at animation `step` (0
/// when the state is entered, then one more each [`ring_period`]).
pub fn pattern(state: LedState, leds: usize, step: u64) -> Vec<(u8, u8, u8)> {
    let all = |c| vec![c; leds];
    match state {
        LedState::Idle => all(OFF),
        LedState::Listening => all(BLUE),
        LedState::Thinking => {
            let mut v = all(OFF);
            if leds > 0 {
                let head = usize::try_from(step % leds as u64).unwrap_or(0);
                // Tail first, so on a tiny ring the head wins.
                for (behind, color) in [(2, CYAN_FAINT), (1, CYAN_TAIL), (0, CYAN)] {
                    v[(head + 3 * leds - behind) % leds] = color;
                }
            }
            v
        }
        LedState::Speaking => all(GREEN),
        LedState::Muted => all(RED),
        LedState::Error => all(if step.is_multiple_of(2) { ORANGE } else { OFF }),
        LedState::Announcing => all(WARM_WHITE),
    }
}

/// How often a ring redraws `state` (`None`: a static frame).
pub fn ring_period(state: LedState) -> Option<Duration> {
    match state {
        LedState::Thinking => Some(SPIN_STEP),
        LedState::Error => Some(ERROR_BLINK),
        _ => None,
    }
}

/// Whether a single LED is lit for `state` at animation `step` (one step per [`single_period`]).
pub fn single_level(state: LedState, step: u64) -> bool {
    match state {
        LedState::Idle => false,
        LedState::Listening | LedState::Thinking | LedState::Speaking | LedState::Announcing => {
            true
        }
        LedState::Muted | LedState::Error => step.is_multiple_of(2),
    }
}

/// How often a single LED toggles for `state` (slow blink muted, fast blink on error).
pub fn single_period(state: LedState) -> Option<Duration> {
    match state {
        LedState::Muted => Some(Duration::from_millis(1_000)),
        LedState::Error => Some(Duration::from_millis(200)),
        _ => None,
    }
}

/// Lock, ignoring poisoning (the data is plain state, valid after any panic).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the LED thread is asked to show.
#[derive(Debug)]
struct Wanted {
    state: LedState,
    changed: bool,
    stop: bool,
}

/// A thread that draws the latest wanted state, redrawing animated states every period.
/// Bounded by construction: only the latest state is kept.
#[derive(Debug)]
struct Animator {
    device: String,
    wanted: Arc<(Mutex<Wanted>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Animator {
    /// Start the thread; `draw` has already drawn [`LedState::Idle`] and draws it again on stop.
    fn spawn<D>(
        device: &str,
        period: fn(LedState) -> Option<Duration>,
        draw: D,
    ) -> Result<Self, LedError>
    where
        D: FnMut(LedState, u64) -> Result<(), String> + Send + 'static,
    {
        let wanted = Arc::new((
            Mutex::new(Wanted {
                state: LedState::Idle,
                changed: false,
                stop: false,
            }),
            Condvar::new(),
        ));
        let thread = std::thread::Builder::new()
            .name("leds".into())
            .spawn({
                let wanted = Arc::clone(&wanted);
                let device = device.to_owned();
                move || animate(&wanted, period, draw, &device)
            })
            .map_err(|e| LedError::Thread {
                device: device.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            device: device.to_owned(),
            wanted,
            thread: Some(thread),
        })
    }

    fn show(&self, state: LedState) {
        let mut w = lock(&self.wanted.0);
        if w.state != state {
            w.state = state;
            w.changed = true;
            self.wanted.1.notify_one();
        }
    }
}

impl Drop for Animator {
    fn drop(&mut self) {
        lock(&self.wanted.0).stop = true;
        self.wanted.1.notify_one();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!(device = %self.device, "LED thread panicked");
            }
        }
    }
}

/// The LED thread: wait for a change or the next animation step, draw; on stop, draw idle (off).
fn animate<D>(
    wanted: &(Mutex<Wanted>, Condvar),
    period: fn(LedState) -> Option<Duration>,
    mut draw: D,
    device: &str,
) where
    D: FnMut(LedState, u64) -> Result<(), String>,
{
    let (mutex, condvar) = wanted;
    let mut current = LedState::Idle;
    let mut step = 0u64;
    let mut failing = false;
    let mut draw_logged = |state: LedState, step: u64| match draw(state, step) {
        Ok(()) if failing => {
            failing = false;
            tracing::info!(device, "LEDs writable again");
        }
        Ok(()) => {}
        Err(e) if !failing => {
            failing = true;
            tracing::warn!(device, error = %e, state = state.as_str(), "LED update failed");
        }
        Err(_) => {}
    };
    loop {
        let guard = lock(mutex);
        let waiting = |w: &mut Wanted| !w.changed && !w.stop;
        let mut guard = match period(current) {
            Some(p) => match condvar.wait_timeout_while(guard, p, waiting) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            },
            None => condvar
                .wait_while(guard, waiting)
                .unwrap_or_else(PoisonError::into_inner),
        };
        let stop = guard.stop;
        let next = if guard.changed {
            guard.changed = false;
            Some(guard.state)
        } else {
            None
        };
        drop(guard);
        match next {
            Some(state) => {
                current = state;
                step = 0;
                draw_logged(current, step);
            }
            None if !stop => {
                step = step.wrapping_add(1);
                draw_logged(current, step);
            }
            None => {}
        }
        if stop {
            break;
        }
    }
    draw_logged(LedState::Idle, 0);
}

/// An APA102/SK9822 LED ring on a spidev device (ReSpeaker 2-mic: 3 LEDs; 4- and 6-mic: 12).
///
/// Frames are written with plain `write(2)` (spidev does half-duplex writes); a thread animates
/// the spinning and blinking states. Dropping the ring turns it off.
#[derive(Debug)]
pub struct Apa102 {
    path: String,
    leds: usize,
    animator: Animator,
}

impl Apa102 {
    /// Open the ring on `path` (`/dev/spidev0.0`) with `leds` LEDs at global `brightness`
    /// (0 to 31, more is 31), and turn it off.
    pub fn open(path: &str, leds: usize, brightness: u8) -> Result<Self, LedError> {
        if leds == 0 || leds > MAX_LEDS {
            return Err(LedError::BadCount {
                path: path.to_owned(),
                leds,
            });
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| LedError::Open {
                path: path.to_owned(),
                reason: open_reason(&e),
            })?;
        configure_spi(&file, path);
        let brightness = brightness.min(31);
        file.write_all(&frame(&pattern(LedState::Idle, leds, 0), brightness))
            .map_err(|e| LedError::Write {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let animator = Animator::spawn(path, ring_period, move |state, step| {
            file.write_all(&frame(&pattern(state, leds, step), brightness))
                .map_err(|e| e.to_string())
        })?;
        tracing::info!(path, leds, brightness, "LED ring opened");
        Ok(Self {
            path: path.to_owned(),
            leds,
            animator,
        })
    }

    /// The spidev device.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// LEDs on the ring.
    pub fn leds(&self) -> usize {
        self.leds
    }
}

impl Leds for Apa102 {
    fn show(&mut self, state: LedState) {
        self.animator.show(state);
    }
}

/// Why opening a spidev device failed, with the fix.
fn open_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such device (SPI must be enabled: on a Raspberry Pi \
             put `dtparam=spi=on` in /boot/firmware/config.txt and reboot)"
            .into(),
        std::io::ErrorKind::PermissionDenied => "permission denied (add the user to the `spi` \
             group: `sudo usermod -aG spi USER`, then log in again)"
            .into(),
        _ => e.to_string(),
    }
}

/// Ask for SPI mode 0 at [`SPI_HZ`]. Best effort: the device's defaults usually work, and a
/// plain file (tests) has no SPI settings.
fn configure_spi(file: &File, path: &str) {
    use std::os::fd::AsRawFd;
    // _IOW('k', 1, __u8) and _IOW('k', 4, __u32) from <linux/spi/spidev.h>.
    const SPI_IOC_WR_MODE: u32 = 0x4001_6b01;
    const SPI_IOC_WR_MAX_SPEED_HZ: u32 = 0x4004_6b04;
    let mode: u8 = 0;
    let hz: u32 = SPI_HZ;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for the duration of the calls, and each argument points to a live
    // value of the size its request encodes (u8, u32), which the kernel only reads.
    let rc_mode = unsafe { libc::ioctl(fd, SPI_IOC_WR_MODE as _, &mode as *const u8) };
    // SAFETY: as above.
    let rc_hz = unsafe { libc::ioctl(fd, SPI_IOC_WR_MAX_SPEED_HZ as _, &hz as *const u32) };
    if rc_mode != 0 || rc_hz != 0 {
        tracing::debug!(
            path,
            error = %std::io::Error::last_os_error(),
            "SPI mode/speed not set; using the device's defaults"
        );
    }
}

/// A single LED on a GPIO line: lit while listening, thinking, speaking or announcing; slow
/// blink while muted, fast blink on error; off when idle. Dropping it turns it off.
#[derive(Debug)]
pub struct GpioLed {
    line: String,
    animator: Animator,
}

impl GpioLed {
    /// Request `line` (a name such as `GPIO27`, looked up across all chips, or
    /// `gpiochipN:OFFSET`) as an output, off. `active_low`: the LED lights when the line is low.
    pub fn open(line: &str, active_low: bool) -> Result<Self, LedError> {
        let line_error = |reason| LedError::Line {
            line: line.to_owned(),
            reason,
        };
        let found = find_line(line).map_err(line_error)?;
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(found.chip.clone())
            .with_consumer("local-assistant led")
            .with_line(found.offset)
            .as_output(Value::Inactive);
        if active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(|e| {
            line_error(LineError::Request {
                chip: found.chip.clone(),
                reason: e.to_string(),
            })
        })?;
        let animator = Animator::spawn(line, single_period, move |state, step| {
            let value = if single_level(state, step) {
                Value::Active
            } else {
                Value::Inactive
            };
            request.set_lone_value(value).map_err(|e| e.to_string())
        })?;
        Ok(Self {
            line: line.to_owned(),
            animator,
        })
    }

    /// The line as configured.
    pub fn line(&self) -> &str {
        &self.line
    }
}

impl Leds for GpioLed {
    fn show(&mut self, state: LedState) {
        self.animator.show(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_start_leds_reset_and_end_byte_for_byte() {
        let bytes = frame(&[(0x11, 0x22, 0x33), (0xAA, 0xBB, 0xCC)], 31);
        assert_eq!(
            bytes,
            vec![
                0x00, 0x00, 0x00, 0x00, // start
                0xFF, 0x33, 0x22, 0x11, // LED 1: brightness 31, blue, green, red
                0xFF, 0xCC, 0xBB, 0xAA, // LED 2
                0x00, 0x00, 0x00, 0x00, // reset (SK9822 latch)
                0x00, // end: 2 LEDs need 1 more clock edge, one byte
            ]
        );
    }

    #[test]
    fn frame_brightness_is_five_bits_under_the_111_marker() {
        assert_eq!(frame(&[(1, 2, 3)], 0)[4], 0xE0);
        assert_eq!(frame(&[(1, 2, 3)], 8)[4], 0xE8);
        assert_eq!(frame(&[(1, 2, 3)], 31)[4], 0xFF);
        assert_eq!(frame(&[(1, 2, 3)], 200)[4], 0xFF, "clamped to 31");
    }

    #[test]
    fn frame_end_gives_half_a_clock_per_led_in_whole_bytes() {
        for (n, end) in [(1, 1), (3, 1), (12, 1), (16, 1), (17, 2), (32, 2), (33, 3)] {
            let bytes = frame(&vec![(9, 9, 9); n], 5);
            assert_eq!(bytes.len(), 4 + 4 * n + 4 + end, "{n} LEDs");
            assert!(bytes[4 + 4 * n..].iter().all(|&b| b == 0), "{n} LEDs");
            assert!(bytes[4..4 + 4 * n]
                .chunks(4)
                .all(|led| led == [0xE5, 9, 9, 9]));
        }
        assert_eq!(frame(&[], 31), vec![0; 8]);
    }

    #[test]
    fn every_state_has_one_colour_per_led() {
        for state in LedState::ALL {
            for leds in [1, 3, 12] {
                for step in 0..30 {
                    assert_eq!(pattern(state, leds, step).len(), leds, "{state:?}");
                }
            }
        }
    }

    #[test]
    fn states_have_their_colours() {
        assert!(pattern(LedState::Idle, 12, 0).iter().all(|&c| c == OFF));
        assert!(pattern(LedState::Listening, 12, 0)
            .iter()
            .all(|&c| c == BLUE));
        assert!(pattern(LedState::Speaking, 12, 0)
            .iter()
            .all(|&c| c == GREEN));
        assert!(pattern(LedState::Muted, 12, 0).iter().all(|&c| c == RED));
        assert!(pattern(LedState::Announcing, 12, 0)
            .iter()
            .all(|&c| c == WARM_WHITE));
        let names: std::collections::HashSet<_> =
            LedState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), LedState::ALL.len());
    }

    #[test]
    fn static_states_do_not_animate() {
        for state in LedState::ALL {
            if ring_period(state).is_none() {
                assert_eq!(pattern(state, 12, 0), pattern(state, 12, 7), "{state:?}");
            }
        }
    }

    #[test]
    fn thinking_spins_one_led_per_step_and_wraps() {
        let head = |step| {
            pattern(LedState::Thinking, 12, step)
                .iter()
                .position(|&c| c == CYAN)
        };
        assert_eq!(head(0), Some(0));
        assert_eq!(head(1), Some(1));
        assert_eq!(head(11), Some(11));
        assert_eq!(head(12), Some(0));
        let p = pattern(LedState::Thinking, 12, 0);
        assert_eq!((p[11], p[10], p[1]), (CYAN_TAIL, CYAN_FAINT, OFF));
        assert_eq!(pattern(LedState::Thinking, 1, 5), vec![CYAN]);
        assert_eq!(pattern(LedState::Thinking, 2, 1), vec![CYAN_TAIL, CYAN]);
    }

    #[test]
    fn error_blinks() {
        assert!(pattern(LedState::Error, 3, 0).iter().all(|&c| c == ORANGE));
        assert!(pattern(LedState::Error, 3, 1).iter().all(|&c| c == OFF));
        assert!(ring_period(LedState::Error).is_some());
    }

    #[test]
    fn single_led_is_on_while_busy_and_blinks_when_muted() {
        assert!(!single_level(LedState::Idle, 0));
        for busy in [
            LedState::Listening,
            LedState::Thinking,
            LedState::Speaking,
            LedState::Announcing,
        ] {
            assert!(single_level(busy, 0) && single_level(busy, 1));
            assert!(single_period(busy).is_none());
        }
        assert_ne!(
            single_level(LedState::Muted, 0),
            single_level(LedState::Muted, 1)
        );
        assert!(single_period(LedState::Muted).is_some());
    }

    #[test]
    fn simulated_leds_log_changes_only() {
        let mut leds = SimulatedLeds::new();
        let log = leds.log();
        leds.show(LedState::Idle);
        leds.show(LedState::Listening);
        leds.show(LedState::Listening);
        leds.show(LedState::Thinking);
        leds.show(LedState::Speaking);
        drop(leds);
        let seen = lock(&log).clone();
        assert_eq!(
            seen,
            vec![LedState::Listening, LedState::Thinking, LedState::Speaking]
        );
        NoLeds.show(LedState::Error);
    }

    #[test]
    fn opening_a_missing_spidev_names_it_and_says_to_enable_spi() {
        let Err(e) = Apa102::open("/dev/spidev9.9-missing", 12, 8) else {
            panic!("opened a missing device");
        };
        let text = e.to_string();
        assert!(text.contains("/dev/spidev9.9-missing"), "{text}");
        assert!(text.contains("dtparam=spi=on"), "{text}");
    }

    #[test]
    fn ring_size_is_checked() {
        assert!(matches!(
            Apa102::open("/dev/null", 0, 8),
            Err(LedError::BadCount { leds: 0, .. })
        ));
        assert!(matches!(
            Apa102::open("/dev/null", MAX_LEDS + 1, 8),
            Err(LedError::BadCount { .. })
        ));
    }

    #[test]
    fn ring_writes_off_then_the_state_then_off_when_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("spidev");
        std::fs::write(&path, b"").expect("create");
        let path = path.to_str().expect("utf-8 path");
        let mut ring = Apa102::open(path, 3, 40).expect("open");
        assert_eq!((ring.path(), ring.leds()), (path, 3));
        ring.show(LedState::Speaking);
        drop(ring);
        let written = std::fs::read(path).expect("read");
        let off = frame(&[OFF; 3], 31);
        let speaking = frame(&[GREEN; 3], 31);
        assert_eq!(written.len() % off.len(), 0);
        let frames: Vec<_> = written.chunks(off.len()).collect();
        assert_eq!(frames, vec![&off[..], &speaking[..], &off[..]]);
    }

    #[test]
    fn opening_a_missing_gpio_led_names_the_line() {
        let Err(e) = GpioLed::open("NO_SUCH_LINE_XYZ", false) else {
            panic!("NO_SUCH_LINE_XYZ opened");
        };
        let text = e.to_string();
        assert!(text.starts_with("LED line NO_SUCH_LINE_XYZ: "), "{text}");
    }
}
