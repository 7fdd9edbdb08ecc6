//! Wiring and lifecycle: build every component from the config, serve, and shut down in order.
//!
//! Start: open and migrate the store → set up the API token → resume the outbox → bind the
//! listener → serve → `READY=1`. Stop (on [`RunningApp::shutdown_token`] being cancelled, which
//! `main` does on SIGTERM/SIGINT): stop accepting, drain in-flight requests for at most
//! `server.shutdown_grace_secs`, stop the outbox after its current round, then close the store
//! (it commits what is queued and checkpoints the WAL) last.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::serve::ListenerExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::config::{Config, Secret};
use crate::events::EventBus;
use crate::home::caldav::{Caldav, LocalCalendar};
use crate::home::calendar::Calendar;
use crate::home::memory::Memory;
use crate::home::reminders::Reminders;
use crate::messaging::inbox::Inbox;
use crate::messaging::outbox::{DeliveryHandler, Outbox};
use crate::orchestrator::{Deps, Orchestrator};
use crate::platform::health::{ComponentState, Health};
use crate::platform::metrics::Metrics;
use crate::platform::systemd;
use crate::store::{Store, StoreError, StoreMetrics, StoreOptions};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store failed to open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API token could not be read or created.
    #[error(transparent)]
    Token(#[from] api::auth::TokenError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source} (choose another with --listen or server.listen)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// A background task panicked.
    #[error("internal task failed: {0}")]
    Join(String),
}

/// Builds the daemon; channels register their delivery handlers here.
pub struct AppBuilder {
    config: Config,
    handlers: BTreeMap<String, Arc<dyn DeliveryHandler>>,
    calendar: Option<Arc<dyn LocalCalendar>>,
    voice: Option<VoiceSetup>,
}

/// The local voice channel's devices, given to [`AppBuilder::voice`].
pub struct VoiceSetup {
    /// Microphone, speaker, button, LEDs.
    pub devices: crate::channels::local::voice::Devices,
    /// Receives what the loop does, as it happens (the `voice` command prints it).
    pub events: Option<std::sync::mpsc::Sender<crate::channels::local::voice::VoiceEvent>>,
    /// Speech engines already loaded (else they are loaded from the configuration).
    pub engines: Option<crate::channels::local::voice::Engines>,
}

impl AppBuilder {
    /// Register the delivery handler of a channel.
    #[must_use]
    pub fn channel(mut self, name: &str, handler: Arc<dyn DeliveryHandler>) -> Self {
        self.handlers.insert(name.to_owned(), handler);
        self
    }

    /// The calendar that `[caldav]` keeps in sync with the server.
    #[must_use]
    pub fn local_calendar(mut self, calendar: Arc<dyn LocalCalendar>) -> Self {
        self.calendar = Some(calendar);
        self
    }

    /// Run the local voice loop on these devices; reminders and alarms for the `local`
    /// channel are spoken there.
    #[must_use]
    pub fn voice(mut self, setup: VoiceSetup) -> Self {
        self.voice = Some(setup);
        self
    }

    /// Open everything, bind, start serving. Returns once the daemon is ready.
    pub async fn start(self) -> Result<RunningApp, AppError> {
        // Before the engines start their threads.
        crate::platform::heap::limit_arenas();
        let cfg = self.config;
        let events = Arc::new(EventBus::new(cfg.events.buffer));
        let health = Health::new(events.clone());
        health.set("store", ComponentState::Starting, "opening");
        health.set("http", ComponentState::Starting, "binding");
        health.set("outbox", ComponentState::Starting, "resuming");

        systemd::status("opening the database");
        let store_metrics = StoreMetrics::default();
        let metrics = Arc::new(Metrics::new(&store_metrics));
        let db_path = cfg.db_path();
        let opts = StoreOptions::from(&cfg.store);
        let store = tokio::task::spawn_blocking(move || {
            Store::open_with_metrics(&db_path, &opts, store_metrics)
        })
        .await
        .map_err(|e| AppError::Join(e.to_string()))??;
        health.set(
            "store",
            ComponentState::Ready,
            format!("{}", store.path().display()),
        );

        let data_dir = cfg.data_dir.clone();
        let configured = cfg.api.token.clone();
        let token = tokio::task::spawn_blocking(move || {
            api::auth::ensure_token(&data_dir, configured.as_ref())
        })
        .await
        .map_err(|e| AppError::Join(e.to_string()))??;

        let feed_path = api::auth::feed_token_path(&cfg.data_dir);
        let feed_configured = cfg.calendar.feed_token.clone();
        let feed_token = tokio::task::spawn_blocking(move || {
            api::auth::ensure_token_file(&feed_path, feed_configured.as_ref())
        })
        .await
        .map_err(|e| AppError::Join(e.to_string()))??;
        let calendar = Calendar::new(
            store.clone(),
            events.clone(),
            cfg.assistant.timezone.clone(),
            cfg.calendar.clone(),
        );

        let mut handlers = self.handlers;
        let announcements = if self.voice.is_some() {
            // A delivery waits for its announcement to start, a little less than an attempt may take.
            let wait = cfg
                .outbox
                .attempt_timeout
                .saturating_sub(std::time::Duration::from_secs(2))
                .max(std::time::Duration::from_secs(1));
            let (handler, rx) = crate::channels::local::voice::local_channel(wait);
            handlers.insert(
                crate::orchestrator::LOCAL_CHANNEL.to_owned(),
                Arc::new(handler) as Arc<dyn DeliveryHandler>,
            );
            Some(rx)
        } else {
            None
        };
        let twilio = cfg
            .twilio
            .enabled
            .then(|| crate::channels::twilio::Twilio::new(cfg.twilio.clone(), store.clone()));
        if let Some(t) = &twilio {
            for name in [
                crate::channels::twilio::SMS_CHANNEL,
                crate::channels::twilio::CALL_CHANNEL,
            ] {
                handlers.insert(
                    name.to_owned(),
                    Arc::new(t.clone()) as Arc<dyn DeliveryHandler>,
                );
            }
        }
        let vonage = cfg
            .vonage
            .enabled
            .then(|| crate::channels::vonage::Vonage::new(cfg.vonage.clone(), store.clone()));
        if let Some(v) = &vonage {
            for name in [
                crate::channels::vonage::SMS_CHANNEL,
                crate::channels::vonage::CALL_CHANNEL,
            ] {
                handlers.insert(
                    name.to_owned(),
                    Arc::new(v.clone()) as Arc<dyn DeliveryHandler>,
                );
            }
        }
        let outbox = Outbox::new(
            store.clone(),
            events.clone(),
            metrics.clone(),
            cfg.outbox.clone(),
            handlers,
        );
        outbox.recover().await?;
        let inbox = Inbox::new(store.clone(), events.clone(), cfg.inbox.max_text_chars);
        let reminders = Reminders::new(
            store.clone(),
            events.clone(),
            outbox.clone(),
            cfg.assistant.missed_grace,
        );
        health.set(
            "memory",
            ComponentState::Starting,
            "loading the embedding model",
        );
        let memory = Memory::open(
            store.clone(),
            events.clone(),
            cfg.memory.clone(),
            &cfg.models_dir(),
        )
        .await?;
        match memory.status() {
            Ok(s) => health.set("memory", ComponentState::Ready, s),
            Err(e) => {
                if cfg.memory.enabled {
                    tracing::warn!(error = %e, "memory unavailable: facts are not remembered");
                }
                health.set("memory", ComponentState::Degraded, e);
            }
        }
        let contacts = crate::home::contacts::Contacts::new(
            store.clone(),
            events.clone(),
            cfg.contacts.default_region,
        );
        let tasks =
            crate::home::tasks::Tasks::new(store.clone(), events.clone(), cfg.tasks.sync.clone());
        health.set("llm", ComponentState::Starting, "loading");
        let llm = crate::orchestrator::llm::start(&cfg).await;
        match &llm {
            Ok(Some(g)) => health.set("llm", ComponentState::Ready, g.describe()),
            Ok(None) => health.set(
                "llm",
                ComponentState::Ready,
                "disabled (llm.backend = \"none\")",
            ),
            Err(e) => {
                tracing::warn!(error = %e, "language model unavailable; answering commands only");
                health.set("llm", ComponentState::Degraded, e.to_string());
            }
        }
        let llm_service = llm.ok().flatten();
        let orchestrator = Orchestrator::new(Deps {
            store: store.clone(),
            events: events.clone(),
            outbox: outbox.clone(),
            reminders: reminders.clone(),
            contacts: contacts.clone(),
            calendar: calendar.clone(),
            tasks: tasks.clone(),
            metrics: metrics.clone(),
            assistant: cfg.assistant.clone(),
            llm_config: cfg.llm.clone(),
            routing: cfg.routing.clone(),
            llm: llm_service
                .clone()
                .map(|g| g as Arc<dyn crate::orchestrator::LlmGateway>),
            memory: Some(memory.clone()),
        });
        orchestrator.recover().await?;
        orchestrator.prewarm_system_prompt();

        let shutdown = CancellationToken::new();
        let mut voice_speech = None;
        let voice = match (self.voice, announcements) {
            (Some(setup), Some(announcements)) => {
                health.set("voice", ComponentState::Starting, "loading speech models");
                let engines = match setup.engines {
                    Some(e) => Ok(e),
                    None => {
                        let speech_cfg = cfg.clone();
                        tokio::task::spawn_blocking(move || {
                            crate::channels::local::voice::Engines::load(&speech_cfg)
                        })
                        .await
                        .map_err(|e| AppError::Join(e.to_string()))?
                    }
                };
                if let Ok(e) = &engines {
                    voice_speech = Some(e.speech());
                }
                let started = engines.and_then(|engines| {
                    crate::channels::local::voice::VoiceLoop::start(
                        cfg.voice.clone(),
                        setup.devices,
                        engines,
                        announcements,
                        orchestrator.clone(),
                        store.clone(),
                        metrics.clone(),
                        Some(health.clone()),
                        setup.events,
                        shutdown.child_token(),
                    )
                });
                match started {
                    Ok(v) => {
                        health.set("voice", ComponentState::Ready, "listening");
                        Some(v)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "local voice unavailable");
                        health.set("voice", ComponentState::Degraded, e.to_string());
                        None
                    }
                }
            }
            _ => None,
        };

        // Phone calls in real time share the voice loop's STT and TTS when there is one.
        let stream_calls = (cfg.twilio.enabled
            && cfg.twilio.voice_mode == crate::config::VoiceMode::Stream)
            || (cfg.vonage.enabled && cfg.vonage.voice_mode == crate::config::VoiceMode::Stream);
        let call_engines = if stream_calls {
            health.set("calls", ComponentState::Starting, "loading speech models");
            let speech_cfg = cfg.clone();
            let loaded = tokio::task::spawn_blocking(move || match voice_speech {
                Some((stt, tts)) => crate::channels::call::CallEngines::with(&speech_cfg, stt, tts),
                None => crate::channels::call::CallEngines::load(&speech_cfg),
            })
            .await
            .map_err(|e| AppError::Join(e.to_string()))?;
            match loaded {
                Ok(e) => {
                    health.set("calls", ComponentState::Ready, "answering calls");
                    Some(e)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "real-time calls unavailable; calls fall back to the provider's speech recognition");
                    health.set("calls", ComponentState::Degraded, e.to_string());
                    None
                }
            }
        } else {
            None
        };

        // CalDAV keeps the device's calendar in sync (tests may register another one).
        let caldav = if cfg.caldav.enabled {
            let local: Arc<dyn LocalCalendar> = match &self.calendar {
                Some(c) => c.clone(),
                None => Arc::new(calendar.clone()),
            };
            match Caldav::new(&cfg.caldav, store.clone(), local, Some(health.clone())) {
                Ok(c) => {
                    health.set("caldav", ComponentState::Ready, "first sync pending");
                    Some(c)
                }
                Err(e) => {
                    health.set("caldav", ComponentState::Degraded, e.to_string());
                    None
                }
            }
        } else {
            None
        };

        let listener = tokio::net::TcpListener::bind(cfg.server.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: cfg.server.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: cfg.server.listen,
            source,
        })?;
        let alarm_wake = calendar.changed();
        let channel_ctx = crate::channels::ChannelContext {
            store: store.clone(),
            inbox: inbox.clone(),
            events: events.clone(),
            orchestrator: orchestrator.clone(),
            media: crate::channels::telephony::MediaStore::new(&cfg.data_dir),
            calls: call_engines,
            metrics: metrics.clone(),
        };
        let mut channel_routes = axum::Router::new();
        if let Some(t) = twilio {
            channel_routes = channel_routes.merge(crate::channels::twilio::http::router(
                crate::channels::twilio::http::TwilioHttp {
                    twilio: t,
                    ctx: channel_ctx.clone(),
                },
            ));
        }
        if let Some(v) = vonage {
            channel_routes = channel_routes.merge(crate::channels::vonage::http::router(
                crate::channels::vonage::http::VonageHttp {
                    vonage: v,
                    ctx: channel_ctx.clone(),
                },
            ));
        }
        let state = ApiState {
            store: store.clone(),
            inbox,
            outbox: outbox.clone(),
            events: events.clone(),
            health: health.clone(),
            metrics,
            orchestrator: orchestrator.clone(),
            memory,
            reminders: reminders.clone(),
            contacts,
            tasks: tasks.clone(),
            max_text_chars: cfg.inbox.max_text_chars,
            token: token.clone(),
            events_cfg: cfg.events.clone(),
            shutdown: shutdown.clone(),
            openapi: Arc::new(OnceLock::new()),
            caldav: caldav.clone(),
            calendar,
            calendar_feed_token: feed_token,
        };
        let router = api::router(state, cfg.server.max_body_bytes, channel_routes);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let server = tokio::spawn(async move { server.await });
        health.set(
            "http",
            ComponentState::Ready,
            format!("listening on {addr}"),
        );

        let channels = outbox.channels();
        let alarms = crate::home::calendar::alarms::Alarms::new(
            store.clone(),
            events.clone(),
            outbox.clone(),
            cfg.calendar.alarm_target.0.clone(),
            cfg.calendar.alarm_target.1.clone(),
            cfg.assistant.missed_grace,
        );
        let outbox_task = tokio::spawn(outbox.run(shutdown.child_token()));
        let mut brain_tasks = vec![
            tokio::spawn(reminders.run(shutdown.child_token())),
            tokio::spawn(alarms.run(alarm_wake, shutdown.child_token())),
        ];
        if let Some(c) = caldav {
            brain_tasks.push(tokio::spawn(c.run(shutdown.child_token())));
        }
        if cfg.assistant.answer_inbound {
            brain_tasks.push(tokio::spawn(
                orchestrator.clone().run_inbox(shutdown.child_token()),
            ));
        }
        health.set(
            "outbox",
            ComponentState::Ready,
            if channels.is_empty() {
                "no delivery channels registered".to_owned()
            } else {
                format!("delivering for {}", channels.join(", "))
            },
        );

        tracing::info!(%addr, data_dir = %cfg.data_dir.display(), "local-assistant ready");
        if health.is_ready() {
            systemd::ready(&format!("ready: listening on {addr}"));
        }
        let watchdog = systemd::spawn_watchdog(
            tokio::runtime::Handle::current(),
            store.clone(),
            shutdown.clone(),
        );

        let lifecycle = tokio::spawn(lifecycle(
            shutdown.clone(),
            server,
            outbox_task,
            brain_tasks,
            llm_service,
            store.clone(),
            health,
            cfg.server.shutdown_grace,
            watchdog,
            voice.clone(),
        ));
        Ok(RunningApp {
            addr,
            token,
            events,
            store,
            shutdown,
            lifecycle,
            voice,
            orchestrator,
        })
    }
}

#[allow(clippy::too_many_arguments)] // the components it stops, in order
async fn lifecycle(
    shutdown: CancellationToken,
    mut server: JoinHandle<std::io::Result<()>>,
    outbox_task: JoinHandle<()>,
    brain_tasks: Vec<JoinHandle<()>>,
    llm: Option<Arc<crate::orchestrator::llm::LlmHandle>>,
    store: Store,
    health: Health,
    grace: std::time::Duration,
    watchdog: Option<std::thread::JoinHandle<()>>,
    voice: Option<crate::channels::local::voice::VoiceLoop>,
) -> Result<(), AppError> {
    let early = tokio::select! {
        () = shutdown.cancelled() => None,
        r = &mut server => Some(r),
    };
    shutdown.cancel();
    systemd::stopping("stopping: draining in-flight requests");
    health.set("http", ComponentState::Stopping, "draining");
    let served = match early {
        Some(r) => r,
        None => match tokio::time::timeout(grace, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    grace_s = grace.as_secs(),
                    "requests still running after the shutdown grace period; closing them"
                );
                server.abort();
                Ok(Ok(()))
            }
        },
    };
    if let Some(v) = voice {
        systemd::status("stopping: the voice loop");
        v.stop().await;
    }
    systemd::status("stopping: finishing deliveries");
    let _ = outbox_task.await;
    for t in brain_tasks {
        let _ = t.await;
    }
    if let Some(llm) = llm {
        // Joins the inference threads after cancelling what is queued.
        let _ = tokio::task::spawn_blocking(move || llm.shutdown()).await;
    }
    systemd::status("stopping: closing the database");
    store.close().await;
    if let Some(w) = watchdog {
        let _ = tokio::task::spawn_blocking(move || w.join()).await;
    }
    tracing::info!("stopped");
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(AppError::Serve(e)),
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(AppError::Join(e.to_string())),
    }
}

/// The daemon's composition root.
pub struct App;

impl App {
    /// A builder for the daemon described by `config`.
    pub fn builder(config: Config) -> AppBuilder {
        AppBuilder {
            config,
            handlers: BTreeMap::new(),
            calendar: None,
            voice: None,
        }
    }
}

/// A started daemon.
pub struct RunningApp {
    addr: SocketAddr,
    token: Secret,
    events: Arc<EventBus>,
    store: Store,
    shutdown: CancellationToken,
    lifecycle: JoinHandle<Result<(), AppError>>,
    voice: Option<crate::channels::local::voice::VoiceLoop>,
    orchestrator: Orchestrator,
}

impl RunningApp {
    /// The conversation engine (what the channels feed).
    pub fn orchestrator(&self) -> &Orchestrator {
        &self.orchestrator
    }
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// The API token in effect.
    pub fn token(&self) -> &Secret {
        &self.token
    }
    /// The event bus.
    pub fn events(&self) -> &Arc<EventBus> {
        &self.events
    }
    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
    /// The local voice loop, when one was configured and its models loaded.
    pub fn voice(&self) -> Option<&crate::channels::local::voice::VoiceLoop> {
        self.voice.as_ref()
    }
    /// Cancel this token to begin a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
    /// Wait until the daemon has stopped.
    pub async fn wait(self) -> Result<(), AppError> {
        match self.lifecycle.await {
            Ok(r) => r,
            Err(e) => Err(AppError::Join(e.to_string())),
        }
    }
    /// Shut down gracefully and wait.
    pub async fn stop(self) -> Result<(), AppError> {
        self.shutdown.cancel();
        self.wait().await
    }
}
