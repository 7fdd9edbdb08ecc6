//! Splits streamed reply text into sentences, so that a voice channel can speak the first
//! sentence while the rest is still being generated.

/// Words that end with a period without ending a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "etc", "e.g", "i.e", "approx", "no",
];

/// Words that open a clause: a long first sentence may be cut before them ("The sky looks
/// blue | because …"). Not "and", "or", "so" or "as": they join words as often as clauses
/// ("salt and pepper", "such as").
const CLAUSE_WORDS: &[&str] = &[
    "because", "but", "which", "when", "while", "since", "although", "though", "where", "unless",
    "until", "whereas",
];

/// Accumulates text pieces and yields complete sentences.
#[derive(Debug, Default)]
pub struct SentenceChunker {
    buf: String,
}

impl SentenceChunker {
    /// An empty chunker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a piece; returns the sentences it completed (with their trailing punctuation,
    /// without surrounding whitespace).
    pub fn push(&mut self, piece: &str) -> Vec<String> {
        self.buf.push_str(piece);
        let mut out = Vec::new();
        while let Some(end) = self.boundary() {
            let sentence: String = self.buf[..end].trim().to_owned();
            self.buf.drain(..end);
            if !sentence.is_empty() {
                out.push(sentence);
            }
        }
        out
    }

    /// The unfinished sentence's first clause, taken out of it: the text up to the first
    /// comma, semicolon or colon followed by a space, or up to the space before a word that
    /// opens a clause ("because", "but", "which", …: [`CLAUSE_WORDS`]), whichever comes first
    /// and leaves at least `min_chars` characters. For speaking the start of a long first
    /// sentence while the rest is still being written.
    pub fn take_clause(&mut self, min_chars: usize) -> Option<String> {
        let buf = &self.buf;
        // (end of the head, start of the rest)
        let after_marks = buf
            .match_indices([',', ';', ':'])
            .filter(|(i, _)| buf[i + 1..].starts_with(' '))
            .map(|(i, _)| (i + 1, i + 2));
        let before_words = buf.match_indices(' ').filter_map(|(i, _)| {
            let rest = &buf[i + 1..];
            // The word must be complete: a space follows it.
            let word = &rest[..rest.find(' ')?];
            CLAUSE_WORDS
                .iter()
                .any(|w| word.eq_ignore_ascii_case(w))
                .then_some((i, i + 1))
        });
        let mut cuts: Vec<(usize, usize)> = after_marks.chain(before_words).collect();
        cuts.sort_unstable();
        let (end, rest) = cuts
            .into_iter()
            .find(|&(end, _)| buf[..end].trim().chars().count() >= min_chars)?;
        let head = buf[..end].trim().to_owned();
        self.buf.drain(..rest);
        Some(head)
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        let rest = self.buf.trim().to_owned();
        self.buf.clear();
        (!rest.is_empty()).then_some(rest)
    }

    /// Byte offset just after the first sentence end that is followed by whitespace.
    fn boundary(&self) -> Option<usize> {
        let b = self.buf.as_bytes();
        for (i, c) in self.buf.char_indices() {
            if c == '\n' && !self.buf[..i].trim().is_empty() {
                return Some(i + 1);
            }
            if !matches!(c, '.' | '!' | '?' | '…') {
                continue;
            }
            let after = i + c.len_utf8();
            // Closing quotes/brackets belong to the sentence.
            let mut end = after;
            while end < b.len() && matches!(b[end], b'"' | b'\'' | b')') {
                end += 1;
            }
            // Need to see what follows: whitespace ends the sentence; nothing yet = wait.
            let next = self.buf[end..].chars().next()?;
            if !next.is_whitespace() {
                continue;
            }
            if c == '.' {
                let word = self.buf[..i]
                    .rsplit(|ch: char| ch.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if ABBREVIATIONS.contains(&word.as_str())
                    || (word.len() == 1 && word.chars().all(|ch| ch.is_ascii_alphabetic()))
                {
                    continue;
                }
            }
            return Some(end);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(pieces: &[&str]) -> Vec<String> {
        let mut c = SentenceChunker::new();
        let mut out = Vec::new();
        for p in pieces {
            out.extend(c.push(p));
        }
        out.extend(c.finish());
        out
    }

    #[test]
    fn splits_at_sentence_ends_across_pieces() {
        assert_eq!(
            chunk(&["Hello", " there. How", " are you? I'm", " fine!", " Bye"]),
            vec!["Hello there.", "How are you?", "I'm fine!", "Bye"]
        );
    }

    #[test]
    fn keeps_abbreviations_decimals_and_initials_together() {
        assert_eq!(
            chunk(&["Dr. Smith paid 3.50 euros to J. Doe. Then left."]),
            vec!["Dr. Smith paid 3.50 euros to J. Doe.", "Then left."]
        );
    }

    #[test]
    fn emits_a_sentence_only_once_whitespace_follows() {
        let mut c = SentenceChunker::new();
        assert!(c.push("It is 3.").is_empty());
        assert_eq!(c.push(" Next"), vec!["It is 3."]);
        assert_eq!(c.finish().as_deref(), Some("Next"));
        assert_eq!(c.finish(), None);
    }

    #[test]
    fn a_first_clause_ends_at_a_comma_or_before_a_word_that_opens_a_clause() {
        let clause = |text: &str, min: usize| {
            let mut c = SentenceChunker::new();
            assert!(c.push(text).is_empty(), "{text:?} has a whole sentence");
            let head = c.take_clause(min);
            (head, c.buf.clone())
        };
        assert_eq!(
            clause("The sky looks blue because sunlight", 16),
            (Some("The sky looks blue".into()), "because sunlight".into())
        );
        assert_eq!(
            clause("Well, the sky looks blue; sunlight", 16),
            (Some("Well, the sky looks blue;".into()), "sunlight".into())
        );
        // Whichever comes first, once the head is long enough.
        assert_eq!(
            clause("Cats sleep when bored, but also when", 16),
            (
                Some("Cats sleep when bored,".into()),
                "but also when".into()
            )
        );
        // A word still being written, a short head, words that join words, times: no cut.
        assert_eq!(clause("The sky looks blue becau", 16).0, None);
        assert_eq!(clause("The sky looks blue because", 16).0, None);
        assert_eq!(clause("Blue because sunlight", 16).0, None);
        assert_eq!(clause("Add a pinch of salt and pepper or", 16).0, None);
        assert_eq!(clause("The meeting starts at 10:30 in the", 16).0, None);
    }

    #[test]
    fn newlines_end_sentences_and_quotes_stay_attached() {
        assert_eq!(
            chunk(&["He said \"stop!\" and left\nNew line"]),
            vec!["He said \"stop!\"", "and left", "New line"]
        );
    }
}
