//! `[contacts]`: the default region national phone numbers are read in.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::home::contacts::Region;

/// `[contacts]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawContacts {
    /// ISO 3166-1 alpha-2 region for numbers written without `+` ("US", "GB", "DE").
    pub default_region: String,
}

impl Default for RawContacts {
    fn default() -> Self {
        Self {
            default_region: "US".into(),
        }
    }
}

/// Resolved `[contacts]`.
#[derive(Debug, Clone)]
pub struct ContactsConfig {
    /// Default region.
    pub default_region: Region,
}

/// Resolve `[contacts]`.
pub fn resolve_contacts(raw: RawContacts) -> Result<ContactsConfig, ConfigError> {
    Ok(ContactsConfig {
        default_region: Region::parse(&raw.default_region).map_err(|e| ConfigError::Key {
            key: "contacts.default_region".into(),
            message: e.to_string(),
        })?,
    })
}
