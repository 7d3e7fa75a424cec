//! The rendered objects: one typed enum of every kind the operator applies, and the list a
//! deployment wants (to apply, in order) or no longer wants (to prune).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use serde_json::Value;

use super::plan::{RenderError, yaml};

/// An object of the desired state (kept typed so that tests and the controller share it).
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// A Secret.
    Secret(Secret),
    /// A ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// A Service.
    Service(Service),
    /// A Deployment.
    Deployment(Deployment),
    /// A DaemonSet.
    DaemonSet(DaemonSet),
    /// A NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
    /// A StatefulSet.
    StatefulSet(StatefulSet),
    /// A PodDisruptionBudget.
    PodDisruptionBudget(PodDisruptionBudget),
}

impl Object {
    /// `Kind/name`, for logs and tests.
    pub fn key(&self) -> String {
        let (k, n) = match self {
            Object::ConfigMap(o) => ("ConfigMap", o.name_any()),
            Object::Secret(o) => ("Secret", o.name_any()),
            Object::ServiceAccount(o) => ("ServiceAccount", o.name_any()),
            Object::Service(o) => ("Service", o.name_any()),
            Object::Deployment(o) => ("Deployment", o.name_any()),
            Object::DaemonSet(o) => ("DaemonSet", o.name_any()),
            Object::NetworkPolicy(o) => ("NetworkPolicy", o.name_any()),
            Object::StatefulSet(o) => ("StatefulSet", o.name_any()),
            Object::PodDisruptionBudget(o) => ("PodDisruptionBudget", o.name_any()),
        };
        format!("{k}/{n}")
    }

    /// The object as JSON (with apiVersion and kind).
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        match self {
            Object::ConfigMap(o) => serde_json::to_value(o),
            Object::Secret(o) => serde_json::to_value(o),
            Object::ServiceAccount(o) => serde_json::to_value(o),
            Object::Service(o) => serde_json::to_value(o),
            Object::Deployment(o) => serde_json::to_value(o),
            Object::DaemonSet(o) => serde_json::to_value(o),
            Object::NetworkPolicy(o) => serde_json::to_value(o),
            Object::StatefulSet(o) => serde_json::to_value(o),
            Object::PodDisruptionBudget(o) => serde_json::to_value(o),
        }
    }
}

/// What a deployment wants applied, and what it wants gone.
#[derive(Default)]
pub struct Objects {
    /// Objects to server-side apply, in apply order.
    pub apply: Vec<Object>,
    /// `Kind/name` of objects it may have created before and no longer wants.
    pub prune: Vec<String>,
}

impl Objects {
    /// Wants `o`.
    pub fn add(&mut self, o: Object) {
        self.apply.push(o);
    }

    /// No longer wants `kind/name`.
    pub fn prune(&mut self, kind: &str, name: &str) {
        self.prune.push(format!("{kind}/{name}"));
    }
}

/// All objects as one YAML stream (golden files, `--dry-run` style output).
pub fn objects_yaml(objects: &[Object]) -> Result<String, RenderError> {
    let mut out = String::new();
    for o in objects {
        let v = o.to_value().map_err(|source| RenderError::Object {
            what: o.key(),
            source,
        })?;
        out.push_str("---\n");
        out.push_str(&yaml(&o.key(), &v)?);
    }
    Ok(out)
}
