//! Logging setup: journald with structured fields when started by systemd, human-readable
//! stderr otherwise. `RUST_LOG`, when set, overrides `log.level`.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Where logs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The systemd journal.
    Journald,
    /// Standard error.
    Stderr,
}

/// Whether systemd started us (it sets these for services).
pub fn started_by_systemd() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some() || std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Install the global subscriber. Calling it twice keeps the first one.
pub fn init(cfg: &LogConfig) -> LogTarget {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let want_journal = match cfg.format {
        LogFormat::Journald => true,
        LogFormat::Stderr => false,
        LogFormat::Auto => started_by_systemd(),
    };
    let journal = if want_journal {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let target = if journal.is_some() {
        LogTarget::Journald
    } else {
        LogTarget::Stderr
    };
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(stderr)
        .try_init();
    if want_journal && target == LogTarget::Stderr {
        tracing::warn!("journald socket unavailable; logging to stderr");
    }
    target
}
