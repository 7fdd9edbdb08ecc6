//! The `[twilio]` and `[vonage]` sections: cloud telephony channels (SMS, MMS, voice calls).
//!
//! Both providers call webhooks on the box, which usually sits behind NAT: `public_url` is
//! the address they reach it at (a tunnel or reverse proxy), and signatures cover it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};
use crate::domain::PhoneNumber;

/// `[twilio]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTwilio {
    /// Serve the `/twilio/...` webhooks and deliver through Twilio.
    pub enabled: bool,
    /// Account SID (`AC` + 32 hex digits).
    pub account_sid: String,
    /// Auth token: signs webhooks, authenticates REST calls.
    pub auth_token: String,
    /// The Twilio number replies, reminders and calls come from (E.164).
    pub phone_number: String,
    /// The public base URL Twilio calls (`https://assistant.example.com`); signatures cover
    /// it plus the route path.
    pub public_url: String,
    /// REST API base URL.
    pub api_base: String,
    /// Answer an SMS inside the webhook response when the reply is ready within this many ms;
    /// later replies go through the REST API.
    pub reply_budget_ms: u64,
    /// Calls: `stream` (real-time conversation over Media Streams) or `gather` (Twilio's own
    /// speech recognition, turn by turn).
    pub voice_mode: String,
    /// What a caller hears first.
    pub greeting: String,
    /// Largest MMS media file accepted, in bytes.
    pub media_max_bytes: u64,
    /// MMS media types accepted (others are noted, not fetched).
    pub media_types: Vec<String>,
    /// Record calls (Twilio keeps the recording).
    pub record_calls: bool,
    /// Timeout of one REST or media request, in ms.
    pub request_timeout_ms: u64,
}

impl Default for RawTwilio {
    fn default() -> Self {
        Self {
            enabled: false,
            account_sid: String::new(),
            auth_token: String::new(),
            phone_number: String::new(),
            public_url: String::new(),
            api_base: "https://api.twilio.com".into(),
            reply_budget_ms: 3_000,
            voice_mode: "stream".into(),
            greeting: "Hello, this is your home assistant. How can I help?".into(),
            media_max_bytes: 5_000_000,
            media_types: vec![
                "image/jpeg".into(),
                "image/png".into(),
                "image/gif".into(),
                "image/webp".into(),
            ],
            record_calls: false,
            request_timeout_ms: 10_000,
        }
    }
}

/// How a call is conversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceMode {
    /// Real-time audio over a WebSocket.
    Stream,
    /// The provider's own speech recognition, one turn per webhook.
    Gather,
}

/// Resolved `[twilio]`.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// Enabled.
    pub enabled: bool,
    /// Account SID.
    pub account_sid: String,
    /// Auth token.
    pub auth_token: Secret,
    /// Our number.
    pub phone_number: Option<PhoneNumber>,
    /// Public base URL, without a trailing slash.
    pub public_url: String,
    /// REST base, without a trailing slash.
    pub api_base: String,
    /// Inline reply budget.
    pub reply_budget: Duration,
    /// Call mode.
    pub voice_mode: VoiceMode,
    /// Greeting.
    pub greeting: String,
    /// Largest media file.
    pub media_max_bytes: u64,
    /// Accepted media types (lowercase).
    pub media_types: Vec<String>,
    /// Record calls.
    pub record_calls: bool,
    /// Request timeout.
    pub request_timeout: Duration,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        let raw = RawTwilio::default();
        Self {
            enabled: false,
            account_sid: String::new(),
            auth_token: Secret::new(""),
            phone_number: None,
            public_url: String::new(),
            api_base: raw.api_base,
            reply_budget: Duration::from_millis(raw.reply_budget_ms),
            voice_mode: VoiceMode::Stream,
            greeting: raw.greeting,
            media_max_bytes: raw.media_max_bytes,
            media_types: raw.media_types,
            record_calls: false,
            request_timeout: Duration::from_millis(raw.request_timeout_ms),
        }
    }
}

/// `[vonage]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawVonage {
    /// Serve the `/vonage/...` webhooks and deliver through Vonage.
    pub enabled: bool,
    /// API key (SMS API, and the `api_key` claim of signed webhooks).
    pub api_key: String,
    /// API secret (SMS API).
    pub api_secret: String,
    /// Signature secret: signed webhooks carry a JWT (HS256) made with it.
    pub signature_secret: String,
    /// The Voice API application (placing reminder calls); empty: reminders for calls go out
    /// as SMS.
    pub application_id: String,
    /// The application's private key (PKCS#8 PEM) that signs Voice API requests (RS256).
    pub private_key_path: String,
    /// The Vonage number replies come from (E.164).
    pub phone_number: String,
    /// The public base URL Vonage calls.
    pub public_url: String,
    /// Messages API base URL.
    pub api_base: String,
    /// Calls: `stream` (WebSocket audio) or `gather` (Vonage's `input` speech recognition).
    pub voice_mode: String,
    /// What a caller hears first.
    pub greeting: String,
    /// Oldest accepted webhook JWT (`iat`), in seconds.
    pub jwt_max_age_secs: u64,
    /// Timeout of one REST request, in ms.
    pub request_timeout_ms: u64,
}

impl Default for RawVonage {
    fn default() -> Self {
        Self {
            enabled: false,
            api_key: String::new(),
            api_secret: String::new(),
            signature_secret: String::new(),
            application_id: String::new(),
            private_key_path: String::new(),
            phone_number: String::new(),
            public_url: String::new(),
            api_base: "https://api.nexmo.com".into(),
            voice_mode: "stream".into(),
            greeting: "Hello, this is your home assistant. How can I help?".into(),
            jwt_max_age_secs: 300,
            request_timeout_ms: 10_000,
        }
    }
}

/// Resolved `[vonage]`.
#[derive(Debug, Clone)]
pub struct VonageConfig {
    /// Enabled.
    pub enabled: bool,
    /// API key.
    pub api_key: String,
    /// API secret.
    pub api_secret: Secret,
    /// Signature secret.
    pub signature_secret: Secret,
    /// Voice API application, with the path of its private key.
    pub application: Option<(String, std::path::PathBuf)>,
    /// Our number.
    pub phone_number: Option<PhoneNumber>,
    /// Public base URL, without a trailing slash.
    pub public_url: String,
    /// SMS API base, without a trailing slash.
    pub api_base: String,
    /// Call mode.
    pub voice_mode: VoiceMode,
    /// Greeting.
    pub greeting: String,
    /// JWT max age.
    pub jwt_max_age: Duration,
    /// Request timeout.
    pub request_timeout: Duration,
}

impl Default for VonageConfig {
    fn default() -> Self {
        let raw = RawVonage::default();
        Self {
            enabled: false,
            api_key: String::new(),
            api_secret: Secret::new(""),
            signature_secret: Secret::new(""),
            application: None,
            phone_number: None,
            public_url: String::new(),
            api_base: raw.api_base,
            voice_mode: VoiceMode::Stream,
            greeting: raw.greeting,
            jwt_max_age: Duration::from_secs(raw.jwt_max_age_secs),
            request_timeout: Duration::from_millis(raw.request_timeout_ms),
        }
    }
}

fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

fn base_url(key: &str, raw: &str, required: bool) -> Result<String, ConfigError> {
    let url = raw.trim().trim_end_matches('/').to_owned();
    if url.is_empty() && !required {
        return Ok(url);
    }
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(r)
            if !r.is_empty() && !r.starts_with('/') && url.parse::<ureq::http::Uri>().is_ok() =>
        {
            Ok(url)
        }
        _ => Err(key_err(
            key,
            format!("expected an http:// or https:// base URL; got {url:?}"),
        )),
    }
}

fn number(key: &str, raw: &str) -> Result<Option<PhoneNumber>, ConfigError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    PhoneNumber::parse(raw)
        .map(Some)
        .map_err(|e| key_err(key, format!("{e} (expected E.164, like +15551234567)")))
}

fn mode(key: &str, raw: &str, gather_name: &str) -> Result<VoiceMode, ConfigError> {
    match raw.trim() {
        "stream" => Ok(VoiceMode::Stream),
        m if m == gather_name || m == "gather" => Ok(VoiceMode::Gather),
        m => Err(key_err(
            key,
            format!("expected \"stream\" or \"{gather_name}\"; got {m:?}"),
        )),
    }
}

fn ms(key: &str, v: u64, lo: u64, hi: u64) -> Result<Duration, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(Duration::from_millis(v))
    } else {
        Err(key_err(key, format!("{v} is outside {lo}..={hi}")))
    }
}

/// Check and type `[twilio]`.
pub fn resolve_twilio(raw: RawTwilio) -> Result<TwilioConfig, ConfigError> {
    let sid = raw.account_sid.trim().to_owned();
    if raw.enabled {
        let ok = sid.len() == 34
            && sid.starts_with("AC")
            && sid[2..].chars().all(|c| c.is_ascii_hexdigit());
        if !ok {
            return Err(key_err(
                "twilio.account_sid",
                format!(
                    "expected AC followed by 32 hex digits when twilio.enabled = true; got {sid:?}"
                ),
            ));
        }
        if raw.auth_token.trim().is_empty() {
            return Err(key_err(
                "twilio.auth_token",
                "must be set when twilio.enabled = true (every webhook is checked with it)",
            ));
        }
    }
    let media_types: Vec<String> = raw
        .media_types
        .iter()
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    if let Some(bad) = media_types.iter().find(|t| !t.contains('/')) {
        return Err(key_err(
            "twilio.media_types",
            format!("{bad:?} is not a media type like image/jpeg"),
        ));
    }
    if !(1_000..=50_000_000).contains(&raw.media_max_bytes) {
        return Err(key_err(
            "twilio.media_max_bytes",
            format!("{} is outside 1000..=50000000", raw.media_max_bytes),
        ));
    }
    Ok(TwilioConfig {
        enabled: raw.enabled,
        account_sid: sid,
        auth_token: Secret::new(raw.auth_token.trim()),
        phone_number: number("twilio.phone_number", &raw.phone_number)?,
        public_url: base_url("twilio.public_url", &raw.public_url, raw.enabled)?,
        api_base: base_url("twilio.api_base", &raw.api_base, true)?,
        reply_budget: ms("twilio.reply_budget_ms", raw.reply_budget_ms, 0, 12_000)?,
        voice_mode: mode("twilio.voice_mode", &raw.voice_mode, "gather")?,
        greeting: raw.greeting.trim().to_owned(),
        media_max_bytes: raw.media_max_bytes,
        media_types,
        record_calls: raw.record_calls,
        request_timeout: ms(
            "twilio.request_timeout_ms",
            raw.request_timeout_ms,
            100,
            120_000,
        )?,
    })
}

/// Check and type `[vonage]`.
pub fn resolve_vonage(raw: RawVonage) -> Result<VonageConfig, ConfigError> {
    if raw.enabled && raw.signature_secret.trim().is_empty() {
        return Err(key_err(
            "vonage.signature_secret",
            "must be set when vonage.enabled = true (every webhook's JWT is checked with it)",
        ));
    }
    if !(10..=86_400).contains(&raw.jwt_max_age_secs) {
        return Err(key_err(
            "vonage.jwt_max_age_secs",
            format!("{} is outside 10..=86400", raw.jwt_max_age_secs),
        ));
    }
    let application = match (raw.application_id.trim(), raw.private_key_path.trim()) {
        ("", "") => None,
        ("", _) => {
            return Err(key_err(
                "vonage.application_id",
                "must be set with vonage.private_key_path",
            ))
        }
        (_, "") => {
            return Err(key_err(
                "vonage.private_key_path",
                "must be set with vonage.application_id (the application's private key, PEM)",
            ))
        }
        (id, path) => Some((id.to_owned(), std::path::PathBuf::from(path))),
    };
    Ok(VonageConfig {
        enabled: raw.enabled,
        application,
        api_key: raw.api_key.trim().to_owned(),
        api_secret: Secret::new(raw.api_secret.trim()),
        signature_secret: Secret::new(raw.signature_secret.trim()),
        phone_number: number("vonage.phone_number", &raw.phone_number)?,
        public_url: base_url("vonage.public_url", &raw.public_url, raw.enabled)?,
        api_base: base_url("vonage.api_base", &raw.api_base, true)?,
        voice_mode: mode("vonage.voice_mode", &raw.voice_mode, "input")?,
        greeting: raw.greeting.trim().to_owned(),
        jwt_max_age: Duration::from_secs(raw.jwt_max_age_secs),
        request_timeout: ms(
            "vonage.request_timeout_ms",
            raw.request_timeout_ms,
            100,
            120_000,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> RawTwilio {
        RawTwilio {
            enabled: true,
            account_sid: format!("AC{}", "0123456789abcdef".repeat(2)),
            auth_token: "token".into(),
            public_url: "https://assistant.example.com/".into(),
            ..RawTwilio::default()
        }
    }

    #[test]
    fn twilio_needs_credentials_and_a_public_url_when_enabled() {
        assert!(resolve_twilio(RawTwilio::default()).is_ok());
        let c = resolve_twilio(enabled());
        assert!(matches!(&c, Ok(c) if c.public_url == "https://assistant.example.com"));
        for (raw, key) in [
            (
                RawTwilio {
                    account_sid: "AC12".into(),
                    ..enabled()
                },
                "twilio.account_sid",
            ),
            (
                RawTwilio {
                    auth_token: " ".into(),
                    ..enabled()
                },
                "twilio.auth_token",
            ),
            (
                RawTwilio {
                    public_url: "assistant.example.com".into(),
                    ..enabled()
                },
                "twilio.public_url",
            ),
            (
                RawTwilio {
                    voice_mode: "sip".into(),
                    ..enabled()
                },
                "twilio.voice_mode",
            ),
            (
                RawTwilio {
                    phone_number: "555".into(),
                    ..enabled()
                },
                "twilio.phone_number",
            ),
        ] {
            match resolve_twilio(raw) {
                Err(ConfigError::Key { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn vonage_needs_the_signature_secret_when_enabled() {
        let raw = RawVonage {
            enabled: true,
            public_url: "https://a.example".into(),
            ..RawVonage::default()
        };
        match resolve_vonage(raw.clone()) {
            Err(ConfigError::Key { key, .. }) => assert_eq!(key, "vonage.signature_secret"),
            other => panic!("expected an error, got {other:?}"),
        }
        let ok = resolve_vonage(RawVonage {
            signature_secret: "s".into(),
            voice_mode: "input".into(),
            ..raw
        });
        assert!(matches!(ok, Ok(c) if c.voice_mode == VoiceMode::Gather));
    }
}
