//! Placeholder: ollama (being written).
