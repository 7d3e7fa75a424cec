//! `policyreport`: alerts as results of PolicyReports (`wgpolicyk8s.io/v1alpha2`), one report
//! per namespace (`ka.target.namespace`), so that a team reads the findings about its own
//! namespace with `kubectl get policyreports -n team-a` (and policy-reporter's UI shows them);
//! alerts about cluster-scoped objects go to a ClusterPolicyReport.
//!
//! Each alert is one result ([`report`]): the rule as `policy`, the Falco priority as
//! `severity` (critical, high, medium, low, info) and `result` (`fail` from Warning up, `warn`
//! below), the output as `message`, the uuid and output fields as `properties`, the target as
//! the resource. A report keeps the newest `max_results`. The PolicyReport CRDs must be
//! installed (Kyverno and policy-reporter ship them); kaudit needs get, create and update on
//! `policyreports` and `clusterpolicyreports`.

mod config;
pub mod report;
mod sink;

pub use config::PolicyReportConfig;
pub use sink::{GROUP, PolicyReportSink, VERSION};

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `policyreport` sink type.
pub struct PolicyReport;

impl SinkType for PolicyReport {
    const NAME: &'static str = "policyreport";
    type Config = PolicyReportConfig;

    fn validate(config: &PolicyReportConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(config: &PolicyReportConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(PolicyReportSink::new(config.clone()).await?))
    }
}
