//! The workloads: kaudit's Deployment and the managed Falco's Deployment or DaemonSet.

use serde_json::{Map, Value, json};

use crate::operator::crd::FalcoWorkload;

use super::object::{Object, Objects};
use super::plan::{
    CONFIG_DIR, DATA_DIR, FALCO_HEALTH_PORT, FALCO_PLUGIN_PORT, FALCO_PLUGINS_DIR,
    INTAKE_TOKEN_ENV, INTAKE_TOKEN_KEY, KAUDIT_PORT, Plan, RULES_DIR, RULES_HASH_ANNOTATION,
    RenderError, restricted_container_security, typed,
};

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

/// kaudit's Deployment: no content hash in its template, it reloads config and rules itself.
pub fn kaudit(plan: &Plan) -> Result<Object, RenderError> {
    let kd = plan.kd;
    let mut volumes = vec![
        json!({"name": "config", "secret": {"secretName": plan.config_secret()}}),
        json!({"name": "rules", "configMap": {"name": plan.rules_config_map()}}),
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
        "metadata": {"labels": plan.labels("kaudit")},
        "spec": {
            "serviceAccountName": plan.name,
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
    Ok(Object::Deployment(typed(
        "kaudit Deployment",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": plan.meta(&plan.name, "kaudit"),
            "spec": {
                "replicas": kd.spec.replicas,
                "selector": {"matchLabels": plan.selector("kaudit")},
                "template": template,
            }
        }),
    )?))
}

/// Falco's workload, of the kind `falco.mode` asks for (the other kind is pruned); `hash` goes
/// into its pod template, so that a change of what Falco reads at start rolls it.
pub fn falco(plan: &Plan, hash: &str, out: &mut Objects) -> Result<(), RenderError> {
    let kd = plan.kd;
    let falco_name = plan.falco_name();
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
        json!({"name": "config", "configMap": {"name": falco_name}}),
        json!({"name": "rules", "configMap": {"name": plan.rules_config_map()}}),
        json!({"name": "run", "emptyDir": {}}),
    ];
    if plan.intake_token.is_some() {
        falco["env"] = json!([{
            "name": INTAKE_TOKEN_ENV,
            "valueFrom": {"secretKeyRef": {"name": plan.config_secret(), "key": INTAKE_TOKEN_KEY}},
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
            m.push(json!({"name": "plugins", "mountPath": FALCO_PLUGINS_DIR, "readOnly": true}));
        }
        volumes.push(json!({"name": "plugins", "emptyDir": {}}));
        volumes.push(json!({"name": "installer-tmp", "emptyDir": {}}));
    }
    let mut falco_template = json!({
        "metadata": {
            "labels": plan.labels("falco"),
            // A rules or config change rolls Falco: it does not reload plugin rules by itself.
            "annotations": {RULES_HASH_ANNOTATION: hash},
        },
        "spec": {
            "serviceAccountName": falco_name,
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
        "selector": {"matchLabels": plan.selector("falco")},
        "template": falco_template,
    });
    if kind == "Deployment" {
        spec["replicas"] = json!(1);
    }
    let obj = json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": plan.meta(&falco_name, "falco"),
        "spec": spec,
    });
    out.add(if kind == "Deployment" {
        Object::Deployment(typed("Falco Deployment", obj)?)
    } else {
        Object::DaemonSet(typed("Falco DaemonSet", obj)?)
    });
    out.prune(other, &falco_name);
    Ok(())
}
