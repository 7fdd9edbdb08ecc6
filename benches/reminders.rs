//! Reminder scheduling with 10k pending reminders: inserting them, the scheduler finding and
//! firing the next due one, and firing throughput — our `home::reminders` beside plain
//! rusqlite doing the same SQL by hand on the same schema (the floor).
//!
//! What it measures (real SQLite file in a temp dir, `synchronous=FULL`, through `Store`):
//!
//! * **insert 10k, one at a time** — `Reminders::create` awaited in turn: one committed write
//!   each (what 10k separate requests cost).
//! * **insert 10k, 64 concurrent** — the same from 64 tasks: the store's group commit batches.
//! * **next due, 10k pending** — with 10k reminders pending far in the future, one becomes due
//!   and `fire_due` runs: find it, write its message, mark it done, compute the next wake-up,
//!   one transaction. p50/p99 over repeated rounds.
//! * **fire 10k due** — every pending reminder made due at once; `fire_due` until none is
//!   left (64 per transaction): fired reminders per second.
//!
//! The peer column is plain rusqlite on a second file with the same schema: the inserts in
//! one transaction, the due lookup as one indexed `SELECT`, no messages written — the cost of
//! SQLite alone. Run: `cargo bench --bench reminders`; without `--bench` (e.g. under
//! `cargo test --all-targets`) it does a small smoke run.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use local_assistant::config::Config;
use local_assistant::domain::{ConversationId, UnixMillis};
use local_assistant::events::EventBus;
use local_assistant::home::reminders::{Kind, NewReminder, Reminders};
use local_assistant::messaging::outbox::Outbox;
use local_assistant::platform::metrics::Metrics;
use local_assistant::store::{Store, StoreMetrics, StoreOptions};

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn new_reminder(conv: ConversationId, i: usize, due: jiff::Zoned) -> NewReminder {
    NewReminder {
        kind: Kind::Reminder,
        conversation_id: conv,
        text: format!("bench item {i}"),
        due,
        rule: None,
        source_message_id: None,
        target: None,
    }
}

struct Ours {
    insert_serial: Duration,
    insert_concurrent: Duration,
    next_due: Vec<Duration>,
    fire_all: Duration,
    fired: usize,
}

async fn ours(n: usize, rounds: usize) -> Result<Ours> {
    let dir = tempfile::tempdir()?;
    let cfg = Config::defaults();
    let sm = StoreMetrics::default();
    let metrics = Arc::new(Metrics::new(&sm));
    let store = Store::open_with_metrics(
        &dir.path().join("bench.db"),
        &StoreOptions::from(&cfg.store),
        sm,
    )?;
    let events = Arc::new(EventBus::new(1024));
    let outbox = Outbox::new(
        store.clone(),
        events.clone(),
        metrics,
        cfg.outbox.clone(),
        Default::default(),
    );
    let reminders = Reminders::new(store.clone(), events, outbox, Duration::from_secs(120));
    let conv = store
        .write(|c| {
            local_assistant::store::messages::conversation_for(
                c,
                "api",
                "api",
                None,
                UnixMillis::now(),
            )
        })
        .await?;
    let far = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC) + SignedDuration::from_hours(24);

    // Half one at a time, half 64 concurrent: 10k pending in all.
    let half = n / 2;
    let t = Instant::now();
    for i in 0..half {
        let due = far.clone() + SignedDuration::from_secs(i as i64);
        reminders.create(new_reminder(conv, i, due)).await?;
    }
    let insert_serial = t.elapsed();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let r = reminders.clone();
        let far = far.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = half + w;
            while i < 2 * half {
                let due = far.clone() + SignedDuration::from_secs(i as i64);
                r.create(new_reminder(conv, i, due)).await?;
                i += 64;
            }
            Ok::<_, BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let insert_concurrent = t.elapsed();

    // One due among 10k pending, fired by the scheduler's own step.
    let mut next_due = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let due =
            Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC) + SignedDuration::from_millis(1);
        reminders.create(new_reminder(conv, n + i, due)).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
        let t = Instant::now();
        reminders.fire_due().await?;
        next_due.push(t.elapsed());
    }
    next_due.sort();

    // Everything due at once.
    let past = UnixMillis::now().0 - 1000;
    store
        .write(move |c| {
            c.execute(
                "UPDATE reminders SET due_at = ?1 + (id % 1000) WHERE status = 'active'",
                [past],
            )?;
            Ok(())
        })
        .await?;
    let pending: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM reminders WHERE status = 'active'",
                [],
                |r| r.get(0),
            )?)
        })
        .await?;
    let t = Instant::now();
    while reminders
        .fire_due()
        .await?
        .is_some_and(|n| n.0 <= UnixMillis::now().0)
    {}
    let fire_all = t.elapsed();
    let left: i64 = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM reminders WHERE status = 'active'",
                [],
                |r| r.get(0),
            )?)
        })
        .await?;
    if left != 0 {
        return Err(format!("{left} reminders were not fired").into());
    }
    store.close().await;
    Ok(Ours {
        insert_serial,
        insert_concurrent,
        next_due,
        fire_all,
        fired: usize::try_from(pending).unwrap_or(0),
    })
}

struct Peer {
    insert: Duration,
    lookup: Vec<Duration>,
}

fn peer(n: usize, rounds: usize) -> Result<Peer> {
    let dir = tempfile::tempdir()?;
    let mut c = rusqlite::Connection::open(dir.path().join("peer.db"))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    local_assistant::store::migrations::migrate(&mut c)?;
    c.execute(
        "INSERT INTO conversations (channel, address, created_at, last_message_at) VALUES ('api', 'api', 0, 0)",
        [],
    )?;
    let far = UnixMillis::now().0 + 86_400_000;
    let t = Instant::now();
    let tx = c.transaction()?;
    {
        let mut ins = tx.prepare(
            "INSERT INTO reminders (kind, conversation_id, text, due_at, timezone, created_at, updated_at)
             VALUES ('reminder', 1, ?1, ?2, 'UTC', 0, 0)",
        )?;
        for i in 0..n {
            ins.execute(rusqlite::params![
                format!("bench item {i}"),
                far + i as i64 * 1000
            ])?;
        }
    }
    tx.commit()?;
    let insert = t.elapsed();
    let mut lookup = Vec::with_capacity(rounds);
    let mut q = c.prepare(
        "SELECT id FROM reminders WHERE status = 'active' AND due_at <= ?1 ORDER BY due_at, id LIMIT 64",
    )?;
    let mut next = c.prepare("SELECT min(due_at) FROM reminders WHERE status = 'active'")?;
    for _ in 0..rounds {
        let t = Instant::now();
        let ids: Vec<i64> = q
            .query_map([UnixMillis::now().0], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        let _: Option<i64> = next.query_row([], |r| r.get(0))?;
        lookup.push(t.elapsed());
        std::hint::black_box(ids);
    }
    lookup.sort();
    Ok(Peer { insert, lookup })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, rounds) = if full { (10_000, 200) } else { (200, 10) };
    let o = ours(n, rounds).await?;
    let p = peer(n, rounds)?;
    let note = if full {
        ""
    } else {
        " [smoke run, not a measurement: run `cargo bench --bench reminders`]"
    };
    println!("reminder scheduling, {n} pending{note}");
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "", "ours", "rusqlite", "ratio"
    );
    let row = |name: &str, a: Duration, b: Option<Duration>| {
        let (bs, ratio) = match b {
            Some(b) if b > Duration::ZERO => {
                (ms(b), format!("{:.1}x", a.as_secs_f64() / b.as_secs_f64()))
            }
            _ => ("—".to_owned(), "—".to_owned()),
        };
        println!("{name:<44} {:>14} {bs:>14} {ratio:>8}", ms(a));
    };
    let half = n / 2;
    row(
        &format!("insert {half}, one at a time (committed each)"),
        o.insert_serial,
        None,
    );
    row(
        &format!("insert {half}, 64 concurrent (group commit)"),
        o.insert_concurrent,
        None,
    );
    row(
        &format!("insert {n} (projected from 64 concurrent)"),
        o.insert_concurrent * 2,
        Some(p.insert),
    );
    println!(
        "{:<44} {:>14}",
        "  per reminder, one at a time",
        format!(
            "{:.0} µs",
            o.insert_serial.as_secs_f64() * 1e6 / half as f64
        )
    );
    println!(
        "{:<44} {:>14}",
        "  per reminder, 64 concurrent",
        format!(
            "{:.0} µs",
            o.insert_concurrent.as_secs_f64() * 1e6 / half as f64
        )
    );
    row(
        "next due: find + fire one, p50",
        pct(&o.next_due, 50.0),
        Some(pct(&p.lookup, 50.0)),
    );
    row(
        "next due: find + fire one, p99",
        pct(&o.next_due, 99.0),
        Some(pct(&p.lookup, 99.0)),
    );
    row(&format!("fire {} due at once", o.fired), o.fire_all, None);
    println!(
        "{:<44} {:>14}",
        "  firing throughput",
        format!(
            "{:.0} /s",
            o.fired as f64 / o.fire_all.as_secs_f64().max(1e-9)
        )
    );
    Ok(())
}
