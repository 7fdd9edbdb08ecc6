//! The `local-assistant` command line: `serve`, `init-db`, `config check`, `doctor`, `models`,
//! `version`.
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
    /// Fetch, verify, list and locate models (`models pull --default`, `models list`).
    Models {
        #[command(subcommand)]
        command: local_assistant::models::cli::ModelsCommand,
        /// State directory (overrides data_dir); models live in <DIR>/models.
        #[arg(long, value_name = "DIR", global = true)]
        data_dir: Option<PathBuf>,
    },
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
        Command::Models { command, data_dir } => {
            let cfg = load(
                cli.config.as_ref(),
                &Overrides {
                    listen: None,
                    data_dir,
                },
            )?;
            local_assistant::models::cli::run(command, &cfg.models_dir())?;
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
    let app = App::builder(cfg).start().await?;
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
