//! English tokenizer: lower-cased, contraction-expanded words that remember their byte span in
//! the original text, so slot text can be cut from what was actually said.

/// One word.
#[derive(Debug, Clone)]
pub(super) struct Token {
    /// Lower case, apostrophes normalised, contractions expanded ("what's" → "what", "is").
    pub norm: String,
    /// Byte offset of the word in the original text.
    pub start: usize,
    /// Byte offset after the word.
    pub end: usize,
    /// Byte offset after the word without a possessive "'s" ("doctor's" → "doctor").
    pub stem_end: usize,
}

fn is_word_char(prev: Option<char>, c: char, next: Option<char>) -> bool {
    let digit = |x: Option<char>| x.is_some_and(|x| x.is_ascii_digit());
    c.is_alphanumeric()
        || c == '\''
        || c == '’'
        || ((c == ':' || c == '.') && digit(prev) && digit(next))
}

const CONTRACTIONS: &[(&str, &[&str])] = &[
    ("what's", &["what", "is"]),
    ("whats", &["what", "is"]),
    ("it's", &["it", "is"]),
    ("that's", &["that", "is"]),
    ("there's", &["there", "is"]),
    ("here's", &["here", "is"]),
    ("where's", &["where", "is"]),
    ("when's", &["when", "is"]),
    ("how's", &["how", "is"]),
    ("who's", &["who", "is"]),
    ("let's", &["let", "us"]),
    ("can't", &["can", "not"]),
    ("cannot", &["can", "not"]),
    ("won't", &["will", "not"]),
    ("dont", &["do", "not"]),
    ("im", &["i", "am"]),
    ("ive", &["i", "have"]),
    ("o'clock", &["oclock"]),
];

fn push(out: &mut Vec<Token>, norm: &str, start: usize, end: usize, stem_end: usize) {
    out.push(Token {
        norm: norm.to_string(),
        start,
        end,
        stem_end,
    });
}

/// Split one raw word (without surrounding punctuation) into tokens.
fn word(out: &mut Vec<Token>, raw: &str, start: usize) {
    let end = start + raw.len();
    let lower = raw.to_lowercase().replace('’', "'");
    if let Some((_, parts)) = CONTRACTIONS.iter().find(|(w, _)| *w == lower) {
        for p in *parts {
            push(out, p, start, end, end);
        }
        return;
    }
    if lower.starts_with(|c: char| c.is_ascii_digit()) {
        // "5pm", "10min", "8:30am", "24th" (ordinals stay one token).
        let split = lower
            .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
            .unwrap_or(lower.len());
        let suffix = &lower[split..];
        if split < lower.len() && !matches!(suffix, "st" | "nd" | "rd" | "th") {
            push(out, &lower[..split], start, start + split, start + split);
            push(out, suffix, start + split, end, end);
            return;
        }
        push(out, &lower, start, end, end);
        return;
    }
    for (suffix, expansion) in [
        ("n't", "not"),
        ("'re", "are"),
        ("'ve", "have"),
        ("'ll", "will"),
        ("'d", "would"),
        ("'m", "am"),
    ] {
        if let Some(stem) = lower.strip_suffix(suffix) {
            if !stem.is_empty() {
                push(out, stem, start, end, end);
                push(out, expansion, start, end, end);
                return;
            }
        }
    }
    if let Some(stem) = lower.strip_suffix("'s") {
        if !stem.is_empty() {
            let stem_end = end - if raw.ends_with("’s") { 4 } else { 2 };
            push(out, stem, start, end, stem_end);
            return;
        }
    }
    if let Some(stem) = lower.strip_suffix('\'') {
        // "Jones'" possessive.
        push(out, stem, start, end, end - 1);
        return;
    }
    push(out, &lower, start, end, end);
}

/// Tokenize `text`.
pub(super) fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::with_capacity(chars.len() / 4 + 1);
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c == '%' {
            push(&mut out, "percent", pos, pos + 1, pos + 1);
            i += 1;
            continue;
        }
        if c == '&' {
            push(&mut out, "and", pos, pos + 1, pos + 1);
            i += 1;
            continue;
        }
        let prev = |k: usize| if k == 0 { None } else { Some(chars[k - 1].1) };
        let next = |k: usize| chars.get(k + 1).map(|x| x.1);
        if !is_word_char(prev(i), c, next(i)) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && is_word_char(prev(j), chars[j].1, next(j)) {
            j += 1;
        }
        // Trim apostrophes used as quotes at the start.
        let mut s = i;
        while s < j && matches!(chars[s].1, '\'' | '’') {
            s += 1;
        }
        if s < j {
            let start = chars[s].0;
            let end = chars.get(j).map_or(text.len(), |x| x.0);
            word(&mut out, &text[start..end], start);
        }
        i = j;
    }
    // "5 p.m." → "5", "pm".
    let mut k = 0;
    while k + 1 < out.len() {
        if matches!(out[k].norm.as_str(), "a" | "p")
            && out[k + 1].norm == "m"
            && k > 0
            && out[k - 1].norm.starts_with(|c: char| c.is_ascii_digit())
        {
            out[k].norm.push('m');
            out[k].end = out[k + 1].end;
            out[k].stem_end = out[k].end;
            out.remove(k + 1);
        }
        k += 1;
    }
    out
}

/// True if the tokens from `i` on start with the space-separated `phrase`.
pub(super) fn at(t: &[Token], i: usize, phrase: &str) -> bool {
    let mut k = i;
    for w in phrase.split(' ') {
        match t.get(k) {
            Some(tok) if tok.norm == w => k += 1,
            _ => return false,
        }
    }
    true
}

/// Number of words in `phrase`.
pub(super) fn len(phrase: &str) -> usize {
    phrase.split(' ').count()
}

/// True if the whole token list is exactly `phrase`.
pub(super) fn is(t: &[Token], phrase: &str) -> bool {
    t.len() == len(phrase) && at(t, 0, phrase)
}

/// The first of `phrases` the tokens start with at `i`, with its length in words.
pub(super) fn at_any(t: &[Token], i: usize, phrases: &[&str]) -> Option<usize> {
    phrases.iter().find(|p| at(t, i, p)).map(|p| len(p))
}

/// The norm of token `i`, or "".
pub(super) fn w(t: &[Token], i: usize) -> &str {
    t.get(i).map_or("", |x| x.norm.as_str())
}

/// The original text of `t` (from the first to the last token), trimmed of punctuation.
pub(super) fn text(src: &str, t: &[Token]) -> Option<String> {
    span_text(src, t, false)
}

/// Like [`text`], but without a possessive "'s" on the last word.
pub(super) fn stem_text(src: &str, t: &[Token]) -> Option<String> {
    span_text(src, t, true)
}

fn span_text(src: &str, t: &[Token], stem: bool) -> Option<String> {
    let first = t.first()?;
    let last = t.last()?;
    let end = if stem { last.stem_end } else { last.end };
    let s = src.get(first.start..end.max(first.start))?;
    let s = s.trim_matches(|c: char| c.is_whitespace() || ",.;:!?\"'’-".contains(c));
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norms(s: &str) -> Vec<String> {
        tokenize(s).into_iter().map(|t| t.norm).collect()
    }

    #[test]
    fn splits_numbers_from_units_and_expands_contractions() {
        assert_eq!(norms("What's at 5pm?"), ["what", "is", "at", "5", "pm"]);
        assert_eq!(norms("8:30 a.m."), ["8:30", "am"]);
        assert_eq!(norms("Dec 24th, 50%"), ["dec", "24th", "50", "percent"]);
        assert_eq!(norms("don't, I'm"), ["do", "not", "i", "am"]);
        assert_eq!(norms("twenty-five"), ["twenty", "five"]);
    }

    #[test]
    fn slot_text_keeps_original_spelling() {
        let src = "with Dr. Smith's office!";
        let t = tokenize(src);
        assert_eq!(text(src, &t[1..]).unwrap(), "Dr. Smith's office");
        assert_eq!(stem_text(src, &t[1..3]).unwrap(), "Dr. Smith");
    }
}
