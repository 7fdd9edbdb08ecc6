//! Convert steps run after a model's files are verified (`convert = "…"` in the manifest):
//! each step turns the main file into a derived file the engine prefers. This module only
//! dispatches; the conversions themselves live with the engine that reads their output.

use std::path::{Path, PathBuf};

use super::ModelsError;

/// Every convert step this build knows.
pub const KNOWN: &[&str] = &["gguf-q8_0", "whisper-ggml", "whisper-ggml-q8_0"];

/// Error unless `step` is one of [`KNOWN`].
pub fn check_known(step: &str) -> Result<(), ModelsError> {
    if KNOWN.contains(&step) {
        Ok(())
    } else {
        Err(ModelsError::UnknownConvert {
            name: step.to_string(),
            known: KNOWN.join(", "),
        })
    }
}

/// Where `step` writes its output for the main file `src` (next to it).
pub fn output_path(step: &str, src: &Path) -> Result<PathBuf, ModelsError> {
    check_known(step)?;
    let stem = src
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(match step {
        // The ggml names whisper.cpp's own downloads use, next to the CTranslate2 model.bin.
        "whisper-ggml" => src.with_file_name("ggml-model-f16.bin"),
        "whisper-ggml-q8_0" => src.with_file_name("ggml-model-q8_0.bin"),
        // "X.Q4_1.gguf" → "X.Q4_1.q8_0.gguf".
        _ => src.with_file_name(format!("{stem}.q8_0.gguf")),
    })
}

/// Run `step` from `src` into `dst` (the caller makes `dst` a temporary path and renames it).
pub fn run(step: &str, src: &Path, dst: &Path) -> Result<(), ModelsError> {
    match step {
        "gguf-q8_0" => crate::nlu::llm::candle::requantize_gguf(src, dst, "q8_0").map_err(|e| {
            ModelsError::Convert {
                step: step.to_string(),
                path: src.to_path_buf(),
                reason: e.to_string(),
            }
        }),
        "whisper-ggml" | "whisper-ggml-q8_0" => {
            use crate::speech::stt::convert::{convert, WeightType};
            let weights = if step == "whisper-ggml" {
                WeightType::F16
            } else {
                WeightType::Q8_0
            };
            convert(src, dst, weights)
                .map(|_| ())
                .map_err(|e| ModelsError::Convert {
                    step: step.to_string(),
                    path: src.to_path_buf(),
                    reason: e.to_string(),
                })
        }
        other => Err(ModelsError::UnknownConvert {
            name: other.to_string(),
            known: KNOWN.join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_step_is_a_clear_error() {
        let e = run("gguf-q3_x", Path::new("a.gguf"), Path::new("b.gguf")).expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "unknown convert step `gguf-q3_x` (known: gguf-q8_0, whisper-ggml, whisper-ggml-q8_0)"
        );
        assert!(output_path("nope", Path::new("a.gguf")).is_err());
    }

    #[test]
    fn q8_0_dispatches_to_the_requantizer_and_names_the_input() {
        let dir = std::env::temp_dir().join(format!("la-convert-{}", std::process::id()));
        let src = dir.join("missing.Q4_1.gguf");
        let dst = output_path("gguf-q8_0", &src).expect("known");
        assert_eq!(
            dst.file_name().and_then(|s| s.to_str()),
            Some("missing.Q4_1.q8_0.gguf")
        );
        // The source does not exist: whichever requantizer is linked in must fail, and the
        // error must name the step and the input.
        let e = run("gguf-q8_0", &src, &dst).expect_err("nonexistent input");
        let s = e.to_string();
        assert!(
            s.contains("gguf-q8_0") && s.contains("missing.Q4_1.gguf"),
            "{s}"
        );
        assert!(!dst.exists());
    }

    #[test]
    fn whisper_steps_write_ggml_files_beside_model_bin_and_name_bad_input() {
        let dir = std::env::temp_dir().join(format!("la-convert-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let src = dir.join("model.bin");
        for (step, name) in [
            ("whisper-ggml", "ggml-model-f16.bin"),
            ("whisper-ggml-q8_0", "ggml-model-q8_0.bin"),
        ] {
            let dst = output_path(step, &src).expect("known");
            assert_eq!(dst, dir.join(name));
            std::fs::write(&src, b"GGUF not a ctranslate2 file").expect("write");
            let s = run(step, &src, &dst).expect_err("not ct2").to_string();
            assert!(
                s.contains(step) && s.contains("model.bin") && s.contains("not a CTranslate2"),
                "{s}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
