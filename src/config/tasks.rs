//! The `[tasks]` section: syncing the task list with a taskchampion sync server (raw form,
//! defaults and resolution into typed values).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ConfigError, Secret};

/// `[tasks]`: Taskwarrior-compatible tasks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTasks {
    /// Base URL of a taskchampion-sync-server (`http://host:8080`); empty: no sync.
    pub sync_server_url: String,
    /// This replica's client id (a UUID shared by every replica of the same task list).
    pub sync_client_id: String,
    /// Encryption secret shared by those replicas.
    pub sync_encryption_secret: String,
}

/// Sync with a taskchampion sync server.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSyncConfig {
    /// Server base URL.
    pub url: String,
    /// Client id.
    pub client_id: Uuid,
    /// Encryption secret.
    pub encryption_secret: Secret,
}

/// Resolved `[tasks]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TasksConfig {
    /// Sync settings, when a server URL is configured.
    pub sync: Option<TaskSyncConfig>,
}

fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Check and type `[tasks]`.
pub fn resolve_tasks(raw: RawTasks) -> Result<TasksConfig, ConfigError> {
    let url = raw.sync_server_url.trim();
    if url.is_empty() {
        return Ok(TasksConfig { sync: None });
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(key_err(
            "tasks.sync_server_url",
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    let client_id = Uuid::parse_str(raw.sync_client_id.trim()).map_err(|_| {
        key_err(
            "tasks.sync_client_id",
            "must be a UUID when tasks.sync_server_url is set (the same one on every replica)",
        )
    })?;
    if raw.sync_encryption_secret.is_empty() {
        return Err(key_err(
            "tasks.sync_encryption_secret",
            "must be set when tasks.sync_server_url is set",
        ));
    }
    Ok(TasksConfig {
        sync: Some(TaskSyncConfig {
            url: url.trim_end_matches('/').to_owned(),
            client_id,
            encryption_secret: Secret::new(raw.sync_encryption_secret),
        }),
    })
}
