//! Shipped manifests: `kaudit crds` and the CRDs in deploy/, every YAML file parsing into its
//! type, the examples rendering, hardened workloads and narrow RBAC.

use super::*;

/// The binary's `kaudit crds` prints exactly deploy/crds.yaml.
#[test]
fn kaudit_crds_command_prints_the_crds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = std::fs::read_to_string(root().join("deploy/crds.yaml")).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout) == file);
}

/// The line after which deploy/install.yaml holds `kaudit crds` minus its first line.
const INSTALL_MARKER: &str = "# ---- CRDs: `kaudit crds` from here on ----\n";

#[test]
fn crds_yaml_matches_deploy_and_has_names() {
    let text = kaudit::operator::crd::crds_yaml().unwrap();
    let file = std::fs::read_to_string(root().join("deploy/crds.yaml")).unwrap();
    assert!(
        text == file,
        "deploy/crds.yaml drifted: run `kaudit crds > deploy/crds.yaml`"
    );
    let install = std::fs::read_to_string(root().join("deploy/install.yaml")).unwrap();
    let (_, tail) = install
        .split_once(INSTALL_MARKER)
        .expect("CRD marker in deploy/install.yaml");
    let generated = text.split_once('\n').unwrap().1;
    assert!(
        tail == generated,
        "deploy/install.yaml's CRDs drifted from `kaudit crds` (see docs/operator.md)"
    );
    let crds = kaudit::operator::crd::all_crds();
    let names: Vec<(&str, &str)> = crds
        .iter()
        .map(|c| (c.spec.names.kind.as_str(), c.spec.scope.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("FalcoRule", "Namespaced"),
            ("FalcoRulesFile", "Cluster"),
            ("AlertSink", "Namespaced"),
            ("ClusterAlertSink", "Cluster"),
            ("KauditDeployment", "Namespaced")
        ]
    );
    for c in &crds {
        assert_eq!(c.spec.group, "kaudit.io");
        assert!(
            c.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty())
        );
        let v = &c.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.additional_printer_columns
                .as_ref()
                .is_some_and(|p| p.len() >= 2)
        );
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }
}

/// Every key of `orig` survives a typed round trip (catches typos the types would drop).
fn assert_no_field_dropped(orig: &Value, back: &Value, path: &str, file: &Path) {
    match (orig, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let bv = b.get(k).unwrap_or_else(|| {
                    panic!("{}: {path}.{k} is not a field of the type", file.display())
                });
                assert_no_field_dropped(v, bv, &format!("{path}.{k}"), file);
            }
        }
        (Value::Array(o), Value::Array(b)) => {
            assert_eq!(o.len(), b.len(), "{}: {path}", file.display());
            for (i, (x, y)) in o.iter().zip(b).enumerate() {
                assert_no_field_dropped(x, y, &format!("{path}[{i}]"), file);
            }
        }
        _ => {}
    }
}

fn check_typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, file: &Path) {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
        panic!(
            "{}: {} {}: {e}",
            file.display(),
            doc["kind"],
            doc["metadata"]["name"]
        )
    });
    let back = serde_json::to_value(&t).unwrap();
    assert_no_field_dropped(doc, &back, "", file);
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // The Helm chart's sources are templates, not manifests (tests/it/kube/helm.rs checks
        // that they render install.yaml).
        if p.is_dir() && !p.ends_with("deploy/helm") {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// Every YAML under deploy/ and examples/operator/ parses into its typed object; the operator
/// examples also render (sinks and rules the operator accepts, kafka aside until it lands).
#[test]
fn shipped_manifests_parse_into_their_types() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    yaml_files(&root().join("examples/operator"), &mut files);
    files.sort();
    let mut kinds = BTreeMap::<String, usize>::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for d in yaml_serde::Deserializer::from_str(&text) {
            let y: yaml_serde::Value = serde::Deserialize::deserialize(d).unwrap();
            if y.is_null() {
                continue;
            }
            let doc: Value = serde_json::to_value(y).unwrap();
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no kind", f.display()))
                .to_string();
            match (doc["apiVersion"].as_str().unwrap_or(""), kind.as_str()) {
                ("v1", "Namespace") => check_typed::<Namespace>(&doc, f),
                ("v1", "ConfigMap") => check_typed::<ConfigMap>(&doc, f),
                ("v1", "Secret") => check_typed::<Secret>(&doc, f),
                ("v1", "Service") => check_typed::<Service>(&doc, f),
                ("v1", "ServiceAccount") => check_typed::<ServiceAccount>(&doc, f),
                ("apps/v1", "Deployment") => check_typed::<Deployment>(&doc, f),
                ("apps/v1", "DaemonSet") => check_typed::<DaemonSet>(&doc, f),
                ("apps/v1", "StatefulSet") => check_typed::<StatefulSet>(&doc, f),
                ("policy/v1", "PodDisruptionBudget") => check_typed::<PodDisruptionBudget>(&doc, f),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    check_typed::<ClusterRole>(&doc, f)
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    check_typed::<ClusterRoleBinding>(&doc, f)
                }
                ("rbac.authorization.k8s.io/v1", "Role") => check_typed::<Role>(&doc, f),
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                    check_typed::<RoleBinding>(&doc, f)
                }
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                    check_typed::<CustomResourceDefinition>(&doc, f)
                }
                ("kaudit.io/v1alpha1", "FalcoRule") => check_typed::<FalcoRule>(&doc, f),
                ("kaudit.io/v1alpha1", "FalcoRulesFile") => check_typed::<FalcoRulesFile>(&doc, f),
                ("kaudit.io/v1alpha1", "AlertSink") => check_typed::<AlertSink>(&doc, f),
                ("kaudit.io/v1alpha1", "ClusterAlertSink") => {
                    check_typed::<ClusterAlertSink>(&doc, f)
                }
                ("kaudit.io/v1alpha1", "KauditDeployment") => {
                    check_typed::<KauditDeployment>(&doc, f)
                }
                (av, k) => panic!("{}: no typed check for {av} {k}", f.display()),
            }
            *kinds.entry(kind).or_default() += 1;
        }
    }
    for k in [
        "CustomResourceDefinition",
        "ClusterRole",
        "Deployment",
        "StatefulSet",
        "PodDisruptionBudget",
        "FalcoRule",
        "AlertSink",
        "ClusterAlertSink",
        "KauditDeployment",
    ] {
        assert!(kinds.contains_key(k), "no {k} shipped: {kinds:?}");
    }
}

/// The operator examples render: every rule and sink valid, a namespaced and a cluster sink of
/// every sink type.
#[test]
fn operator_examples_render() {
    let dir = root().join("examples/operator");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    let mut inputs = Inputs::default();
    let mut kds = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for d in yaml_serde::Deserializer::from_str(&text) {
            let doc: Value = serde_json::to_value(
                <yaml_serde::Value as serde::Deserialize>::deserialize(d).unwrap(),
            )
            .unwrap();
            let uid = json!(format!(
                "uid-{}",
                doc["metadata"]["name"].as_str().unwrap_or("")
            ));
            let mut doc = doc;
            doc["metadata"]["uid"] = uid;
            match doc["kind"].as_str() {
                Some("FalcoRule") => inputs.rules.push(serde_json::from_value(doc).unwrap()),
                Some("FalcoRulesFile") => inputs
                    .rules_files
                    .push(serde_json::from_value(doc).unwrap()),
                Some("AlertSink") => inputs.sinks.push(serde_json::from_value(doc).unwrap()),
                Some("ClusterAlertSink") => inputs
                    .cluster_sinks
                    .push(serde_json::from_value(doc).unwrap()),
                Some("KauditDeployment") => {
                    kds.push(serde_json::from_value::<KauditDeployment>(doc).unwrap())
                }
                Some("Secret") => {
                    let s: Secret = serde_json::from_value(doc).unwrap();
                    let mut data: BTreeMap<String, Vec<u8>> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in s.string_data.unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    let key = (
                        s.metadata.namespace.unwrap_or_default(),
                        s.metadata.name.unwrap_or_default(),
                    );
                    if s.metadata
                        .labels
                        .unwrap_or_default()
                        .get(SINK_CREDENTIALS_LABEL)
                        == Some(&"true".to_string())
                    {
                        inputs.sink_credentials.insert(key.clone());
                    }
                    inputs.secrets.insert(key, data);
                }
                _ => {}
            }
        }
    }
    assert!(!kds.is_empty());
    for k in &kds {
        if render::needs_intake_token(k) {
            inputs.intake_tokens.insert(
                (
                    k.metadata.namespace.clone().unwrap_or_default(),
                    k.metadata.name.clone().unwrap_or_default(),
                ),
                GOLDEN_TOKEN.into(),
            );
        }
        let d = render(k, &inputs);
        for o in &d.outcomes {
            assert!(o.error.is_none(), "{:?} {}: {:?}", o.kind, o.name, o.error);
        }
        // `console` comes from spec.console, never from a sink.
        for &t in kaudit::sinks::TYPES.iter().filter(|t| **t != "console") {
            for (scope, present) in [
                (
                    "namespaced",
                    inputs.sinks.iter().any(|s| s.spec.sink.type_ == t),
                ),
                (
                    "cluster",
                    inputs.cluster_sinks.iter().any(|s| s.spec.sink.type_ == t),
                ),
            ] {
                assert!(present, "no {scope} example sink of type {t}");
            }
        }
        engine(&d);
    }
}

fn assert_hardened(t: &PodTemplateSpec, what: &str) {
    let pod = t.spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true), "{what}: runAsNonRoot");
    let init = pod.init_containers.iter().flatten();
    for c in pod.containers.iter().chain(init.clone()) {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{what}: read-only root fs"
        );
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
        let caps = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default();
        assert_eq!(caps, ["ALL"], "{what}: capabilities");
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        assert!(
            limits.is_some_and(|l| l.contains_key("memory")),
            "{what}: memory limit"
        );
        let is_init = init.clone().any(|i| i.name == c.name);
        assert!(
            is_init || (c.readiness_probe.is_some() && c.liveness_probe.is_some()),
            "{what}: probes"
        );
    }
}

/// The operator's own Deployment and everything it renders run hardened; its RBAC is narrow.
#[test]
fn install_and_rendered_workloads_are_hardened_and_rbac_is_narrow() {
    let text = std::fs::read_to_string(root().join("deploy/install.yaml")).unwrap();
    let docs: Vec<Value> = yaml_serde::Deserializer::from_str(&text)
        .map(|d| {
            serde_json::to_value(<yaml_serde::Value as serde::Deserialize>::deserialize(d).unwrap())
                .unwrap()
        })
        .collect();
    let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let dep: Deployment = serde_json::from_value(dep.clone()).unwrap();
    assert_hardened(&dep.spec.template, "operator");
    assert!(
        dep.spec.replicas.unwrap_or(1) >= 2,
        "two replicas with leader election"
    );
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let role: ClusterRole = serde_json::from_value(role.clone()).unwrap();
    for r in role.rules.as_ref().unwrap() {
        let res = r.resources.clone().unwrap_or_default();
        assert!(
            !r.verbs.contains(&"*".to_string()) && !res.contains(&"*".to_string()),
            "{r:?}"
        );
        if res.contains(&"secrets".to_string()) {
            assert!(
                !r.verbs.iter().any(|v| v == "list" || v == "watch"),
                "secrets: get only, {r:?}"
            );
        }
    }
    let d = render(&kd(json!({"detect": "both"})), &Inputs::default());
    assert_hardened(kaudit_pod(&d), "kaudit");
    assert_hardened(&deployment(&d, "kaudit-falco").spec.template, "falco");
    for (name, t) in [
        ("kaudit", kaudit_pod(&d)),
        (
            "kaudit-falco",
            &deployment(&d, "kaudit-falco").spec.template,
        ),
    ] {
        let pod = t.spec.as_ref().unwrap();
        assert_eq!(
            pod.automount_service_account_token,
            Some(false),
            "{name}: no API token"
        );
    }
}
