//! Durable inbound throughput and latency: `POST /api/v1/messages/inbound` of the real daemon
//! beside a bare axum handler, at 1, 16 and 64 concurrent clients.
//!
//! What it measures:
//!
//! * **durable** — the real server started in-process (`App::builder(..).start()`, temp data
//!   dir, fixed token). Every `202 Accepted` means the message and its inbox row were committed
//!   with SQLite `synchronous=FULL` (group commit in the store's writer thread), so "durable
//!   msg/s" is acknowledged-and-on-disk messages per second.
//! * **bare** — a second axum `Router` on another ephemeral port in the same process, with one
//!   `POST /api/v1/messages/inbound` route that parses the same JSON body
//!   (`Json<serde_json::Value>`) and answers `200` without touching any database: the cost of
//!   the HTTP stack and the load generator alone.
//!
//! For each concurrency level C, C client tasks each own one keep-alive `reqwest::Client`
//! (one connection per client, like C independent senders; no shared pool to contend on) and
//! send requests back to back, each with a unique idempotency key, for a fixed time (default
//! 5 s after a 1 s warm-up on the same connections; `BENCH_SECS` changes the measured time).
//! Latency is measured per request from send to the full response body, kept per task in a
//! `Vec<u32>` of microseconds, merged and sorted for p50/p99 (nearest rank). Only 2xx count as
//! successes; non-2xx answers and transport errors are reported. The two servers share the
//! process and its multi-thread tokio runtime (the load generator too) but are measured one
//! after the other, never concurrently.
//!
//! After the durable runs the daemon is stopped and the real SQLite file
//! (`<data_dir>/local-assistant.db`) is opened to check that the number of `inbox` rows equals
//! the number of 2xx answers (warm-ups included); a mismatch makes the process exit non-zero.
//! To show where the time goes it also prints, per cell and for the measured phase only, the
//! commit rate, group-commit batch size and store write latency from the daemon's
//! `GET /metrics` (`db_commit_batch_size`, `db_write_duration_seconds`) and the CPU used by the
//! store writer thread and the tokio workers (Linux `/proc/self/task`), plus a one-off probe of
//! what a 4 KiB `write` + `fdatasync` costs in the data directory (the floor of one commit).
//!
//! Run: `cargo bench --bench inbound` (or `BENCH_SECS=10 cargo bench --bench inbound`). When
//! run without `--bench` (e.g. by `cargo test --all-targets`) it does a short smoke run.

use std::collections::HashMap;
use std::error::Error;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use local_assistant::app::App;
use local_assistant::config::{Config, Secret};

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const TOKEN: &str = "bench-token-0123456789";
const PATH: &str = "/api/v1/messages/inbound";
const LEVELS: [usize; 3] = [1, 16, 64];
const GOAL_RATE: f64 = 1_000.0;
const GOAL_P99_MS: f64 = 50.0;
const GOAL_CLIENTS: usize = 64;

/// Unique idempotency keys across the whole run.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// What one measured cell (one server, one concurrency level) produced.
#[derive(Default)]
struct Cell {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    elapsed: Duration,
    /// Microseconds of every 2xx request, sorted.
    latencies: Vec<u32>,
}

impl Cell {
    fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile in milliseconds (`NaN` without samples).
    fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let n = self.latencies.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        f64::from(self.latencies[rank - 1]) / 1_000.0
    }
}

/// Per-task counts.
#[derive(Default)]
struct TaskOut {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    latencies: Vec<u32>,
}

fn body(n: u64) -> Vec<u8> {
    let v = serde_json::json!({
        "from": "+15551234567",
        "text": format!("bench message {n}: are the lights in the kitchen still on?"),
        "idempotency_key": format!("bench-{n}"),
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// One client sending back to back until `deadline`.
async fn client_loop(client: reqwest::Client, url: Arc<str>, deadline: Instant) -> TaskOut {
    let mut out = TaskOut {
        latencies: Vec::with_capacity(8_192),
        ..TaskOut::default()
    };
    while Instant::now() < deadline {
        let payload = body(SEQ.fetch_add(1, Ordering::Relaxed));
        let started = Instant::now();
        let sent = client
            .post(&*url)
            .bearer_auth(TOKEN)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(payload)
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                // Read the whole body: it is part of the answer and frees the connection.
                let read = resp.bytes().await;
                let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
                if status.is_success() && read.is_ok() {
                    out.ok += 1;
                    out.latencies.push(micros);
                } else if status.is_success() {
                    out.errors += 1;
                } else {
                    out.non_2xx += 1;
                }
            }
            Err(_) => out.errors += 1,
        }
    }
    out
}

/// Run all `clients` concurrently against `url` for `duration`.
async fn run_phase(
    clients: &[reqwest::Client],
    url: &Arc<str>,
    duration: Duration,
) -> Result<Cell> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| tokio::spawn(client_loop(c.clone(), url.clone(), deadline)))
        .collect();
    let mut cell = Cell::default();
    for t in tasks {
        let out = t.await?;
        cell.ok += out.ok;
        cell.non_2xx += out.non_2xx;
        cell.errors += out.errors;
        cell.latencies.extend(out.latencies);
    }
    cell.elapsed = started.elapsed();
    cell.latencies.sort_unstable();
    Ok(cell)
}

fn new_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .build()?)
}

/// What a measured cell produced besides the requests: store and thread statistics.
struct Extras {
    warm_ok: u64,
    store: Option<StoreStats>,
    cpu: CpuByThread,
}

/// Warm up, then measure; store statistics (from `metrics`, when given) and thread CPU cover
/// the measured phase only.
async fn run_cell(
    addr: SocketAddr,
    clients: usize,
    warmup: Duration,
    duration: Duration,
    metrics: Option<&reqwest::Client>,
) -> Result<(Cell, Extras)> {
    let url: Arc<str> = format!("http://{addr}{PATH}").into();
    let pool = (0..clients)
        .map(|_| new_client())
        .collect::<Result<Vec<_>>>()?;
    let warm_ok = if warmup.is_zero() {
        0
    } else {
        run_phase(&pool, &url, warmup).await?.ok
    };
    let before = match metrics {
        Some(c) => Some(StoreStats::scrape(c, addr).await?),
        None => None,
    };
    let cpu_before = CpuByThread::sample();
    let cell = run_phase(&pool, &url, duration).await?;
    let cpu = CpuByThread::sample().since(&cpu_before);
    let store = match (metrics, before) {
        (Some(c), Some(before)) => Some(StoreStats::scrape(c, addr).await?.since(before)),
        _ => None,
    };
    Ok((
        cell,
        Extras {
            warm_ok,
            store,
            cpu,
        },
    ))
}

/// CPU seconds used by this process's threads, summed by thread name (Linux `/proc`; empty
/// elsewhere).
#[derive(Default)]
struct CpuByThread(HashMap<String, f64>);

impl CpuByThread {
    fn sample() -> Self {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
        let mut by_name = HashMap::new();
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            return Self(by_name);
        };
        for entry in dir.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = stat[open + 1..close].to_owned();
            // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
            let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let field = |i: usize| rest.get(i).and_then(|v| v.parse::<f64>().ok());
            if let (Some(user), Some(system)) = (field(11), field(12)) {
                *by_name.entry(name).or_insert(0.0) += (user + system) / ticks;
            }
        }
        Self(by_name)
    }

    fn since(&self, before: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// CPU seconds of the threads whose name starts with `prefix`.
    fn of(&self, prefix: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .fold(0.0, |acc, (_, v)| acc + v)
    }

    fn total(&self) -> f64 {
        self.0.values().fold(0.0, |acc, v| acc + v)
    }
}

/// Median `write` + `fdatasync` time of a 4 KiB append in `dir`: what one durable commit costs
/// this disk at the least.
fn fsync_probe(dir: &std::path::Path, rounds: usize) -> Result<f64> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        times.push(t.elapsed().as_secs_f64() * 1_000.0);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    times.sort_by(f64::total_cmp);
    Ok(times.get(times.len() / 2).copied().unwrap_or(f64::NAN))
}

/// The bare peer: same HTTP stack, same JSON parsing, no database.
async fn bare_inbound(Json(_body): Json<serde_json::Value>) -> StatusCode {
    StatusCode::OK
}

async fn start_bare() -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let router = Router::new().route(PATH, post(bare_inbound));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok((addr, tx))
}

/// Store-side counters scraped from `GET /metrics`.
#[derive(Clone, Copy, Default)]
struct StoreStats {
    batch_sum: f64,
    batch_count: f64,
    write_sum: f64,
    write_count: f64,
}

impl StoreStats {
    async fn scrape(client: &reqwest::Client, addr: SocketAddr) -> Result<Self> {
        let text = client
            .get(format!("http://{addr}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == name).then(|| v.trim().parse::<f64>().ok())?
                })
                .unwrap_or(f64::NAN)
        };
        Ok(Self {
            batch_sum: value("db_commit_batch_size_sum"),
            batch_count: value("db_commit_batch_size_count"),
            write_sum: value("db_write_duration_seconds_sum"),
            write_count: value("db_write_duration_seconds_count"),
        })
    }

    fn since(self, before: Self) -> Self {
        Self {
            batch_sum: self.batch_sum - before.batch_sum,
            batch_count: self.batch_count - before.batch_count,
            write_sum: self.write_sum - before.write_sum,
            write_count: self.write_count - before.write_count,
        }
    }
}

fn env_secs(name: &str, default: f64) -> Result<Duration> {
    match std::env::var(name) {
        Ok(s) => {
            let secs: f64 = s.trim().parse().map_err(|e| format!("{name}={s:?}: {e}"))?;
            if !(secs.is_finite() && secs > 0.0) {
                return Err(format!("{name}={s:?}: must be a positive number of seconds").into());
            }
            Ok(Duration::from_secs_f64(secs))
        }
        Err(_) => Ok(Duration::from_secs_f64(default)),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; anything else (cargo test --all-targets) is a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let duration = env_secs("BENCH_SECS", if full { 5.0 } else { 0.3 })?;
    let warmup = if full {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(100)
    };

    let tmp = tempfile::tempdir()?;
    let mut cfg = Config::defaults();
    cfg.server.listen = "127.0.0.1:0".parse()?;
    cfg.data_dir = tmp.path().to_path_buf();
    cfg.api.token = Some(Secret::new(TOKEN));
    // Measures durable acceptance only: no replies, no model.
    cfg.assistant.answer_inbound = false;
    cfg.llm.backend = local_assistant::config::LlmBackendKind::None;
    let db_path = cfg.db_path();
    let app = App::builder(cfg).start().await?;
    let durable_addr = app.local_addr();
    let (bare_addr, bare_stop) = start_bare().await?;
    let scraper = new_client()?;

    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let probe_dir = tmp.path().to_path_buf();
    let fsync_ms =
        tokio::task::spawn_blocking(move || fsync_probe(&probe_dir, if full { 200 } else { 10 }))
            .await??;
    println!("# inbound benchmark");
    println!();
    println!(
        "durable: {durable_addr} (data dir {}), bare: {bare_addr}; {} cores, {workers} tokio workers \
         shared by both servers and the load generator; one keep-alive reqwest::Client \
         (connection) per client task; warm-up {:.1} s, measured {:.1} s per cell; \
         median 4 KiB write+fdatasync in the data dir: {fsync_ms:.3} ms{}",
        tmp.path().display(),
        std::thread::available_parallelism().map_or(0, usize::from),
        warmup.as_secs_f64(),
        duration.as_secs_f64(),
        if full {
            ""
        } else {
            " (smoke run: not started by `cargo bench --bench inbound`; numbers meaningless)"
        },
    );
    println!();

    let mut rows = Vec::new();
    let mut durable_ok_total = 0u64;
    for &clients in &LEVELS {
        let (durable, d_extra) =
            run_cell(durable_addr, clients, warmup, duration, Some(&scraper)).await?;
        durable_ok_total += d_extra.warm_ok + durable.ok;
        let (bare, b_extra) = run_cell(bare_addr, clients, warmup, duration, None).await?;
        eprintln!(
            "done: {clients} clients: durable {:.0}/s, bare {:.0}/s",
            durable.rate(),
            bare.rate()
        );
        rows.push((clients, durable, bare, d_extra, b_extra));
    }

    println!("| clients | durable msg/s | p50 ms | p99 ms | bare req/s | bare p50 ms | bare p99 ms | durable/bare | non-2xx durable/bare | transport errors durable/bare |");
    println!("|--------:|--------------:|-------:|-------:|-----------:|------------:|------------:|-------------:|---------------------:|------------------------------:|");
    for (clients, d, b, _, _) in &rows {
        let ratio = if b.rate() > 0.0 {
            d.rate() / b.rate()
        } else {
            f64::NAN
        };
        println!(
            "| {clients} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {ratio:.3} | {} / {} | {} / {} |",
            d.rate(),
            d.percentile_ms(0.50),
            d.percentile_ms(0.99),
            b.rate(),
            b.percentile_ms(0.50),
            b.percentile_ms(0.99),
            d.non_2xx,
            b.non_2xx,
            d.errors,
            b.errors,
        );
    }
    println!();
    println!(
        "Where the time goes, measured phase only (store figures from the daemon's GET /metrics; \
         CPU from /proc/self/task, 100% = one core, {} cores in all):",
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    println!();
    println!("| clients | commits/s | mean msgs per commit | mean store write ms | store-writer CPU % | tokio workers CPU % | process CPU % | bare: tokio workers CPU % | bare: process CPU % |");
    println!("|--------:|----------:|---------------------:|--------------------:|-------------------:|--------------------:|--------------:|--------------------------:|--------------------:|");
    for (clients, d, b, de, be) in &rows {
        let secs = d.elapsed.as_secs_f64();
        let bsecs = b.elapsed.as_secs_f64();
        let s = de.store.unwrap_or_default();
        println!(
            "| {clients} | {:.0} | {:.1} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            s.batch_count / secs,
            s.batch_sum / s.batch_count,
            1_000.0 * s.write_sum / s.write_count,
            100.0 * de.cpu.of("store-writer") / secs,
            100.0 * de.cpu.of("tokio-rt-worker") / secs,
            100.0 * de.cpu.total() / secs,
            100.0 * be.cpu.of("tokio-rt-worker") / bsecs,
            100.0 * be.cpu.total() / bsecs,
        );
    }
    println!();

    let goal = rows
        .iter()
        .find(|r| r.0 == GOAL_CLIENTS)
        .map(|(_, d, _, _, _)| {
            let (rate, p99) = (d.rate(), d.percentile_ms(0.99));
            let met = rate >= GOAL_RATE && p99 <= GOAL_P99_MS;
            (met, rate, p99)
        });
    if let Some((met, rate, p99)) = goal {
        println!(
            "Goal (>= {GOAL_RATE:.0} durable msg/s and p99 <= {GOAL_P99_MS:.0} ms at {GOAL_CLIENTS} clients): {} \
             ({rate:.0} msg/s, p99 {p99:.2} ms){}",
            if met { "MET" } else { "NOT MET" },
            if full { "" } else { " [smoke run, not a measurement]" },
        );
    }

    let _ = bare_stop.send(());
    app.stop().await?;
    let conn = rusqlite::Connection::open_with_flags(
        &db_path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let rows_stored: i64 = conn.query_row("SELECT count(*) FROM inbox", [], |r| r.get(0))?;
    let rows_stored = u64::try_from(rows_stored)?;
    let same = rows_stored == durable_ok_total;
    println!(
        "Durability check: {rows_stored} rows in inbox of {} vs {durable_ok_total} 2xx answers (warm-ups included): {}",
        db_path.display(),
        if same { "OK" } else { "MISMATCH" }
    );
    if !same {
        return Err(format!(
            "inbox holds {rows_stored} rows but the server answered 2xx {durable_ok_total} times"
        )
        .into());
    }
    Ok(())
}
