//! A speech engine on its own thread: async callers send jobs over a bounded channel and await
//! the answer on a oneshot, so CPU-bound inference never runs on the async runtime.
//!
//! [`Worker`] is generic over the engine; [`SttWorker`] is the speech-to-text one.
//! Invariant: a job's closure runs on the worker thread only; a panic inside one is caught
//! and reported as [`SpeechError::WorkerGone`] to that caller, and the worker keeps serving.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Audio, SpeechError, SpeechToText, SttRequest, Transcript};

type Job<E> = Box<dyn FnOnce(&mut E) + Send>;

/// An engine `E` owned by one thread, reached through a bounded queue.
#[derive(Debug)]
pub struct Worker<E> {
    name: &'static str,
    tx: mpsc::Sender<Job<E>>,
}

impl<E> Clone for Worker<E> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            tx: self.tx.clone(),
        }
    }
}

impl<E: Send + 'static> Worker<E> {
    /// Move `engine` onto a new thread named after `name`, with room for `queue` waiting jobs.
    /// The thread ends when every handle is dropped.
    pub fn spawn(name: &'static str, mut engine: E, queue: usize) -> Result<Self, SpeechError> {
        let (tx, mut rx) = mpsc::channel::<Job<E>>(queue.max(1));
        std::thread::Builder::new()
            .name(format!("la-{name}"))
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    if catch_unwind(AssertUnwindSafe(|| job(&mut engine))).is_err() {
                        tracing::error!(engine = name, "a speech job panicked");
                    }
                }
            })
            .map_err(|e| SpeechError::Runtime {
                library: name.to_string(),
                reason: format!("cannot start the worker thread: {e}"),
            })?;
        Ok(Self { name, tx })
    }

    /// Run `f` on the engine's thread (waiting for room in the queue) and return its result.
    pub async fn run<R, F>(&self, f: F) -> Result<R, SpeechError>
    where
        F: FnOnce(&mut E) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job<E> = Box::new(move |engine: &mut E| {
            // The caller may have gone away; nobody is left to tell.
            let _ = reply.send(f(engine));
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| SpeechError::WorkerGone(self.name))?;
        answer.await.map_err(|_| SpeechError::WorkerGone(self.name))
    }
}

/// A speech-to-text engine behind a [`Worker`].
pub type SttWorker = Worker<Box<dyn SpeechToText>>;

impl Worker<Box<dyn SpeechToText>> {
    /// Transcribe on the worker thread; `cancel` aborts the job even while it runs.
    pub async fn transcribe(
        &self,
        audio: Audio,
        request: SttRequest,
        cancel: CancellationToken,
    ) -> Result<Transcript, SpeechError> {
        self.run(move |engine| {
            let _fg = crate::platform::foreground::enter();
            engine.transcribe(&audio, &request, &cancel)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl SpeechToText for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn transcribe(
            &mut self,
            audio: &Audio,
            _request: &SttRequest,
            cancel: &CancellationToken,
        ) -> Result<Transcript, SpeechError> {
            if cancel.is_cancelled() {
                return Err(SpeechError::Cancelled);
            }
            if audio.samples.is_empty() {
                panic!("no samples");
            }
            Ok(Transcript {
                text: format!("{} samples", audio.samples.len()),
                ..Transcript::default()
            })
        }
    }

    #[tokio::test]
    async fn jobs_run_on_the_worker_and_a_panic_does_not_stop_it() {
        let w: SttWorker =
            Worker::spawn("echo", Box::new(Echo) as Box<dyn SpeechToText>, 2).expect("spawn");
        let t = w
            .transcribe(
                Audio::new(16_000, vec![0.0; 3]),
                SttRequest::default(),
                CancellationToken::new(),
            )
            .await
            .expect("ok");
        assert_eq!(t.text, "3 samples");
        let e = w
            .transcribe(
                Audio::default(),
                SttRequest::default(),
                CancellationToken::new(),
            )
            .await
            .expect_err("panicked");
        assert!(matches!(e, SpeechError::WorkerGone("echo")), "{e}");
        let cancel = CancellationToken::new();
        cancel.cancel();
        let e = w
            .transcribe(Audio::new(16_000, vec![0.0]), SttRequest::default(), cancel)
            .await
            .expect_err("cancelled");
        assert!(matches!(e, SpeechError::Cancelled));
        let name = w.run(|e| e.name()).await.expect("still serving");
        assert_eq!(name, "echo");
    }
}
