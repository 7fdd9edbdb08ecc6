//! The real binary's lifecycle: graceful shutdown on SIGTERM/SIGINT draining an in-flight
//! request, the bounded grace period, the systemd notify protocol and watchdog, the token
//! file, and the CLI's `config check`, `init-db`, `doctor` and `version`.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{binary, open_db, raw_get, ChildDaemon, TestResult, TOKEN};

fn start_slow_post(addr: std::net::SocketAddr, key: &str) -> TestResult<(TcpStream, Vec<u8>)> {
    let body =
        format!(r#"{{"from": "+15553334444", "text": "slow upload", "idempotency_key": "{key}"}}"#)
            .into_bytes();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        s,
        "POST /api/v1/messages/inbound HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    let half = body.len() / 2;
    s.write_all(&body[..half])?;
    s.flush()?;
    Ok((s, body[half..].to_vec()))
}

#[test]
fn sigterm_drains_an_in_flight_slow_request_then_exits_0() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut d = ChildDaemon::spawn(tmp.path(), &[])?;
    let (mut s, rest) = start_slow_post(d.addr, "slow-1")?;
    std::thread::sleep(Duration::from_millis(200));
    d.signal(libc::SIGTERM)?;
    std::thread::sleep(Duration::from_millis(400));
    // Still draining: the process is alive, and no new connections are taken.
    assert!(
        d.child.try_wait()?.is_none(),
        "exited before the in-flight request finished"
    );
    assert!(
        raw_get(d.addr, "/healthz").is_err(),
        "a new request was served after SIGTERM"
    );
    s.write_all(&rest)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    let status = d.wait_exit(Duration::from_secs(10))?;
    assert_eq!(status.code(), Some(0));
    let n: i64 = open_db(tmp.path())?.query_row(
        "SELECT count(*) FROM inbox WHERE idempotency_key = 'slow-1'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(n, 1);
    Ok(())
}

#[test]
fn a_request_that_never_finishes_is_cut_off_after_the_grace_period() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut d = ChildDaemon::spawn(
        tmp.path(),
        &[("LOCAL_ASSISTANT_SERVER__SHUTDOWN_GRACE_SECS", "1")],
    )?;
    let (_s, _rest) = start_slow_post(d.addr, "never")?;
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    d.signal(libc::SIGINT)?;
    let status = d.wait_exit(Duration::from_secs(10))?;
    assert_eq!(status.code(), Some(0));
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "did not wait for the grace period"
    );
    Ok(())
}

/// Collect notify datagrams for `for_` (or until `until` matches one).
fn collect(
    sock: &UnixDatagram,
    for_: Duration,
    until: impl Fn(&str) -> bool,
) -> TestResult<Vec<String>> {
    let deadline = Instant::now() + for_;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let stop = until(&msg);
                out.push(msg);
                if stop {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn pings(msgs: &[String]) -> usize {
    msgs.iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

#[test]
fn systemd_sees_ready_status_and_watchdog_pings_that_stop_when_the_db_hangs() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    let data = tmp.path().join("data");
    let sock_str = sock_path.to_string_lossy().into_owned();
    let mut d = ChildDaemon::spawn(
        &data,
        &[
            ("NOTIFY_SOCKET", sock_str.as_str()),
            ("WATCHDOG_USEC", "400000"),
        ],
    )?;

    // READY=1 together with a status line, after the listener is bound.
    let first = collect(&sock, Duration::from_secs(10), |m| m.contains("READY=1"))?;
    let ready = first
        .iter()
        .find(|m| m.contains("READY=1"))
        .ok_or_else(|| format!("no READY=1 in {first:?}"))?;
    assert!(
        ready.contains(&format!("STATUS=ready: listening on {}", d.addr)),
        "{ready}"
    );
    assert!(
        first
            .iter()
            .any(|m| m.contains("STATUS=opening the database")),
        "{first:?}"
    );

    // Pings every ~200 ms while healthy.
    let healthy = collect(&sock, Duration::from_millis(1500), |_| false)?;
    assert!(
        pings(&healthy) >= 4,
        "too few pings while healthy: {healthy:?}"
    );

    // Wedge the database: another process holds the write lock.
    let blocker = open_db(&data)?;
    blocker.execute_batch("BEGIN EXCLUSIVE")?;
    // One probe may already have passed; then silence, with an explanation in STATUS.
    let _settle = collect(&sock, Duration::from_millis(500), |_| false)?;
    let wedged = collect(&sock, Duration::from_millis(2000), |_| false)?;
    assert_eq!(
        pings(&wedged),
        0,
        "pinged while the database was wedged: {wedged:?}"
    );
    let all_status: Vec<&String> = _settle
        .iter()
        .chain(wedged.iter())
        .filter(|m| m.contains("STATUS=unhealthy"))
        .collect();
    assert!(
        !all_status.is_empty(),
        "no unhealthy STATUS: {_settle:?} {wedged:?}"
    );

    // Released: pings resume.
    blocker.execute_batch("ROLLBACK")?;
    drop(blocker);
    let recovered = collect(&sock, Duration::from_secs(3), |m| m.contains("WATCHDOG=1"))?;
    assert!(
        pings(&recovered) >= 1,
        "pings did not resume: {recovered:?}"
    );

    // Stopping is announced.
    d.signal(libc::SIGTERM)?;
    let stopping = collect(&sock, Duration::from_secs(5), |m| m.contains("STOPPING=1"))?;
    assert!(
        stopping.iter().any(|m| m.contains("STOPPING=1")),
        "{stopping:?}"
    );
    assert_eq!(d.wait_exit(Duration::from_secs(10))?.code(), Some(0));
    Ok(())
}

#[test]
fn without_a_configured_token_one_is_generated_privately_and_required() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let port = common::free_port()?;
    let mut child = Command::new(binary())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(tmp.path())
        .env_remove("LOCAL_ASSISTANT_API_TOKEN")
        .env_remove("NOTIFY_SOCKET")
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while raw_get(addr, "/healthz").is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let token_file = tmp.path().join("api-token");
    let mode = std::fs::metadata(&token_file)?.permissions().mode();
    let token = std::fs::read_to_string(&token_file)?.trim().to_owned();
    let authed = |t: &str| -> TestResult<String> {
        let mut s = TcpStream::connect(addr)?;
        write!(s, "GET /api/v1/version HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {t}\r\nConnection: close\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    let good = authed(&token);
    let bad = authed(TOKEN);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode & 0o777, 0o600);
    assert!(token.len() >= 40);
    assert!(good?.starts_with("HTTP/1.1 200"));
    assert!(bad?.starts_with("HTTP/1.1 401"));
    Ok(())
}

fn run(args: &[&str], env: &[(&str, &str)]) -> TestResult<(i32, String, String)> {
    let mut cmd = Command::new(binary());
    cmd.args(args).env_remove("LOCAL_ASSISTANT_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn config_check_names_the_bad_key_or_variable() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let good = tmp.path().join("good.toml");
    std::fs::write(&good, "[server]\nlisten = \"0.0.0.0:8080\"\n")?;
    let (code, out, _) = run(
        &[
            "config",
            "check",
            "--config",
            good.to_str().unwrap_or_default(),
        ],
        &[],
    )?;
    assert_eq!(code, 0);
    assert!(out.contains("config OK"), "{out}");

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[outbox]\nmax_attempts = \"many\"\n")?;
    let (code, _, err) = run(
        &[
            "config",
            "check",
            "--config",
            bad.to_str().unwrap_or_default(),
        ],
        &[],
    )?;
    assert_eq!(
        code, 78,
        "config errors exit with EX_CONFIG so systemd does not restart-loop"
    );
    assert!(err.contains("`outbox.max_attempts`"), "{err}");

    let (code, _, err) = run(
        &["config", "check"],
        &[("LOCAL_ASSISTANT_STORE__READERS", "0")],
    )?;
    assert_eq!(code, 78);
    assert!(
        err.contains("`store.readers`") && err.contains("from 1 to 64"),
        "{err}"
    );

    let (code, _, err) = run(
        &["config", "check"],
        &[("LOCAL_ASSISTANT_SERVR__LISTEN", "x")],
    )?;
    assert_eq!(code, 78);
    // serve refuses a bad config the same way, before binding anything.
    let (code, _, err2) = run(&["serve"], &[("LOCAL_ASSISTANT_SERVER__LISTEN", "nope")])?;
    assert_eq!(code, 78);
    assert!(err2.contains("`server.listen`"), "{err2}");
    assert!(err.contains("LOCAL_ASSISTANT_SERVR__LISTEN"), "{err}");

    let (code, _, err) = run(
        &["config", "check", "--config", "/nonexistent/config.toml"],
        &[],
    )?;
    assert_eq!(code, 78);
    assert!(err.contains("/nonexistent/config.toml"), "{err}");
    Ok(())
}

/// `doctor`'s voice lines as printed: the ALSA devices, then the configured microphone and
/// speaker opened for real. A device that does not open fails the report only when the voice
/// loop is enabled.
#[test]
fn doctor_opens_the_configured_microphone_and_speaker() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir_s = tmp.path().to_str().unwrap_or_default();
    let devices = [
        ("LOCAL_ASSISTANT_VOICE__CAPTURE_DEVICE", "null"),
        ("LOCAL_ASSISTANT_VOICE__PLAYBACK_DEVICE", "hw:99,0"),
    ];
    let voice_lines = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.get(5..).is_some_and(|rest| rest.starts_with("voice ")))
            .map(str::to_owned)
            .collect()
    };
    // A line of that level holding every one of `parts`.
    let is = |line: &str, level: &str, parts: &[&str]| {
        line.starts_with(level) && parts.iter().all(|p| line.contains(p))
    };

    let (code, out, err) = run(&["doctor", "--data-dir", dir_s], &devices)?;
    assert_eq!(code, 0, "{out}{err}");
    let lines = voice_lines(&out);
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        is(&lines[0], "OK", &["ALSA capture devices: ", "null"]),
        "{out}"
    );
    assert!(is(&lines[1], "OK", &["ALSA playback devices: "]), "{out}");
    assert!(
        is(&lines[2], "OK", &["microphone null: ", "16000 Hz"]),
        "{out}"
    );
    assert!(is(&lines[3], "WARN", &["speaker", "hw:99,0"]), "{out}");

    let mut enabled = devices.to_vec();
    enabled.push(("LOCAL_ASSISTANT_VOICE__ENABLED", "true"));
    let (code, out, err) = run(&["doctor", "--data-dir", dir_s], &enabled)?;
    assert_eq!(code, 1, "{out}{err}");
    let lines = voice_lines(&out);
    assert!(
        lines.iter().any(|l| is(l, "FAIL", &["speaker", "hw:99,0"])),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| is(l, "OK", &["microphone null: "])),
        "{out}"
    );
    Ok(())
}

#[test]
fn init_db_migrates_once_and_doctor_reports_per_line() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("state");
    let dir_s = dir.to_str().unwrap_or_default();
    let (code, out, err) = run(&["init-db", "--data-dir", dir_s], &[])?;
    assert_eq!(code, 0, "{err}");
    let n = local_assistant::store::migrations::MIGRATIONS.len();
    assert!(
        out.contains(&format!("schema version {n} ({n} migration(s) applied)")),
        "{out}"
    );
    let (code, out, _) = run(&["init-db", "--data-dir", dir_s], &[])?;
    assert_eq!(code, 0);
    assert!(out.contains("0 migration(s) applied"), "{out}");

    let (code, out, _) = run(&["doctor", "--data-dir", dir_s], &[])?;
    assert_eq!(code, 0, "{out}");
    for name in [
        "config",
        "data dir",
        "database",
        "disk",
        "api token",
        "audio",
        "serial",
        "gpio",
        "models",
    ] {
        assert!(
            out.lines()
                .any(|l| (l.starts_with("OK") || l.starts_with("WARN")) && l.contains(name)),
            "no line for {name}:\n{out}"
        );
    }
    // A damaged database is a FAIL and a non-zero exit.
    std::fs::write(dir.join("local-assistant.db"), b"garbage, not sqlite")?;
    let _ = std::fs::remove_file(dir.join("local-assistant.db-wal"));
    let _ = std::fs::remove_file(dir.join("local-assistant.db-shm"));
    let (code, out, _) = run(&["doctor", "--data-dir", dir_s], &[])?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("database")),
        "{out}"
    );
    // So is a bad config.
    let (code, out, _) = run(&["doctor"], &[("LOCAL_ASSISTANT_SERVER__LISTEN", "nope")])?;
    assert_eq!(code, 78);
    assert!(
        out.starts_with("FAIL") && out.contains("server.listen"),
        "{out}"
    );
    Ok(())
}

#[test]
fn version_is_printed_both_ways() -> TestResult {
    let want = format!("local-assistant {}", env!("CARGO_PKG_VERSION"));
    let (code, out, _) = run(&["version"], &[])?;
    assert_eq!((code, out.trim()), (0, want.as_str()));
    let (code, out, _) = run(&["--version"], &[])?;
    assert_eq!((code, out.trim()), (0, want.as_str()));
    Ok(())
}
