//! Reminders and timers through the real API and scheduler: validation errors that name the
//! field, filters and paging, patch and cancel with their events, many due reminders firing
//! in due order exactly once, a reminder due while the daemon was down firing exactly once
//! after the restart, snooze (one-off and recurring), and delivery to another target.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestDaemon, TestResult};
use futures_util::future::BoxFuture;
use local_assistant::messaging::outbox::{Delivery, DeliveryError, DeliveryHandler};
use serde_json::{json, Value};

async fn post(d: &TestDaemon, path: &str, body: Value) -> TestResult<(u16, Value)> {
    let r = d.post(path).json(&body).send().await?;
    let s = r.status().as_u16();
    let text = r.text().await?;
    Ok((s, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn patch(d: &TestDaemon, path: &str, body: Value) -> TestResult<(u16, Value)> {
    let r = d
        .client
        .patch(d.url(path))
        .bearer_auth(common::TOKEN)
        .json(&body)
        .send()
        .await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

async fn get(d: &TestDaemon, path: &str) -> TestResult<(u16, Value)> {
    let r = d.get(path).send().await?;
    let s = r.status().as_u16();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

fn in_future(secs: i64) -> String {
    // Whole seconds: the store keeps milliseconds.
    let t = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    t.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap_or(jiff::tz::TimeZone::UTC))
        .to_string()
}

async fn wait_status(d: &TestDaemon, id: i64, status: &str, within: Duration) -> TestResult<Value> {
    let deadline = Instant::now() + within;
    loop {
        let (_, v) = get(d, &format!("/api/v1/reminders/{id}")).await?;
        if v["status"] == status {
            return Ok(v);
        }
        assert!(
            Instant::now() < deadline,
            "reminder {id} never became {status}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn invalid_requests_are_refused_with_the_field_named() -> TestResult {
    let d = TestDaemon::start().await?;
    let future = in_future(3600);
    let cases = [
        (json!({"due": future}), 422, "text: is required"),
        (json!({"text": "x"}), 422, "due: is required"),
        (
            json!({"text": "x", "due": "tomorrow"}),
            422,
            "due: must be an RFC 3339 time",
        ),
        (
            json!({"text": "x", "due": "2001-01-01T10:00:00Z"}),
            422,
            "due:",
        ),
        (
            json!({"text": "x", "due": future, "in_seconds": 5}),
            422,
            "due: give either",
        ),
        (
            json!({"text": "x", "in_seconds": 0}),
            422,
            "in_seconds: must be from 1",
        ),
        (
            json!({"text": "x", "due": future, "repeat": "hourly"}),
            422,
            "repeat: must be",
        ),
        (
            json!({"kind": "alarm", "text": "x", "due": future}),
            422,
            "kind: must be reminder or timer",
        ),
        (
            json!({"text": "x", "due": future, "deliver_to": {"channel": "Bad Channel", "address": "x"}}),
            422,
            "deliver_to.channel",
        ),
        (
            json!({"text": "x", "due": future, "deliver_to": {"channel": "local", "address": ""}}),
            422,
            "deliver_to.address",
        ),
        (
            json!({"text": "x", "due": future, "conversation_id": 999}),
            404,
            "conversation_id",
        ),
        (
            json!({"text": "x", "due": future, "colour": "red"}),
            422,
            "colour",
        ),
        (json!({"text": 5, "due": future}), 422, "text"),
    ];
    for (body, status, want) in cases {
        let (s, v) = post(&d, "/api/v1/reminders", body.clone()).await?;
        let msg = v["error"]["message"].as_str().unwrap_or("").to_owned();
        assert_eq!(s, status, "{body}: {msg}");
        assert!(
            msg.contains(want),
            "{body}: {msg:?} should contain {want:?}"
        );
    }
    for (q, want) in [
        ("kind=alarm", "kind"),
        ("status=later", "status"),
        ("limit=0", "limit"),
        ("sort=due", "sort"),
    ] {
        let (s, v) = get(&d, &format!("/api/v1/reminders?{q}")).await?;
        assert_eq!(s, 400, "{q}");
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(want),
            "{q}: {v}"
        );
    }
    let (s, r) = post(
        &d,
        "/api/v1/reminders",
        json!({"text": "water the plants", "due": future}),
    )
    .await?;
    assert_eq!(s, 201, "{r}");
    let path = format!("/api/v1/reminders/{}", r["id"]);
    for (body, want) in [
        (json!({"text": " "}), "text: must not be empty"),
        (json!({"due": "2001-01-01T10:00:00Z"}), "due:"),
        (
            json!({"snooze_minutes": 0}),
            "minutes: must be from 1 to 1440",
        ),
        (
            json!({"snooze_minutes": 5, "text": "x"}),
            "snooze_minutes: cannot be combined",
        ),
        (json!({}), "nothing to change"),
    ] {
        let (s, v) = patch(&d, &path, body.clone()).await?;
        assert_eq!(s, 422, "{body}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(want), "{body}: {msg:?}");
    }
    let (s, _) = get(&d, "/api/v1/reminders/77777").await?;
    assert_eq!(s, 404);
    let (s, _) = get(&d, "/api/v1/reminders/abc").await?;
    assert_eq!(s, 400);
    Ok(())
}

#[tokio::test]
async fn reminders_are_listed_filtered_paged_changed_and_cancelled_with_events() -> TestResult {
    let d = TestDaemon::start().await?;
    let mut events = d.app().events().subscribe();
    let mut ids = Vec::new();
    for (i, (kind, text)) in [
        ("reminder", "a"),
        ("timer", "pasta"),
        ("reminder", "b"),
        ("timer", ""),
        ("reminder", "c"),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, v) = post(
            &d,
            "/api/v1/reminders",
            json!({"kind": kind, "text": text, "in_seconds": 3600 + i}),
        )
        .await?;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_i64().unwrap_or(0));
    }
    let (_, timers) = get(&d, "/api/v1/reminders?kind=timer").await?;
    assert_eq!(timers["total"], 2);
    assert_eq!(timers["items"][0]["text"], "pasta");
    let (_, p1) = get(&d, "/api/v1/reminders?kind=reminder&status=active&limit=2").await?;
    assert_eq!(
        (p1["total"].as_i64(), p1["next_offset"].as_i64()),
        (Some(3), Some(2))
    );
    let (_, p2) = get(&d, "/api/v1/reminders?kind=reminder&limit=2&offset=2").await?;
    assert_eq!(p2["items"][0]["text"], "c");
    assert!(p2["next_offset"].is_null());

    let later = in_future(7200);
    let (s, v) = patch(&d, &format!("/api/v1/reminders/{}", ids[0]), json!({"text": "call the plumber", "due": later, "deliver_to": {"channel": "local", "address": "speaker"}})).await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["text"], "call the plumber");
    assert_eq!(v["due"], later);
    assert_eq!(
        v["deliver_to"],
        json!({"channel": "local", "address": "speaker"})
    );

    let r = d
        .client
        .delete(d.url(&format!("/api/v1/reminders/{}", ids[2])))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let r = d
        .client
        .delete(d.url(&format!("/api/v1/reminders/{}", ids[2])))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 204, "cancelling twice is fine");
    let (_, cancelled) = get(&d, "/api/v1/reminders?status=cancelled").await?;
    assert_eq!(cancelled["items"][0]["id"].as_i64(), Some(ids[2]));
    let (s, v) = patch(
        &d,
        &format!("/api/v1/reminders/{}", ids[2]),
        json!({"text": "x"}),
    )
    .await?;
    assert_eq!(s, 409, "a cancelled reminder cannot be changed: {v}");

    let mut types = Vec::new();
    while let Ok(e) = events.try_recv() {
        let v = serde_json::to_value(&e)?;
        if let Some(t) = v["type"].as_str().filter(|t| t.starts_with("reminder.")) {
            types.push(t.to_owned());
        }
    }
    assert_eq!(
        types,
        ["reminder.created"; 5]
            .into_iter()
            .chain(["reminder.updated", "reminder.cancelled"])
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn many_due_reminders_fire_in_due_order_exactly_once() -> TestResult {
    let d = TestDaemon::start().await?;
    let n: i64 = 150;
    // Created in reverse order of due time, all due within a second of each other.
    let base = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(4);
    let tz = jiff::tz::TimeZone::get("Europe/Berlin")?;
    for i in 0..n {
        let due = (base + jiff::SignedDuration::from_millis((n - i) * 7)).to_zoned(tz.clone());
        let (s, v) = post(
            &d,
            "/api/v1/reminders",
            json!({"text": format!("item {:03}", n - i), "due": due.to_string()}),
        )
        .await?;
        assert_eq!(s, 201, "{v}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = get(&d, "/api/v1/reminders?status=done&limit=1").await?;
        if v["total"].as_i64() == Some(n) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} fired",
            v["total"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let db = common::open_db(&d.dir)?;
    let bodies: Vec<String> = db
        .prepare("SELECT body FROM messages WHERE direction = 'outbound' AND body LIKE 'Reminder: item %' ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let want: Vec<String> = (1..=n).map(|i| format!("Reminder: item {i:03}.")).collect();
    assert_eq!(bodies, want, "each fired once, in due order");
    let counts: i64 = db.query_row("SELECT sum(fire_count) FROM reminders", [], |r| r.get(0))?;
    assert_eq!(counts, n);
    Ok(())
}

#[tokio::test]
async fn a_reminder_due_during_downtime_fires_exactly_once_after_restarts() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut d = TestDaemon::start_in(tmp.path(), |_| {}, Vec::new()).await?;
    let (s, r) = post(
        &d,
        "/api/v1/reminders",
        json!({"text": "take the pills", "in_seconds": 600}),
    )
    .await?;
    assert_eq!(s, 201);
    let id = r["id"].as_i64().unwrap_or(0);
    d.stop().await?;
    {
        let db = common::open_db(tmp.path())?;
        let past = jiff::Timestamp::now().as_millisecond() - 3_600_000;
        db.execute(
            "UPDATE reminders SET due_at = ?1 WHERE id = ?2",
            rusqlite::params![past, id],
        )?;
    }
    let mut d = TestDaemon::start_in(tmp.path(), |_| {}, Vec::new()).await?;
    let v = wait_status(&d, id, "done", Duration::from_secs(10)).await?;
    assert_eq!(v["fire_count"], 1);
    d.stop().await?;
    // A second restart does not fire it again.
    let d = TestDaemon::start_in(tmp.path(), |_| {}, Vec::new()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let db = common::open_db(tmp.path())?;
    let bodies: Vec<String> = db
        .prepare("SELECT body FROM messages WHERE direction = 'outbound' ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(
        bodies[0].starts_with("Missed while I was offline"),
        "{bodies:?}"
    );
    assert!(
        bodies[0].ends_with("Reminder: take the pills."),
        "{bodies:?}"
    );
    drop(d);
    Ok(())
}

#[tokio::test]
async fn a_fired_reminder_can_be_snoozed_and_fires_again() -> TestResult {
    let d = TestDaemon::start().await?;
    let mut events = d.app().events().subscribe();
    let (_, r) = post(
        &d,
        "/api/v1/reminders",
        json!({"text": "stretch", "in_seconds": 1}),
    )
    .await?;
    let id = r["id"].as_i64().unwrap_or(0);
    wait_status(&d, id, "done", Duration::from_secs(10)).await?;
    let before = jiff::Timestamp::now();
    let (s, v) = post(
        &d,
        &format!("/api/v1/reminders/{id}/snooze"),
        json!({"minutes": 10}),
    )
    .await?;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["id"].as_i64(),
            v["status"].as_str(),
            v["snooze_count"].as_i64()
        ),
        (Some(id), Some("active"), Some(1))
    );
    let due: jiff::Zoned = v["due"].as_str().unwrap_or("").parse()?;
    let delta = due.timestamp().duration_since(before).as_secs();
    assert!((595..=605).contains(&delta), "due in {delta} s");
    // Make it due now to see it fire a second time (through PATCH: a snoozed one is active).
    let (s, _) = patch(
        &d,
        &format!("/api/v1/reminders/{id}"),
        json!({"due": in_future(2)}),
    )
    .await?;
    assert_eq!(s, 200);
    let v = wait_status(&d, id, "done", Duration::from_secs(10)).await?;
    assert_eq!(v["fire_count"], 2);

    // A recurring reminder that fired gets a one-off copy; the rule keeps its own schedule.
    let (_, rec) = post(
        &d,
        "/api/v1/reminders",
        json!({"text": "drink water", "in_seconds": 1, "repeat": "every:3600"}),
    )
    .await?;
    let rid = rec["id"].as_i64().unwrap_or(0);
    let (s, v) = post(
        &d,
        &format!("/api/v1/reminders/{rid}/snooze"),
        json!({"minutes": 5}),
    )
    .await?;
    assert_eq!(s, 409, "not fired yet: {v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&d, &format!("/api/v1/reminders/{rid}")).await?.1["fire_count"] != 1 {
        assert!(Instant::now() < deadline, "recurring reminder never fired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, copy) = post(
        &d,
        &format!("/api/v1/reminders/{rid}/snooze"),
        json!({"minutes": 5}),
    )
    .await?;
    assert_eq!(s, 200, "{copy}");
    assert_ne!(copy["id"].as_i64(), Some(rid));
    assert!(copy["repeat"].is_null());
    assert_eq!(copy["text"], "drink water");
    let (_, orig) = get(&d, &format!("/api/v1/reminders/{rid}")).await?;
    assert_eq!(
        (orig["status"].as_str(), orig["repeat"].as_str()),
        (Some("active"), Some("every:3600"))
    );

    // Cancelled ones cannot be snoozed.
    let r = d
        .client
        .delete(d.url(&format!("/api/v1/reminders/{}", copy["id"])))
        .bearer_auth(common::TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let (s, _) = post(
        &d,
        &format!("/api/v1/reminders/{}/snooze", copy["id"]),
        json!({"minutes": 5}),
    )
    .await?;
    assert_eq!(s, 409);
    let mut snoozed = 0;
    while let Ok(e) = events.try_recv() {
        if serde_json::to_value(&e)?["type"] == "reminder.snoozed" {
            snoozed += 1;
        }
    }
    assert_eq!(snoozed, 2);
    Ok(())
}

/// A channel that records what it was asked to deliver.
#[derive(Default)]
struct Recorder(Mutex<Vec<Delivery>>);

impl DeliveryHandler for Recorder {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            self.0
                .lock()
                .map_err(|_| DeliveryError::retry("poisoned"))?
                .push(d.clone());
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_reminder_is_delivered_to_its_target_channel() -> TestResult {
    let speaker = Arc::new(Recorder::default());
    let d = TestDaemon::start_with(
        |_| {},
        vec![("local", speaker.clone() as Arc<dyn DeliveryHandler>)],
    )
    .await?;
    // Asked in the API conversation, delivered on the local speaker.
    let (s, r) = post(
        &d,
        "/api/v1/reminders",
        json!({"text": "turn off the oven", "in_seconds": 1, "deliver_to": {"channel": "local", "address": "speaker"}}),
    )
    .await?;
    assert_eq!(s, 201, "{r}");
    let id = r["id"].as_i64().unwrap_or(0);
    wait_status(&d, id, "done", Duration::from_secs(10)).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<Delivery> = speaker.0.lock().map(|v| v.clone()).unwrap_or_default();
        if let Some(del) = got.first() {
            assert_eq!(del.recipient, "speaker");
            assert!(
                del.payload
                    .to_string()
                    .contains("Reminder: turn off the oven."),
                "{}",
                del.payload
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the speaker channel never got it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
