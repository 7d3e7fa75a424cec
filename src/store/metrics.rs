//! Metric families of the console's store (no labels: one store per process).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// What the store did.
#[derive(Clone, Default)]
pub struct StoreMetrics {
    /// Alerts written (an alert stored again after a redelivery is not counted).
    pub written: Counter,
    /// Alerts deleted by retention.
    pub deleted: Counter,
    /// Write transactions that failed (their alerts stay in the console sink's spool).
    pub write_failures: Counter,
    /// Delivery outcomes dropped because the writer was far behind.
    pub outcomes_dropped: Counter,
}

impl StoreMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = StoreMetrics::default();
        r.register(
            "console_store_written",
            "Alerts written to the console's store",
            m.written.clone(),
        );
        r.register(
            "console_store_deleted",
            "Alerts deleted from the console's store by retention",
            m.deleted.clone(),
        );
        r.register(
            "console_store_write_failures",
            "Write transactions of the console's store that failed",
            m.write_failures.clone(),
        );
        r.register(
            "console_store_outcomes_dropped",
            "Delivery outcomes dropped because the store's writer was behind",
            m.outcomes_dropped.clone(),
        );
        m
    }
}
