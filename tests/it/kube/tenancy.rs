//! Tenancy with real RBAC: alice (group team-a) and bob (group team-b) get exactly the binding
//! docs/operator.md tells admins to create; the apiserver decides what they may do. Then kaudit
//! runs from the configuration the operator rendered, fed by the apiserver's audit webhook, and
//! team-b's events never fire alice's rule nor reach her sink.

use std::time::Duration;

use serde_json::Value;

use super::cluster::{Cluster, Options, bins, exclusive, root};
use super::hook::{audit, http_lab};
use super::install::install;
use super::ops::{
    Operator, alerts_in, eventually, get_json, materialize, operator_kubeconfig, serve,
};
use crate::support::free_port;

const WAIT: Duration = Duration::from_secs(90);

/// The `kubectl create rolebinding` lines of docs/operator.md's "Give teams access".
fn documented_bindings() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(root().join("docs/operator.md")).expect("docs");
    let start = doc
        .find("## Give teams access")
        .expect("docs/operator.md: no \"Give teams access\" section");
    let section = &doc[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let lines: Vec<Vec<String>> = section[..end]
        .lines()
        .filter(|l| l.starts_with("kubectl create rolebinding"))
        .map(|l| l.split_whitespace().skip(1).map(str::to_string).collect())
        .collect();
    assert!(!lines.is_empty(), "no binding in the docs");
    lines
}

fn rule(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: kaudit.io/v1alpha1\nkind: FalcoRule\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  rule: ConfigMap created\n  condition: ka.verb = create and ka.target.resource = configmaps\n  \
         output: configmap %ka.target.name created by %ka.user.name\n  priority: notice\n"
    )
}

fn file_sink(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: kaudit.io/v1alpha1\nkind: AlertSink\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  type: file\n  settings: {{path: alerts.json}}\n"
    )
}

fn refused(out: &std::process::Output) -> bool {
    let e = String::from_utf8_lossy(&out.stderr);
    !out.status.success() && e.contains("forbidden")
}

fn ns_of(a: &Value) -> &str {
    a["output_fields"]["ka.target.namespace"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenancy_real_rbac_refuses_other_namespaces_and_team_b_events_never_reach_alice() {
    let Some(bins) = bins() else { return };
    let _one = exclusive().await;
    let files = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let hook = http_lab(port, files.path());
    let c = Cluster::start(
        bins,
        Options {
            audit: Some(audit(&hook, &[])),
            controller_manager: true,
            ..Default::default()
        },
    )
    .await;
    install(&c).await;
    for ns in ["team-a", "team-b"] {
        c.kubectl_ok(&c.admin, &["create", "namespace", ns]);
    }
    // The docs' binding for team-a, and the same for team-b.
    for args in documented_bindings() {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        c.kubectl_ok(&c.admin, &a);
        let b: Vec<String> = args.iter().map(|s| s.replace("team-a", "team-b")).collect();
        let b: Vec<&str> = b.iter().map(String::as_str).collect();
        c.kubectl_ok(&c.admin, &b);
    }
    let alice = c.user("alice", Some("team-a"));
    let bob = c.user("bob", Some("team-b"));

    // alice writes rules and sinks in team-a, and the apiserver refuses everything else.
    c.kubectl_in_ok(
        &alice,
        &["apply", "-f", "-"],
        rule("team-a", "alice-rule").as_bytes(),
    );
    c.kubectl_in_ok(
        &alice,
        &["apply", "-f", "-"],
        file_sink("team-a", "alice").as_bytes(),
    );
    c.kubectl_ok(&alice, &["get", "falcorules,alertsinks", "-n", "team-a"]);
    let denied = [
        ("FalcoRule in team-b", rule("team-b", "sneaky")),
        ("AlertSink in team-b", file_sink("team-b", "sneaky")),
        ("AlertSink in kaudit-system", file_sink("kaudit-system", "sneaky")),
        (
            "ClusterAlertSink",
            "apiVersion: kaudit.io/v1alpha1\nkind: ClusterAlertSink\nmetadata: {name: sneaky}\nspec: {type: stdout}\n"
                .to_string(),
        ),
        (
            "FalcoRulesFile",
            "apiVersion: kaudit.io/v1alpha1\nkind: FalcoRulesFile\nmetadata: {name: sneaky}\nspec: {rules: \"[]\"}\n"
                .to_string(),
        ),
    ];
    for (what, yaml) in denied {
        let out = c.kubectl_in(&alice, &["create", "-f", "-"], Some(yaml.as_bytes()));
        assert!(
            refused(&out),
            "alice created a {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = c.kubectl(&alice, &["get", "falcorules", "-n", "team-b"]);
    assert!(refused(&out), "alice listed team-b's rules");
    let can = c.kubectl(
        &alice,
        &["auth", "can-i", "create", "falcorules", "-n", "team-b"],
    );
    assert_eq!(String::from_utf8_lossy(&can.stdout).trim(), "no");
    let out = c.kubectl(
        &c.admin,
        &[
            "auth",
            "can-i",
            "create",
            "falcorules",
            "-n",
            "team-b",
            "--as=alice",
            "--as-group=team-a",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no",
        "the docs' can-i example"
    );

    // Namespace editors get the same through the built-in edit role (aggregation).
    let carol = c.user("carol", None);
    c.kubectl_ok(
        &c.admin,
        &[
            "create",
            "rolebinding",
            "carol-edit",
            "--clusterrole=edit",
            "--user=carol",
            "-n",
            "team-a",
        ],
    );
    eventually("edit to aggregate kaudit-team", WAIT, || async {
        let out = c.kubectl(
            &carol,
            &["auth", "can-i", "create", "alertsinks", "-n", "team-a"],
        );
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if said == "yes" { Ok(()) } else { Err(said) }
    })
    .await;
    let out = c.kubectl(&carol, &["auth", "can-i", "create", "falcorulesfiles"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");

    c.kubectl_in_ok(
        &bob,
        &["apply", "-f", "-"],
        rule("team-b", "bob-rule").as_bytes(),
    );
    c.kubectl_in_ok(
        &bob,
        &["apply", "-f", "-"],
        file_sink("team-b", "bob").as_bytes(),
    );
    // The security team's view of everything, to check no alert of alice's rule exists at all.
    c.kubectl_in_ok(
        &c.admin,
        &["apply", "-f", "-"],
        b"apiVersion: kaudit.io/v1alpha1\nkind: ClusterAlertSink\nmetadata: {name: all}\n\
          spec:\n  type: file\n  settings: {path: /var/lib/kaudit/all-alerts.json}\n",
    );
    c.kubectl_in_ok(
        &c.admin,
        &["apply", "-f", "-"],
        b"apiVersion: kaudit.io/v1alpha1\nkind: KauditDeployment\n\
          metadata: {name: kaudit, namespace: kaudit-system}\nspec: {detect: embedded}\n",
    );

    // The operator (its own ServiceAccount) renders; kaudit runs from what it rendered.
    let op = Operator::start(&c, &operator_kubeconfig(&c), "op-1").await;
    eventually("both teams' rules and sinks rendered", WAIT, || async {
        let cm = get_json(&c, &["configmap", "kaudit-rules", "-n", "kaudit-system"])
            .unwrap_or(Value::Null);
        let secret = get_json(&c, &["secret", "kaudit-config", "-n", "kaudit-system"])
            .map(|s| super::ops::secret_data(&s))
            .unwrap_or_default();
        let config = secret
            .iter()
            .find(|(k, _)| k == "kaudit.yaml")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let ok = !cm["data"]["50-ns-team-a.yaml"].is_null()
            && !cm["data"]["50-ns-team-b.yaml"].is_null()
            && config.contains("ns_team-a_alice")
            && config.contains("ns_team-b_bob")
            && config.contains("cluster_all");
        if ok { Ok(()) } else { Err(config) }
    })
    .await;
    // alice sees her rule's status (she may read it, and the operator wrote it).
    eventually("alice's rule accepted", WAIT, || async {
        let out = c.kubectl(
            &alice,
            &[
                "get",
                "falcorule",
                "alice-rule",
                "-n",
                "team-a",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"RulesValid\")].status}",
            ],
        );
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        if s == "True" { Ok(()) } else { Err(s) }
    })
    .await;
    // alice's attacks on kaudit itself fail in her sinks' statuses, which she can read: a
    // Secret of her namespace she did not opt in, and the cloud metadata server.
    c.kubectl_ok(
        &c.admin,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            "team-a",
            "--from-literal=password=x",
        ],
    );
    let hostile = "apiVersion: kaudit.io/v1alpha1\nkind: AlertSink\n\
         metadata: {name: steal, namespace: team-a}\n\
         spec:\n  type: http\n  settings: {url: 'https://hooks.example.com/'}\n  \
         secretRefs: [{setting: header_files.Authorization, name: db, key: password}]\n---\n\
         apiVersion: kaudit.io/v1alpha1\nkind: AlertSink\n\
         metadata: {name: imds, namespace: team-a}\n\
         spec:\n  type: http\n  settings: {url: 'http://169.254.169.254/latest/meta-data/'}\n";
    c.kubectl_in_ok(&alice, &["apply", "-f", "-"], hostile.as_bytes());
    for (sink, why) in [
        ("steal", "kaudit.io/sink-credentials"),
        ("imds", "169.254.169.254"),
    ] {
        eventually(&format!("alice's sink {sink} refused"), WAIT, || async {
            let out = c.kubectl(
                &alice,
                &[
                    "get",
                    "alertsink",
                    sink,
                    "-n",
                    "team-a",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Valid\")].status} {.status.conditions[?(@.type==\"Valid\")].message}",
                ],
            );
            let s = String::from_utf8_lossy(&out.stdout).to_string();
            if s.starts_with("False") && s.contains(why) { Ok(()) } else { Err(s) }
        })
        .await;
    }
    let run = tempfile::tempdir().expect("temp dir");
    let config = materialize(&c, "kaudit-system", "kaudit", run.path());
    let rendered = std::fs::read_to_string(&config).expect("config");
    assert!(
        !rendered.contains("ns_team-a_steal") && !rendered.contains("ns_team-a_imds"),
        "{rendered}"
    );
    let _kaudit = serve(&c, "kaudit", &config, port).await;
    let data = run.path().join("data");

    // Real API calls: team-b first (admin, and alice refused), team-a last.
    c.kubectl_ok(
        &c.admin,
        &[
            "create",
            "configmap",
            "b-settings",
            "-n",
            "team-b",
            "--from-literal=a=b",
        ],
    );
    c.kubectl_ok(
        &c.admin,
        &[
            "create",
            "configmap",
            "b-leak",
            "-n",
            "team-b",
            "--from-literal=password=hunter2",
        ],
    );
    let out = c.kubectl(
        &alice,
        &["create", "configmap", "a-was-here", "-n", "team-b"],
    );
    assert!(refused(&out), "alice created a ConfigMap in team-b");
    c.kubectl_ok(
        &c.admin,
        &[
            "create",
            "configmap",
            "a-settings",
            "-n",
            "team-a",
            "--from-literal=a=b",
        ],
    );

    let all = eventually("every alert at the cluster sink", WAIT, || async {
        let all = alerts_in(&data, "all-alerts");
        let names: Vec<&str> = all
            .iter()
            .filter_map(|a| a["output_fields"]["ka.target.name"].as_str())
            .collect();
        // A refused create carries no object name (authorization comes before the body).
        let alice_refused = all
            .iter()
            .any(|a| a["output_fields"]["ka.user.name"] == "alice" && ns_of(a) == "team-b");
        let want = ["b-settings", "b-leak", "a-settings"];
        if alice_refused && want.iter().all(|w| names.contains(w)) {
            Ok(all)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    // Bob's rule saw team-b's three creations (the refused one too), and a cluster rule fired on
    // the leaked password in team-b.
    let rule_of = |a: &Value| a["rule"].as_str().unwrap_or("").to_string();
    // The test's own calls (the controller manager's, such as kube-root-ca.crt, come and go
    // with timing).
    let ours = |a: &&Value| {
        let u = &a["output_fields"]["ka.user.name"];
        u == "kaudit-admin" || u == "alice"
    };
    let bobs: Vec<&Value> = all
        .iter()
        .filter(|a| rule_of(a).starts_with("team-b/bob-rule"))
        .filter(ours)
        .collect();
    assert_eq!(bobs.len(), 3, "{bobs:?}");
    assert!(
        all.iter()
            .any(|a| rule_of(a) == "ConfigMap With Credentials" && ns_of(a) == "team-b"),
        "no cluster alert for team-b's leak: {all:?}"
    );
    // alice's rule never fired for team-b's events, and fired for hers in team-a.
    let alices: Vec<&Value> = all
        .iter()
        .filter(|a| rule_of(a).starts_with("team-a/"))
        .collect();
    assert!(alices.iter().all(|a| ns_of(a) == "team-a"), "{alices:?}");
    let mine: Vec<&Value> = alices.iter().copied().filter(ours).collect();
    assert_eq!(mine.len(), 1, "{alices:?}");
    assert_eq!(mine[0]["output_fields"]["ka.target.name"], "a-settings");

    // Her sink got team-a's alerts only; bob's got team-b's, the cluster rule's included.
    let hers = eventually("alice's sink", WAIT, || async {
        let a = alerts_in(&data, "alerts_team-a_");
        if a.is_empty() {
            Err("empty".to_string())
        } else {
            Ok(a)
        }
    })
    .await;
    assert!(hers.iter().all(|a| ns_of(a) == "team-a"), "{hers:?}");
    let his = alerts_in(&data, "alerts_team-b_");
    assert!(his.iter().all(|a| ns_of(a) == "team-b"), "{his:?}");
    assert!(
        his.iter()
            .any(|a| rule_of(a) == "ConfigMap With Credentials"),
        "{his:?}"
    );
    assert!(
        op.forbidden_lines().is_empty(),
        "{:?}",
        op.forbidden_lines()
    );
}
