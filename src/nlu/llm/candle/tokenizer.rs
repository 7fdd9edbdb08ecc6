//! Byte-level BPE tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! candle's own GGUF tokenizer adds a leading space per segment and does not split digits, which
//! is wrong for SmolLM2 (`tokenizer.ggml.pre = "smollm"`). This one follows llama.cpp / Hugging
//! Face `tokenizers`: control tokens are matched first and never merged with text; the rest is
//! pre-tokenized (digits one by one for `smollm`, then the GPT-2 split, no prefix space), each
//! piece is mapped byte-wise to GPT-2's printable alphabet and merged by merge rank.
//!
//! Known approximation: the GPT-2 pattern's `\p{L}` is tested with [`char::is_alphabetic`],
//! which also accepts a few combining marks (`Other_Alphabetic`); text in Latin, Greek,
//! Cyrillic, CJK and emoji is split exactly like the reference.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;

/// How text is split before BPE (`tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's pattern.
    Gpt2,
    /// Every digit its own piece, then GPT-2's pattern (`smollm`, `starcoder`, `refact`).
    DigitsThenGpt2,
}

/// A byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Token id → token string (GPT-2 byte alphabet).
    tokens: Vec<String>,
    /// Token id → raw bytes it stands for (empty for control tokens).
    bytes: Vec<Vec<u8>>,
    /// Token string → id.
    ids: HashMap<String, u32>,
    /// (left id, right id) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Byte → id of its single-character token (the unknown token if the vocabulary lacks
    /// it, as some byte-level vocabularies drop unused control bytes).
    byte_ids: [u32; 256],
    /// Control / user-defined tokens matched literally in input text, longest first.
    specials: Vec<(String, u32)>,
    /// Token id → control token (never visible text).
    control: Vec<bool>,
    pre: PreTokenizer,
    /// End-of-sequence id from the metadata.
    eos: Option<u32>,
}

/// GPT-2's reversible byte → printable character map.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\0');
    }
    table
}

fn md_err(key: &str, why: &str) -> String {
    format!("GGUF metadata `{key}` {why}")
}

impl Tokenizer {
    /// Build from GGUF metadata. Errors name the missing or malformed key.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self, String> {
        let md = &ct.metadata;
        let model = md
            .get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| md_err("tokenizer.ggml.model", "is missing"))?;
        if model != "gpt2" {
            return Err(format!(
                "tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`)"
            ));
        }
        let pre_name = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("default");
        let pre = match pre_name {
            "smollm" | "starcoder" | "refact" | "codeshell" => PreTokenizer::DigitsThenGpt2,
            "gpt2" | "default" | "gpt-2" => PreTokenizer::Gpt2,
            other => {
                return Err(format!(
                    "pre-tokenizer `{other}` (tokenizer.ggml.pre) is not supported; supported: smollm, starcoder, refact, gpt2"
                ))
            }
        };
        let tokens: Vec<String> = md
            .get("tokenizer.ggml.tokens")
            .ok_or_else(|| md_err("tokenizer.ggml.tokens", "is missing"))?
            .to_vec()
            .map_err(|e| md_err("tokenizer.ggml.tokens", &e.to_string()))?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<Result<_, _>>()
            .map_err(|e| md_err("tokenizer.ggml.tokens", &e.to_string()))?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| md_err("tokenizer.ggml.token_type", &e.to_string()))?
                .iter()
                .map(|v| v.to_i32())
                .collect::<Result<_, _>>()
                .map_err(|e| md_err("tokenizer.ggml.token_type", &e.to_string()))?,
            None => vec![1; tokens.len()],
        };
        let merges: Vec<String> = md
            .get("tokenizer.ggml.merges")
            .ok_or_else(|| md_err("tokenizer.ggml.merges", "is missing"))?
            .to_vec()
            .map_err(|e| md_err("tokenizer.ggml.merges", &e.to_string()))?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<Result<_, _>>()
            .map_err(|e| md_err("tokenizer.ggml.merges", &e.to_string()))?;
        let eos = md
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok());
        Self::new(tokens, &types, &merges, pre, eos)
    }

    /// Build from parts: token strings, llama.cpp token types (3 control, 4 user-defined),
    /// merges as `"left right"`.
    pub fn new(
        tokens: Vec<String>,
        types: &[i32],
        merges: &[String],
        pre: PreTokenizer,
        eos: Option<u32>,
    ) -> Result<Self, String> {
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let table = byte_to_char_table();
        let mut char_to_byte = HashMap::with_capacity(256);
        let unk = ids
            .get("<unk>")
            .or_else(|| ids.get("<|endoftext|>"))
            .copied()
            .unwrap_or(0);
        let mut byte_ids = [unk; 256];
        let mut present = 0;
        for (b, c) in table.iter().enumerate() {
            char_to_byte.insert(*c, b as u8);
            if let Some(&id) = ids.get(&c.to_string()) {
                byte_ids[b] = id;
                present += 1;
            }
        }
        if present < 200 {
            return Err(format!(
                "vocabulary has only {present} of the 256 byte tokens: not a byte-level BPE"
            ));
        }
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let (l, r) = m
                .split_once(' ')
                .ok_or_else(|| format!("merge #{rank} `{m}` has no space"))?;
            let (Some(&li), Some(&ri), Some(&mi)) =
                (ids.get(l), ids.get(r), ids.get(&format!("{l}{r}")))
            else {
                continue; // a merge whose parts are not in the vocabulary can never apply
            };
            merge_map.entry((li, ri)).or_insert((rank as u32, mi));
        }
        let mut control = vec![false; tokens.len()];
        let mut specials = Vec::new();
        let mut bytes = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let ty = types.get(i).copied().unwrap_or(1);
            if ty == 3 || ty == 4 {
                specials.push((t.clone(), i as u32));
            }
            if ty == 3 {
                control[i] = true;
                bytes.push(Vec::new());
            } else if ty == 4 {
                bytes.push(t.as_bytes().to_vec());
            } else {
                bytes.push(
                    t.chars()
                        .filter_map(|c| char_to_byte.get(&c).copied())
                        .collect(),
                );
            }
        }
        specials.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        Ok(Self {
            tokens,
            bytes,
            ids,
            merges: merge_map,
            byte_ids,
            specials,
            control,
            pre,
            eos,
        })
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Id of a token string (e.g. `<|im_end|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The metadata's end-of-sequence id.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `id` is a control token (no visible text).
    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(true)
    }

    /// The raw bytes a token stands for (empty for control tokens and unknown ids).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Encode text; control tokens written literally (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // Earliest special token occurrence (longest at that position).
            let mut best: Option<(usize, &str, u32)> = None;
            for (s, id) in &self.specials {
                if let Some(pos) = rest.find(s.as_str()) {
                    if best.is_none_or(|(p, bs, _)| pos < p || (pos == p && s.len() > bs.len())) {
                        best = Some((pos, s.as_str(), *id));
                    }
                }
            }
            match best {
                Some((pos, s, id)) => {
                    self.encode_text(&rest[..pos], &mut out);
                    out.push(id);
                    rest = &rest[pos + s.len()..];
                }
                None => {
                    self.encode_text(rest, &mut out);
                    rest = "";
                }
            }
        }
        out
    }

    fn encode_text(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        match self.pre {
            PreTokenizer::Gpt2 => {
                for piece in gpt2_split(text) {
                    self.bpe(piece, out);
                }
            }
            PreTokenizer::DigitsThenGpt2 => {
                for segment in digit_split(text) {
                    for piece in gpt2_split(segment) {
                        self.bpe(piece, out);
                    }
                }
            }
        }
    }

    /// Merge the bytes of one pre-token by merge rank.
    fn bpe(&self, piece: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<u32> = piece.bytes().map(|b| self.byte_ids[b as usize]).collect();
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let Some(&(rank, merged)) = self.merges.get(&(syms[i], syms[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, merged));
                    }
                }
            }
            let Some((_, i, merged)) = best else { break };
            syms[i] = merged;
            syms.remove(i + 1);
        }
        out.extend(syms);
    }

    /// Decode ids to text (control tokens dropped, invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Split into runs of non-digits and single digits (Hugging Face `Digits(individual)`).
fn digit_split(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c.is_numeric() {
            if start < i {
                out.push(&text[start..i]);
            }
            out.push(&text[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !c.is_numeric()
}

fn is_other(c: char) -> bool {
    !c.is_whitespace() && !is_letter(c) && !c.is_numeric()
}

/// GPT-2's pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, hand-written.
fn gpt2_split(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let at = |i: usize| if i < n { chars[i].0 } else { text.len() };
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let c = chars[i].1;
        let next = chars.get(i + 1).map(|x| x.1);
        // Contractions.
        if c == '\'' {
            let rest = &text[at(i + 1)..];
            let len = ["re", "ve", "ll"]
                .iter()
                .find(|s| rest.starts_with(*s))
                .map(|_| 2)
                .or_else(|| {
                    ["s", "t", "m", "d"]
                        .iter()
                        .find(|s| rest.starts_with(*s))
                        .map(|_| 1)
                });
            if let Some(len) = len {
                out.push(&text[at(i)..at(i + 1 + len)]);
                i += 1 + len;
                continue;
            }
        }
        let classes: [fn(char) -> bool; 3] = [is_letter, char::is_numeric, is_other];
        let mut matched = false;
        for class in classes {
            let start = i;
            let mut j = i;
            if c == ' ' && next.is_some_and(class) {
                j += 1;
            }
            if j < n && class(chars[j].1) {
                while j < n && class(chars[j].1) {
                    j += 1;
                }
                out.push(&text[at(start)..at(j)]);
                i = j;
                matched = true;
                break;
            }
        }
        if matched {
            continue;
        }
        // Whitespace run: `\s+(?!\S)` then `\s+`.
        let mut j = i;
        while j < n && chars[j].1.is_whitespace() {
            j += 1;
        }
        if j < n && j - i >= 2 {
            j -= 1; // leave the last space to prefix the next word
        } else if j == i {
            j = i + 1; // not reachable: every char is letter, number, other or space
        }
        out.push(&text[at(i)..at(j)]);
        i = j;
    }
    out
}

/// Turns a stream of token bytes into complete UTF-8 text pieces.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Add bytes; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let s = s.to_string();
                self.pending.clear();
                s
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // Invalid sequence (not merely incomplete): replace it and go on.
                let bad_tail = e.error_len().map(|len| valid + len);
                let mut s = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                match bad_tail {
                    Some(end) => {
                        s.push(char::REPLACEMENT_CHARACTER);
                        let rest = self.pending.split_off(end);
                        self.pending.clear();
                        s.push_str(&self.push(&rest));
                    }
                    None => {
                        self.pending.drain(..valid);
                    }
                }
                s
            }
        }
    }

    /// Flush whatever is left (an incomplete sequence becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_split_matches_the_regex_on_spaces_and_contractions() {
        assert_eq!(
            gpt2_split("  leading spaces"),
            vec![" ", " leading", " spaces"]
        );
        assert_eq!(
            gpt2_split("don't stop: "),
            vec!["don", "'t", " stop", ":", " "]
        );
        assert_eq!(gpt2_split("a\n\nb   "), vec!["a", "\n", "\n", "b", "   "]);
        assert_eq!(gpt2_split("hi 👋!"), vec!["hi", " 👋!"]);
    }

    #[test]
    fn digits_are_split_one_by_one() {
        assert_eq!(
            digit_split("in 2026."),
            vec!["in ", "2", "0", "2", "6", "."]
        );
    }

    #[test]
    fn utf8_stream_holds_back_split_characters() {
        let mut s = Utf8Stream::default();
        let e = "é".as_bytes();
        assert_eq!(s.push(&e[..1]), "");
        assert_eq!(s.push(&e[1..]), "é");
        assert_eq!(s.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(s.push(&[0xf0, 0x9f]), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }
}
