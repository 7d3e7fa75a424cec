//! The pure half of reconciliation: resources in, desired objects and statuses out.
//!
//! [`desired`] takes one [`KauditDeployment`] and everything it depends on ([`Inputs`]: every
//! `FalcoRule`, `FalcoRulesFile`, `AlertSink`, `ClusterAlertSink`, and the ConfigMaps and Secrets
//! they reference) and returns the Kubernetes objects to server-side apply, the objects to
//! remove, and the status of every input. No I/O: the controller reads, calls this, and writes.
//!
//! One file per family of objects, each a function of the [`Plan`](plan::Plan):
//!
//! | file | renders |
//! | --- | --- |
//! | [`rules`] | the rules files (defaults, cluster files, one per namespace) and their ConfigMap |
//! | [`sinks`] | the sink entries of kaudit's config and their credential files |
//! | [`sources`] | the source entries (`spec.sources`) and their credential files |
//! | [`kaudit_config`] | `kaudit.yaml` (a typed kaudit `Config`) and the config Secret |
//! | [`falco`] | `falco.yaml` and its ConfigMap |
//! | [`workloads`] | kaudit's StatefulSet (or Deployment) and PodDisruptionBudget, Falco's Deployment or DaemonSet |
//! | [`console`] | the console: its sink, config sections, Secrets' mounts and Service |
//! | [`service`] | the ServiceAccounts and Services (kaudit's, its headless one, Falco's) |
//! | [`limits`] | size limits keeping every object under the apiserver's limit |
//! | [`network`] | the NetworkPolicies (Falco's audit endpoint: kaudit's pods only) |
//! | [`status`], [`outcome`] | the deployment's status, every input's outcome and status |
//! | [`plan`], [`object`] | fixed names and ports, metadata, the typed object list |

pub mod console;
pub mod falco;
pub mod kaudit_config;
pub mod limits;
pub mod network;
pub mod object;
pub mod outcome;
pub mod plan;
pub mod rules;
pub mod service;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod workloads;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::crd::{KauditDeployment, KauditDeploymentStatus};
use super::inputs::Inputs;

pub use falco::falco_config;
pub use object::{Object, objects_yaml};
pub use outcome::{
    ItemKind, Outcome, carry_transition_times, cond, condition, item_status, truncate,
};
pub use plan::{
    CONFIG_DIR, DATA_DIR, FALCO_HEALTH_PORT, FALCO_PLUGIN_PORT, FALCO_PLUGINS_DIR, FIELD_MANAGER,
    INTAKE_TOKEN_ENV, INTAKE_TOKEN_KEY, KAUDIT_GRACE_SECONDS, KAUDIT_PORT, RULES_DIR,
    RULES_HASH_ANNOTATION, RenderError, needs_intake_token,
};
pub use rules::render_rule;
pub use sinks::sink_name;
pub use status::input_outcomes;
pub use workloads::merge_patch;

/// The desired state of one KauditDeployment.
#[derive(Clone, Debug)]
pub struct Desired {
    /// Objects to server-side apply, in apply order.
    pub objects: Vec<Object>,
    /// `Kind/name` of objects this deployment may have created before and no longer wants.
    pub prune: Vec<String>,
    /// The outcome of every input.
    pub outcomes: Vec<Outcome>,
    /// The KauditDeployment's status (without the apply result: `Ready` says rendered).
    pub status: KauditDeploymentStatus,
    /// The rendered kaudit config (YAML), for tests and events.
    pub kaudit_config: String,
    /// The rules files in load order: (ConfigMap key, text).
    pub rules_files: Vec<(String, String)>,
}

/// Renders the desired state of `kd`. `now` stamps the conditions.
pub fn desired(kd: &KauditDeployment, inputs: &Inputs, now: &Time) -> Result<Desired, RenderError> {
    let plan = plan::Plan::new(kd, inputs)?;
    let mut outcomes = Vec::new();
    let rules_files = rules::files(kd.spec.default_rules, inputs, &mut outcomes)?;
    let rule_paths = rules::paths(&rules_files);
    let tenancy = kaudit_config::tenancy(&kd.spec.tenancy);
    tenancy.validate().map_err(|e| RenderError::Spec {
        key: format!("spec.tenancy.{}", e.key),
        message: e.message,
    })?;
    console::validate(&plan)?;
    let mut sinks = sinks::render_all(inputs, &tenancy.sink_rules(), &mut outcomes);
    let sink_count = sinks.entries.len();
    sinks.entries.extend(console::sink(&plan));
    let sources = sources::render(&plan.ns, &kd.spec.sources, &inputs.secrets)?;
    let kaudit_config = kaudit_config::render(&plan, &rule_paths, sinks.entries, &sources)?;
    let mut cred_files = sinks.files;
    cred_files.extend(sources.files);

    let mut out = object::Objects::default();
    service::accounts(&plan, &mut out);
    out.add(rules::config_map(&plan, &rules_files));
    out.add(kaudit_config::secret(&plan, &kaudit_config, cred_files));
    let falco_hash = falco::config_map(&plan, &rules_files, &rule_paths, &mut out)?;
    service::kaudit_headless(&plan, &mut out);
    workloads::kaudit(&plan, &mut out)?;
    out.add(service::kaudit(&plan));
    console::service(&plan, &mut out);
    out.add(workloads::disruption_budget(&plan));
    match falco_hash {
        Some(hash) => {
            workloads::falco(&plan, &hash, &mut out);
            out.add(service::falco(&plan));
        }
        None => {
            for kind in ["Deployment", "DaemonSet", "Service"] {
                out.prune(kind, &plan.falco_name());
            }
        }
    }

    network::policies(&plan, &mut out);

    let status = status::deployment(&outcomes, sink_count, plan.generation, now);
    Ok(Desired {
        objects: out.apply,
        prune: out.prune,
        outcomes,
        status,
        kaudit_config,
        rules_files,
    })
}
