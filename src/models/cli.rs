//! `local-assistant models …` (placeholder being written).

use std::path::Path;

/// `models` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the models of the manifest and which are present.
    List,
}

/// Errors of the models commands.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// Placeholder.
    #[error("not implemented")]
    NotImplemented,
}

/// Run a `models` subcommand against the models directory.
pub fn run(_cmd: ModelsCommand, _models_dir: &Path) -> Result<(), ModelsError> {
    Err(ModelsError::NotImplemented)
}
