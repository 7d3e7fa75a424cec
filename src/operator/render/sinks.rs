//! Sink entries of kaudit's config from `AlertSink` and `ClusterAlertSink`: the spec's settings
//! checked (no inline credentials, no file settings), a tenant's filter scoped to its namespace,
//! and each `secretRef` turned into a credential file of the config Secret.

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde_json::{Map, Value};

use crate::invalid::Invalid;
use crate::operator::crd::{AlertSink, ClusterAlertSink, SinkSpec};
use crate::operator::inputs::{Inputs, SinkInput};
use crate::operator::tenancy::{self, TenancyError};
use crate::sinks::{SinkConfig, SinkRules};

use super::limits::{self, MAX_SECRET_BYTES, MAX_SINK_BYTES};
use super::outcome::Outcome;
use super::plan::{CONFIG_DIR, DATA_DIR, key_safe, sha256_hex};

/// Setting keys that hold credentials inline, refused in sink settings.
const INLINE_SECRET_WORDS: &[&str] = &["password", "token", "secret", "nkey_seed", "api_key"];
/// Header names whose values are credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
];

/// Why a sink was left out (its status says so).
#[derive(Debug, thiserror::Error)]
pub enum SinkRefusal {
    /// A setting the spec must not carry (a credential, a file, a spec field); the key is
    /// relative to `settings`.
    #[error("settings.{}: {}", .0.key, .0.message)]
    Settings(Invalid),
    /// A namespaced sink's filter cannot be scoped to its namespace.
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// A cluster sink's filter does not compile.
    #[error("{0}")]
    Filter(String),
    /// A `secretRef` fills a setting that is not a file setting.
    #[error("secretRefs: setting {0:?} must be a `*_file` setting or `header_files.<Header>`")]
    RefSetting(String),
    /// A namespaced sink refers to a Secret of another namespace.
    #[error("secretRefs: a sink in namespace {own} cannot read Secrets of namespace {other}")]
    RefNamespace {
        /// The sink's namespace.
        own: String,
        /// The Secret's.
        other: String,
    },
    /// A cluster sink's `secretRef` names no namespace.
    #[error("secretRefs: {0:?} needs a namespace (cluster sink)")]
    RefNeedsNamespace(String),
    /// A namespaced sink refers to a Secret its team did not opt in.
    #[error(
        "secretRefs: Secret {namespace}/{name} is not labelled {label}: \"true\" (a namespaced sink may only read Secrets opted in for sinks)",
        label = crate::operator::inputs::SINK_CREDENTIALS_LABEL
    )]
    NotOptedIn {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// kaudit would refuse the sink: its validation, or a dry-run build with the real
    /// credential files (the reason as kaudit gives it).
    #[error("kaudit would refuse it: {0}")]
    Kaudit(String),
    /// The sink is larger than one sink may be (its entry and credential files).
    #[error(
        "{bytes} bytes rendered (entry and credentials), more than the {max} one sink may take"
    )]
    TooLarge {
        /// Its rendered size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The sinks together would pass the config Secret's limit, and this one's namespace holds
    /// the most.
    #[error(
        "left out: kaudit's config Secret would pass {max} bytes, and namespace {namespace} holds the most sinks"
    )]
    NoRoom {
        /// The namespace.
        namespace: String,
        /// The limit.
        max: usize,
    },
    /// The referenced Secret does not exist.
    #[error("secretRefs: Secret {namespace}/{name} not found")]
    NoSecret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The referenced Secret lacks the key.
    #[error("secretRefs: Secret {namespace}/{name} has no key {key:?}")]
    NoKey {
        /// The Secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
    /// kaudit's sink config refuses the entry (unknown type, unknown or mistyped setting).
    #[error(transparent)]
    Config(serde_json::Error),
}

/// Refuses settings the spec must not carry; `path` is where `v` sits in `settings`.
pub(super) fn check_settings(v: &Map<String, Value>, path: &str) -> Result<(), Invalid> {
    for (k, val) in v {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let lk = k.to_ascii_lowercase();
        if path.is_empty() && ["name", "type", "min_priority", "filter"].contains(&lk.as_str()) {
            return Err(Invalid::new(p, "set it in the spec, not in settings"));
        }
        if lk.ends_with("_file") || lk.ends_with("_files") {
            return Err(Invalid::new(p, "file settings come from secretRefs only"));
        }
        if INLINE_SECRET_WORDS.iter().any(|w| lk.contains(w)) {
            return Err(Invalid::new(
                p,
                "credentials must come from a Secret (secretRefs), never inline",
            ));
        }
        if path.ends_with("headers") && SECRET_HEADERS.contains(&lk.as_str()) {
            return Err(Invalid::new(
                p,
                format!(
                    "credential headers must come from a Secret (secretRefs with setting header_files.{k})"
                ),
            ));
        }
        if let Value::Object(m) = val {
            check_settings(m, &p)?;
        }
    }
    Ok(())
}

pub(super) fn set_path(root: &mut Map<String, Value>, path: &[&str], v: Value) {
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

/// A sink of the config: typed, and as written (see
/// [`kaudit_config::render`](super::kaudit_config::render)).
pub struct SinkEntry {
    /// kaudit's typed sink config.
    pub config: SinkConfig,
    /// The checked entry: the spec's settings with the operator's additions.
    pub entry: Map<String, Value>,
}

/// A rendered sink: its config entry and the credential files it needs.
struct RenderedSink {
    sink: SinkEntry,
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

/// The largest spec a sink may have (its JSON): what one sink may add to the config Secret.
pub const MAX_SPEC_BYTES: usize = 16 * 1024;

fn render_sink(
    ns: Option<&str>,
    name: &str,
    spec: &SinkSpec,
    inputs: &Inputs,
    rules: &SinkRules,
) -> Result<RenderedSink, SinkRefusal> {
    let sname = sink_name(ns, name);
    let bytes = serde_json::to_vec(spec).map_or(usize::MAX, |v| v.len());
    if bytes > MAX_SPEC_BYTES {
        return Err(SinkRefusal::TooLarge {
            bytes,
            max: MAX_SPEC_BYTES,
        });
    }
    check_settings(&spec.settings, "").map_err(SinkRefusal::Settings)?;
    // The console's store is the deployment's (`spec.console`), not a sink's to choose.
    if spec.type_ == crate::store::observer::CONSOLE_SINK_TYPE {
        return Err(SinkRefusal::Settings(Invalid::new(
            "type",
            "`console` is rendered from the KauditDeployment's spec.console, not from a sink",
        )));
    }
    // Settings that are credentials by their sink type (a webhook URL holding its token).
    if let Some(k) = crate::sinks::SinkSettings::secret_settings(&spec.type_)
        .iter()
        .find(|k| spec.settings.contains_key(**k))
    {
        return Err(SinkRefusal::Settings(Invalid::new(
            *k,
            format!("a credential: it must come from a Secret (secretRefs with setting {k}_file)"),
        )));
    }
    let mut entry = spec.settings.clone();
    if let Some(ns) = ns {
        // kaudit enforces what a tenant's sink may use: no ambient credentials, restricted
        // egress, files only from the config Secret, a capped file sink.
        entry.insert("tenant".into(), Value::String(ns.to_string()));
    }
    entry.insert("name".into(), Value::String(sname.clone()));
    entry.insert("type".into(), Value::String(spec.type_.clone()));
    if let Some(p) = &spec.min_priority {
        entry.insert("min_priority".into(), Value::String(p.clone()));
    }
    let filter = match ns {
        Some(ns) => Some(tenancy::scoped_filter(ns, spec.filter.as_deref())?),
        None => match spec
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            Some(f) => {
                crate::rules::AlertFilter::compile(f)
                    .map_err(|e| SinkRefusal::Filter(e.to_string()))?;
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
            return Err(SinkRefusal::Settings(Invalid::new(
                "path",
                "a namespaced file sink takes a bare file name",
            )));
        }
        entry.insert(
            "path".into(),
            Value::String(format!("{DATA_DIR}/alerts_{ns}_{}", key_safe(&file))),
        );
        entry
            .entry("max_bytes")
            .or_insert_with(|| Value::from(rules.file_max_bytes));
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
            return Err(SinkRefusal::RefSetting(r.setting.clone()));
        }
        let sns = match (ns, &r.namespace) {
            (Some(own), None) => own.to_string(),
            (Some(own), Some(other)) if other == own => own.to_string(),
            (Some(own), Some(other)) => {
                return Err(SinkRefusal::RefNamespace {
                    own: own.into(),
                    other: other.clone(),
                });
            }
            (None, Some(n)) => n.clone(),
            (None, None) => return Err(SinkRefusal::RefNeedsNamespace(r.setting.clone())),
        };
        if ns.is_some()
            && !inputs
                .sink_credentials
                .contains(&(sns.clone(), r.name.clone()))
        {
            return Err(SinkRefusal::NotOptedIn {
                namespace: sns,
                name: r.name.clone(),
            });
        }
        let value = inputs
            .secrets
            .get(&(sns.clone(), r.name.clone()))
            .ok_or_else(|| SinkRefusal::NoSecret {
                namespace: sns.clone(),
                name: r.name.clone(),
            })?
            .get(&r.key)
            .ok_or_else(|| SinkRefusal::NoKey {
                namespace: sns.clone(),
                name: r.name.clone(),
                key: r.key.clone(),
            })?;
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
    // kaudit's own sink config: the type check.
    let config = serde_json::from_value::<SinkConfig>(Value::Object(entry.clone()))
        .map_err(SinkRefusal::Config)?;
    // kaudit's own validation and a build with the real credential files: the controller's
    // dry run (`sink_check`, I/O), done before rendering.
    if let Some(reason) = inputs.sink_refusals.get(&sname) {
        return Err(SinkRefusal::Kaudit(reason.clone()));
    }
    Ok(RenderedSink {
        sink: SinkEntry { config, entry },
        files,
    })
}

/// The sink of a deployment that has none: alerts go to stdout.
fn stdout() -> SinkEntry {
    let config = SinkConfig::stdout("stdout");
    let mut entry = Map::new();
    entry.insert("name".into(), Value::String(config.name.clone()));
    entry.insert(
        "type".into(),
        Value::String(config.settings.type_name().into()),
    );
    SinkEntry { config, entry }
}

/// Every sink of kaudit's config and the credential files they need.
pub struct Sinks {
    /// The sinks: cluster sinks first (by name), then namespaced ones; `stdout` alone when
    /// there is none.
    pub entries: Vec<SinkEntry>,
    /// Credential files of the config Secret: key → content.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// The sinks of kind `K` in config order (namespace, then name): each one's outcome is pushed
/// to `outcomes`, the accepted ones to `accepted` with the index of their outcome.
fn render_kind<K: SinkInput>(
    inputs: &Inputs,
    rules: &SinkRules,
    outcomes: &mut Vec<Outcome>,
    accepted: &mut Vec<(usize, RenderedSink)>,
) {
    let mut sinks: Vec<&K> = K::of(inputs).iter().collect();
    sinks.sort_by_key(|s| (s.namespace(), s.name_any()));
    for s in sinks {
        let (ns, name) = (s.namespace(), s.name_any());
        let r = render_sink(ns.as_deref(), &name, s.sink(), inputs, rules).and_then(|r| {
            let bytes = r.bytes();
            if bytes > MAX_SINK_BYTES {
                return Err(SinkRefusal::TooLarge {
                    bytes,
                    max: MAX_SINK_BYTES,
                });
            }
            Ok(r)
        });
        outcomes.push(Outcome {
            kind: K::KIND,
            rendered_name: r.as_ref().ok().map(|_| sink_name(ns.as_deref(), &name)),
            error: r.as_ref().err().map(ToString::to_string),
            namespace: ns,
            name,
            generation: s.meta().generation,
        });
        if let Ok(r) = r {
            accepted.push((outcomes.len() - 1, r));
        }
    }
}

/// Every sink's config entry and credential files, cluster sinks first; each sink's outcome is
/// pushed to `outcomes`. When they would not fit in the config Secret together, the namespace
/// holding the most loses its largest sinks first ([`limits::evict`]).
pub fn render_all(inputs: &Inputs, rules: &SinkRules, outcomes: &mut Vec<Outcome>) -> Sinks {
    let mut accepted = Vec::new();
    render_kind::<ClusterAlertSink>(inputs, rules, outcomes, &mut accepted);
    render_kind::<AlertSink>(inputs, rules, outcomes, &mut accepted);
    let sizes: Vec<(Option<&str>, usize)> = accepted
        .iter()
        .map(|(_, r)| (r.sink.config.tenant.as_deref(), r.bytes()))
        .collect();
    let evicted = limits::evict(&sizes, MAX_SECRET_BYTES - CONFIG_OVERHEAD);
    let mut entries = Vec::new();
    let mut cred_files = BTreeMap::new();
    for ((i, r), out) in accepted.into_iter().zip(evicted) {
        if out {
            outcomes[i].rendered_name = None;
            outcomes[i].error = Some(
                SinkRefusal::NoRoom {
                    namespace: r.sink.config.tenant.clone().unwrap_or_default(),
                    max: MAX_SECRET_BYTES,
                }
                .to_string(),
            );
        } else {
            entries.push(r.sink);
            cred_files.extend(r.files);
        }
    }
    if entries.is_empty() {
        entries.push(stdout());
    }
    Sinks {
        entries,
        files: cred_files,
    }
}

/// What the config Secret holds besides the sinks: the rest of `kaudit.yaml`, the intake token.
const CONFIG_OVERHEAD: usize = 16 * 1024;

impl RenderedSink {
    /// What the sink adds to the config Secret: its entry (as JSON, about its YAML size) and
    /// its credential files.
    fn bytes(&self) -> usize {
        let entry = serde_json::to_vec(&self.sink.entry).map_or(usize::MAX, |v| v.len());
        self.files
            .iter()
            .fold(entry, |n, (k, v)| n.saturating_add(k.len() + v.len()))
    }
}
