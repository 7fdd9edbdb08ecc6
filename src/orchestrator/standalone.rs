//! The engine without the HTTP server, for `local-assistant chat`: the same store, tools,
//! routing and LLM as `serve`, opened in-process on the same data directory (SQLite WAL lets a
//! running daemon and the CLI share it; the daemon's scheduler fires reminders made here).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Deps, Orchestrator};
use crate::config::Config;
use crate::events::EventBus;
use crate::home::reminders::Reminders;
use crate::messaging::outbox::Outbox;
use crate::platform::metrics::Metrics;
use crate::store::{Store, StoreError, StoreMetrics, StoreOptions};

/// An opened engine.
pub struct Engine {
    /// The conversation engine.
    pub orchestrator: Orchestrator,
    store: Store,
    llm: Option<Arc<super::llm::LlmHandle>>,
}

/// Why the engine could not open.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Engine {
    /// Open the store and the LLM described by `cfg` (an unavailable LLM is reported on
    /// stderr and the fast path still answers).
    pub async fn open(cfg: &Config) -> Result<Self, EngineError> {
        crate::store::ensure_data_dir(&cfg.data_dir)?;
        let store_metrics = StoreMetrics::default();
        let metrics = Arc::new(Metrics::new(&store_metrics));
        let db = cfg.db_path();
        let opts = StoreOptions::from(&cfg.store);
        let store = tokio::task::spawn_blocking(move || {
            Store::open_with_metrics(&db, &opts, store_metrics)
        })
        .await
        .map_err(|_| StoreError::Closed)??;
        let events = Arc::new(EventBus::new(cfg.events.buffer));
        let outbox = Outbox::new(
            store.clone(),
            events.clone(),
            metrics.clone(),
            cfg.outbox.clone(),
            BTreeMap::new(),
        );
        let reminders = Reminders::new(
            store.clone(),
            events.clone(),
            outbox.clone(),
            cfg.assistant.missed_grace,
        );
        let contacts = crate::home::contacts::Contacts::new(
            store.clone(),
            events.clone(),
            cfg.contacts.default_region,
        );
        let calendar = crate::home::calendar::Calendar::new(
            store.clone(),
            events.clone(),
            cfg.assistant.timezone.clone(),
            cfg.calendar.clone(),
        );
        let llm = match super::llm::start(cfg).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("warning: language model unavailable ({e}); answering commands only");
                None
            }
        };
        let memory = crate::home::memory::Memory::open(
            store.clone(),
            events.clone(),
            cfg.memory.clone(),
            &cfg.models_dir(),
        )
        .await?;
        if let (true, Err(e)) = (cfg.memory.enabled, memory.status()) {
            eprintln!("warning: memory unavailable ({e}); facts are not remembered");
        }
        let tasks =
            crate::home::tasks::Tasks::new(store.clone(), events.clone(), cfg.tasks.sync.clone());
        let orchestrator = Orchestrator::new(Deps {
            store: store.clone(),
            events,
            outbox,
            reminders,
            contacts,
            calendar,
            tasks,
            metrics,
            assistant: cfg.assistant.clone(),
            llm_config: cfg.llm.clone(),
            routing: cfg.routing.clone(),
            llm: llm.clone().map(|g| g as Arc<dyn super::LlmGateway>),
            memory: Some(memory),
        });
        Ok(Self {
            orchestrator,
            store,
            llm,
        })
    }

    /// Stop the LLM and close the store.
    pub async fn close(self) {
        if let Some(l) = self.llm {
            let _ = tokio::task::spawn_blocking(move || l.shutdown()).await;
        }
        self.store.close().await;
    }
}
