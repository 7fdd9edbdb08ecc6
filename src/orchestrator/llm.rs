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
}

/// Placeholder until the engines are merged.
pub struct LlmHandle;
impl LlmHandle {
    /// x
    pub fn describe(&self) -> String {
        String::new()
    }
    /// x
    pub fn shutdown(&self) {}
}
impl LlmGateway for LlmHandle {
    fn name(&self) -> &'static str {
        "none"
    }
    fn submit(&self, _req: GenerateRequest) -> Result<mpsc::Receiver<LlmChunk>, LlmError> {
        Err(LlmError::Stopped)
    }
}
/// x
pub async fn start(
    _cfg: &crate::config::Config,
) -> Result<Option<std::sync::Arc<LlmHandle>>, LlmError> {
    Ok(None)
}
