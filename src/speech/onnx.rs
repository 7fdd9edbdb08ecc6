//! ONNX Runtime, loaded at run time (`ort` with `load-dynamic`): the library comes from the
//! `onnxruntime` model (`local-assistant models pull onnxruntime`), from `[speech] onnxruntime`,
//! or from `ORT_DYLIB_PATH`. One environment per process; every ONNX engine (Piper, Silero VAD,
//! openWakeWord) makes its sessions through [`session`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use super::SpeechError;

/// The manifest model that ships the library.
pub const MODEL: &str = "onnxruntime";

static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Where the library is: `explicit` if given, else `ORT_DYLIB_PATH`, else the
/// `libonnxruntime.so*` inside `<models_dir>/onnxruntime/`.
pub fn library_path(explicit: Option<&Path>, models_dir: &Path) -> Result<PathBuf, SpeechError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let dir = models_dir.join(MODEL);
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        let mut libs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so") && !n.ends_with(".part"))
            })
            .collect();
        libs.sort();
        libs.pop()
    });
    found.ok_or_else(|| SpeechError::Runtime {
        library: "ONNX Runtime".into(),
        reason: format!(
            "no libonnxruntime.so in {}; run `local-assistant models pull {MODEL}` or set [speech] onnxruntime",
            dir.display()
        ),
    })
}

/// Load the library once per process (later calls reuse it; a different path later is ignored).
pub fn init(
    explicit: Option<&Path>,
    models_dir: &Path,
) -> Result<&'static Environment, SpeechError> {
    if let Some(r) = ENV.get() {
        return r.as_ref().map_err(|e| runtime_err(e.clone()));
    }
    let path = library_path(explicit, models_dir)?;
    if !path.is_file() {
        return Err(runtime_err(format!(
            "{} does not exist; run `local-assistant models pull {MODEL}`",
            path.display()
        )));
    }
    let made = ENV.get_or_init(|| {
        std::panic::catch_unwind(|| {
            ort::init_from(&path)
                .map_err(|e| format!("cannot load {}: {e}", path.display()))?
                .with_name("local-assistant")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
        })
        .unwrap_or_else(|_| Err(format!("loading {} panicked", path.display())))
    });
    made.as_ref().map_err(|e| runtime_err(e.clone()))
}

fn runtime_err(reason: String) -> SpeechError {
    SpeechError::Runtime {
        library: "ONNX Runtime".into(),
        reason,
    }
}

/// A session for the model at `path` with `threads` intra-op threads (inter-op 1).
pub fn session(env: &Environment, path: &Path, threads: usize) -> Result<Session, SpeechError> {
    session_from(env, path, None, threads, true, None)
}

/// Run options that return the CPU arena's free memory to the system at the end of the run.
/// A model whose working memory grows with its input (Piper: hundreds of MB for a long sentence)
/// runs with the arena, whose memory later runs reuse instead of faulting in fresh pages, and
/// then one run with these when idle, so that the arena does not hold its largest input's
/// memory for the rest of the process's life.
pub fn shrink_arena() -> Result<ort::session::RunOptions, SpeechError> {
    let mut options =
        ort::session::RunOptions::new().map_err(|e| runtime_err(format!("run options: {e}")))?;
    options
        .set("memory.enable_memory_arena_shrinkage", "cpu:0")
        .map_err(|e| runtime_err(format!("run options: {e}")))?;
    Ok(options)
}

/// A session for the model at `path`, or for `bytes` (the model rewritten) if given; `arena`
/// keeps intermediate tensors in ONNX Runtime's arena between runs (see [`shrink_arena`]);
/// `operators` are the custom operators the model uses, if any.
pub fn session_from(
    env: &Environment,
    path: &Path,
    bytes: Option<&[u8]>,
    threads: usize,
    arena: bool,
    operators: Option<ort::operator::OperatorDomain>,
) -> Result<Session, SpeechError> {
    let model_err = |reason: String| SpeechError::Model {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_none() && !path.is_file() {
        return Err(model_err(
            "missing; run `local-assistant models pull` for it".into(),
        ));
    }
    let mut builder = Session::builder(env)
        .map_err(|e| model_err(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| model_err(e.to_string()))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| model_err(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| model_err(e.to_string()))?
        // The pool's threads stop spinning when a run returns: otherwise they keep a core busy
        // for a while after it, which is taken from whatever runs next (Piper's decoder on our
        // kernels with two threads ran at half speed: 180 ms for the bench's answer, 134 ms
        // with this), and from the rest of the appliance.
        .with_config_entry("session.force_spinning_stop", "1")
        .map_err(|e| model_err(e.to_string()))?
        .with_memory_pattern(arena)
        .map_err(|e| model_err(e.to_string()))?
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(arena).build()])
        .map_err(|e| model_err(e.to_string()))?;
    if let Some(domain) = operators {
        builder = builder
            .with_operators(domain)
            .map_err(|e| model_err(e.to_string()))?;
    }
    match bytes {
        Some(bytes) => builder.commit_from_memory(bytes),
        None => builder.commit_from_file(path),
    }
    .map_err(|e| model_err(e.to_string()))
}
