//! The one error type of the `models` module: every variant names what was wrong (which
//! model, which file, which hash) so the person who hit it can act on it.

use std::path::PathBuf;

/// Errors of the model manifest, store and `models` commands.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// The manifest is not valid TOML or does not match the schema.
    #[error("model manifest {origin}: {reason}")]
    Manifest {
        /// Where the manifest came from (`embedded` or a file path).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// One manifest entry breaks a rule (duplicate name, bad hash, unsafe path, …).
    #[error("model manifest {origin}: model `{model}`: {reason}")]
    ManifestEntry {
        /// Where the manifest came from.
        origin: String,
        /// The model entry.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// The name is not in the manifest.
    #[error("unknown model `{name}`; valid names: {valid}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Every name of the manifest, comma-separated.
        valid: String,
    },
    /// The model's files are not (all) in the models directory.
    #[error("model {name} is not installed: run `local-assistant models pull {name}`")]
    NotInstalled {
        /// The model.
        name: String,
    },
    /// A file of the model is there but has the wrong size.
    #[error(
        "model {name} is damaged ({detail}): run `local-assistant models pull {name}` to repair it"
    )]
    Damaged {
        /// The model.
        name: String,
        /// Which file and how.
        detail: String,
    },
    /// The model has no PyPI source and no recorded sha256, so this tool cannot fetch it.
    #[error("model {name} is device-only (no PyPI source and no recorded sha256): download it on the device from {url} into {dest}")]
    DeviceOnly {
        /// The model.
        name: String,
        /// Where a device gets it.
        url: String,
        /// Where it must be placed.
        dest: PathBuf,
    },
    /// The model has no file for the chosen CPU architecture.
    #[error("model {name} has no files for {arch}")]
    NoFilesForArch {
        /// The model.
        name: String,
        /// The architecture.
        arch: String,
    },
    /// A fetched or installed file does not have the sha256 of the manifest.
    #[error("{path}: sha256 mismatch: expected {expected}, got {actual}")]
    ShaMismatch {
        /// The file (for a fetch, the final path; the partial file has been removed).
        path: PathBuf,
        /// sha256 from the manifest.
        expected: String,
        /// sha256 of the bytes found.
        actual: String,
    },
    /// A fetched or installed file does not have the size of the manifest.
    #[error("{path}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Size from the manifest.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`create`, `read`, `rename to`, …).
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `python3 -m pip` is not usable.
    #[error("pip is not available (`{python} -m pip --version`: {reason}); install python3-pip, or pass --source url")]
    PipMissing {
        /// The Python interpreter tried.
        python: String,
        /// Why it is not usable.
        reason: String,
    },
    /// `pip download` failed (network, index, or no such release). Retrying may help.
    #[error("`{command}` failed ({status}): {output}")]
    Pip {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// The tail of pip's output.
        output: String,
    },
    /// pip succeeded but the exact wheel of the manifest is not what it fetched.
    #[error("pip download of {package}=={version} did not produce {wheel} (got: {got})")]
    WheelMissing {
        /// The package.
        package: String,
        /// The version.
        version: String,
        /// The wheel file the manifest names.
        wheel: String,
        /// What pip produced.
        got: String,
    },
    /// An HTTPS download failed. Retrying may help.
    #[error("downloading {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A wheel or zip archive cannot be read, or lacks the member.
    #[error("archive {archive}: {reason}")]
    Archive {
        /// The archive.
        archive: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The manifest names a convert step this build does not know.
    #[error("unknown convert step `{name}` (known: {known})")]
    UnknownConvert {
        /// The step asked for.
        name: String,
        /// The steps this build knows.
        known: String,
    },
    /// A convert step failed.
    #[error("convert step {step} on {path}: {reason}")]
    Convert {
        /// The step.
        step: String,
        /// The input file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `models verify` found files that do not match the manifest.
    #[error("{count} model file(s) failed verification:\n{details}")]
    VerifyFailed {
        /// How many files failed.
        count: usize,
        /// One line per failed file: path, expected and actual.
        details: String,
    },
    /// `models pull` without names, `--default` or `--all`.
    #[error("nothing to pull: name models (see `local-assistant models list`), or pass --default or --all")]
    NothingSelected,
    /// Several models failed to pull; each line says why.
    #[error("{count} model(s) failed to pull:\n{details}")]
    PullFailed {
        /// How many models failed.
        count: usize,
        /// One line per model.
        details: String,
    },
}

impl ModelsError {
    /// Whether running the same command again may succeed without changing anything
    /// (network and index failures), as opposed to a wrong manifest or a bad name.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ModelsError::Http { .. } | ModelsError::Pip { .. })
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ModelsError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
