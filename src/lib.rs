//! local-assistant: an offline-first home assistant appliance.
//!
//! `main.rs` is the CLI; [`app`] wires the components; see `docs/ARCHITECTURE.md` for the map
//! of modules and their invariants.

pub mod api;
pub mod app;
pub mod channels;
pub mod config;
pub mod domain;
pub mod events;
pub mod home;
pub mod messaging;
pub mod models;
pub mod nlu;
pub mod orchestrator;
pub mod platform;
pub mod speech;
pub mod store;
