//! Durability: a daemon serving a burst of inbound messages is `kill -9`ed at random points;
//! after a restart every request that got a 2xx is in the database.

use crate::common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{open_db, ChildDaemon, TestResult, TOKEN};
use rand::Rng;
use serde_json::json;

const ROUNDS: usize = 4;
const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_kill_9_at_random_points() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut acked_total: BTreeSet<String> = BTreeSet::new();
    for round in 0..ROUNDS {
        let mut daemon = ChildDaemon::spawn(tmp.path(), &[])?;
        let url = format!("http://{}/api/v1/messages/inbound", daemon.addr);
        let acked = Arc::new(Mutex::new(Vec::<String>::new()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("r{round}-c{c}-m{i}");
                    let sent = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .json(&json!({"from": "+15551112222", "text": format!("burst {key}"), "idempotency_key": key}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            if let Ok(mut a) = acked.lock() {
                                a.push(key);
                            }
                        }
                        Ok(r) => panic!("unexpected status {} before the kill", r.status()),
                        // The daemon died: this request was never acknowledged.
                        Err(_) => return,
                    }
                }
            }));
        }
        let delay = rand::rng().random_range(50..600);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        daemon.kill9()?;
        for t in tasks {
            t.await?;
        }
        let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
        eprintln!(
            "round {round}: killed after {delay} ms with {} acknowledged",
            acked.len()
        );
        assert!(
            !acked.is_empty(),
            "round {round}: nothing was acknowledged before the kill"
        );
        acked_total.extend(acked);
        drop(daemon);

        // Restart on the same data dir, then check every acknowledged key is stored.
        let daemon = ChildDaemon::spawn(tmp.path(), &[])?;
        let stored: BTreeSet<String> = {
            let db = open_db(tmp.path())?;
            let mut stmt = db.prepare("SELECT idempotency_key FROM inbox")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let missing: Vec<&String> = acked_total.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged but lost: {missing:?}"
        );
        // And the restarted daemon serves them.
        let convs: serde_json::Value = client
            .get(format!("http://{}/api/v1/conversations", daemon.addr))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        assert!(
            convs["items"][0]["message_count"]
                .as_i64()
                .unwrap_or_default()
                >= i64::try_from(acked_total.len())?
        );
        let integrity: String =
            open_db(tmp.path())?.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        assert_eq!(integrity, "ok");
    }
    Ok(())
}
