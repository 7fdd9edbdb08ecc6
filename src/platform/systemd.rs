//! systemd integration: `READY=1`, `STATUS=`, `STOPPING=1`, and the watchdog.
//!
//! The watchdog pings (`WATCHDOG=1`, every half of `WATCHDOG_USEC`) come from a plain thread
//! that first asks the async runtime to run a probe and the probe to commit a write and answer
//! a read through the store. If the runtime is wedged or the database does not answer within
//! the interval, no ping is sent, so systemd restarts the daemon. Without `NOTIFY_SOCKET`
//! every call here is a no-op.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Tell systemd we are ready, with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Update the status line shown by `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Tell systemd we are stopping.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Start the watchdog thread if systemd asked for one; it ends when `shutdown` is cancelled.
pub fn spawn_watchdog(
    runtime: tokio::runtime::Handle,
    store: Store,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let interval = (period / 2).max(Duration::from_millis(10));
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || watchdog_loop(&runtime, &store, &shutdown, interval))
        .map_err(|e| tracing::error!(error = %e, "cannot start the watchdog thread"))
        .ok()
}

fn watchdog_loop(
    runtime: &tokio::runtime::Handle,
    store: &Store,
    shutdown: &CancellationToken,
    interval: Duration,
) {
    let mut pending: Option<mpsc::Receiver<Result<(), StoreError>>> = None;
    let mut healthy = true;
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        let rx = pending.take().unwrap_or_else(|| {
            let (tx, rx) = mpsc::channel();
            let store = store.clone();
            // If the runtime is wedged this task never runs and the probe times out below.
            runtime.spawn(async move {
                let _ = tx.send(store.ping().await);
            });
            rx
        });
        let verdict = match rx.recv_timeout(interval) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("database probe failed: {e}")),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Keep waiting for this same probe rather than piling up new ones.
                pending = Some(rx);
                Err(format!(
                    "runtime or database did not answer within {} ms",
                    interval.as_millis()
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("the probe was dropped".into()),
        };
        match verdict {
            Ok(()) => {
                send(&[NotifyState::Watchdog]);
                if !healthy {
                    tracing::info!("watchdog: runtime and database answer again; pinging");
                    status("ready");
                    healthy = true;
                }
            }
            Err(why) => {
                if healthy {
                    tracing::error!(%why, "watchdog: withholding pings so systemd restarts us if this persists");
                    status(&format!("unhealthy: {why}"));
                    healthy = false;
                }
            }
        }
        if let Some(rest) = interval.checked_sub(started.elapsed()) {
            // Sleep in short steps so shutdown is prompt.
            let until = Instant::now() + rest;
            while !shutdown.is_cancelled() && Instant::now() < until {
                std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
            }
        }
    }
}
