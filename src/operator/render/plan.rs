//! What every renderer shares: the fixed names, paths and ports, the deployment being rendered
//! ([`Plan`]), the metadata of the objects it owns, and the small helpers.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde_json::Value;

use crate::operator::crd::{DetectModeSpec, KauditDeployment};
use crate::operator::inputs::Inputs;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kaudit-operator";
/// Pod template annotation of Falco carrying the hash of its rules and config.
pub const RULES_HASH_ANNOTATION: &str = "kaudit.io/rules-hash";
/// Where kaudit's config Secret (config + credential files) is mounted.
pub const CONFIG_DIR: &str = "/etc/kaudit/config";
/// Where the rules ConfigMap is mounted (kaudit and Falco).
pub const RULES_DIR: &str = "/etc/kaudit/rules";
/// kaudit's data directory (inbox, spools, dead letters).
pub const DATA_DIR: &str = "/var/lib/kaudit";
/// kaudit pods' `terminationGracePeriodSeconds`. kaudit's drain budgets add up to less: requests
/// in flight 5 s (`pipeline::SHUTDOWN_REQUESTS`), detection 10 s (`pipeline::SHUTDOWN_DETECT`),
/// the Falco forwarder 3 s, then every sink lane at once for `spool.shutdown_flush_ms` (3 s by
/// default): 21 s, leaving room for spool writes and a slow kubelet.
pub const KAUDIT_GRACE_SECONDS: i64 = 45;
/// The k8saudit plugin's port in the Falco pod.
pub const FALCO_PLUGIN_PORT: i32 = 8765;
/// Falco's webserver (health) port, moved off the plugin's.
pub const FALCO_HEALTH_PORT: i32 = 8766;
/// kaudit's listen port in its pod.
pub const KAUDIT_PORT: i32 = 8777;
/// The config Secret's key holding the token Falco presents to kaudit's `http_output` intake.
pub const INTAKE_TOKEN_KEY: &str = "falco-intake-token";
/// The environment variable of Falco's container holding that token; `falco.yaml` refers to it
/// (Falco expands `${VAR}` in its config values), so the token never sits in a ConfigMap.
pub const INTAKE_TOKEN_ENV: &str = "KAUDIT_INTAKE_TOKEN";
/// Where falcoctl installs the plugins and Falco looks for them (its default plugin directory).
pub const FALCO_PLUGINS_DIR: &str = "/usr/share/falco/plugins";

/// Failures that stop rendering altogether (invalid inputs only mark their own status).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The KauditDeployment lacks a namespace or uid (it was not read from the apiserver).
    #[error("KauditDeployment {0} has no namespace or uid")]
    Incomplete(String),
    /// A rendered object failed to convert to its typed form (a defect).
    #[error("rendering {what}: {source}")]
    Object {
        /// Which object.
        what: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// A deployment that needs a Falco intake token was rendered without one (a defect: the
    /// controller issues it before rendering).
    #[error("KauditDeployment {0} needs a Falco intake token")]
    NoIntakeToken(String),
    /// The rendered kaudit config does not read back as the typed one (a defect).
    #[error("rendering kaudit config: {message}")]
    Config {
        /// What differs.
        message: String,
    },
    /// The KauditDeployment's spec is invalid.
    #[error("{key}: {message}")]
    Spec {
        /// The spec key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// YAML serialisation failed.
    #[error("serialising {what}: {message}")]
    Yaml {
        /// Which document.
        what: String,
        /// The error.
        message: String,
    },
}

/// True when `kd`'s Falco must authenticate to kaudit: kaudit checks tokens (`tokenSecret`) and
/// a managed Falco posts its alerts to kaudit's `http_output` intake.
pub fn needs_intake_token(kd: &KauditDeployment) -> bool {
    kd.spec.service.token_secret.is_some() && kd.spec.detect != DetectModeSpec::Embedded
}

/// The deployment being rendered, with what every renderer derives from it.
pub struct Plan<'a> {
    /// The resource.
    pub kd: &'a KauditDeployment,
    /// Its namespace: every object goes there.
    pub ns: String,
    /// Its name: kaudit's objects take it, the others derive theirs from it.
    pub name: String,
    /// The owner reference every object carries.
    pub owner: OwnerReference,
    /// Its `metadata.generation`.
    pub generation: Option<i64>,
    /// A managed Falco runs (`detect: falco` or `both`).
    pub falco_on: bool,
    /// kaudit's own engine runs (`detect: embedded` or `both`).
    pub embedded_on: bool,
    /// The token Falco presents to kaudit, when it needs one.
    pub intake_token: Option<String>,
}

impl<'a> Plan<'a> {
    /// The plan of `kd`, with its intake token from `inputs`.
    pub fn new(kd: &'a KauditDeployment, inputs: &Inputs) -> Result<Self, RenderError> {
        let ns = kd
            .namespace()
            .ok_or_else(|| RenderError::Incomplete(kd.name_any()))?;
        let owner = kd
            .controller_owner_ref(&())
            .ok_or_else(|| RenderError::Incomplete(kd.name_any()))?;
        let name = kd.name_any();
        let intake_token = if needs_intake_token(kd) {
            let t = inputs
                .intake_tokens
                .get(&(ns.clone(), name.clone()))
                .ok_or_else(|| RenderError::NoIntakeToken(format!("{ns}/{name}")))?;
            Some(t.clone())
        } else {
            None
        };
        Ok(Plan {
            kd,
            generation: kd.meta().generation,
            falco_on: kd.spec.detect != DetectModeSpec::Embedded,
            embedded_on: kd.spec.detect != DetectModeSpec::Falco,
            ns,
            name,
            owner,
            intake_token,
        })
    }

    /// The rules ConfigMap.
    pub fn rules_config_map(&self) -> String {
        format!("{}-rules", self.name)
    }

    /// The Secret holding kaudit's config and credential files.
    pub fn config_secret(&self) -> String {
        format!("{}-config", self.name)
    }

    /// The headless Service that kaudit's StatefulSet names as its `serviceName`.
    pub fn headless_service(&self) -> String {
        format!("{}-headless", self.name)
    }

    /// Falco's objects (ConfigMap, ServiceAccount, workload, Service).
    pub fn falco_name(&self) -> String {
        format!("{}-falco", self.name)
    }

    /// The labels of a `component`'s objects: the spec's, then the fixed ones.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut m = self.kd.spec.labels.clone();
        m.insert("app.kubernetes.io/name".into(), component.into());
        m.insert("app.kubernetes.io/instance".into(), self.name.clone());
        m.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
        m
    }

    /// The labels selecting a `component`'s pods.
    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), component.into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
        ])
    }

    /// The metadata of an owned object.
    pub fn meta(&self, name: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.ns.clone()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// SHA-256 of `parts`, each length-prefixed, in lower-case hex.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    hex(ctx.finish().as_ref())
}

pub use crate::transport::encode::hex;

/// A ConfigMap/Secret data key from a free name: unsafe characters become `_`.
pub fn key_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `v` as YAML; `what` names it in the error.
pub fn yaml<T: serde::Serialize>(what: &str, v: &T) -> Result<String, RenderError> {
    yaml_serde::to_string(v).map_err(|e| RenderError::Yaml {
        what: what.into(),
        message: e.to_string(),
    })
}

/// The typed form of a rendered object; `what` names it in the error.
pub fn typed<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, RenderError> {
    serde_json::from_value(v).map_err(|source| RenderError::Object {
        what: what.into(),
        source,
    })
}
