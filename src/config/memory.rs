//! `[memory]`: the facts the assistant remembers (raw form, defaults and resolution).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[memory]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMemory {
    /// Remember facts and bring relevant ones into the LLM's context.
    pub enabled: bool,
    /// The sentence-embedding model: a name from the manifest or a directory holding
    /// `model.safetensors`, `config.json` and `tokenizer.json`.
    pub model: String,
    /// Memories given to the LLM per turn, at most.
    pub top_k: u64,
    /// Lowest cosine similarity (0 to 1) for a memory to count as relevant.
    pub min_score: f64,
    /// A new fact this similar (cosine) to a stored one replaces it instead of adding one.
    pub dedupe_score: f64,
    /// Longest text embedded, in tokens (longer texts are cut).
    pub max_tokens: u64,
    /// Threads of the embedding model.
    pub threads: u64,
    /// Embedding requests that may wait for the model.
    pub queue_depth: u64,
}

impl Default for RawMemory {
    fn default() -> Self {
        Self {
            enabled: true,
            model: "all-minilm-l6-v2".into(),
            top_k: 3,
            min_score: 0.35,
            dedupe_score: 0.95,
            max_tokens: 256,
            threads: 1,
            queue_depth: 32,
        }
    }
}

/// `[memory]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryConfig {
    /// Remember facts and retrieve them into the LLM's context.
    pub enabled: bool,
    /// Model name or directory.
    pub model: String,
    /// Memories per LLM turn.
    pub top_k: usize,
    /// Relevance threshold (cosine).
    pub min_score: f32,
    /// Near-duplicate threshold (cosine).
    pub dedupe_score: f32,
    /// Longest embedded text in tokens (2 to 512).
    pub max_tokens: usize,
    /// Embedding threads.
    pub threads: usize,
    /// Embedding queue depth.
    pub queue_depth: usize,
}

fn key_err(key: &str, message: String) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        message,
    }
}

fn range(key: &str, v: u64, lo: u64, hi: u64) -> Result<usize, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(usize::try_from(v).unwrap_or(usize::MAX))
    } else {
        Err(key_err(
            key,
            format!("expected a number from {lo} to {hi}; got {v}"),
        ))
    }
}

fn unit(key: &str, v: f64) -> Result<f32, ConfigError> {
    if (0.0..=1.0).contains(&v) {
        #[allow(clippy::cast_possible_truncation)]
        Ok(v as f32)
    } else {
        Err(key_err(
            key,
            format!("expected a number from 0 to 1; got {v}"),
        ))
    }
}

/// Resolve `[memory]`.
pub fn resolve_memory(raw: RawMemory) -> Result<MemoryConfig, ConfigError> {
    if raw.enabled && raw.model.trim().is_empty() {
        return Err(key_err(
            "memory.model",
            "must name an embedding model (see `local-assistant models list`) or a directory"
                .into(),
        ));
    }
    Ok(MemoryConfig {
        enabled: raw.enabled,
        model: raw.model.trim().to_owned(),
        top_k: range("memory.top_k", raw.top_k, 0, 20)?,
        min_score: unit("memory.min_score", raw.min_score)?,
        dedupe_score: unit("memory.dedupe_score", raw.dedupe_score)?,
        max_tokens: range("memory.max_tokens", raw.max_tokens, 8, 512)?,
        threads: range("memory.threads", raw.threads, 1, 64)?,
        queue_depth: range("memory.queue_depth", raw.queue_depth, 1, 10_000)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve_and_bad_values_name_their_key() {
        let c = resolve_memory(RawMemory::default()).expect("defaults");
        assert_eq!(c.model, "all-minilm-l6-v2");
        assert_eq!(c.top_k, 3);
        let e = resolve_memory(RawMemory {
            min_score: 1.5,
            ..RawMemory::default()
        })
        .expect_err("out of range");
        assert!(e.to_string().contains("memory.min_score"), "{e}");
        let e = resolve_memory(RawMemory {
            model: " ".into(),
            ..RawMemory::default()
        })
        .expect_err("empty");
        assert!(e.to_string().contains("memory.model"), "{e}");
    }
}
