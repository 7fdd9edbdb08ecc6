//! Sentence embeddings: all-MiniLM-L6-v2 (BERT, 384 dimensions) on candle, mean-pooled over
//! the tokens and L2-normalised, so a dot product of two embeddings is their cosine.
//!
//! [`Embedder`] is the synchronous model; [`EmbedWorker`] owns one on its own thread behind a
//! bounded queue (the shape of `speech::worker`), so inference never runs on the async runtime.
//! Invariant: a job runs on the worker thread only; a panic inside one is caught and reported
//! to its caller, and the worker keeps serving.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use tokio::sync::{mpsc, oneshot};

use super::bert::{Bert, Config as BertConfig, WordTable};
use super::tokenizer::WordPiece;
use super::MemoryError;

/// Dimensions of an all-MiniLM-L6-v2 embedding.
pub const DIMS: usize = 384;

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: Bert,
    tokenizer: WordPiece,
    max_tokens: usize,
    dims: usize,
    pool: rayon::ThreadPool,
    dir: PathBuf,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dir", &self.dir)
            .field("dims", &self.dims)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

fn model_err(path: &Path, reason: impl std::fmt::Display) -> MemoryError {
    MemoryError::Model {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl Embedder {
    /// Load `model.safetensors`, `config.json` and `tokenizer.json` from `dir`; texts are cut
    /// to `max_tokens` tokens (with `[CLS]`/`[SEP]`, at most the model's positions), and the
    /// forward pass uses `threads` threads.
    pub fn load(dir: &Path, max_tokens: usize, threads: usize) -> Result<Self, MemoryError> {
        let config_path = dir.join("config.json");
        let config_bytes = std::fs::read(&config_path).map_err(|e| model_err(&config_path, e))?;
        let config: BertConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| model_err(&config_path, e))?;
        let tokenizer = WordPiece::from_file(&dir.join("tokenizer.json"))?;
        let weights_path = dir.join("model.safetensors");
        let words = WordTable::open(&weights_path).map_err(|e| model_err(&weights_path, e))?;
        // Mapped, not read: the tensors are copied out of the page cache, so loading needs no
        // second copy of the file in the heap (91 MB for all-MiniLM).
        // SAFETY: model files are replaced by rename (`models pull`), never rewritten in place.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &Device::Cpu)
        }
        .map_err(|e| model_err(&weights_path, e))?;
        let model = Bert::load(vb, &config, words).map_err(|e| model_err(&weights_path, e))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("la-embed-{i}"))
            .build()
            .map_err(|e| model_err(dir, format!("cannot start the thread pool: {e}")))?;
        Ok(Self {
            model,
            tokenizer,
            max_tokens: max_tokens.clamp(2, config.max_position_embeddings),
            dims: config.hidden_size,
            pool,
            dir: dir.to_path_buf(),
        })
    }

    /// Embedding dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The model's word-embedding table (memory-mapped).
    pub fn word_table(&self) -> &super::bert::WordTable {
        self.model.words()
    }

    /// The token ids `text` is embedded from.
    pub fn token_ids(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, self.max_tokens)
    }

    /// The unit-length embedding of `text`.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>, MemoryError> {
        let ids = self.token_ids(text);
        let fail = |e: candle_core::Error| MemoryError::Embed(e.to_string());
        let pooled = self.pool.install(|| -> candle_core::Result<Vec<f32>> {
            let hidden = self.model.forward(&ids, &Device::Cpu)?;
            // Mean over the tokens (one unpadded sequence: every token counts).
            hidden.mean(1)?.squeeze(0)?.to_vec1::<f32>()
        });
        let mut v = pooled.map_err(fail)?;
        normalize(&mut v);
        Ok(v)
    }
}

/// Scale `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}

type Job = Box<dyn FnOnce(&Embedder) + Send>;

/// An [`Embedder`] on its own thread, reached through a bounded queue.
#[derive(Debug, Clone)]
pub struct EmbedWorker {
    tx: mpsc::Sender<Job>,
    dims: usize,
}

impl EmbedWorker {
    /// Move `embedder` onto a new thread with room for `queue` waiting jobs. The thread ends
    /// when every handle is dropped.
    pub fn spawn(embedder: Embedder, queue: usize) -> Result<Self, MemoryError> {
        let dims = embedder.dims();
        let (tx, mut rx) = mpsc::channel::<Job>(queue.max(1));
        std::thread::Builder::new()
            .name("la-embed".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    if catch_unwind(AssertUnwindSafe(|| job(&embedder))).is_err() {
                        tracing::error!("an embedding job panicked");
                    }
                }
            })
            .map_err(|e| MemoryError::Embed(format!("cannot start the embedding thread: {e}")))?;
        Ok(Self { tx, dims })
    }

    /// Embedding dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Run `f` on the embedder's thread (waiting for room in the queue).
    pub async fn run<R, F>(&self, f: F) -> Result<R, MemoryError>
    where
        F: FnOnce(&Embedder) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |e: &Embedder| {
            let _ = reply.send(f(e));
        });
        self.tx
            .send(job)
            .await
            .map_err(|_| MemoryError::WorkerGone)?;
        answer.await.map_err(|_| MemoryError::WorkerGone)
    }

    /// The unit-length embedding of `text`.
    pub async fn embed(&self, text: String) -> Result<Vec<f32>, MemoryError> {
        self.run(move |e| e.embed(&text)).await?
    }
}
