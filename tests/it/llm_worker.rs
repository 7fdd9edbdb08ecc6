//! The language-model service's queue: priority order, back-pressure (busy, eviction),
//! cancellation, shutdown and streaming, driven through a deterministic test backend (the queue
//! is under test here, not a model).

use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use local_assistant::nlu::llm::worker::{LlmEvent, LlmService, WorkerOptions};
use local_assistant::nlu::llm::{
    ChatMessage, FinishReason, GenerateOutput, GenerateRequest, GenerateStats, LlmBackend,
    LlmError, Priority, Role,
};

/// What the backend did with one request.
#[derive(Debug, Clone)]
struct Run {
    label: String,
    emitted: usize,
    finish: Option<FinishReason>,
}

/// Emits `pieces` pieces `"<label>-<i> "` with `delay` between them, checking cancellation
/// before each. A request labelled `gate` first waits until [`Backend::release`] is called.
/// A request labelled `panic` panics; one labelled `fail` returns an error.
struct Backend {
    pieces: usize,
    delay: Duration,
    runs: Mutex<Vec<Run>>,
    gate: Mutex<std_mpsc::Receiver<()>>,
    gate_tx: Mutex<std_mpsc::Sender<()>>,
}

impl Backend {
    fn new(pieces: usize, delay: Duration) -> Arc<Self> {
        let (tx, rx) = std_mpsc::channel();
        Arc::new(Self {
            pieces,
            delay,
            runs: Mutex::new(Vec::new()),
            gate: Mutex::new(rx),
            gate_tx: Mutex::new(tx),
        })
    }

    fn release(&self) {
        self.gate_tx.lock().unwrap().send(()).unwrap();
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    fn started(&self) -> Vec<String> {
        self.runs().into_iter().map(|r| r.label).collect()
    }

    fn record(&self, index: usize, emitted: usize, finish: Option<FinishReason>) {
        let mut runs = self.runs.lock().unwrap();
        runs[index].emitted = emitted;
        runs[index].finish = finish;
    }
}

impl LlmBackend for Backend {
    fn name(&self) -> &'static str {
        "test"
    }

    fn generate(
        &self,
        req: &GenerateRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerateOutput, LlmError> {
        let label = req.messages.last().unwrap().content.clone();
        let index = {
            let mut runs = self.runs.lock().unwrap();
            runs.push(Run {
                label: label.clone(),
                emitted: 0,
                finish: None,
            });
            runs.len() - 1
        };
        let output = |text: String, finish| GenerateOutput {
            text,
            tool_call: None,
            finish,
            stats: GenerateStats::default(),
        };
        match label.as_str() {
            "panic" => panic!("test backend told to panic"),
            "fail" => return Err(LlmError::Inference("told to fail".into())),
            "gate" => loop {
                if req.cancel.is_cancelled() {
                    self.record(index, 0, Some(FinishReason::Cancelled));
                    return Ok(output(String::new(), FinishReason::Cancelled));
                }
                let gate = self.gate.lock().unwrap();
                if gate.recv_timeout(Duration::from_millis(5)).is_ok() {
                    break;
                }
            },
            _ => {}
        }
        let mut text = String::new();
        for i in 0..self.pieces {
            if req.cancel.is_cancelled() {
                self.record(index, i, Some(FinishReason::Cancelled));
                return Ok(output(text, FinishReason::Cancelled));
            }
            let piece = format!("{label}-{i} ");
            on_text(&piece);
            text.push_str(&piece);
            std::thread::sleep(self.delay);
        }
        self.record(index, self.pieces, Some(FinishReason::Stop));
        Ok(output(text, FinishReason::Stop))
    }
}

fn request(label: &str, priority: Priority) -> GenerateRequest {
    let mut req = GenerateRequest::new(vec![ChatMessage::new(Role::User, label)]);
    req.priority = priority;
    req
}

fn service(backend: &Arc<Backend>, queue_depth: usize) -> LlmService {
    LlmService::start(
        backend.clone(),
        WorkerOptions {
            workers: 1,
            queue_depth,
        },
    )
    .unwrap()
}

/// Waits (up to 10 s) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Reads a generation to the end: its text pieces and its result.
async fn drain(
    mut g: local_assistant::nlu::llm::worker::Generation,
) -> (Vec<String>, Result<GenerateOutput, LlmError>) {
    let mut pieces = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), g.recv())
            .await
            .expect("no event within 10 s")
        {
            Some(LlmEvent::Text(t)) => pieces.push(t),
            Some(LlmEvent::Done(result)) => {
                assert!(g.recv().await.is_none(), "an event after Done");
                return (pieces, result);
            }
            None => panic!("stream ended without Done"),
        }
    }
}

/// Starts a `gate` request and waits until the single worker is blocked on it.
async fn block_worker(
    svc: &LlmService,
    backend: &Arc<Backend>,
) -> local_assistant::nlu::llm::worker::Generation {
    let gate = svc
        .submit(request("gate", Priority::Message))
        .await
        .unwrap();
    until("the gate request to start", || {
        backend.started() == ["gate"]
    })
    .await;
    gate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_run_by_priority_then_arrival() {
    let backend = Backend::new(1, Duration::ZERO);
    let svc = service(&backend, 8);
    let gate = block_worker(&svc, &backend).await;
    let mut handles = Vec::new();
    for (label, priority) in [
        ("background", Priority::Background),
        ("message-1", Priority::Message),
        ("live", Priority::LiveCall),
        ("message-2", Priority::Message),
        ("voice", Priority::LocalVoice),
    ] {
        handles.push(svc.submit(request(label, priority)).await.unwrap());
    }
    assert_eq!(svc.stats().queue_depth, 5);
    backend.release();
    assert_eq!(drain(gate).await.1.unwrap().finish, FinishReason::Stop);
    for h in handles {
        assert_eq!(drain(h).await.1.unwrap().finish, FinishReason::Stop);
    }
    assert_eq!(
        backend.started(),
        [
            "gate",
            "live",
            "voice",
            "message-1",
            "message-2",
            "background"
        ]
    );
    let stats = svc.stats();
    assert_eq!(stats.queued, 6);
    assert_eq!(stats.completed, 6);
    assert_eq!(stats.queue_depth, 0);
    assert_eq!(stats.wait_of(Priority::Message).started, 3);
    assert_eq!(stats.wait_of(Priority::LiveCall).started, 1);
    // The background request waited behind everything else.
    assert!(
        stats.wait_of(Priority::Background).max_wait >= stats.wait_of(Priority::LiveCall).max_wait
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy_without_waiting() {
    let backend = Backend::new(1, Duration::ZERO);
    let svc = service(&backend, 2);
    let gate = block_worker(&svc, &backend).await;
    let a = svc.submit(request("a", Priority::Message)).await.unwrap();
    let b = svc.submit(request("b", Priority::Message)).await.unwrap();
    // Same priority as everything queued: nothing to evict. The future is ready at once.
    let refused = svc
        .submit(request("c", Priority::Message))
        .now_or_never()
        .expect("submit waited on a full queue");
    assert!(
        matches!(refused, Err(LlmError::Busy { depth: 2 })),
        "{refused:?}"
    );
    let low = svc
        .submit(request("d", Priority::Background))
        .now_or_never()
        .unwrap();
    assert!(matches!(low, Err(LlmError::Busy { depth: 2 })), "{low:?}");
    let stats = svc.stats();
    assert_eq!(
        (stats.busy_rejections, stats.evicted, stats.queue_depth),
        (2, 0, 2)
    );
    backend.release();
    for h in [gate, a, b] {
        drain(h).await.1.unwrap();
    }
    assert_eq!(backend.started(), ["gate", "a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_request_evicts_the_newest_lowest_one_at_a_full_queue() {
    let backend = Backend::new(1, Duration::ZERO);
    let svc = service(&backend, 3);
    let gate = block_worker(&svc, &backend).await;
    let bg_old = svc
        .submit(request("bg-old", Priority::Background))
        .await
        .unwrap();
    let bg_new = svc
        .submit(request("bg-new", Priority::Background))
        .await
        .unwrap();
    let msg = svc.submit(request("msg", Priority::Message)).await.unwrap();
    let live = svc
        .submit(request("live", Priority::LiveCall))
        .now_or_never()
        .unwrap()
        .expect("a live call must get in");
    let (pieces, evicted) = drain(bg_new).await;
    assert!(pieces.is_empty());
    assert!(
        matches!(evicted, Err(LlmError::Busy { depth: 3 })),
        "{evicted:?}"
    );
    // Another background request finds nothing lower to push out.
    assert!(matches!(
        svc.submit(request("bg-late", Priority::Background)).await,
        Err(LlmError::Busy { .. })
    ));
    backend.release();
    for h in [gate, live, msg, bg_old] {
        drain(h).await.1.unwrap();
    }
    assert_eq!(backend.started(), ["gate", "live", "msg", "bg-old"]);
    let stats = svc.stats();
    assert_eq!(
        (stats.evicted, stats.busy_rejections, stats.completed),
        (1, 1, 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_while_queued_never_reaches_the_backend() {
    let backend = Backend::new(1, Duration::ZERO);
    let svc = service(&backend, 1);
    let gate = block_worker(&svc, &backend).await;
    let req = request("doomed", Priority::Message);
    let token = req.cancel.clone();
    let doomed = svc.submit(req).await.unwrap();
    token.cancel();
    // Answered while the worker is still blocked on the gate.
    let (pieces, result) = drain(doomed).await;
    assert!(pieces.is_empty());
    assert_eq!(result.unwrap().finish, FinishReason::Cancelled);
    assert_eq!(svc.stats().queue_depth, 0);
    // Its slot is free again.
    let next = svc
        .submit(request("next", Priority::Message))
        .await
        .unwrap();
    backend.release();
    drain(gate).await.1.unwrap();
    drain(next).await.1.unwrap();
    assert_eq!(backend.started(), ["gate", "next"]);
    assert_eq!(svc.stats().cancelled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_request_stops_within_one_piece_of_its_cancellation() {
    let backend = Backend::new(200, Duration::from_millis(10));
    let svc = service(&backend, 4);
    let req = request("long", Priority::LocalVoice);
    let token = req.cancel.clone();
    let mut g = svc.submit(req).await.unwrap();
    let mut seen = 0;
    while seen < 2 {
        match g.recv().await {
            Some(LlmEvent::Text(_)) => seen += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    token.cancel();
    let (rest, result) = drain(g).await;
    assert!(rest.len() <= 1, "{} pieces after the cancel", rest.len());
    let out = result.unwrap();
    assert_eq!(out.finish, FinishReason::Cancelled);
    let run = &backend.runs()[0];
    assert_eq!(run.finish, Some(FinishReason::Cancelled));
    assert!(run.emitted <= 3, "backend emitted {} pieces", run.emitted);
    assert_eq!(svc.stats().cancelled, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_yields_to_a_request_of_any_higher_priority() {
    let backend = Backend::new(60, Duration::from_millis(10));
    let svc = service(&backend, 4);
    // Background gives way to the lowest foreground priority, and only to a new request:
    // another background request waits its turn instead.
    let mut warm = svc
        .submit(request("warm", Priority::Background))
        .await
        .unwrap();
    assert!(matches!(warm.recv().await, Some(LlmEvent::Text(_))));
    let other = svc
        .submit(request("later", Priority::Background))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(backend.started(), ["warm"]);
    assert_eq!(backend.runs()[0].finish, None, "still running");
    let msg = svc.submit(request("sms", Priority::Message)).await.unwrap();
    let (_, warm_result) = drain(warm).await;
    assert_eq!(warm_result.unwrap().finish, FinishReason::Cancelled);
    let (_, msg_result) = drain(msg).await;
    assert_eq!(msg_result.unwrap().finish, FinishReason::Stop);
    // A foreground request never cancels another foreground one.
    let (_, later) = drain(other).await;
    assert_eq!(later.unwrap().finish, FinishReason::Stop);
    let long = svc
        .submit(request("call", Priority::Message))
        .await
        .unwrap();
    until("the call to start", || backend.started().len() == 4).await;
    let voice = svc
        .submit(request("voice", Priority::LiveCall))
        .await
        .unwrap();
    let (_, long_result) = drain(long).await;
    assert_eq!(long_result.unwrap().finish, FinishReason::Stop);
    let (_, voice_result) = drain(voice).await;
    assert_eq!(voice_result.unwrap().finish, FinishReason::Stop);
    assert_eq!(backend.started(), ["warm", "sms", "later", "call", "voice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_cancels_the_request_and_frees_the_worker() {
    let backend = Backend::new(200, Duration::from_millis(10));
    let svc = service(&backend, 1);
    let mut g = svc
        .submit(request("hung-up", Priority::LiveCall))
        .await
        .unwrap();
    assert!(matches!(g.recv().await, Some(LlmEvent::Text(_))));
    drop(g);
    until("the backend to see the cancellation", || {
        backend.runs()[0].finish == Some(FinishReason::Cancelled)
    })
    .await;
    assert!(backend.runs()[0].emitted < 200);
    // A queued handle dropped gives back its slot and never runs.
    let backend2 = Backend::new(1, Duration::ZERO);
    let svc2 = service(&backend2, 1);
    let gate = block_worker(&svc2, &backend2).await;
    let queued = svc2
        .submit(request("dropped", Priority::Message))
        .await
        .unwrap();
    drop(queued);
    let after = svc2
        .submit(request("after", Priority::Message))
        .await
        .expect("the dropped request's slot is free");
    backend2.release();
    drain(gate).await.1.unwrap();
    drain(after).await.1.unwrap();
    assert_eq!(backend2.started(), ["gate", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_does_not_cancel_the_callers_token() {
    let backend = Backend::new(1, Duration::ZERO);
    let svc = service(&backend, 2);
    let req = request("x", Priority::Message);
    let token = req.cancel.clone();
    let g = svc.submit(req).await.unwrap();
    drop(g);
    assert!(!token.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_work_answers_queued_and_cancels_running() {
    let backend = Backend::new(1, Duration::ZERO);
    let svc = Arc::new(service(&backend, 4));
    let gate = block_worker(&svc, &backend).await;
    let queued = svc
        .submit(request("queued", Priority::LiveCall))
        .await
        .unwrap();
    let stopper = svc.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || stopper.shutdown()),
    )
    .await
    .expect("shutdown did not return")
    .unwrap();
    let (_, queued_result) = drain(queued).await;
    assert!(
        matches!(queued_result, Err(LlmError::Stopped)),
        "{queued_result:?}"
    );
    assert_eq!(drain(gate).await.1.unwrap().finish, FinishReason::Cancelled);
    assert!(matches!(
        svc.submit(request("late", Priority::LiveCall)).await,
        Err(LlmError::Stopped)
    ));
    assert_eq!(backend.started(), ["gate"]);
    // A second shutdown is harmless.
    svc.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_arrive_in_order_and_add_up_to_the_final_text() {
    let backend = Backend::new(100, Duration::ZERO);
    let svc = service(&backend, 2);
    let (pieces, result) = drain(svc.submit(request("p", Priority::Message)).await.unwrap()).await;
    let expected: Vec<String> = (0..100).map(|i| format!("p-{i} ")).collect();
    assert_eq!(pieces, expected);
    assert_eq!(result.unwrap().text, expected.concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_still_gets_every_piece_and_the_result() {
    // More pieces than the event buffer: the worker waits for the reader, nothing is lost.
    let backend = Backend::new(300, Duration::ZERO);
    let svc = service(&backend, 2);
    let mut g = svc.submit(request("s", Priority::Message)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut n = 0;
    let result = loop {
        match g.recv().await.unwrap() {
            LlmEvent::Text(t) => {
                assert_eq!(t, format!("s-{n} "));
                n += 1;
            }
            LlmEvent::Done(r) => break r,
        }
    };
    assert_eq!(n, 300);
    assert_eq!(result.unwrap().finish, FinishReason::Stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_and_panics_are_answered_and_the_worker_keeps_serving() {
    let backend = Backend::new(1, Duration::ZERO);
    let svc = service(&backend, 4);
    let failed = svc
        .submit(request("fail", Priority::Message))
        .await
        .unwrap()
        .wait()
        .await;
    assert!(matches!(failed, Err(LlmError::Inference(ref m)) if m.contains("told to fail")));
    let panicked = svc
        .submit(request("panic", Priority::Message))
        .await
        .unwrap()
        .wait()
        .await;
    match panicked {
        Err(LlmError::Inference(m)) => assert!(m.contains("panicked"), "{m}"),
        other => panic!("{other:?}"),
    }
    let ok = svc
        .submit(request("ok", Priority::Message))
        .await
        .unwrap()
        .wait()
        .await;
    assert_eq!(ok.unwrap().text, "ok-0 ");
    let stats = svc.stats();
    assert_eq!((stats.failed, stats.completed), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_two_requests_at_once() {
    let backend = Backend::new(1, Duration::ZERO);
    let svc = LlmService::start(
        backend.clone(),
        WorkerOptions {
            workers: 2,
            queue_depth: 2,
        },
    )
    .unwrap();
    let g1 = svc
        .submit(request("gate", Priority::Message))
        .await
        .unwrap();
    let g2 = svc
        .submit(request("gate", Priority::Message))
        .await
        .unwrap();
    until("both gates to start", || backend.started().len() == 2).await;
    assert_eq!(svc.stats().running, 2);
    backend.release();
    backend.release();
    drain(g1).await.1.unwrap();
    drain(g2).await.1.unwrap();
}

#[test]
fn zero_workers_or_zero_depth_is_refused_with_a_reason() {
    let backend = Backend::new(1, Duration::ZERO);
    for (workers, queue_depth) in [(0, 4), (1, 0)] {
        let err = LlmService::start(
            backend.clone(),
            WorkerOptions {
                workers,
                queue_depth,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("at least one"), "{err}");
    }
}
