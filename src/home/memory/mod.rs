//! Memory: facts the household asked the assistant to remember ("the spare key is under the
//! flower pot"), found again by meaning.
//!
//! Each fact is stored in SQLite (`memories`: text, contact and conversation it came from,
//! source message, tags, created/updated) with its all-MiniLM-L6-v2 sentence embedding
//! ([`embed`]: candle BERT, own WordPiece [`tokenizer`], mean pooling, L2 normalisation).
//! Search is a brute-force scan over an in-memory matrix of the unit vectors ([`index`]; why
//! not sqlite-vec is said there), loaded at start and kept in step with every insert, update
//! and delete. A fact said again in other words (cosine ≥ `memory.dedupe_score`) updates the
//! stored one instead of adding a second.
//!
//! Invariants:
//! - The index changes only after the write it mirrors has committed, and under the same
//!   lock as that write, so the two never disagree for longer than one write.
//! - Embedding runs on the embedding worker thread; the index scan runs on a blocking thread;
//!   the async runtime does neither.
//! - A fact is idempotent on its source message: the same message remembered twice is stored
//!   once.
//! - Memory knows nothing about HTTP, the LLM or channels.

pub mod bert;
pub mod embed;
pub mod index;
pub mod sql;
pub mod tokenizer;
pub mod tools;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::config::MemoryConfig;
use crate::domain::{ConversationId, MessageId, UnixMillis};
use crate::events::{EventBus, EventKind};
use crate::store::{Store, StoreError};
use embed::{EmbedWorker, Embedder};
use index::Index;

/// Why a memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The embedding model's files could not be read or do not fit.
    #[error("embedding model {path}: {reason}")]
    Model {
        /// The file or directory.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Memory is switched off or its model is missing; nothing was stored or searched.
    #[error("memory is unavailable: {0}")]
    Unavailable(String),
    /// The forward pass failed.
    #[error("embedding failed: {0}")]
    Embed(String),
    /// The embedding worker stopped.
    #[error("the embedding worker stopped")]
    WorkerGone,
    /// A fact's text is empty or too long.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MemoryError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::WorkerGone => true,
            _ => false,
        }
    }
}

/// Longest fact, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// A remembered fact.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    /// Id.
    pub id: i64,
    /// The fact, as said.
    pub text: String,
    /// The contact it came from or belongs to.
    pub contact_id: Option<i64>,
    /// The conversation it was said in.
    pub conversation_id: Option<ConversationId>,
    /// The message that said it.
    pub source_message_id: Option<MessageId>,
    /// Free tags.
    pub tags: Vec<String>,
    /// First stored.
    pub created_at: UnixMillis,
    /// Last changed (a near-duplicate said again updates it).
    pub updated_at: UnixMillis,
}

/// A fact to remember.
#[derive(Debug, Clone, Default)]
pub struct NewFact {
    /// The fact.
    pub text: String,
    /// The contact; `None` with a conversation: the conversation's contact.
    pub contact_id: Option<i64>,
    /// The conversation it was said in.
    pub conversation_id: Option<ConversationId>,
    /// The message that said it (makes a re-processed message idempotent).
    pub source_message_id: Option<MessageId>,
    /// Tags.
    pub tags: Vec<String>,
}

/// What remembering did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new fact was stored.
    Created,
    /// A near-identical fact was updated with the new wording.
    Updated,
    /// The source message was remembered before; nothing changed.
    Replayed,
}

/// A stored fact and what happened to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    /// The fact.
    pub fact: Fact,
    /// Created, updated or replayed.
    pub outcome: Outcome,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The fact.
    pub fact: Fact,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// The memory service (cheap to clone).
#[derive(Clone)]
pub struct Memory {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    events: Arc<EventBus>,
    cfg: MemoryConfig,
    model_name: String,
    engine: Result<EmbedWorker, String>,
    index: Arc<RwLock<Index>>,
    /// Serialises writes with their index updates (and dedupe decisions).
    writes: tokio::sync::Mutex<()>,
}

/// The model directory `spec` names: a manifest name (its installed directory) or a path to
/// the directory or to a file inside it.
pub fn model_dir(models_dir: &Path, spec: &str) -> Result<PathBuf, MemoryError> {
    let path = crate::models::resolve(models_dir, spec).map_err(|e| MemoryError::Model {
        path: models_dir.join(spec),
        reason: e.to_string(),
    })?;
    if path.is_dir() {
        Ok(path)
    } else if path.is_file() {
        Ok(path.parent().map(Path::to_path_buf).unwrap_or_default())
    } else {
        Err(MemoryError::Model {
            path,
            reason: "no such file or directory".into(),
        })
    }
}

impl Memory {
    /// Open the service: load the embedding model (on a blocking thread) and the index. A
    /// missing model or `enabled = false` is not an error: the service then answers every call
    /// with [`MemoryError::Unavailable`] and [`Memory::status`] says why.
    pub async fn open(
        store: Store,
        events: Arc<EventBus>,
        cfg: MemoryConfig,
        models_dir: &Path,
    ) -> Result<Self, StoreError> {
        let engine = if cfg.enabled {
            let spec = cfg.model.clone();
            let models_dir = models_dir.to_path_buf();
            let (max_tokens, threads, depth) = (cfg.max_tokens, cfg.threads, cfg.queue_depth);
            tokio::task::spawn_blocking(move || {
                let dir = model_dir(&models_dir, &spec)?;
                let e = Embedder::load(&dir, max_tokens, threads)?;
                // The model's identity, stored with each embedding: its directory's name
                // (the manifest name, whether configured by name or by path).
                let name = dir
                    .file_name()
                    .map_or_else(|| spec.clone(), |n| n.to_string_lossy().into_owned());
                Ok((EmbedWorker::spawn(e, depth)?, name))
            })
            .await
            .map_err(|e| MemoryError::Embed(format!("model loader panicked: {e}")))
            .and_then(|r| r)
            .map_err(|e| e.to_string())
        } else {
            Err("switched off (memory.enabled = false)".to_owned())
        };
        let (engine, model_name) = match engine {
            Ok((w, name)) => (Ok(w), name),
            Err(e) => (Err(e), cfg.model.clone()),
        };
        let dims = engine.as_ref().map_or(embed::DIMS, EmbedWorker::dims);
        // Before the index loads: facts of contacts deleted without their memories.
        let orphans = store.write(sql::delete_orphans).await?;
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "erased the memories of deleted contacts"
            );
        }
        let me = Self {
            inner: Arc::new(Inner {
                store,
                events,
                cfg,
                model_name,
                engine,
                index: Arc::new(RwLock::new(Index::new(dims))),
                writes: tokio::sync::Mutex::new(()),
            }),
        };
        if me.inner.engine.is_ok() {
            me.load_index().await?;
        }
        Ok(me)
    }

    /// `Ok(description)` when memory works, else why not.
    pub fn status(&self) -> Result<String, String> {
        match &self.inner.engine {
            Ok(w) => Ok(format!(
                "{} ({} dims), {} memories",
                self.inner.model_name,
                w.dims(),
                self.len()
            )),
            Err(e) => Err(e.clone()),
        }
    }

    /// Number of indexed memories.
    pub fn len(&self) -> usize {
        self.read_index().len()
    }

    /// Whether no memory is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configuration in effect.
    pub fn config(&self) -> &MemoryConfig {
        &self.inner.cfg
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn worker(&self) -> Result<&EmbedWorker, MemoryError> {
        self.inner
            .engine
            .as_ref()
            .map_err(|e| MemoryError::Unavailable(e.clone()))
    }

    /// Build the index from the table; rows embedded by another model are embedded again.
    async fn load_index(&self) -> Result<(), StoreError> {
        let model = self.inner.model_name.clone();
        let m = model.clone();
        let stale = self.inner.store.read(move |c| sql::stale(c, &m)).await?;
        for (id, text) in stale {
            match self.embed(&text).await {
                Ok(v) => {
                    let m = model.clone();
                    self.inner
                        .store
                        .write(move |c| sql::set_embedding(c, id, &m, &v))
                        .await?;
                }
                Err(e) => tracing::warn!(memory = id, error = %e, "cannot re-embed a memory"),
            }
        }
        let rows = self.inner.store.read(sql::all_embeddings).await?;
        let mut ix = self.write_index();
        let mut skipped = 0;
        for (id, contact, _model, blob) in rows {
            match sql::from_blob(&blob) {
                Some(v) if ix.upsert(id, contact, &v) => {}
                _ => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "memories with unreadable embeddings left out of the index"
            );
        }
        tracing::info!(memories = ix.len(), "memory index loaded");
        Ok(())
    }

    /// The unit embedding of `text` (on the embedding thread).
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, MemoryError> {
        self.worker()?.embed(text.to_owned()).await
    }

    /// Remember a fact: idempotent on the source message; a near-identical fact (of the same
    /// contact) is updated with the new wording instead of added.
    pub async fn remember(&self, new: NewFact) -> Result<Remembered, MemoryError> {
        let text = new.text.trim().to_owned();
        if text.is_empty() {
            return Err(MemoryError::Invalid {
                field: "text",
                reason: "must not be empty".into(),
            });
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(MemoryError::Invalid {
                field: "text",
                reason: format!("longer than {MAX_TEXT_CHARS} characters"),
            });
        }
        let worker = self.worker()?.clone();
        if let Some(src) = new.source_message_id {
            if let Some(fact) = self
                .inner
                .store
                .read(move |c| sql::by_source(c, src))
                .await?
            {
                return Ok(Remembered {
                    fact,
                    outcome: Outcome::Replayed,
                });
            }
        }
        if let Some(id) = new.contact_id {
            let known = self
                .inner
                .store
                .read(move |c| sql::contact_exists(c, id))
                .await?;
            if !known {
                return Err(MemoryError::Invalid {
                    field: "contact_id",
                    reason: format!("there is no contact {id}"),
                });
            }
        }
        let v = worker.embed(text.clone()).await?;
        let _guard = self.inner.writes.lock().await;
        // The contact the fact will have decides which facts count as duplicates.
        let contact = match (new.contact_id, new.conversation_id) {
            (Some(c), _) => Some(c),
            (None, Some(conv)) => {
                self.inner
                    .store
                    .read(move |c| sql::conversation_contact(c, conv))
                    .await?
            }
            (None, None) => None,
        };
        let dup = self
            .scan(v.clone(), 8, contact)
            .await?
            .into_iter()
            .find(|s| {
                s.score >= self.inner.cfg.dedupe_score && contact_matches(self, s.id, contact)
            });
        let model = self.inner.model_name.clone();
        let (fact, outcome) = match dup {
            Some(d) => {
                let (t, tags, vv) = (text.clone(), new.tags.clone(), v.clone());
                let tags = (!tags.is_empty()).then_some(tags);
                let fact = self
                    .inner
                    .store
                    .write(move |c| sql::update(c, d.id, &t, tags.as_deref(), &model, &vv))
                    .await?;
                (fact, Outcome::Updated)
            }
            None => {
                let row = sql::NewRow {
                    text,
                    contact_id: contact,
                    conversation_id: new.conversation_id,
                    source_message_id: new.source_message_id,
                    tags: new.tags,
                    model,
                    embedding: v.clone(),
                };
                let fact = self
                    .inner
                    .store
                    .write(move |c| {
                        // Checked again inside the transaction: two turns of one message.
                        if let Some(src) = row.source_message_id {
                            if let Some(f) = sql::by_source(c, src)? {
                                return Ok((f, true));
                            }
                        }
                        Ok((sql::insert(c, &row)?, false))
                    })
                    .await?;
                if fact.1 {
                    return Ok(Remembered {
                        fact: fact.0,
                        outcome: Outcome::Replayed,
                    });
                }
                (fact.0, Outcome::Created)
            }
        };
        self.write_index().upsert(fact.id, fact.contact_id, &v);
        self.inner.events.publish(EventKind::MemoryStored {
            memory_id: fact.id,
            contact_id: fact.contact_id,
            updated: outcome == Outcome::Updated,
        });
        Ok(Remembered { fact, outcome })
    }

    /// Scan the index on a blocking thread.
    async fn scan(
        &self,
        q: Vec<f32>,
        k: usize,
        contact: Option<i64>,
    ) -> Result<Vec<index::Scored>, MemoryError> {
        let ix = self.inner.index.clone();
        tokio::task::spawn_blocking(move || {
            ix.read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .search(&q, k, contact)
        })
        .await
        .map_err(|e| MemoryError::Embed(format!("search panicked: {e}")))
    }

    /// The `k` facts closest in meaning to `query` with a score of at least `min_score`,
    /// best first, optionally only those of `contact`.
    pub async fn search(
        &self,
        query: &str,
        k: usize,
        min_score: f32,
        contact: Option<i64>,
    ) -> Result<Vec<Hit>, MemoryError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(MemoryError::Invalid {
                field: "q",
                reason: "must not be empty".into(),
            });
        }
        let v = self.embed(query).await?;
        let scored: Vec<_> = self
            .scan(v, k, contact)
            .await?
            .into_iter()
            .filter(|s| s.score >= min_score)
            .collect();
        let ids: Vec<i64> = scored.iter().map(|s| s.id).collect();
        let facts = self
            .inner
            .store
            .read(move |c| sql::get_many(c, &ids))
            .await?;
        Ok(scored
            .into_iter()
            .filter_map(|s| {
                facts.iter().find(|f| f.id == s.id).map(|f| Hit {
                    fact: f.clone(),
                    score: s.score,
                })
            })
            .collect())
    }

    /// The memories relevant to `text` for the LLM's context (`top_k`, `min_score`); empty
    /// when memory is off or unavailable.
    pub async fn context_for(&self, text: &str) -> Vec<Hit> {
        if self.inner.engine.is_err() || self.inner.cfg.top_k == 0 || self.is_empty() {
            return Vec::new();
        }
        match self
            .search(text, self.inner.cfg.top_k, self.inner.cfg.min_score, None)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "memory retrieval failed; answering without it");
                Vec::new()
            }
        }
    }

    /// One fact.
    pub async fn get(&self, id: i64) -> Result<Option<Fact>, MemoryError> {
        Ok(self.inner.store.read(move |c| sql::get(c, id)).await?)
    }

    /// A page of facts, newest first (ids below `before`), optionally of one contact.
    pub async fn list(
        &self,
        contact: Option<i64>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Fact>, MemoryError> {
        Ok(self
            .inner
            .store
            .read(move |c| sql::list(c, contact, before, limit))
            .await?)
    }

    /// Forget facts by id; returns the ids that existed.
    pub async fn forget(&self, ids: Vec<i64>) -> Result<Vec<i64>, MemoryError> {
        let _guard = self.inner.writes.lock().await;
        let gone = self
            .inner
            .store
            .write(move |c| sql::delete(c, &ids))
            .await?;
        {
            let mut ix = self.write_index();
            for id in &gone {
                ix.remove(*id);
            }
        }
        if !gone.is_empty() {
            self.inner.events.publish(EventKind::MemoryDeleted {
                memory_ids: gone.clone(),
                contact_id: None,
            });
        }
        Ok(gone)
    }

    /// Forget every fact of a contact; returns their ids.
    pub async fn forget_contact(&self, contact_id: i64) -> Result<Vec<i64>, MemoryError> {
        let _guard = self.inner.writes.lock().await;
        let gone = self
            .inner
            .store
            .write(move |c| sql::delete_contact(c, contact_id))
            .await?;
        {
            let mut ix = self.write_index();
            for id in &gone {
                ix.remove(*id);
            }
        }
        if !gone.is_empty() {
            self.inner.events.publish(EventKind::MemoryDeleted {
                memory_ids: gone.clone(),
                contact_id: Some(contact_id),
            });
        }
        Ok(gone)
    }
}

/// Whether the indexed fact `id` belongs to `contact` (the index filter already checked it
/// when `contact` is set; without a contact, only contact-less facts are duplicates).
fn contact_matches(m: &Memory, id: i64, contact: Option<i64>) -> bool {
    contact.is_some() || m.read_index().contact_of(id) == Some(None)
}
