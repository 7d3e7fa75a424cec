//! The rendered objects: what rolls Falco and what kaudit reloads, the objects each mode wants,
//! the golden desired state, Falco's intake token and its plugins.

use super::*;

/// A rules change rolls Falco only; a sink change rolls nothing (kaudit reloads its config);
/// kaudit's config is mounted whole (no subPath) so that updates reach the pod.
#[test]
fn rules_changes_roll_falco_and_sink_changes_reload_kaudit() {
    let k = kd(json!({"detect": "both"}));
    let base = Inputs {
        rules: vec![rule("team-a", "r", "ka.verb = get")],
        cluster_sinks: vec![cluster_sink("all", json!({"type": "stdout"}))],
        ..Default::default()
    };
    let d0 = render(&k, &base);
    let mut rules_changed = base.clone();
    rules_changed.rules[0].spec.condition = "ka.verb = list".into();
    let d1 = render(&k, &rules_changed);
    let mut sink_changed = base.clone();
    sink_changed.cluster_sinks[0].spec.sink.min_priority = Some("error".into());
    let d2 = render(&k, &sink_changed);
    let hash = falco_rules_hash;
    assert_ne!(hash(&d0), hash(&d1), "a rules change must roll Falco");
    assert_eq!(hash(&d0), hash(&d2), "a sink change must not roll Falco");
    assert_eq!(
        kaudit_workload(&d0),
        kaudit_workload(&d1),
        "rules reload in kaudit"
    );
    assert_eq!(
        kaudit_workload(&d0),
        kaudit_workload(&d2),
        "sinks reload in kaudit"
    );
    assert_ne!(config_secret(&d0), config_secret(&d2));
    let pod = kaudit_pod(&d0).spec.as_ref().unwrap();
    for m in pod.containers[0].volume_mounts.as_ref().unwrap() {
        assert!(m.sub_path.is_none(), "{} uses subPath", m.name);
    }
    assert!(
        kaudit_pod(&d0)
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .is_none()
    );
}

/// Mode switches prune what is no longer wanted; the Falco workload follows `falco.mode`.
#[test]
fn detect_and_falco_modes_choose_the_objects() {
    let keys = |d: &Desired| d.objects.iter().map(Object::key).collect::<Vec<_>>();
    let d = render(&kd(json!({})), &Inputs::default());
    assert!(
        !keys(&d).iter().any(|k| k.contains("falco")),
        "{:?}",
        keys(&d)
    );
    assert!(d.prune.contains(&"Deployment/kaudit-falco".to_string()));
    let d = render(
        &kd(json!({"detect": "falco", "falco": {"mode": "DaemonSet"}})),
        &Inputs::default(),
    );
    assert!(
        keys(&d).contains(&"DaemonSet/kaudit-falco".to_string()),
        "{:?}",
        keys(&d)
    );
    assert!(d.prune.contains(&"Deployment/kaudit-falco".to_string()));
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert_eq!(
        cfg.falco.forward_url,
        "http://kaudit-falco.kaudit-system.svc:8765/k8s-audit"
    );
    assert!(cfg.rules.files.is_empty());
}

fn golden(name: &str, actual: &str) {
    let path = root().join("tests/it/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{} differs; rerun with UPDATE_GOLDEN=1 and review the diff",
        path.display()
    );
}

/// The whole desired state of a representative deployment, golden-file style.
#[test]
fn desired_state_golden() {
    let k = kd(json!({
        "detect": "both", "defaultRules": false, "replicas": 2,
        "falco": {"mode": "Deployment"},
        "service": {"type": "ClusterIP", "port": 443, "tlsSecret": "kaudit-tls", "tokenSecret": "kaudit-tokens"},
        "podTemplate": {"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}},
    }));
    let mut secrets = BTreeMap::new();
    secrets.insert(
        ("security".to_string(), "siem-token".to_string()),
        BTreeMap::from([("authorization".to_string(), b"Bearer abc".to_vec())]),
    );
    let inputs = Inputs {
        rules_files: vec![rules_file("shared", 0, CLUSTER_RULES)],
        rules: vec![
            rule_spec(
                "payments",
                "shell-in-container",
                json!({
                    "rule": "Shell in a container", "desc": "exec of a shell",
                    "condition": "ka.target.subresource = exec and ka.uri.param[command] in (sh, bash)",
                    "output": "shell in %ka.target.name by %ka.user.name", "priority": "warning",
                    "tags": ["shell"],
                    "exceptions": [{"name": "ops", "fields": ["ka.user.name"], "values": [["ops@example.com"]]}],
                }),
            ),
            rule("payments", "broken", "ka.verb = "),
        ],
        sinks: vec![sink(
            "payments",
            "team",
            json!({"type": "file", "minPriority": "notice", "settings": {"path": "alerts.json"}}),
        )],
        cluster_sinks: vec![cluster_sink(
            "siem",
            json!({"type": "http", "settings": {"url": "https://siem.example.com/alerts"},
            "secretRefs": [{"setting": "header_files.Authorization", "namespace": "security", "name": "siem-token", "key": "authorization"}]}),
        )],
        secrets,
        intake_tokens: BTreeMap::from([(
            ("kaudit-system".to_string(), "kaudit".to_string()),
            GOLDEN_TOKEN.to_string(),
        )]),
        ..Default::default()
    };
    let d = render(&k, &inputs);
    let mut out = render::objects_yaml(&d.objects).unwrap();
    out.push_str("--- # kaudit.yaml, as in Secret/kaudit-config\n");
    out.push_str(&d.kaudit_config);
    out.push_str("--- # prune\n");
    out.push_str(&yaml_serde::to_string(&d.prune).unwrap());
    out.push_str("--- # outcomes\n");
    for o in &d.outcomes {
        out.push_str(&format!(
            "# {:?} {:?}/{} -> {:?} {:?}\n",
            o.kind, o.namespace, o.name, o.rendered_name, o.error
        ));
    }
    golden("operator_desired.yaml", &out);
    // The rendered config is a valid kaudit config.
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert_eq!(cfg.sinks.len(), 2);
}

/// With `tokenSecret` and a managed Falco, Falco authenticates to kaudit's `http_output` intake
/// with a token of its own: followed through the rendered objects (Falco's env from the config
/// Secret, `${VAR}` expanded as Falco does, the URL's password as libcurl sends it), kaudit's
/// rendered auth accepts it. The token never sits in a ConfigMap, and a new one rolls Falco.
#[test]
fn falco_authenticates_to_kaudit_with_an_issued_token() {
    use base64::Engine;
    let k = kd(json!({"detect": "both", "service": {"tokenSecret": "kaudit-tokens"}}));
    assert!(render::needs_intake_token(&k));
    let key = ("kaudit-system".to_string(), "kaudit".to_string());
    let err = render::desired(&k, &Inputs::default(), &t0()).unwrap_err();
    assert!(err.to_string().contains("intake token"), "{err}");
    let inputs = Inputs {
        intake_tokens: BTreeMap::from([(key.clone(), GOLDEN_TOKEN.to_string())]),
        ..Default::default()
    };
    let d = render(&k, &inputs);

    // Falco's environment variable comes from the config Secret.
    let falco_pod = deployment(&d, "kaudit-falco")
        .spec
        .template
        .spec
        .clone()
        .unwrap();
    let env = falco_pod.containers[0].env.clone().unwrap();
    let var = env
        .iter()
        .find(|e| e.name == render::INTAKE_TOKEN_ENV)
        .unwrap();
    let sel = var
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    let secret = config_secret(&d);
    assert_eq!(secret.metadata.name.as_deref(), Some(sel.name.as_str()));
    let value = String::from_utf8(secret.data.as_ref().unwrap()[&sel.key].0.clone()).unwrap();
    assert_eq!(value, GOLDEN_TOKEN);

    // falco.yaml refers to the variable, never the value.
    let falco_yaml = &config_map(&d, "kaudit-falco").data.as_ref().unwrap()["falco.yaml"];
    assert!(!falco_yaml.contains(GOLDEN_TOKEN));
    let falco: Value = yaml_serde::from_str(falco_yaml).unwrap();
    let url = falco["http_output"]["url"].as_str().unwrap();
    let expanded = url.replace(&format!("${{{}}}", render::INTAKE_TOKEN_ENV), &value);
    assert_ne!(expanded, url, "the URL names the variable: {url}");
    let parsed = reqwest::Url::parse(&expanded).unwrap();
    assert_eq!(parsed.host_str(), Some("kaudit.kaudit-system.svc"));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            parsed.username(),
            parsed.password().unwrap()
        ))
    );
    for cm in d.objects.iter().filter_map(|o| match o {
        Object::ConfigMap(c) => Some(c),
        _ => None,
    }) {
        for v in cm.data.iter().flat_map(|m| m.values()) {
            assert!(
                !v.contains(GOLDEN_TOKEN),
                "token in ConfigMap {:?}",
                cm.metadata.name
            );
        }
    }

    // kaudit reads it from the same Secret as its intake token (good for `POST /` only); the
    // apiserver's tokens stay in tokenSecret.
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert_eq!(
        cfg.auth.token_file.as_deref(),
        Some(Path::new("/etc/kaudit/token/tokens"))
    );
    assert!(
        cfg.auth.tokens.is_empty(),
        "Falco's token is not an apiserver token"
    );
    let file = cfg.falco.intake_token_file.clone().unwrap();
    assert_eq!(file.parent(), Some(Path::new(render::CONFIG_DIR)));
    let in_secret = &secret.data.as_ref().unwrap()[file.file_name().unwrap().to_str().unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("intake");
    std::fs::write(&local, &in_secret.0).unwrap();
    let intake =
        kaudit::server::auth::TokenAuth::from_file(local, "falco.intake_token_file").unwrap();
    assert!(intake.check(Some(basic.as_bytes())), "Falco's credentials");
    assert!(
        !intake.check(Some(b"Basic ZmFsY286d3Jvbmc=")),
        "falco:wrong"
    );

    // A new token rolls Falco (its environment is read once); kaudit re-reads its file.
    let mut other = inputs.clone();
    other.intake_tokens.insert(key, "ff".repeat(32));
    let d2 = render(&k, &other);
    let hash = falco_rules_hash;
    assert_ne!(hash(&d), hash(&d2));
    assert_eq!(
        kaudit_workload(&d),
        kaudit_workload(&d2),
        "kaudit re-reads the file"
    );

    // Without tokenSecret kaudit checks no token: no credentials anywhere.
    let open = kd(json!({"detect": "both"}));
    assert!(!render::needs_intake_token(&open));
    let d = render(&open, &Inputs::default());
    let falco: Value =
        yaml_serde::from_str(&config_map(&d, "kaudit-falco").data.as_ref().unwrap()["falco.yaml"])
            .unwrap();
    assert_eq!(
        falco["http_output"]["url"],
        "http://kaudit.kaudit-system.svc:8777/"
    );
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert!(cfg.auth.tokens.is_empty() && cfg.auth.token_file.is_none());
    assert!(cfg.falco.intake_token_file.is_none());
    assert!(
        !config_secret(&d)
            .data
            .as_ref()
            .unwrap()
            .contains_key(render::INTAKE_TOKEN_KEY)
    );
}

/// Falco's plugins come from a falcoctl init container into the directory Falco loads them
/// from; an empty installer image (plugins baked into Falco's image) renders none.
#[test]
fn falco_gets_its_plugins_from_an_init_container() {
    let d = render(&kd(json!({"detect": "falco"})), &Inputs::default());
    let pod = deployment(&d, "kaudit-falco")
        .spec
        .template
        .spec
        .clone()
        .unwrap();
    let init = pod.init_containers.clone().unwrap();
    assert_eq!(init.len(), 1);
    let args = init[0].args.clone().unwrap();
    assert_eq!(args[..2], ["artifact", "install"]);
    for r in [
        "ghcr.io/falcosecurity/plugins/plugin/k8saudit:0.18",
        "ghcr.io/falcosecurity/plugins/plugin/json:0.7",
        "--plugins-dir=/plugins",
        "--allowed-types=plugin",
    ] {
        assert!(args.iter().any(|a| a == r), "{r} in {args:?}");
    }
    let vol_of = |c: &k8s_openapi::api::core::v1::Container, path: &str| {
        c.volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)
            .map(|m| m.name.clone())
    };
    let written = vol_of(&init[0], "/plugins").unwrap();
    assert_eq!(
        vol_of(&pod.containers[0], render::FALCO_PLUGINS_DIR),
        Some(written),
        "Falco reads the plugins falcoctl wrote"
    );
    // The plugins falco.yaml loads are the ones installed.
    let falco: Value =
        yaml_serde::from_str(&config_map(&d, "kaudit-falco").data.as_ref().unwrap()["falco.yaml"])
            .unwrap();
    assert_eq!(falco["load_plugins"], json!(["k8saudit", "json"]));

    let d = render(
        &kd(json!({"detect": "falco", "falco": {"plugins": {"installerImage": ""}}})),
        &Inputs::default(),
    );
    let pod = deployment(&d, "kaudit-falco")
        .spec
        .template
        .spec
        .clone()
        .unwrap();
    assert!(pod.init_containers.is_none());
    assert!(!pod.volumes.iter().flatten().any(|v| v.name == "plugins"));
}

/// kaudit runs as a StatefulSet with a `data` claim per pod by default and as a Deployment with
/// an `emptyDir` only when asked; either prunes the other kind. A PodDisruptionBudget and the
/// grace period come with both.
#[test]
fn storage_chooses_statefulset_or_deployment() {
    let keys = |d: &Desired| d.objects.iter().map(Object::key).collect::<Vec<_>>();
    let has = |d: &Desired, k: &str| keys(d).contains(&k.to_string());

    // Persistent: size and class as given.
    let d = render(
        &kd(json!({"storage": {"size": "10Gi", "storageClassName": "fast"}})),
        &Inputs::default(),
    );
    assert!(!has(&d, "Deployment/kaudit"), "{:?}", keys(&d));
    assert!(d.prune.contains(&"Deployment/kaudit".to_string()));
    let sts = statefulset(&d, "kaudit");
    assert_eq!(sts.spec.service_name.as_deref(), Some("kaudit-headless"));
    assert_eq!(sts.spec.pod_management_policy.as_deref(), Some("Parallel"));
    let strategy = sts.spec.update_strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let claims = sts.spec.volume_claim_templates.as_ref().unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    let spec = claims[0].spec.as_ref().unwrap();
    assert_eq!(
        spec.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_string()][..])
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
    let requests = spec.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["storage"].0, "10Gi");
    // The claim, not a pod volume, backs the data dir, and fsGroup makes it writable.
    let pod = kaudit_pod(&d).spec.as_ref().unwrap();
    assert!(
        !pod.volumes.iter().flatten().any(|v| v.name == "data"),
        "data must come from the claim"
    );
    let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "data" && m.mount_path == render::DATA_DIR && m.read_only.is_none())
    );
    assert_eq!(
        pod.security_context.as_ref().unwrap().fs_group,
        Some(65532),
        "the nonroot user must own the claim"
    );
    let headless = d
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Service(s) if s.metadata.name.as_deref() == Some("kaudit-headless") => Some(s),
            _ => None,
        })
        .expect("the StatefulSet's headless Service");
    assert_eq!(
        headless.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );

    // The default: persistent, 4Gi, the cluster's default class.
    let d = render(&kd(json!({})), &Inputs::default());
    let claims = statefulset(&d, "kaudit")
        .spec
        .volume_claim_templates
        .clone();
    let spec = claims.unwrap()[0].spec.clone().unwrap();
    assert_eq!(
        spec.resources.unwrap().requests.unwrap()["storage"].0,
        "4Gi"
    );
    assert_eq!(spec.storage_class_name, None);

    // emptyDir only when asked for; the StatefulSet and its headless Service are pruned.
    let e = render(
        &kd(json!({"storage": {"emptyDir": true}})),
        &Inputs::default(),
    );
    assert!(has(&e, "Deployment/kaudit"), "{:?}", keys(&e));
    assert!(!has(&e, "StatefulSet/kaudit"));
    assert!(!has(&e, "Service/kaudit-headless"));
    for k in ["StatefulSet/kaudit", "Service/kaudit-headless"] {
        assert!(e.prune.contains(&k.to_string()), "{k}: {:?}", e.prune);
    }
    assert!(!e.prune.contains(&"Deployment/kaudit".to_string()));
    let pod = kaudit_pod(&e).spec.as_ref().unwrap();
    let data = pod.volumes.iter().flatten().find(|v| v.name == "data");
    assert!(data.and_then(|v| v.empty_dir.as_ref()).is_some());

    for d in [&d, &e] {
        // Drains take one kaudit pod at a time.
        let pdb = d
            .objects
            .iter()
            .find_map(|o| match o {
                Object::PodDisruptionBudget(p) => Some(p),
                _ => None,
            })
            .expect("a PodDisruptionBudget");
        assert_eq!(pdb.metadata.name.as_deref(), Some("kaudit"));
        let spec = pdb.spec.as_ref().unwrap();
        assert_eq!(
            spec.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
        );
        let want = spec
            .selector
            .as_ref()
            .unwrap()
            .match_labels
            .clone()
            .unwrap();
        let labels = kaudit_pod(d)
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert!(
            want.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "{want:?}"
        );

        // kaudit's drain budgets fit in the grace period the operator sets.
        let grace = kaudit_pod(d)
            .spec
            .as_ref()
            .unwrap()
            .termination_grace_period_seconds;
        assert_eq!(grace, Some(render::KAUDIT_GRACE_SECONDS));
        let forward = std::time::Duration::from_secs(3);
        let flush = std::time::Duration::from_millis(
            kaudit::delivery::SpoolConfig::default().shutdown_flush_ms,
        );
        let budgets = kaudit::pipeline::SHUTDOWN_REQUESTS
            + kaudit::pipeline::SHUTDOWN_DETECT
            + forward
            + flush;
        assert!(
            budgets.as_secs() + 10 <= render::KAUDIT_GRACE_SECONDS as u64,
            "drain budgets {budgets:?} leave under 10 s of the grace period"
        );
    }
}
