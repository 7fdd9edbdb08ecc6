//! `[caldav]`: two-way sync of the calendar with a CalDAV server (raw form, defaults and
//! resolution into [`CaldavConfig`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// `[caldav]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCaldav {
    /// Sync the calendar with `url`.
    pub enabled: bool,
    /// The calendar collection's URL, or the server's (the collection is then discovered).
    pub url: String,
    /// Basic-auth user name; empty: no authentication.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
    /// Seconds between two syncs.
    pub interval_secs: u64,
    /// Longest time one HTTP request may take, in seconds.
    pub timeout_secs: u64,
}

impl Default for RawCaldav {
    fn default() -> Self {
        Self {
            enabled: false,
            url: String::new(),
            username: String::new(),
            password: String::new(),
            interval_secs: 900,
            timeout_secs: 30,
        }
    }
}

/// The resolved `[caldav]`.
#[derive(Debug, Clone)]
pub struct CaldavConfig {
    /// Whether the sync runs.
    pub enabled: bool,
    /// Collection or server URL (`http://` or `https://`).
    pub url: String,
    /// Basic-auth user name; empty: none.
    pub username: String,
    /// Basic-auth password.
    pub password: Option<Secret>,
    /// Time between two syncs.
    pub interval: Duration,
    /// Longest time one request may take.
    pub timeout: Duration,
}

fn key_err(key: &str, message: String) -> ConfigError {
    ConfigError::Key {
        key: key.to_owned(),
        message,
    }
}

/// Resolve `[caldav]`.
pub fn resolve_caldav(raw: RawCaldav) -> Result<CaldavConfig, ConfigError> {
    let url = raw.url.trim().to_owned();
    if raw.enabled {
        let lower = url.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"));
        match rest {
            Some(r) if !r.is_empty() && !r.starts_with('/') && url.parse::<ureq::http::Uri>().is_ok() => {}
            _ => {
                return Err(key_err(
                    "caldav.url",
                    format!("expected an http:// or https:// URL of the calendar (or of the server) when caldav.enabled = true; got {url:?}"),
                ))
            }
        }
    }
    if !(10..=86_400).contains(&raw.interval_secs) {
        return Err(key_err(
            "caldav.interval_secs",
            format!(
                "expected a number from 10 to 86400; got {}",
                raw.interval_secs
            ),
        ));
    }
    if !(1..=600).contains(&raw.timeout_secs) {
        return Err(key_err(
            "caldav.timeout_secs",
            format!("expected a number from 1 to 600; got {}", raw.timeout_secs),
        ));
    }
    if raw.username.contains(':') {
        return Err(key_err(
            "caldav.username",
            "must not contain ':' (HTTP basic auth)".into(),
        ));
    }
    Ok(CaldavConfig {
        enabled: raw.enabled,
        url,
        username: raw.username.trim().to_owned(),
        password: (!raw.password.is_empty()).then(|| Secret::new(raw.password)),
        interval: Duration::from_secs(raw.interval_secs),
        timeout: Duration::from_secs(raw.timeout_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_key() {
        let cases: Vec<(RawCaldav, &str)> = vec![
            (
                RawCaldav {
                    enabled: true,
                    ..RawCaldav::default()
                },
                "caldav.url",
            ),
            (
                RawCaldav {
                    enabled: true,
                    url: "ftp://x/".into(),
                    ..RawCaldav::default()
                },
                "caldav.url",
            ),
            (
                RawCaldav {
                    interval_secs: 1,
                    ..RawCaldav::default()
                },
                "caldav.interval_secs",
            ),
            (
                RawCaldav {
                    timeout_secs: 0,
                    ..RawCaldav::default()
                },
                "caldav.timeout_secs",
            ),
            (
                RawCaldav {
                    username: "a:b".into(),
                    ..RawCaldav::default()
                },
                "caldav.username",
            ),
        ];
        for (raw, key) in cases {
            let msg = resolve_caldav(raw)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
        }
    }

    #[test]
    fn a_good_section_resolves_and_the_password_is_secret() {
        let c = match resolve_caldav(RawCaldav {
            enabled: true,
            url: " https://dav.example.org/alice/calendar/ ".into(),
            username: "alice".into(),
            password: "pw".into(),
            ..RawCaldav::default()
        }) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.url, "https://dav.example.org/alice/calendar/");
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("pw"));
        assert!(!format!("{c:?}").contains("pw\""));
        assert_eq!(c.interval, Duration::from_secs(900));
    }
}
