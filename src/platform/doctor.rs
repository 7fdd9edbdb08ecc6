//! `local-assistant doctor`: checks the configuration, the database, disk space and the
//! hardware the appliance uses, one line each with OK, WARN or FAIL.
//!
//! Doctor only reads: it never creates the data directory or migrates the database.

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::config::Config;
use crate::store::migrations;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but something is missing or unusual.
    Warn,
    /// Will not work.
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "OK  ",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Verdict.
    pub level: Level,
    /// What was checked.
    pub name: &'static str,
    /// What was found and, if not OK, what to do.
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:<10} {}", self.level, self.name, self.detail)
    }
}

fn check(level: Level, name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        level,
        name,
        detail: detail.into(),
    }
}

/// Where to look for devices; tests point these at a temp tree.
#[derive(Debug, Clone)]
pub struct DeviceRoots {
    /// `/dev`.
    pub dev: PathBuf,
    /// `/proc/asound/cards`.
    pub asound_cards: PathBuf,
}

impl Default for DeviceRoots {
    fn default() -> Self {
        Self {
            dev: "/dev".into(),
            asound_cards: "/proc/asound/cards".into(),
        }
    }
}

/// Run every check.
pub fn run(cfg: &Config, roots: &DeviceRoots) -> Vec<Check> {
    let mut out = vec![check(
        Level::Ok,
        "config",
        match &cfg.source {
            Some(p) => format!(
                "loaded from {} (with LOCAL_ASSISTANT_* overrides)",
                p.display()
            ),
            None => "built-in defaults (with LOCAL_ASSISTANT_* overrides)".into(),
        },
    )];
    out.push(data_dir(&cfg.data_dir));
    out.push(database(&cfg.db_path()));
    out.push(disk_space(&cfg.data_dir));
    out.push(api_token(cfg));
    out.push(audio(&roots.asound_cards));
    out.extend(audio_devices(cfg));
    out.push(devices(
        &roots.dev,
        "serial",
        &["ttyUSB", "ttyACM"],
        "no USB serial ports (a GSM modem appears as ttyUSB*/ttyACM*)",
    ));
    out.push(devices(
        &roots.dev,
        "gpio",
        &["gpiochip"],
        "no GPIO chips (button and LEDs need /dev/gpiochip*)",
    ));
    out.push(models(&cfg.data_dir.join("models")));
    out
}

fn data_dir(dir: &Path) -> Check {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let probe = dir.join(".doctor-write-test");
            match std::fs::write(&probe, b"x") {
                Ok(()) => {
                    let _ = std::fs::remove_file(&probe);
                    check(
                        Level::Ok,
                        "data dir",
                        format!("{} is writable", dir.display()),
                    )
                }
                Err(e) => check(
                    Level::Fail,
                    "data dir",
                    format!(
                        "{} is not writable ({e}); fix its owner or permissions",
                        dir.display()
                    ),
                ),
            }
        }
        Ok(_) => check(
            Level::Fail,
            "data dir",
            format!("{} is not a directory", dir.display()),
        ),
        Err(_) => check(
            Level::Warn,
            "data dir",
            format!(
                "{} does not exist yet; `serve` or `init-db` creates it",
                dir.display()
            ),
        ),
    }
}

fn database(path: &Path) -> Check {
    if !path.exists() {
        return check(
            Level::Warn,
            "database",
            format!(
                "{} does not exist yet; run `local-assistant init-db`",
                path.display()
            ),
        );
    }
    let conn = match Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(c) => c,
        Err(e) => {
            return check(
                Level::Fail,
                "database",
                format!("cannot open {}: {e}", path.display()),
            )
        }
    };
    let integrity: Result<String, _> = conn.query_row("PRAGMA quick_check", [], |r| r.get(0));
    match integrity {
        Ok(s) if s == "ok" => {}
        Ok(s) => {
            return check(
                Level::Fail,
                "database",
                format!("{} is damaged ({s}); restore a backup", path.display()),
            )
        }
        Err(e) => {
            return check(
                Level::Fail,
                "database",
                format!(
                    "{} cannot be checked ({e}); is it a SQLite file?",
                    path.display()
                ),
            )
        }
    }
    let version = migrations::current_version(&conn).unwrap_or(-1);
    let latest = migrations::latest_version();
    match version.cmp(&latest) {
        std::cmp::Ordering::Equal => check(
            Level::Ok,
            "database",
            format!("{} intact, schema version {version}", path.display()),
        ),
        std::cmp::Ordering::Less => check(
            Level::Warn,
            "database",
            format!("schema version {version}; `serve` or `init-db` migrates it to {latest}"),
        ),
        std::cmp::Ordering::Greater => check(
            Level::Fail,
            "database",
            format!("schema version {version} is newer than this binary ({latest}); upgrade local-assistant"),
        ),
    }
}

/// Free bytes on the filesystem holding `path` (or its nearest existing ancestor).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            p = PathBuf::from(".");
            break;
        }
    }
    if p.as_os_str().is_empty() {
        p = PathBuf::from(".");
    }
    let c = CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory of the
    // right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

fn disk_space(dir: &Path) -> Check {
    const MB: u64 = 1024 * 1024;
    match free_bytes(dir) {
        Some(b) if b < 100 * MB => check(
            Level::Fail,
            "disk",
            format!(
                "only {} MiB free for {}; the database needs room to commit",
                b / MB,
                dir.display()
            ),
        ),
        Some(b) if b < 1024 * MB => check(
            Level::Warn,
            "disk",
            format!(
                "{} MiB free for {}; models and recordings need more",
                b / MB,
                dir.display()
            ),
        ),
        Some(b) => check(
            Level::Ok,
            "disk",
            format!("{} MiB free for {}", b / MB, dir.display()),
        ),
        None => check(
            Level::Warn,
            "disk",
            format!("cannot tell free space for {}", dir.display()),
        ),
    }
}

fn api_token(cfg: &Config) -> Check {
    if cfg.api.token.is_some() {
        return check(Level::Ok, "api token", "set in the configuration");
    }
    let path = crate::api::auth::token_path(&cfg.data_dir);
    match std::fs::metadata(&path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => check(
            Level::Fail,
            "api token",
            format!(
                "{} is readable by others (mode {:o}); run chmod 600 on it",
                path.display(),
                m.permissions().mode() & 0o777
            ),
        ),
        Ok(_) => check(
            Level::Ok,
            "api token",
            format!("{} (mode 600)", path.display()),
        ),
        Err(_) => check(
            Level::Warn,
            "api token",
            format!(
                "none yet; `serve` generates {} at first start",
                path.display()
            ),
        ),
    }
}

/// The ALSA devices, and whether the configured microphone and speaker open (a failure only
/// fails the check when the voice loop is enabled).
fn audio_devices(cfg: &Config) -> Vec<Check> {
    crate::channels::local::alsa::doctor_lines(
        &cfg.voice.capture_device,
        &cfg.voice.playback_device,
    )
    .into_iter()
    .map(|(ok, line)| {
        let level = match (ok, cfg.voice.enabled) {
            (true, _) => Level::Ok,
            (false, true) => Level::Fail,
            (false, false) => Level::Warn,
        };
        check(level, "voice", line)
    })
    .collect()
}

fn audio(cards: &Path) -> Check {
    match std::fs::read_to_string(cards) {
        Ok(text) => {
            let names: Vec<String> = text
                .lines()
                .filter(|l| {
                    l.trim_start()
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit())
                })
                .map(|l| l.trim().to_owned())
                .collect();
            if names.is_empty() {
                check(
                    Level::Warn,
                    "audio",
                    "no sound cards; local voice needs a microphone and a speaker",
                )
            } else {
                check(Level::Ok, "audio", names.join("; "))
            }
        }
        Err(_) => check(
            Level::Warn,
            "audio",
            format!(
                "{} not readable: no ALSA sound cards on this machine",
                cards.display()
            ),
        ),
    }
}

fn devices(dev: &Path, name: &'static str, prefixes: &[&str], none: &str) -> Check {
    let mut found: Vec<String> = std::fs::read_dir(dev)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if found.is_empty() {
        check(Level::Warn, name, none)
    } else {
        check(Level::Ok, name, found.join(", "))
    }
}

fn models(dir: &Path) -> Check {
    let count = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).count())
        .unwrap_or(0);
    if count == 0 {
        check(
            Level::Warn,
            "models",
            format!("none in {}; speech and the LLM need models", dir.display()),
        )
    } else {
        check(
            Level::Ok,
            "models",
            format!("{count} files in {}", dir.display()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_damage_are_reported_per_line() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dev = tmp.path().join("dev");
        std::fs::create_dir(&dev)?;
        std::fs::write(dev.join("ttyUSB0"), b"")?;
        std::fs::write(dev.join("gpiochip0"), b"")?;
        let cards = tmp.path().join("cards");
        std::fs::write(&cards, " 0 [Array  ]: USB-Audio - ReSpeaker 4 Mic Array\n")?;
        let mut cfg = Config::defaults();
        cfg.data_dir = tmp.path().join("data");
        let roots = DeviceRoots {
            dev,
            asound_cards: cards,
        };

        let report = run(&cfg, &roots);
        let line = |n: &str| report.iter().find(|c| c.name == n).cloned();
        assert_eq!(line("serial").map(|c| c.level), Some(Level::Ok));
        assert!(line("serial").is_some_and(|c| c.detail.contains("ttyUSB0")));
        assert_eq!(line("gpio").map(|c| c.level), Some(Level::Ok));
        assert!(line("audio").is_some_and(|c| c.detail.contains("ReSpeaker")));
        assert_eq!(line("database").map(|c| c.level), Some(Level::Warn));
        assert!(report.iter().all(|c| c.level != Level::Fail), "{report:?}");

        std::fs::create_dir_all(&cfg.data_dir)?;
        std::fs::write(cfg.db_path(), b"this is not a database, just text")?;
        let report = run(&cfg, &roots);
        let db = report.iter().find(|c| c.name == "database");
        assert_eq!(db.map(|c| c.level), Some(Level::Fail), "{report:?}");
        Ok(())
    }
}
