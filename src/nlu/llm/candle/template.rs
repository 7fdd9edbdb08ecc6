//! Chat templates: how messages become prompt text (ChatML, Llama 3).
//!
//! Each message is rendered on its own so that the prompt's tokens are the concatenation of
//! the messages' tokens (every message starts and ends at a control token), which is what
//! makes a cached prefix of earlier turns reusable.

use candle_core::quantized::gguf_file;

use super::super::{ChatMessage, Role};

/// A chat prompt format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen2).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` after `<|begin_of_text|>`.
    Llama3,
}

impl ChatTemplate {
    /// Llama 3 when the GGUF's `tokenizer.chat_template` uses its header tokens, else ChatML.
    pub fn from_gguf(ct: &gguf_file::Content) -> Self {
        let tpl = ct
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("");
        if tpl.contains("<|start_header_id|>") {
            Self::Llama3
        } else {
            Self::ChatMl
        }
    }

    /// The text of one message; `first` adds the begin-of-text marker where the format has one.
    pub fn render(&self, m: &ChatMessage, first: bool) -> String {
        match self {
            Self::ChatMl => {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::Tool => "tool",
                };
                format!("<|im_start|>{role}\n{}<|im_end|>\n", m.content)
            }
            Self::Llama3 => {
                let role = match m.role {
                    Role::System => "system",
                    Role::User => "user",
                    Role::Assistant => "assistant",
                    Role::Tool => "ipython",
                };
                let bot = if first { "<|begin_of_text|>" } else { "" };
                format!(
                    "{bot}<|start_header_id|>{role}<|end_header_id|>\n\n{}<|eot_id|>",
                    m.content
                )
            }
        }
    }

    /// The text that opens the assistant's reply.
    pub fn assistant_prefix(&self) -> &'static str {
        match self {
            Self::ChatMl => "<|im_start|>assistant\n",
            Self::Llama3 => "<|start_header_id|>assistant<|end_header_id|>\n\n",
        }
    }

    /// Tokens that end the assistant's turn.
    pub fn end_tokens(&self) -> &'static [&'static str] {
        match self {
            Self::ChatMl => &["<|im_end|>", "<|endoftext|>"],
            Self::Llama3 => &["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"],
        }
    }
}
