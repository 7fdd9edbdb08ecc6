//! `local-assistant voice --in IN.wav --out OUT.wav [--button-at SECONDS] [--fast]`: the whole
//! voice loop on files. The input plays as the microphone (in real time, or as fast as the
//! loop allows with `--fast`), the speaker is recorded on the input's timeline, and each turn's
//! transcript, reply and latency are printed. It exits when the input has ended and the last
//! answer has been spoken. The daemon's components run in-process (HTTP on a free loopback
//! port), on the same data directory as `serve`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use super::button::{ButtonEvent, SimulatedButton};
use super::file::FileDevice;
use super::leds::NoLeds;
use super::voice::{Devices, Engines, VoiceEvent, VoiceTurn};
use crate::app::{App, VoiceSetup};
use crate::config::Config;

/// Arguments of `local-assistant voice`.
#[derive(Debug, clap::Args)]
pub struct VoiceArgs {
    /// The microphone: any WAV (mixed to mono, resampled to 16 kHz).
    #[arg(long = "in", value_name = "IN.wav")]
    pub input: PathBuf,
    /// Where to write what the speaker played (16 kHz mono, aligned with the input).
    #[arg(long = "out", value_name = "OUT.wav")]
    pub output: PathBuf,
    /// Press the button at this time of the input, in seconds (repeatable).
    #[arg(long, value_name = "SECONDS")]
    pub button_at: Vec<f64>,
    /// Long-press the button (mute/unmute) at this time, in seconds (repeatable).
    #[arg(long, value_name = "SECONDS")]
    pub long_press_at: Vec<f64>,
    /// Do not wait for the wall clock: time passes only while the loop listens or plays.
    #[arg(long)]
    pub fast: bool,
    /// Mix this much of the speaker's output back into the microphone (0 to 1), as a speaker
    /// beside the microphone would.
    #[arg(long, value_name = "GAIN", default_value_t = 0.0)]
    pub echo: f32,
    /// State directory (overrides data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Why `voice` failed.
#[derive(Debug, thiserror::Error)]
pub enum VoiceCliError {
    /// The input or output file.
    #[error(transparent)]
    Audio(#[from] super::AudioError),
    /// The speech models.
    #[error(transparent)]
    Speech(#[from] crate::speech::SpeechError),
    /// The daemon's components.
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    /// A bad argument.
    #[error("{0}")]
    Argument(String),
}

fn seconds_to_ms(flag: &str, s: f64) -> Result<u64, VoiceCliError> {
    if s.is_finite() && (0.0..86_400.0).contains(&s) {
        Ok((s * 1000.0).round() as u64)
    } else {
        Err(VoiceCliError::Argument(format!(
            "--{flag} {s}: must be a time in seconds within the input"
        )))
    }
}

/// Run the loop over the files; returns its turns.
pub async fn run(args: &VoiceArgs, mut cfg: Config) -> Result<Vec<VoiceTurn>, VoiceCliError> {
    if !(0.0..=1.0).contains(&args.echo) {
        return Err(VoiceCliError::Argument(format!(
            "--echo {}: must be between 0 and 1",
            args.echo
        )));
    }
    let mut presses = Vec::new();
    for &s in &args.button_at {
        presses.push((ButtonEvent::Press, seconds_to_ms("button-at", s)?));
    }
    for &s in &args.long_press_at {
        presses.push((ButtonEvent::LongPress, seconds_to_ms("long-press-at", s)?));
    }
    let device = FileDevice::open(&args.input)?;
    device.set_echo(args.echo);
    let load_cfg = cfg.clone();
    let engines = tokio::task::spawn_blocking(move || Engines::load(&load_cfg))
        .await
        .map_err(|e| VoiceCliError::Argument(format!("loading the speech models: {e}")))??;
    cfg.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.voice.enabled = true;
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::new(device.sink());
    let app = App::builder(cfg)
        .voice(VoiceSetup {
            devices: Devices {
                source: Box::new(device.source(!args.fast)),
                sink,
                button: Box::new(SimulatedButton::presses(&presses)),
                leds: Box::new(NoLeds),
                fast: args.fast,
            },
            events: Some(tx),
            engines: Some(engines),
        })
        .start()
        .await?;
    let printer = std::thread::spawn(move || {
        let mut n = 0;
        for e in rx {
            print_event(&mut n, &e);
        }
    });
    let turns = match app.voice() {
        Some(v) => {
            v.finished().await;
            v.turns()
        }
        None => {
            let _ = app.stop().await;
            return Err(VoiceCliError::Argument(
                "the voice loop did not start (see the log above)".into(),
            ));
        }
    };
    app.stop().await?;
    let _ = tokio::task::spawn_blocking(move || printer.join()).await;
    device.write_recording(&args.output)?;
    Ok(turns)
}

fn secs(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

fn print_event(n: &mut usize, e: &VoiceEvent) {
    let mut out = std::io::stdout().lock();
    let _ = match e {
        VoiceEvent::Listening { trigger, at_ms } => {
            writeln!(out, "{:>8}  listening ({})", secs(*at_ms), trigger.as_str())
        }
        VoiceEvent::BargeIn { at_ms } => {
            writeln!(out, "{:>8}  barge-in: playback stopped", secs(*at_ms))
        }
        VoiceEvent::EchoIgnored { model, at_ms } => writeln!(
            out,
            "{:>8}  ignored {model} in the device's own voice",
            secs(*at_ms)
        ),
        VoiceEvent::Muted { muted, at_ms } => writeln!(
            out,
            "{:>8}  microphone {}",
            secs(*at_ms),
            if *muted { "muted" } else { "unmuted" }
        ),
        VoiceEvent::Announcement { text, ring, at_ms } => writeln!(
            out,
            "{:>8}  announcing{}: {text}",
            secs(*at_ms),
            if *ring { " (ringing)" } else { "" }
        ),
        VoiceEvent::AnnouncementDone { stopped, at_ms } => writeln!(
            out,
            "{:>8}  announcement {}",
            secs(*at_ms),
            if *stopped { "stopped" } else { "done" }
        ),
        VoiceEvent::Turn(t) => {
            *n += 1;
            let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} ms"));
            writeln!(
                out,
                "{:>8}  turn {n} [{}{}] {}: heard {:?} -> {:?} (response {}; stt {}, first text {})",
                secs(t.speech_end_ms.unwrap_or(t.at_ms)),
                t.trigger.as_str(),
                t.wake_model.as_deref().map(|m| format!(" {m}")).unwrap_or_default(),
                t.outcome,
                t.transcript,
                t.reply,
                ms(t.timings.first_audio_ms),
                ms(t.timings.stt_ms),
                ms(t.timings.first_text_ms),
            )
        }
    };
}
