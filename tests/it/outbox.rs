//! The outbox through the real server: retries with exponential backoff, dead-lettering after
//! the attempt limit, permanent failures, and resumption after a restart on the same database.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{open_db, TestDaemon, TestResult};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use local_assistant::messaging::outbox::{Delivery, DeliveryError, DeliveryHandler};
use serde_json::{json, Value};

/// A test channel: fails the first `fail_first` attempts (retryably or not), records every
/// attempt with its time.
struct FlakyChannel {
    fail_first: u32,
    permanent: bool,
    attempts: Mutex<Vec<(Instant, Delivery)>>,
}

impl FlakyChannel {
    fn new(fail_first: u32, permanent: bool) -> Arc<Self> {
        Arc::new(Self {
            fail_first,
            permanent,
            attempts: Mutex::new(Vec::new()),
        })
    }
    fn attempts(&self) -> Vec<(Instant, Delivery)> {
        self.attempts.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl DeliveryHandler for FlakyChannel {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let n = {
                let mut a = self
                    .attempts
                    .lock()
                    .map_err(|_| DeliveryError::retry("poisoned"))?;
                a.push((Instant::now(), d.clone()));
                u32::try_from(a.len()).unwrap_or(u32::MAX)
            };
            if n <= self.fail_first {
                if self.permanent {
                    return Err(DeliveryError::permanent("number is not reachable"));
                }
                return Err(DeliveryError::retry(format!("carrier timeout #{n}")));
            }
            Ok(())
        })
    }
}

async fn wait_for_status(
    d: &TestDaemon,
    outbox_id: i64,
    status: &str,
) -> TestResult<(String, i64, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row: (String, i64, Option<String>) = open_db(&d.dir)?.query_row(
            "SELECT status, attempts, last_error FROM outbox WHERE id = ?1",
            [outbox_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        if row.0 == status {
            return Ok(row);
        }
        if Instant::now() > deadline {
            return Err(format!("outbox {outbox_id} stuck at {row:?}, wanted {status}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(d: &TestDaemon, text: &str) -> TestResult<Value> {
    let r = d
        .post("/api/v1/messages/outbound")
        .json(&json!({"channel": "flaky", "to": "+15557654321", "text": text}))
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    Ok(r.json().await?)
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_growing_backoff_until_delivered() -> TestResult {
    let channel = FlakyChannel::new(3, false);
    let d = TestDaemon::start_with(
        |c| c.outbox.max_attempts = 10,
        vec![("flaky", channel.clone())],
    )
    .await?;
    let (mut ws, _) = tokio_tungstenite::connect_async(d.ws_url("/api/v1/events")).await?;
    let q = send(&d, "your timer is done").await?;
    let outbox_id = q["outbox_id"].as_i64().unwrap_or_default();
    let (_, attempts, last_error) = wait_for_status(&d, outbox_id, "delivered").await?;
    assert_eq!(attempts, 4);
    assert_eq!(last_error, None);

    let seen = channel.attempts();
    assert_eq!(seen.len(), 4);
    for (i, (_, del)) in seen.iter().enumerate() {
        assert_eq!(del.attempt, u32::try_from(i + 1)?);
        assert_eq!(
            del.id.0, outbox_id,
            "the same entry id on every attempt (a dedupe key)"
        );
        assert_eq!(del.recipient, "+15557654321");
        assert_eq!(del.payload["text"], "your timer is done");
    }
    // Backoff: base 40 ms doubling, equal jitter → gap k is at least 40·2^(k-1)/2 ms.
    for k in 1..seen.len() {
        let gap = seen[k].0 - seen[k - 1].0;
        let floor = Duration::from_millis(20 << (k - 1));
        assert!(
            gap >= floor,
            "retry {k} came after {gap:?}, before the backoff floor {floor:?}"
        );
    }

    // The message is marked delivered and the events tell the story in order.
    let conv = q["conversation_id"].as_i64().unwrap_or_default();
    let page: Value = d
        .get(&format!("/api/v1/conversations/{conv}/messages"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(page["items"][0]["status"], "delivered");
    assert_eq!(page["items"][0]["direction"], "outbound");
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await?
            .ok_or("ws ended")??;
        if let Ok(t) = msg.into_text() {
            let v: Value = serde_json::from_str(&t)?;
            if v["type"].as_str().is_some_and(|t| t.starts_with("outbox.")) {
                kinds.push(v["type"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    assert_eq!(
        kinds,
        [
            "outbox.retry_scheduled",
            "outbox.retry_scheduled",
            "outbox.retry_scheduled",
            "outbox.delivered"
        ]
    );
    let metrics = d.get("/metrics").send().await?.text().await?;
    assert!(
        metrics.contains("outbox_attempts_total{channel=\"flaky\",outcome=\"retry\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("outbox_attempts_total{channel=\"flaky\",outcome=\"delivered\"} 1"));
    Ok(())
}

#[tokio::test]
async fn deliveries_are_dead_lettered_after_the_attempt_limit() -> TestResult {
    let channel = FlakyChannel::new(u32::MAX, false);
    let d = TestDaemon::start_with(
        |c| c.outbox.max_attempts = 3,
        vec![("flaky", channel.clone())],
    )
    .await?;
    let q = send(&d, "never arrives").await?;
    let (_, attempts, last_error) =
        wait_for_status(&d, q["outbox_id"].as_i64().unwrap_or_default(), "dead").await?;
    assert_eq!(attempts, 3);
    assert_eq!(last_error.as_deref(), Some("carrier timeout #3"));
    // No attempts after dead-lettering.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(channel.attempts().len(), 3);
    let status: String = open_db(&d.dir)?.query_row(
        "SELECT status FROM messages WHERE id = ?1",
        [q["id"].as_i64().unwrap_or_default()],
        |r| r.get(0),
    )?;
    assert_eq!(status, "failed");
    Ok(())
}

#[tokio::test]
async fn a_permanent_failure_dead_letters_at_once() -> TestResult {
    let channel = FlakyChannel::new(u32::MAX, true);
    let d = TestDaemon::start_with(
        |c| c.outbox.max_attempts = 8,
        vec![("flaky", channel.clone())],
    )
    .await?;
    let q = send(&d, "hi").await?;
    let (_, attempts, last_error) =
        wait_for_status(&d, q["outbox_id"].as_i64().unwrap_or_default(), "dead").await?;
    assert_eq!(attempts, 1);
    assert_eq!(last_error.as_deref(), Some("number is not reachable"));
    Ok(())
}

#[tokio::test]
async fn pending_deliveries_resume_after_a_restart() -> TestResult {
    let tmp = tempfile::tempdir()?;
    // First run: the channel is down for good, so the entry stays pending with a retry due.
    let down = FlakyChannel::new(u32::MAX, false);
    let mut d = TestDaemon::start_in(
        tmp.path(),
        |c| c.outbox.max_attempts = 50,
        vec![("flaky", down.clone())],
    )
    .await?;
    let q = send(&d, "remember the milk").await?;
    let outbox_id = q["outbox_id"].as_i64().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while down.attempts().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    d.stop().await?;
    let attempts_before = down.attempts().len();
    assert!(attempts_before >= 2);
    // Simulate a crash mid-attempt too: an entry left `delivering`.
    open_db(tmp.path())?.execute(
        "INSERT INTO outbox (channel, recipient, payload, status, attempts, max_attempts, next_attempt_at, created_at, updated_at)
         VALUES ('flaky', '+15550001111', '{\"text\":\"crashed mid-attempt\"}', 'delivering', 1, 50, 0, 0, 0)",
        [],
    )?;

    // Second run on the same database with a working channel: both are delivered.
    let up = FlakyChannel::new(0, false);
    let d2 = TestDaemon::start_in(
        tmp.path(),
        |c| c.outbox.max_attempts = 50,
        vec![("flaky", up.clone())],
    )
    .await?;
    let (_, attempts, _) = wait_for_status(&d2, outbox_id, "delivered").await?;
    assert_eq!(
        usize::try_from(attempts)?,
        attempts_before + 1,
        "attempt count carries over the restart"
    );
    let crashed: i64 = open_db(tmp.path())?.query_row(
        "SELECT id FROM outbox WHERE recipient = '+15550001111'",
        [],
        |r| r.get(0),
    )?;
    wait_for_status(&d2, crashed, "delivered").await?;
    let texts: Vec<String> = up
        .attempts()
        .iter()
        .map(|(_, d)| d.payload["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        texts.contains(&"remember the milk".to_owned())
            && texts.contains(&"crashed mid-attempt".to_owned()),
        "{texts:?}"
    );
    Ok(())
}

#[tokio::test]
async fn entries_of_an_unregistered_channel_wait_untouched() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let flaky = FlakyChannel::new(0, false);
    let mut d = TestDaemon::start_in(tmp.path(), |_| {}, vec![("flaky", flaky.clone())]).await?;
    d.stop().await?;
    open_db(tmp.path())?.execute(
        "INSERT INTO outbox (channel, recipient, payload, status, max_attempts, next_attempt_at, created_at, updated_at)
         VALUES ('modem', '+15550002222', '{}', 'pending', 5, 0, 0, 0)",
        [],
    )?;
    let _d2 = TestDaemon::start_in(tmp.path(), |_| {}, vec![("flaky", flaky.clone())]).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, attempts): (String, i64) = open_db(tmp.path())?.query_row(
        "SELECT status, attempts FROM outbox WHERE channel = 'modem'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    assert!(flaky.attempts().is_empty());
    Ok(())
}
