//! Models: the manifest (`models/manifest.toml`, embedded) and fetching, verifying and
//! converting them into the models directory (`local-assistant models pull`).

pub mod cli;
