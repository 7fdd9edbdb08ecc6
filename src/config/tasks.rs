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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_needs_a_url_a_uuid_client_id_and_a_secret() {
        assert_eq!(
            resolve_tasks(RawTasks::default()).ok(),
            Some(TasksConfig::default())
        );
        let raw = |url: &str, id: &str, secret: &str| RawTasks {
            sync_server_url: url.into(),
            sync_client_id: id.into(),
            sync_encryption_secret: secret.into(),
        };
        let id = "9f3c2f9e-6a1b-4b7e-9d55-2f1f0c6f7a10";
        for (r, key) in [
            (raw("ftp://x", id, "s"), "tasks.sync_server_url"),
            (raw("http://x", "not-a-uuid", "s"), "tasks.sync_client_id"),
            (raw("http://x", id, ""), "tasks.sync_encryption_secret"),
        ] {
            let e = resolve_tasks(r)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(key), "{e}");
        }
        let ok = resolve_tasks(raw("http://sync.lan:8080/", id, "s3cret")).ok();
        let sync = ok.and_then(|c| c.sync);
        assert_eq!(
            sync.as_ref().map(|s| s.url.as_str()),
            Some("http://sync.lan:8080")
        );
        assert_eq!(
            sync.map(|s| format!("{:?}", s.encryption_secret))
                .as_deref(),
            Some("MASKED")
        );
    }
}
