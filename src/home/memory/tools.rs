//! The memory tools (routing group `memory`) the fast path and the LLM call:
//! `memory_remember`, `memory_recall` and `memory_forget`.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::{Hit, Memory, MemoryError, NewFact, Outcome};
use crate::nlu::llm::ToolSpec;
use crate::orchestrator::speak;
use crate::orchestrator::tools::{Tool, ToolContext, ToolError, ToolOutput, ToolRegistry};

/// Matches recalled per question, at most.
pub const RECALL_K: usize = 3;
/// Candidates a "forget what I said about …" considers.
pub const FORGET_K: usize = 3;

fn tool_err(tool: &str, e: MemoryError) -> ToolError {
    match e {
        MemoryError::Store(s) => ToolError::Store(s),
        MemoryError::Invalid { .. } => ToolError::InvalidArguments {
            tool: tool.into(),
            message: e.to_string(),
        },
        other => ToolError::Failed {
            tool: tool.into(),
            message: other.to_string(),
        },
    }
}

fn hits_json(hits: &[Hit]) -> Value {
    Value::Array(
        hits.iter()
            .map(|h| json!({"id": h.fact.id, "text": h.fact.text, "score": h.score}))
            .collect(),
    )
}

/// `"the spare key is under the pot"` → `"The spare key is under the pot."`
fn sentence(text: &str) -> String {
    let t = text.trim().trim_end_matches(['.', '!', '?']);
    let mut c = t.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

/// Quoted as said back: first person stays ("you said: my pin is …").
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.trim().trim_end_matches(['.', '!', '?']))
}

struct Remember(Memory);

impl Tool for Remember {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "memory_remember".into(),
            description:
                "Remember a fact the user states, e.g. \"the spare key is under the flower pot\"."
                    .into(),
            parameters: json!({"type": "object", "properties": {
                "text": {"type": "string"}, "tags": {"type": "string"}},
                "required": ["text"]}),
        }
    }
    fn group(&self) -> &'static str {
        "memory"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let text = args.get("text").and_then(Value::as_str).unwrap_or("");
            let tags = args
                .get("tags")
                .and_then(Value::as_str)
                .map(|t| {
                    t.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let r = self
                .0
                .remember(NewFact {
                    text: text.to_owned(),
                    contact_id: None,
                    conversation_id: Some(ctx.conversation_id),
                    source_message_id: ctx.source_message_id,
                    tags,
                })
                .await
                .map_err(|e| tool_err("memory_remember", e))?;
            let say = match r.outcome {
                Outcome::Created | Outcome::Replayed => {
                    format!(
                        "Okay, I'll remember that {}.",
                        r.fact.text.trim_end_matches('.')
                    )
                }
                Outcome::Updated => format!(
                    "Okay, I've updated what I remembered: {}",
                    sentence(&r.fact.text)
                ),
            };
            Ok(ToolOutput {
                say,
                data: json!({"id": r.fact.id, "outcome": r.outcome}),
            })
        })
    }
}

struct Recall(Memory);

impl Tool for Recall {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "memory_recall".into(),
            description: "Look up what the user asked to remember about a topic, e.g. \"spare key\"; without a query, list the latest memories.".into(),
            parameters: json!({"type": "object", "properties": {"query": {"type": "string"}}}),
        }
    }
    fn group(&self) -> &'static str {
        "memory"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        _ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let query = args
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim();
            if query.is_empty() {
                let facts = self
                    .0
                    .list(None, None, RECALL_K)
                    .await
                    .map_err(|e| tool_err("memory_recall", e))?;
                let say = if facts.is_empty() {
                    "You haven't asked me to remember anything yet.".to_owned()
                } else {
                    let parts: Vec<String> = facts.iter().map(|f| quoted(&f.text)).collect();
                    format!("Most recently you told me: {}.", speak::list_and(&parts))
                };
                let data: Vec<Value> = facts
                    .iter()
                    .map(|f| json!({"id": f.id, "text": f.text}))
                    .collect();
                return Ok(ToolOutput {
                    say,
                    data: Value::Array(data),
                });
            }
            let min = self.0.config().min_score;
            let hits = self
                .0
                .search(query, RECALL_K, min, None)
                .await
                .map_err(|e| tool_err("memory_recall", e))?;
            let say = match hits.as_slice() {
                [] => format!("I don't remember anything about {query}."),
                [one] => format!("You told me: {}", sentence(&one.fact.text)),
                [best, rest @ ..] => {
                    // Others only when nearly as close as the best.
                    let close: Vec<&Hit> = rest
                        .iter()
                        .filter(|h| h.score >= best.score - 0.1)
                        .collect();
                    if close.is_empty() {
                        format!("You told me: {}", sentence(&best.fact.text))
                    } else {
                        let mut parts = vec![quoted(&best.fact.text)];
                        parts.extend(close.iter().map(|h| quoted(&h.fact.text)));
                        format!("You told me: {}.", speak::list_and(&parts))
                    }
                }
            };
            Ok(ToolOutput {
                say,
                data: hits_json(&hits),
            })
        })
    }
}

struct Forget(Memory);

impl Tool for Forget {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "memory_forget".into(),
            description: "Forget memories: by id (or comma-separated ids), or those about `query` (found first; they are only erased with confirm=true).".into(),
            parameters: json!({"type": "object", "properties": {
                "id": {"type": "integer"}, "ids": {"type": "string"},
                "query": {"type": "string"}, "confirm": {"type": "boolean"}}}),
        }
    }
    fn group(&self) -> &'static str {
        "memory"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        _ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let err = |e| tool_err("memory_forget", e);
            let mut ids: Vec<i64> = Vec::new();
            if let Some(list) = args.get("ids").and_then(Value::as_str) {
                for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    ids.push(part.parse().map_err(|_| ToolError::InvalidArguments {
                        tool: "memory_forget".into(),
                        message: format!("ids must be comma-separated numbers; got {list:?}"),
                    })?);
                }
            }
            ids.extend(args.get("id").and_then(Value::as_i64));
            if !ids.is_empty() {
                let mut texts = Vec::new();
                for id in &ids {
                    if let Some(f) = self.0.get(*id).await.map_err(err)? {
                        texts.push(quoted(&f.text));
                    }
                }
                let gone = self.0.forget(ids).await.map_err(err)?;
                let say = if gone.is_empty() {
                    "I couldn't find that memory.".to_owned()
                } else {
                    format!("Okay, I've forgotten {}.", speak::list_and(&texts))
                };
                return Ok(ToolOutput {
                    say,
                    data: json!({"forgotten": gone}),
                });
            }
            let query = args
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim();
            if query.is_empty() {
                return Err(ToolError::InvalidArguments {
                    tool: "memory_forget".into(),
                    message: "give the id of a memory or a query".into(),
                });
            }
            let hits = self.candidates(query).await.map_err(err)?;
            if hits.is_empty() {
                return Ok(ToolOutput {
                    say: format!("I don't remember anything about {query}."),
                    data: json!({"forgotten": [], "candidates": []}),
                });
            }
            let confirm = args.get("confirm").and_then(Value::as_bool) == Some(true);
            let texts: Vec<String> = hits.iter().map(|h| quoted(&h.fact.text)).collect();
            if !confirm {
                return Ok(ToolOutput {
                    say: format!("Should I forget {}?", speak::list_and(&texts)),
                    data: json!({"forgotten": [], "candidates": hits_json(&hits)}),
                });
            }
            let ids: Vec<i64> = hits.iter().map(|h| h.fact.id).collect();
            let gone = self.0.forget(ids).await.map_err(err)?;
            Ok(ToolOutput {
                say: format!("Okay, I've forgotten {}.", speak::list_and(&texts)),
                data: json!({"forgotten": gone}),
            })
        })
    }
}

impl Forget {
    /// What "forget what I said about `query`" means: the best match, and others only when
    /// nearly as close.
    async fn candidates(&self, query: &str) -> Result<Vec<Hit>, MemoryError> {
        let min = self.0.config().min_score;
        let hits = self.0.search(query, FORGET_K, min, None).await?;
        let best = hits.first().map_or(0.0, |h| h.score);
        Ok(hits
            .into_iter()
            .filter(|h| h.score >= best - 0.05)
            .collect())
    }
}

/// Register the memory tools.
pub fn register(registry: &mut ToolRegistry, memory: &Memory) {
    registry.register(Arc::new(Remember(memory.clone())));
    registry.register(Arc::new(Recall(memory.clone())));
    registry.register(Arc::new(Forget(memory.clone())));
}
