//! Natural-language understanding: the deterministic fast path ([`intents`]) and the language
//! models ([`llm`]).
//!
//! The fast path owns intents and typed slots for everyday commands; the LLM answers
//! everything else and fills free text, through the same tool registry.

pub mod intents;
pub mod llm;
