//! The operator's Prometheus metrics (`kaudit_operator_*`), served by the health server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::error::Error;

/// Which controller a metric is about (a bounded label).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `kauditdeployment` (the deployment controller), `inputs` (the status pass) or an input
    /// kind's label (its finalizer controller: `alertsink`, `clusteralertsink`).
    pub kind: &'static str,
}

/// A failed reconciliation: which controller, and what kind of failure
/// ([`Error::metric_label`]); both from fixed sets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// As in [`KindLabel`].
    pub kind: &'static str,
    /// The kind of failure.
    pub error: &'static str,
}

/// The operator's metrics (`kaudit_operator_*`).
pub struct Metrics {
    /// Reconciliations run.
    pub reconciliations: Family<KindLabel, Counter>,
    /// Reconciliations failed, by controller and kind of failure.
    pub failures: Family<FailureLabels, Counter>,
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
        let failures = Family::<FailureLabels, Counter>::default();
        let leader = Gauge::default();
        let invalid_rules = Gauge::default();
        registry.register(
            "reconciliations",
            "Reconciliations run",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciliations failed, by kind of failure",
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
    /// Counts a failed reconciliation of controller `kind`.
    pub fn failed(&self, kind: &'static str, error: &Error) {
        self.failures
            .get_or_create(&FailureLabels {
                kind,
                error: error.metric_label(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_kind_of_failure() {
        let m = Metrics::default();
        m.failed("kauditdeployment", &Error::Random);
        m.failed("kauditdeployment", &Error::Random);
        m.failed("inputs", &Error::LostLease);
        let text = m.encode();
        assert!(
            text.contains(
                "kaudit_operator_reconcile_failures_total{kind=\"kauditdeployment\",error=\"random\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "kaudit_operator_reconcile_failures_total{kind=\"inputs\",error=\"lease\"} 1"
            ),
            "{text}"
        );
    }
}
