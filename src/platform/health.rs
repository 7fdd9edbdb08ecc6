//! Component health: each component (store, http, outbox, later channels and engines) reports
//! its state here; `/readyz`, the systemd `READY=1` and the event stream read it.
//!
//! A component that has not reported yet counts as `starting`. Ready means every registered
//! component is `ready` (a `degraded` one keeps the daemon ready but is shown).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::events::{EventBus, EventKind};

/// A component's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Not ready yet.
    Starting,
    /// Working.
    Ready,
    /// Working with reduced function (still counts as ready).
    Degraded,
    /// Not working.
    Failed,
    /// Shutting down.
    Stopping,
}

impl ComponentState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Degraded => "degraded",
            Self::Failed => "failed",
            Self::Stopping => "stopping",
        }
    }
}

/// One component's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ComponentStatus {
    /// State.
    pub state: ComponentState,
    /// Detail for people.
    pub detail: String,
}

/// The registry of component states.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<String, ComponentStatus>>>,
    events: Arc<EventBus>,
}

impl Health {
    /// An empty registry publishing changes on `events`.
    pub fn new(events: Arc<EventBus>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
            events,
        }
    }

    /// Set a component's state; publishes an event when the state changed.
    pub fn set(&self, component: &str, state: ComponentState, detail: impl Into<String>) {
        let detail = detail.into();
        let changed = {
            let mut map = match self.inner.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let new = ComponentStatus {
                state,
                detail: detail.clone(),
            };
            let old = map.insert(component.to_owned(), new);
            old.map(|o| o.state) != Some(state)
        };
        if changed {
            tracing::info!(component, state = state.as_str(), %detail, "component state changed");
            self.events.publish(EventKind::ComponentStateChanged {
                component: component.to_owned(),
                state: state.as_str().to_owned(),
                detail,
            });
        }
    }

    /// Every component's status.
    pub fn snapshot(&self) -> BTreeMap<String, ComponentStatus> {
        match self.inner.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether every component is ready or degraded.
    pub fn is_ready(&self) -> bool {
        let snap = self.snapshot();
        !snap.is_empty()
            && snap
                .values()
                .all(|s| matches!(s.state, ComponentState::Ready | ComponentState::Degraded))
    }
}
