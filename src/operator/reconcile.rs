//! The pure half of reconciliation: resources in, desired objects and statuses out.
//!
//! [`desired`] takes one [`KauditDeployment`] and everything it depends on (every `FalcoRule`,
//! `FalcoRulesFile`, `AlertSink`, `ClusterAlertSink`, and the ConfigMaps and Secrets they
//! reference) and returns the Kubernetes objects to server-side apply, the objects to remove,
//! and the status of every input. No I/O: the controller reads, calls this, and writes.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::{Resource, ResourceExt};
use serde_json::{Map, Value, json};

use crate::rules::{LoadOptions, Ruleset};

use super::crd::{
    AlertSink, ClusterAlertSink, DetectModeSpec, FalcoRule, FalcoRulesFile, FalcoWorkload,
    KauditDeployment, KauditDeploymentStatus, RuleStatus, SinkSpec,
};
use super::tenancy;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kaudit-operator";
/// Pod template annotation of Falco carrying the hash of its rules and config.
pub const RULES_HASH_ANNOTATION: &str = "kaudit.io/rules-hash";
/// Where kaudit's config Secret (config + credential files) is mounted.
pub const CONFIG_DIR: &str = "/etc/kaudit/config";
/// Where the rules ConfigMap is mounted (kaudit and Falco).
pub const RULES_DIR: &str = "/etc/kaudit/rules";
/// kaudit's data directory (spools).
pub const DATA_DIR: &str = "/var/lib/kaudit";
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

/// Condition types.
pub mod cond {
    /// Everything rendered and applied.
    pub const READY: &str = "Ready";
    /// The rules validate (with the engine's error text when not).
    pub const RULES_VALID: &str = "RulesValid";
    /// A sink's spec is usable.
    pub const VALID: &str = "Valid";
}

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
    /// YAML serialisation failed.
    #[error("serialising {what}: {message}")]
    Yaml {
        /// Which document.
        what: String,
        /// The error.
        message: String,
    },
}

/// Everything a [`KauditDeployment`] depends on, as read from the apiserver.
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
    /// deployment's (namespace, name); only deployments that need one ([`needs_intake_token`]).
    /// The controller reads it back from the config Secret, or issues a new one.
    pub intake_tokens: BTreeMap<(String, String), String>,
}

/// Which kind an outcome is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ItemKind {
    /// A FalcoRule.
    FalcoRule,
    /// A FalcoRulesFile.
    FalcoRulesFile,
    /// An AlertSink.
    AlertSink,
    /// A ClusterAlertSink.
    ClusterAlertSink,
}

/// What became of one input resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The kind.
    pub kind: ItemKind,
    /// Namespace (namespaced kinds).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The name it has in the rendered config (rule name, sink name), when accepted.
    pub rendered_name: Option<String>,
    /// Why it was refused.
    pub error: Option<String>,
}

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
        }
    }
}

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

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    hex(ctx.finish().as_ref())
}

pub(crate) use crate::transport::encode::hex;

/// A status condition.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The status an input gets from its outcome. `deployed`: some KauditDeployment exists to load
/// it; a valid input is `Ready` only then.
pub fn item_status(o: &Outcome, deployed: bool, now: &Time) -> RuleStatus {
    let type_ = match o.kind {
        ItemKind::FalcoRule | ItemKind::FalcoRulesFile => cond::RULES_VALID,
        ItemKind::AlertSink | ItemKind::ClusterAlertSink => cond::VALID,
    };
    let (ok, reason, msg) = match &o.error {
        None => (true, "Accepted", "accepted".to_string()),
        Some(e) => (false, "Invalid", e.clone()),
    };
    let ready = if ok && !deployed {
        condition(
            cond::READY,
            false,
            "NoDeployment",
            "valid, but no KauditDeployment exists to load it",
            o.generation,
            now,
        )
    } else {
        condition(cond::READY, ok, reason, &msg, o.generation, now)
    };
    RuleStatus {
        conditions: vec![condition(type_, ok, reason, &msg, o.generation, now), ready],
        observed_generation: o.generation,
        rendered_name: o.rendered_name.clone(),
    }
}

fn yaml<T: serde::Serialize>(what: &str, v: &T) -> Result<String, RenderError> {
    yaml_serde::to_string(v).map_err(|e| RenderError::Yaml {
        what: what.into(),
        message: e.to_string(),
    })
}

fn typed<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, RenderError> {
    serde_json::from_value(v).map_err(|source| RenderError::Object {
        what: what.into(),
        source,
    })
}

/// JSON merge patch (RFC 7386) of `patch` onto `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Renders one tenant rule into a rules-file item, or says why it cannot be.
pub fn render_rule(
    ns: &str,
    name: &str,
    spec: &super::crd::FalcoRuleSpec,
) -> Result<Value, String> {
    let priority = tenancy::check_rule_fields(spec).map_err(|e| e.to_string())?;
    let condition = tenancy::scoped_condition(ns, spec).map_err(|e| e.to_string())?;
    Ok(json!({
        "rule": tenancy::scoped_rule_name(ns, name, &spec.rule),
        "desc": if spec.desc.is_empty() { spec.rule.clone() } else { spec.desc.clone() },
        "condition": condition,
        "output": tenancy::scoped_output(&spec.output),
        "priority": priority.as_str(),
        "source": "k8s_audit",
        "tags": spec.tags,
        "enabled": spec.enabled,
    }))
}

fn load_check(sources: &[(String, String)]) -> Result<(), String> {
    Ruleset::load_sources(sources, &LoadOptions::default())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A ConfigMap/Secret data key from a free name: unsafe characters become `_`.
fn key_safe(s: &str) -> String {
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

/// Rule files and their outcomes: cluster files first (by order, then name), then one file per
/// namespace (by namespace), each rule validated alone against the cluster files.
fn render_rules(
    default_rules: bool,
    inputs: &Inputs,
    outcomes: &mut Vec<Outcome>,
) -> Result<Vec<(String, String)>, RenderError> {
    let mut files: Vec<(String, String)> = Vec::new();
    if default_rules {
        files.push((
            "00-kaudit-default.yaml".into(),
            crate::rules::DEFAULT_RULES.to_string(),
        ));
    }
    let mut cluster: Vec<&FalcoRulesFile> = inputs.rules_files.iter().collect();
    cluster.sort_by_key(|f| (f.spec.order, f.name_any()));
    for (i, f) in cluster.into_iter().enumerate() {
        let name = f.name_any();
        let key = format!("10-cluster-{i:03}-{}.yaml", key_safe(&name));
        let text = match (&f.spec.rules, &f.spec.config_map_ref) {
            (Some(t), None) => Ok(t.clone()),
            (None, Some(r)) => inputs
                .config_maps
                .get(&(r.namespace.clone(), r.name.clone()))
                .and_then(|d| d.get(&r.key))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "ConfigMap {}/{} has no key {:?}",
                        r.namespace, r.name, r.key
                    )
                }),
            _ => Err("set exactly one of `rules` and `configMapRef`".to_string()),
        };
        let checked = text.and_then(|t| {
            let mut trial = files.clone();
            trial.push((key.clone(), t.clone()));
            load_check(&trial).map(|()| t)
        });
        let (rendered_name, error) = match checked {
            Ok(t) => {
                files.push((key.clone(), t));
                (Some(key), None)
            }
            Err(e) => (None, Some(e)),
        };
        outcomes.push(Outcome {
            kind: ItemKind::FalcoRulesFile,
            namespace: None,
            name,
            generation: f.metadata.generation,
            rendered_name,
            error,
        });
    }
    let base = files.clone();
    let mut rules: Vec<&FalcoRule> = inputs.rules.iter().collect();
    rules.sort_by_key(|r| (r.namespace().unwrap_or_default(), r.name_any()));
    // Render every rule (tenancy checks) first.
    let rendered: Vec<(&FalcoRule, String, String, Result<Value, String>)> = rules
        .into_iter()
        .map(|r| {
            let ns = r.namespace().unwrap_or_default();
            let name = r.name_any();
            let item = render_rule(&ns, &name, &r.spec);
            (r, ns, name, item)
        })
        .collect();
    // Tenant rules cannot refer to each other (no macros, lists or overrides, unique names), so
    // when all of them load together on top of the cluster files each is valid: one engine load
    // in the usual case. Only when that fails is each rule loaded alone to find the culprits.
    let mut together = base.clone();
    let all_items: Vec<Value> = rendered
        .iter()
        .filter_map(|(_, _, _, i)| i.as_ref().ok().cloned())
        .collect();
    together.push((
        "<namespace rules>".into(),
        yaml("namespace rules", &all_items)?,
    ));
    let all_load = load_check(&together).is_ok();
    // Namespace → accepted rule items.
    let mut per_ns: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (r, ns, name, item) in rendered {
        let result = item.and_then(|item| {
            if all_load {
                return Ok(item);
            }
            let text = yaml("rule", &vec![item.clone()]).map_err(|e| e.to_string())?;
            let mut trial = base.clone();
            trial.push((format!("{ns}/{name}"), text));
            load_check(&trial).map(|()| item)
        });
        let (rendered_name, error) = match result {
            Ok(item) => {
                per_ns.entry(ns.clone()).or_default().push(item);
                (
                    Some(tenancy::scoped_rule_name(&ns, &name, &r.spec.rule)),
                    None,
                )
            }
            Err(e) => (None, Some(e)),
        };
        outcomes.push(Outcome {
            kind: ItemKind::FalcoRule,
            namespace: Some(ns),
            name,
            generation: r.metadata.generation,
            rendered_name,
            error,
        });
    }
    for (ns, items) in per_ns {
        let text = format!(
            "# Rules of namespace {ns}, rendered by the kaudit operator; each is scoped to {ns}.\n{}",
            yaml("namespace rules", &items)?
        );
        files.push((format!("50-ns-{ns}.yaml"), text));
    }
    // Each rule passed alone; make sure the whole set loads too, else keep the cluster files.
    if let Err(e) = load_check(&files) {
        for o in outcomes.iter_mut() {
            if o.kind == ItemKind::FalcoRule && o.error.is_none() {
                o.error = Some(format!("the combined rules do not load: {e}"));
                o.rendered_name = None;
            }
        }
        files = base;
    }
    Ok(files)
}

/// Setting keys that hold credentials inline, refused in sink settings.
const INLINE_SECRET_WORDS: &[&str] = &["password", "token", "secret", "nkey_seed", "api_key"];
/// Header names whose values are credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
];

fn check_settings(v: &Map<String, Value>, path: &str) -> Result<(), String> {
    for (k, val) in v {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let lk = k.to_ascii_lowercase();
        if path.is_empty() && ["name", "type", "min_priority", "filter"].contains(&lk.as_str()) {
            return Err(format!("settings.{p}: set it in the spec, not in settings"));
        }
        if lk.ends_with("_file") || lk.ends_with("_files") {
            return Err(format!(
                "settings.{p}: file settings come from secretRefs only"
            ));
        }
        if INLINE_SECRET_WORDS.iter().any(|w| lk.contains(w)) {
            return Err(format!(
                "settings.{p}: credentials must come from a Secret (secretRefs), never inline"
            ));
        }
        if path.ends_with("headers") && SECRET_HEADERS.contains(&lk.as_str()) {
            return Err(format!(
                "settings.{p}: credential headers must come from a Secret (secretRefs with setting header_files.{k})"
            ));
        }
        if let Value::Object(m) = val {
            check_settings(m, &p)?;
        }
    }
    Ok(())
}

fn set_path(root: &mut Map<String, Value>, path: &[&str], v: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for p in parents {
        let entry = cur
            .entry((*p).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(m) = entry else { return };
        cur = m;
    }
    cur.insert((*last).to_string(), v);
}

/// A rendered sink: its config entry and the credential files it needs.
struct RenderedSink {
    entry: Map<String, Value>,
    files: Vec<(String, Vec<u8>)>,
}

/// The config name of a namespaced sink: `ns_<ns>_<name>` (dots become `__`; Kubernetes names
/// contain no `_`, so no two resources share a name).
pub fn sink_name(ns: Option<&str>, name: &str) -> String {
    let n = name.replace('.', "__");
    match ns {
        Some(ns) => format!("ns_{ns}_{n}"),
        None => format!("cluster_{n}"),
    }
}

fn render_sink(
    ns: Option<&str>,
    name: &str,
    spec: &SinkSpec,
    secrets: &BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
) -> Result<RenderedSink, String> {
    let sname = sink_name(ns, name);
    check_settings(&spec.settings, "")?;
    let mut entry = spec.settings.clone();
    entry.insert("name".into(), Value::String(sname.clone()));
    entry.insert("type".into(), Value::String(spec.type_.clone()));
    if let Some(p) = &spec.min_priority {
        entry.insert("min_priority".into(), Value::String(p.clone()));
    }
    let filter = match ns {
        Some(ns) => {
            Some(tenancy::scoped_filter(ns, spec.filter.as_deref()).map_err(|e| e.to_string())?)
        }
        None => match spec
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            Some(f) => {
                crate::router::filter::compile(f)?;
                Some(f.to_string())
            }
            None => None,
        },
    };
    if let Some(f) = filter {
        entry.insert("filter".into(), Value::String(f));
    }
    // A tenant's file sink writes under kaudit's data directory, in a file named for it.
    if let (Some(ns), "file") = (ns, spec.type_.as_str()) {
        let file = entry
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("alerts.json")
            .to_string();
        if file.contains('/') || file.starts_with('.') || file.is_empty() {
            return Err("settings.path: a namespaced file sink takes a bare file name".into());
        }
        entry.insert(
            "path".into(),
            Value::String(format!("{DATA_DIR}/alerts_{ns}_{}", key_safe(&file))),
        );
    }
    let mut files = Vec::new();
    for r in &spec.secret_refs {
        let segs: Vec<&str> = r.setting.split('.').collect();
        let seg_ok = segs.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        let file_setting = segs.last().is_some_and(|l| l.ends_with("_file"))
            || (segs.len() >= 2 && segs[segs.len() - 2] == "header_files");
        if !seg_ok || !file_setting {
            return Err(format!(
                "secretRefs: setting {:?} must be a `*_file` setting or `header_files.<Header>`",
                r.setting
            ));
        }
        let sns = match (ns, &r.namespace) {
            (Some(own), None) => own.to_string(),
            (Some(own), Some(other)) if other == own => own.to_string(),
            (Some(own), Some(other)) => {
                return Err(format!(
                    "secretRefs: a sink in namespace {own} cannot read Secrets of namespace {other}"
                ));
            }
            (None, Some(n)) => n.clone(),
            (None, None) => {
                return Err(format!(
                    "secretRefs: {:?} needs a namespace (cluster sink)",
                    r.setting
                ));
            }
        };
        let value = secrets
            .get(&(sns.clone(), r.name.clone()))
            .ok_or_else(|| format!("secretRefs: Secret {sns}/{} not found", r.name))?
            .get(&r.key)
            .ok_or_else(|| format!("secretRefs: Secret {sns}/{} has no key {:?}", r.name, r.key))?;
        // The content hash is part of the file name: a rotated credential changes the setting,
        // which makes kaudit rebuild the sink on its config reload.
        let h = sha256_hex(&[value]);
        let key = format!("cred.{sname}.{}.{}", key_safe(&r.setting), &h[..12]);
        set_path(
            &mut entry,
            &segs,
            Value::String(format!("{CONFIG_DIR}/{key}")),
        );
        files.push((key, value.clone()));
    }
    // Type-check against kaudit's own sink config.
    serde_json::from_value::<crate::sinks::SinkConfig>(Value::Object(entry.clone()))
        .map_err(|e| e.to_string())?;
    Ok(RenderedSink { entry, files })
}

/// Every sink's config entry (cluster sinks first, by name; then namespaced ones) and the
/// credential files they need; each sink's outcome is pushed to `outcomes`.
fn render_sinks(
    inputs: &Inputs,
    outcomes: &mut Vec<Outcome>,
) -> (Vec<Value>, BTreeMap<String, Vec<u8>>) {
    let mut entries = Vec::new();
    let mut cred_files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut cluster: Vec<&ClusterAlertSink> = inputs.cluster_sinks.iter().collect();
    cluster.sort_by_key(|s| s.name_any());
    let mut tenant: Vec<&AlertSink> = inputs.sinks.iter().collect();
    tenant.sort_by_key(|s| (s.namespace().unwrap_or_default(), s.name_any()));
    let all = cluster
        .into_iter()
        .map(|s| {
            (
                ItemKind::ClusterAlertSink,
                None,
                s.name_any(),
                s.metadata.generation,
                &s.spec.sink,
            )
        })
        .chain(tenant.into_iter().map(|s| {
            (
                ItemKind::AlertSink,
                s.namespace(),
                s.name_any(),
                s.metadata.generation,
                &s.spec.sink,
            )
        }));
    for (kind, ns, name, generation, spec) in all {
        let r = render_sink(ns.as_deref(), &name, spec, &inputs.secrets);
        outcomes.push(Outcome {
            kind,
            rendered_name: r.as_ref().ok().map(|_| sink_name(ns.as_deref(), &name)),
            error: r.as_ref().err().cloned(),
            namespace: ns,
            name,
            generation,
        });
        if let Ok(r) = r {
            entries.push(Value::Object(r.entry));
            cred_files.extend(r.files);
        }
    }
    (entries, cred_files)
}

/// The status of every input, the same whichever deployment asks: each is validated as every
/// [`KauditDeployment`] loads it (their `defaultRules` decide which macros and lists exist), and
/// is valid only if valid for all; with no deployment, as the default deployment would. The
/// second value says whether any deployment exists (a valid input is then `Ready`).
pub fn input_outcomes(
    deployments: &[KauditDeployment],
    inputs: &Inputs,
) -> Result<(Vec<Outcome>, bool), RenderError> {
    let mut variants: BTreeMap<bool, Vec<String>> = BTreeMap::new();
    for kd in deployments {
        variants
            .entry(kd.spec.default_rules)
            .or_default()
            .push(format!(
                "{}/{}",
                kd.namespace().unwrap_or_default(),
                kd.name_any()
            ));
    }
    if variants.is_empty() {
        variants.insert(true, Vec::new());
    }
    // Rules depend on the variant; every variant yields the same items in the same order.
    let mut per_variant: Vec<(Vec<String>, Vec<Outcome>)> = Vec::new();
    for (default_rules, names) in variants.into_iter().rev() {
        let mut outcomes = Vec::new();
        render_rules(default_rules, inputs, &mut outcomes)?;
        per_variant.push((names, outcomes));
    }
    let count = per_variant.first().map_or(0, |(_, o)| o.len());
    let mut merged: Vec<Outcome> = (0..count)
        .map(|i| {
            let failing: Vec<&(Vec<String>, Vec<Outcome>)> = per_variant
                .iter()
                .filter(|(_, o)| o[i].error.is_some())
                .collect();
            match failing.first() {
                None => per_variant[0].1[i].clone(),
                // Invalid for every deployment: the error alone says it.
                Some((_, o)) if failing.len() == per_variant.len() => o[i].clone(),
                // Invalid for some: say for which.
                Some((names, o)) => {
                    let mut out = o[i].clone();
                    let e = out.error.take().unwrap_or_default();
                    out.error = Some(format!("for KauditDeployment {}: {e}", names.join(", ")));
                    out
                }
            }
        })
        .collect();
    // Sinks do not depend on the deployment.
    render_sinks(inputs, &mut merged);
    Ok((merged, !deployments.is_empty()))
}

fn labels(kd: &KauditDeployment, component: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in &kd.spec.labels {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    m.insert("app.kubernetes.io/name".into(), json!(component));
    m.insert("app.kubernetes.io/instance".into(), json!(kd.name_any()));
    m.insert("app.kubernetes.io/managed-by".into(), json!(FIELD_MANAGER));
    m
}

fn selector(kd: &KauditDeployment, component: &str) -> Value {
    json!({"app.kubernetes.io/name": component, "app.kubernetes.io/instance": kd.name_any()})
}

fn meta(kd: &KauditDeployment, name: &str, component: &str, owner: &OwnerReference) -> Value {
    json!({
        "name": name,
        "namespace": kd.namespace(),
        "labels": labels(kd, component),
        "ownerReferences": [owner],
    })
}

fn restricted_container_security() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// True when `kd`'s Falco must authenticate to kaudit: kaudit checks tokens (`tokenSecret`) and
/// a managed Falco posts its alerts to kaudit's `http_output` intake.
pub fn needs_intake_token(kd: &KauditDeployment) -> bool {
    kd.spec.service.token_secret.is_some() && kd.spec.detect != DetectModeSpec::Embedded
}

/// Renders the desired state of `kd`. `now` stamps the conditions.
pub fn desired(kd: &KauditDeployment, inputs: &Inputs, now: &Time) -> Result<Desired, RenderError> {
    let ns = kd
        .namespace()
        .ok_or_else(|| RenderError::Incomplete(kd.name_any()))?;
    let owner = kd
        .controller_owner_ref(&())
        .ok_or_else(|| RenderError::Incomplete(kd.name_any()))?;
    let name = kd.name_any();
    let generation = kd.meta().generation;
    let falco_on = kd.spec.detect != DetectModeSpec::Embedded;
    let embedded_on = kd.spec.detect != DetectModeSpec::Falco;
    let intake_token = if needs_intake_token(kd) {
        let t = inputs
            .intake_tokens
            .get(&(ns.clone(), name.clone()))
            .ok_or_else(|| RenderError::NoIntakeToken(format!("{ns}/{name}")))?;
        Some(t.clone())
    } else {
        None
    };
    let mut outcomes = Vec::new();

    // Rules.
    let rules_files = render_rules(kd.spec.default_rules, inputs, &mut outcomes)?;
    let rules_cm_name = format!("{name}-rules");
    let rules_data: BTreeMap<String, String> = rules_files.iter().cloned().collect();
    let rule_paths: Vec<String> = rules_files
        .iter()
        .map(|(k, _)| format!("{RULES_DIR}/{k}"))
        .collect();

    // Sinks.
    let (mut sink_entries, cred_files) = render_sinks(inputs, &mut outcomes);
    if sink_entries.is_empty() {
        sink_entries.push(json!({"name": "stdout", "type": "stdout"}));
    }
    let sink_count = sink_entries.len();

    // kaudit's config.
    let falco_svc = format!("{name}-falco");
    let mut cfg = json!({
        "listen": format!("0.0.0.0:{KAUDIT_PORT}"),
        "data_dir": DATA_DIR,
        "log": {"format": "json"},
        "detect": {"mode": match kd.spec.detect {
            DetectModeSpec::Embedded => "embedded",
            DetectModeSpec::Falco => "falco",
            DetectModeSpec::Both => "both",
        }},
        // Every matching rule alerts: with Falco's default (`first`) a cluster rule that
        // matches an event would silence every namespace's rule for it.
        "rules": {
            "files": if embedded_on { rule_paths.clone() } else { Vec::new() },
            "rule_matching": "all",
        },
        "sinks": sink_entries,
    });
    if falco_on {
        cfg["falco"] = json!({
            "forward_url": format!("http://{falco_svc}.{ns}.svc:{FALCO_PLUGIN_PORT}/k8s-audit"),
            "healthz_url": format!("http://{falco_svc}.{ns}.svc:{FALCO_HEALTH_PORT}/healthz"),
            "http_output": true,
        });
        if intake_token.is_some() {
            // Falco's own token, good for its alerts on `POST /` only, from the config Secret.
            cfg["falco"]["intake_token_file"] = json!(format!("{CONFIG_DIR}/{INTAKE_TOKEN_KEY}"));
        }
    }
    if kd.spec.service.tls_secret.is_some() {
        cfg["tls"] =
            json!({"cert_file": "/etc/kaudit/tls/tls.crt", "key_file": "/etc/kaudit/tls/tls.key"});
    }
    if kd.spec.service.token_secret.is_some() {
        cfg["auth"] = json!({"token_file": "/etc/kaudit/token/tokens"});
    }
    // Type-check against kaudit's own config (the file checks happen in the pod).
    serde_json::from_value::<crate::config::Config>(cfg.clone()).map_err(|source| {
        RenderError::Object {
            what: "kaudit config".into(),
            source,
        }
    })?;
    let kaudit_config = format!(
        "# Rendered by the kaudit operator for KauditDeployment {ns}/{name}; do not edit.\n{}",
        yaml("kaudit config", &cfg)?
    );

    let mut objects = Vec::new();
    let mut prune = Vec::new();

    // ServiceAccounts: the workloads need no API access, so no token and no RBAC.
    for (sa, comp) in [(name.clone(), "kaudit"), (falco_svc.clone(), "falco")] {
        if comp == "falco" && !falco_on {
            prune.push(format!("ServiceAccount/{sa}"));
            continue;
        }
        objects.push(Object::ServiceAccount(typed(
            "ServiceAccount",
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": meta(kd, &sa, comp, &owner),
                "automountServiceAccountToken": false,
            }),
        )?));
    }

    objects.push(Object::ConfigMap(typed(
        "rules ConfigMap",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta(kd, &rules_cm_name, "kaudit", &owner),
            "data": rules_data,
        }),
    )?));

    // kaudit's config and credential files share one Secret, so that the kubelet swaps them
    // together (one atomic volume update) and a config reload sees matching files.
    let mut secret_data: BTreeMap<String, ByteString> = cred_files
        .into_iter()
        .map(|(k, v)| (k, ByteString(v)))
        .collect();
    secret_data.insert(
        "kaudit.yaml".into(),
        ByteString(kaudit_config.clone().into_bytes()),
    );
    if let Some(t) = &intake_token {
        secret_data.insert(INTAKE_TOKEN_KEY.into(), ByteString(t.clone().into_bytes()));
    }
    let config_secret = format!("{name}-config");
    objects.push(Object::Secret(typed(
        "config Secret",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": meta(kd, &config_secret, "kaudit", &owner),
            "type": "Opaque",
            "data": secret_data,
        }),
    )?));

    // Falco's config.
    let falco_cfg_name = format!("{name}-falco");
    let mut falco_hash = String::new();
    if falco_on {
        let falco_yaml = falco_config(
            &name,
            &ns,
            kd.spec.service.port,
            kd.spec.service.tls_secret.is_some(),
            intake_token.is_some(),
            &rule_paths,
        )?;
        // The token reaches Falco through its environment, which a running pod never re-reads:
        // a new token must roll Falco too.
        let parts: Vec<&[u8]> = rules_files
            .iter()
            .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()])
            .chain([falco_yaml.as_bytes()])
            .chain(intake_token.as_deref().map(str::as_bytes))
            .collect();
        falco_hash = sha256_hex(&parts);
        objects.push(Object::ConfigMap(typed(
            "Falco ConfigMap",
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": meta(kd, &falco_cfg_name, "falco", &owner),
                "data": {"falco.yaml": falco_yaml},
            }),
        )?));
    } else {
        prune.push(format!("ConfigMap/{falco_cfg_name}"));
    }

    // kaudit's Deployment: no content hash in its template, it reloads config and rules itself.
    let mut volumes = vec![
        json!({"name": "config", "secret": {"secretName": config_secret}}),
        json!({"name": "rules", "configMap": {"name": rules_cm_name}}),
        json!({"name": "data", "emptyDir": {}}),
    ];
    let mut mounts = vec![
        json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}),
        json!({"name": "rules", "mountPath": RULES_DIR, "readOnly": true}),
        json!({"name": "data", "mountPath": DATA_DIR}),
    ];
    if let Some(t) = &kd.spec.service.tls_secret {
        volumes.push(json!({"name": "tls", "secret": {"secretName": t}}));
        mounts.push(json!({"name": "tls", "mountPath": "/etc/kaudit/tls", "readOnly": true}));
    }
    if let Some(t) = &kd.spec.service.token_secret {
        volumes.push(json!({"name": "token", "secret": {"secretName": t}}));
        mounts.push(json!({"name": "token", "mountPath": "/etc/kaudit/token", "readOnly": true}));
    }
    let scheme = if kd.spec.service.tls_secret.is_some() {
        "HTTPS"
    } else {
        "HTTP"
    };
    let mut template = json!({
        "metadata": {"labels": labels(kd, "kaudit")},
        "spec": {
            "serviceAccountName": name,
            "automountServiceAccountToken": false,
            "securityContext": {
                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "kaudit",
                "image": kd.spec.image,
                "args": ["serve", "--config", format!("{CONFIG_DIR}/kaudit.yaml")],
                "ports": [{"name": "webhook", "containerPort": KAUDIT_PORT}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "webhook", "scheme": scheme}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "webhook", "scheme": scheme}},
                "resources": kd.spec.resources.clone().map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                    .unwrap_or_else(|| json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}})),
                "securityContext": restricted_container_security(),
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        }
    });
    if let Some(p) = &kd.spec.pod_template {
        merge_patch(&mut template, p);
    }
    objects.push(Object::Deployment(typed(
        "kaudit Deployment",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta(kd, &name, "kaudit", &owner),
            "spec": {
                "replicas": kd.spec.replicas,
                "selector": {"matchLabels": selector(kd, "kaudit")},
                "template": template,
            }
        }),
    )?));
    objects.push(Object::Service(typed(
        "kaudit Service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(kd, &name, "kaudit", &owner),
            "spec": {
                "type": kd.spec.service.type_,
                "selector": selector(kd, "kaudit"),
                "ports": [{"name": "webhook", "port": kd.spec.service.port, "targetPort": "webhook"}],
            }
        }),
    )?));

    // Falco.
    if falco_on {
        let mut falco = json!({
            "name": "falco",
            "image": kd.spec.falco.image,
            "command": ["/usr/bin/falco"],
            "args": ["-c", "/etc/falco-kaudit/falco.yaml"],
            "ports": [
                {"name": "k8saudit", "containerPort": FALCO_PLUGIN_PORT},
                {"name": "health", "containerPort": FALCO_HEALTH_PORT},
            ],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "health"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "initialDelaySeconds": 30},
            "resources": kd.spec.falco.resources.clone().map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                .unwrap_or_else(|| json!({"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}})),
            "securityContext": restricted_container_security(),
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/falco-kaudit", "readOnly": true},
                {"name": "rules", "mountPath": RULES_DIR, "readOnly": true},
                {"name": "run", "mountPath": "/var/run/falco"},
            ],
        });
        let mut volumes = vec![
            json!({"name": "config", "configMap": {"name": falco_cfg_name}}),
            json!({"name": "rules", "configMap": {"name": rules_cm_name}}),
            json!({"name": "run", "emptyDir": {}}),
        ];
        if intake_token.is_some() {
            falco["env"] = json!([{
                "name": INTAKE_TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": config_secret, "key": INTAKE_TOKEN_KEY}},
            }]);
        }
        let plugins = &kd.spec.falco.plugins;
        let mut init = Vec::new();
        if !plugins.installer_image.is_empty() {
            // falcoctl installs the plugins into a volume that Falco reads them from.
            let mut args: Vec<String> = vec!["artifact".into(), "install".into()];
            args.extend(plugins.refs.iter().cloned());
            args.extend(
                [
                    "--plugins-dir=/plugins",
                    "--allowed-types=plugin",
                    "--resolve-deps=false",
                    "--log-format=json",
                ]
                .map(String::from),
            );
            init.push(json!({
                "name": "install-plugins",
                "image": plugins.installer_image,
                "args": args,
                "env": [{"name": "HOME", "value": "/tmp"}],
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "securityContext": restricted_container_security(),
                "volumeMounts": [
                    {"name": "plugins", "mountPath": "/plugins"},
                    {"name": "installer-tmp", "mountPath": "/tmp"},
                ],
            }));
            if let Some(m) = falco["volumeMounts"].as_array_mut() {
                m.push(
                    json!({"name": "plugins", "mountPath": FALCO_PLUGINS_DIR, "readOnly": true}),
                );
            }
            volumes.push(json!({"name": "plugins", "emptyDir": {}}));
            volumes.push(json!({"name": "installer-tmp", "emptyDir": {}}));
        }
        let mut falco_template = json!({
            "metadata": {
                "labels": labels(kd, "falco"),
                // A rules or config change rolls Falco: it does not reload plugin rules by itself.
                "annotations": {RULES_HASH_ANNOTATION: falco_hash},
            },
            "spec": {
                "serviceAccountName": falco_svc,
                "automountServiceAccountToken": false,
                "securityContext": {
                    "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [falco],
                "volumes": volumes,
            }
        });
        if !init.is_empty() {
            falco_template["spec"]["initContainers"] = json!(init);
        }
        let (kind, other) = match kd.spec.falco.mode {
            FalcoWorkload::Deployment => ("Deployment", "DaemonSet"),
            FalcoWorkload::DaemonSet => ("DaemonSet", "Deployment"),
        };
        let mut spec = json!({
            "selector": {"matchLabels": selector(kd, "falco")},
            "template": falco_template,
        });
        if kind == "Deployment" {
            spec["replicas"] = json!(1);
        }
        let obj = json!({
            "apiVersion": "apps/v1", "kind": kind,
            "metadata": meta(kd, &falco_svc, "falco", &owner),
            "spec": spec,
        });
        objects.push(if kind == "Deployment" {
            Object::Deployment(typed("Falco Deployment", obj)?)
        } else {
            Object::DaemonSet(typed("Falco DaemonSet", obj)?)
        });
        prune.push(format!("{other}/{falco_svc}"));
        objects.push(Object::Service(typed(
            "Falco Service",
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": meta(kd, &falco_svc, "falco", &owner),
                "spec": {
                    "selector": selector(kd, "falco"),
                    "ports": [
                        {"name": "k8saudit", "port": FALCO_PLUGIN_PORT, "targetPort": "k8saudit"},
                        {"name": "health", "port": FALCO_HEALTH_PORT, "targetPort": "health"},
                    ],
                }
            }),
        )?));
    } else {
        for k in ["Deployment", "DaemonSet", "Service"] {
            prune.push(format!("{k}/{falco_svc}"));
        }
    }

    // Status.
    let bad_rules: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| {
            matches!(o.kind, ItemKind::FalcoRule | ItemKind::FalcoRulesFile) && o.error.is_some()
        })
        .collect();
    let good_rules = outcomes
        .iter()
        .filter(|o| o.kind == ItemKind::FalcoRule && o.error.is_none())
        .count();
    let rules_msg = if bad_rules.is_empty() {
        "all rules valid".to_string()
    } else {
        let first = bad_rules
            .iter()
            .take(5)
            .map(|o| {
                format!(
                    "{}{}: {}",
                    o.namespace
                        .as_ref()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default(),
                    o.name,
                    o.error.as_deref().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        format!("{} invalid: {first}", bad_rules.len())
    };
    let status = KauditDeploymentStatus {
        conditions: vec![
            condition(
                cond::RULES_VALID,
                bad_rules.is_empty(),
                if bad_rules.is_empty() {
                    "AllValid"
                } else {
                    "InvalidRules"
                },
                &rules_msg,
                generation,
                now,
            ),
            condition(
                cond::READY,
                true,
                "Rendered",
                "configuration rendered",
                generation,
                now,
            ),
        ],
        observed_generation: generation,
        rules: i32::try_from(good_rules).unwrap_or(i32::MAX),
        invalid_rules: i32::try_from(
            outcomes
                .iter()
                .filter(|o| o.kind == ItemKind::FalcoRule && o.error.is_some())
                .count(),
        )
        .unwrap_or(i32::MAX),
        sinks: i32::try_from(sink_count).unwrap_or(i32::MAX),
    };
    Ok(Desired {
        objects,
        prune,
        outcomes,
        status,
        kaudit_config,
        rules_files,
    })
}

/// Falco's `falco.yaml`: the k8saudit plugin on 8765, the webserver on 8766, the rendered rules
/// files in order, and alerts posted to kaudit's `http_output` intake.
pub fn falco_config(
    name: &str,
    ns: &str,
    port: i32,
    tls: bool,
    token: bool,
    rule_paths: &[String],
) -> Result<String, RenderError> {
    let scheme = if tls { "https" } else { "http" };
    // libcurl sends a URL's user:password as Basic auth, which kaudit accepts when the password
    // is a token; Falco fills in the variable from its environment when it reads the config.
    let credentials = if token {
        format!("falco:${{{INTAKE_TOKEN_ENV}}}@")
    } else {
        String::new()
    };
    let v = json!({
        "engine": {"kind": "nodriver"},
        "plugins": [
            {
                "name": "k8saudit",
                "library_path": "libk8saudit.so",
                "init_config": {"maxEventSize": 262144, "webhookMaxBatchSize": 12582912},
                "open_params": format!("http://:{FALCO_PLUGIN_PORT}/k8s-audit"),
            },
            {"name": "json", "library_path": "libjson.so"},
        ],
        "load_plugins": ["k8saudit", "json"],
        "rules_files": rule_paths,
        "webserver": {"enabled": true, "listen_port": FALCO_HEALTH_PORT, "k8s_healthz_endpoint": "/healthz"},
        "json_output": true,
        "json_include_output_property": true,
        "json_include_tags_property": true,
        "http_output": {
            "enabled": true,
            "url": format!("{scheme}://{credentials}{name}.{ns}.svc:{port}/"),
            "insecure": tls,
        },
        "stdout_output": {"enabled": false},
        "priority": "debug",
        "rule_matching": "all",
    });
    Ok(format!(
        "# Rendered by the kaudit operator for KauditDeployment {ns}/{name}; do not edit.\n{}",
        yaml("falco.yaml", &v)?
    ))
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
