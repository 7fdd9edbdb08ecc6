//! A small blocking CalDAV client on `ureq`: `PROPFIND`, `REPORT calendar-multiget`, `GET`,
//! conditional `PUT` and `DELETE`, and discovery of a calendar collection from a server URL.
//!
//! Every call blocks: the sync engine runs it on `spawn_blocking`, never on the async runtime.
//! Errors carry the method, the URL, the status and the start of what the server said.
//! Redirects are not followed silently (credentials would be dropped on the way); a 3xx is an
//! error naming the `Location`, except during discovery, which follows one hop itself.

use std::time::Duration;

use base64::Engine as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ureq::http::{Method, Request, Uri};

use super::xml::{self, DavResponse};
use super::CaldavError;
use crate::config::Secret;

/// Characters left as they are in a path we build: unreserved ones, `/`, and `@` (common in
/// UIDs, and left alone by Radicale and most servers).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// Longest response body read, in bytes.
const MAX_BODY: u64 = 64 * 1024 * 1024;
/// How much of an error body is quoted in an error message.
const QUOTE: usize = 300;

/// One member of a collection listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The member's path, percent-decoded (the identity used in the sync state).
    pub href: String,
    /// Its etag (quoted), when the server gave one.
    pub etag: Option<String>,
}

/// A `PROPFIND Depth: 1` of the calendar collection.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// CalendarServer `getctag` of the collection.
    pub ctag: Option<String>,
    /// `sync-token` of the collection.
    pub sync_token: Option<String>,
    /// The calendar objects (sub-collections are skipped).
    pub entries: Vec<RemoteEntry>,
}

/// A calendar object fetched with `calendar-multiget` or `GET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    /// Percent-decoded path.
    pub href: String,
    /// Its etag (quoted), when given.
    pub etag: Option<String>,
    /// The VCALENDAR text.
    pub ics: String,
}

/// The precondition of a `PUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// `If-None-Match: *`: create only.
    Create,
    /// `If-Match: <etag>`: replace only that version.
    Replace(String),
    /// No precondition (the state knows the href but no etag).
    None,
}

/// What a conditional `PUT` or `DELETE` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Done; the new etag when the server sent one (never for `DELETE`).
    Done(Option<String>),
    /// `412 Precondition Failed`: the server's copy is not the version we expected.
    PreconditionFailed,
    /// `404` on `DELETE`: already gone.
    Gone,
}

/// The blocking CalDAV client for one server.
#[derive(Clone)]
pub struct DavClient {
    agent: ureq::Agent,
    /// `scheme://authority` of the configured URL.
    origin: String,
    auth: Option<String>,
}

impl std::fmt::Debug for DavClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DavClient")
            .field("origin", &self.origin)
            .field("auth", &self.auth.as_ref().map(|_| "MASKED"))
            .finish()
    }
}

struct Reply {
    status: u16,
    etag: Option<String>,
    location: Option<String>,
    body: String,
}

/// Split `http(s)://host[:port]/path` into origin and path; errors name the URL.
pub fn split_url(url: &str) -> Result<(String, String), CaldavError> {
    let uri: Uri = url.parse().map_err(|e| CaldavError::BadUrl {
        url: url.to_owned(),
        message: format!("{e}"),
    })?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err(CaldavError::BadUrl {
            url: url.to_owned(),
            message: "expected an http:// or https:// URL".into(),
        });
    }
    let Some(authority) = uri.authority() else {
        return Err(CaldavError::BadUrl {
            url: url.to_owned(),
            message: "the URL names no host".into(),
        });
    };
    let path = match uri.path() {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    Ok((format!("{scheme}://{authority}"), path))
}

/// The decoded path of an href the server wrote (an absolute path or a full URL).
pub fn href_path(href: &str) -> String {
    let path = match href.find("://") {
        Some(i) => {
            let rest = &href[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => href,
    };
    percent_decode_str(path).decode_utf8_lossy().into_owned()
}

/// Percent-encode a decoded path for a request line.
pub fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH).to_string()
}

/// Put an etag in its quoted form (some servers list them unquoted but match quoted ones).
pub fn normalize_etag(etag: &str) -> String {
    let t = etag.trim();
    if t.starts_with('"') || t.starts_with("W/") {
        t.to_owned()
    } else {
        format!("\"{t}\"")
    }
}

impl DavClient {
    /// A client for the server of `url`, with basic auth when `username` is not empty.
    pub fn new(
        url: &str,
        username: &str,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Self, CaldavError> {
        let (origin, _) = split_url(url)?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(concat!("local-assistant/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let auth = (!username.is_empty()).then(|| {
            let pair = format!("{username}:{}", password.map_or("", Secret::expose));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(Self {
            agent,
            origin,
            auth,
        })
    }

    /// The full URL of a decoded path on this server.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{}", self.origin, encode_path(path))
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Reply, CaldavError> {
        let url = self.url_of(path);
        let transport = |message: String| CaldavError::Transport {
            method: method.to_owned(),
            url: url.clone(),
            message,
        };
        let m = Method::from_bytes(method.as_bytes()).map_err(|e| transport(e.to_string()))?;
        let mut b = Request::builder().method(m).uri(&url);
        if let Some(a) = &self.auth {
            b = b.header("Authorization", a);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let result = match body {
            Some(text) => b
                .body(text.to_owned())
                .map_err(|e| transport(e.to_string()))
                .and_then(|r| self.agent.run(r).map_err(|e| transport(e.to_string()))),
            None => b
                .body(())
                .map_err(|e| transport(e.to_string()))
                .and_then(|r| self.agent.run(r).map_err(|e| transport(e.to_string()))),
        };
        let mut resp = result?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header("etag").map(|e| normalize_etag(&e));
        let location = header("location");
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| transport(format!("reading the response: {e}")))?;
        Ok(Reply {
            status,
            etag,
            location,
            body,
        })
    }

    fn unexpected(&self, method: &str, path: &str, r: &Reply) -> CaldavError {
        let mut said: String = r.body.trim().chars().take(QUOTE).collect();
        if let Some(l) = &r.location {
            said = format!("redirected to {l} {said}");
        }
        CaldavError::Status {
            method: method.to_owned(),
            url: self.url_of(path),
            status: r.status,
            body: said,
        }
    }

    fn propfind(
        &self,
        path: &str,
        depth: &str,
        body: &str,
    ) -> Result<Vec<DavResponse>, CaldavError> {
        let r = self.send(
            "PROPFIND",
            path,
            &[
                ("Depth", depth),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            Some(body),
        )?;
        if r.status != 207 {
            return Err(self.unexpected("PROPFIND", path, &r));
        }
        xml::parse_multistatus(&r.body).map_err(|e| CaldavError::Xml {
            url: self.url_of(path),
            source: e,
        })
    }

    /// `PROPFIND Depth: 1` of the collection at `path` (decoded, ending in `/`).
    pub fn list(&self, path: &str) -> Result<Listing, CaldavError> {
        let responses = self.propfind(path, "1", xml::PROPFIND_LIST)?;
        let own = path.trim_end_matches('/');
        let mut listing = Listing::default();
        let mut saw_calendar = false;
        for r in responses {
            let href = href_path(&r.href);
            if href.trim_end_matches('/') == own {
                saw_calendar = r.props.is_calendar;
                listing.ctag = r.props.ctag;
                listing.sync_token = r.props.sync_token;
            } else if !r.props.is_collection && r.status.is_none_or(|s| s < 300) {
                listing.entries.push(RemoteEntry {
                    href,
                    etag: r.props.etag.map(|e| normalize_etag(&e)),
                });
            }
        }
        if !saw_calendar {
            return Err(CaldavError::NotACalendar {
                url: self.url_of(path),
            });
        }
        Ok(listing)
    }

    /// `REPORT calendar-multiget` of `hrefs` (decoded paths) in the collection at `path`.
    /// Hrefs the server reports missing are left out.
    pub fn multiget(&self, path: &str, hrefs: &[String]) -> Result<Vec<RemoteObject>, CaldavError> {
        let mut out = Vec::with_capacity(hrefs.len());
        for chunk in hrefs.chunks(100) {
            let encoded: Vec<String> = chunk.iter().map(|h| encode_path(h)).collect();
            let body = xml::multiget_body(encoded.iter().map(String::as_str));
            let r = self.send(
                "REPORT",
                path,
                &[
                    ("Depth", "1"),
                    ("Content-Type", "application/xml; charset=utf-8"),
                ],
                Some(&body),
            )?;
            if r.status != 207 {
                return Err(self.unexpected("REPORT", path, &r));
            }
            let responses = xml::parse_multistatus(&r.body).map_err(|e| CaldavError::Xml {
                url: self.url_of(path),
                source: e,
            })?;
            for resp in responses {
                if let Some(ics) = resp.props.calendar_data {
                    out.push(RemoteObject {
                        href: href_path(&resp.href),
                        etag: resp.props.etag.map(|e| normalize_etag(&e)),
                        ics,
                    });
                }
            }
        }
        Ok(out)
    }

    /// `GET` one object; `None` when it does not exist.
    pub fn get(&self, path: &str) -> Result<Option<RemoteObject>, CaldavError> {
        let r = self.send("GET", path, &[("Accept", "text/calendar")], None)?;
        match r.status {
            200 => Ok(Some(RemoteObject {
                href: path.to_owned(),
                etag: r.etag,
                ics: r.body,
            })),
            404 | 410 => Ok(None),
            _ => Err(self.unexpected("GET", path, &r)),
        }
    }

    /// The etag of one object (`PROPFIND Depth: 0`), for servers that send none on `PUT`.
    pub fn etag(&self, path: &str) -> Result<Option<String>, CaldavError> {
        let responses = self.propfind(path, "0", xml::PROPFIND_ETAG)?;
        Ok(responses
            .into_iter()
            .find_map(|r| r.props.etag)
            .map(|e| normalize_etag(&e)))
    }

    /// `PUT` a VCALENDAR with a precondition.
    pub fn put(
        &self,
        path: &str,
        ics: &str,
        pre: &Precondition,
    ) -> Result<WriteOutcome, CaldavError> {
        let mut headers = vec![("Content-Type", "text/calendar; charset=utf-8")];
        match pre {
            Precondition::Create => headers.push(("If-None-Match", "*")),
            Precondition::Replace(etag) => headers.push(("If-Match", etag.as_str())),
            Precondition::None => {}
        }
        let r = self.send("PUT", path, &headers, Some(ics))?;
        match r.status {
            200..=299 => Ok(WriteOutcome::Done(r.etag)),
            412 => Ok(WriteOutcome::PreconditionFailed),
            _ => Err(self.unexpected("PUT", path, &r)),
        }
    }

    /// `DELETE` with `If-Match` when the etag is known.
    pub fn delete(&self, path: &str, etag: Option<&str>) -> Result<WriteOutcome, CaldavError> {
        let headers: Vec<(&str, &str)> = etag.map(|e| ("If-Match", e)).into_iter().collect();
        let r = self.send("DELETE", path, &headers, None)?;
        match r.status {
            200..=299 => Ok(WriteOutcome::Done(None)),
            404 | 410 => Ok(WriteOutcome::Gone),
            412 => Ok(WriteOutcome::PreconditionFailed),
            _ => Err(self.unexpected("DELETE", path, &r)),
        }
    }

    /// Find the calendar collection from a configured URL: the URL itself when it is a
    /// calendar; else its principal's calendar home, and there the first calendar that takes
    /// events. Returns the decoded path, ending in `/`.
    pub fn discover(&self, path: &str) -> Result<String, CaldavError> {
        let with_slash = |p: String| if p.ends_with('/') { p } else { format!("{p}/") };
        // Follow one redirect (e.g. /.well-known/caldav) by hand, keeping the credentials.
        let r = self.send(
            "PROPFIND",
            path,
            &[
                ("Depth", "0"),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            Some(xml::PROPFIND_LIST),
        )?;
        let mut start = path.to_owned();
        if (300..400).contains(&r.status) {
            match &r.location {
                Some(l) => start = href_path(l),
                None => return Err(self.unexpected("PROPFIND", path, &r)),
            }
        } else if r.status == 207 {
            let responses = xml::parse_multistatus(&r.body).map_err(|e| CaldavError::Xml {
                url: self.url_of(path),
                source: e,
            })?;
            if responses.iter().any(|x| x.props.is_calendar) {
                return Ok(with_slash(path.to_owned()));
            }
        } else {
            return Err(self.unexpected("PROPFIND", path, &r));
        }
        let not_found = |what: &str| CaldavError::Discovery {
            url: self.url_of(path),
            message: what.to_owned(),
        };
        let principal = self
            .propfind(&start, "0", xml::PROPFIND_PRINCIPAL)?
            .into_iter()
            .find_map(|r| r.props.principal)
            .ok_or_else(|| not_found("the server names no current-user-principal"))?;
        let home = self
            .propfind(&href_path(&principal), "0", xml::PROPFIND_HOME)?
            .into_iter()
            .find_map(|r| r.props.calendar_home)
            .ok_or_else(|| not_found("the principal names no calendar-home-set"))?;
        let home = with_slash(href_path(&home));
        let members = self.propfind(&home, "1", xml::PROPFIND_LIST)?;
        members
            .into_iter()
            .filter(|r| r.props.is_calendar)
            .filter(|r| {
                r.props.components.is_empty() || r.props.components.iter().any(|c| c == "VEVENT")
            })
            .map(|r| with_slash(href_path(&r.href)))
            .find(|p| p.trim_end_matches('/') != home.trim_end_matches('/'))
            .ok_or_else(|| not_found(&format!("no calendar collection for events under {home}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_paths_round_trip() {
        let (o, p) = match split_url("https://dav.example.org:8443/cal/alice/home/") {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(o, "https://dav.example.org:8443");
        assert_eq!(p, "/cal/alice/home/");
        assert!(split_url("ftp://x/").is_err());
        assert!(split_url("not a url").is_err());
        assert_eq!(href_path("/a/b%40c.ics"), "/a/b@c.ics");
        assert_eq!(href_path("http://h:1/a/x%20y.ics"), "/a/x y.ics");
        assert_eq!(encode_path("/a/x y@z.ics"), "/a/x%20y@z.ics");
        assert_eq!(href_path(&encode_path("/c/ä ö&.ics")), "/c/ä ö&.ics");
    }

    #[test]
    fn etags_are_quoted() {
        assert_eq!(normalize_etag("abc"), "\"abc\"");
        assert_eq!(normalize_etag("\"abc\""), "\"abc\"");
        assert_eq!(normalize_etag("W/\"abc\""), "W/\"abc\"");
    }
}
