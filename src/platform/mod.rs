//! Platform services: logging, systemd integration (notify, watchdog), component health,
//! metrics and the `doctor` checks.
//!
//! Architecture Invariant: platform code observes and reports; it never makes domain
//! decisions and never holds domain data.

pub mod doctor;
pub mod foreground;
pub mod health;
pub mod heap;
pub mod logging;
pub mod metrics;
pub mod systemd;
