//! Text as it is spoken (English): numbers, times, dates, money, percentages, temperatures,
//! phone numbers and common abbreviations written out in words before phonemization, so a
//! voice says "three thirty p m" for `3:30 pm` rather than whatever espeak-ng guesses.
//!
//! Pure and deterministic; anything it does not recognize passes through unchanged. Choices
//! (each a row of the table test):
//! - Times: `3:30 pm` → "three thirty p m", `3:05` → "three oh five", `3:00` → "three
//!   o'clock", `3 pm` → "three p m". A 24-hour time is said on the 12-hour clock with its half
//!   of the day: `15:05` → "three oh five p m", `09:15` → "nine fifteen a m" (a leading zero or
//!   hour 0 marks the 24-hour clock), `00:30` → "twelve thirty a m".
//! - Dates: `2026-12-04` → "Friday, December fourth, twenty twenty-six" (weekday included, as
//!   people say it); `December 4, 2026` → "December fourth, twenty twenty-six"; `4 December`
//!   → "the fourth of December"; `12/04/2026` is month/day/year.
//! - Years after `in`, `since`, `of`, … and in dates: `1984` → "nineteen eighty-four", `2005` →
//!   "two thousand five", `1905` → "nineteen oh five"; elsewhere a cardinal.
//! - Numbers: cardinals up to the trillions without "and" (`1,234` → "one thousand two hundred
//!   thirty-four"), decimals digit by digit after "point", `-5` → "minus five", ordinals
//!   (`4th` → "fourth"), ranges (`10-20` → "ten to twenty"), simple fractions.
//! - Money: `$12.50` → "twelve dollars and fifty cents"; also € and £; `$5 million` → "five
//!   million dollars". Percent: `2.5%` → "two point five percent". `20°C` → "twenty degrees
//!   Celsius".
//! - Phone numbers (7 or more digits written with `-`, `.`, `(…)` or a leading `+`) digit by
//!   digit, their groups separated by commas (a short pause each).
//! - Abbreviations: Dr. Mr. Mrs. Ms. Prof. St. (Saint before a name, Street after one) Mt. Ave.
//!   Rd. Jr. Sr. vs. etc. e.g. i.e. approx. and `No. 5` → "number five".

use jiff::civil::{Date, Weekday};

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const SCALES: [(u64, &str); 4] = [
    (1_000_000_000_000, "trillion"),
    (1_000_000_000, "billion"),
    (1_000_000, "million"),
    (1_000, "thousand"),
];
/// Month names, January first (also used by the orchestrator's spoken replies).
pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// Words after which a four-digit number is a year.
const YEAR_CUES: &[&str] = &[
    "in", "since", "of", "by", "until", "till", "year", "from", "before", "after", "around",
    "circa", "during", "summer", "winter", "spring", "fall", "autumn",
];

/// A cardinal number in words: `1234` → "one thousand two hundred thirty-four".
pub fn cardinal(n: u64) -> String {
    if n < 20 {
        return ONES[n as usize].to_owned();
    }
    if n < 100 {
        let (t, o) = ((n / 10) as usize, (n % 10) as usize);
        return if o == 0 {
            TENS[t].to_owned()
        } else {
            format!("{}-{}", TENS[t], ONES[o])
        };
    }
    if n < 1000 {
        let rest = n % 100;
        let head = format!("{} hundred", ONES[(n / 100) as usize]);
        return if rest == 0 {
            head
        } else {
            format!("{head} {}", cardinal(rest))
        };
    }
    let mut parts = Vec::new();
    let mut rest = n;
    for (scale, name) in SCALES {
        if rest >= scale {
            parts.push(format!("{} {name}", cardinal(rest / scale)));
            rest %= scale;
        }
    }
    if rest > 0 {
        parts.push(cardinal(rest));
    }
    parts.join(" ")
}

/// An ordinal in words: `22` → "twenty-second".
pub fn ordinal(n: u64) -> String {
    let words = cardinal(n);
    let split = words.rfind([' ', '-']).map_or(0, |i| i + 1);
    let (head, last) = words.split_at(split);
    let last = match last {
        "one" => "first".to_owned(),
        "two" => "second".to_owned(),
        "three" => "third".to_owned(),
        "five" => "fifth".to_owned(),
        "eight" => "eighth".to_owned(),
        "nine" => "ninth".to_owned(),
        "twelve" => "twelfth".to_owned(),
        w if w.ends_with('y') => format!("{}ieth", &w[..w.len() - 1]),
        w => format!("{w}th"),
    };
    format!("{head}{last}")
}

/// A year as it is said: 1984 → "nineteen eighty-four", 2005 → "two thousand five".
pub fn year(y: u64) -> String {
    if !(1000..=2999).contains(&y) || (2000..2010).contains(&y) {
        return cardinal(y);
    }
    let (hi, lo) = (y / 100, y % 100);
    match lo {
        0 => format!("{} hundred", cardinal(hi)),
        1..=9 => format!("{} oh {}", cardinal(hi), cardinal(lo)),
        _ => format!("{} {}", cardinal(hi), cardinal(lo)),
    }
}

fn digit_word(c: char) -> Option<&'static str> {
    c.to_digit(10).map(|d| ONES[d as usize])
}

/// Each digit as a word: "555" → "five five five".
fn digits(s: &str) -> String {
    s.chars()
        .filter_map(digit_word)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A plain number: optional sign, digits with optional thousands commas, optional decimals.
#[derive(Debug, Clone, PartialEq)]
struct Number {
    negative: bool,
    int: String,
    frac: Option<String>,
}

fn parse_number(s: &str) -> Option<Number> {
    let (negative, body) = match s.chars().next()? {
        '-' | '−' => (true, &s[s.chars().next()?.len_utf8()..]),
        _ => (false, s),
    };
    let (int_part, frac) = match body.split_once('.') {
        Some((i, f)) => {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (i, Some(f.to_owned()))
        }
        None => (body, None),
    };
    if int_part.is_empty() && frac.is_none() {
        return None;
    }
    let int = if int_part.contains(',') {
        let groups: Vec<&str> = int_part.split(',').collect();
        let ok = !groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3)
            && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return None;
        }
        groups.concat()
    } else {
        if !int_part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        int_part.to_owned()
    };
    Some(Number {
        negative,
        int: if int.is_empty() { "0".into() } else { int },
        frac,
    })
}

impl Number {
    fn int_value(&self) -> Option<u64> {
        self.int.parse().ok()
    }

    /// "minus three point one four"; very long or zero-led integers digit by digit.
    fn words(&self) -> String {
        let int = match self.int_value() {
            Some(v)
                if self.int.len() <= 15 && !(self.int.len() > 1 && self.int.starts_with('0')) =>
            {
                cardinal(v)
            }
            _ => digits(&self.int),
        };
        let mut out = String::new();
        if self.negative {
            out.push_str("minus ");
        }
        out.push_str(&int);
        if let Some(f) = &self.frac {
            out.push_str(" point ");
            out.push_str(&digits(f));
        }
        out
    }
}

/// One whitespace-separated word with its surrounding punctuation split off.
#[derive(Debug, Clone)]
struct Token<'a> {
    pre: &'a str,
    core: &'a str,
    post: &'a str,
    /// The whitespace after the word.
    space: &'a str,
}

const LEADING: &[char] = &['"', '\'', '(', '[', '{', '“', '‘', '«'];
const TRAILING: &[char] = &[
    '.', ',', '!', '?', ';', ':', '"', '\'', ')', ']', '}', '”', '’', '»', '…',
];

fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = text;
    let lead_ws = rest.len() - rest.trim_start().len();
    let prefix = &rest[..lead_ws];
    rest = &rest[lead_ws..];
    if !prefix.is_empty() {
        tokens.push(Token {
            pre: "",
            core: "",
            post: "",
            space: prefix,
        });
    }
    while !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        let after = &rest[end..];
        let ws = after.len() - after.trim_start().len();
        let space = &after[..ws];
        rest = &after[ws..];
        let core_start = word.len() - word.trim_start_matches(LEADING).len();
        let (pre, tail) = word.split_at(core_start);
        let core_end = tail.trim_end_matches(TRAILING).len();
        let (core, post) = tail.split_at(core_end);
        tokens.push(Token {
            pre,
            core,
            post,
            space,
        });
    }
    tokens
}

/// What an expansion produced: words, how many tokens it used, and the punctuation to keep
/// after it (the `post` of its last token, possibly shortened).
struct Expansion<'a> {
    words: String,
    used: usize,
    post: &'a str,
    /// Replaces the first token's leading punctuation (a phone number's `(`).
    pre: Option<&'a str>,
}

/// The text with numbers and abbreviations written as they are said.
pub fn normalize(text: &str) -> String {
    let tokens = tokenize(text);
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        match expand(&tokens, i) {
            Some(e) => {
                let last = &tokens[i + e.used - 1];
                out.push_str(e.pre.unwrap_or(t.pre));
                out.push_str(&e.words);
                out.push_str(e.post);
                out.push_str(last.space);
                i += e.used;
            }
            None => {
                out.push_str(t.pre);
                out.push_str(t.core);
                out.push_str(t.post);
                out.push_str(t.space);
                i += 1;
            }
        }
    }
    out
}

fn expand<'a>(tokens: &[Token<'a>], i: usize) -> Option<Expansion<'a>> {
    let t = &tokens[i];
    if t.core.is_empty() {
        return None;
    }
    let one = |words: String| Expansion {
        words,
        used: 1,
        post: t.post,
        pre: None,
    };
    if let Some(e) = abbreviation(tokens, i) {
        return Some(e);
    }
    if let Some(e) = month_day(tokens, i) {
        return Some(e);
    }
    if !t.core.chars().any(|c| c.is_ascii_digit()) {
        return match t.core {
            "&" => Some(one("and".into())),
            _ => None,
        };
    }
    if let Some(w) = iso_date(t.core).or_else(|| slash_date(t.core)) {
        return Some(one(w));
    }
    if let Some(e) = phone(tokens, i) {
        return Some(e);
    }
    if let Some(e) = time(tokens, i) {
        return Some(e);
    }
    if let Some(e) = money(tokens, i) {
        return Some(e);
    }
    if let Some(e) = day_month(tokens, i) {
        return Some(e);
    }
    let core = t.core;
    if let Some(n) = core.strip_suffix('%').and_then(parse_number) {
        return Some(one(format!("{} percent", n.words())));
    }
    if let Some(e) = degrees(tokens, i) {
        return Some(e);
    }
    if let Some(n) = core.strip_prefix('#').and_then(parse_number) {
        return Some(one(format!("number {}", n.words())));
    }
    if let Some(w) = ordinal_token(core) {
        return Some(one(w));
    }
    if let Some(w) = fraction(core) {
        return Some(one(w));
    }
    if let Some((a, b)) = core.split_once(['-', '–']) {
        if let (Some(a), Some(b)) = (parse_number(a), parse_number(b)) {
            if !a.negative && !b.negative && !a.int.is_empty() {
                return Some(one(format!("{} to {}", a.words(), b.words())));
            }
        }
    }
    if let Some(n) = core.strip_prefix('+').and_then(parse_number) {
        return Some(one(format!("plus {}", n.words())));
    }
    let n = parse_number(core)?;
    let prev = i
        .checked_sub(1)
        .map(|p| tokens[p].core.to_ascii_lowercase())
        .unwrap_or_default();
    if let (Some(v), None, false) = (n.int_value(), &n.frac, n.negative) {
        if n.int.len() == 4 && YEAR_CUES.contains(&prev.as_str()) {
            return Some(one(year(v)));
        }
    }
    Some(one(n.words()))
}

/// `Dr.`, `St.`, `e.g.`, `No. 5`, …: the word, and the period consumed unless it also ends the
/// sentence.
fn abbreviation<'a>(tokens: &[Token<'a>], i: usize) -> Option<Expansion<'a>> {
    let t = &tokens[i];
    let next = tokens.get(i + 1);
    let next_capital = next.is_some_and(|n| n.core.chars().next().is_some_and(char::is_uppercase));
    let next_number =
        next.is_some_and(|n| n.core.chars().next().is_some_and(|c| c.is_ascii_digit()));
    let dotted = t.post.starts_with('.');
    let is_last = next.is_none();
    // Titles go before a name: the period never ends the sentence there.
    let title = match t.core {
        "Dr" => Some("Doctor"),
        "Mr" => Some("Mister"),
        "Mrs" => Some("Missus"),
        "Ms" => Some("Miz"),
        "Prof" => Some("Professor"),
        "Mt" => Some("Mount"),
        "St" => {
            let prev_name = i
                .checked_sub(1)
                .and_then(|p| tokens[p].core.chars().next())
                .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit());
            Some(if prev_name && tokens[i - 1].post.is_empty() {
                "Street"
            } else {
                "Saint"
            })
        }
        _ => None,
    };
    if let Some(word) = title {
        if !(dotted || next_capital) {
            return None;
        }
        let street = word == "Street";
        let post = if dotted && !is_last && !(street && next_capital) {
            &t.post[1..]
        } else {
            t.post
        };
        return Some(Expansion {
            words: word.into(),
            used: 1,
            post,
            pre: None,
        });
    }
    if !dotted {
        return None;
    }
    let word = match t.core {
        "Ave" => "Avenue",
        "Rd" => "Road",
        "Jr" => "Junior",
        "Sr" => "Senior",
        "vs" => "versus",
        "etc" => "et cetera",
        "e.g" => "for example",
        "i.e" => "that is",
        "approx" => "approximately",
        "No" | "no" if next_number => "number",
        _ => return None,
    };
    // A period before a capital (or at the end) may end the sentence: keep it.
    let post = if is_last || next_capital {
        t.post
    } else {
        &t.post[1..]
    };
    Some(Expansion {
        words: word.into(),
        used: 1,
        post,
        pre: None,
    })
}

fn month_index(word: &str) -> Option<usize> {
    // Month names are capitalized ("you may 4" is not a date).
    if !word.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    if let Some(i) = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(&lower)) {
        return Some(i);
    }
    let abbr = match lower.as_str() {
        "sept" => "sep",
        other => other,
    };
    if abbr.len() == 3 && abbr != "may" {
        return MONTHS
            .iter()
            .position(|m| m[..3].eq_ignore_ascii_case(abbr));
    }
    None
}

/// A day of the month: `4`, `4th`.
fn day_number(core: &str) -> Option<u64> {
    let digits_end = core
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(core.len());
    let (num, suffix) = core.split_at(digits_end);
    if num.is_empty() || num.len() > 2 || !matches!(suffix, "" | "st" | "nd" | "rd" | "th") {
        return None;
    }
    let d: u64 = num.parse().ok()?;
    (1..=31).contains(&d).then_some(d)
}

fn four_digit_year(core: &str) -> Option<u64> {
    (core.len() == 4 && core.bytes().all(|b| b.is_ascii_digit()))
        .then(|| core.parse().ok())
        .flatten()
}

/// `December 4`, `Dec. 4th, 2026` → "December fourth[, twenty twenty-six]".
fn month_day<'a>(tokens: &[Token<'a>], i: usize) -> Option<Expansion<'a>> {
    let t = &tokens[i];
    let m = month_index(t.core)?;
    let full = MONTHS[m].eq_ignore_ascii_case(t.core);
    if !(t.post.is_empty() || (!full && t.post == ".")) {
        return None;
    }
    let day_tok = tokens.get(i + 1)?;
    if !day_tok.pre.is_empty() {
        return None;
    }
    let day = day_number(day_tok.core)?;
    let mut words = format!("{} {}", MONTHS[m], ordinal(day));
    let mut used = 2;
    let mut post = day_tok.post;
    if day_tok.post == "," {
        if let Some(y) = tokens.get(i + 2).and_then(|y| four_digit_year(y.core)) {
            words.push_str(", ");
            words.push_str(&year(y));
            used = 3;
            post = tokens[i + 2].post;
        }
    }
    Some(Expansion {
        words,
        used,
        post,
        pre: None,
    })
}

/// `4 December [2026]`, `4th of December` → "the fourth of December[, twenty twenty-six]".
fn day_month<'a>(tokens: &[Token<'a>], i: usize) -> Option<Expansion<'a>> {
    let t = &tokens[i];
    let day = day_number(t.core)?;
    if !t.post.is_empty() {
        return None;
    }
    let mut j = i + 1;
    if tokens.get(j)?.core.eq_ignore_ascii_case("of") {
        j += 1;
    }
    let month_tok = tokens.get(j)?;
    let m = month_index(month_tok.core)?;
    if !MONTHS[m].eq_ignore_ascii_case(month_tok.core) && month_tok.post != "." {
        return None;
    }
    let after_the = i
        .checked_sub(1)
        .is_some_and(|p| tokens[p].core.eq_ignore_ascii_case("the"));
    let mut words = format!(
        "{}{} of {}",
        if after_the { "" } else { "the " },
        ordinal(day),
        MONTHS[m]
    );
    let mut used = j - i + 1;
    let mut post = if month_tok.post == "." {
        ""
    } else {
        month_tok.post
    };
    if month_tok.post.is_empty() {
        if let Some(y) = tokens.get(j + 1).and_then(|y| four_digit_year(y.core)) {
            words.push_str(", ");
            words.push_str(&year(y));
            used += 1;
            post = tokens[j + 1].post;
        }
    }
    Some(Expansion {
        words,
        used,
        post,
        pre: None,
    })
}

fn weekday_name(w: Weekday) -> &'static str {
    match w {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

fn date_words(y: i16, m: i8, d: i8) -> Option<String> {
    let date = Date::new(y, m, d).ok()?;
    Some(format!(
        "{}, {} {}, {}",
        weekday_name(date.weekday()),
        MONTHS[usize::try_from(m - 1).ok()?],
        ordinal(u64::try_from(d).ok()?),
        year(u64::try_from(y).ok()?)
    ))
}

/// `2026-12-04` → "Friday, December fourth, twenty twenty-six".
fn iso_date(core: &str) -> Option<String> {
    let mut parts = core.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    date_words(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// `12/04/2026` (month/day/year) → "Friday, December fourth, twenty twenty-six".
fn slash_date(core: &str) -> Option<String> {
    let mut parts = core.split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || y.len() != 4
        || m.is_empty()
        || m.len() > 2
        || d.is_empty()
        || d.len() > 2
    {
        return None;
    }
    date_words(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

/// Digit groups of a phone number, or None. Accepts `555-123-4567`, `555.123.4567`,
/// `+15551234567`, `(555)123-4567`.
fn phone_groups(s: &str) -> Option<Vec<String>> {
    if !s
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '-' | '.' | '(' | ')' | '+'))
    {
        return None;
    }
    let plus = s.starts_with('+');
    if s[usize::from(plus)..].contains('+') {
        return None;
    }
    let groups: Vec<String> = s
        .split(['-', '.', '(', ')', '+'])
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    Some(groups).filter(|g| !g.is_empty())
}

/// A phone number, possibly over several tokens (`+1 555 123 4567`, `(555) 123-4567`): digit
/// by digit, a comma between groups.
fn phone<'a>(tokens: &[Token<'a>], i: usize) -> Option<Expansion<'a>> {
    let t = &tokens[i];
    let paren = t.pre.ends_with('(') && (t.post.starts_with(')') || t.core.contains(')'));
    let plus = t.core.starts_with('+');
    if !(plus || paren || t.core.contains(['-', '.'])) {
        return None;
    }
    let mut groups = phone_groups(t.core)?;
    // An impossible ISO date (2026-02-30) is not a phone number either.
    let lens: Vec<usize> = groups.iter().map(String::len).collect();
    if lens == [4, 2, 2] && t.core.contains('-') {
        return None;
    }
    let mut used = 1;
    let mut post = if paren && t.post.starts_with(')') {
        &t.post[1..]
    } else {
        t.post
    };
    // `+1 555 …` and `(555) 123-…` continue over the following digit groups.
    if (plus || paren) && post.is_empty() {
        while let Some(n) = tokens.get(i + used) {
            if !n.pre.is_empty() || !n.core.starts_with(|c: char| c.is_ascii_digit()) {
                break;
            }
            let Some(more) = phone_groups(n.core) else {
                break;
            };
            if more.iter().any(|g| g.len() > 4) {
                break;
            }
            groups.extend(more);
            post = n.post;
            used += 1;
            if !n.post.is_empty() {
                break;
            }
        }
    }
    let total: usize = groups.iter().map(String::len).sum();
    let single_plus = plus && groups.len() == 1;
    if !(7..=15).contains(&total)
        || (groups.len() < 2 && !single_plus)
        || (!single_plus && groups.iter().any(|g| g.len() > 4))
    {
        return None;
    }
    // `+15551234567`: a North American number in one piece, grouped 1-3-3-4.
    if single_plus && total == 11 && groups[0].starts_with('1') {
        let g = &groups[0];
        groups = vec![g[..1].into(), g[1..4].into(), g[4..7].into(), g[7..].into()];
    }
    let mut words = if plus {
        "plus ".to_owned()
    } else {
        String::new()
    };
    words.push_str(
        &groups
            .iter()
            .map(|g| digits(g))
            .collect::<Vec<_>>()
            .join(", "),
    );
    Some(Expansion {
        words,
        used,
        post,
        pre: paren.then(|| &t.pre[..t.pre.len() - 1]),
    })
}

/// `am`, `p.m.` (its trailing period stripped by the tokenizer) → "a m" / "p m".
fn meridiem(word: &str) -> Option<&'static str> {
    match word.to_ascii_lowercase().as_str() {
        "am" | "a.m" | "a.m." => Some("a m"),
        "pm" | "p.m" | "p.m." => Some("p m"),
        _ => None,
    }
}

/// Split `3:30pm` / `3pm` into the number part and a meridiem.
fn split_meridiem(core: &str) -> (&str, Option<&'static str>) {
    let lower = core.to_ascii_lowercase();
    for suffix in ["a.m", "p.m", "am", "pm"] {
        if lower.ends_with(suffix) && core.len() > suffix.len() {
            let head = &core[..core.len() - suffix.len()];
            if head.ends_with(|c: char| c.is_ascii_digit()) {
                return (head, meridiem(suffix));
            }
        }
    }
    (core, None)
}

/// Times: `3:30 pm`, `15:05`, `3pm`, `3 p.m.`.
fn time<'a>(tokens: &[Token<'a>], i: usize) -> Option<Expansion<'a>> {
    let t = &tokens[i];
    let (head, mut mer) = split_meridiem(t.core);
    let mut used = 1;
    let mut post = t.post;
    if mer.is_none() && (t.post.is_empty() || t.post == ".") {
        if let Some(m) = tokens
            .get(i + 1)
            .and_then(|n| meridiem(n.core).filter(|_| n.pre.is_empty()))
        {
            if t.post.is_empty() {
                mer = Some(m);
                used = 2;
                post = tokens[i + 1].post;
            }
        }
    }
    let (hour_s, minute_s) = match head.split_once(':') {
        Some((h, m)) => (h, Some(m)),
        None => (head, None),
    };
    if hour_s.is_empty() || hour_s.len() > 2 || !hour_s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hour: u32 = hour_s.parse().ok()?;
    let minute: u32 = match minute_s {
        Some(m) if m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()) => m.parse().ok()?,
        Some(_) => return None,
        None if mer.is_some() => 0,
        None => return None,
    };
    if minute > 59 || hour > 23 {
        return None;
    }
    let (h12, mer) = match mer {
        Some(m) => {
            if hour == 0 || hour > 12 {
                return None;
            }
            (hour, Some(m))
        }
        None if hour == 0 => (12, Some("a m")),
        None if hour > 12 => (hour - 12, Some("p m")),
        None if hour_s.starts_with('0') => (hour, Some("a m")),
        None => (hour, None),
    };
    let mut words = cardinal(u64::from(h12));
    match minute {
        0 if mer.is_none() => words.push_str(" o'clock"),
        0 => {}
        1..=9 => {
            words.push_str(" oh ");
            words.push_str(ONES[minute as usize]);
        }
        _ => {
            words.push(' ');
            words.push_str(&cardinal(u64::from(minute)));
        }
    }
    if let Some(m) = mer {
        words.push(' ');
        words.push_str(m);
    }
    // `5 p.m. tomorrow`: the period belongs to the abbreviation, not to the sentence.
    let lower_next = tokens
        .get(i + used)
        .and_then(|n| n.core.chars().next())
        .is_some_and(char::is_lowercase);
    if post == "." && lower_next && tokens[i + used - 1].core.contains('.') {
        post = "";
    }
    Some(Expansion {
        words,
        used,
        post,
        pre: None,
    })
}

/// `$12.50`, `€5`, `£3.20`, `$5 million`.
fn money<'a>(tokens: &[Token<'a>], i: usize) -> Option<Expansion<'a>> {
    let t = &tokens[i];
    let mut chars = t.core.chars();
    let (one, many, cent, cents) = match chars.next()? {
        '$' => ("dollar", "dollars", "cent", "cents"),
        '€' => ("euro", "euros", "cent", "cents"),
        '£' => ("pound", "pounds", "penny", "pence"),
        _ => return None,
    };
    let n = parse_number(chars.as_str())?;
    if n.negative {
        return None;
    }
    let int = n.int_value()?;
    // `$5 million`, `$2.5 billion`.
    if t.post.is_empty() {
        if let Some(next) = tokens.get(i + 1) {
            let scale = next.core.to_ascii_lowercase();
            if matches!(
                scale.as_str(),
                "thousand" | "million" | "billion" | "trillion"
            ) {
                return Some(Expansion {
                    words: format!("{} {scale} {many}", n.words()),
                    used: 2,
                    post: next.post,
                    pre: None,
                });
            }
        }
    }
    let words = match &n.frac {
        Some(f) if f.len() == 2 => {
            let c: u64 = f.parse().ok()?;
            let unit = |v: u64, s: &str, p: &str| {
                format!("{} {}", cardinal(v), if v == 1 { s } else { p })
            };
            match (int, c) {
                (0, 0) => format!("zero {many}"),
                (0, c) => unit(c, cent, cents),
                (d, 0) => unit(d, one, many),
                (d, c) => format!("{} and {}", unit(d, one, many), unit(c, cent, cents)),
            }
        }
        Some(_) => format!("{} {many}", n.words()),
        None => format!("{} {}", n.words(), if int == 1 { one } else { many }),
    };
    Some(Expansion {
        words,
        used: 1,
        post: t.post,
        pre: None,
    })
}

/// `20°C`, `-5°`, `68 °F`.
fn degrees<'a>(tokens: &[Token<'a>], i: usize) -> Option<Expansion<'a>> {
    let t = &tokens[i];
    let scale = |s: &str| match s {
        "°C" | "ºC" => Some(" degrees Celsius"),
        "°F" | "ºF" => Some(" degrees Fahrenheit"),
        "°" | "º" => Some(" degrees"),
        _ => None,
    };
    if let Some(pos) = t.core.find(['°', 'º']) {
        let n = parse_number(&t.core[..pos])?;
        let unit = scale(&t.core[pos..])?;
        return Some(Expansion {
            words: format!("{}{unit}", n.words()),
            used: 1,
            post: t.post,
            pre: None,
        });
    }
    let n = parse_number(t.core)?;
    let next = tokens.get(i + 1)?;
    if !t.post.is_empty() {
        return None;
    }
    let unit = scale(next.core)?;
    Some(Expansion {
        words: format!("{}{unit}", n.words()),
        used: 2,
        post: next.post,
        pre: None,
    })
}

/// `4th`, `22nd`, `101st` → "fourth", "twenty-second", "one hundred first".
fn ordinal_token(core: &str) -> Option<String> {
    let lower = core.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !c.is_ascii_digit() && c != ',')?;
    let (num, suffix) = lower.split_at(digits_end);
    if !matches!(suffix, "st" | "nd" | "rd" | "th") {
        return None;
    }
    let n = parse_number(num)?;
    Some(ordinal(n.int_value()?))
}

/// `1/2`, `3/4`, `2/3`, `5/8` → "one half", "three quarters", "two thirds", "five eighths".
fn fraction(core: &str) -> Option<String> {
    let (a, b) = core.split_once('/')?;
    if a.is_empty() || b.is_empty() || a.len() > 3 || b.len() > 2 {
        return None;
    }
    let a: u64 = a.parse().ok()?;
    let b: u64 = b.parse().ok()?;
    if b < 2 {
        return None;
    }
    let denom = match b {
        2 => "half".to_owned(),
        4 => "quarter".to_owned(),
        _ => ordinal(b),
    };
    let denom = if a == 1 {
        denom
    } else if denom == "half" {
        "halves".to_owned()
    } else {
        format!("{denom}s")
    };
    Some(format!("{} {denom}", cardinal(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            // Times.
            ("It is 3:30 pm.", "It is three thirty p m."),
            ("at 3:30pm", "at three thirty p m"),
            ("at 3 pm", "at three p m"),
            ("at 11am", "at eleven a m"),
            ("Meet at 5 p.m.", "Meet at five p m."),
            ("15:05", "three oh five p m"),
            ("09:15", "nine fifteen a m"),
            ("00:30", "twelve thirty a m"),
            ("3:00", "three o'clock"),
            ("at 7:45, then", "at seven forty-five, then"),
            ("at 5 p.m. tomorrow", "at five p m tomorrow"),
            // Dates.
            ("Friday the 4th", "Friday the fourth"),
            ("2026-12-04", "Friday, December fourth, twenty twenty-six"),
            (
                "on 12/04/2026.",
                "on Friday, December fourth, twenty twenty-six.",
            ),
            ("December 4, 2026", "December fourth, twenty twenty-six"),
            ("Dec. 25th is", "December twenty-fifth is"),
            (
                "4 December 2026",
                "the fourth of December, twenty twenty-six",
            ),
            ("the 1st of May", "the first of May"),
            ("in 1984", "in nineteen eighty-four"),
            ("since 2005", "since two thousand five"),
            ("in 1905", "in nineteen oh five"),
            ("in 2000", "in two thousand"),
            // Cardinals, ordinals, decimals, negatives.
            ("0", "zero"),
            ("I have 42 apples", "I have forty-two apples"),
            ("1,234", "one thousand two hundred thirty-four"),
            ("1000000", "one million"),
            ("3,000,000,017", "three billion seventeen"),
            ("2048 bytes", "two thousand forty-eight bytes"),
            ("the 22nd", "the twenty-second"),
            ("101st", "one hundred first"),
            (
                "the 12th, 20th and 93rd",
                "the twelfth, twentieth and ninety-third",
            ),
            ("3.14", "three point one four"),
            ("3.1415926", "three point one four one five nine two six"),
            ("-5", "minus five"),
            ("-0.5", "minus zero point five"),
            ("10-20 minutes", "ten to twenty minutes"),
            ("1/2 cup", "one half cup"),
            ("3/4", "three quarters"),
            ("#1", "number one"),
            ("No. 5", "number five"),
            ("007", "zero zero seven"),
            // Percent, money, degrees.
            ("50%", "fifty percent"),
            ("2.5% off", "two point five percent off"),
            ("$12.50", "twelve dollars and fifty cents"),
            ("$1", "one dollar"),
            ("$0.99", "ninety-nine cents"),
            ("$1,000.", "one thousand dollars."),
            ("$5 million", "five million dollars"),
            ("€3.01", "three euros and one cent"),
            ("£20", "twenty pounds"),
            ("It is 20°C", "It is twenty degrees Celsius"),
            ("-5°", "minus five degrees"),
            ("68 °F", "sixty-eight degrees Fahrenheit"),
            // Phone numbers.
            (
                "555-123-4567",
                "five five five, one two three, four five six seven",
            ),
            (
                "call (555) 123-4567.",
                "call five five five, one two three, four five six seven.",
            ),
            (
                "+1 555 123 4567",
                "plus one, five five five, one two three, four five six seven",
            ),
            (
                "+15551234567",
                "plus one, five five five, one two three, four five six seven",
            ),
            ("555.0199", "five five five, zero one nine nine"),
            // Abbreviations.
            ("Dr. Smith", "Doctor Smith"),
            ("Mr. and Mrs. Jones", "Mister and Missus Jones"),
            ("St. Louis", "Saint Louis"),
            ("on Main St. today", "on Main Street today"),
            (
                "apples, pears, etc. and more",
                "apples, pears, et cetera and more",
            ),
            ("e.g. this", "for example this"),
            ("Rock & roll", "Rock and roll"),
            // Untouched.
            ("Hello, world!", "Hello, world!"),
            ("  spaced  out  ", "  spaced  out  "),
            ("mp3 and A4", "mp3 and A4"),
            ("\"Stop,\" she said.", "\"Stop,\" she said."),
        ];
        let mut failures = Vec::new();
        for (input, want) in cases {
            let got = normalize(input);
            if &got != want {
                failures.push(format!("{input:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(cases.len() >= 30);
    }

    #[test]
    fn odd_input_passes_through_without_panicking() {
        let odd = [
            "",
            "$",
            "$.",
            "-",
            "+",
            "#",
            "°",
            "%",
            "1/0",
            "12:",
            ":30",
            "(",
            "()",
            "+1 (",
            "99999999999999999999999",
            "$99999999999999999999.99",
            "1st of",
            "Dec.",
            "St.",
            "p.m.",
            "ÄÖ 3pm",
            "3ßam",
            "1,",
            ",1",
            "1,,000",
            "--5",
            "5--",
            "1-",
            "(555) ",
            "e.g.",
            "No.",
            "2026-02-30",
            "2026-13-01",
            "0000-00-00",
            "12/32/2026",
            "...",
            "24:00",
            "12:60",
            "3:5",
            "+",
            "€",
            "£0.00",
            "1e9",
            "½",
            "٣",
            "3 pm.",
            "Mr.",
        ];
        for text in odd {
            let _ = normalize(text);
            let _ = normalize(&format!("{text} {text}. {text}"));
        }
        assert_eq!(normalize("2026-02-30"), "2026-02-30");
        assert_eq!(normalize("24:00"), "24:00");
        assert_eq!(normalize("£0.00"), "zero pounds");
    }

    #[test]
    fn cardinals_ordinals_and_years() {
        assert_eq!(cardinal(0), "zero");
        assert_eq!(cardinal(115), "one hundred fifteen");
        assert_eq!(
            cardinal(1_002_003_004),
            "one billion two million three thousand four"
        );
        assert_eq!(cardinal(999_999_999_999), "nine hundred ninety-nine billion nine hundred ninety-nine million nine hundred ninety-nine thousand nine hundred ninety-nine");
        assert_eq!(ordinal(1), "first");
        assert_eq!(ordinal(12), "twelfth");
        assert_eq!(ordinal(40), "fortieth");
        assert_eq!(ordinal(1000), "one thousandth");
        assert_eq!(year(2026), "twenty twenty-six");
        assert_eq!(year(1900), "nineteen hundred");
        assert_eq!(year(2010), "twenty ten");
    }
}
