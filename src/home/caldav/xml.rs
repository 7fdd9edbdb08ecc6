//! WebDAV/CalDAV XML: the request bodies we send and a namespace-aware parser for the
//! `207 Multi-Status` answers (`PROPFIND`, `REPORT calendar-multiget`).
//!
//! Servers differ in prefixes (`d:`, `D:`, default namespace), in attribute quoting and in how
//! they escape text, so elements are matched by (namespace URI, local name) through
//! `quick-xml`'s namespace resolver, never by prefix. Properties are taken only from a
//! `propstat` whose status is 2xx.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

const NS_DAV: &[u8] = b"DAV:";
const NS_CALDAV: &[u8] = b"urn:ietf:params:xml:ns:caldav";
const NS_CALSERVER: &[u8] = b"http://calendarserver.org/ns/";

/// `PROPFIND` body listing a collection: etags, the collection's ctag and sync-token, and
/// resource types (to tell a calendar from its members).
pub const PROPFIND_LIST: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/" xmlns:c="urn:ietf:params:xml:ns:caldav">
  <d:prop><d:resourcetype/><d:getetag/><cs:getctag/><d:sync-token/><c:supported-calendar-component-set/></d:prop>
</d:propfind>"#;

/// `PROPFIND` body asking for the principal of the authenticated user.
pub const PROPFIND_PRINCIPAL: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:current-user-principal/><d:resourcetype/></d:prop></d:propfind>"#;

/// `PROPFIND` body asking a principal for its calendar home.
pub const PROPFIND_HOME: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><c:calendar-home-set/></d:prop></d:propfind>"#;

/// `PROPFIND` body asking for one resource's etag.
pub const PROPFIND_ETAG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>"#;

/// `REPORT calendar-multiget` body for the given hrefs (absolute paths).
pub fn multiget_body<'a>(hrefs: impl IntoIterator<Item = &'a str>) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?>
<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
  <d:prop><d:getetag/><c:calendar-data/></d:prop>
"#,
    );
    for h in hrefs {
        s.push_str("  <d:href>");
        s.push_str(&escape(h));
        s.push_str("</d:href>\n");
    }
    s.push_str("</c:calendar-multiget>\n");
    s
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The properties of one `response`, merged from its 2xx `propstat`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DavProps {
    /// `getetag`, as sent (with its quotes).
    pub etag: Option<String>,
    /// CalendarServer `getctag`.
    pub ctag: Option<String>,
    /// `sync-token`.
    pub sync_token: Option<String>,
    /// `resourcetype` contains `collection`.
    pub is_collection: bool,
    /// `resourcetype` contains CalDAV `calendar`.
    pub is_calendar: bool,
    /// `supported-calendar-component-set` (empty when not reported).
    pub components: Vec<String>,
    /// CalDAV `calendar-data`.
    pub calendar_data: Option<String>,
    /// The href inside `current-user-principal`.
    pub principal: Option<String>,
    /// The href inside `calendar-home-set`.
    pub calendar_home: Option<String>,
}

/// One `response` of a multistatus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DavResponse {
    /// The resource, as the server wrote it (usually an absolute path, percent-encoded).
    pub href: String,
    /// The response-level status (`404` for a multiget href that does not exist), if given.
    pub status: Option<u16>,
    /// Properties from the 2xx propstats.
    pub props: DavProps,
}

/// Why a multistatus body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed multistatus XML at byte {position}: {message}")]
pub struct XmlError {
    /// Byte offset where the parser stopped.
    pub position: u64,
    /// What was wrong.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Dav,
    CalDav,
    CalServer,
    Other,
}

fn ns_of(r: &ResolveResult<'_>) -> Ns {
    match r {
        ResolveResult::Bound(ns) if ns.as_ref() == NS_DAV => Ns::Dav,
        ResolveResult::Bound(ns) if ns.as_ref() == NS_CALDAV => Ns::CalDav,
        ResolveResult::Bound(ns) if ns.as_ref() == NS_CALSERVER => Ns::CalServer,
        _ => Ns::Other,
    }
}

/// Parse `HTTP/1.1 200 OK` into `200`.
fn parse_status(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Propstat {
    props: DavProps,
    status: Option<u16>,
}

/// Parse a `207 Multi-Status` body into its responses.
pub fn parse_multistatus(body: &str) -> Result<Vec<DavResponse>, XmlError> {
    let mut reader = NsReader::from_str(body);
    let mut stack: Vec<(Ns, String)> = Vec::new();
    let mut text = String::new();
    let mut out = Vec::new();
    let mut response: Option<DavResponse> = None;
    let mut propstat: Option<Propstat> = None;
    let err = |reader: &NsReader<&[u8]>, message: String| XmlError {
        position: reader.buffer_position(),
        message,
    };
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok((resolved, event)) => (ns_of(&resolved), event),
            Err(e) => {
                let message = e.to_string();
                return Err(XmlError {
                    position: reader.error_position(),
                    message,
                });
            }
        };
        match event {
            Event::Start(e) => {
                let local = local_name(&e);
                on_open(ns, &local, &e, &stack, &mut response, &mut propstat);
                stack.push((ns, local));
                text.clear();
            }
            Event::Empty(e) => {
                let local = local_name(&e);
                on_open(ns, &local, &e, &stack, &mut response, &mut propstat);
                stack.push((ns, local));
                text.clear();
                on_close(&mut stack, &text, &mut out, &mut response, &mut propstat);
            }
            Event::End(_) => {
                on_close(&mut stack, &text, &mut out, &mut response, &mut propstat);
                text.clear();
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| err(&reader, e.to_string()))?;
                text.push_str(&s);
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| err(&reader, e.to_string()))?;
                text.push_str(&s);
            }
            Event::GeneralRef(r) => {
                if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|e| err(&reader, e.to_string()))?
                {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| err(&reader, e.to_string()))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => text.push_str(s),
                        None => return Err(err(&reader, format!("unknown entity &{name};"))),
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError {
            position: reader.buffer_position(),
            message: "the document ended inside an element".into(),
        });
    }
    Ok(out)
}

fn local_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn parent_is(stack: &[(Ns, String)], ns: Ns, name: &str) -> bool {
    stack.last().is_some_and(|(n, l)| *n == ns && l == name)
}

fn on_open(
    ns: Ns,
    local: &str,
    e: &BytesStart<'_>,
    stack: &[(Ns, String)],
    response: &mut Option<DavResponse>,
    propstat: &mut Option<Propstat>,
) {
    match (ns, local) {
        (Ns::Dav, "response") => *response = Some(DavResponse::default()),
        (Ns::Dav, "propstat") => *propstat = Some(Propstat::default()),
        (Ns::Dav, "collection") if parent_is(stack, Ns::Dav, "resourcetype") => {
            if let Some(p) = propstat.as_mut() {
                p.props.is_collection = true;
            }
        }
        (Ns::CalDav, "calendar") if parent_is(stack, Ns::Dav, "resourcetype") => {
            if let Some(p) = propstat.as_mut() {
                p.props.is_calendar = true;
            }
        }
        (Ns::CalDav, "comp")
            if parent_is(stack, Ns::CalDav, "supported-calendar-component-set") =>
        {
            let name = e.attributes().flatten().find_map(|a| {
                (a.key.local_name().as_ref() == b"name")
                    .then(|| {
                        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .ok()
                            .map(|v| v.to_uppercase())
                    })
                    .flatten()
            });
            if let (Some(p), Some(name)) = (propstat.as_mut(), name) {
                p.props.components.push(name);
            }
        }
        _ => {}
    }
}

fn on_close(
    stack: &mut Vec<(Ns, String)>,
    text: &str,
    out: &mut Vec<DavResponse>,
    response: &mut Option<DavResponse>,
    propstat: &mut Option<Propstat>,
) {
    let Some((ns, local)) = stack.pop() else {
        return;
    };
    let value = || Some(text.trim().to_owned()).filter(|s| !s.is_empty());
    match (ns, local.as_str()) {
        (Ns::Dav, "href") => {
            if parent_is(stack, Ns::Dav, "response") {
                if let Some(r) = response.as_mut() {
                    r.href = text.trim().to_owned();
                }
            } else if parent_is(stack, Ns::Dav, "current-user-principal") {
                if let Some(p) = propstat.as_mut() {
                    p.props.principal = value();
                }
            } else if parent_is(stack, Ns::CalDav, "calendar-home-set") {
                if let Some(p) = propstat.as_mut() {
                    p.props.calendar_home = value();
                }
            }
        }
        (Ns::Dav, "status") => {
            if parent_is(stack, Ns::Dav, "propstat") {
                if let Some(p) = propstat.as_mut() {
                    p.status = parse_status(text);
                }
            } else if parent_is(stack, Ns::Dav, "response") {
                if let Some(r) = response.as_mut() {
                    r.status = parse_status(text);
                }
            }
        }
        (Ns::Dav, "getetag") if parent_is(stack, Ns::Dav, "prop") => {
            if let Some(p) = propstat.as_mut() {
                p.props.etag = value();
            }
        }
        (Ns::CalServer, "getctag") if parent_is(stack, Ns::Dav, "prop") => {
            if let Some(p) = propstat.as_mut() {
                p.props.ctag = value();
            }
        }
        (Ns::Dav, "sync-token") if parent_is(stack, Ns::Dav, "prop") => {
            if let Some(p) = propstat.as_mut() {
                p.props.sync_token = value();
            }
        }
        (Ns::CalDav, "calendar-data") if parent_is(stack, Ns::Dav, "prop") => {
            if let Some(p) = propstat.as_mut() {
                // Keep the text as sent (no trimming inside), but drop the indentation some
                // servers put around it.
                p.props.calendar_data =
                    Some(text.trim_start().to_owned()).filter(|s| !s.is_empty());
            }
        }
        (Ns::Dav, "propstat") => {
            if let (Some(p), Some(r)) = (propstat.take(), response.as_mut()) {
                if p.status.is_none_or(|s| (200..300).contains(&s)) {
                    merge(&mut r.props, p.props);
                }
            }
        }
        (Ns::Dav, "response") => {
            if let Some(r) = response.take() {
                out.push(r);
            }
        }
        _ => {}
    }
}

fn merge(into: &mut DavProps, from: DavProps) {
    into.etag = into.etag.take().or(from.etag);
    into.ctag = into.ctag.take().or(from.ctag);
    into.sync_token = into.sync_token.take().or(from.sync_token);
    into.is_collection |= from.is_collection;
    into.is_calendar |= from.is_calendar;
    into.components.extend(from.components);
    into.calendar_data = into.calendar_data.take().or(from.calendar_data);
    into.principal = into.principal.take().or(from.principal);
    into.calendar_home = into.calendar_home.take().or(from.calendar_home);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Vec<DavResponse> {
        match parse_multistatus(s) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn default_namespace_and_prefixed_caldav_as_radicale_writes_it() {
        let body = r#"<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CS="http://calendarserver.org/ns/"><response><href>/alice/cal/</href><propstat><prop><getetag>"4ecc"</getetag><CS:getctag>"4ecc"</CS:getctag><sync-token>http://radicale.org/ns/sync/641e</sync-token><resourcetype><C:calendar /><collection /></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat></response><response><href>/alice/cal/a%40b.ics</href><propstat><prop><getetag>"56a3"</getetag><resourcetype /></prop><status>HTTP/1.1 200 OK</status></propstat><propstat><prop><CS:getctag /><sync-token /></prop><status>HTTP/1.1 404 Not Found</status></propstat></response></multistatus>"#;
        let r = parse(body);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].href, "/alice/cal/");
        assert!(r[0].props.is_calendar && r[0].props.is_collection);
        assert_eq!(r[0].props.ctag.as_deref(), Some("\"4ecc\""));
        assert_eq!(
            r[0].props.sync_token.as_deref(),
            Some("http://radicale.org/ns/sync/641e")
        );
        assert_eq!(r[1].href, "/alice/cal/a%40b.ics");
        assert_eq!(r[1].props.etag.as_deref(), Some("\"56a3\""));
        assert!(!r[1].props.is_calendar && !r[1].props.is_collection);
        assert_eq!(r[1].props.ctag, None);
    }

    #[test]
    fn other_prefixes_entities_cdata_and_a_404_response() {
        let body = "<D:multistatus xmlns:D=\"DAV:\" xmlns:cal=\"urn:ietf:params:xml:ns:caldav\">\n\
            <D:response><D:href>/c/x.ics</D:href><D:propstat><D:prop>\
            <D:getetag>&quot;e1&quot;</D:getetag>\
            <cal:calendar-data>BEGIN:VCALENDAR&#13;\nSUMMARY:Tom &amp; Jerry&#13;\nEND:VCALENDAR&#13;\n</cal:calendar-data>\
            </D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\
            <D:response><D:href>/c/y.ics</D:href><D:status>HTTP/1.1 404 Not Found</D:status></D:response>\
            <D:response><D:href>/c/z.ics</D:href><D:propstat><D:prop><D:getetag>\"e3\"</D:getetag>\
            <cal:calendar-data><![CDATA[BEGIN:VCALENDAR\nEND:VCALENDAR\n]]></cal:calendar-data>\
            </D:prop></D:propstat></D:response></D:multistatus>";
        let r = parse(body);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].props.etag.as_deref(), Some("\"e1\""));
        assert_eq!(
            r[0].props.calendar_data.as_deref(),
            Some("BEGIN:VCALENDAR\r\nSUMMARY:Tom & Jerry\r\nEND:VCALENDAR\r\n")
        );
        assert_eq!(r[1].status, Some(404));
        assert_eq!(r[1].props, DavProps::default());
        assert_eq!(
            r[2].props.calendar_data.as_deref(),
            Some("BEGIN:VCALENDAR\nEND:VCALENDAR\n")
        );
    }

    #[test]
    fn principal_home_set_and_components() {
        let body = r#"<multistatus xmlns="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
          <response><href>/</href><propstat><prop>
            <current-user-principal><href>/alice/</href></current-user-principal>
            <c:calendar-home-set><href>/alice/</href></c:calendar-home-set>
            <c:supported-calendar-component-set><c:comp name="VEVENT"/><c:comp name='vtodo'/></c:supported-calendar-component-set>
          </prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"#;
        let r = parse(body);
        assert_eq!(r[0].props.principal.as_deref(), Some("/alice/"));
        assert_eq!(r[0].props.calendar_home.as_deref(), Some("/alice/"));
        assert_eq!(r[0].props.components, vec!["VEVENT", "VTODO"]);
    }

    #[test]
    fn malformed_xml_is_an_error_with_a_position() {
        for bad in [
            "<multistatus xmlns=\"DAV:\"><response>",
            "<a></b>",
            "<multistatus xmlns=\"DAV:\">&nope;</multistatus>",
        ] {
            let e = parse_multistatus(bad).err();
            assert!(e.is_some(), "{bad} parsed");
        }
    }

    #[test]
    fn multiget_body_escapes_hrefs() {
        let b = multiget_body(["/c/a&b.ics"]);
        assert!(b.contains("<d:href>/c/a&amp;b.ics</d:href>"), "{b}");
        assert!(parse_multistatus(&b).is_ok());
    }
}
