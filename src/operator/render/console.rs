//! The alert console of a deployment (`spec.console`): the `console-store` sink and the
//! `console` and `store` sections of kaudit's config, the token and PostgreSQL Secrets' mount
//! points, and the console's own Service (`<name>-console`, to the same container port as the
//! webhook: kaudit serves both).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

use super::object::{Object, Objects};
use super::plan::{Plan, RenderError};
use super::sinks::SinkEntry;
use crate::config::Config;
use crate::console::ConsoleConfig;
use crate::sinks::SinkConfig;
use crate::store::{RetentionConfig, StoreConfig};

/// Where the console's token Secret is mounted (its key `tokens`).
pub const TOKENS_DIR: &str = "/etc/kaudit/console";
/// Where the PostgreSQL URL Secret is mounted (its key `url`).
pub const STORE_DIR: &str = "/etc/kaudit/console-store";

/// Refuses a console that would be open to anyone or split over replicas.
pub fn validate(plan: &Plan) -> Result<(), RenderError> {
    let c = &plan.kd.spec.console;
    if !c.enabled {
        return Ok(());
    }
    let spec = |key: &str, message: &str| RenderError::Spec {
        key: format!("spec.console.{key}"),
        message: message.into(),
    };
    if c.token_secret.is_none() {
        return Err(spec(
            "tokenSecret",
            "an enabled console needs a Secret of read-only tokens (key `tokens`)",
        ));
    }
    if plan.kd.spec.replicas > 1 && c.postgres_secret.is_none() {
        return Err(spec(
            "postgresSecret",
            "with more than one replica the console needs a shared PostgreSQL store (a Secret with key `url`); each pod's SQLite would hold only its own alerts",
        ));
    }
    if let Some(p) = &c.min_priority
        && p.parse::<crate::alert::Priority>().is_err()
    {
        return Err(spec("minPriority", "not a priority (emergency ... debug)"));
    }
    let store = store_config(plan);
    store
        .validate()
        .map_err(|e| spec(&e.key, &e.message))
        .or_else(|e| match &e {
            // The URL file exists in the pod, not here.
            RenderError::Spec { key, .. } if key.ends_with("url_file") => Ok(()),
            _ => Err(e),
        })
}

fn store_config(plan: &Plan) -> StoreConfig {
    let c = &plan.kd.spec.console;
    let d = RetentionConfig::default();
    StoreConfig {
        url_file: c
            .postgres_secret
            .as_ref()
            .map(|_| format!("{STORE_DIR}/url").into()),
        retention: RetentionConfig {
            max_age_secs: c.max_age_seconds.unwrap_or(d.max_age_secs),
            max_bytes: c.max_bytes.unwrap_or(d.max_bytes),
            ..d
        },
        ..StoreConfig::default()
    }
}

/// Sets kaudit's `console` and `store` sections for the spec (`console.enabled: false` when the
/// console is off: kaudit's own default is on).
pub fn configure(plan: &Plan, cfg: &mut Config) {
    let c = &plan.kd.spec.console;
    cfg.console = ConsoleConfig {
        enabled: c.enabled,
        tokens: Vec::new(),
        token_file: c
            .token_secret
            .as_ref()
            .filter(|_| c.enabled)
            .map(|_| format!("{TOKENS_DIR}/tokens").into()),
    };
    if c.enabled {
        cfg.store = store_config(plan);
    }
}

/// The keys of [`configure`] that `kaudit.yaml` lists when the console is on.
pub const KEYS: &[&str] = &[
    "console.token_file",
    "store.url_file",
    "store.retention.max_age_secs",
    "store.retention.max_bytes",
];

/// The `console-store` sink entry, when the console is on.
pub fn sink(plan: &Plan) -> Option<SinkEntry> {
    let c = &plan.kd.spec.console;
    if !c.enabled {
        return None;
    }
    let mut config = SinkConfig::console();
    let mut entry = Map::new();
    entry.insert("name".into(), Value::String(config.name.clone()));
    entry.insert("type".into(), Value::String("console".into()));
    if let Some(p) = c
        .min_priority
        .as_deref()
        .and_then(|p| p.parse::<crate::alert::Priority>().ok())
    {
        config.min_priority = p;
        entry.insert("min_priority".into(), Value::String(p.as_lower().into()));
    }
    Some(SinkEntry { config, entry })
}

/// The console's Service name.
pub fn service_name(plan: &Plan) -> String {
    format!("{}-console", plan.name)
}

/// The console's Service, or its pruning when the console is off.
pub fn service(plan: &Plan, out: &mut Objects) {
    let c = &plan.kd.spec.console;
    let name = service_name(plan);
    if !c.enabled {
        out.prune("Service", &name);
        return;
    }
    out.add(Object::Service(Service {
        metadata: plan.meta(&name, "kaudit"),
        spec: Some(ServiceSpec {
            type_: Some(c.service_type.clone()),
            selector: Some(plan.selector("kaudit")),
            ports: Some(vec![ServicePort {
                name: Some("console".into()),
                port: c.port,
                target_port: Some(IntOrString::String("webhook".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }));
}
