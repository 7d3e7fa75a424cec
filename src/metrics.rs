//! The Prometheus registry of `kaudit serve`. Each stage defines and registers its own metric
//! families; this module only composes them for the wiring (`pipeline`), and no stage imports it:
//! a stage is handed its own families. Labels are bounded sets (paths, statuses, reasons, sink names),
//! never pod names, users or rule output.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// Every metric family of the process, shared by the stages.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Every HTTP route: requests and latency.
    pub http: crate::server::HttpMetrics,
    /// The audit webhook and decoding.
    pub ingest: crate::ingest::IngestMetrics,
    /// The embedded rules engine.
    pub detect: crate::detect::DetectMetrics,
    /// Alerts coming from Falco (tail and `http_output`).
    pub falco_in: crate::falco::tail::FalcoInMetrics,
    /// The inbox of accepted batches.
    pub inbox: crate::delivery::inbox::InboxMetrics,
    /// Per-sink delivery: queues, spools, retries, dead letters.
    pub delivery: crate::delivery::DeliveryMetrics,
    /// Per-namespace budgets on shared sinks.
    pub budget: crate::router::budget::BudgetMetrics,
    /// The audit sources other than the webhook.
    pub sources: crate::sources::SourceMetrics,
    /// The console's store.
    pub store: crate::store::StoreMetrics,
}

impl Metrics {
    /// Creates and registers every family under the `kaudit_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kaudit");
        let http = crate::server::HttpMetrics::register(&mut registry);
        let ingest = crate::ingest::IngestMetrics::register(&mut registry);
        let detect = crate::detect::DetectMetrics::register(&mut registry);
        let falco_in =
            crate::falco::tail::FalcoInMetrics::register(&mut registry, detect.alerts.clone());
        let inbox = crate::delivery::inbox::InboxMetrics::register(&mut registry);
        let delivery = crate::delivery::DeliveryMetrics::register(&mut registry);
        let budget = crate::router::budget::BudgetMetrics::register(&mut registry);
        let sources = crate::sources::SourceMetrics::register(&mut registry);
        let store = crate::store::StoreMetrics::register(&mut registry);
        Metrics {
            registry: Arc::new(registry),
            http,
            ingest,
            detect,
            falco_in,
            inbox,
            delivery,
            budget,
            sources,
            store,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
