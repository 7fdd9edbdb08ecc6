//! Shared test helpers: an in-process daemon on an ephemeral port with a temp data dir, and a
//! child-process daemon (the real binary) for signals, `kill -9` and systemd notify tests.

#![allow(dead_code)]

pub mod speech;
pub mod sync_server;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use local_assistant::app::{App, RunningApp};
use local_assistant::config::{Config, Secret};
use local_assistant::messaging::outbox::DeliveryHandler;

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A config for tests: port 0, the given data dir, a fixed token, fast retries.
pub fn test_config(data_dir: &Path) -> Config {
    let mut cfg = Config::defaults();
    cfg.server.listen = "127.0.0.1:0".parse().unwrap_or(cfg.server.listen);
    cfg.data_dir = data_dir.to_path_buf();
    cfg.api.token = Some(Secret::new(TOKEN));
    cfg.outbox.backoff_base = Duration::from_millis(40);
    cfg.outbox.backoff_max = Duration::from_millis(400);
    cfg.outbox.poll_interval = Duration::from_millis(50);
    cfg.server.shutdown_grace = Duration::from_secs(5);
    // Most tests exercise the fast path; LLM tests switch the backend back on.
    cfg.llm.backend = local_assistant::config::LlmBackendKind::None;
    cfg.assistant.timezone =
        jiff::tz::TimeZone::get("Europe/Berlin").unwrap_or(jiff::tz::TimeZone::UTC);
    cfg
}

/// The daemon running in this process.
pub struct TestDaemon {
    pub app: Option<RunningApp>,
    pub base: String,
    pub client: reqwest::Client,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl TestDaemon {
    pub async fn start() -> TestResult<Self> {
        Self::start_with(|_| {}, Vec::new()).await
    }

    pub async fn start_with(
        tweak: impl FnOnce(&mut Config),
        channels: Vec<(&str, Arc<dyn DeliveryHandler>)>,
    ) -> TestResult<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut me = Self::start_in(&dir, tweak, channels).await?;
        me._tmp = Some(tmp);
        Ok(me)
    }

    /// Start on an existing data dir (for restart tests); the caller owns the directory.
    pub async fn start_in(
        dir: &Path,
        tweak: impl FnOnce(&mut Config),
        channels: Vec<(&str, Arc<dyn DeliveryHandler>)>,
    ) -> TestResult<Self> {
        let mut cfg = test_config(dir);
        tweak(&mut cfg);
        let mut builder = App::builder(cfg);
        for (name, h) in channels {
            builder = builder.channel(name, h);
        }
        let app = builder.start().await?;
        let base = format!("http://{}", app.local_addr());
        Ok(Self {
            app: Some(app),
            base,
            client: reqwest::Client::new(),
            dir: dir.to_path_buf(),
            _tmp: None,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(TOKEN)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(TOKEN)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!(
            "ws://{}{}?access_token={TOKEN}",
            self.base.trim_start_matches("http://"),
            path
        )
    }

    pub fn app(&self) -> &RunningApp {
        match &self.app {
            Some(a) => a,
            None => panic!("daemon already stopped"),
        }
    }

    pub async fn stop(&mut self) -> TestResult {
        if let Some(app) = self.app.take() {
            app.stop().await?;
        }
        Ok(())
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown_token().cancel();
        }
    }
}

/// A free TCP port on loopback (for child processes that need a known address).
pub fn free_port() -> TestResult<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_local-assistant")
}

/// The real binary running `serve` as a child process.
pub struct ChildDaemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl ChildDaemon {
    /// Spawn `serve --listen 127.0.0.1:PORT --data-dir DIR` with extra env vars, and wait
    /// until `/healthz` answers.
    pub fn spawn(data_dir: &Path, env: &[(&str, &str)]) -> TestResult<Self> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("LOCAL_ASSISTANT_API_TOKEN", TOKEN)
            .env("LOCAL_ASSISTANT_LOG__FORMAT", "stderr")
            .env("LOCAL_ASSISTANT_LLM__BACKEND", "none")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("LOCAL_ASSISTANT_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let mut me = Self {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
        };
        me.wait_healthy(Duration::from_secs(30))?;
        Ok(me)
    }

    fn wait_healthy(&mut self, within: Duration) -> TestResult {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("daemon exited early with {status}").into());
            }
            if raw_get(self.addr, "/healthz").is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("daemon did not become healthy in time".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) -> TestResult {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, sig) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }

    pub fn kill9(&mut self) -> TestResult {
        self.signal(libc::SIGKILL)?;
        self.child.wait()?;
        Ok(())
    }

    pub fn wait_exit(&mut self, within: Duration) -> TestResult<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err("daemon did not exit in time".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET (no client library) returning the whole response.
pub fn raw_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Open the daemon's database directly (a real SQLite file) for assertions.
pub fn open_db(data_dir: &Path) -> TestResult<rusqlite::Connection> {
    Ok(rusqlite::Connection::open(
        data_dir.join("local-assistant.db"),
    )?)
}
