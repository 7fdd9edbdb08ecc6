//! Speech to text: the Whisper engine (whisper.cpp through `whisper-rs`) and the converter that
//! turns the CTranslate2 Whisper exports we can fetch into the ggml files whisper.cpp loads.
//!
//! Architecture Invariant: nothing here knows where audio comes from; engines take 16 kHz mono
//! [`crate::speech::Audio`] and return a [`crate::speech::Transcript`].

pub mod convert;
pub mod ct2;
#[cfg(feature = "whisper")]
pub mod whisper;
