//! The calendar through the real API: the ICS subscription feed read by Python's `icalendar`
//! (an independent RFC 5545 parser), an ICS written by `icalendar` imported and written back,
//! conflicts and free slots, REST validation errors naming the field, and a conversation
//! through `POST /api/v1/chat` that books, moves and cancels an appointment.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{TestDaemon, TestResult};
use serde_json::{json, Value};

/// The Python with `icalendar` (`make test-deps` installs it into `.venv-test`).
fn python() -> TestResult<String> {
    let py = std::env::var("LA_TEST_PYTHON").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".venv-test/bin/python")
            .display()
            .to_string()
    });
    let ok = Command::new(&py)
        .args(["-c", "import icalendar"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return Err(format!(
            "{py} cannot import icalendar: run `make test-deps` (it installs the TEST_PY list into .venv-test) or set LA_TEST_PYTHON"
        )
        .into());
    }
    Ok(py)
}

fn run_py(script: &str, args: &[&str]) -> TestResult<String> {
    let out = Command::new(python()?)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("python failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

async fn create(d: &TestDaemon, body: Value) -> TestResult<Value> {
    let r = d.post("/api/v1/calendar").json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    assert_eq!(status, 201, "{v}");
    Ok(v)
}

fn feed_token(d: &TestDaemon) -> TestResult<String> {
    Ok(std::fs::read_to_string(d.dir.join("calendar-feed-token"))?
        .trim()
        .to_owned())
}

const READ_FEED: &str = r#"
import sys, json, icalendar
cal = icalendar.Calendar.from_ical(open(sys.argv[1], 'rb').read())
out = []
for ev in cal.walk('VEVENT'):
    s = ev.decoded('DTSTART')
    e = ev.decoded('DTEND')
    tz = getattr(getattr(s, 'tzinfo', None), 'key', None) or (str(s.tzinfo) if getattr(s, 'tzinfo', None) else None)
    out.append({
        'uid': str(ev['UID']),
        'summary': str(ev['SUMMARY']),
        'start': s.isoformat(),
        'end': e.isoformat(),
        'tz': tz,
        'rrule': ev['RRULE'].to_ical().decode() if 'RRULE' in ev else None,
        'recurrence_id': ev.decoded('RECURRENCE-ID').isoformat() if 'RECURRENCE-ID' in ev else None,
        'exdates': [d.dt.isoformat() for x in (ev.get('EXDATE') if isinstance(ev.get('EXDATE'), list) else ([ev['EXDATE']] if 'EXDATE' in ev else [])) for d in x.dts],
        'alarms': [str(a['TRIGGER'].to_ical().decode()) for a in ev.walk('VALARM')],
        'location': str(ev.get('LOCATION')) if 'LOCATION' in ev else None,
    })
tzs = [str(t['TZID']) for t in cal.walk('VTIMEZONE')]
# The VTIMEZONE we wrote must give the same offsets as the IANA zone.
import zoneinfo, datetime
checks = []
for t in cal.walk('VTIMEZONE'):
    z = t.to_tz()
    for ev in cal.walk('VEVENT'):
        s = ev.decoded('DTSTART')
        if isinstance(s, datetime.datetime) and getattr(s.tzinfo, 'key', None) == str(t['TZID']):
            naive = s.replace(tzinfo=None)
            checks.append(naive.replace(tzinfo=z).utcoffset() == s.utcoffset())
print(json.dumps({'events': out, 'tzs': tzs, 'vtimezone_ok': all(checks), 'checked': len(checks)}))
"#;

#[tokio::test]
async fn the_feed_is_valid_rfc5545_for_python_icalendar() -> TestResult {
    let d = TestDaemon::start().await?;
    create(
        &d,
        json!({"title": "Yoga, mats; bring water", "start": "2026-03-23T18:30", "timezone": "Europe/Berlin",
               "duration_minutes": 90, "rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=4", "alarms": [15],
               "exdates": ["2026-03-30T18:30"], "location": "Studio Süd, Hinterhof 2"}),
    )
    .await?;
    create(
        &d,
        json!({"title": "Call with the New York office about the quarterly planning of the roadmap", "start": "2026-11-02T09:00:00-05:00[America/New_York]",
               "end": "2026-11-02T10:00:00-05:00[America/New_York]",
               "attendees": [{"name": "Anna", "email": "anna@example.org"}, {"name": "Bob", "phone": "+14155550100"}]}),
    )
    .await?;
    create(
        &d,
        json!({"title": "Holiday", "start": "2026-08-01", "end": "2026-08-15"}),
    )
    .await?;
    // Move one instance of the series: an override (RECURRENCE-ID).
    let list: Value = d
        .get("/api/v1/calendar?from=2026-03-01&to=2026-05-01&q=yoga")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["total"], 3, "{list}"); // 4 instances, one EXDATE
    let uid = list["items"][0]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = d
        .client
        .patch(d.url(&format!("/api/v1/calendar/{uid}")))
        .bearer_auth(common::TOKEN)
        .json(&json!({"location": "Studio Nord"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    // The feed: its own token, not the API's.
    let r = d.client.get(d.url("/calendar.ics")).send().await?;
    assert_eq!(r.status(), 401);
    let r = d
        .client
        .get(d.url("/calendar.ics?token=nope"))
        .send()
        .await?;
    assert_eq!(r.status(), 403);
    let r = d
        .client
        .get(d.url(&format!("/calendar.ics?token={}", common::TOKEN)))
        .send()
        .await?;
    assert_eq!(r.status(), 403, "the API token must not open the feed");
    let r = d
        .client
        .get(d.url(&format!("/calendar.ics?token={}", feed_token(&d)?)))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()?
        .starts_with("text/calendar"));
    let text = r.text().await?;
    assert!(text.contains("\r\n"));
    assert!(text.split("\r\n").all(|l| l.len() <= 75));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("feed.ics");
    std::fs::write(&path, &text)?;
    let v: Value = serde_json::from_str(&run_py(READ_FEED, &[path.to_str().unwrap_or("")])?)?;
    eprintln!("{v:#}");
    let events = v["events"].as_array().cloned().unwrap_or_default();
    let by = |s: &str| {
        events
            .iter()
            .find(|e| e["summary"].as_str().is_some_and(|x| x.starts_with(s)))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let yoga = by("Yoga");
    assert_eq!(yoga["summary"], "Yoga, mats; bring water");
    assert_eq!(yoga["start"], "2026-03-23T18:30:00+01:00");
    assert_eq!(yoga["end"], "2026-03-23T20:00:00+01:00");
    assert_eq!(yoga["tz"], "Europe/Berlin");
    assert_eq!(yoga["rrule"], "FREQ=WEEKLY;COUNT=4;BYDAY=MO");
    assert_eq!(yoga["exdates"], json!(["2026-03-30T18:30:00+02:00"]));
    assert_eq!(yoga["alarms"], json!(["-PT15M"]));
    assert_eq!(yoga["location"], "Studio Nord");
    let call = by("Call with the New York office");
    assert_eq!(
        call["summary"],
        "Call with the New York office about the quarterly planning of the roadmap"
    );
    assert_eq!(call["start"], "2026-11-02T09:00:00-05:00");
    assert_eq!(call["tz"], "America/New_York");
    let holiday = by("Holiday");
    assert_eq!(holiday["start"], "2026-08-01");
    assert_eq!(holiday["end"], "2026-08-15");
    let mut tzs: Vec<String> = serde_json::from_value(v["tzs"].clone())?;
    tzs.sort();
    assert_eq!(tzs, ["America/New_York", "Europe/Berlin"]);
    assert_eq!(
        v["vtimezone_ok"], true,
        "our VTIMEZONE disagrees with the IANA zone"
    );
    assert_eq!(v["checked"], 2);
    Ok(())
}

const WRITE_ICS: &str = r#"
import sys, datetime, zoneinfo, icalendar
berlin = zoneinfo.ZoneInfo('Europe/Berlin')
cal = icalendar.Calendar()
cal.add('prodid', '-//python icalendar test//EN')
cal.add('version', '2.0')
ev = icalendar.Event()
ev.add('uid', 'club-1@example.org')
ev.add('summary', 'Book club, 2nd Monday')
ev.add('dtstart', datetime.datetime(2026, 1, 12, 19, 0, tzinfo=berlin))
ev.add('dtend', datetime.datetime(2026, 1, 12, 21, 0, tzinfo=berlin))
ev.add('dtstamp', datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
ev.add('rrule', {'freq': 'monthly', 'byday': '2MO', 'count': 6})
ev.add('exdate', datetime.datetime(2026, 3, 9, 19, 0, tzinfo=berlin))
ev.add('description', 'Line one\nLine two; with, punctuation')
al = icalendar.Alarm()
al.add('action', 'DISPLAY')
al.add('description', 'Book club')
al.add('trigger', datetime.timedelta(minutes=-30))
ev.add_component(al)
cal.add_component(ev)
mv = icalendar.Event()
mv.add('uid', 'club-1@example.org')
mv.add('summary', 'Book club (at Anna\'s)')
mv.add('recurrence-id', datetime.datetime(2026, 4, 13, 19, 0, tzinfo=berlin))
mv.add('dtstart', datetime.datetime(2026, 4, 14, 19, 30, tzinfo=berlin))
mv.add('dtend', datetime.datetime(2026, 4, 14, 21, 30, tzinfo=berlin))
mv.add('dtstamp', datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
cal.add_component(mv)
day = icalendar.Event()
day.add('uid', 'bday@example.org')
day.add('summary', 'Leap day birthday')
day.add('dtstart', datetime.date(2024, 2, 29))
day.add('dtend', datetime.date(2024, 3, 1))
day.add('rrule', {'freq': 'yearly'})
day.add('dtstamp', datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
cal.add_component(day)
ny = icalendar.Event()
ny.add('uid', 'utc-call@example.org')
ny.add('summary', 'UTC call')
ny.add('dtstart', datetime.datetime(2026, 6, 1, 13, 0, tzinfo=datetime.timezone.utc))
ny.add('duration', datetime.timedelta(minutes=45))
ny.add('dtstamp', datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
cal.add_component(ny)
cal.add_missing_timezones()
sys.stdout.write(cal.to_ical().decode())
"#;

#[tokio::test]
async fn an_ics_written_by_python_icalendar_imports_and_round_trips() -> TestResult {
    let d = TestDaemon::start().await?;
    let ics = run_py(WRITE_ICS, &[])?;
    let r = d
        .post("/api/v1/calendar/import")
        .header("content-type", "text/calendar")
        .body(ics.clone())
        .send()
        .await?;
    let status = r.status();
    let report: Value = r.json().await?;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"], 3, "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    // Importing again replaces by uid.
    let again: Value = d
        .post("/api/v1/calendar/import")
        .header("content-type", "text/calendar")
        .body(ics)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (again["created"].as_u64(), again["updated"].as_u64()),
        (Some(0), Some(3))
    );

    let list: Value = d
        .get("/api/v1/calendar?from=2026-01-01&to=2026-12-31&q=book")
        .send()
        .await?
        .json()
        .await?;
    let starts: Vec<&str> = list["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["start"].as_str()).collect())
        .unwrap_or_default();
    // Second Mondays, March left out, April moved to Tuesday 19:30.
    assert_eq!(
        starts,
        [
            "2026-01-12T19:00:00+01:00[Europe/Berlin]",
            "2026-02-09T19:00:00+01:00[Europe/Berlin]",
            "2026-04-14T19:30:00+02:00[Europe/Berlin]",
            "2026-05-11T19:00:00+02:00[Europe/Berlin]",
            "2026-06-08T19:00:00+02:00[Europe/Berlin]",
        ],
        "{list}"
    );
    assert_eq!(list["items"][2]["title"], "Book club (at Anna's)");
    let club: Value = d
        .get("/api/v1/calendar/club-1@example.org")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(club["notes"], "Line one\nLine two; with, punctuation");
    assert_eq!(club["alarms"], json!([30]));
    let none: Value = d
        .get("/api/v1/calendar?from=2026-01-01&to=2027-01-01&q=leap")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(none["total"], 0, "2026 has no February 29: {none}");
    let leap: Value = d
        .get("/api/v1/calendar?from=2028-01-01&to=2028-12-31&q=leap")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(leap["total"], 1, "2028 has a February 29: {leap}");
    assert!(leap["items"][0]["start"]
        .as_str()
        .is_some_and(|s| s.starts_with("2028-02-29T00:00")));

    // Round trip: our feed, read by icalendar, says the same.
    let text = d
        .client
        .get(d.url(&format!("/calendar.ics?token={}", feed_token(&d)?)))
        .send()
        .await?
        .text()
        .await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("feed.ics");
    std::fs::write(&path, &text)?;
    let v: Value = serde_json::from_str(&run_py(READ_FEED, &[path.to_str().unwrap_or("")])?)?;
    let events = v["events"].as_array().cloned().unwrap_or_default();
    let master = events
        .iter()
        .find(|e| e["uid"] == "club-1@example.org" && e["recurrence_id"].is_null())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(master["start"], "2026-01-12T19:00:00+01:00");
    assert_eq!(master["rrule"], "FREQ=MONTHLY;COUNT=6;BYDAY=2MO");
    assert_eq!(master["exdates"], json!(["2026-03-09T19:00:00+01:00"]));
    assert_eq!(master["alarms"], json!(["-PT30M"]));
    let moved = events
        .iter()
        .find(|e| e["uid"] == "club-1@example.org" && !e["recurrence_id"].is_null())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(moved["recurrence_id"], "2026-04-13T19:00:00+02:00");
    assert_eq!(moved["start"], "2026-04-14T19:30:00+02:00");
    let utc = events
        .iter()
        .find(|e| e["uid"] == "utc-call@example.org")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(utc["start"], "2026-06-01T13:00:00+00:00");
    assert_eq!(utc["end"], "2026-06-01T13:45:00+00:00");
    let bday = events
        .iter()
        .find(|e| e["uid"] == "bday@example.org")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(bday["start"], "2024-02-29");
    assert_eq!(bday["rrule"], "FREQ=YEARLY");
    assert_eq!(v["vtimezone_ok"], true);

    // Not a calendar: the error says so.
    let r = d
        .post("/api/v1/calendar/import")
        .header("content-type", "text/calendar")
        .body("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n")
        .send()
        .await?;
    assert_eq!(r.status(), 422);
    let e: Value = r.json().await?;
    assert_eq!(e["error"]["code"], "invalid_ics");
    let r = d
        .post("/api/v1/calendar/import")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    assert_eq!(r.status(), 415);
    Ok(())
}

async fn expect_invalid(d: &TestDaemon, body: Value, field: &str, also: &str) -> TestResult {
    let r = d.post("/api/v1/calendar").json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert_eq!(status, 422, "{body} → {v}");
    assert!(
        msg.contains(field) && msg.contains(also),
        "{body}: {msg:?} should name {field:?} and say {also:?}"
    );
    Ok(())
}

#[tokio::test]
async fn rest_validation_errors_name_the_field() -> TestResult {
    let d = TestDaemon::start().await?;
    let start = "2026-05-04T10:00";
    expect_invalid(&d, json!({"start": start}), "title", "required").await?;
    expect_invalid(&d, json!({"title": "x"}), "start", "required").await?;
    expect_invalid(
        &d,
        json!({"title": "x", "start": "next tuesday"}),
        "start",
        "not a time",
    )
    .await?;
    expect_invalid(
        &d,
        json!({"title": "x", "start": start, "end": "2026-05-04T09:00"}),
        "end",
        "after the start",
    )
    .await?;
    expect_invalid(
        &d,
        json!({"title": "x", "start": start, "timezone": "Mars/Base"}),
        "timezone",
        "IANA",
    )
    .await?;
    expect_invalid(
        &d,
        json!({"title": "x", "start": start, "rrule": "FREQ=WEEKLY;BYDAY=XX"}),
        "rrule",
        "BYDAY=XX",
    )
    .await?;
    expect_invalid(
        &d,
        json!({"title": "x", "start": start, "rrule": "FREQ=DAILY;BYHOUR=9"}),
        "rrule",
        "BYHOUR",
    )
    .await?;
    expect_invalid(
        &d,
        json!({"title": "x", "start": start, "alarms": [-5]}),
        "alarms[0]",
        "0 to 40320",
    )
    .await?;
    expect_invalid(
        &d,
        json!({"title": "x", "start": start, "attendees": [{"name": "A"}, {"email": "nope"}]}),
        "attendees[1].email",
        "not an email",
    )
    .await?;
    expect_invalid(
        &d,
        json!({"title": "x", "start": start, "colour": "red"}),
        "colour",
        "unknown field",
    )
    .await?;
    expect_invalid(
        &d,
        json!({"title": "x", "start": start, "duration_minutes": 0}),
        "duration_minutes",
        "1 to",
    )
    .await?;
    let r = d
        .get("/api/v1/calendar?from=2026-01-01&to=2028-01-01")
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await?;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("to:")),
        "{v}"
    );
    let r = d.get("/api/v1/calendar?limit=0").send().await?;
    assert_eq!(r.status(), 400);
    let r = d.get("/api/v1/calendar/nope@x").send().await?;
    assert_eq!(r.status(), 404);
    let r = d
        .client
        .patch(d.url("/api/v1/calendar/nope@x"))
        .bearer_auth(common::TOKEN)
        .json(&json!({"title": "y"}))
        .send()
        .await?;
    assert_eq!(r.status(), 404);
    // Without the token: 401, like every API route.
    let r = d.client.get(d.url("/api/v1/calendar")).send().await?;
    assert_eq!(r.status(), 401);
    // The OpenAPI document lists the routes.
    let doc: Value = d.get("/api/v1/openapi.json").send().await?.json().await?;
    for p in [
        "/api/v1/calendar",
        "/api/v1/calendar/{uid}",
        "/api/v1/calendar/free-slots",
        "/api/v1/calendar/import",
        "/calendar.ics",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    Ok(())
}

#[tokio::test]
async fn conflicts_include_recurring_instances_and_free_slots_fill_the_gaps() -> TestResult {
    let d = TestDaemon::start().await?;
    let mut events = d.app().events().subscribe();
    // Thursdays 14:00–15:00 in Berlin.
    let series = create(
        &d,
        json!({"title": "Team sync", "start": "2026-10-01T14:00", "duration_minutes": 60,
               "rrule": "FREQ=WEEKLY;BYDAY=TH"}),
    )
    .await?;
    assert_eq!(series["conflicts"], json!([]));
    // A booking overlapping the instance after the DST change (2026-10-29).
    let c = create(
        &d,
        json!({"title": "Dentist", "start": "2026-10-29T14:30:00+01:00[Europe/Berlin]", "duration_minutes": 45}),
    )
    .await?;
    let conflicts = c["conflicts"].as_array().cloned().unwrap_or_default();
    assert_eq!(conflicts.len(), 1, "{c}");
    assert_eq!(conflicts[0]["title"], "Team sync");
    assert_eq!(
        conflicts[0]["start"],
        "2026-10-29T14:00:00+01:00[Europe/Berlin]"
    );
    assert_eq!(conflicts[0]["recurring"], true);
    // Touching is not overlapping.
    let c = create(
        &d,
        json!({"title": "Walk", "start": "2026-10-29T15:15", "duration_minutes": 30}),
    )
    .await?;
    assert_eq!(c["conflicts"], json!([]));
    // All-day events never conflict.
    let c = create(&d, json!({"title": "Trip", "start": "2026-10-29"})).await?;
    assert_eq!(c["conflicts"], json!([]));

    let slots: Value = d
        .get("/api/v1/calendar/free-slots?from=2026-10-29T12:00&to=2026-10-29T18:00&min_minutes=30")
        .send()
        .await?
        .json()
        .await?;
    let got: Vec<(String, String)> = slots
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["start"].as_str().unwrap_or("")[11..16].to_owned(),
                        s["end"].as_str().unwrap_or("")[11..16].to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        got,
        [
            ("12:00".into(), "14:00".into()),
            ("15:45".into(), "18:00".into())
        ],
        "{slots}"
    );
    // The bus saw the creations.
    let e = events.recv().await?;
    let v = serde_json::to_value(&e)?;
    assert_eq!(v["type"], "calendar.changed");
    assert_eq!(v["action"], "created");
    // Delete leaves the series listing without that event.
    let uid = series["event"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = d
        .client
        .delete(d.url(&format!("/api/v1/calendar/{uid}")))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let list: Value = d
        .get("/api/v1/calendar?from=2026-10-29&to=2026-10-30")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list["total"], 3, "{list}");
    Ok(())
}

async fn say(d: &TestDaemon, conv: Option<i64>, text: &str) -> TestResult<Value> {
    let mut body = json!({ "text": text });
    if let Some(c) = conv {
        body["conversation_id"] = json!(c);
    }
    let resp = d.post("/api/v1/chat").json(&body).send().await?;
    assert_eq!(resp.status(), 200, "{text}");
    let v: Value = resp.json().await?;
    eprintln!(
        "> {text}\n< {} [{} {}]",
        v["reply"], v["intent"], v["outcome"]
    );
    Ok(v)
}

fn reply(v: &Value) -> &str {
    v["reply"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_conversation_books_moves_and_cancels_an_appointment() -> TestResult {
    let d = TestDaemon::start().await?;
    // "with Anna" becomes the contact Anna, with her address.
    let r = d
        .post("/api/v1/contacts")
        .json(&json!({"display_name": "Anna Berg", "aliases": ["Anna"],
                      "emails": [{"address": "anna@example.org"}]}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let anna: Value = r.json().await?;
    // Slot filling: title, then time.
    let a = say(&d, None, "book an appointment").await?;
    assert_eq!(reply(&a), "What is the appointment?");
    assert_eq!(a["state"], "awaiting_slot");
    let c = a["conversation_id"].as_i64();
    let b = say(&d, c, "dentist").await?;
    assert_eq!(reply(&b), "When is dentist?");
    let r = say(&d, c, "next friday at 3pm").await?;
    assert_eq!(r["intent"], "appointment.create");
    assert!(reply(&r).starts_with("Booked dentist "), "{}", reply(&r));
    assert!(reply(&r).contains("at 3 PM until 4 PM"), "{}", reply(&r));
    assert_eq!(r["tool_calls"][0]["result"]["booked"], true);
    let start = r["tool_calls"][0]["result"]["start"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(start.contains("T15:00:00"), "{start}");

    // Listing that day reads naturally.
    let l = say(&d, c, "what's on my calendar next friday").await?;
    assert_eq!(l["intent"], "appointment.list");
    assert!(
        reply(&l).starts_with("You have one appointment") && reply(&l).contains("dentist at 3 PM"),
        "{}",
        reply(&l)
    );

    // A conflicting booking asks first; "no" books nothing.
    let x = say(&d, c, "book a meeting with Anna next friday at 3:30pm").await?;
    assert_eq!(x["state"], "awaiting_confirmation", "{x}");
    assert!(reply(&x).contains("overlaps with dentist"), "{}", reply(&x));
    let n = say(&d, c, "no").await?;
    assert_eq!(reply(&n), "Okay, I haven't booked it.");

    // Move keeps the length.
    let m = say(&d, c, "move the dentist to next monday at 10am").await?;
    assert_eq!(m["intent"], "appointment.move");
    assert!(reply(&m).starts_with("Moved dentist to "), "{}", reply(&m));
    let to = m["tool_calls"][0]["result"]["to"].as_str().unwrap_or("");
    assert!(to.contains("T10:00:00"), "{to}");
    let uid = m["tool_calls"][0]["result"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let ev: Value = d
        .get(&format!("/api/v1/calendar/{uid}"))
        .send()
        .await?
        .json()
        .await?;
    assert!(
        ev["end"].as_str().is_some_and(|e| e.contains("T11:00:00")),
        "{ev}"
    );
    assert_eq!(ev["sequence"], 1);

    // Now the conflicting meeting books without a question.
    let y = say(&d, c, "book a meeting with Anna next friday at 3:30pm").await?;
    assert!(reply(&y).starts_with("Booked meeting"), "{}", reply(&y));
    let meeting = y["tool_calls"][0]["result"]["uid"].as_str().unwrap_or("");
    let ev: Value = d
        .get(&format!("/api/v1/calendar/{meeting}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        ev["attendees"],
        json!([{"name": "Anna Berg", "email": "anna@example.org", "contact_id": anna["id"]}]),
        "{ev}"
    );

    // Cancel by name.
    let k = say(&d, c, "cancel the dentist appointment").await?;
    assert_eq!(k["intent"], "appointment.cancel");
    assert!(reply(&k).starts_with("Cancelled dentist"), "{}", reply(&k));
    let r = d.get(&format!("/api/v1/calendar/{uid}")).send().await?;
    assert_eq!(r.status(), 404);

    // "Cancel all" asks first.
    let all = say(&d, c, "cancel all my appointments").await?;
    assert_eq!(all["state"], "awaiting_confirmation");
    assert_eq!(reply(&all), "Cancel your one upcoming appointment?");
    let yes = say(&d, c, "yes").await?;
    assert_eq!(reply(&yes), "Cancelled 1 appointment.");
    let list: Value = d.get("/api/v1/calendar").send().await?.json().await?;
    assert_eq!(list["total"], 0);
    Ok(())
}

async fn alarm_event(
    rx: &mut tokio::sync::broadcast::Receiver<local_assistant::events::Event>,
    uid: &str,
) -> TestResult<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv()).await??;
        let v = serde_json::to_value(&ev)?;
        if v["type"] == "calendar.alarm" && v["uid"] == uid {
            return Ok(v);
        }
    }
}

fn rfc3339_in(secs: i64) -> String {
    jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

fn alarm_bodies(dir: &Path, like: &str) -> TestResult<Vec<(i64, String)>> {
    let db = common::open_db(dir)?;
    let rows = db
        .prepare(
            "SELECT conversation_id, body FROM messages WHERE direction = 'outbound'
               AND body LIKE ?1 ORDER BY id",
        )?
        .query_map([like], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Alarms fire once, into the conversation that booked the appointment (else the configured
/// target, the speaker); one due while the device was off fires once after the restart, with a
/// note; one already past at booking time never fires.
#[tokio::test]
async fn alarms_fire_once_where_the_appointment_was_booked_and_after_downtime() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let grace = |c: &mut local_assistant::config::Config| {
        c.assistant.missed_grace = std::time::Duration::from_secs(1);
    };
    let mut d = TestDaemon::start_in(tmp.path(), grace, Vec::new()).await?;
    let mut rx = d.app().events().subscribe();

    // Booked in a conversation: the default alarm (15 minutes) is added.
    let b = say(&d, None, "book a dentist appointment tomorrow at 9am").await?;
    let conv = b["conversation_id"].as_i64().unwrap_or(0);
    let uid = b["tool_calls"][0]["result"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let ev: Value = d
        .get(&format!("/api/v1/calendar/{uid}"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(ev["alarms"], json!([15]), "{ev}");
    // Moved to start in 15 minutes and 2 seconds: its alarm is 2 seconds away.
    let r = d
        .client
        .patch(d.url(&format!("/api/v1/calendar/{uid}")))
        .bearer_auth(common::TOKEN)
        .json(&json!({"start": rfc3339_in(902), "end": rfc3339_in(902 + 1800)}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    // Booked with an alarm that was already past: it never fires.
    let late = create(
        &d,
        json!({"title": "late call", "start": rfc3339_in(300), "alarms": [15]}),
    )
    .await?;
    let late_uid = late["event"]["uid"].as_str().unwrap_or("").to_owned();

    let a = alarm_event(&mut rx, &uid).await?;
    assert_eq!(a["minutes"], 15);
    assert_eq!(a["missed"], false);
    let text = a["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("Coming up in 15 minutes: dentist "),
        "{text}"
    );
    let said = alarm_bodies(tmp.path(), "Coming up in % dentist %")?;
    assert_eq!(
        said,
        vec![(conv, text.to_owned())],
        "once, in the booking conversation"
    );

    // Made over REST (no conversation): due while the daemon is stopped.
    let rest = create(
        &d,
        json!({"title": "piano lesson", "start": rfc3339_in(903), "alarms": [15],
               "location": "Music school"}),
    )
    .await?;
    let rest_uid = rest["event"]["uid"].as_str().unwrap_or("").to_owned();
    d.stop().await?;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let mut d = TestDaemon::start_in(tmp.path(), grace, Vec::new()).await?;
    let mut rx = d.app().events().subscribe();
    // It may have fired before the subscription: the store is the judge.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let piano = loop {
        let rows = alarm_bodies(
            tmp.path(),
            "Missed while I was offline: Coming up in % piano %",
        )?;
        if !rows.is_empty() || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::select! {
            _ = rx.recv() => {}
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    };
    assert_eq!(piano.len(), 1, "{piano:?}");
    assert!(piano[0].1.ends_with(" at Music school."), "{piano:?}");
    let db = common::open_db(tmp.path())?;
    let (channel, address): (String, String) = db.query_row(
        "SELECT channel, address FROM conversations WHERE id = ?1",
        [piano[0].0],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert_eq!((channel.as_str(), address.as_str()), ("local", "speaker"));
    d.stop().await?;

    // Another restart fires nothing again.
    let mut d = TestDaemon::start_in(tmp.path(), grace, Vec::new()).await?;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    d.stop().await?;
    let fired: Vec<String> = db
        .prepare("SELECT uid FROM calendar_alarms ORDER BY uid")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut want = vec![uid.clone(), rest_uid.clone()];
    want.sort();
    assert_eq!(fired, want, "late call ({late_uid}) never fires");
    assert_eq!(alarm_bodies(tmp.path(), "%Coming up in %")?.len(), 2);
    Ok(())
}
