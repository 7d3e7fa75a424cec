//! The `policyreport` sink's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, existing_file, positive};

/// Settings of a `policyreport` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyReportConfig {
    /// Name of the report in each namespace (and of the cluster report).
    #[serde(default = "default_name")]
    pub report_name: String,
    /// Most results per report; the oldest are dropped past it (a report is a current view
    /// kept small for etcd, not an archive).
    #[serde(default = "default_max_results")]
    pub max_results: usize,
    /// Alerts without a namespace (cluster-scoped targets), and alerts whose namespace is gone,
    /// go to a ClusterPolicyReport; when false they are dead-lettered instead.
    #[serde(default = "default_true")]
    pub cluster_report: bool,
    /// A kubeconfig file (under the operator: from a Secret, via `secretRefs`); default: the
    /// in-cluster service account, or `KUBECONFIG`.
    #[serde(default)]
    pub kubeconfig_file: Option<PathBuf>,
    /// Request timeout, in milliseconds.
    #[serde(default = "crate::transport::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most alerts per batch (one read and one write per namespace of the batch).
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Longest time the first alert of a batch waits for others, in milliseconds.
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
}

fn default_name() -> String {
    "kaudit".into()
}
fn default_max_results() -> usize {
    100
}
fn default_true() -> bool {
    true
}
fn default_batch_max() -> usize {
    100
}
fn default_batch_wait_ms() -> u64 {
    1000
}

impl PolicyReportConfig {
    /// Checks the report name, the limits and the kubeconfig file.
    pub fn validate(&self) -> Result<(), Invalid> {
        let n = &self.report_name;
        let dns = !n.is_empty()
            && n.len() <= 253
            && n.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !dns {
            return Err(Invalid::new(
                "report_name",
                format!("{n:?} is not a Kubernetes object name (lower-case DNS subdomain)"),
            ));
        }
        if !(1..=1000).contains(&self.max_results) {
            return Err(Invalid::new("max_results", "must be 1..=1000"));
        }
        if let Some(p) = &self.kubeconfig_file {
            existing_file("kubeconfig_file", p)?;
        }
        positive("timeout_ms", self.timeout_ms)?;
        positive("batch_max", self.batch_max as u64)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        let c: PolicyReportConfig = yaml_serde::from_str("{}").unwrap();
        assert!(c.validate().is_ok());
        let c: PolicyReportConfig = yaml_serde::from_str("report_name: Kaudit").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "report_name");
        let c: PolicyReportConfig = yaml_serde::from_str("max_results: 0").unwrap();
        assert!(c.validate().is_err());
    }
}
