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
use crate::sinks::SinkConfig;

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
fn check_settings(v: &Map<String, Value>, path: &str) -> Result<(), Invalid> {
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

fn render_sink(
    ns: Option<&str>,
    name: &str,
    spec: &SinkSpec,
    secrets: &BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
) -> Result<RenderedSink, SinkRefusal> {
    let sname = sink_name(ns, name);
    check_settings(&spec.settings, "").map_err(SinkRefusal::Settings)?;
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
        let value = secrets
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
/// to `outcomes`, the accepted ones to `entries` and `files`.
fn render_kind<K: SinkInput>(
    inputs: &Inputs,
    outcomes: &mut Vec<Outcome>,
    entries: &mut Vec<SinkEntry>,
    files: &mut BTreeMap<String, Vec<u8>>,
) {
    let mut sinks: Vec<&K> = K::of(inputs).iter().collect();
    sinks.sort_by_key(|s| (s.namespace(), s.name_any()));
    for s in sinks {
        let (ns, name) = (s.namespace(), s.name_any());
        let r = render_sink(ns.as_deref(), &name, s.sink(), &inputs.secrets);
        outcomes.push(Outcome {
            kind: K::KIND,
            rendered_name: r.as_ref().ok().map(|_| sink_name(ns.as_deref(), &name)),
            error: r.as_ref().err().map(ToString::to_string),
            namespace: ns,
            name,
            generation: s.meta().generation,
        });
        if let Ok(r) = r {
            entries.push(r.sink);
            files.extend(r.files);
        }
    }
}

/// Every sink's config entry and credential files, cluster sinks first; each sink's outcome is
/// pushed to `outcomes`.
pub fn render_all(inputs: &Inputs, outcomes: &mut Vec<Outcome>) -> Sinks {
    let mut entries = Vec::new();
    let mut cred_files = BTreeMap::new();
    render_kind::<ClusterAlertSink>(inputs, outcomes, &mut entries, &mut cred_files);
    render_kind::<AlertSink>(inputs, outcomes, &mut entries, &mut cred_files);
    if entries.is_empty() {
        entries.push(stdout());
    }
    Sinks {
        entries,
        files: cred_files,
    }
}
