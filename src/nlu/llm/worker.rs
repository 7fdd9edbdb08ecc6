//! [`LlmService`]: runs an [`LlmBackend`] on dedicated OS threads behind a bounded priority
//! queue, and streams each request's text back to its async caller.
//!
//! Invariants:
//! - The backend runs only on the service's own threads, never on the async runtime.
//! - The queue never holds more than `queue_depth` requests. A full queue answers
//!   [`LlmError::Busy`] at once; a request of higher priority than the lowest queued one takes
//!   that one's place instead, and the evicted request is answered `Busy`.
//! - Higher [`Priority`] is served first; requests of one priority are served in arrival order.
//! - Every accepted request ends with exactly one [`LlmEvent::Done`] delivered to its handle
//!   (unless the handle was dropped, which cancels the request).
//! - A cancelled request never reaches the backend if it is still queued, and stops at the
//!   backend's next token if it is running.
//! - Background work yields: a request above [`Priority::Background`] cancels the Background
//!   requests running at that moment (a cache pre-warm stops at its next prefill chunk, and
//!   keeps what it prefilled).

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    FinishReason, GenerateOutput, GenerateRequest, GenerateStats, LlmBackend, LlmError, Priority,
};

/// Events buffered per request between the worker and the caller (one slot is kept for
/// [`LlmEvent::Done`], so the final result never waits for a slow reader).
const EVENT_BUFFER: usize = 64;
/// How long the worker waits before retrying a text piece the caller has no room for.
const SLOW_READER_POLL: Duration = Duration::from_millis(2);
/// Settings of an [`LlmService`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Worker threads, each running one generation at a time (at least 1).
    pub workers: usize,
    /// Most requests waiting in the queue (not counting running ones; at least 1).
    pub queue_depth: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            queue_depth: 8,
        }
    }
}

/// What a [`Generation`] yields.
#[derive(Debug)]
pub enum LlmEvent {
    /// A piece of visible text, in order.
    Text(String),
    /// The end: the backend's result, [`FinishReason::Cancelled`] for a cancelled request,
    /// [`LlmError::Busy`] for a request evicted from the queue, [`LlmError::Stopped`] when the
    /// service shut down first. Always the last event.
    Done(Result<GenerateOutput, LlmError>),
}

/// Queue waiting times of one priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Requests of this priority that left the queue for a worker.
    pub started: u64,
    /// Their summed time in the queue.
    pub total_wait: Duration,
    /// The longest of them.
    pub max_wait: Duration,
}

/// A snapshot of the service's counters, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LlmServiceStats {
    /// Requests waiting now.
    pub queue_depth: usize,
    /// Requests running now.
    pub running: usize,
    /// Requests accepted into the queue since start.
    pub queued: u64,
    /// Submissions refused with [`LlmError::Busy`] because the queue was full.
    pub busy_rejections: u64,
    /// Queued requests pushed out (answered `Busy`) by a request of higher priority.
    pub evicted: u64,
    /// Requests the backend finished (stop, length or tool call).
    pub completed: u64,
    /// Requests that ended cancelled (in the queue or while running).
    pub cancelled: u64,
    /// Requests whose backend returned an error.
    pub failed: u64,
    /// Queue waiting times, indexed by `Priority as usize` (Background first).
    pub wait: [WaitStats; 4],
}

impl LlmServiceStats {
    /// Waiting times of `priority`.
    pub fn wait_of(&self, priority: Priority) -> WaitStats {
        self.wait[priority as usize]
    }
}

/// A queued request.
struct Job {
    id: u64,
    req: GenerateRequest,
    events: mpsc::Sender<LlmEvent>,
    enqueued: Instant,
}

/// State under the lock.
#[derive(Default)]
struct State {
    /// One FIFO per priority, indexed by `Priority as usize`.
    queues: [VecDeque<Job>; 4],
    /// Cancellation tokens of running requests, by id.
    running: HashMap<u64, (Priority, CancellationToken)>,
    stopped: bool,
    next_id: u64,
    stats: LlmServiceStats,
}

impl State {
    fn depth(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Removes queued requests whose token fired, answering them `Cancelled`.
    fn purge_cancelled(&mut self) {
        let mut purged = 0;
        for queue in &mut self.queues {
            queue.retain(|job| {
                if job.req.cancel.is_cancelled() {
                    let _ = job
                        .events
                        .try_send(LlmEvent::Done(Ok(cancelled_output(job.enqueued))));
                    purged += 1;
                    false
                } else {
                    true
                }
            });
        }
        self.stats.cancelled += purged;
    }
}

/// What the service and its handles share.
struct Shared {
    backend: Arc<dyn LlmBackend>,
    queue_depth: usize,
    state: Mutex<State>,
    work: Condvar,
}

impl Shared {
    /// The state; a poisoned lock (a panic while holding it) still yields the data, which no
    /// code path leaves half-updated.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes request `id` out of the queue if it is still there; true if it was.
    fn withdraw(&self, id: u64, priority: Priority) -> bool {
        let mut state = self.lock();
        let queue = &mut state.queues[priority as usize];
        let Some(pos) = queue.iter().position(|job| job.id == id) else {
            return false;
        };
        queue.remove(pos);
        state.stats.cancelled += 1;
        true
    }
}

/// The language-model service: a bounded priority queue in front of worker threads.
pub struct LlmService {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for LlmService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmService")
            .field("backend", &self.shared.backend.name())
            .field("queue_depth", &self.shared.queue_depth)
            .finish_non_exhaustive()
    }
}

impl LlmService {
    /// Starts `options.workers` threads running `backend`.
    pub fn start(backend: Arc<dyn LlmBackend>, options: WorkerOptions) -> Result<Self, LlmError> {
        if options.workers == 0 || options.queue_depth == 0 {
            return Err(LlmError::Inference(format!(
                "the language model service needs at least one worker and a queue depth of at \
                 least one (got workers = {}, queue_depth = {})",
                options.workers, options.queue_depth
            )));
        }
        let shared = Arc::new(Shared {
            backend,
            queue_depth: options.queue_depth,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
        });
        let mut threads = Vec::with_capacity(options.workers);
        for n in 0..options.workers {
            let worker = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("llm-worker-{n}"))
                .spawn(move || run_worker(&worker));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    stop(&shared);
                    for handle in threads {
                        let _ = handle.join();
                    }
                    return Err(LlmError::Inference(format!(
                        "cannot start language model worker thread {n}: {e}"
                    )));
                }
            }
        }
        Ok(Self {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.shared.backend.name()
    }

    /// Queues `req` and returns its handle at once; never waits for room. A full queue answers
    /// [`LlmError::Busy`], unless a queued request of lower priority can be evicted for it.
    pub async fn submit(&self, req: GenerateRequest) -> Result<Generation, LlmError> {
        self.try_submit(req)
    }

    /// [`LlmService::submit`] for non-async callers.
    pub fn try_submit(&self, mut req: GenerateRequest) -> Result<Generation, LlmError> {
        // The service cancels its own child of the caller's token (dropping the handle must
        // not cancel whatever else the caller hangs on that token).
        let cancel = req.cancel.child_token();
        req.cancel = cancel.clone();
        let priority = req.priority;
        let mut state = self.shared.lock();
        if state.stopped {
            return Err(LlmError::Stopped);
        }
        state.purge_cancelled();
        let depth = state.depth();
        if depth >= self.shared.queue_depth {
            let lowest = (0..priority as usize).find(|&p| !state.queues[p].is_empty());
            let Some(lowest) = lowest else {
                state.stats.busy_rejections += 1;
                return Err(LlmError::Busy { depth });
            };
            // The most recent of the lowest priority leaves: those waiting longest keep their
            // place.
            if let Some(evicted) = state.queues[lowest].pop_back() {
                let _ = evicted
                    .events
                    .try_send(LlmEvent::Done(Err(LlmError::Busy { depth })));
                state.stats.evicted += 1;
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        let (events, rx) = mpsc::channel(EVENT_BUFFER);
        state.queues[priority as usize].push_back(Job {
            id,
            req,
            events,
            enqueued: Instant::now(),
        });
        state.stats.queued += 1;
        if priority > Priority::Background {
            for (p, running) in state.running.values() {
                if *p == Priority::Background {
                    running.cancel();
                }
            }
        }
        drop(state);
        self.shared.work.notify_one();
        Ok(Generation {
            rx,
            cancel,
            id,
            priority,
            shared: Arc::clone(&self.shared),
            finished: false,
            withdraw_tried: false,
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LlmServiceStats {
        let state = self.shared.lock();
        let mut stats = state.stats.clone();
        stats.queue_depth = state.depth();
        stats.running = state.running.len();
        stats
    }

    /// Stops the service: refuses new requests ([`LlmError::Stopped`]), answers queued ones
    /// `Stopped`, cancels running ones and waits for the worker threads to exit. Blocks the
    /// calling thread until then (from async code, call it inside `spawn_blocking`).
    pub fn shutdown(&self) {
        stop(&self.shared);
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for handle in threads {
            if handle.join().is_err() {
                tracing::error!("a language model worker thread panicked");
            }
        }
    }
}

impl Drop for LlmService {
    /// Stops taking work and cancels everything; does not wait for the threads.
    fn drop(&mut self) {
        stop(&self.shared);
    }
}

/// Marks the service stopped, answers queued requests `Stopped` and cancels running ones.
fn stop(shared: &Shared) {
    let mut state = shared.lock();
    state.stopped = true;
    for queue in &mut state.queues {
        for job in queue.drain(..) {
            let _ = job.events.try_send(LlmEvent::Done(Err(LlmError::Stopped)));
        }
    }
    for (_, token) in state.running.values() {
        token.cancel();
    }
    drop(state);
    shared.work.notify_all();
}

/// A worker thread: takes the highest-priority request, runs it, repeats until stopped.
fn run_worker(shared: &Shared) {
    loop {
        let job = {
            let mut state = shared.lock();
            loop {
                if let Some(job) = state.queues.iter_mut().rev().find_map(VecDeque::pop_front) {
                    break job;
                }
                if state.stopped {
                    return;
                }
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let waited = job.enqueued.elapsed();
        let priority = job.req.priority;
        {
            let mut state = shared.lock();
            let wait = &mut state.stats.wait[priority as usize];
            wait.started += 1;
            wait.total_wait += waited;
            wait.max_wait = wait.max_wait.max(waited);
            if job.req.cancel.is_cancelled() {
                state.stats.cancelled += 1;
                drop(state);
                let _ = job
                    .events
                    .try_send(LlmEvent::Done(Ok(cancelled_output(job.enqueued))));
                continue;
            }
            state
                .running
                .insert(job.id, (priority, job.req.cancel.clone()));
        }
        let result = run_job(shared.backend.as_ref(), &job);
        {
            let mut state = shared.lock();
            state.running.remove(&job.id);
            match &result {
                Ok(out) if out.finish == FinishReason::Cancelled => state.stats.cancelled += 1,
                Ok(_) => state.stats.completed += 1,
                Err(_) => state.stats.failed += 1,
            }
        }
        // One slot of the channel is always free for this (see `send_text`).
        let _ = job.events.try_send(LlmEvent::Done(result));
        // A long prefill's activations are freed when it ends, but glibc would keep them.
        crate::platform::heap::release();
    }
}

/// Runs one request on the backend, streaming its text to the caller.
fn run_job(backend: &dyn LlmBackend, job: &Job) -> Result<GenerateOutput, LlmError> {
    let cancel = &job.req.cancel;
    let mut on_text = |piece: &str| send_text(&job.events, cancel, piece);
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        backend.generate(&job.req, &mut on_text)
    }));
    run.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        tracing::error!(
            backend = backend.name(),
            "language model backend panicked: {what}"
        );
        Err(LlmError::Inference(format!(
            "the {} backend panicked: {what}",
            backend.name()
        )))
    })
}

/// Hands a piece of text to the caller, waiting while the caller's buffer is full (keeping one
/// slot for the final event). A caller that hung up cancels the request.
fn send_text(events: &mpsc::Sender<LlmEvent>, cancel: &CancellationToken, piece: &str) {
    if piece.is_empty() {
        return;
    }
    loop {
        if events.is_closed() {
            cancel.cancel();
            return;
        }
        if cancel.is_cancelled() {
            return;
        }
        if events.capacity() >= 2 {
            // Only this thread sends, so the room seen above is still there.
            if events.try_send(LlmEvent::Text(piece.to_owned())).is_err() {
                cancel.cancel();
            }
            return;
        }
        std::thread::sleep(SLOW_READER_POLL);
    }
}

/// The output of a request cancelled before it ran.
fn cancelled_output(enqueued: Instant) -> GenerateOutput {
    GenerateOutput {
        text: String::new(),
        tool_call: None,
        finish: FinishReason::Cancelled,
        stats: GenerateStats {
            total: enqueued.elapsed(),
            ..GenerateStats::default()
        },
    }
}

/// The caller's handle on a submitted request: its events, in order. Dropping it cancels the
/// request (a caller that hung up frees the model).
pub struct Generation {
    rx: mpsc::Receiver<LlmEvent>,
    cancel: CancellationToken,
    id: u64,
    priority: Priority,
    shared: Arc<Shared>,
    finished: bool,
    withdraw_tried: bool,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Generation {
    /// The next event; `None` after [`LlmEvent::Done`]. If the request's token fires while it
    /// is still queued, this answers `Done(Ok(..))` with [`FinishReason::Cancelled`] at once.
    pub async fn recv(&mut self) -> Option<LlmEvent> {
        if self.finished {
            return None;
        }
        loop {
            tokio::select! {
                biased;
                event = self.rx.recv() => {
                    let event = event.unwrap_or(LlmEvent::Done(Err(LlmError::Stopped)));
                    if matches!(event, LlmEvent::Done(_)) {
                        self.finished = true;
                    }
                    return Some(event);
                }
                () = self.cancel.cancelled(), if !self.withdraw_tried => {
                    self.withdraw_tried = true;
                    if self.shared.withdraw(self.id, self.priority) {
                        self.finished = true;
                        return Some(LlmEvent::Done(Ok(cancelled_output(Instant::now()))));
                    }
                    // Already running (or done): the worker reports the end.
                }
            }
        }
    }

    /// Reads to the end, dropping the text pieces, and returns the result.
    pub async fn wait(mut self) -> Result<GenerateOutput, LlmError> {
        while let Some(event) = self.recv().await {
            if let LlmEvent::Done(result) = event {
                return result;
            }
        }
        Err(LlmError::Stopped)
    }

    /// Cancels the request: it leaves the queue, or stops at the backend's next token.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The request's priority.
    pub fn priority(&self) -> Priority {
        self.priority
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel.cancel();
            self.shared.withdraw(self.id, self.priority);
        }
    }
}

// The queues are indexed by `Priority as usize`.
const _: () = assert!(Priority::Background as usize == 0 && Priority::LiveCall as usize == 3);
