//! English numbers ("25", "twenty five", "24th", "twenty-fourth") and durations
//! ("1 hour 20 minutes", "an hour and a half", "half an hour", "90 seconds").

use super::lex::{at, w, Token};

/// A number as said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Num {
    /// The value (fractional only for digits like "1.5").
    pub value: f64,
    /// "24th", "fourth".
    pub ordinal: bool,
}

const UNITS: [&str; 20] = [
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

const UNIT_ORDINALS: [&str; 20] = [
    "zeroth",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
];

const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

const TENS_ORDINALS: [&str; 8] = [
    "twentieth",
    "thirtieth",
    "fortieth",
    "fiftieth",
    "sixtieth",
    "seventieth",
    "eightieth",
    "ninetieth",
];

fn unit_word(s: &str) -> Option<(u32, bool)> {
    let pos = |list: &[&str]| list.iter().position(|x| *x == s).map(|p| p as u32);
    pos(&UNITS)
        .map(|v| (v, false))
        .or_else(|| pos(&UNIT_ORDINALS).map(|v| (v, true)))
}

fn tens_word(s: &str) -> Option<(u32, bool)> {
    let pos = |list: &[&str]| {
        list.iter()
            .position(|x| *x == s)
            .map(|p| 20 + 10 * p as u32)
    };
    pos(&TENS)
        .map(|v| (v, false))
        .or_else(|| pos(&TENS_ORDINALS).map(|v| (v, true)))
}

/// A number at token `i`; returns it and the index after it.
pub(super) fn number(t: &[Token], i: usize) -> Option<(Num, usize)> {
    let s = w(t, i);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        let (digits, ordinal) = match s.get(s.len().saturating_sub(2)..) {
            Some("st" | "nd" | "rd" | "th") => (&s[..s.len() - 2], true),
            _ => (s, false),
        };
        if digits.contains(':') {
            return None;
        }
        let value: f64 = digits.parse().ok()?;
        return Some((Num { value, ordinal }, i + 1));
    }
    if s == "hundred" || ((s == "a" || s == "one") && w(t, i + 1) == "hundred") {
        let next = if s == "hundred" { i + 1 } else { i + 2 };
        return Some((
            Num {
                value: 100.0,
                ordinal: false,
            },
            next,
        ));
    }
    if let Some((tens, ordinal)) = tens_word(s) {
        if !ordinal {
            if let Some((u, ord)) = unit_word(w(t, i + 1)).filter(|(u, _)| (1..10).contains(u)) {
                return Some((
                    Num {
                        value: f64::from(tens + u),
                        ordinal: ord,
                    },
                    i + 2,
                ));
            }
        }
        return Some((
            Num {
                value: f64::from(tens),
                ordinal,
            },
            i + 1,
        ));
    }
    let (u, ordinal) = unit_word(s)?;
    Some((
        Num {
            value: f64::from(u),
            ordinal,
        },
        i + 1,
    ))
}

/// A whole cardinal number (not an ordinal) at `i`.
pub(super) fn cardinal(t: &[Token], i: usize) -> Option<(u32, usize)> {
    let (n, next) = number(t, i)?;
    if n.ordinal || n.value.fract() != 0.0 || n.value < 0.0 || n.value > 1e6 {
        return None;
    }
    Some((n.value as u32, next))
}

/// A duration as said: calendar days plus seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Dur {
    /// Days and weeks (7 days).
    pub days: f64,
    /// Hours, minutes and seconds.
    pub secs: f64,
}

impl Dur {
    /// As an exact duration (a day = 24 hours).
    pub fn signed(self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs((self.days * 86_400.0 + self.secs).round() as i64)
    }
}

/// (seconds per unit, is a calendar day unit) of a unit word.
fn unit(s: &str) -> Option<(f64, bool)> {
    Some(match s {
        "second" | "seconds" | "sec" | "secs" | "s" => (1.0, false),
        "minute" | "minutes" | "min" | "mins" => (60.0, false),
        "hour" | "hours" | "hr" | "hrs" | "h" => (3600.0, false),
        "day" | "days" => (1.0, true),
        "week" | "weeks" => (7.0, true),
        _ => return None,
    })
}

/// Quantity before a unit: "10", "ten", "a", "an", "a couple of", "one and a half".
fn quantity(t: &[Token], i: usize) -> Option<(f64, usize)> {
    let (q, mut j) = match w(t, i) {
        "a" | "an" if at(t, i + 1, "couple of") => (2.0, i + 3),
        "a" if at(t, i + 1, "few") => (3.0, i + 2),
        "couple" if w(t, i + 1) == "of" => (2.0, i + 2),
        "a" | "an" => (1.0, i + 1),
        _ => {
            let (n, j) = number(t, i)?;
            if n.ordinal {
                return None;
            }
            (n.value, j)
        }
    };
    let mut q = q;
    if at(t, j, "and a half") {
        q += 0.5;
        j += 3;
    }
    Some((q, j))
}

/// One term: "10 minutes", "an hour and a half", "half an hour", "a quarter of an hour".
fn term(t: &[Token], i: usize) -> Option<(Dur, usize)> {
    let add = |d: &mut Dur, q: f64, (secs, cal): (f64, bool)| {
        if cal {
            d.days += q * secs;
        } else {
            d.secs += q * secs;
        }
    };
    let mut d = Dur::default();
    if w(t, i) == "half" && matches!(w(t, i + 1), "a" | "an") {
        let u = unit(w(t, i + 2))?;
        add(&mut d, 0.5, u);
        return Some((d, i + 3));
    }
    let q_start = if matches!(w(t, i), "a" | "one") && w(t, i + 1) == "quarter" {
        i + 1
    } else {
        i
    };
    if w(t, q_start) == "quarter" {
        let mut j = q_start + 1;
        if w(t, j) == "of" && matches!(w(t, j + 1), "a" | "an") {
            j += 2;
        }
        if matches!(w(t, j), "hour" | "an") {
            let j = if w(t, j) == "an" { j + 1 } else { j };
            if w(t, j) == "hour" {
                d.secs = 900.0;
                return Some((d, j + 1));
            }
        }
        return None;
    }
    let (q, j) = quantity(t, i)?;
    let u = unit(w(t, j))?;
    add(&mut d, q, u);
    let mut j = j + 1;
    if at(t, j, "and a half") {
        add(&mut d, 0.5, u);
        j += 3;
    }
    Some((d, j))
}

/// A duration at `i`: terms joined by nothing or "and" ("1 hour and 20 minutes").
pub(super) fn duration(t: &[Token], i: usize) -> Option<(Dur, usize)> {
    let (mut d, mut j) = term(t, i)?;
    loop {
        let k = if w(t, j) == "and" { j + 1 } else { j };
        match term(t, k) {
            Some((more, next)) => {
                d.days += more.days;
                d.secs += more.secs;
                j = next;
            }
            None => break,
        }
    }
    (d.days > 0.0 || d.secs > 0.0).then_some((d, j))
}

#[cfg(test)]
mod tests {
    use super::super::lex::tokenize;
    use super::*;

    fn secs(s: &str) -> Option<i64> {
        let t = tokenize(s);
        let (d, j) = duration(&t, 0)?;
        (j == t.len()).then(|| d.signed().as_secs())
    }

    #[test]
    fn durations_in_many_shapes() {
        assert_eq!(secs("10 minutes"), Some(600));
        assert_eq!(secs("1 hour 20 minutes"), Some(4800));
        assert_eq!(secs("an hour and a half"), Some(5400));
        assert_eq!(secs("one and a half hours"), Some(5400));
        assert_eq!(secs("1.5 hours"), Some(5400));
        assert_eq!(secs("half an hour"), Some(1800));
        assert_eq!(secs("a quarter of an hour"), Some(900));
        assert_eq!(secs("twenty five minutes"), Some(1500));
        assert_eq!(secs("ninety nine seconds"), Some(99));
        assert_eq!(secs("2 hours and 5 minutes and 3 seconds"), Some(7503));
        assert_eq!(secs("a couple of minutes"), Some(120));
        assert_eq!(secs("5 min"), Some(300));
        assert_eq!(secs("minutes"), None);
        assert_eq!(secs("second"), None);
    }

    #[test]
    fn ordinals_and_words() {
        let t = tokenize("twenty fourth");
        assert_eq!(
            number(&t, 0),
            Some((
                Num {
                    value: 24.0,
                    ordinal: true
                },
                2
            ))
        );
        let t = tokenize("31st");
        assert_eq!(number(&t, 0).unwrap().0.value, 31.0);
        let t = tokenize("one hundred");
        assert_eq!(cardinal(&t, 0), Some((100, 2)));
    }
}
