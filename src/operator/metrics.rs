//! The operator's Prometheus metrics (`kaudit_operator_*`), served by the health server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Which controller a metric is about (a bounded label).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `kauditdeployment`, `inputs`, `alertsink` or `clusteralertsink`.
    pub kind: &'static str,
}

/// The operator's metrics (`kaudit_operator_*`).
pub struct Metrics {
    /// Reconciliations run.
    pub reconciliations: Family<KindLabel, Counter>,
    /// Reconciliations failed.
    pub failures: Family<KindLabel, Counter>,
    /// 1 while this replica holds the lease.
    pub leader: Gauge,
    /// Namespace rules currently rejected.
    pub invalid_rules: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kaudit_operator");
        let reconciliations = Family::<KindLabel, Counter>::default();
        let failures = Family::<KindLabel, Counter>::default();
        let leader = Gauge::default();
        let invalid_rules = Gauge::default();
        registry.register(
            "reconciliations",
            "Reconciliations run",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciliations failed",
            failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease",
            leader.clone(),
        );
        registry.register(
            "invalid_rules",
            "Namespace rules rejected",
            invalid_rules.clone(),
        );
        Metrics {
            reconciliations,
            failures,
            leader,
            invalid_rules,
            registry,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
