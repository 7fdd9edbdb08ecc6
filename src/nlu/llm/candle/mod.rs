//! Placeholder: the candle GGUF engine (being written).

use std::path::Path;

use super::LlmError;

/// Rewrite a GGUF file with its quantized weight tensors converted to `target` (e.g. `q8_0`),
/// keeping the metadata; used by `models pull` when the target format runs faster in candle.
pub fn requantize_gguf(_src: &Path, _dst: &Path, _target: &str) -> Result<(), LlmError> {
    Err(LlmError::Inference(
        "requantize_gguf is not implemented yet".into(),
    ))
}
