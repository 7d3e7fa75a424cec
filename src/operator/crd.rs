//! The custom resources of the `kaudit.io/v1alpha1` API group.
//!
//! | kind | scope | what |
//! | --- | --- | --- |
//! | [`FalcoRule`] | namespaced | one Falco rule, scoped to its namespace's events |
//! | [`FalcoRulesFile`] | cluster | an admin's Falco rules file (inline or a ConfigMap), ordered |
//! | [`AlertSink`] | namespaced | an alert destination receiving its namespace's alerts only |
//! | [`ClusterAlertSink`] | cluster | an alert destination receiving every alert |
//! | [`KauditDeployment`] | namespaced | kaudit (and optionally Falco) itself |

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every kind here.
pub const GROUP: &str = "kaudit.io";
/// The API version of every kind here.
pub const VERSION: &str = "v1alpha1";

/// Condition types of the statuses.
pub mod cond {
    /// Everything rendered and applied.
    pub const READY: &str = "Ready";
    /// The rules validate (with the engine's error text when not).
    pub const RULES_VALID: &str = "RulesValid";
    /// A sink's spec is usable.
    pub const VALID: &str = "Valid";
}

fn yes() -> bool {
    true
}

/// A free-form object in the schema (`x-kubernetes-preserve-unknown-fields`).
fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn free_form_opt(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    free_form(g)
}

/// One Falco rule for the events of the resource's own namespace.
///
/// The operator scopes the condition to the namespace (`ka.target.namespace = "<ns>" and (...)`,
/// outermost, after exceptions), names the rule `<namespace>/<name>: <rule>` and validates it with
/// the rules engine; an invalid rule is reported in `status` and left out.
// kube's printcolumn(...) repeats `type_ = "string"` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kaudit.io",
    version = "v1alpha1",
    kind = "FalcoRule",
    namespaced,
    shortname = "frule",
    category = "kaudit",
    status = "RuleStatus",
    doc = "A Falco rule over the audit events of this namespace.",
    printcolumn(name = "Rule", type_ = "string", json_path = ".spec.rule"),
    printcolumn(name = "Priority", type_ = "string", json_path = ".spec.priority"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"RulesValid\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FalcoRuleSpec {
    /// The rule's name, as Falco shows it (prefixed with `<namespace>/<name>: `).
    #[schemars(length(max = 256))]
    pub rule: String,
    /// What the rule detects.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub desc: String,
    /// A standalone Falco condition over `ka.*` fields; macros and lists of the cluster rules
    /// files may be used, none may be defined.
    #[schemars(length(max = 16384))]
    pub condition: String,
    /// The alert text, with `%field` references.
    #[schemars(length(max = 4096))]
    pub output: String,
    /// Falco priority: emergency, alert, critical, error, warning, notice, informational, debug.
    #[serde(default = "default_priority")]
    pub priority: String,
    /// Tags carried by alerts.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub tags: Vec<String>,
    /// `false` keeps the rule defined but not evaluated.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Falco exceptions: events matching any row of any exception do not raise the rule.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub exceptions: Vec<RuleException>,
}

fn default_priority() -> String {
    "warning".into()
}

/// A Falco rule exception: `fields` compared with `comps` to each row of `values`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleException {
    /// The exception's name.
    pub name: String,
    /// The fields compared, e.g. `[ka.user.name, ka.target.name]`.
    pub fields: Vec<String>,
    /// One operator per field (`=`, `in`, `startswith`, ...); defaults to `=` for each.
    #[serde(default)]
    pub comps: Vec<String>,
    /// Rows of values, one value per field; a list operator (`in`, `intersects`, `pmatch`)
    /// compares with the one-element list of its value.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub values: Vec<Vec<String>>,
}

/// The status of a [`FalcoRule`], an [`AlertSink`] or a [`ClusterAlertSink`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    /// `Ready` and `RulesValid` (rules) or `Valid` (sinks), with the error text when false.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The name the rule (or sink) has in the rendered configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_name: Option<String>,
}

/// An admin's Falco rules file, loaded before every namespace's rules, in `order`.
// kube's printcolumn(...) repeats `type_ = "string"` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kaudit.io",
    version = "v1alpha1",
    kind = "FalcoRulesFile",
    shortname = "frf",
    category = "kaudit",
    status = "RuleStatus",
    doc = "A cluster-wide Falco rules file (macros, lists, rules) for every namespace.",
    printcolumn(name = "Order", type_ = "integer", json_path = ".spec.order"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"RulesValid\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FalcoRulesFileSpec {
    /// Load order: lower first; ties by name.
    #[serde(default)]
    pub order: i32,
    /// The rules file, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 524288))]
    pub rules: Option<String>,
    /// Or a ConfigMap key holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

/// A key of a ConfigMap in a given namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
    /// The key.
    pub key: String,
}

/// The settings of an alert sink (shared by [`AlertSink`] and [`ClusterAlertSink`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SinkSpec {
    /// The sink type: `stdout`, `file`, `nats`, `http`, `gcscc`, `kafka`, ...
    #[serde(rename = "type")]
    #[schemars(length(max = 32))]
    pub type_: String,
    /// Alerts below this Falco priority skip the sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_priority: Option<String>,
    /// A filter in Falco's syntax over the alert (`rule`, `priority`, `tags`, output fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub filter: Option<String>,
    /// The type's own settings, as in kaudit's config; no credentials and no `*_file` keys.
    #[serde(default)]
    #[schemars(schema_with = "free_form")]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Credentials: each fills a `*_file` setting with a file holding a Secret's key.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub secret_refs: Vec<SinkSecretRef>,
}

/// A credential of a sink, taken from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SinkSecretRef {
    /// The dotted path of the `*_file` setting it fills, e.g. `password_file`,
    /// `tls.key_file` or `header_files.Authorization`.
    pub setting: String,
    /// The Secret's namespace; a namespaced sink may only use its own namespace (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The Secret's name.
    pub name: String,
    /// The key in the Secret.
    pub key: String,
}

/// An alert destination receiving only alerts about this namespace (`ka.target.namespace`).
// kube's printcolumn(...) repeats `type_ = "string"` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kaudit.io",
    version = "v1alpha1",
    kind = "AlertSink",
    namespaced,
    shortname = "asink",
    category = "kaudit",
    status = "RuleStatus",
    doc = "An alert destination for the alerts about this namespace.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "MinPriority",
        type_ = "string",
        json_path = ".spec.minPriority"
    ),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct AlertSinkSpec {
    /// The sink.
    #[serde(flatten)]
    pub sink: SinkSpec,
}

/// An alert destination receiving every alert.
// kube's printcolumn(...) repeats `type_ = "string"` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kaudit.io",
    version = "v1alpha1",
    kind = "ClusterAlertSink",
    shortname = "casink",
    category = "kaudit",
    status = "RuleStatus",
    doc = "An alert destination for every alert of the cluster.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "MinPriority",
        type_ = "string",
        json_path = ".spec.minPriority"
    ),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ClusterAlertSinkSpec {
    /// The sink.
    #[serde(flatten)]
    pub sink: SinkSpec,
}

/// Where detection runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DetectModeSpec {
    /// kaudit's own rules engine.
    #[default]
    Embedded,
    /// A managed Falco.
    Falco,
    /// Both.
    Both,
}

/// How the managed Falco runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FalcoWorkload {
    /// A Deployment (one replica is enough for audit events).
    #[default]
    Deployment,
    /// A DaemonSet.
    DaemonSet,
}

/// The managed Falco.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FalcoSpec {
    /// Falco's image.
    #[serde(default = "default_falco_image")]
    pub image: String,
    /// `Deployment` or `DaemonSet`.
    #[serde(default)]
    pub mode: FalcoWorkload,
    /// Falco container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// How the k8saudit and json plugins get into Falco's pod.
    #[serde(default)]
    pub plugins: FalcoPluginsSpec,
}

impl Default for FalcoSpec {
    fn default() -> Self {
        FalcoSpec {
            image: default_falco_image(),
            mode: FalcoWorkload::Deployment,
            resources: None,
            plugins: FalcoPluginsSpec::default(),
        }
    }
}

fn default_falco_image() -> String {
    "docker.io/falcosecurity/falco:0.41.3".into()
}

/// The plugins Falco loads (k8saudit, json), installed by a falcoctl init container into Falco's
/// plugin directory, as Falco's Helm chart does: Falco's image does not ship them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FalcoPluginsSpec {
    /// falcoctl's image; empty when Falco's image already has the plugins (no init container).
    #[serde(default = "default_falcoctl_image")]
    pub installer_image: String,
    /// OCI references of the plugin artifacts to install.
    #[serde(default = "default_plugin_refs")]
    pub refs: Vec<String>,
}

impl Default for FalcoPluginsSpec {
    fn default() -> Self {
        FalcoPluginsSpec {
            installer_image: default_falcoctl_image(),
            refs: default_plugin_refs(),
        }
    }
}

fn default_falcoctl_image() -> String {
    "docker.io/falcosecurity/falcoctl:0.12.2".into()
}

fn default_plugin_refs() -> Vec<String> {
    vec![
        "ghcr.io/falcosecurity/plugins/plugin/k8saudit:0.18".into(),
        "ghcr.io/falcosecurity/plugins/plugin/json:0.7".into(),
    ]
}

/// The webhook Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookServiceSpec {
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(default = "default_service_type", rename = "type")]
    pub type_: String,
    /// The Service port.
    #[serde(default = "default_port")]
    pub port: i32,
    /// A `kubernetes.io/tls` Secret (tls.crt, tls.key): serve HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    /// A Secret whose key `tokens` lists accepted bearer tokens, one per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
}

impl Default for WebhookServiceSpec {
    fn default() -> Self {
        WebhookServiceSpec {
            type_: default_service_type(),
            port: default_port(),
            tls_secret: None,
            token_secret: None,
        }
    }
}

/// Where kaudit keeps its data directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The size of each pod's PersistentVolumeClaim (ReadWriteOnce).
    #[serde(default = "default_storage_size")]
    pub size: String,
    /// The claims' StorageClass; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// `true` runs kaudit as a Deployment with an `emptyDir` data directory instead of a
    /// StatefulSet with claims. RISK: the data dir lives only as long as the pod, so a rollout, a
    /// node drain or an eviction deletes every inbox batch, spool and dead letter it holds; audit
    /// events kaudit already answered 200 for are then lost.
    #[serde(default)]
    pub empty_dir: bool,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
            empty_dir: false,
        }
    }
}

fn default_storage_size() -> String {
    "4Gi".into()
}

fn default_service_type() -> String {
    "ClusterIP".into()
}

fn default_port() -> i32 {
    8777
}

fn default_image() -> String {
    "ghcr.io/kaudit/kaudit:latest".into()
}

fn one() -> i32 {
    1
}

/// kaudit itself: the webhook, detection, and the managed Falco when the mode needs one.
// kube's printcolumn(...) repeats `type_ = "string"` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kaudit.io",
    version = "v1alpha1",
    kind = "KauditDeployment",
    namespaced,
    shortname = "kd",
    category = "kaudit",
    status = "KauditDeploymentStatus",
    doc = "A kaudit deployment: webhook, rules, sinks and optionally a managed Falco.",
    printcolumn(name = "Detect", type_ = "string", json_path = ".spec.detect"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KauditDeploymentSpec {
    /// kaudit's image.
    #[serde(default = "default_image")]
    pub image: String,
    /// kaudit replicas.
    #[serde(default = "one")]
    pub replicas: i32,
    /// `embedded`, `falco` or `both`.
    #[serde(default)]
    pub detect: DetectModeSpec,
    /// Load kaudit's default rules before the cluster rules files.
    #[serde(default = "yes")]
    pub default_rules: bool,
    /// The managed Falco (modes `falco` and `both`).
    #[serde(default)]
    pub falco: FalcoSpec,
    /// The webhook Service.
    #[serde(default)]
    pub service: WebhookServiceSpec,
    /// Where audit events come from (kaudit's `sources:`); empty = the webhook alone. List
    /// `{name: webhook, type: webhook}` to keep the webhook beside other sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceSpec>,
    /// kaudit container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// kaudit's data directory (inbox, spools, dead letters): a PersistentVolumeClaim per pod
    /// (a StatefulSet) unless `emptyDir` is asked for.
    #[serde(default)]
    pub storage: StorageSpec,
    /// A JSON merge patch applied to kaudit's rendered pod template (labels, tolerations...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_opt")]
    pub pod_template: Option<serde_json::Value>,
    /// Extra labels for every object the operator creates.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What namespaces' sinks (`AlertSink`) may reach and keep, and their share of the cluster
    /// sinks.
    #[serde(default)]
    pub tenancy: TenancySpec,
    /// Render NetworkPolicies: Falco's audit endpoint reachable from kaudit's pods only.
    #[serde(default = "yes")]
    pub network_policies: bool,
    /// The alert console (`/ui/`, `/api/v1/`) and the store of alerts it shows.
    #[serde(default)]
    pub console: ConsoleSpec,
}

/// The alert console of a [`KauditDeployment`]: kaudit keeps every alert (SQLite on each pod's
/// data volume, or PostgreSQL shared by every replica) and serves a read-only UI and API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleSpec {
    /// Serve the console and keep alerts for it.
    #[serde(default)]
    pub enabled: bool,
    /// A Secret whose key `tokens` lists the console's read-only tokens, one per line, each
    /// optionally followed by the namespaces it may see (`<token> team-a,team-b`). Required
    /// when the console is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// A Secret whose key `url` holds a PostgreSQL URL: every replica writes to and reads one
    /// history there. Required with more than one replica; without it alerts are kept in SQLite
    /// on the pod's data volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_secret: Option<String>,
    /// Alerts below this priority are not kept (`emergency` ... `debug`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_priority: Option<String>,
    /// Alerts older than this are deleted, in seconds (default 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    /// Past this size the oldest alerts are deleted, in bytes (default 1 GiB; keep it well
    /// under `storage.size` with SQLite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// The console Service's type: `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(default = "default_service_type")]
    pub service_type: String,
    /// The console Service's port.
    #[serde(default = "default_console_port")]
    pub port: i32,
}

fn default_console_port() -> i32 {
    80
}

impl Default for ConsoleSpec {
    fn default() -> Self {
        ConsoleSpec {
            enabled: false,
            token_secret: None,
            postgres_secret: None,
            min_priority: None,
            max_age_seconds: None,
            max_bytes: None,
            service_type: default_service_type(),
            port: default_console_port(),
        }
    }
}

/// The limits of namespaces' sinks (kaudit's `tenancy` config section).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenancySpec {
    /// Networks namespaced sinks may reach on top of the built-in refusals (loopback,
    /// link-local, private ranges, the apiserver).
    #[serde(default)]
    pub egress: EgressSpec,
    /// The most a namespaced `file` sink keeps before it rotates, in bytes (default 64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_max_bytes: Option<u64>,
    /// Per-namespace budgets on cluster sinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
}

/// The admin's egress list for namespaced sinks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressSpec {
    /// Networks (CIDR or address) namespaced sinks may reach; once set, nothing else. A network
    /// more specific than a built-in refusal makes an exception to it.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub allow: Vec<String>,
    /// Networks namespaced sinks may never reach.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub deny: Vec<String>,
}

/// One namespace's budget on each cluster sink.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetSpec {
    /// Alerts per second; 0: no rate limit.
    #[serde(default)]
    pub alerts_per_second: f64,
    /// Alerts above the rate at once.
    #[serde(default)]
    pub burst: u32,
    /// The share of a cluster sink's spool one namespace's waiting alerts may take, in (0, 1].
    #[serde(default = "quarter")]
    pub spool_share: f64,
}

fn quarter() -> f64 {
    0.25
}

/// An audit source of a [`KauditDeployment`]: one entry of kaudit's `sources:`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// The source's name (metrics, logs, its position file).
    pub name: String,
    /// `webhook`, `file`, `eks`, `gke` or `aks`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The type's own settings, as in kaudit's config; no credentials and no `*_file` keys.
    /// A `file` source's directory is mounted read-only from the node (hostPath).
    #[serde(default)]
    #[schemars(schema_with = "free_form")]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Credentials: each fills a `*_file` setting (`connection_string_file`,
    /// `credentials_file`, `access_key_id_file`...) with a key of a Secret of the deployment's
    /// namespace.
    #[serde(default)]
    pub secret_refs: Vec<SourceSecretRef>,
}

/// A credential of a source, from a Secret in the KauditDeployment's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSecretRef {
    /// The `*_file` setting it fills, e.g. `connection_string_file`.
    pub setting: String,
    /// The Secret's name.
    pub name: String,
    /// The key in the Secret.
    pub key: String,
}

/// The status of a [`KauditDeployment`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KauditDeploymentStatus {
    /// `Ready` and `RulesValid`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Rules rendered (namespace rules accepted).
    #[serde(default)]
    pub rules: i32,
    /// Namespace rules rejected.
    #[serde(default)]
    pub invalid_rules: i32,
    /// Sinks rendered.
    #[serde(default)]
    pub sinks: i32,
}

/// Every CRD of the API group, in a stable order.
pub fn all_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        FalcoRule::crd(),
        FalcoRulesFile::crd(),
        AlertSink::crd(),
        ClusterAlertSink::crd(),
        KauditDeployment::crd(),
    ]
}

/// Every CRD as one multi-document YAML stream (what `kaudit crds` prints and
/// `deploy/crds.yaml` holds).
pub fn crds_yaml() -> Result<String, yaml_serde::Error> {
    let mut out = String::from(
        "# Generated by `kaudit crds`; do not edit (a test fails if this file drifts).\n",
    );
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&crd)?);
    }
    Ok(out)
}
