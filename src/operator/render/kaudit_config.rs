//! kaudit's own config (`kaudit.yaml`) and the Secret that holds it with the credential files.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::operator::crd::DetectModeSpec;

use super::object::Object;
use super::plan::{
    CONFIG_DIR, DATA_DIR, FALCO_HEALTH_PORT, FALCO_PLUGIN_PORT, INTAKE_TOKEN_KEY, KAUDIT_PORT,
    Plan, RenderError, yaml,
};

/// kaudit's config for `plan`: the rules at `rule_paths`, the sink `entries`.
pub fn render(
    plan: &Plan,
    rule_paths: &[String],
    entries: &[Value],
) -> Result<String, RenderError> {
    let (ns, name) = (&plan.ns, &plan.name);
    let falco_svc = plan.falco_name();
    let mut cfg = json!({
        "listen": format!("0.0.0.0:{KAUDIT_PORT}"),
        "data_dir": DATA_DIR,
        "log": {"format": "json"},
        "detect": {"mode": match plan.kd.spec.detect {
            DetectModeSpec::Embedded => "embedded",
            DetectModeSpec::Falco => "falco",
            DetectModeSpec::Both => "both",
        }},
        // Every matching rule alerts: with Falco's default (`first`) a cluster rule that
        // matches an event would silence every namespace's rule for it.
        "rules": {
            "files": if plan.embedded_on { rule_paths.to_vec() } else { Vec::new() },
            "rule_matching": "all",
        },
        "sinks": entries,
    });
    if plan.falco_on {
        cfg["falco"] = json!({
            "forward_url": format!("http://{falco_svc}.{ns}.svc:{FALCO_PLUGIN_PORT}/k8s-audit"),
            "healthz_url": format!("http://{falco_svc}.{ns}.svc:{FALCO_HEALTH_PORT}/healthz"),
            "http_output": true,
        });
        if plan.intake_token.is_some() {
            // Falco's own token, good for its alerts on `POST /` only, from the config Secret.
            cfg["falco"]["intake_token_file"] = json!(format!("{CONFIG_DIR}/{INTAKE_TOKEN_KEY}"));
        }
    }
    if plan.kd.spec.service.tls_secret.is_some() {
        cfg["tls"] =
            json!({"cert_file": "/etc/kaudit/tls/tls.crt", "key_file": "/etc/kaudit/tls/tls.key"});
    }
    if plan.kd.spec.service.token_secret.is_some() {
        cfg["auth"] = json!({"token_file": "/etc/kaudit/token/tokens"});
    }
    // Type-check against kaudit's own config (the file checks happen in the pod).
    serde_json::from_value::<crate::config::Config>(cfg.clone()).map_err(|source| {
        RenderError::Object {
            what: "kaudit config".into(),
            source,
        }
    })?;
    Ok(format!(
        "# Rendered by the kaudit operator for KauditDeployment {ns}/{name}; do not edit.\n{}",
        yaml("kaudit config", &cfg)?
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
