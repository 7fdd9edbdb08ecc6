//! Vonage signed webhooks: verification of the `Authorization: Bearer <JWT>` header.
//!
//! Vonage signs webhooks with a JWT (HS256, keyed by the account's signature secret) whose
//! claims carry `iat`, `jti`, `iss`, `api_key`, `application_id`, optionally `exp`/`nbf`, and
//! `payload_hash`: the hex SHA-256 of the raw request body, present when there is a body.
//!
//! [`verify`] accepts only `alg: HS256` (never `none` or any other algorithm), checks the
//! signature in constant time, then the time claims with [`LEEWAY_SECS`] of clock skew and a
//! caller-chosen maximum age, and finally binds the token to the body through
//! `payload_hash`. [`bearer`] extracts the token from the header value and [`sign`] produces
//! tokens (for tests and outbound use).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{alphabet, Engine as _};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Clock skew tolerated on `exp`, `nbf` and a future `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// base64url that accepts segments with or without `=` padding.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The JOSE header [`sign`] writes (the same bytes PyJWT writes for HS256).
const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The claims of a Vonage signed-webhook JWT that matter for verification; other claims
/// (such as `iss`) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// Issued-at time (Unix seconds). Required by [`verify`].
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    /// Expiry time (Unix seconds), if any.
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    /// Not-before time (Unix seconds), if any.
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    /// The Vonage account API key the webhook belongs to.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The Vonage application the webhook belongs to.
    #[serde(default)]
    pub application_id: Option<String>,
    /// Hex SHA-256 of the raw request body.
    #[serde(default)]
    pub payload_hash: Option<String>,
    /// Unique token id (usable to reject replays).
    #[serde(default)]
    pub jti: Option<String>,
}

/// Why a Vonage webhook JWT was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// The token is not a well-formed JWT; the text says which part is wrong.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The header names an algorithm other than HS256 (the value is the header's `alg`).
    #[error("JWT header alg {0} is not accepted; only HS256 is")]
    Algorithm(String),
    /// The HS256 signature does not verify with the signature secret.
    #[error("JWT signature does not verify with the configured signature secret")]
    Signature,
    /// `exp` has passed, or `iat` is older than the allowed maximum age.
    #[error("JWT has expired (exp has passed or iat is older than the maximum age)")]
    Expired,
    /// `nbf` or `iat` lies in the future beyond the allowed clock skew.
    #[error("JWT is not yet valid (nbf or iat is in the future)")]
    NotYetValid,
    /// `payload_hash` is missing for a non-empty body or is not the body's SHA-256.
    #[error("JWT payload_hash is missing or does not match the SHA-256 of the request body")]
    PayloadHash,
}

/// Extracts the token from an `Authorization` header value of the form `Bearer <token>`.
///
/// The scheme is matched case-insensitively and surrounding whitespace is ignored; `None`
/// for another scheme, an empty token or a token containing whitespace.
pub fn bearer(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(char::is_whitespace)
    {
        return None;
    }
    Some(token)
}

/// Verifies a Vonage signed-webhook JWT and returns its claims.
///
/// `token` is the JWT (see [`bearer`]), `secret` the account's signature secret, `body` the
/// raw request body, `now_unix` the current Unix time and `max_age_secs` how old `iat` may
/// be. Checks, in order:
///
/// 1. three base64url segments (padding optional), a JSON object header with
///    `"alg": "HS256"` and no `crit`;
/// 2. the HMAC-SHA256 of `header.payload` (as transmitted) equals the signature, compared in
///    constant time (an empty `secret` never verifies);
/// 3. the payload is a JSON object with an `iat` claim;
/// 4. `exp` is not [`LEEWAY_SECS`] or more in the past, `nbf` and `iat` are not more than
///    [`LEEWAY_SECS`] in the future, and `iat` is at most `max_age_secs` old;
/// 5. `payload_hash`, when present, equals the hex SHA-256 of `body` (case-insensitively);
///    it must be present when `body` is not empty.
///
/// # Errors
///
/// The [`JwtError`] of the first check that fails.
pub fn verify(
    token: &str,
    secret: &[u8],
    body: &[u8],
    now_unix: i64,
    max_age_secs: i64,
) -> Result<Claims, JwtError> {
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(malformed("expected three dot-separated segments"));
    };

    let header = decode_segment(header_b64, "header")?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| JwtError::Malformed(format!("header is not JSON: {e}")))?;
    let header = header
        .as_object()
        .ok_or_else(|| malformed("header is not a JSON object"))?;
    match header.get("alg") {
        Some(serde_json::Value::String(alg)) if alg == "HS256" => {}
        Some(serde_json::Value::String(alg)) => return Err(JwtError::Algorithm(alg.clone())),
        Some(other) => return Err(JwtError::Algorithm(other.to_string())),
        None => return Err(JwtError::Algorithm("(missing)".to_string())),
    }
    if header.contains_key("crit") {
        return Err(malformed("header has unsupported crit extensions"));
    }

    let signature = decode_segment(signature_b64, "signature")?;
    if secret.is_empty() {
        return Err(JwtError::Signature);
    }
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let expected = hmac_sha256(secret, &token.as_bytes()[..signing_input_len]);
    if !bool::from(expected.as_slice().ct_eq(&signature)) {
        return Err(JwtError::Signature);
    }

    let payload = decode_segment(payload_b64, "payload")?;
    // Through a map first: a derived struct would also accept a JSON array.
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&payload)
        .map_err(|e| JwtError::Malformed(format!("payload is not a JSON object: {e}")))?;
    let claims: Claims = serde_json::from_value(serde_json::Value::Object(claims))
        .map_err(|e| JwtError::Malformed(format!("payload has an invalid claim: {e}")))?;
    let iat = claims
        .iat
        .ok_or_else(|| malformed("payload has no iat claim"))?;

    if let Some(exp) = claims.exp {
        if now_unix >= exp.saturating_add(LEEWAY_SECS) {
            return Err(JwtError::Expired);
        }
    }
    if let Some(nbf) = claims.nbf {
        if nbf > now_unix.saturating_add(LEEWAY_SECS) {
            return Err(JwtError::NotYetValid);
        }
    }
    if iat > now_unix.saturating_add(LEEWAY_SECS) {
        return Err(JwtError::NotYetValid);
    }
    if now_unix.saturating_sub(iat) > max_age_secs {
        return Err(JwtError::Expired);
    }

    let body_hash = hex::encode(Sha256::digest(body));
    match &claims.payload_hash {
        Some(claimed) => {
            let claimed = claimed.to_ascii_lowercase();
            if !bool::from(claimed.as_bytes().ct_eq(body_hash.as_bytes())) {
                return Err(JwtError::PayloadHash);
            }
        }
        None if !body.is_empty() => return Err(JwtError::PayloadHash),
        None => {}
    }

    Ok(claims)
}

/// Signs `claims_json` as an HS256 JWT with `secret`.
///
/// The header is `{"alg":"HS256","typ":"JWT"}` and the payload is the compact JSON of
/// `claims_json`; segments are base64url without padding. With the same key order this is
/// byte-for-byte what PyJWT's `jwt.encode(claims, secret, algorithm="HS256")` produces.
pub fn sign(claims_json: &serde_json::Value, secret: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(HS256_HEADER);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims_json.to_string()));
    let signature = hmac_sha256(secret, token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// HMAC-SHA256 of `message` keyed by `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(e) => unreachable!("HMAC accepts keys of any length: {e}"),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Decodes one base64url token segment (padding optional).
fn decode_segment(segment: &str, what: &str) -> Result<Vec<u8>, JwtError> {
    BASE64URL_ANY_PADDING
        .decode(segment)
        .map_err(|e| JwtError::Malformed(format!("{what} is not valid base64url: {e}")))
}

/// A [`JwtError::Malformed`] with a fixed message.
fn malformed(message: &str) -> JwtError {
    JwtError::Malformed(message.to_string())
}

/// A JWT NumericDate: integer seconds, or fractional seconds rounded down.
fn numeric_date<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(seconds) = number.as_i64() {
        return Ok(Some(seconds));
    }
    match number.as_f64() {
        // `as` saturates; the range check keeps the value exact.
        Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(Some(f.floor() as i64)),
        _ => Err(serde::de::Error::custom(format!(
            "time claim {number} is not a representable Unix time"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Known-answer tokens generated with PyJWT 2.15.1 (Python 3.11.7):
    //
    // python -c 'import jwt, hashlib; body = b"..."  # BODY below
    //   print(jwt.encode({"iat": 1700000000, "jti": "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5",
    //     "iss": "Vonage", "payload_hash": hashlib.sha256(body).hexdigest(),
    //     "api_key": "a1b2c3d4", "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"},
    //     "secret", algorithm="HS256"))'
    const PYJWT_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsImp0aSI6ImM1YmE4ZjI0LTFhMTQtNGMxMC1iZmRmLTNmYmU4Y2U1MTFiNSIsImlzcyI6IlZvbmFnZSIsInBheWxvYWRfaGFzaCI6ImZlZGM4NGJhMWJmYzAyZDYwYWI2ODcyOGEwN2NhZDcyZDY3ZjM2OTUzN2ZjYTU0ODY2YzcyYTgyMzc1ODJhZTUiLCJhcGlfa2V5IjoiYTFiMmMzZDQiLCJhcHBsaWNhdGlvbl9pZCI6ImFhYWFhYWFhLWJiYmItY2NjYy1kZGRkLTAxMjM0NTY3ODlhYiJ9.qnnm8k63llvS6HSgHkwpfVk3_J1EW5e5wm1ULSLn0Xc";
    const BODY: &[u8] = br#"{"msisdn":"447700900001","to":"447700900000","text":"Hello world","type":"text","message-timestamp":"2020-01-01 12:00:00"}"#;
    const BODY_HASH: &str = "fedc84ba1bfc02d60ab68728a07cad72d67f369537fca54866c72a8237582ae5";
    // jwt.encode({"iat": 1700000000, "nbf": 1699999990, "exp": 1700000300, "jti": "x",
    //   "api_key": "k"}, "secret", algorithm="HS256")
    const PYJWT_EXP_NBF: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsIm5iZiI6MTY5OTk5OTk5MCwiZXhwIjoxNzAwMDAwMzAwLCJqdGkiOiJ4IiwiYXBpX2tleSI6ImsifQ.NlV2G4M3EuwGPen1ZoLCtPnfuTKRYE7wbkY3DTIZSFY";
    // jwt.encode({"api_key": "a1b2c3d4", "iat": 1700000000, "jti": "x"}, "secret",
    //   algorithm="HS256")
    const PYJWT_SMALL: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhcGlfa2V5IjoiYTFiMmMzZDQiLCJpYXQiOjE3MDAwMDAwMDAsImp0aSI6IngifQ.Ax4K5-HVl1DvqbLeCtbwAhcD6ZdPNKmbl0tMi7kCjWw";

    const SECRET: &[u8] = b"secret";
    const IAT: i64 = 1_700_000_000;

    fn segments(token: &str) -> Vec<String> {
        token.split('.').map(str::to_string).collect()
    }

    /// A token with the given raw header and payload JSON, signed with `secret`.
    fn raw_token(header: &str, payload: &str, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(secret, input.as_bytes()));
        format!("{input}.{sig}")
    }

    #[test]
    fn accepts_pyjwt_token() {
        assert_eq!(hex::encode(Sha256::digest(BODY)), BODY_HASH);
        let claims = verify(PYJWT_TOKEN, SECRET, BODY, IAT + 10, 300);
        assert_eq!(
            claims,
            Ok(Claims {
                iat: Some(IAT),
                exp: None,
                nbf: None,
                api_key: Some("a1b2c3d4".to_string()),
                application_id: Some("aaaaaaaa-bbbb-cccc-dddd-0123456789ab".to_string()),
                payload_hash: Some(BODY_HASH.to_string()),
                jti: Some("c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5".to_string()),
            })
        );
    }

    #[test]
    fn sign_matches_pyjwt() {
        let claims = json!({"api_key": "a1b2c3d4", "iat": 1_700_000_000, "jti": "x"});
        assert_eq!(sign(&claims, SECRET), PYJWT_SMALL);
        let round = verify(
            &sign(&claims, b"another secret"),
            b"another secret",
            b"",
            IAT,
            60,
        );
        assert_eq!(round.map(|c| c.api_key), Ok(Some("a1b2c3d4".to_string())));
    }

    #[test]
    fn exp_nbf_and_iat_windows() {
        let ok = |now| verify(PYJWT_EXP_NBF, SECRET, b"", now, 3600);
        assert!(ok(IAT).is_ok());
        // nbf = iat - 10, exp = iat + 300, 30 s leeway.
        assert!(ok(IAT - 30).is_ok());
        assert_eq!(ok(IAT - 31), Err(JwtError::NotYetValid));
        assert!(ok(IAT + 329).is_ok());
        assert_eq!(ok(IAT + 330), Err(JwtError::Expired));

        // nbf later than iat.
        let token = sign(&json!({"iat": IAT, "nbf": IAT + 100}), SECRET);
        assert!(verify(&token, SECRET, b"", IAT + 70, 300).is_ok());
        assert_eq!(
            verify(&token, SECRET, b"", IAT + 69, 300),
            Err(JwtError::NotYetValid)
        );

        // iat alone: at most max_age old, at most 30 s in the future.
        let token = sign(&json!({"iat": IAT}), SECRET);
        assert!(verify(&token, SECRET, b"", IAT + 300, 300).is_ok());
        assert_eq!(
            verify(&token, SECRET, b"", IAT + 301, 300),
            Err(JwtError::Expired)
        );
        assert!(verify(&token, SECRET, b"", IAT - 30, 300).is_ok());
        assert_eq!(
            verify(&token, SECRET, b"", IAT - 31, 300),
            Err(JwtError::NotYetValid)
        );
        // The PyJWT token is too old an hour later.
        assert_eq!(
            verify(PYJWT_TOKEN, SECRET, BODY, IAT + 3601, 3600),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn expired_exp() {
        let token = sign(&json!({"iat": IAT, "exp": IAT + 60}), SECRET);
        assert_eq!(
            verify(&token, SECRET, b"", IAT + 120, 600),
            Err(JwtError::Expired)
        );
        // Extreme values do not overflow.
        let token = sign(
            &json!({"iat": IAT, "exp": i64::MAX, "nbf": i64::MIN}),
            SECRET,
        );
        assert!(verify(&token, SECRET, b"", IAT, 600).is_ok());
        assert_eq!(
            verify(&token, SECRET, b"", i64::MIN, i64::MAX),
            Err(JwtError::NotYetValid)
        );
    }

    #[test]
    fn fractional_times_accepted() {
        let token = sign(
            &json!({"iat": 1_700_000_000.75, "exp": 1_700_000_060.5}),
            SECRET,
        );
        let claims = verify(&token, SECRET, b"", IAT, 60);
        assert_eq!(
            claims.map(|c| (c.iat, c.exp)),
            Ok((Some(IAT), Some(IAT + 60)))
        );
        let token = sign(&json!({"iat": 1e300}), SECRET);
        assert!(matches!(
            verify(&token, SECRET, b"", IAT, 60),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn wrong_secret_rejected() {
        assert_eq!(
            verify(PYJWT_TOKEN, b"secret2", BODY, IAT, 300),
            Err(JwtError::Signature)
        );
        assert_eq!(
            verify(PYJWT_TOKEN, b"", BODY, IAT, 300),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn body_must_match_payload_hash() {
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify(PYJWT_TOKEN, SECRET, &tampered, IAT, 300),
            Err(JwtError::PayloadHash)
        );
        assert_eq!(
            verify(PYJWT_TOKEN, SECRET, b"", IAT, 300),
            Err(JwtError::PayloadHash)
        );
        // No payload_hash while there is a body.
        assert_eq!(
            verify(PYJWT_SMALL, SECRET, BODY, IAT, 300),
            Err(JwtError::PayloadHash)
        );
        // Uppercase hex is fine.
        let upper = sign(
            &json!({"iat": IAT, "payload_hash": BODY_HASH.to_uppercase()}),
            SECRET,
        );
        assert!(verify(&upper, SECRET, BODY, IAT, 300).is_ok());
        // A hash of the empty body is fine with an empty body.
        let empty = sign(
            &json!({"iat": IAT, "payload_hash": hex::encode(Sha256::digest(b""))}),
            SECRET,
        );
        assert!(verify(&empty, SECRET, b"", IAT, 300).is_ok());
    }

    #[test]
    fn edited_payload_segment_rejected() {
        let parts = segments(PYJWT_TOKEN);
        let payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap_or_default();
        let edited = String::from_utf8(payload)
            .unwrap_or_default()
            .replace("a1b2c3d4", "a1b2c3d5");
        assert!(edited.contains("a1b2c3d5"));
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(edited),
            parts[2]
        );
        assert_eq!(
            verify(&forged, SECRET, BODY, IAT, 300),
            Err(JwtError::Signature)
        );
        // Swapping in another valid token's signature does not help either.
        let other = segments(PYJWT_SMALL);
        let swapped = format!("{}.{}.{}", parts[0], parts[1], other[2]);
        assert_eq!(
            verify(&swapped, SECRET, BODY, IAT, 300),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn padding_tolerated() {
        // Padding on the signature segment of the PyJWT token (32 bytes -> one '=').
        let padded_sig = format!("{PYJWT_TOKEN}=");
        assert!(verify(&padded_sig, SECRET, BODY, IAT, 300).is_ok());
        // A token whose signer padded every segment (the padding is part of what it signed).
        let pad = base64::engine::general_purpose::URL_SAFE;
        let input = format!(
            "{}.{}",
            pad.encode(r#"{"alg":"HS256"}"#),
            pad.encode(r#"{"iat":1700000000,"jti":"p"}"#)
        );
        assert!(input.contains('='));
        let token = format!(
            "{input}.{}",
            pad.encode(hmac_sha256(SECRET, input.as_bytes()))
        );
        let claims = verify(&token, SECRET, b"", IAT, 300);
        assert_eq!(claims.map(|c| c.jti), Ok(Some("p".to_string())));
    }

    #[test]
    fn algorithm_none_and_others_rejected() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"iat":1700000000}"#);
        let none = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        assert_eq!(
            verify(&none, SECRET, b"", IAT, 300),
            Err(JwtError::Algorithm("none".to_string()))
        );
        for (header, alg) in [
            (r#"{"alg":"HS512"}"#, "HS512"),
            (r#"{"alg":"hs256"}"#, "hs256"),
            (r#"{"alg":"RS256"}"#, "RS256"),
            (r#"{"alg":null}"#, "null"),
            (r#"{"typ":"JWT"}"#, "(missing)"),
        ] {
            // Correctly HMAC-signed, still rejected for the algorithm.
            let token = raw_token(header, r#"{"iat":1700000000}"#, SECRET);
            assert_eq!(
                verify(&token, SECRET, b"", IAT, 300),
                Err(JwtError::Algorithm(alg.to_string())),
                "{header}"
            );
        }
        let crit = raw_token(
            r#"{"alg":"HS256","crit":["exp"]}"#,
            r#"{"iat":1700000000}"#,
            SECRET,
        );
        assert!(matches!(
            verify(&crit, SECRET, b"", IAT, 300),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_tokens_rejected() {
        let bad_header = format!("e30.{}", segments(PYJWT_SMALL)[1..].join("."));
        for token in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.e30.AAAA",
            "bm90IGpzb24.e30.AAAA",
            "WzFd.e30.AAAA",
            bad_header.as_str(),
        ] {
            let result = verify(token, SECRET, b"", IAT, 300);
            assert!(
                matches!(
                    result,
                    Err(JwtError::Malformed(_)) | Err(JwtError::Algorithm(_))
                ),
                "{token:?}: {result:?}"
            );
        }
        assert_eq!(
            verify("e30.e30.AAAA", SECRET, b"", IAT, 300),
            Err(JwtError::Algorithm("(missing)".to_string()))
        );
        // Properly signed but the claims are not an object, have wrong types or no iat.
        for payload in [
            "[1,2]",
            r#"{"iat":"yesterday"}"#,
            r#"{"iat":1700000000,"api_key":5}"#,
            r#"{"api_key":"k"}"#,
            "not json",
        ] {
            let token = raw_token(HS256_HEADER, payload, SECRET);
            let result = verify(&token, SECRET, b"", IAT, 300);
            assert!(
                matches!(result, Err(JwtError::Malformed(_))),
                "{payload}: {result:?}"
            );
        }
        // Unknown claims are ignored.
        let token = raw_token(
            HS256_HEADER,
            r#"{"iat":1700000000,"iss":"Vonage","extra":{"a":[1]}}"#,
            SECRET,
        );
        assert!(verify(&token, SECRET, b"", IAT, 300).is_ok());
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer("  bearer   abc.def.ghi  "), Some("abc.def.ghi"));
        assert_eq!(bearer("BEARER\tabc"), Some("abc"));
        assert_eq!(bearer("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer   "), None);
        assert_eq!(bearer("Bearer a b"), None);
        assert_eq!(bearer("Bearerabc"), None);
        assert_eq!(bearer(""), None);
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert!(JwtError::Malformed("header is not JSON".into())
            .to_string()
            .contains("header is not JSON"));
        assert!(JwtError::Algorithm("none".into())
            .to_string()
            .contains("none"));
        assert!(JwtError::Signature.to_string().contains("signature"));
        assert!(JwtError::Expired.to_string().contains("expired"));
        assert!(JwtError::NotYetValid.to_string().contains("not yet valid"));
        assert!(JwtError::PayloadHash.to_string().contains("payload_hash"));
    }
}
