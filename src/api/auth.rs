//! API authentication: one bearer token, from the configuration or generated at first start
//! into `<data_dir>/api-token` (mode 0600). `/healthz` and `/readyz` are open; everything else
//! needs `Authorization: Bearer <token>` (WebSocket clients, which cannot set headers in a
//! browser, may pass `?access_token=`). Tokens are compared in constant time.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::ApiState;
use crate::config::Secret;

/// Paths served without a token.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];
/// Paths that check their own read-only token (`?token=`) instead of the API token.
pub const FEED_PATHS: &[&str] = &["/calendar.ics"];

/// Where the generated token lives.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("api-token")
}

/// Why the token could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("API token file {path}: {source}")]
pub struct TokenError {
    /// The file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// The token to use: the configured one, else the one in `<data_dir>/api-token`, else a new
/// random one written there with mode 0600.
pub fn ensure_token(data_dir: &Path, configured: Option<&Secret>) -> Result<Secret, TokenError> {
    ensure_token_file(&token_path(data_dir), configured)
}

/// Where the generated calendar feed token lives.
pub fn feed_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("calendar-feed-token")
}

/// The configured token, else the one stored in `path`, else a new random one written there
/// with mode 0600.
pub fn ensure_token_file(path: &Path, configured: Option<&Secret>) -> Result<Secret, TokenError> {
    if let Some(t) = configured {
        return Ok(t.clone());
    }
    let path = path.to_path_buf();
    let err = |source| TokenError {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(Secret::new(s.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(token.as_bytes()).map_err(err)?;
    f.write_all(b"\n").map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    tracing::info!(path = %path.display(), "generated a new token");
    Ok(Secret::new(token))
}

fn presented_token(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_ws {
        let query = req.uri().query()?;
        return url_query_value(query, "access_token");
    }
    None
}

fn url_query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

/// Channel webhooks: each checks its provider's signature instead of the token.
pub const SIGNED_PREFIXES: &[&str] = &["/twilio/", "/vonage/"];

/// Middleware: refuse requests without the right token (except on open, feed and
/// signed-webhook paths).
pub async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if OPEN_PATHS.contains(&path)
        || FEED_PATHS.contains(&path)
        || SIGNED_PREFIXES.iter().any(|p| path.starts_with(p))
    {
        return next.run(req).await;
    }
    match presented_token(&req) {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing API token: send `Authorization: Bearer <token>` (the token is in the config or <data_dir>/api-token)",
        )
        .into_response(),
        Some(t) if bool::from(t.as_bytes().ct_eq(state.token.expose().as_bytes())) => {
            next.run(req).await
        }
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "invalid API token").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_generated_token_is_private_and_stable() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let a = ensure_token(dir.path(), None)?;
        let b = ensure_token(dir.path(), None)?;
        assert_eq!(a, b);
        assert!(a.expose().len() >= 40);
        let mode = std::fs::metadata(token_path(dir.path()))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let configured = Secret::new("configured-token-1234");
        assert_eq!(ensure_token(dir.path(), Some(&configured))?, configured);
        Ok(())
    }
}
