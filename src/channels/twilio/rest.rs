//! Twilio's REST API, blocking (`ureq`; callers run it on `spawn_blocking`): send a message
//! (`Messages.json`), place a call (`Calls.json`), fetch MMS media with the account's
//! credentials. `api_base` is configurable so tests point it at a local peer that speaks the
//! same request and response formats.

use std::io::Read;

use base64::Engine;
use serde::Deserialize;

use crate::config::TwilioConfig;

/// A failed REST request.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// No answer (connection refused, timeout, TLS).
    #[error("{what}: no answer from Twilio: {message}")]
    Transport {
        /// The request.
        what: String,
        /// The error.
        message: String,
    },
    /// Twilio answered with an error.
    #[error("{what}: Twilio answered {status}: {message} (code {code})")]
    Status {
        /// The request.
        what: String,
        /// HTTP status.
        status: u16,
        /// Twilio's error code (0 when absent).
        code: i64,
        /// Twilio's message.
        message: String,
    },
}

impl RestError {
    /// Whether trying again later can succeed: no answer, 429 or a server error.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// What Twilio answers when it accepted a message or call.
#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    /// `SM…` / `MM…` / `CA…`.
    pub sid: String,
    /// `queued`, `accepted`, …
    #[serde(default)]
    pub status: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// A Twilio REST client for one account.
#[derive(Clone)]
pub struct Rest {
    agent: ureq::Agent,
    base: String,
    account: String,
    auth: String,
}

impl Rest {
    /// A client for the configured account.
    pub fn new(cfg: &TwilioConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(5)
            .timeout_global(Some(cfg.request_timeout))
            .user_agent(concat!("local-assistant/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let pair = format!("{}:{}", cfg.account_sid, cfg.auth_token.expose());
        Self {
            agent,
            base: cfg.api_base.clone(),
            account: cfg.account_sid.clone(),
            auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ),
        }
    }

    fn post(
        &self,
        what: &str,
        resource: &str,
        form: &[(&str, &str)],
    ) -> Result<Created, RestError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}",
            self.base, self.account
        );
        let transport = |message: String| RestError::Transport {
            what: what.to_owned(),
            message,
        };
        let mut resp = self
            .agent
            .post(&url)
            .header("Authorization", &self.auth)
            .header("Accept", "application/json")
            .send_form(form.iter().copied())
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| transport(format!("reading the answer: {e}")))?;
        if (200..300).contains(&status) {
            serde_json::from_str(&body).map_err(|e| RestError::Status {
                what: what.to_owned(),
                status,
                code: 0,
                message: format!(
                    "unreadable answer ({e}): {}",
                    body.chars().take(200).collect::<String>()
                ),
            })
        } else {
            let e: ErrorBody = serde_json::from_str(&body).unwrap_or_default();
            Err(RestError::Status {
                what: what.to_owned(),
                status,
                code: e.code,
                message: if e.message.is_empty() {
                    body.chars().take(200).collect()
                } else {
                    e.message
                },
            })
        }
    }

    /// Send an SMS (`Messages.json`).
    pub fn send_message(
        &self,
        from: &str,
        to: &str,
        body: &str,
        status_callback: Option<&str>,
    ) -> Result<Created, RestError> {
        let mut form = vec![("From", from), ("To", to), ("Body", body)];
        if let Some(cb) = status_callback {
            form.push(("StatusCallback", cb));
        }
        self.post("sending a message", "Messages.json", &form)
    }

    /// Place a call that runs `twiml` (`Calls.json`).
    pub fn create_call(
        &self,
        from: &str,
        to: &str,
        twiml: &str,
        status_callback: Option<&str>,
    ) -> Result<Created, RestError> {
        let mut form = vec![("From", from), ("To", to), ("Twiml", twiml)];
        if let Some(cb) = status_callback {
            form.push(("StatusCallback", cb));
        }
        self.post("placing a call", "Calls.json", &form)
    }

    /// Fetch an MMS media file with the account's credentials: at most `max_bytes`, only the
    /// `types` given. Returns the bytes and the content type.
    pub fn fetch_media(
        &self,
        url: &str,
        max_bytes: u64,
        types: &[String],
    ) -> Result<(Vec<u8>, String), crate::channels::telephony::MediaError> {
        use crate::channels::telephony::MediaError;
        let mut resp = self
            .agent
            .get(url)
            .header("Authorization", &self.auth)
            .call()
            .map_err(|e| MediaError::Fetch(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(MediaError::Fetch(format!("{url}: HTTP {status}")));
        }
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !types.iter().any(|t| t == &ctype) {
            return Err(MediaError::Type(ctype));
        }
        let mut bytes = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| MediaError::Fetch(format!("{url}: {e}")))?;
        if bytes.len() as u64 > max_bytes {
            return Err(MediaError::TooBig {
                size: bytes.len() as u64,
                limit: max_bytes,
            });
        }
        Ok((bytes, ctype))
    }
}
