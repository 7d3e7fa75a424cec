//! `kaudit operator` under its own RBAC (the ServiceAccount and ClusterRole of
//! deploy/install.yaml, with a token from the TokenRequest API) against a real apiserver and
//! controller manager: it reconciles the shipped examples, writes statuses, rolls Falco on a
//! rules change, cleans up on deletion, and hands over its Lease to a second replica. Any verb
//! missing from install.yaml shows up as a refused call here.

use std::time::Duration;

use serde_json::Value;

use super::cluster::{Cluster, Options, bins, exclusive, root};
use super::install::install;
use super::ops::{Operator, eventually, get_json, lease_holder, operator_kubeconfig, secret_data};

const NS: &str = "kaudit-system";
const WAIT: Duration = Duration::from_secs(90);

/// The objects the example KauditDeployment (detect: both, Falco as a Deployment) renders.
const RENDERED: [(&str, &str); 11] = [
    ("serviceaccount", "kaudit"),
    ("serviceaccount", "kaudit-falco"),
    ("configmap", "kaudit-rules"),
    ("configmap", "kaudit-falco"),
    ("secret", "kaudit-config"),
    ("statefulset", "kaudit"),
    ("deployment", "kaudit-falco"),
    ("service", "kaudit-headless"),
    ("service", "kaudit"),
    ("service", "kaudit-falco"),
    ("poddisruptionbudget", "kaudit"),
];

fn conditions(obj: &Value) -> Vec<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["type"].as_str().unwrap_or("").to_string(),
                        c["status"].as_str().unwrap_or("").to_string(),
                        c["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has(obj: &Value, ty: &str, status: &str) -> bool {
    conditions(obj)
        .iter()
        .any(|(t, s, _)| t == ty && s == status)
}

fn rules_cm(c: &Cluster) -> Value {
    get_json(c, &["configmap", "kaudit-rules", "-n", NS]).unwrap_or(Value::Null)
}

fn falco_hash(c: &Cluster) -> String {
    get_json(c, &["deployment", "kaudit-falco", "-n", NS])
        .and_then(|d| {
            d["spec"]["template"]["metadata"]["annotations"]["kaudit.io/rules-hash"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn apply_examples(c: &Cluster) {
    let dir = root().join("examples/operator");
    for f in [
        "secrets.yaml",
        "secrets-chat-oncall.yaml",
        "falcorulesfile.yaml",
        "falcorule-shell-in-container.yaml",
        "sinks-namespaced.yaml",
        "sinks-cluster.yaml",
        "sinks-chat-oncall.yaml",
        "kauditdeployment.yaml",
    ] {
        c.kubectl_ok(
            &c.admin,
            &[
                "apply",
                "--server-side",
                "-f",
                &dir.join(f).to_string_lossy(),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_under_its_own_service_account_reconciles_the_examples_and_hands_over_its_lease() {
    let Some(bins) = bins() else { return };
    let _one = exclusive().await;
    // OwnerReferencesPermissionEnforcement, as hardened clusters run it: the operator must be
    // allowed to delete what it sets owner references on.
    let c = Cluster::start(
        bins,
        Options {
            controller_manager: true,
            apiserver_args: vec![
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            ],
            ..Default::default()
        },
    )
    .await;
    install(&c).await;
    c.kubectl_ok(&c.admin, &["create", "namespace", "payments"]);
    // The webhook certificate the example KauditDeployment names.
    let tls = c
        .pki
        .server("kaudit-webhook", &["kaudit.kaudit-system.svc"]);
    c.kubectl_ok(
        &c.admin,
        &[
            "create",
            "secret",
            "tls",
            "kaudit-webhook-tls",
            "-n",
            NS,
            &format!("--cert={}", tls.cert.display()),
            &format!("--key={}", tls.key.display()),
        ],
    );
    apply_examples(&c);

    let kc = operator_kubeconfig(&c);
    let mut op1 = Operator::start(&c, &kc, "op-1").await;
    eventually("op-1 to hold the Lease", WAIT, || async {
        match lease_holder(&c) {
            Some(h) if h == "op-1" => Ok(()),
            h => Err(format!("holder {h:?}")),
        }
    })
    .await;

    // Everything the example renders exists, labelled and owned by the KauditDeployment.
    let kd = get_json(&c, &["kauditdeployment", "kaudit", "-n", NS]).expect("the example");
    let kd_uid = kd["metadata"]["uid"].as_str().unwrap_or("").to_string();
    for (kind, name) in RENDERED {
        let obj = eventually(&format!("{kind}/{name}"), WAIT, || async {
            get_json(&c, &[kind, name, "-n", NS]).ok_or_else(|| "not there".to_string())
        })
        .await;
        let owners = obj["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            owners
                .iter()
                .any(|o| o["uid"] == kd_uid.as_str() && o["controller"] == true),
            "{kind}/{name} is not owned by the KauditDeployment: {owners:?}"
        );
        assert_eq!(
            obj["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kaudit-operator",
            "{kind}/{name}"
        );
    }

    // The content: the team's rule scoped to its namespace, the cluster file, every sink with
    // its credentials in the Secret (never in a ConfigMap), Falco's intake token.
    let rules = rules_cm(&c);
    let ns_rules = rules["data"]["50-ns-payments.yaml"].as_str().unwrap_or("");
    assert!(
        ns_rules.contains("payments/shell-in-container: Shell in a container")
            && ns_rules.contains("ka.target.namespace = \"payments\" and ("),
        "{rules}"
    );
    assert!(
        rules["data"]
            .as_object()
            .is_some_and(|d| d.keys().any(|k| k.contains("platform-macros"))),
        "{rules}"
    );
    let secret = get_json(&c, &["secret", "kaudit-config", "-n", NS]).expect("config Secret");
    let data = secret_data(&secret);
    let config = data
        .iter()
        .find(|(k, _)| k == "kaudit.yaml")
        .map(|(_, v)| v.clone())
        .expect("kaudit.yaml");
    let config: Value = yaml_serde::from_str(&config).expect("kaudit.yaml is YAML");
    let sinks: Vec<&str> = config["sinks"]
        .as_array()
        .expect("sinks")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    // Every example sink renders (one namespaced and one cluster sink per type), except those
    // whose example Secret holds a placeholder (a service-account key {"type":
    // "service_account"}, a certificate, a kubeconfig) or that need a credential the example
    // leaves out: the operator's dry run with the real credential bytes refuses them, as kaudit
    // would, and says so in their status.
    let placeholder_keys = [
        "cluster_gcscc",
        "cluster_pubsub",
        "ns_payments_pubsub",
        "cluster_gcs",
        "ns_payments_gcs",
        "cluster_policyreport",
        "ns_payments_policyreport",
        "cluster_syslog",
        "ns_payments_s3",
    ];
    // Every type an AlertSink may take: not `console`, which the KauditDeployment's
    // spec.console renders (the example deployment leaves it off).
    let types = kaudit::sinks::TYPES
        .iter()
        .filter(|t| **t != kaudit::store::observer::CONSOLE_SINK_TYPE)
        .count();
    assert_eq!(
        sinks.len(),
        2 * types - placeholder_keys.len(),
        "{types} namespaced and {types} cluster sinks, less the placeholder keys: {sinks:?}"
    );
    assert!(
        !sinks.iter().any(|s| s.contains("console")),
        "no sink renders a console store: {sinks:?}"
    );
    assert!(
        placeholder_keys.iter().all(|p| !sinks.contains(p)),
        "{sinks:?}"
    );
    eventually(
        "the placeholder key refused in the pubsub sink's status",
        WAIT,
        || async {
            let sink = get_json(&c, &["alertsink", "pubsub", "-n", "payments"]).unwrap_or_default();
            let valid = sink["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Valid"))
                .cloned()
                .unwrap_or_default();
            let refused = valid["status"] == "False"
                && valid["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("credentials_file"));
            if refused {
                Ok(())
            } else {
                Err(valid.to_string())
            }
        },
    )
    .await;
    assert_eq!(config["rules"]["rule_matching"], "all");
    assert!(
        data.iter()
            .any(|(k, v)| k.starts_with("cred.") && v == "change-me")
    );
    assert!(data.iter().any(|(k, _)| k == "falco-intake-token"));
    let cms = c.kubectl_ok(&c.admin, &["get", "configmaps", "-n", NS, "-o", "json"]);
    assert!(
        !cms.contains("change-me"),
        "a credential reached a ConfigMap"
    );

    // The workloads' ServiceAccounts mount no token, and nothing grants them anything.
    for sa in ["kaudit", "kaudit-falco"] {
        let o = get_json(&c, &["serviceaccount", sa, "-n", NS]).expect("sa");
        assert_eq!(o["automountServiceAccountToken"], false, "{sa}");
    }
    let bindings = c.kubectl_ok(
        &c.admin,
        &[
            "get",
            "rolebindings,clusterrolebindings",
            "-A",
            "-o",
            "json",
        ],
    );
    let bindings: Value = serde_json::from_str(&bindings).expect("bindings");
    for b in bindings["items"].as_array().expect("items") {
        for s in b["subjects"].as_array().cloned().unwrap_or_default() {
            assert!(
                !(s["kind"] == "ServiceAccount"
                    && s["namespace"] == NS
                    && (s["name"] == "kaudit" || s["name"] == "kaudit-falco")),
                "{} grants the workload something",
                b["metadata"]["name"]
            );
        }
    }

    // Both workloads' pods are created in the restricted namespace: Pod Security admits the
    // rendered templates (init container included). They stay Pending: no kubelet here.
    for app in ["kaudit", "falco"] {
        eventually(&format!("a {app} pod"), WAIT, || async {
            let pods = get_json(
                &c,
                &[
                    "pods",
                    "-n",
                    NS,
                    "-l",
                    &format!("app.kubernetes.io/name={app}"),
                ],
            )
            .unwrap_or(Value::Null);
            if pods["items"].as_array().is_some_and(|i| !i.is_empty()) {
                Ok(())
            } else {
                let rs = c.kubectl(
                    &c.admin,
                    &["describe", "replicasets,statefulsets", "-n", NS],
                );
                Err(String::from_utf8_lossy(&rs.stdout).into_owned())
            }
        })
        .await;
    }

    // kaudit's data dir is a claim per pod: the StatefulSet controller created kaudit-0's from
    // the template (it stays Pending: no provisioner here). Drains take one pod at a time, and
    // the grace period covers kaudit's drain budgets.
    let sts = get_json(&c, &["statefulset", "kaudit", "-n", NS]).expect("statefulset");
    assert_eq!(sts["spec"]["serviceName"], "kaudit-headless");
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "4Gi"
    );
    assert_eq!(
        sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        45
    );
    let pvc = eventually("kaudit-0's claim", WAIT, || async {
        get_json(&c, &["pvc", "data-kaudit-0", "-n", NS]).ok_or_else(|| "not there".to_string())
    })
    .await;
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteOnce");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "4Gi");
    let pdb = get_json(&c, &["poddisruptionbudget", "kaudit", "-n", NS]).expect("pdb");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "kaudit"
    );

    // Every custom resource gets status conditions.
    let kinds = [
        "falcorules",
        "falcorulesfiles",
        "alertsinks",
        "clusteralertsinks",
    ];
    for kind in kinds {
        eventually(&format!("conditions on every {kind}"), WAIT, || async {
            let list = get_json(&c, &[kind, "-A"]).unwrap_or(Value::Null);
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let missing: Vec<String> = items
                .iter()
                .filter(|i| conditions(i).is_empty())
                .map(|i| i["metadata"]["name"].to_string())
                .collect();
            if !items.is_empty() && missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} items, without conditions: {missing:?}",
                    items.len()
                ))
            }
        })
        .await;
    }
    let rule = get_json(&c, &["falcorule", "shell-in-container", "-n", "payments"]).expect("rule");
    assert!(has(&rule, "RulesValid", "True"), "{}", rule["status"]);
    let kd = eventually("the KauditDeployment's status", WAIT, || async {
        let kd = get_json(&c, &["kauditdeployment", "kaudit", "-n", NS]).unwrap_or(Value::Null);
        // Applied, but no pod ever becomes available without a kubelet.
        let progressing = conditions(&kd)
            .iter()
            .any(|(t, s, r)| t == "Ready" && s == "False" && r == "Progressing");
        if progressing && has(&kd, "RulesValid", "True") {
            Ok(kd)
        } else {
            Err(kd["status"].to_string())
        }
    })
    .await;
    assert_eq!(
        kd["status"]["sinks"],
        2 * types - placeholder_keys.len(),
        "{}",
        kd["status"]
    );
    let events = c.kubectl_ok(
        &c.admin,
        &["get", "events.events.k8s.io", "-A", "-o", "json"],
    );
    assert!(
        events.contains("\"reportingController\": \"kaudit-operator\""),
        "no Events"
    );

    // A rule change rolls Falco (its rules-hash annotation) and only Falco.
    let hash = falco_hash(&c);
    let kaudit_gen = get_json(&c, &["statefulset", "kaudit", "-n", NS]).expect("kaudit")["metadata"]
        ["generation"]
        .clone();
    c.kubectl_ok(
        &c.admin,
        &[
            "patch",
            "falcorule",
            "shell-in-container",
            "-n",
            "payments",
            "--type=merge",
            "-p",
            r#"{"spec":{"priority":"critical"}}"#,
        ],
    );
    eventually("the new priority in the rules ConfigMap", WAIT, || async {
        let cm = rules_cm(&c);
        let text = cm["data"]["50-ns-payments.yaml"].as_str().unwrap_or("");
        if text.contains("priority: Critical") {
            Ok(())
        } else {
            Err(text.to_string())
        }
    })
    .await;
    let new_hash = eventually("Falco to roll", WAIT, || async {
        let h = falco_hash(&c);
        if h != hash { Ok(h) } else { Err(h) }
    })
    .await;
    assert!(!new_hash.is_empty());
    let now_gen = get_json(&c, &["statefulset", "kaudit", "-n", NS]).expect("kaudit")["metadata"]
        ["generation"]
        .clone();
    assert_eq!(
        kaudit_gen, now_gen,
        "kaudit's pod template changed on a rule change"
    );

    // A second replica waits on the Lease, and takes over when the first stops.
    let mut op2 = Operator::start(&c, &kc, "op-2").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(lease_holder(&c).as_deref(), Some("op-1"));
    assert_eq!(op2.leader().await, 0.0);
    assert_eq!(op1.leader().await, 1.0);
    let st = op1.proc.terminate(Duration::from_secs(30));
    assert!(
        st.is_some_and(|s| s.success()),
        "op-1 did not exit cleanly: {st:?}"
    );
    let handover = std::time::Instant::now();
    eventually("op-2 to take over", Duration::from_secs(60), || async {
        match lease_holder(&c) {
            Some(h) if h == "op-2" => Ok(()),
            h => Err(format!("holder {h:?}")),
        }
    })
    .await;
    eventually("op-2 to lead", Duration::from_secs(30), || async {
        let l = op2.leader().await;
        if l == 1.0 { Ok(()) } else { Err(l.to_string()) }
    })
    .await;
    eprintln!(
        "MEASURED lease hand-over after op-1's SIGTERM: {:.1}s",
        handover.elapsed().as_secs_f64()
    );

    // Deleting a rule removes it from the rendered rules (op-2 reconciles now).
    c.kubectl_ok(
        &c.admin,
        &[
            "delete",
            "falcorule",
            "shell-in-container",
            "-n",
            "payments",
        ],
    );
    eventually("the rule gone from the ConfigMap", WAIT, || async {
        let cm = rules_cm(&c);
        if cm["data"]["50-ns-payments.yaml"].is_null() {
            Ok(())
        } else {
            Err(cm["data"].to_string())
        }
    })
    .await;

    // A sink with credentials carries the finalizer; deleting it waits until its credentials
    // left the config Secret. A sink without credentials has none.
    let nats = get_json(&c, &["alertsink", "nats", "-n", "payments"]).expect("nats sink");
    assert_eq!(nats["metadata"]["finalizers"][0], "kaudit.io/credentials");
    let stdout = get_json(&c, &["alertsink", "stdout", "-n", "payments"]).expect("stdout sink");
    assert!(
        stdout["metadata"]["finalizers"].is_null(),
        "{}",
        stdout["metadata"]
    );
    c.kubectl_ok(
        &c.admin,
        &[
            "delete",
            "alertsink",
            "nats",
            "-n",
            "payments",
            "--timeout=60s",
        ],
    );
    let secret = get_json(&c, &["secret", "kaudit-config", "-n", NS]).expect("config Secret");
    let creds: Vec<String> = secret_data(&secret)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("cred.ns_payments_nats"))
        .collect();
    assert!(creds.is_empty(), "credentials left behind: {creds:?}");

    // Asking for emptyDir turns kaudit into a Deployment; the StatefulSet and its headless
    // Service are pruned (the claim stays: its data outlives the switch).
    c.kubectl_ok(
        &c.admin,
        &[
            "patch",
            "kauditdeployment",
            "kaudit",
            "-n",
            NS,
            "--type=merge",
            "-p",
            r#"{"spec":{"storage":{"emptyDir":true}}}"#,
        ],
    );
    eventually("kaudit as a Deployment", WAIT, || async {
        let dep = get_json(&c, &["deployment", "kaudit", "-n", NS]);
        let sts = get_json(&c, &["statefulset", "kaudit", "-n", NS]);
        let headless = get_json(&c, &["service", "kaudit-headless", "-n", NS]);
        match (dep, sts, headless) {
            (Some(d), None, None) => Ok(d),
            (d, s, h) => Err(format!(
                "deployment {}, statefulset {}, headless service {}",
                d.is_some(),
                s.is_some(),
                h.is_some()
            )),
        }
    })
    .await;

    // Deleting the KauditDeployment lets the garbage collector remove what it owned.
    c.kubectl_ok(
        &c.admin,
        &["delete", "kauditdeployment", "kaudit", "-n", NS],
    );
    for (kind, name) in RENDERED.into_iter().chain([("deployment", "kaudit")]) {
        eventually(&format!("{kind}/{name} collected"), WAIT, || async {
            match get_json(&c, &[kind, name, "-n", NS]) {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        })
        .await;
    }

    let refused: Vec<String> = op1
        .forbidden_lines()
        .into_iter()
        .chain(op2.forbidden_lines())
        .collect();
    assert!(
        refused.is_empty(),
        "the apiserver refused the operator (RBAC in deploy/install.yaml):\n{}",
        refused.join("\n")
    );
    op2.proc.terminate(Duration::from_secs(30));
}
