//! The push button of the local voice channel: edges in, gestures ([`ButtonEvent`]) out.
//!
//! - [`Classifier`] is the pure logic: debounced edges with times on the caller's clock become
//!   a press, a long press or a double press. Every [`Button`] runs it, so the simulated twin
//!   exercises exactly what the hardware does.
//! - [`Button`] is what the voice loop sees: [`Button::poll`] every ~20 ms with the loop's own
//!   stream clock (ms since the loop started; for file-driven runs the position in the input
//!   file, not wall time).
//! - [`GpioButton`] reads a GPIO line through the Linux GPIO character device (found by line
//!   name across all chips, or as `gpiochipN:OFFSET`); [`SimulatedButton`] replays a script of
//!   edges (tests, `voice --button-at`); [`NoButton`] never reports anything.
//!
//! This module knows nothing about what a gesture means (talk, mute, stop): the voice loop
//! decides. It never blocks the caller: the GPIO line is read on its own thread.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, Offset};

/// Edges closer than this to the previous accepted edge are contact bounce and ignored (but
/// the level they leave is applied once the window has passed).
pub const DEBOUNCE_MS: u64 = 20;
/// Default hold time of a long press (matches `voice.long_press_ms`).
pub const DEFAULT_LONG_PRESS_MS: u64 = 1_000;
/// Default double-press window (matches `voice.double_press_ms`).
pub const DEFAULT_DOUBLE_MS: u64 = 400;

/// How long a scripted tap is held down ([`SimulatedButton::presses`]).
const TAP_MS: u64 = 80;
/// How much longer than the threshold a scripted long press is held.
const LONG_EXTRA_MS: u64 = 200;
/// Edges buffered between the GPIO thread and [`GpioButton::poll`].
const EDGE_QUEUE: usize = 256;
/// How often the GPIO thread looks at its stop flag while no edge comes.
const GPIO_WAIT: Duration = Duration::from_millis(100);

/// A gesture on the button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ButtonEvent {
    /// A short press, reported once the double-press window has passed without a second one.
    Press,
    /// Held for the long-press time; reported while still held (the release adds nothing).
    LongPress,
    /// A second press started within the double-press window after the first was released;
    /// reported when the second press goes down (its release and hold add nothing).
    DoublePress,
}

impl ButtonEvent {
    /// A short lowercase name for logs (`press`, `long_press`, `double_press`).
    pub fn as_str(self) -> &'static str {
        match self {
            ButtonEvent::Press => "press",
            ButtonEvent::LongPress => "long_press",
            ButtonEvent::DoublePress => "double_press",
        }
    }
}

/// A recognised gesture and when it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonPress {
    /// What the user did.
    pub event: ButtonEvent,
    /// When the gesture began (the first press went down), on the caller's stream clock in ms.
    /// It is recognised later: a press after the double-press window, a long press after the
    /// hold time.
    pub at_ms: u64,
}

/// A short press waiting for the double-press window to pass.
#[derive(Debug, Clone, Copy)]
struct PendingPress {
    down_at: u64,
    up_at: u64,
}

/// Turns button edges into gestures: debounce, then press / long press / double press.
///
/// Pure logic on the caller's clock: nothing here reads a clock or sleeps. Feed every edge to
/// [`Classifier::edge`] and call [`Classifier::tick`] regularly so time-based gestures (a press
/// whose double-press window has passed, a long press still held) come out without waiting for
/// the next edge. Times never run backwards inside: an edge stamped earlier than a time already
/// seen is taken as happening at that time, a tick earlier than one already seen does nothing.
#[derive(Debug, Clone)]
pub struct Classifier {
    long_press_ms: u64,
    double_ms: u64,
    /// The latest time seen by `edge` or `tick`.
    now: u64,
    /// The debounced level.
    pressed: bool,
    /// When the debounced level last changed.
    accepted_at: Option<u64>,
    /// The raw level of the last edge (may differ from `pressed` inside the debounce window).
    raw: bool,
    /// When the current press went down.
    down_at: u64,
    /// The current press already reported its gesture (long press, or second of a double).
    consumed: bool,
    pending: Option<PendingPress>,
}

impl Classifier {
    /// A classifier for a button released at start. `long_press_ms`: hold time of a long press;
    /// `double_ms`: the longest gap between the first release and the second press of a double
    /// press (0: no double presses, a press is reported at its release).
    pub fn new(long_press_ms: u64, double_ms: u64) -> Self {
        Self {
            long_press_ms,
            double_ms,
            now: 0,
            pressed: false,
            accepted_at: None,
            raw: false,
            down_at: 0,
            consumed: false,
            pending: None,
        }
    }

    /// Whether the button is held down now (debounced).
    pub fn is_pressed(&self) -> bool {
        self.pressed
    }

    /// The button went down (`pressed`) or up at `at_ms`; returns the gestures this completes,
    /// including time-based ones that fell due before `at_ms`.
    pub fn edge(&mut self, pressed: bool, at_ms: u64) -> Vec<ButtonPress> {
        let at = at_ms.max(self.now);
        self.now = at;
        let mut out = Vec::new();
        self.advance(at, &mut out);
        self.raw = pressed;
        let bouncing = self
            .accepted_at
            .is_some_and(|a| at < a.saturating_add(DEBOUNCE_MS));
        if pressed != self.pressed && !bouncing {
            self.apply(pressed, at, &mut out);
        }
        out
    }

    /// Time has reached `now_ms`: returns the gestures that fell due (a press whose double-press
    /// window passed, a long press still held, a level that settled after bouncing).
    pub fn tick(&mut self, now_ms: u64) -> Vec<ButtonPress> {
        let mut out = Vec::new();
        if now_ms < self.now {
            return out;
        }
        self.now = now_ms;
        self.advance(now_ms, &mut out);
        out
    }

    /// Settle a level left by bouncing, then run the timers up to `now`.
    fn advance(&mut self, now: u64, out: &mut Vec<ButtonPress>) {
        if self.raw != self.pressed {
            if let Some(accepted) = self.accepted_at {
                let settled = accepted.saturating_add(DEBOUNCE_MS);
                if now >= settled {
                    self.timers(settled, out);
                    self.apply(self.raw, settled, out);
                }
            }
        }
        self.timers(now, out);
    }

    /// Report what fell due at or before `now`.
    fn timers(&mut self, now: u64, out: &mut Vec<ButtonPress>) {
        if self.pressed && !self.consumed && now >= self.down_at.saturating_add(self.long_press_ms)
        {
            self.consumed = true;
            out.push(ButtonPress {
                event: ButtonEvent::LongPress,
                at_ms: self.down_at,
            });
        }
        if let Some(p) = self.pending {
            if now >= p.up_at.saturating_add(self.double_ms) {
                self.pending = None;
                out.push(ButtonPress {
                    event: ButtonEvent::Press,
                    at_ms: p.down_at,
                });
            }
        }
    }

    /// The debounced level changes to `pressed` at `at` (timers already run up to `at`).
    fn apply(&mut self, pressed: bool, at: u64, out: &mut Vec<ButtonPress>) {
        self.pressed = pressed;
        self.accepted_at = Some(at);
        if pressed {
            self.down_at = at;
            self.consumed = false;
            if let Some(first) = self.pending.take() {
                // Still pending, so within the window (timers ran up to `at`).
                self.consumed = true;
                out.push(ButtonPress {
                    event: ButtonEvent::DoublePress,
                    at_ms: first.down_at,
                });
            }
        } else if !self.consumed {
            if self.double_ms == 0 {
                out.push(ButtonPress {
                    event: ButtonEvent::Press,
                    at_ms: self.down_at,
                });
            } else {
                self.pending = Some(PendingPress {
                    down_at: self.down_at,
                    up_at: at,
                });
            }
        }
    }
}

/// A push button as the voice loop sees it.
pub trait Button: Send {
    /// The gestures recognised up to `now_ms`, the caller's stream clock (ms since the loop
    /// started). Called every ~20 ms; never blocks.
    fn poll(&mut self, now_ms: u64) -> Vec<ButtonPress>;

    /// Whether the button is held down (debounced) as of the last [`Button::poll`]: known at
    /// once, while the gesture it starts is recognised only later (a press once the
    /// double-press window has passed). The voice loop stops a ringing timer or an answer on it.
    fn is_down(&self) -> bool {
        false
    }
}

/// No button: [`Button::poll`] never reports anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoButton;

impl Button for NoButton {
    fn poll(&mut self, _now_ms: u64) -> Vec<ButtonPress> {
        Vec::new()
    }
}

/// The simulated twin of [`GpioButton`]: replays a script of edges on the caller's clock
/// through the same [`Classifier`] (tests, `voice --button-at SECONDS`).
#[derive(Debug, Clone)]
pub struct SimulatedButton {
    /// Edges not yet fed, in time order.
    edges: VecDeque<(bool, u64)>,
    classifier: Classifier,
}

impl SimulatedButton {
    /// A button that goes down (`true`) or up (`false`) at the given times in ms (sorted here;
    /// edges at equal times keep their order).
    pub fn new(mut edges: Vec<(bool, u64)>, long_press_ms: u64, double_ms: u64) -> Self {
        edges.sort_by_key(|&(_, at)| at);
        Self {
            edges: edges.into(),
            classifier: Classifier::new(long_press_ms, double_ms),
        }
    }

    /// A button that performs these gestures, each starting at its time in ms, with the default
    /// timing ([`DEFAULT_LONG_PRESS_MS`], [`DEFAULT_DOUBLE_MS`]).
    pub fn presses(gestures: &[(ButtonEvent, u64)]) -> Self {
        Self::presses_with(gestures, DEFAULT_LONG_PRESS_MS, DEFAULT_DOUBLE_MS)
    }

    /// [`SimulatedButton::presses`] with explicit timing. A press is held 80 ms; a long press
    /// `long_press_ms` + 200 ms; a double press is two 80 ms presses 80 ms apart (so
    /// `double_ms` must exceed 80 ms for it to classify as one). Gestures that overlap are
    /// classified as whatever their edges amount to.
    pub fn presses_with(
        gestures: &[(ButtonEvent, u64)],
        long_press_ms: u64,
        double_ms: u64,
    ) -> Self {
        let mut edges = Vec::with_capacity(gestures.len() * 4);
        for &(event, at) in gestures {
            match event {
                ButtonEvent::Press => {
                    edges.push((true, at));
                    edges.push((false, at.saturating_add(TAP_MS)));
                }
                ButtonEvent::LongPress => {
                    edges.push((true, at));
                    let held = long_press_ms.saturating_add(LONG_EXTRA_MS);
                    edges.push((false, at.saturating_add(held)));
                }
                ButtonEvent::DoublePress => {
                    edges.push((true, at));
                    edges.push((false, at.saturating_add(TAP_MS)));
                    edges.push((true, at.saturating_add(2 * TAP_MS)));
                    edges.push((false, at.saturating_add(3 * TAP_MS)));
                }
            }
        }
        Self::new(edges, long_press_ms, double_ms)
    }

    /// Edges of the script not yet reached by [`Button::poll`].
    pub fn remaining(&self) -> usize {
        self.edges.len()
    }
}

impl Button for SimulatedButton {
    fn poll(&mut self, now_ms: u64) -> Vec<ButtonPress> {
        let mut out = Vec::new();
        while let Some(&(pressed, at)) = self.edges.front() {
            if at > now_ms {
                break;
            }
            self.edges.pop_front();
            out.extend(self.classifier.edge(pressed, at));
        }
        out.extend(self.classifier.tick(now_ms));
        out
    }

    fn is_down(&self) -> bool {
        self.classifier.is_pressed()
    }
}

/// Why a GPIO line could not be found or requested (the line's role is added by the caller's
/// error: [`ButtonError`], or the LED's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// There is no `/dev/gpiochip*` at all.
    #[error(
        "no GPIO chip found (no /dev/gpiochip*; a button needs a board with GPIO such as a \
         Raspberry Pi or a Jetson)"
    )]
    NoChips,
    /// No chip has a line of that name.
    #[error(
        "line not found on {chips} (list the line names with `gpioinfo`, or write the line as \
         gpiochipN:OFFSET)"
    )]
    NotFound {
        /// The chips searched, comma separated.
        chips: String,
    },
    /// A chip could not be opened for lack of permission (the line may be on it).
    #[error(
        "permission denied on {} (add the user to the `gpio` group: `sudo usermod -aG gpio \
         USER`, then log in again)",
        chip.display()
    )]
    PermissionDenied {
        /// The chip's device.
        chip: PathBuf,
    },
    /// `gpiochipN:OFFSET` names a chip that does not exist.
    #[error("{} does not exist (see `gpiodetect` for the chips there are)", chip.display())]
    ChipMissing {
        /// The chip's device.
        chip: PathBuf,
    },
    /// `gpiochipN:OFFSET` with an offset the chip does not have.
    #[error("{} has {lines} lines, no line {offset}", chip.display())]
    NoSuchOffset {
        /// The chip's device.
        chip: PathBuf,
        /// The offset asked for.
        offset: Offset,
        /// The lines the chip has.
        lines: u32,
    },
    /// `chip:offset` that does not parse.
    #[error("not a line name or gpiochipN:OFFSET ({reason})")]
    BadSpec {
        /// What is wrong with it.
        reason: String,
    },
    /// Another program holds the line; retrying once it lets go may help.
    #[error("already in use by {consumer:?} (stop the other program, or pick another line)")]
    Busy {
        /// The consumer name the other program gave.
        consumer: String,
    },
    /// The kernel refused the request or a chip failed otherwise.
    #[error("request on {} failed: {reason}", chip.display())]
    Request {
        /// The chip's device.
        chip: PathBuf,
        /// What the kernel said.
        reason: String,
    },
}

impl LineError {
    /// Whether trying again later may succeed (the line was busy, or the kernel refused).
    pub fn retry_may_help(&self) -> bool {
        matches!(self, LineError::Busy { .. } | LineError::Request { .. })
    }
}

/// Why the GPIO button could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ButtonError {
    /// The line could not be found or requested.
    #[error("button line {line}: {reason}")]
    Line {
        /// The line as configured (`GPIO17`, `gpiochip4:17`).
        line: String,
        /// Why.
        reason: LineError,
    },
    /// The thread that reads the line's edges could not be started.
    #[error("button line {line}: cannot start the edge reader thread: {reason}")]
    Thread {
        /// The line as configured.
        line: String,
        /// What the OS said.
        reason: String,
    },
}

impl ButtonError {
    /// Whether trying again later may succeed.
    pub fn retry_may_help(&self) -> bool {
        match self {
            ButtonError::Line { reason, .. } => reason.retry_may_help(),
            ButtonError::Thread { .. } => true,
        }
    }
}

/// A GPIO line located on its chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GpioLine {
    /// The chip's device (`/dev/gpiochip0`).
    pub(crate) chip: PathBuf,
    /// The line's offset on the chip.
    pub(crate) offset: Offset,
}

/// Whether a gpiocdev error is the OS refusing access.
fn is_permission_denied(e: &gpiocdev::Error) -> bool {
    match e {
        gpiocdev::Error::Os(errno) => {
            std::io::Error::from_raw_os_error(errno.0).kind()
                == std::io::ErrorKind::PermissionDenied
        }
        _ => false,
    }
}

/// What opening or asking `chip` failed with, as a [`LineError`].
fn chip_error(chip: &Path, e: &gpiocdev::Error) -> LineError {
    if is_permission_denied(e) {
        LineError::PermissionDenied {
            chip: chip.to_path_buf(),
        }
    } else {
        LineError::Request {
            chip: chip.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// Fail with [`LineError::Busy`] when another program holds the line.
fn check_free(chip: &gpiocdev::Chip, offset: Offset) -> Result<(), LineError> {
    match chip.line_info(offset) {
        Ok(info) if info.used => Err(LineError::Busy {
            consumer: info.consumer,
        }),
        _ => Ok(()),
    }
}

/// Find a line by name across all chips (`GPIO17`; the first chip that has it wins, and an
/// exact name beats one that only matches ignoring case) or as `gpiochipN:OFFSET`
/// (`/dev/gpiochipN:OFFSET` works too). Never hard-codes a chip: the Pi 5 numbers them
/// differently from earlier Pis.
pub(crate) fn find_line(spec: &str) -> Result<GpioLine, LineError> {
    let spec = spec.trim();
    if let Some((chip, offset)) = spec.rsplit_once(':') {
        let name = chip.strip_prefix("/dev/").unwrap_or(chip);
        if name.starts_with("gpiochip") {
            return chip_offset(name, offset);
        }
    }
    if spec.is_empty() {
        return Err(LineError::BadSpec {
            reason: "the line name is empty".into(),
        });
    }
    let chips = gpiocdev::chip::chips().map_err(|_| LineError::NoChips)?;
    if chips.is_empty() {
        return Err(LineError::NoChips);
    }
    let mut denied = None;
    let mut searched = Vec::new();
    let mut loose = None;
    for path in &chips {
        let chip = match gpiocdev::Chip::from_path(path) {
            Ok(chip) => chip,
            Err(e) => {
                if is_permission_denied(&e) {
                    denied.get_or_insert_with(|| path.clone());
                } else {
                    tracing::debug!(chip = %path.display(), error = %e, "gpio chip skipped");
                }
                continue;
            }
        };
        searched.push(path.display().to_string());
        let lines = match chip.info() {
            Ok(info) => info.num_lines,
            Err(e) => {
                tracing::debug!(chip = %path.display(), error = %e, "gpio chip info failed");
                continue;
            }
        };
        for offset in 0..lines {
            let Ok(info) = chip.line_info(offset) else {
                continue;
            };
            if info.name == spec {
                check_free(&chip, offset)?;
                return Ok(GpioLine {
                    chip: path.clone(),
                    offset,
                });
            }
            if loose.is_none() && info.name.eq_ignore_ascii_case(spec) {
                loose = Some(GpioLine {
                    chip: path.clone(),
                    offset,
                });
            }
        }
    }
    if let Some(line) = loose {
        let chip = gpiocdev::Chip::from_path(&line.chip).map_err(|e| chip_error(&line.chip, &e))?;
        check_free(&chip, line.offset)?;
        return Ok(line);
    }
    if let Some(chip) = denied {
        return Err(LineError::PermissionDenied { chip });
    }
    Err(LineError::NotFound {
        chips: searched.join(", "),
    })
}

/// `gpiochipN` and `OFFSET` of a `gpiochipN:OFFSET` spec.
fn chip_offset(name: &str, offset: &str) -> Result<GpioLine, LineError> {
    let offset: Offset = offset.trim().parse().map_err(|_| LineError::BadSpec {
        reason: format!("offset {offset:?} is not a number"),
    })?;
    let path = Path::new("/dev").join(name);
    if !path.exists() {
        return Err(LineError::ChipMissing { chip: path });
    }
    let chip = gpiocdev::Chip::from_path(&path).map_err(|e| chip_error(&path, &e))?;
    let lines = chip.info().map_err(|e| chip_error(&path, &e))?.num_lines;
    if offset >= lines {
        return Err(LineError::NoSuchOffset {
            chip: path,
            offset,
            lines,
        });
    }
    check_free(&chip, offset)?;
    Ok(GpioLine { chip: path, offset })
}

/// Maps kernel edge timestamps (`CLOCK_MONOTONIC` ns) onto [`Instant`]s.
///
/// Anchored on an event read at a known instant; an event whose mapped time would be later than
/// the instant it was read at re-anchors (the anchor's read latency was larger), so mapped times
/// never lie in the future and keep the kernel's spacing between edges.
#[derive(Debug, Default)]
struct EdgeClock {
    anchor: Option<(u64, Instant)>,
}

impl EdgeClock {
    /// When the edge stamped `timestamp_ns` happened, given it was read at `read_at`.
    fn instant(&mut self, timestamp_ns: u64, read_at: Instant) -> Instant {
        if let Some((ns, at)) = self.anchor {
            if timestamp_ns >= ns {
                if let Some(t) = at.checked_add(Duration::from_nanos(timestamp_ns - ns)) {
                    if t <= read_at {
                        return t;
                    }
                }
            }
        }
        self.anchor = Some((timestamp_ns, read_at));
        read_at
    }
}

/// `edge` on the stream clock, given the stream clock reads `now_ms` at wall time `now`.
///
/// Anchored at every poll rather than once, so the drift between the stream clock (an audio
/// device's crystal) and the wall clock never builds up.
fn stream_ms(now_ms: u64, now: Instant, edge: Instant) -> u64 {
    let age = now.saturating_duration_since(edge).as_millis();
    now_ms.saturating_sub(u64::try_from(age).unwrap_or(u64::MAX))
}

/// A push button on a GPIO line, read through the Linux GPIO character device.
///
/// A background thread waits for edges (both directions) and queues them with the instant they
/// happened; [`Button::poll`] maps them onto the caller's clock and classifies them. Dropping
/// the button stops the thread and releases the line.
#[derive(Debug)]
pub struct GpioButton {
    line: String,
    edges: Receiver<(bool, Instant)>,
    classifier: Classifier,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GpioButton {
    /// Request `line` (a name such as `GPIO17`, looked up across all chips, or
    /// `gpiochipN:OFFSET`) as an input with edge detection on both edges. `active_low`: the
    /// button pulls the line to ground when pressed (the internal pull-up is enabled); otherwise
    /// it drives it high (pull-down). `long_press_ms` and `double_ms` as in [`Classifier::new`].
    pub fn open(
        line: &str,
        active_low: bool,
        long_press_ms: u64,
        double_ms: u64,
    ) -> Result<Self, ButtonError> {
        let line_error = |reason| ButtonError::Line {
            line: line.to_owned(),
            reason,
        };
        let found = find_line(line).map_err(line_error)?;
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(found.chip.clone())
            .with_consumer("local-assistant button")
            .with_line(found.offset)
            .as_input()
            .with_edge_detection(EdgeDetection::BothEdges);
        if active_low {
            builder.as_active_low().with_bias(Bias::PullUp);
        } else {
            builder.with_bias(Bias::PullDown);
        }
        let request = builder
            .request()
            .map_err(|e| line_error(chip_error(&found.chip, &e)))?;
        tracing::info!(
            line,
            chip = %found.chip.display(),
            offset = found.offset,
            active_low,
            "button line requested"
        );

        let (tx, rx) = mpsc::sync_channel(EDGE_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("button".into())
            .spawn({
                let stop = Arc::clone(&stop);
                let line = line.to_owned();
                move || read_edges(&request, &line, &tx, &stop)
            })
            .map_err(|e| ButtonError::Thread {
                line: line.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            line: line.to_owned(),
            edges: rx,
            classifier: Classifier::new(long_press_ms, double_ms),
            stop,
            thread: Some(thread),
        })
    }

    /// The line as configured.
    pub fn line(&self) -> &str {
        &self.line
    }
}

/// The GPIO thread: wait for edges, stamp them, queue them, until `stop` or the button is gone.
fn read_edges(
    request: &gpiocdev::Request,
    line: &str,
    tx: &SyncSender<(bool, Instant)>,
    stop: &AtomicBool,
) {
    let mut clock = EdgeClock::default();
    let mut failures = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let event = match request.wait_edge_event(GPIO_WAIT) {
            Ok(false) => continue,
            Ok(true) => request.read_edge_event(),
            Err(e) => Err(e),
        };
        let event = match event {
            Ok(event) => {
                if failures > 0 {
                    tracing::info!(line, "button line readable again");
                    failures = 0;
                }
                event
            }
            Err(e) => {
                if failures.is_multiple_of(100) {
                    tracing::warn!(line, error = %e, failures, "reading the button line failed");
                }
                failures += 1;
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let at = clock.instant(event.timestamp_ns, Instant::now());
        let pressed = event.kind == EdgeKind::Rising;
        match tx.try_send((pressed, at)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(line, "button edges dropped: nobody polls the button");
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
    }
    tracing::debug!(line, "button edge reader stopped");
}

impl Button for GpioButton {
    fn poll(&mut self, now_ms: u64) -> Vec<ButtonPress> {
        let now = Instant::now();
        let mut out = Vec::new();
        while let Ok((pressed, at)) = self.edges.try_recv() {
            out.extend(self.classifier.edge(pressed, stream_ms(now_ms, now, at)));
        }
        out.extend(self.classifier.tick(now_ms));
        out
    }

    fn is_down(&self) -> bool {
        self.classifier.is_pressed()
    }
}

impl Drop for GpioButton {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!(line = %self.line, "button edge reader panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ButtonEvent::{DoublePress, LongPress, Press};

    const LONG: u64 = 1_000;
    const DOUBLE: u64 = 400;

    fn press(event: ButtonEvent, at_ms: u64) -> ButtonPress {
        ButtonPress { event, at_ms }
    }

    /// Feed edges, ticking every 10 ms in between and up to `until`, and collect everything.
    fn run(edges: &[(bool, u64)], until: u64) -> Vec<ButtonPress> {
        let mut c = Classifier::new(LONG, DOUBLE);
        let mut out = Vec::new();
        let mut t = 0;
        let mut next = 0;
        while t <= until {
            while next < edges.len() && edges[next].1 <= t {
                out.extend(c.edge(edges[next].0, edges[next].1));
                next += 1;
            }
            out.extend(c.tick(t));
            t += 10;
        }
        out
    }

    #[test]
    fn single_press_is_reported_once_the_double_window_has_passed() {
        let mut c = Classifier::new(LONG, DOUBLE);
        assert!(c.edge(true, 1_000).is_empty());
        assert!(c.edge(false, 1_080).is_empty());
        assert!(c.tick(1_080 + DOUBLE - 1).is_empty());
        assert_eq!(c.tick(1_080 + DOUBLE), vec![press(Press, 1_000)]);
        assert!(c.tick(10_000).is_empty());
    }

    #[test]
    fn single_press_comes_out_of_the_next_edge_when_nobody_ticks() {
        let mut c = Classifier::new(LONG, DOUBLE);
        c.edge(true, 1_000);
        c.edge(false, 1_080);
        assert_eq!(c.edge(true, 5_000), vec![press(Press, 1_000)]);
        assert!(c.edge(false, 5_080).is_empty());
        assert_eq!(c.tick(6_000), vec![press(Press, 5_000)]);
    }

    #[test]
    fn double_press_is_reported_when_the_second_press_goes_down() {
        let mut c = Classifier::new(LONG, DOUBLE);
        c.edge(true, 1_000);
        c.edge(false, 1_080);
        assert!(c.tick(1_200).is_empty());
        assert_eq!(c.edge(true, 1_300), vec![press(DoublePress, 1_000)]);
        assert!(c.edge(false, 1_380).is_empty());
        assert!(
            c.tick(10_000).is_empty(),
            "nothing more after a double press"
        );
    }

    #[test]
    fn second_press_just_outside_the_window_is_two_presses() {
        let out = run(
            &[
                (true, 1_000),
                (false, 1_080),
                (true, 1_080 + DOUBLE),
                (false, 1_560),
            ],
            4_000,
        );
        assert_eq!(out, vec![press(Press, 1_000), press(Press, 1_080 + DOUBLE)]);
    }

    #[test]
    fn held_second_press_of_a_double_is_not_also_a_long_press() {
        let out = run(
            &[(true, 1_000), (false, 1_080), (true, 1_200), (false, 4_000)],
            6_000,
        );
        assert_eq!(out, vec![press(DoublePress, 1_000)]);
    }

    #[test]
    fn third_quick_press_after_a_double_starts_a_new_gesture() {
        let edges = [
            (true, 1_000),
            (false, 1_080),
            (true, 1_160),
            (false, 1_240),
            (true, 1_320),
            (false, 1_400),
        ];
        assert_eq!(
            run(&edges, 3_000),
            vec![press(DoublePress, 1_000), press(Press, 1_320)]
        );
    }

    #[test]
    fn long_press_is_reported_while_held_and_the_release_adds_nothing() {
        let mut c = Classifier::new(LONG, DOUBLE);
        c.edge(true, 1_000);
        assert!(c.tick(1_000 + LONG - 1).is_empty());
        assert!(c.is_pressed());
        assert_eq!(c.tick(1_000 + LONG), vec![press(LongPress, 1_000)]);
        assert!(c.tick(2_500).is_empty());
        assert!(c.edge(false, 3_000).is_empty());
        assert!(c.tick(10_000).is_empty());
        assert!(!c.is_pressed());
    }

    #[test]
    fn long_press_comes_out_of_the_release_when_nobody_ticks() {
        let mut c = Classifier::new(LONG, DOUBLE);
        c.edge(true, 1_000);
        assert_eq!(c.edge(false, 2_500), vec![press(LongPress, 1_000)]);
        assert!(c.tick(5_000).is_empty());
    }

    #[test]
    fn long_press_then_short_press_are_two_gestures() {
        let edges = [(true, 1_000), (false, 2_200), (true, 2_300), (false, 2_380)];
        assert_eq!(
            run(&edges, 4_000),
            vec![press(LongPress, 1_000), press(Press, 2_300)],
            "the release of a long press does not open a double-press window"
        );
    }

    #[test]
    fn bouncing_contacts_make_one_press() {
        let edges = [
            (true, 1_000),
            (false, 1_002),
            (true, 1_004),
            (false, 1_007),
            (true, 1_011),
            (false, 1_120),
            (true, 1_123),
            (false, 1_126),
        ];
        assert_eq!(run(&edges, 3_000), vec![press(Press, 1_000)]);
    }

    #[test]
    fn bouncing_contacts_on_a_double_press_make_one_double_press() {
        let edges = [
            (true, 1_000),
            (false, 1_003),
            (true, 1_006),
            (false, 1_100),
            (true, 1_104),
            (false, 1_108),
            (true, 1_250),
            (false, 1_252),
            (true, 1_255),
            (false, 1_340),
        ];
        assert_eq!(run(&edges, 3_000), vec![press(DoublePress, 1_000)]);
    }

    #[test]
    fn release_inside_the_debounce_window_is_applied_when_the_window_ends() {
        // A very short tap: the real release lands inside the window after the press. Dropping
        // it would leave the button "held" and turn the tap into a long press.
        let mut c = Classifier::new(LONG, DOUBLE);
        c.edge(true, 1_000);
        assert!(c.edge(false, 1_012).is_empty());
        assert!(c.is_pressed());
        assert!(c.tick(1_019).is_empty());
        assert!(c.tick(1_020).is_empty());
        assert!(!c.is_pressed(), "settled at the end of the window");
        assert!(c.tick(1_020 + DOUBLE - 1).is_empty());
        assert_eq!(c.tick(1_000 + LONG + 100), vec![press(Press, 1_000)]);
    }

    #[test]
    fn repeated_edges_of_the_same_level_are_ignored() {
        let edges = [(true, 1_000), (true, 1_050), (false, 1_100), (false, 1_150)];
        assert_eq!(run(&edges, 3_000), vec![press(Press, 1_000)]);
        let edges = [(false, 500), (true, 1_000), (false, 1_100)];
        assert_eq!(run(&edges, 3_000), vec![press(Press, 1_000)]);
    }

    #[test]
    fn time_going_backwards_is_ignored_safely() {
        let mut c = Classifier::new(LONG, DOUBLE);
        assert!(c.tick(5_000).is_empty());
        assert!(c.tick(100).is_empty(), "an earlier tick does nothing");
        // An edge stamped in the past counts as now.
        assert!(c.edge(true, 10).is_empty());
        assert!(c.is_pressed());
        assert!(c.tick(5_000 + LONG - 1).is_empty());
        assert_eq!(c.tick(5_000 + LONG), vec![press(LongPress, 5_000)]);
        assert!(c.edge(false, 0).is_empty());
        assert!(c.tick(0).is_empty());
        assert!(c.tick(9_000).is_empty());
        // A release stamped before its press still ends the press (after the debounce window).
        let mut c = Classifier::new(LONG, DOUBLE);
        c.edge(true, 2_000);
        c.edge(false, 1_000);
        assert_eq!(c.tick(4_000), vec![press(Press, 2_000)]);
    }

    #[test]
    fn times_near_the_end_of_the_clock_do_not_overflow() {
        let mut c = Classifier::new(LONG, DOUBLE);
        let end = u64::MAX;
        c.edge(true, end - 100);
        c.edge(false, end - 20);
        assert_eq!(c.tick(end), vec![press(Press, end - 100)]);
        // Huge thresholds saturate instead of wrapping.
        let mut c = Classifier::new(u64::MAX, u64::MAX);
        c.edge(true, end - 5);
        c.edge(false, end - 2);
        let _ = c.tick(end);
        let _ = c.edge(true, end);
        let _ = c.tick(end);
    }

    #[test]
    fn zero_double_window_reports_a_press_at_its_release() {
        let mut c = Classifier::new(LONG, 0);
        c.edge(true, 1_000);
        assert_eq!(c.edge(false, 1_080), vec![press(Press, 1_000)]);
        c.edge(true, 1_160);
        assert_eq!(c.edge(false, 1_240), vec![press(Press, 1_160)]);
    }

    /// Poll a button every 20 ms from 0 to `until` and collect what it reports.
    fn poll_all(button: &mut dyn Button, until: u64) -> Vec<ButtonPress> {
        (0..=until / 20).flat_map(|i| button.poll(i * 20)).collect()
    }

    #[test]
    fn simulated_gestures_come_back_as_themselves() {
        let script = [
            (Press, 3_000),
            (LongPress, 5_000),
            (DoublePress, 9_000),
            (Press, 12_000),
        ];
        let mut b = SimulatedButton::presses(&script);
        let got: Vec<_> = poll_all(&mut b, 15_000)
            .into_iter()
            .map(|p| (p.event, p.at_ms))
            .collect();
        assert_eq!(got, script);
        assert_eq!(b.remaining(), 0);
    }

    #[test]
    fn simulated_press_is_reported_after_the_window_not_before() {
        let mut b = SimulatedButton::presses(&[(Press, 3_000)]);
        assert!(poll_all(&mut b, 3_000 + TAP_MS + DEFAULT_DOUBLE_MS - 20).is_empty());
        assert_eq!(
            b.poll(3_000 + TAP_MS + DEFAULT_DOUBLE_MS),
            vec![press(Press, 3_000)]
        );
    }

    #[test]
    fn simulated_long_press_is_reported_while_held() {
        let mut b = SimulatedButton::presses_with(&[(LongPress, 5_000)], 600, 300);
        assert!(b.poll(5_000).is_empty());
        assert!(b.poll(5_599).is_empty());
        assert_eq!(b.poll(5_600), vec![press(LongPress, 5_000)]);
        assert_eq!(b.remaining(), 1, "the release is still to come");
        assert!(b.poll(10_000).is_empty());
    }

    #[test]
    fn simulated_button_sorts_its_script_and_a_late_poll_catches_up() {
        let mut b = SimulatedButton::new(vec![(false, 1_080), (true, 1_000)], LONG, DOUBLE);
        assert_eq!(b.poll(60_000), vec![press(Press, 1_000)]);
    }

    #[test]
    fn no_button_reports_nothing() {
        assert!(poll_all(&mut NoButton, 5_000).is_empty());
    }

    #[test]
    fn opening_a_line_that_does_not_exist_names_it() {
        let Err(e) = GpioButton::open("NO_SUCH_LINE_XYZ", true, LONG, DOUBLE) else {
            panic!("NO_SUCH_LINE_XYZ opened");
        };
        let text = e.to_string();
        assert!(text.contains("NO_SUCH_LINE_XYZ"), "{text}");
        assert!(
            text.contains("no GPIO chip found")
                || text.contains("line not found")
                || text.contains("permission denied"),
            "{text}"
        );
        assert!(!e.retry_may_help(), "{text}");
    }

    #[test]
    fn chip_and_offset_specs_are_parsed_and_checked() {
        let Err(e) = GpioButton::open("gpiochip4:seventeen", true, LONG, DOUBLE) else {
            panic!("bad offset accepted");
        };
        assert!(e.to_string().contains("not a number"), "{e}");
        let Err(e) = GpioButton::open("gpiochip987:17", true, LONG, DOUBLE) else {
            panic!("missing chip opened");
        };
        let text = e.to_string();
        assert!(
            text.contains("gpiochip987:17") && text.contains("/dev/gpiochip987"),
            "{text}"
        );
        assert!(matches!(find_line("  "), Err(LineError::BadSpec { .. })));
    }

    #[test]
    fn permission_errors_mention_the_gpio_group() {
        let e = ButtonError::Line {
            line: "GPIO17".into(),
            reason: LineError::PermissionDenied {
                chip: "/dev/gpiochip0".into(),
            },
        };
        let text = e.to_string();
        assert!(text.starts_with("button line GPIO17: permission denied on /dev/gpiochip0"));
        assert!(text.contains("`gpio` group"), "{text}");
    }

    #[test]
    fn edge_clock_keeps_kernel_spacing_and_never_runs_ahead_of_the_read() {
        let t0 = Instant::now();
        let mut clock = EdgeClock::default();
        let ms = Duration::from_millis;
        // First edge read 2 ms late: anchored at its read.
        assert_eq!(clock.instant(1_000_000_000, t0 + ms(2)), t0 + ms(2));
        // Two bounces read together 50 ms later keep their 3 ms spacing.
        let a = clock.instant(1_010_000_000, t0 + ms(60));
        let b = clock.instant(1_013_000_000, t0 + ms(60));
        assert_eq!(a, t0 + ms(12));
        assert_eq!(b, t0 + ms(15));
        // A read sooner than the anchor's latency implies re-anchors.
        assert_eq!(clock.instant(1_100_000_000, t0 + ms(101)), t0 + ms(101));
        assert_eq!(clock.instant(1_200_000_000, t0 + ms(300)), t0 + ms(201));
        // A timestamp before the anchor (should not happen) maps to its read.
        assert_eq!(clock.instant(5, t0 + ms(400)), t0 + ms(400));
    }

    #[test]
    fn edge_instants_map_onto_the_stream_clock() {
        let now = Instant::now() + Duration::from_secs(10);
        assert_eq!(stream_ms(5_000, now, now), 5_000);
        assert_eq!(
            stream_ms(5_000, now, now - Duration::from_millis(30)),
            4_970
        );
        assert_eq!(
            stream_ms(5_000, now, now + Duration::from_millis(30)),
            5_000
        );
        assert_eq!(stream_ms(10, now, now - Duration::from_secs(5)), 0);
    }
}
