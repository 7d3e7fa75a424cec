//! The managed Falco's config: `falco.yaml` in a ConfigMap, and the hash that rolls Falco when
//! its rules, config or token change.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

use super::object::{Object, Objects};
use super::plan::{
    FALCO_HEALTH_PORT, FALCO_PLUGIN_PORT, INTAKE_TOKEN_ENV, Plan, RenderError, sha256_hex, yaml,
};

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

/// Falco's ConfigMap when Falco runs (else it is pruned). Returns the hash of everything Falco
/// reads at start (rules files, `falco.yaml`, its token), for its pod template.
pub fn config_map(
    plan: &Plan,
    rules_files: &[(String, String)],
    rule_paths: &[String],
    out: &mut Objects,
) -> Result<Option<String>, RenderError> {
    let cm_name = plan.falco_name();
    if !plan.falco_on {
        out.prune("ConfigMap", &cm_name);
        return Ok(None);
    }
    let service = &plan.kd.spec.service;
    let falco_yaml = falco_config(
        &plan.name,
        &plan.ns,
        service.port,
        service.tls_secret.is_some(),
        plan.intake_token.is_some(),
        rule_paths,
    )?;
    // The token reaches Falco through its environment, which a running pod never re-reads:
    // a new token must roll Falco too.
    let parts: Vec<&[u8]> = rules_files
        .iter()
        .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()])
        .chain([falco_yaml.as_bytes()])
        .chain(plan.intake_token.as_deref().map(str::as_bytes))
        .collect();
    let hash = sha256_hex(&parts);
    out.add(Object::ConfigMap(ConfigMap {
        metadata: plan.meta(&cm_name, "falco"),
        data: Some(BTreeMap::from([("falco.yaml".into(), falco_yaml)])),
        ..ConfigMap::default()
    }));
    Ok(Some(hash))
}
