//! vCard (RFC 2426 3.0 and RFC 6350 4.0) reading and writing for contacts: FN, N, NICKNAME,
//! TEL with TYPE, EMAIL, NOTE, UID and the trust level as `X-LOCAL-ASSISTANT-TRUST`.
//!
//! Reading unfolds lines, understands grouped properties (`item1.TEL`), quoted and bare
//! parameters (`TYPE="cell,voice"`, `TYPE=CELL;TYPE=PREF`, 2.1-style `CELL`) and backslash
//! escapes; every error names the card (position and name) and the line. Writing escapes
//! text, folds lines at 75 octets (never inside a UTF-8 character) and ends lines with CRLF.
//! Pure text: phone numbers are normalised by the caller (it knows the default region).

use crate::domain::Trust;

/// The vendor property that carries the trust level.
pub const TRUST_PROPERTY: &str = "X-LOCAL-ASSISTANT-TRUST";

/// vCard version to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// RFC 2426.
    V3,
    /// RFC 6350.
    V4,
}

impl Version {
    /// `3.0` or `4.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V3 => "3.0",
            Self::V4 => "4.0",
        }
    }
}

/// A value read from a card, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    /// The value (a phone number as written, an email address).
    pub value: String,
    /// Our label (`mobile`, `home`, `work`, …).
    pub label: String,
    /// The (first physical) line of the property.
    pub line: usize,
}

/// One card as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Card {
    /// Position in the file (1-based).
    pub index: usize,
    /// The line of `BEGIN:VCARD`.
    pub line: usize,
    /// UID, if present.
    pub uid: Option<String>,
    /// FN (or built from N when FN is missing).
    pub formatted_name: String,
    /// N's family name.
    pub family_name: String,
    /// N's given name.
    pub given_name: String,
    /// NICKNAME values.
    pub nicknames: Vec<String>,
    /// TEL values.
    pub phones: Vec<Labelled>,
    /// EMAIL values.
    pub emails: Vec<Labelled>,
    /// NOTE (several are joined by newlines).
    pub note: String,
    /// The trust property, if present.
    pub trust: Option<Trust>,
}

impl Card {
    /// "card 2 (\"Anna Smith\")" for error messages.
    pub fn describe(&self) -> String {
        if self.formatted_name.is_empty() {
            format!("card {}", self.index)
        } else {
            format!("card {} ({:?})", self.index, self.formatted_name)
        }
    }
}

/// Why a vCard file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vCard {card}, line {line}: {message}")]
pub struct VCardError {
    /// Which card ("card 2 (\"Anna\")", or "file" outside any card).
    pub card: String,
    /// The physical line (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A contact to write.
#[derive(Debug, Clone)]
pub struct OutCard<'a> {
    /// UID.
    pub uid: &'a str,
    /// Display name.
    pub formatted_name: &'a str,
    /// Family name.
    pub family_name: &'a str,
    /// Given name.
    pub given_name: &'a str,
    /// Aliases.
    pub nicknames: Vec<&'a str>,
    /// (E.164 number, label).
    pub phones: Vec<(&'a str, &'a str)>,
    /// (address, label).
    pub emails: Vec<(&'a str, &'a str)>,
    /// Notes.
    pub note: &'a str,
    /// Trust.
    pub trust: Trust,
}

// ------------------------------------------------------------------------------------------
// Reading
// ------------------------------------------------------------------------------------------

struct Property {
    line: usize,
    name: String,
    params: Vec<(String, Vec<String>)>,
    value: String,
}

/// Unfold physical lines into logical ones, each with its first physical line number.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push_str(rest);
                continue;
            }
        }
        out.push((i + 1, raw.to_owned()));
    }
    out
}

fn parse_line(line: usize, text: &str) -> Result<Property, String> {
    // name and parameters end at the first ':' outside double quotes.
    let mut in_quotes = false;
    let mut colon = None;
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ':' if !in_quotes => {
                colon = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(colon) = colon else {
        return Err(format!("{text:?} is not a property (no ':')"));
    };
    let (head, value) = (&text[..colon], &text[colon + 1..]);
    let mut parts = split_unquoted(head, ';').into_iter();
    let name = parts.next().unwrap_or_default();
    // Drop a group prefix ("item1.TEL").
    let name = name
        .rsplit('.')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_uppercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("{text:?} has no valid property name"));
    }
    let mut params = Vec::new();
    for p in parts {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_uppercase(), v.to_owned()),
            // vCard 2.1 / 3.0 bare type: "TEL;CELL:…".
            None => ("TYPE".to_owned(), p.clone()),
        };
        // `TYPE="cell,voice"` (4.0) is the same list as `TYPE=cell,voice`.
        let values = split_unquoted(&v, ',')
            .into_iter()
            .flat_map(|s| {
                s.trim()
                    .trim_matches('"')
                    .split(',')
                    .map(|x| x.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.is_empty())
            .collect();
        params.push((k, values));
    }
    Ok(Property {
        line,
        name,
        params,
        value: value.to_owned(),
    })
}

fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    for c in s.chars() {
        if c == '"' {
            in_quotes = !in_quotes;
            cur.push(c);
        } else if c == sep && !in_quotes {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Split a value on an unescaped separator, unescaping each part.
fn split_escaped(value: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => cur.push('\n'),
                Some(other) => cur.push(other),
                None => cur.push('\\'),
            }
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn unescape(value: &str) -> String {
    // A separator no text contains: nothing is split.
    split_escaped(value, '\u{0}').concat()
}

fn types(p: &Property) -> Vec<String> {
    p.params
        .iter()
        .filter(|(k, _)| k == "TYPE")
        .flat_map(|(_, v)| v.iter().map(|s| s.to_ascii_lowercase()))
        .collect()
}

fn phone_label(types: &[String]) -> String {
    for (t, label) in [
        ("cell", "mobile"),
        ("iphone", "mobile"),
        ("mobile", "mobile"),
        ("fax", "fax"),
        ("pager", "pager"),
        ("main", "main"),
        ("x-main", "main"),
        ("work", "work"),
        ("home", "home"),
    ] {
        if types.iter().any(|x| x == t) {
            return label.to_owned();
        }
    }
    if types.iter().any(|x| x == "voice") || types.is_empty() {
        return "other".to_owned();
    }
    "other".to_owned()
}

fn email_label(types: &[String]) -> String {
    if types.iter().any(|x| x == "work") {
        "work".into()
    } else if types.iter().any(|x| x == "home") {
        "home".into()
    } else {
        "other".into()
    }
}

/// Read every card of a vCard file (3.0 or 4.0; 2.1 without encodings is accepted too).
pub fn parse(text: &str) -> Result<Vec<Card>, VCardError> {
    let mut cards = Vec::new();
    let mut cur: Option<Card> = None;
    let mut version_seen = false;
    let err = |card: &Option<Card>, index: usize, line: usize, message: String| VCardError {
        card: card
            .as_ref()
            .map_or_else(|| format!("card {index}"), Card::describe),
        line,
        message,
    };
    for (line, text) in unfold(text) {
        if text.trim().is_empty() {
            continue;
        }
        let next_index = cards.len() + 1;
        let p = parse_line(line, &text).map_err(|m| {
            if cur.is_some() {
                err(&cur, next_index, line, m)
            } else {
                VCardError {
                    card: "file".into(),
                    line,
                    message: m,
                }
            }
        })?;
        match (p.name.as_str(), cur.as_mut()) {
            ("BEGIN", None) if p.value.trim().eq_ignore_ascii_case("VCARD") => {
                cur = Some(Card {
                    index: next_index,
                    line,
                    ..Card::default()
                });
                version_seen = false;
            }
            ("BEGIN", Some(_)) => {
                return Err(err(
                    &cur,
                    next_index,
                    line,
                    "BEGIN inside a card (missing END:VCARD before it)".into(),
                ))
            }
            (_, None) => {
                return Err(VCardError {
                    card: "file".into(),
                    line,
                    message: format!("{} outside a card (expected BEGIN:VCARD)", p.name),
                })
            }
            ("END", Some(card)) => {
                if !version_seen {
                    return Err(VCardError {
                        card: card.describe(),
                        line,
                        message: "the card has no VERSION".into(),
                    });
                }
                if card.formatted_name.trim().is_empty() {
                    let built = [card.given_name.as_str(), card.family_name.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ");
                    if built.is_empty() {
                        return Err(VCardError {
                            card: card.describe(),
                            line: card.line,
                            message: "the card has no name (FN or N)".into(),
                        });
                    }
                    card.formatted_name = built;
                }
                if let Some(c) = cur.take() {
                    cards.push(c);
                }
            }
            ("VERSION", Some(_)) => {
                let v = p.value.trim();
                if !matches!(v, "2.1" | "3.0" | "4.0") {
                    return Err(err(
                        &cur,
                        next_index,
                        line,
                        format!("unsupported VERSION {v:?} (expected 3.0 or 4.0)"),
                    ));
                }
                version_seen = true;
            }
            ("FN", Some(card)) => card.formatted_name = unescape(&p.value).trim().to_owned(),
            ("N", Some(card)) => {
                let parts = split_escaped(&p.value, ';');
                card.family_name = parts.first().map_or("", |s| s.trim()).to_owned();
                card.given_name = parts.get(1).map_or("", |s| s.trim()).to_owned();
            }
            ("NICKNAME", Some(card)) => card.nicknames.extend(
                split_escaped(&p.value, ',')
                    .into_iter()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
            ),
            ("TEL", Some(card)) => {
                let value = unescape(&p.value).trim().to_owned();
                if value.is_empty() {
                    return Err(VCardError {
                        card: card.describe(),
                        line,
                        message: "TEL has an empty value".into(),
                    });
                }
                card.phones.push(Labelled {
                    value,
                    label: phone_label(&types(&p)),
                    line: p.line,
                });
            }
            ("EMAIL", Some(card)) => {
                let value = unescape(&p.value).trim().to_owned();
                let value = value
                    .strip_prefix("mailto:")
                    .map_or(value.clone(), str::to_owned);
                if value.is_empty() {
                    return Err(VCardError {
                        card: card.describe(),
                        line,
                        message: "EMAIL has an empty value".into(),
                    });
                }
                card.emails.push(Labelled {
                    value,
                    label: email_label(&types(&p)),
                    line: p.line,
                });
            }
            ("NOTE", Some(card)) => {
                if !card.note.is_empty() {
                    card.note.push('\n');
                }
                card.note.push_str(&unescape(&p.value));
            }
            ("UID", Some(card)) => {
                let v = unescape(&p.value).trim().to_owned();
                if !v.is_empty() {
                    card.uid = Some(v);
                }
            }
            (name, Some(card)) if name == TRUST_PROPERTY => {
                let v = unescape(&p.value);
                let t = Trust::parse(&v.to_ascii_lowercase()).ok_or_else(|| VCardError {
                    card: card.describe(),
                    line,
                    message: format!(
                        "{TRUST_PROPERTY} must be owner, household, known or unknown; got {v:?}"
                    ),
                })?;
                card.trust = Some(t);
            }
            // Everything else (ADR, PHOTO, ORG, X-…) is not kept.
            _ => {}
        }
    }
    if let Some(card) = cur {
        return Err(VCardError {
            card: card.describe(),
            line: card.line,
            message: "the card is not closed (missing END:VCARD)".into(),
        });
    }
    Ok(cards)
}

// ------------------------------------------------------------------------------------------
// Writing
// ------------------------------------------------------------------------------------------

/// Escape a text value (RFC 6350 §3.4).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            c => out.push(c),
        }
    }
    out
}

/// Fold a logical line at 75 octets, never splitting a UTF-8 character; CRLF-terminated.
pub fn fold(line: &str, out: &mut String) {
    let mut width = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

fn phone_type(label: &str, v: Version) -> String {
    let t = match label {
        "mobile" => "cell",
        "home" => "home",
        "work" => "work",
        "fax" => "fax",
        "pager" => "pager",
        "main" => "x-main",
        _ => "voice",
    };
    match v {
        Version::V3 => t.to_ascii_uppercase(),
        Version::V4 => t.to_owned(),
    }
}

/// Write cards as one vCard file.
pub fn write(cards: &[OutCard<'_>], v: Version) -> String {
    let mut out = String::new();
    for c in cards {
        let mut line = |s: String| fold(&s, &mut out);
        line("BEGIN:VCARD".into());
        line(format!("VERSION:{}", v.as_str()));
        line("PRODID:-//local-assistant//contacts//EN".into());
        line(format!("UID:{}", escape(c.uid)));
        line(format!("FN:{}", escape(c.formatted_name)));
        line(format!(
            "N:{};{};;;",
            escape(c.family_name),
            escape(c.given_name)
        ));
        // One property per alias: parsers disagree on NICKNAME lists (vobject keeps only the
        // first value of one), every parser reads repeated properties.
        for n in &c.nicknames {
            line(format!("NICKNAME:{}", escape(n)));
        }
        for (number, label) in &c.phones {
            match v {
                Version::V3 => line(format!("TEL;TYPE={}:{number}", phone_type(label, v))),
                Version::V4 => line(format!(
                    "TEL;VALUE=uri;TYPE={}:tel:{number}",
                    phone_type(label, v)
                )),
            }
        }
        for (address, label) in &c.emails {
            let t = match (label, v) {
                (&"work", Version::V3) => "INTERNET,WORK",
                (&"home", Version::V3) => "INTERNET,HOME",
                (_, Version::V3) => "INTERNET",
                (&"work", Version::V4) => "work",
                (&"home", Version::V4) => "home",
                (_, Version::V4) => "",
            };
            if t.is_empty() {
                line(format!("EMAIL:{}", escape(address)));
            } else {
                line(format!("EMAIL;TYPE={t}:{}", escape(address)));
            }
        }
        if !c.note.is_empty() {
            line(format!("NOTE:{}", escape(c.note)));
        }
        line(format!("{TRUST_PROPERTY}:{}", c.trust.as_str()));
        line("END:VCARD".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_escaped_grouped_and_bare_typed_lines_are_read() {
        let text = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Anna\\, the \r\n neighbour\r\nN:Smith;Anna;;;\r\n\
                    item1.TEL;TYPE=CELL;TYPE=pref:+1 202 555 0143\r\nTEL;WORK;VOICE:(202) 555-0199\r\n\
                    NICKNAME:Annie,Nana\r\nEMAIL;TYPE=INTERNET,WORK:anna@example.org\r\n\
                    NOTE:line one\\nline two\\; more\r\nX-LOCAL-ASSISTANT-TRUST:household\r\nEND:VCARD\r\n";
        let cards = parse(text).expect("parses");
        assert_eq!(cards.len(), 1);
        let c = &cards[0];
        assert_eq!(c.formatted_name, "Anna, the neighbour");
        assert_eq!(
            (c.family_name.as_str(), c.given_name.as_str()),
            ("Smith", "Anna")
        );
        assert_eq!(c.nicknames, vec!["Annie", "Nana"]);
        assert_eq!(c.phones[0].label, "mobile");
        assert_eq!(c.phones[1].label, "work");
        assert_eq!(c.phones[1].line, 7);
        assert_eq!(c.emails[0].label, "work");
        assert_eq!(c.note, "line one\nline two; more");
        assert_eq!(c.trust, Some(Trust::Household));
    }

    #[test]
    fn v4_quoted_params_and_uri_values_are_read() {
        let text = "BEGIN:VCARD\nVERSION:4.0\nFN:Bob\nTEL;VALUE=uri;TYPE=\"cell,voice\":tel:+1-202-555-0143\nUID:urn:uuid:1234\nEND:VCARD\n";
        let c = &parse(text).expect("parses")[0];
        assert_eq!(c.phones[0].value, "tel:+1-202-555-0143");
        assert_eq!(c.phones[0].label, "mobile");
        assert_eq!(c.uid.as_deref(), Some("urn:uuid:1234"));
    }

    #[test]
    fn errors_name_the_card_and_line() {
        let cases = [
            ("BEGIN:VCARD\nVERSION:3.0\nFN:A\nEND:VCARD\nBEGIN:VCARD\nVERSION:3.0\nFN:Bea\nbroken line\nEND:VCARD\n", "card 2 (\"Bea\"), line 8"),
            ("BEGIN:VCARD\nVERSION:5.0\nFN:A\nEND:VCARD\n", "line 2: unsupported VERSION"),
            ("BEGIN:VCARD\nVERSION:3.0\nEND:VCARD\n", "no name"),
            ("BEGIN:VCARD\nVERSION:3.0\nFN:A\n", "not closed"),
            ("FN:A\n", "outside a card"),
            ("BEGIN:VCARD\nVERSION:3.0\nFN:A\nX-LOCAL-ASSISTANT-TRUST:boss\nEND:VCARD\n", "line 4: X-LOCAL-ASSISTANT-TRUST"),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(want).to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn written_cards_fold_at_75_octets_and_read_back() {
        let long_note = "Ünïcödé ".repeat(30) + "; with, separators\nand a newline";
        let card = OutCard {
            uid: "abc",
            formatted_name: "Zoë O'Neil, Jr.",
            family_name: "O'Neil",
            given_name: "Zoë",
            nicknames: vec!["Zo", "Z;z"],
            phones: vec![("+12025550143", "mobile"), ("+12025550199", "work")],
            emails: vec![("zoe@example.org", "home")],
            note: &long_note,
            trust: Trust::Known,
        };
        for v in [Version::V3, Version::V4] {
            let text = write(std::slice::from_ref(&card), v);
            for l in text.split("\r\n") {
                assert!(l.len() <= 75, "{l:?} is {} octets", l.len());
            }
            let back = &parse(&text).expect("reads back")[0];
            assert_eq!(back.formatted_name, card.formatted_name);
            assert_eq!(back.given_name, "Zoë");
            assert_eq!(back.nicknames, vec!["Zo", "Z;z"]);
            assert_eq!(back.note, long_note);
            assert_eq!(back.phones[1].label, "work");
            assert_eq!(back.trust, Some(Trust::Known));
            assert_eq!(back.uid.as_deref(), Some("abc"));
        }
    }
}
