//! The local voice loop's response latency: end of speech (the VAD's decision) → first audio
//! handed to the speaker, with the default models (Silero VAD, openWakeWord hey_jarvis,
//! Whisper tiny.en, the Piper voice, SmolLM2 on candle), through the same loop a device runs,
//! on file-backed audio (`--fast`: time does not pass while the device thinks, so turns do not
//! overlap; latencies are wall-clock).
//!
//! Rows (median, p90 and max over `BENCH_TURNS` turns, default 10):
//! * **fast path** — "Hey Jarvis. What time is it?" and other commands the fast path answers;
//!   goal ≤ 500 ms;
//! * **LLM** — "Hey Jarvis. Why is the sky blue?" and other questions only the LLM answers; goal
//!   ≤ 1.2 s.
//!
//! Also, measured first while the process holds only the daemon: the loop's CPU while it
//! listens to a quiet room in real time (a microphone's hiss at −60 dBFS; goal ≤ 2 % of one
//! core; process CPU time over wall time, all threads), with the wake word's quiet gate on (the
//! default) and off, and the resident memory with the default models loaded (goal ≤ 600 MB; `VmRSS`
//! while listening, and the peak `VmHWM` of loading); then the memory after the LLM row's
//! answers. The scripts are spoken by `local-assistant say` in processes of their own.
//!
//! Each row's daemon runs in a process of its own (this bench starts itself once per row), as
//! a device runs one daemon: memory a previous row's daemon left in the heap is not counted
//! against the next.
//!
//! `BENCH_ROWS=fast,llm,idle` picks rows (default all). A command Whisper mishears goes to the
//! LLM like any unknown sentence; the rows print what was heard for turns not answered.
//!
//! The issue names no peer program for this measurement; the goals are the yardstick. Without
//! `--bench` (under `cargo test --all-targets`) it is a smoke run of one turn per row, without
//! the LLM row.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use local_assistant::app::{App, VoiceSetup};
use local_assistant::channels::local::button::NoButton;
use local_assistant::channels::local::file::FileDevice;
use local_assistant::channels::local::leds::NoLeds;
use local_assistant::channels::local::voice::{Devices, VoiceTurn};
use local_assistant::config::Config;
use local_assistant::speech::audio::wav;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const RATE: u32 = 16_000;

const COMMANDS: &[&str] = &[
    "What time is it?",
    "Set a timer for ten minutes.",
    "What's the date today?",
    "Remind me to water the plants tomorrow at 9 am.",
    "What's on my calendar tomorrow?",
];

const QUESTIONS: &[&str] = &[
    "Why is the sky blue?",
    "Tell me a fun fact about cats.",
    "How do plants grow?",
    "What is a good name for a dog?",
    "Why do we need sleep?",
];

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(r.ru_utime) + t(r.ru_stime)
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// White noise at `rms_db` dBFS (deterministic): a quiet room through a microphone.
fn room_hiss(n: usize, rms_db: f32) -> Vec<f32> {
    // Uniform in [-a, a] has an RMS of a/√3.
    let a = 10f32.powf(rms_db / 20.0) * 3f32.sqrt();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            a * (2.0 * ((x >> 40) as f32 / (1u64 << 24) as f32) - 1.0)
        })
        .collect()
}

fn config(dir: &Path) -> Result<Config> {
    let models = dir.join("models");
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join("models"),
        &models,
    )?;
    let mut cfg = Config::defaults();
    cfg.data_dir = dir.to_path_buf();
    cfg.server.listen = "127.0.0.1:0".parse()?;
    cfg.voice.enabled = true;
    // Turns follow each other with the wake word; no follow-up window between them.
    cfg.voice.follow_up = Duration::ZERO;
    Ok(cfg)
}

/// "Hey Jarvis." + each utterance, with pauses, as one 16 kHz clip. The Piper voice speaks
/// them in a `local-assistant say` process of its own, so this process's memory is the
/// daemon's alone.
fn script(cfg: &Config, utterances: &[&str], turns: usize, gap_ms: u32) -> Result<Vec<f32>> {
    let say = |text: &str| -> Result<Vec<f32>> {
        let out = tempfile::Builder::new().suffix(".wav").tempfile()?;
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_local-assistant"))
            .arg("say")
            .arg(text)
            .arg("-o")
            .arg(out.path())
            .args(["--rate", &RATE.to_string(), "--data-dir"])
            .arg(&cfg.data_dir)
            .output()?;
        if !run.status.success() {
            return Err(format!(
                "`local-assistant say {text:?}` failed: {}",
                String::from_utf8_lossy(&run.stderr)
            )
            .into());
        }
        Ok(wav::read(out.path())?.resampled(RATE)?.samples)
    };
    let quiet = |ms: u32| std::iter::repeat_n(0.0f32, (ms * RATE / 1000) as usize);
    let wake = say("Hey Jarvis.")?;
    let mut out: Vec<f32> = quiet(800).collect();
    for i in 0..turns {
        out.extend(&wake);
        out.extend(quiet(400));
        out.extend(say(utterances[i % utterances.len()])?);
        out.extend(quiet(gap_ms));
    }
    Ok(out)
}

/// Run the loop over `samples`; returns its turns, the wall time and the process CPU time
/// (seconds) from `settle` after the loop's start (models loaded) to the end of the input, the
/// resident memory (kB) just before the daemon stopped, and how much of it (kB) the file
/// device's input and recording are.
async fn run(
    cfg: Config,
    samples: Vec<f32>,
    fast: bool,
    settle: Duration,
) -> Result<(Vec<VoiceTurn>, Duration, f64, u64, u64)> {
    let device = FileDevice::from_audio(Path::new("bench"), samples);
    let app = App::builder(cfg)
        .voice(VoiceSetup {
            devices: Devices {
                source: Box::new(device.source(!fast)),
                sink: Arc::new(device.sink()),
                button: Box::new(NoButton),
                leds: Box::new(NoLeds),
                fast,
            },
            events: None,
            engines: None,
        })
        .start()
        .await?;
    // What the start leaves running (the system prompt's pre-warm) is not the loop's.
    tokio::time::sleep(settle).await;
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let Some(voice) = app.voice() else {
        return Err("the voice loop did not start".into());
    };
    voice.finished().await;
    let took = started.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let turns = voice.turns();
    let rss = status_kb("VmRSS:");
    app.stop().await?;
    Ok((turns, took, cpu, rss, device.buffer_bytes() as u64 / 1024))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(name: &str, turns: &[VoiceTurn], wanted: usize, goal_ms: f64) {
    let mut lat: Vec<f64> = turns
        .iter()
        .filter(|t| t.outcome == "answered")
        .filter_map(|t| t.timings.first_audio_ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut stt: Vec<f64> = turns.iter().filter_map(|t| t.timings.stt_ms).collect();
    stt.sort_by(f64::total_cmp);
    let mut text: Vec<f64> = turns
        .iter()
        .filter_map(|t| t.timings.first_text_ms)
        .collect();
    text.sort_by(f64::total_cmp);
    let median = percentile(&lat, 0.5);
    println!(
        "| {name} | {}/{wanted} | {median:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {goal_ms:.0} | {} |",
        lat.len(),
        percentile(&lat, 0.9),
        lat.last().copied().unwrap_or(f64::NAN),
        percentile(&stt, 0.5),
        percentile(&text, 0.5),
        if median <= goal_ms { "met" } else { "not met" }
    );
    for t in turns.iter().filter(|t| t.outcome != "answered") {
        println!(
            "|  (turn not answered: {:?} heard {:?}) |",
            t.outcome, t.transcript
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result {
    let bench = std::env::args().any(|a| a == "--bench");
    let turns: usize = if bench {
        std::env::var("BENCH_TURNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10)
    } else {
        1
    };
    // The parent runs each row in a child process (the same executable, `VOICE_BENCH_ROW`).
    // The smoke run (under `cargo test`) leaves out the LLM row: the chat tests cover that
    // path, and one SmolLM2 answer takes half a minute here.
    let rows = std::env::var("BENCH_ROWS")
        .unwrap_or_else(|_| if bench { "idle,fast,llm" } else { "idle,fast" }.into());
    let Ok(this_row) = std::env::var("VOICE_BENCH_ROW") else {
        let exe = std::env::current_exe()?;
        let mut table = false;
        for r in ["idle", "fast", "llm"] {
            if !rows.split(',').any(|x| x.trim() == r) {
                continue;
            }
            if r != "idle" && !table {
                println!(
                    "voice loop: end of speech → first audio out (ms), {turns} turn(s) each\n"
                );
                println!("| row | answered | median | p90 | max | STT median | first text median | goal | |");
                println!("|---|---|---|---|---|---|---|---|---|");
                table = true;
            }
            let mut child = std::process::Command::new(&exe);
            if bench {
                child.arg("--bench");
            }
            let status = child.env("VOICE_BENCH_ROW", r).status()?;
            if !status.success() {
                return Err(format!("the {r} row failed: {status}").into());
            }
        }
        return Ok(());
    };
    let want = |r: &str| r == this_row;
    let tmp = tempfile::tempdir()?;
    let cfg = config(tmp.path())?;
    // `RUST_LOG=info` shows each turn and each LLM reply's tokens and timings on stderr.
    if std::env::var_os("RUST_LOG").is_some() {
        local_assistant::platform::logging::init(&cfg.log);
    }
    if want("idle") {
        // Listening to a quiet room in real time: a microphone's hiss (white noise at −60 dBFS,
        // not digital silence). CPU and wall time from 3 s after the loop's start (the models
        // loaded, the system prompt pre-warmed) to the end of the input; then the same with
        // the wake word's quiet gate off.
        let secs = if bench { 20 } else { 3 };
        let settle = Duration::from_secs(3);
        let hiss = room_hiss(((secs + 3) * RATE) as usize, -60.0);
        let mut figures = Vec::new();
        for gate in [true, false] {
            let mut c = cfg.clone();
            c.speech.wake.quiet_gate = gate;
            let (_, took, cpu, rss, _) = run(c, hiss.clone(), false, settle).await?;
            figures.push((cpu / took.as_secs_f64().max(1e-3), rss));
        }
        println!(
            "idle listening: {:.1} % of one core over {secs} s of a quiet room's hiss (goal ≤ 2 %); {:.1} % with the wake word's quiet gate off",
            figures[0].0 * 100.0,
            figures[1].0 * 100.0
        );
        println!(
            "memory with the default models loaded: RSS {} MB while listening, peak {} MB while loading (goal ≤ 600 MB)\n",
            figures[0].1 / 1024,
            status_kb("VmHWM:") / 1024
        );
    }

    // Scripts with gaps long enough for each answer to finish (in fast mode silence costs
    // little).
    if want("fast") {
        let commands = script(&cfg, COMMANDS, turns, 6000)?;
        let (t, _, _, _, _) = run(cfg.clone(), commands, true, Duration::ZERO).await?;
        row("fast path", &t, turns, 500.0);
        for t in &t {
            if t.intent.is_none() {
                println!("|  (not a command: heard {:?}) |", t.transcript);
            }
        }
    }
    if want("llm") {
        let questions = script(&cfg, QUESTIONS, turns, 45_000)?;
        let (t, _, _, rss, file_kb) = run(cfg.clone(), questions, true, Duration::ZERO).await?;
        row("LLM (SmolLM2-135M, candle)", &t, turns, 1200.0);
        println!("\nLLM turns (ms after the end of speech): STT done, first text, first audio");
        for turn in &t {
            let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
            println!(
                "  {:>5} {:>5} {:>5}  {:?} → {:?}",
                ms(turn.timings.stt_ms),
                ms(turn.timings.first_text_ms),
                ms(turn.timings.first_audio_ms),
                turn.transcript,
                turn.reply.chars().take(60).collect::<String>()
            );
        }
        let daemon_mb = rss.saturating_sub(file_kb) / 1024;
        println!(
            "\nmemory after the LLM answers: RSS {} MB, of which {} MB are the file device's input and recording (a microphone and a speaker hold neither): the daemon's {daemon_mb} MB (goal ≤ 600 MB: {}); process peak {} MB",
            rss / 1024,
            file_kb / 1024,
            if daemon_mb <= 600 { "met" } else { "not met" },
            status_kb("VmHWM:") / 1024
        );
    }
    Ok(())
}
