//! kaudit's own config (`kaudit.yaml`) and the Secret that holds it with the credential files.
//!
//! The config is kaudit's typed [`Config`]: the operator sets a few of its keys and leaves the
//! rest at kaudit's defaults. The file lists only the keys the operator sets ([`KEYS`]), in that
//! order, so that it stays short and reads the same from one render to the next; a round trip
//! through kaudit's own parser proves that the file means the typed config.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, Value};

use crate::config::{Config, LogConfig, LogFormat, RuleMatching, RulesConfig, TenancyConfig};
use crate::detect::{DetectConfig, DetectMode};
use crate::falco::FalcoConfig;
use crate::operator::crd::{DetectModeSpec, TenancySpec};
use crate::router::budget::BudgetConfig;
use crate::server::auth::AuthConfig;
use crate::server::tls::TlsConfig;
use crate::sinks::SinkConfig;
use crate::transport::egress::EgressConfig;

use super::object::Object;
use super::plan::{
    CONFIG_DIR, DATA_DIR, FALCO_HEALTH_PORT, FALCO_PLUGIN_PORT, INTAKE_TOKEN_KEY, KAUDIT_PORT,
    Plan, RenderError, yaml,
};
use super::sinks::SinkEntry;
use super::sources::Sources;

/// The keys the operator sets, in the order `kaudit.yaml` lists them; every other key keeps
/// kaudit's default and is left out. A key whose value is null (an unset option) is left out too.
pub const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "log.format",
    "detect.mode",
    "rules.files",
    "rules.rule_matching",
    "sinks",
    "sources",
    "falco.forward_url",
    "falco.healthz_url",
    "falco.http_output",
    "falco.intake_token_file",
    "tls.cert_file",
    "tls.key_file",
    "auth.token_file",
    "tenancy.credentials_dir",
    "tenancy.egress",
    "tenancy.file_max_bytes",
    "tenancy.budget",
    "console.enabled",
    "console.token_file",
    "store.url_file",
    "store.retention.max_age_secs",
    "store.retention.max_bytes",
];

/// kaudit's `tenancy` section for a deployment's `spec.tenancy`: tenants' sinks read files from the config Secret only,
/// and obey the deployment's egress list, file cap and budgets.
pub fn tenancy(t: &TenancySpec) -> TenancyConfig {
    let d = TenancyConfig::default();
    TenancyConfig {
        credentials_dir: Some(CONFIG_DIR.into()),
        egress: EgressConfig {
            allow: t.egress.allow.clone(),
            deny: t.egress.deny.clone(),
        },
        file_max_bytes: t.file_max_bytes.unwrap_or(d.file_max_bytes),
        budget: t
            .budget
            .as_ref()
            .map(|b| BudgetConfig {
                alerts_per_second: b.alerts_per_second,
                burst: b.burst,
                spool_share: b.spool_share,
            })
            .unwrap_or(d.budget),
    }
}

/// The keys of kaudit's `falco` section: listed only when the deployment runs Falco (the section
/// is not optional in kaudit's config, its defaults would otherwise be listed).
const FALCO_PREFIX: &str = "falco.";

/// kaudit's config for `plan`, typed: the rules at `rule_paths`, the `sinks`.
pub fn config(plan: &Plan, rule_paths: &[String], sinks: Vec<SinkConfig>) -> Config {
    let service = &plan.kd.spec.service;
    let falco_svc = format!("{}.{}.svc", plan.falco_name(), plan.ns);
    let mut cfg = Config {
        listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, KAUDIT_LISTEN_PORT)),
        data_dir: DATA_DIR.into(),
        log: LogConfig {
            format: LogFormat::Json,
            ..LogConfig::default()
        },
        detect: DetectConfig {
            mode: match plan.kd.spec.detect {
                DetectModeSpec::Embedded => DetectMode::Embedded,
                DetectModeSpec::Falco => DetectMode::Falco,
                DetectModeSpec::Both => DetectMode::Both,
            },
        },
        // Every matching rule alerts: with Falco's default (`first`) a cluster rule that
        // matches an event would silence every namespace's rule for it.
        rules: RulesConfig {
            files: if plan.embedded_on {
                rule_paths.iter().map(PathBuf::from).collect()
            } else {
                Vec::new()
            },
            rule_matching: RuleMatching::All,
            ..RulesConfig::default()
        },
        sinks,
        tenancy: tenancy(&plan.kd.spec.tenancy),
        ..Config::default()
    };
    if plan.falco_on {
        cfg.falco = FalcoConfig {
            forward_url: format!("http://{falco_svc}:{FALCO_PLUGIN_PORT}/k8s-audit"),
            healthz_url: Some(format!("http://{falco_svc}:{FALCO_HEALTH_PORT}/healthz")),
            http_output: true,
            // Falco's own token, good for its alerts on `POST /` only, from the config Secret.
            intake_token_file: plan
                .intake_token
                .as_ref()
                .map(|_| format!("{CONFIG_DIR}/{INTAKE_TOKEN_KEY}").into()),
            ..FalcoConfig::default()
        };
    }
    if service.tls_secret.is_some() {
        cfg.tls = Some(TlsConfig {
            cert_file: "/etc/kaudit/tls/tls.crt".into(),
            key_file: "/etc/kaudit/tls/tls.key".into(),
            client_ca_file: None,
            // Not rendered (not in KEYS): kaudit's default applies.
            reload_interval_secs: 5,
        });
    }
    super::console::configure(plan, &mut cfg);
    if service.token_secret.is_some() {
        cfg.auth = AuthConfig {
            token_file: Some("/etc/kaudit/token/tokens".into()),
            ..AuthConfig::default()
        };
    }
    cfg
}

/// kaudit's listen port (the container port [`KAUDIT_PORT`]).
const KAUDIT_LISTEN_PORT: u16 = 8777;
const _: () = assert!(KAUDIT_LISTEN_PORT as i32 == KAUDIT_PORT);

/// `keys` of `full` (dotted paths), nested and in that order; a null value is left out, a key
/// `full` does not have is a defect.
fn pick(full: &Value, keys: &[&str]) -> Result<Map<String, Value>, RenderError> {
    let mut out = Map::new();
    for key in keys {
        let mut v = full;
        for seg in key.split('.') {
            if v.is_null() {
                break;
            }
            v = v.get(seg).ok_or_else(|| RenderError::Config {
                message: format!("kaudit's config has no key `{key}`"),
            })?;
        }
        if v.is_null() {
            continue;
        }
        let (parents, last) = match key.rsplit_once('.') {
            Some((p, l)) => (p.split('.').collect(), l),
            None => (Vec::new(), *key),
        };
        let mut cur = &mut out;
        for p in parents {
            let Value::Object(m) = cur
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
            else {
                return Err(RenderError::Config {
                    message: format!("`{p}` of `{key}` is not a section"),
                });
            };
            cur = m;
        }
        cur.insert(last.to_string(), v.clone());
    }
    Ok(out)
}

fn to_value(cfg: &Config) -> Result<Value, RenderError> {
    serde_json::to_value(cfg).map_err(|source| RenderError::Object {
        what: "kaudit config".into(),
        source,
    })
}

/// The serialized config `full` with the sinks (and sources) as written.
fn with_sinks(mut full: Value, entries: &Value, sources: &Value) -> Value {
    if let Some(m) = full.as_object_mut() {
        m.insert("sinks".into(), entries.clone());
        m.insert("sources".into(), sources.clone());
    }
    full
}

/// `kaudit.yaml` for `plan`: the rules at `rule_paths`, the `sinks`.
///
/// A sink is written as its checked entry rather than as a serialized [`SinkConfig`], which
/// would list every default and write `<redacted>` for secret-typed settings; credentials never
/// appear in either (they are `*_file` settings naming files of the config Secret).
pub fn render(
    plan: &Plan,
    rule_paths: &[String],
    sinks: Vec<SinkEntry>,
    sources: &Sources,
) -> Result<String, RenderError> {
    let (configs, entries): (Vec<SinkConfig>, Vec<Value>) = sinks
        .into_iter()
        .map(|s| (s.config, Value::Object(s.entry)))
        .unzip();
    let mut cfg = config(plan, rule_paths, configs);
    if !sources.configs.is_empty() {
        cfg.sources = sources.configs.clone();
    }
    // `sources` is listed only when the spec sets it: otherwise kaudit's default (the webhook).
    let keys: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| plan.falco_on || !k.starts_with(FALCO_PREFIX))
        .filter(|k| *k != "sources" || !sources.entries.is_empty())
        .filter(|k| plan.kd.spec.console.enabled || !super::console::KEYS.contains(k))
        .collect();
    let entries = Value::Array(entries);
    let source_entries = Value::Array(sources.entries.clone());
    let full = with_sinks(to_value(&cfg)?, &entries, &source_entries);
    let doc = Value::Object(pick(&full, &keys)?);
    // The round trip: kaudit parses the file into the same config (the file checks happen in
    // the pod).
    let back: Config =
        serde_json::from_value(doc.clone()).map_err(|source| RenderError::Object {
            what: "kaudit config".into(),
            source,
        })?;
    let again = with_sinks(to_value(&back)?, &entries, &source_entries);
    if back.sinks != cfg.sinks
        || back.sources != cfg.sources
        || Value::Object(pick(&again, &keys)?) != doc
    {
        return Err(RenderError::Config {
            message: "the rendered kaudit config does not read back as rendered".into(),
        });
    }
    Ok(format!(
        "# Rendered by the kaudit operator for KauditDeployment {}/{}; do not edit.\n{}",
        plan.ns,
        plan.name,
        yaml("kaudit config", &doc)?
    ))
}

/// The Secret holding kaudit's config, the sinks' credential `files` and Falco's intake token:
/// one Secret, so that the kubelet swaps them together (one atomic volume update) and a config
/// reload sees matching files.
pub fn secret(plan: &Plan, config: &str, files: BTreeMap<String, Vec<u8>>) -> Object {
    let mut data: BTreeMap<String, ByteString> =
        files.into_iter().map(|(k, v)| (k, ByteString(v))).collect();
    data.insert("kaudit.yaml".into(), ByteString(config.as_bytes().to_vec()));
    if let Some(t) = &plan.intake_token {
        data.insert(INTAKE_TOKEN_KEY.into(), ByteString(t.clone().into_bytes()));
    }
    Object::Secret(Secret {
        metadata: plan.meta(&plan.config_secret(), "kaudit"),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_exist_nulls_are_left_out_and_unknown_keys_are_defects() {
        let full = serde_json::to_value(Config::default()).unwrap();
        let doc = pick(&full, KEYS).unwrap();
        let top: Vec<&str> = doc.keys().map(String::as_str).collect();
        // tls is unset and auth.token_file null: neither is listed.
        assert_eq!(
            top,
            [
                "listen", "data_dir", "log", "detect", "rules", "sinks", "sources", "falco",
                "tenancy", "console", "store"
            ]
        );
        assert!(doc["falco"].get("intake_token_file").is_none());
        // The default has no credentials directory: left out.
        assert!(doc["tenancy"].get("credentials_dir").is_none());
        let err = pick(&full, &["falco.no_such_key"]).unwrap_err();
        assert!(
            err.to_string().contains("no key `falco.no_such_key`"),
            "{err}"
        );
    }
}
