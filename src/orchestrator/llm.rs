//! How the orchestrator reaches a language model: [`LlmGateway`] submits a request to a queue
//! (answering `Busy` at once when it is full) and streams the reply back over a channel.

use tokio::sync::mpsc;

use crate::nlu::llm::{GenerateOutput, GenerateRequest, LlmError};

/// A piece of a streamed generation.
#[derive(Debug)]
pub enum LlmChunk {
    /// Visible text.
    Text(String),
    /// The end.
    Done(Result<GenerateOutput, LlmError>),
}

/// A queue in front of a language model.
pub trait LlmGateway: Send + Sync + 'static {
    /// Backend name for logs and metrics.
    fn name(&self) -> &'static str;
    /// Queue a request; `Err(Busy)` at once when the queue is full.
    fn submit(&self, req: GenerateRequest) -> Result<mpsc::Receiver<LlmChunk>, LlmError>;
    /// Requests waiting now (for the `llm_queue_depth` gauge).
    fn queue_depth(&self) -> usize {
        0
    }
}

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, LlmBackendKind};
use crate::nlu::llm::candle::{CandleBackend, CandleOptions};
use crate::nlu::llm::ollama::{OllamaBackend, OllamaOptions};
use crate::nlu::llm::worker::{LlmEvent, LlmService, WorkerOptions};
use crate::nlu::llm::LlmBackend;

/// The running LLM service, as the orchestrator sees it.
pub struct LlmHandle {
    service: LlmService,
    describe: String,
}

impl LlmHandle {
    /// A handle over a started service.
    pub fn new(service: LlmService, describe: String) -> Self {
        Self { service, describe }
    }

    /// "candle: /path/model.gguf, 1 thread" — for health and logs.
    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    /// Stop accepting, cancel what is queued, join the threads.
    pub fn shutdown(&self) {
        self.service.shutdown();
    }
}

impl LlmGateway for LlmHandle {
    fn name(&self) -> &'static str {
        self.service.backend_name()
    }

    fn queue_depth(&self) -> usize {
        self.service.stats().queue_depth
    }

    fn submit(&self, req: GenerateRequest) -> Result<mpsc::Receiver<LlmChunk>, LlmError> {
        let mut generation = self.service.try_submit(req)?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            // Dropping `generation` (when the orchestrator stops listening) cancels it.
            while let Some(ev) = generation.recv().await {
                let chunk = match ev {
                    LlmEvent::Text(t) => LlmChunk::Text(t),
                    LlmEvent::Done(r) => {
                        let _ = tx.send(LlmChunk::Done(r)).await;
                        return;
                    }
                };
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// Where the configured candle model is: a path (`/…`, `./…` or `*.gguf`) as is, else a model
/// name from the manifest under `<data_dir>/models`.
pub fn model_path(cfg: &Config) -> Result<PathBuf, LlmError> {
    let m = &cfg.llm.model;
    if m.ends_with(".gguf") {
        return Ok(PathBuf::from(m));
    }
    crate::models::resolve(&cfg.models_dir(), m).map_err(|e| LlmError::Load {
        path: m.clone(),
        reason: e.to_string(),
    })
}

/// Load the configured backend and start its worker. `Ok(None)`: `llm.backend = "none"`.
pub async fn start(cfg: &Config) -> Result<Option<Arc<LlmHandle>>, LlmError> {
    let llm = cfg.llm.clone();
    let (backend, describe): (Arc<dyn LlmBackend>, String) = match llm.backend {
        LlmBackendKind::None => return Ok(None),
        LlmBackendKind::Candle => {
            let path = model_path(cfg)?;
            let opts = CandleOptions {
                threads: llm.threads,
                context_tokens: llm.context_tokens,
                ..CandleOptions::default()
            };
            let p = path.clone();
            let started = std::time::Instant::now();
            let backend = tokio::task::spawn_blocking(move || CandleBackend::load(&p, opts))
                .await
                .map_err(|e| LlmError::Inference(format!("model loader panicked: {e}")))??;
            tracing::info!(model = %path.display(), ms = started.elapsed().as_millis() as u64, "language model loaded");
            (
                Arc::new(backend),
                format!("candle: {}, {} thread(s)", path.display(), llm.threads),
            )
        }
        LlmBackendKind::Ollama => {
            let backend = OllamaBackend::new(OllamaOptions {
                base_url: llm.ollama_url.clone(),
                model: llm.ollama_model.clone(),
                timeout: llm.ollama_timeout,
                connect_timeout: std::time::Duration::from_secs(5),
                keep_alive: None,
                num_ctx: Some(llm.context_tokens),
            })?;
            (
                Arc::new(backend),
                format!("ollama: {} at {}", llm.ollama_model, llm.ollama_url),
            )
        }
    };
    let service = LlmService::start(
        backend,
        WorkerOptions {
            workers: 1,
            queue_depth: llm.queue_depth,
        },
    )?;
    Ok(Some(Arc::new(LlmHandle::new(service, describe))))
}
