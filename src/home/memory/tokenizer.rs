//! The BERT WordPiece tokenizer of the embedding model, read from its `tokenizer.json`: the
//! same ids as Hugging Face `tokenizers` (`BertNormalizer` → `BertPreTokenizer` → `WordPiece`
//! → `[CLS] … [SEP]`), without that crate's weight.
//!
//! Steps, in the order `tokenizers` applies them: special tokens written literally in the text
//! (`[SEP]`, `[MASK]` …) are kept whole; the rest is cleaned (control characters dropped, every
//! whitespace character a space), CJK ideographs padded with spaces, accents stripped (NFD,
//! then nonspacing marks dropped), lower-cased, split on whitespace and around punctuation, and
//! each word cut greedily into the longest vocabulary pieces (`##` marks a continuation; a word
//! with no cut, or longer than 100 characters, is `[UNK]`). The character classes come from
//! the same Unicode tables `tokenizers` uses.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

use super::MemoryError;

/// A WordPiece tokenizer.
#[derive(Debug, Clone)]
pub struct WordPiece {
    vocab: HashMap<String, u32>,
    /// Added special tokens matched literally in the input, longest first.
    specials: Vec<(String, u32)>,
    unk: u32,
    cls: u32,
    sep: u32,
    prefix: String,
    max_word_chars: usize,
    lowercase: bool,
    strip_accents: bool,
}

#[derive(Deserialize)]
struct TokenizerJson {
    model: ModelJson,
    normalizer: Option<NormalizerJson>,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(Deserialize)]
struct ModelJson {
    #[serde(rename = "type")]
    kind: String,
    vocab: HashMap<String, u32>,
    unk_token: String,
    #[serde(default = "default_prefix")]
    continuing_subword_prefix: String,
    #[serde(default = "default_max_chars")]
    max_input_chars_per_word: usize,
}

fn default_prefix() -> String {
    "##".into()
}

fn default_max_chars() -> usize {
    100
}

#[derive(Deserialize)]
struct NormalizerJson {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "yes")]
    lowercase: bool,
    strip_accents: Option<bool>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
    #[serde(default)]
    special: bool,
}

impl WordPiece {
    /// Read `tokenizer.json` (a BERT WordPiece tokenizer).
    pub fn from_file(path: &Path) -> Result<Self, MemoryError> {
        let bytes = std::fs::read(path).map_err(|e| MemoryError::Model {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_json(&bytes).map_err(|reason| MemoryError::Model {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parse the contents of a `tokenizer.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let t: TokenizerJson =
            serde_json::from_slice(bytes).map_err(|e| format!("not a tokenizer.json: {e}"))?;
        if t.model.kind != "WordPiece" {
            return Err(format!(
                "model type is {:?}; only WordPiece (BERT) tokenizers are supported",
                t.model.kind
            ));
        }
        let (lowercase, strip_accents) = match &t.normalizer {
            Some(n) if n.kind == "BertNormalizer" => {
                (n.lowercase, n.strip_accents.unwrap_or(n.lowercase))
            }
            Some(n) => {
                return Err(format!(
                    "normalizer {:?} is not supported (expected BertNormalizer)",
                    n.kind
                ))
            }
            None => (false, false),
        };
        let id = |name: &str| {
            t.model
                .vocab
                .get(name)
                .copied()
                .ok_or_else(|| format!("the vocabulary has no {name} token"))
        };
        let mut specials: Vec<(String, u32)> = t
            .added_tokens
            .iter()
            .filter(|a| a.special && !a.content.is_empty())
            .map(|a| (a.content.clone(), a.id))
            .collect();
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        Ok(Self {
            unk: id(&t.model.unk_token)?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            vocab: t.model.vocab,
            specials,
            prefix: t.model.continuing_subword_prefix,
            max_word_chars: t.model.max_input_chars_per_word,
            lowercase,
            strip_accents,
        })
    }

    /// `[CLS] pieces… [SEP]`, cut to at most `max_len` ids (the pieces are truncated, the
    /// markers kept).
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = vec![self.cls];
        let room = max_len.saturating_sub(2);
        let mut pieces = Vec::new();
        self.pieces(text, &mut pieces);
        pieces.truncate(room);
        ids.extend(pieces);
        ids.push(self.sep);
        ids
    }

    /// The pieces of `text`, without markers.
    pub fn pieces(&self, text: &str, out: &mut Vec<u32>) {
        let mut rest = text;
        while !rest.is_empty() {
            match self.next_special(rest) {
                Some((at, len, id)) => {
                    self.plain(&rest[..at], out);
                    out.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.plain(rest, out);
                    break;
                }
            }
        }
    }

    /// The earliest special token in `s` (longest at a position): (byte offset, length, id).
    fn next_special(&self, s: &str) -> Option<(usize, usize, u32)> {
        let mut best: Option<(usize, usize, u32)> = None;
        for (tok, id) in &self.specials {
            if let Some(at) = s.find(tok.as_str()) {
                if best.is_none_or(|(b, blen, _)| at < b || (at == b && tok.len() > blen)) {
                    best = Some((at, tok.len(), *id));
                }
            }
        }
        best
    }

    fn plain(&self, text: &str, out: &mut Vec<u32>) {
        let normal = self.normalize(text);
        for word in normal.split(char::is_whitespace) {
            let mut start = 0;
            for (i, c) in word.char_indices() {
                if is_punctuation(c) {
                    self.word(&word[start..i], out);
                    self.word(&word[i..i + c.len_utf8()], out);
                    start = i + c.len_utf8();
                }
            }
            self.word(&word[start..], out);
        }
    }

    fn normalize(&self, text: &str) -> String {
        let mut s = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || is_control(c) {
                continue;
            }
            let c = if is_whitespace(c) { ' ' } else { c };
            if is_chinese_char(c) {
                s.push(' ');
                s.push(c);
                s.push(' ');
            } else {
                s.push(c);
            }
        }
        if self.strip_accents {
            s = s
                .nfd()
                .map(|(c, _)| c)
                .filter(|c| !c.is_mark_nonspacing())
                .collect();
        }
        if self.lowercase {
            s = s.chars().flat_map(char::to_lowercase).collect();
        }
        s
    }

    /// Greedy longest-match WordPiece of one word.
    fn word(&self, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if word.chars().count() > self.max_word_chars {
            out.push(self.unk);
            return;
        }
        let mark = out.len();
        let mut start = 0;
        let mut key = String::new();
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                key.clear();
                if start > 0 {
                    key.push_str(&self.prefix);
                }
                key.push_str(&word[start..end]);
                if let Some(id) = self.vocab.get(&key) {
                    found = Some(*id);
                    break;
                }
                end -= word[start..end].chars().last().map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(mark);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }

    /// Number of entries in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }
}

fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

fn is_chinese_char(c: char) -> bool {
    matches!(
        u32::from(c),
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "the", "key",
            "!", ",", "cafe", "中", "##s",
        ];
        let vocab: serde_json::Map<String, serde_json::Value> = vocab
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).to_owned(), serde_json::json!(i)))
            .collect();
        let json = serde_json::json!({
            "added_tokens": [{"id": 3, "content": "[SEP]", "special": true},
                             {"id": 4, "content": "[MASK]", "special": true}],
            "normalizer": {"type": "BertNormalizer", "lowercase": true, "strip_accents": null},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": vocab}
        });
        WordPiece::from_json(json.to_string().as_bytes()).expect("tokenizer")
    }

    #[test]
    fn greedy_longest_match_with_markers_and_unknown_words() {
        let t = tiny();
        assert_eq!(t.encode("Unaffable", 64), vec![2, 5, 6, 7, 3]);
        assert_eq!(t.encode("the KEY!", 64), vec![2, 8, 9, 10, 3]);
        // Accents stripped, CJK split, an unknown word is one [UNK].
        assert_eq!(t.encode("Café 中中 zzz", 64), vec![2, 12, 13, 13, 1, 3]);
        // A literal special token stays whole.
        assert_eq!(t.encode("key[MASK]keys", 64), vec![2, 9, 4, 9, 14, 3]);
        // Truncation keeps [CLS] and [SEP].
        assert_eq!(t.encode("the the the", 4), vec![2, 8, 8, 3]);
        assert_eq!(t.encode("", 8), vec![2, 3]);
    }
}
