//! Sentence streaming: text fragments in (as the LLM produces them), one [`Audio`] per
//! sentence out, from the engine's own worker thread.
