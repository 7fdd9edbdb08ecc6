//! The `local-assistant` command line: `serve`, `init-db`, `config check`, `doctor`, `models`,
//! `listen`, `say`, `transcribe`, `version`.
//!
//! The only place that uses `anyhow`: errors from the library are printed once, with their
//! chain, and turned into an exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use local_assistant::app::App;
use local_assistant::config::{Config, ConfigError, Overrides};

/// sysexits.h: configuration error.
const EX_CONFIG: u8 = 78;
use local_assistant::platform::{doctor, logging};
use local_assistant::store;

#[derive(Parser, Debug)]
#[command(
    name = "local-assistant",
    version,
    about = "An offline-first home assistant appliance"
)]
struct Cli {
    /// Config file (default: /etc/local-assistant/config.toml if it exists, else built-in defaults).
    #[arg(long, global = true, env = "LOCAL_ASSISTANT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Listen on ADDR:PORT (overrides server.listen).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<SocketAddr>,
        /// State directory (overrides data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Create the database and apply migrations, then exit.
    InitDb {
        /// State directory (overrides data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check configuration, database, disk and devices; exits non-zero on FAIL.
    Doctor {
        /// State directory (overrides data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Talk to the assistant: one turn with -m, else an interactive session (one line, one turn).
    Chat {
        /// One message; the reply is printed on stdout.
        #[arg(short = 'm', long = "message", value_name = "TEXT")]
        message: Option<String>,
        /// Continue this conversation (its id is printed on stderr after each reply).
        #[arg(long, value_name = "ID")]
        conversation: Option<i64>,
        /// State directory (overrides data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Fetch, verify, list and locate models (`models pull --default`, `models list`).
    Models {
        #[command(subcommand)]
        command: local_assistant::models::cli::ModelsCommand,
        /// State directory (overrides data_dir); models live in <DIR>/models.
        #[arg(long, value_name = "DIR", global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Print the voice activity segments and wake-word detections in a WAV file, with times.
    Listen {
        /// The recording (any WAV; resampled to 16 kHz mono).
        file: PathBuf,
        /// State directory (overrides data_dir); models live in <DIR>/models.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Speak text into a WAV file (16-bit mono): `say "Hello." -o hello.wav [--rate 8000]`.
    Say(local_assistant::speech::cli_say::SayArgs),
    /// Transcribe a WAV file (any rate or channel count) with the configured recognizer.
    Transcribe(local_assistant::speech::cli_transcribe::TranscribeArgs),
    /// Run the voice loop on files: `voice --in IN.wav --out OUT.wav [--button-at S] [--fast]`.
    Voice(local_assistant::channels::local::cli::VoiceArgs),
    /// Print the version.
    Version,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Load and validate the configuration; exits non-zero with the bad key named.
    Check,
}

fn load(cli_config: Option<&PathBuf>, overrides: &Overrides) -> anyhow::Result<Config> {
    Ok(Config::load(
        cli_config.map(PathBuf::as_path),
        std::env::vars(),
        overrides,
    )?)
}

fn main() -> ExitCode {
    local_assistant::platform::heap::limit_arenas();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // EX_CONFIG: systemd's RestartPreventExitStatus= keeps a bad config from
            // turning into a restart (and, on an appliance, a reboot) loop.
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("local-assistant {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let cfg = load(cli.config.as_ref(), &Overrides::default())?;
            match &cfg.source {
                Some(p) => println!("config OK: {}", p.display()),
                None => println!("config OK: built-in defaults"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::InitDb { data_dir } => {
            let cfg = load(
                cli.config.as_ref(),
                &Overrides {
                    listen: None,
                    data_dir,
                },
            )?;
            let path = cfg.db_path();
            let applied = store::init_db(&path, cfg.store.busy_timeout)
                .with_context(|| format!("initialising {}", path.display()))?;
            println!(
                "database {} at schema version {} ({applied} migration(s) applied)",
                path.display(),
                store::migrations::latest_version()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { data_dir } => {
            let cfg = match load(
                cli.config.as_ref(),
                &Overrides {
                    listen: None,
                    data_dir,
                },
            ) {
                Ok(c) => c,
                Err(e) => {
                    println!("{} {:<10} {e:#}", doctor::Level::Fail, "config");
                    return Ok(ExitCode::from(EX_CONFIG));
                }
            };
            let report = doctor::run(&cfg, &doctor::DeviceRoots::default());
            for line in &report {
                println!("{line}");
            }
            let failed = report.iter().any(|c| c.level == doctor::Level::Fail);
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Chat {
            message,
            conversation,
            data_dir,
        } => {
            let cfg = load(
                cli.config.as_ref(),
                &Overrides {
                    listen: None,
                    data_dir,
                },
            )?;
            // The reply owns stdout; logs (each LLM turn's token counts and timings, at info)
            // go to stderr only when asked for.
            if std::env::var_os("RUST_LOG").is_some() {
                logging::init(&cfg.log);
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(chat(cfg, message, conversation))
        }
        Command::Models { command, data_dir } => {
            let cfg = load(
                cli.config.as_ref(),
                &Overrides {
                    listen: None,
                    data_dir,
                },
            )?;
            local_assistant::models::cli::run(command, &cfg.models_dir(), &cfg.used_models())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Listen { file, data_dir } => {
            let cfg = load(
                cli.config.as_ref(),
                &Overrides {
                    listen: None,
                    data_dir,
                },
            )?;
            local_assistant::speech::listen::run(&cfg, &file)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Voice(args) => {
            let cfg = load(
                cli.config.as_ref(),
                &Overrides {
                    listen: None,
                    data_dir: args.data_dir.clone(),
                },
            )?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(local_assistant::channels::local::cli::run(&args, cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Say(args) => {
            let data_dir = args.data_dir.clone();
            let cfg = load(
                cli.config.as_ref(),
                &Overrides {
                    listen: None,
                    data_dir,
                },
            )?;
            local_assistant::speech::cli_say::run(&args, &cfg)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Transcribe(args) => {
            let overrides = Overrides {
                listen: None,
                data_dir: args.data_dir.clone(),
            };
            let cfg = load(cli.config.as_ref(), &overrides)?;
            local_assistant::speech::cli_transcribe::run(&args, &cfg)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { listen, data_dir } => {
            let cfg = load(cli.config.as_ref(), &Overrides { listen, data_dir })?;
            logging::init(&cfg.log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("la-runtime")
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut builder = App::builder(cfg.clone());
    if cfg.voice.enabled {
        match local_assistant::channels::local::devices(&cfg.voice) {
            Ok(devices) => {
                builder = builder.voice(local_assistant::app::VoiceSetup {
                    devices,
                    events: None,
                    engines: None,
                });
            }
            Err(e) => tracing::error!(error = %e, "local voice unavailable"),
        }
    }
    let app = builder.start().await?;
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "shutting down");
        stop.cancel();
    });
    app.wait().await?;
    Ok(())
}

async fn chat(
    cfg: Config,
    message: Option<String>,
    conversation: Option<i64>,
) -> anyhow::Result<ExitCode> {
    use local_assistant::domain::ConversationId;
    use local_assistant::nlu::llm::Priority;
    use local_assistant::orchestrator::standalone::Engine;
    use local_assistant::orchestrator::TurnEvent;
    use std::io::{BufRead, IsTerminal, Write};

    let engine = Engine::open(&cfg).await?;
    let mut conv = conversation.map(ConversationId);
    let interactive = message.is_none();
    let mut lines: Box<dyn Iterator<Item = std::io::Result<String>>> = match message {
        Some(m) => Box::new(std::iter::once(Ok(m))),
        None => Box::new(std::io::stdin().lock().lines()),
    };
    let prompt = interactive && std::io::stdin().is_terminal();
    let mut status = ExitCode::SUCCESS;
    loop {
        if prompt {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let text = line.trim().to_owned();
        if text.is_empty() {
            continue;
        }
        if interactive && matches!(text.as_str(), "/quit" | "/exit") {
            break;
        }
        let mut handle = match engine
            .orchestrator
            .chat(conv, None, text, Priority::Message)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                engine.close().await;
                return Err(e.into());
            }
        };
        let mut first = true;
        let mut done = false;
        while let Some(ev) = handle.events.recv().await {
            match ev {
                TurnEvent::Chunk(s) => {
                    print!("{}{s}", if first { "" } else { " " });
                    first = false;
                    let _ = std::io::stdout().flush();
                }
                TurnEvent::Done(summary) => {
                    println!();
                    conv = Some(summary.conversation_id);
                    eprintln!(
                        "[conversation {} · {} · {} · {:.0} ms]",
                        summary.conversation_id,
                        summary.intent.as_deref().unwrap_or("llm"),
                        summary.outcome,
                        summary.timings.total_ms
                    );
                    done = true;
                }
            }
        }
        if !done {
            eprintln!("error: the turn failed before it could be stored");
            status = ExitCode::from(1);
        }
    }
    engine.close().await;
    Ok(status)
}
