//! What the operator reads: every input resource of the deployments, and what they reference.

use std::collections::BTreeMap;

use super::crd::{AlertSink, ClusterAlertSink, FalcoRule, FalcoRulesFile};

/// Everything a [`KauditDeployment`](super::crd::KauditDeployment) depends on, as read from the
/// apiserver.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// Every FalcoRule of the cluster.
    pub rules: Vec<FalcoRule>,
    /// Every FalcoRulesFile.
    pub rules_files: Vec<FalcoRulesFile>,
    /// Every AlertSink.
    pub sinks: Vec<AlertSink>,
    /// Every ClusterAlertSink.
    pub cluster_sinks: Vec<ClusterAlertSink>,
    /// ConfigMaps referenced by rules files: (namespace, name) → data.
    pub config_maps: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Secrets referenced by sinks: (namespace, name) → data.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// The token each deployment's Falco presents to kaudit's `http_output` intake, by the
    /// deployment's (namespace, name); only deployments that need one
    /// ([`needs_intake_token`](super::render::needs_intake_token)). The controller reads it back
    /// from the config Secret, or issues a new one.
    pub intake_tokens: BTreeMap<(String, String), String>,
}
