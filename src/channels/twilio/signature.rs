//! Twilio webhook signature validation (`X-Twilio-Signature`).
//!
//! Twilio signs every webhook with HMAC-SHA1 keyed by the account Auth Token over the full
//! URL it requested followed by each POST parameter name and value, sorted by name, and sends
//! the base64 digest in the `X-Twilio-Signature` header. For webhooks with a JSON body Twilio
//! instead appends `bodySHA256=<hex SHA-256 of the body>` to the URL's query and signs the URL
//! alone.
//!
//! This module reproduces `twilio.request_validator.RequestValidator` from the official
//! `twilio` Python package (9.13.0) exactly, including its quirks:
//!
//! * [`validate`] never checks the URL string as given: like Python it parses it
//!   (`urllib.parse.urlparse`) and accepts a signature over either of two re-assembled forms
//!   (`geturl()`): one with the default port added (`:443` for `https`, `:80` for any other
//!   scheme) unless a port is present, and one with any port removed. So `https://h/x` and
//!   `https://h:443/x` are interchangeable; a URL with an explicit port such as `:8443` is
//!   accepted when signed with that port or without any port. The re-assembly drops an empty
//!   query (`?`), an empty fragment (`#`), an empty `;` parameter and lowercases the scheme.
//! * Parameters are sorted by name and then by value, and identical name/value pairs count
//!   once (Python iterates `sorted(set(values))`).
//! * A URL Python's parser rejects (an unparsable or out-of-range port, unbalanced or
//!   invalid `[...]` brackets) makes `RequestValidator.validate` raise; here it is a
//!   [`SignatureError::Mismatch`].
//!
//! One check of Python's parser is not reproduced: it rejects non-ASCII hosts whose NFKC
//! normalisation contains URL delimiters; those are validated like any other host here.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The HTTP header in which Twilio sends the webhook signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The query parameter that marks a JSON-body webhook and carries the body's hex SHA-256.
const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Why a Twilio webhook failed signature validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carried no (or an empty) `X-Twilio-Signature` header.
    #[error("the X-Twilio-Signature header is missing or empty")]
    Missing,
    /// The signature does not match the URL, the POST parameters and the auth token (or the
    /// URL cannot be parsed).
    #[error("the X-Twilio-Signature does not match the request URL, parameters and auth token")]
    Mismatch,
    /// The URL's `bodySHA256` query value is not the hex SHA-256 of the request body.
    #[error("the request body's SHA-256 does not match the bodySHA256 value in the webhook URL")]
    BodyHash,
}

/// Computes the `X-Twilio-Signature` value Twilio would send for `url` and the POST
/// parameters `params`, signed with `auth_token`.
///
/// The URL is used exactly as given. The parameters are sorted by name and then by value, an
/// identical name/value pair counts once, and each is appended as name followed by value;
/// the HMAC-SHA1 of the result is returned base64-encoded (standard alphabet, padded), like
/// `RequestValidator.compute_signature`.
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // `str` orders by UTF-8 bytes, which is Unicode code point order, as Python sorts.
    pairs.sort_unstable();
    pairs.dedup();

    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) {
        Ok(mac) => mac,
        Err(e) => unreachable!("HMAC accepts keys of any length: {e}"),
    };
    mac.update(url.as_bytes());
    for (name, value) in pairs {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Validates a Twilio webhook the way `RequestValidator.validate` does.
///
/// `url` is the full URL Twilio requested (scheme, host, path and query as configured in
/// Twilio), `params` the form-encoded POST parameters, `body` the raw request body and
/// `signature` the `X-Twilio-Signature` header value.
///
/// The signature is accepted over the URL with the default port added and with any port
/// removed (see the module docs). When the URL's query has a non-empty `bodySHA256` value and
/// `body` is given, the request is a JSON-body webhook: the signature covers the URL only
/// (`params` are ignored) and the lowercase hex SHA-256 of `body` must equal that value
/// exactly. Otherwise `body` is not used. All comparisons are constant-time.
///
/// # Errors
///
/// [`SignatureError::Missing`] for an empty signature, [`SignatureError::Mismatch`] when the
/// signature does not verify (or the URL is not parsable), and [`SignatureError::BodyHash`]
/// when the signature verifies but the body does not match `bodySHA256`.
pub fn validate(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    body: Option<&[u8]>,
    signature: &str,
) -> Result<(), SignatureError> {
    if signature.is_empty() {
        return Err(SignatureError::Missing);
    }
    let parsed = ParsedUrl::parse(url).ok_or(SignatureError::Mismatch)?;
    let (with_port, without_port) = parsed.port_variants().ok_or(SignatureError::Mismatch)?;

    let (params, body_ok): (&[(String, String)], Choice) =
        match (body, first_query_value(&parsed.query, BODY_SHA256_PARAM)) {
            (Some(body), Some(expected)) => {
                let actual = hex::encode(Sha256::digest(body));
                (&[], actual.as_bytes().ct_eq(expected.as_bytes()))
            }
            _ => (params, Choice::from(1)),
        };

    let signature = signature.as_bytes();
    let without_ok = compute(auth_token, &without_port, params)
        .as_bytes()
        .ct_eq(signature);
    let with_ok = compute(auth_token, &with_port, params)
        .as_bytes()
        .ct_eq(signature);

    if !bool::from(without_ok | with_ok) {
        Err(SignatureError::Mismatch)
    } else if !bool::from(body_ok) {
        Err(SignatureError::BodyHash)
    } else {
        Ok(())
    }
}

/// Schemes for which `urllib.parse` splits off `;params` (Python 3.11's `uses_params`).
const USES_PARAMS: &[&str] = &[
    "", "ftp", "hdl", "prospero", "http", "imap", "https", "shttp", "rtsp", "rtsps", "rtspu",
    "sip", "sips", "mms", "sftp", "tel",
];

/// Schemes `urllib.parse.urlunsplit` writes with `//` (Python 3.11's `uses_netloc`).
const USES_NETLOC: &[&str] = &[
    "", "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms", "https", "shttp",
    "snews", "prospero", "rtsp", "rtsps", "rtspu", "rsync", "svn", "svn+ssh", "sftp", "nfs", "git",
    "git+ssh", "ws", "wss",
];

/// A URL split the way Python's `urllib.parse.urlparse` splits it.
///
/// `path` keeps a non-empty `;params` part: `urlunparse` puts it back unchanged, and only an
/// empty one (a trailing `;` after the last `/`) is lost, which [`ParsedUrl::parse`] applies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedUrl {
    scheme: String,
    netloc: String,
    path: String,
    query: String,
    fragment: String,
}

impl ParsedUrl {
    /// Splits `url` like `urlparse`; `None` where Python raises `ValueError`.
    fn parse(url: &str) -> Option<Self> {
        // WHATWG: strip leading C0 controls and spaces, drop tabs and newlines anywhere.
        let url: String = url
            .trim_start_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
            .collect();
        let mut rest = url.as_str();

        let mut scheme = String::new();
        if let Some(i) = rest.find(':') {
            let candidate = &rest[..i];
            let starts_alpha = candidate
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic());
            if starts_alpha
                && candidate
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            {
                scheme = candidate.to_ascii_lowercase();
                rest = &rest[i + 1..];
            }
        }

        let mut netloc = String::new();
        if let Some(after) = rest.strip_prefix("//") {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            netloc = after[..end].to_string();
            rest = &after[end..];
            let open = netloc.contains('[');
            let close = netloc.contains(']');
            if open != close {
                return None; // "Invalid IPv6 URL"
            }
            if open {
                let bracketed = netloc.split_once('[').map_or("", |(_, b)| b);
                let host = bracketed.split_once(']').map_or(bracketed, |(h, _)| h);
                if !valid_bracketed_host(host) {
                    return None;
                }
            }
        }

        let mut fragment = String::new();
        if let Some((before, frag)) = rest.split_once('#') {
            fragment = frag.to_string();
            rest = before;
        }
        let mut query = String::new();
        if let Some((before, q)) = rest.split_once('?') {
            query = q.to_string();
            rest = before;
        }

        let mut path = rest.to_string();
        if USES_PARAMS.contains(&scheme.as_str()) {
            // `_splitparams`: the first ';' after the last '/' starts the params.
            let from = path.rfind('/').unwrap_or(0);
            if let Some(i) = path[from..].find(';').map(|i| i + from) {
                if i + 1 == path.len() {
                    path.truncate(i);
                }
            }
        }

        Some(Self {
            scheme,
            netloc,
            path,
            query,
            fragment,
        })
    }

    /// The `port` attribute: `Ok(None)` without a port, `Err(())` where Python raises.
    fn port(&self) -> Result<Option<u32>, ()> {
        let hostinfo = self
            .netloc
            .rsplit_once('@')
            .map_or(&*self.netloc, |(_, h)| h);
        let port = match hostinfo.split_once('[') {
            Some((_, bracketed)) => bracketed
                .split_once(']')
                .map_or("", |(_, after)| after)
                .split_once(':')
                .map_or("", |(_, p)| p),
            None => hostinfo.split_once(':').map_or("", |(_, p)| p),
        };
        if port.is_empty() {
            return Ok(None);
        }
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(()); // "Port could not be cast to integer value"
        }
        match port.parse::<u32>() {
            Ok(p) if p <= 65_535 => Ok(Some(p)),
            _ => Err(()), // "Port out of range 0-65535"
        }
    }

    /// `(add_port(uri), remove_port(uri))` as `request_validator` computes them; `None` where
    /// Python raises.
    fn port_variants(&self) -> Option<(String, String)> {
        // Python tests `uri.port` for truth, so an explicit port 0 counts as no port.
        let has_port = self.port().ok()?.is_some_and(|p| p != 0);
        if has_port {
            let mut without = self.clone();
            without.netloc = self.netloc.split(':').next().unwrap_or("").to_string();
            Some((self.geturl(), without.geturl()))
        } else {
            let default_port = if self.scheme == "https" { 443 } else { 80 };
            let mut with = self.clone();
            with.netloc = format!("{}:{default_port}", self.netloc);
            Some((with.geturl(), self.geturl()))
        }
    }

    /// `geturl()`: `urlunparse` of the components.
    fn geturl(&self) -> String {
        let mut url = String::new();
        let uses_netloc = !self.scheme.is_empty()
            && USES_NETLOC.contains(&self.scheme.as_str())
            && !self.path.starts_with("//");
        if !self.netloc.is_empty() || uses_netloc {
            url.push_str("//");
            url.push_str(&self.netloc);
            if !self.path.is_empty() && !self.path.starts_with('/') {
                url.push('/');
            }
        }
        url.push_str(&self.path);
        if !self.scheme.is_empty() {
            url.insert(0, ':');
            url.insert_str(0, &self.scheme);
        }
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(&self.query);
        }
        if !self.fragment.is_empty() {
            url.push('#');
            url.push_str(&self.fragment);
        }
        url
    }
}

/// `urllib.parse._check_bracketed_host`: an IPvFuture literal or an IPv6 address (with an
/// optional zone), never IPv4.
fn valid_bracketed_host(host: &str) -> bool {
    if let Some(future) = host.strip_prefix('v') {
        // r"\Av[a-fA-F0-9]+\..+\Z"
        return match future.split_once('.') {
            Some((version, rest)) => {
                !version.is_empty()
                    && version.bytes().all(|b| b.is_ascii_hexdigit())
                    && !rest.is_empty()
                    && !rest.contains('\n')
            }
            None => false,
        };
    }
    let address = match host.split_once('%') {
        Some((address, zone)) if !zone.is_empty() && !zone.contains('%') => address,
        Some(_) => return false,
        None => host,
    };
    address.parse::<std::net::Ipv6Addr>().is_ok()
}

/// The first non-blank value of `name` in `query`, decoded as `urllib.parse.parse_qs` does.
fn first_query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|field| {
        let (key, value) = field.split_once('=')?;
        if value.is_empty() || unquote_plus(key) != name {
            return None;
        }
        Some(unquote_plus(value))
    })
}

/// `urllib.parse.unquote_plus` with UTF-8 and replacement of invalid sequences.
fn unquote_plus(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_digit);
                let lo = bytes.get(i + 2).copied().and_then(hex_digit);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push((hi << 4) | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of an ASCII hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    //! Known-answer vectors generated with the official `twilio` Python package, version
    //! 9.13.0 (`twilio.request_validator.RequestValidator`, Python 3.11.7), e.g.
    //! `python -c 'from twilio.request_validator import RequestValidator;
    //! print(RequestValidator("12345").compute_signature(url, params))'` and
    //! `RequestValidator("12345").validate(url, params, signature)` for the accept/reject
    //! cases; repeated names used a dict subclass with Flask's `getall()`.

    use super::*;

    const TOKEN: &str = "12345";
    const DOCS_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const DOCS_SIG: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    fn docs_params() -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ])
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn check(url: &str, params: &[(String, String)], sig: &str) -> Result<(), SignatureError> {
        validate(TOKEN, url, params, None, sig)
    }

    #[test]
    fn docs_example_compute_and_validate() {
        assert_eq!(compute(TOKEN, DOCS_URL, &docs_params()), DOCS_SIG);
        assert_eq!(check(DOCS_URL, &docs_params(), DOCS_SIG), Ok(()));
        // Parameter order on the wire does not matter.
        let mut reversed = docs_params();
        reversed.reverse();
        assert_eq!(compute(TOKEN, DOCS_URL, &reversed), DOCS_SIG);
        assert_eq!(check(DOCS_URL, &reversed, DOCS_SIG), Ok(()));
    }

    #[test]
    fn no_params() {
        assert_eq!(
            compute(TOKEN, DOCS_URL, &[]),
            "zYQTYrRWXE7LtzbG4PfP7/bkkGo="
        );
        assert_eq!(check(DOCS_URL, &[], "zYQTYrRWXE7LtzbG4PfP7/bkkGo="), Ok(()));
    }

    #[test]
    fn https_default_port_both_ways() {
        let url_443 = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let sig_443 = "EpDEmp1PyjDYp77YxYU3GILBWzE=";
        assert_eq!(compute(TOKEN, url_443, &docs_params()), sig_443);
        // Signed with :443, requested without a port.
        assert_eq!(check(DOCS_URL, &docs_params(), sig_443), Ok(()));
        // Signed without a port, requested with :443.
        assert_eq!(check(url_443, &docs_params(), DOCS_SIG), Ok(()));
        assert_eq!(check(url_443, &docs_params(), sig_443), Ok(()));
    }

    #[test]
    fn http_default_port_both_ways() {
        let url = "http://mycompany.com/myapp.php?foo=1&bar=2";
        let url_80 = "http://mycompany.com:80/myapp.php?foo=1&bar=2";
        let sig = "FYMaGAU6nPbB9h2pncMl4aJ4vns=";
        let sig_80 = "boT12oXXJ0BuzO2U/6iCqFdh2Do=";
        assert_eq!(compute(TOKEN, url, &docs_params()), sig);
        assert_eq!(compute(TOKEN, url_80, &docs_params()), sig_80);
        assert_eq!(check(url_80, &docs_params(), sig), Ok(()));
        assert_eq!(check(url, &docs_params(), sig_80), Ok(()));
        // The https signature does not cover the http URL.
        assert_eq!(
            check(url, &docs_params(), DOCS_SIG),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn explicit_non_default_port() {
        let url_8443 = "https://mycompany.com:8443/myapp.php?foo=1&bar=2";
        let sig_8443 = "SffuNP6bC3hHFCUbsco6GyaPyas=";
        assert_eq!(compute(TOKEN, url_8443, &docs_params()), sig_8443);
        assert_eq!(check(url_8443, &docs_params(), sig_8443), Ok(()));
        // Python's remove_port strips any port, so the port-less signature is accepted too.
        assert_eq!(check(url_8443, &docs_params(), DOCS_SIG), Ok(()));
        // But not a signature over :443, nor the :8443 signature on the port-less URL.
        assert_eq!(
            check(url_8443, &docs_params(), "EpDEmp1PyjDYp77YxYU3GILBWzE="),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(DOCS_URL, &docs_params(), sig_8443),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn json_body_with_body_sha256() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        let url = format!("https://mycompany.com/myapp.php?bodySHA256={hash}");
        let sig = "y77kIzt2vzLz71DgmJGsen2scGs=";
        assert_eq!(compute(TOKEN, &url, &[]), sig);
        assert_eq!(validate(TOKEN, &url, &[], Some(body), sig), Ok(()));
        // Form parameters are not part of a JSON-body signature.
        assert_eq!(
            validate(TOKEN, &url, &docs_params(), Some(body), sig),
            Ok(())
        );
        // The default port applies here too.
        let url_443 = url.replace(".com/", ".com:443/");
        assert_eq!(validate(TOKEN, &url_443, &[], Some(body), sig), Ok(()));

        let tampered = br#"{"property": "valuf", "boolean": true}"#;
        assert_eq!(
            validate(TOKEN, &url, &[], Some(tampered), sig),
            Err(SignatureError::BodyHash)
        );
        assert_eq!(
            validate(TOKEN, &url, &[], Some(b""), sig),
            Err(SignatureError::BodyHash)
        );
        // Python compares the hex digest case-sensitively: an uppercase hash in the URL
        // fails even with a valid signature over that URL.
        let upper = format!(
            "https://mycompany.com/myapp.php?bodySHA256={}",
            hash.to_uppercase()
        );
        let upper_sig = compute(TOKEN, &upper, &[]);
        assert_eq!(
            validate(TOKEN, &upper, &[], Some(body), &upper_sig),
            Err(SignatureError::BodyHash)
        );
        // A wrong signature is reported as such even when the body matches.
        assert_eq!(
            validate(TOKEN, &url, &[], Some(body), DOCS_SIG),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn body_sha256_query_decoding() {
        assert_eq!(
            first_query_value("a=1&bodySHA256=ab%63d&bodySHA256=x", "bodySHA256").as_deref(),
            Some("abcd")
        );
        assert_eq!(
            first_query_value("body%53HA256=x+y", "bodySHA256").as_deref(),
            Some("x y")
        );
        // Blank values and fields without '=' are skipped, as parse_qs does.
        assert_eq!(
            first_query_value("bodySHA256=&bodySHA256", "bodySHA256"),
            None
        );
        assert_eq!(
            first_query_value("bodySHA256=&bodySHA256=z", "bodySHA256").as_deref(),
            Some("z")
        );
        assert_eq!(unquote_plus("%zz%4"), "%zz%4");
        assert_eq!(unquote_plus("%C3%A9%e2%9c%93"), "é✓");
    }

    #[test]
    fn tampered_requests_rejected() {
        let mut tampered = docs_params();
        tampered[2].1 = "1235".to_string();
        assert_eq!(
            check(DOCS_URL, &tampered, DOCS_SIG),
            Err(SignatureError::Mismatch)
        );
        let mut extra = docs_params();
        extra.push(("Extra".to_string(), "x".to_string()));
        assert_eq!(
            check(DOCS_URL, &extra, DOCS_SIG),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(
                "https://mycompany.com/myapp.php?foo=1&bar=3",
                &docs_params(),
                DOCS_SIG
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            validate("12346", DOCS_URL, &docs_params(), None, DOCS_SIG),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(DOCS_URL, &docs_params(), "0/KCTR6DLpKmkAf8muzZqo1nDgQ"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(DOCS_URL, &docs_params(), ""),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn repeated_parameter_names() {
        let sig = "yKYJyyEww3vJZdevf8J0cX1uRi4=";
        let url = "https://example.com/sms";
        let params = pairs(&[
            ("MediaUrl", "https://b.example/2.jpg"),
            ("Body", "héllo ✓"),
            ("MediaUrl", "https://a.example/1.jpg"),
            ("From", "+15551230000"),
            ("A", "z"),
            ("MediaUrl", "https://b.example/2.jpg"),
            ("A", "y"),
        ]);
        assert_eq!(compute(TOKEN, url, &params), sig);
        assert_eq!(check(url, &params, sig), Ok(()));
        // Sorted and de-duplicated: the same signature without the repeated pair.
        let deduped = pairs(&[
            ("A", "y"),
            ("A", "z"),
            ("Body", "héllo ✓"),
            ("From", "+15551230000"),
            ("MediaUrl", "https://a.example/1.jpg"),
            ("MediaUrl", "https://b.example/2.jpg"),
        ]);
        assert_eq!(compute(TOKEN, url, &deduped), sig);
        let dropped: Vec<_> = deduped
            .iter()
            .filter(|(_, v)| v != "https://b.example/2.jpg")
            .cloned()
            .collect();
        assert_eq!(check(url, &dropped, sig), Err(SignatureError::Mismatch));
    }

    #[test]
    fn url_reassembly_quirks() {
        // Python's geturl() drops an empty query, so a signature over "…/sms?" fails and one
        // over "…/sms" passes.
        let url = "https://example.com/sms?";
        let with_mark = compute(TOKEN, url, &[]);
        assert_eq!(with_mark, "SRqfOUzmjgH1JybXXxperXvSofA=");
        assert_eq!(check(url, &[], &with_mark), Err(SignatureError::Mismatch));
        let without_mark = compute(TOKEN, "https://example.com/sms", &[]);
        assert_eq!(check(url, &[], &without_mark), Ok(()));
        // The scheme is lowercased.
        let upper = "HTTPS://Example.com/sms";
        assert_eq!(
            check(upper, &[], &compute(TOKEN, upper, &[])),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(upper, &[], &compute(TOKEN, "https://Example.com/sms", &[])),
            Ok(())
        );
    }

    #[test]
    fn port_variants_match_python() {
        // (url, add_port(urlparse(url)), remove_port(urlparse(url))) from Python.
        let cases = [
            (
                "https://example.com:0/x",
                "https://example.com:0:443/x",
                "https://example.com:0/x",
            ),
            (
                "https://example.com:/x",
                "https://example.com::443/x",
                "https://example.com:/x",
            ),
            (
                "https://example.com/a;",
                "https://example.com:443/a",
                "https://example.com/a",
            ),
            (
                "https://example.com/a;b",
                "https://example.com:443/a;b",
                "https://example.com/a;b",
            ),
            (
                "https://example.com/x#frag",
                "https://example.com:443/x#frag",
                "https://example.com/x#frag",
            ),
            (
                "https://example.com/x#",
                "https://example.com:443/x",
                "https://example.com/x",
            ),
            (
                "https://example.com",
                "https://example.com:443",
                "https://example.com",
            ),
            (
                "https://example.com?x=1",
                "https://example.com:443?x=1",
                "https://example.com?x=1",
            ),
            (
                "  https://example.com/x",
                "https://example.com:443/x",
                "https://example.com/x",
            ),
            (
                "https://exa\tmple.com/x",
                "https://example.com:443/x",
                "https://example.com/x",
            ),
            ("https:////x", "https://:443//x", "https://x"),
            (
                "https://[::1]:8443/x",
                "https://[::1]:8443/x",
                "https://[/x",
            ),
            ("https://[::1]/x", "https://[::1]:443/x", "https://[::1]/x"),
            ("https:/x", "https://:443/x", "https:///x"),
            ("example.com/x", "//:80/example.com/x", "example.com/x"),
            ("wss://h/x", "wss://h:80/x", "wss://h/x"),
            ("https://h/p;a/b;", "https://h:443/p;a/b", "https://h/p;a/b"),
            (
                "https://h/p;a/b;;",
                "https://h:443/p;a/b;;",
                "https://h/p;a/b;;",
            ),
            ("https://h?a#b?c", "https://h:443?a#b?c", "https://h?a#b?c"),
            (
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
            ),
        ];
        for (url, with, without) in cases {
            let parsed = ParsedUrl::parse(url);
            let variants = parsed.as_ref().and_then(ParsedUrl::port_variants);
            assert_eq!(
                variants,
                Some((with.to_string(), without.to_string())),
                "{url:?}"
            );
        }
    }

    #[test]
    fn urls_python_rejects() {
        // RequestValidator.validate raises ValueError for these.
        for url in [
            "https://example.com:abc/x",
            "https://example.com:70000/x",
            "https://[::1/x",
            "https://[1.2.3.4]/x",
        ] {
            let variants = ParsedUrl::parse(url).and_then(|p| p.port_variants());
            assert_eq!(variants, None, "{url:?}");
            assert_eq!(check(url, &[], "x"), Err(SignatureError::Mismatch));
        }
        assert!(valid_bracketed_host("fe80::1%eth0"));
        assert!(valid_bracketed_host("v1.x"));
        assert!(!valid_bracketed_host("fe80::1%"));
        assert!(!valid_bracketed_host("v.x"));
    }

    #[test]
    fn error_messages() {
        assert!(SignatureError::Missing
            .to_string()
            .contains("X-Twilio-Signature"));
        assert!(SignatureError::Mismatch
            .to_string()
            .contains("does not match"));
        assert!(SignatureError::BodyHash.to_string().contains("bodySHA256"));
    }
}
