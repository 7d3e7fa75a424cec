//! The `policyreport` sink against a real kube-apiserver with the PolicyReport CRDs of
//! `tests/kube/crds/` (a structural schema with the result and severity enums, so a report that
//! does not follow the API is refused): one report per namespace keeping the newest
//! `max_results`, alerts about cluster-scoped objects and about a namespace that does not
//! exist in the ClusterPolicyReport, and nothing dead-lettered.

use chrono::{Duration, Utc};
use kaudit::alert::{Alert, Priority};
use serde_json::Value;

use super::cluster::{Cluster, Options, bins, exclusive, root};
use crate::siem::{start, wait_sent};
use crate::support::alert;

fn about(rule: &str, p: Priority, namespace: Option<&str>, secs_ago: i64) -> Alert {
    let mut a = alert(rule, p);
    a.time = Utc::now() - Duration::seconds(secs_ago);
    match namespace {
        Some(ns) => a
            .output_fields
            .insert("ka.target.namespace".into(), ns.into()),
        None => a.output_fields.remove("ka.target.namespace"),
    };
    a
}

fn report(c: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["kaudit", "-o", "json"]);
    serde_json::from_str(&c.kubectl_ok(&c.admin, &all)).expect("report JSON")
}

fn uuids(r: &Value) -> Vec<String> {
    r["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| x["properties"]["uuid"].as_str().expect("uuid").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_per_namespace_and_for_the_cluster() {
    let Some(bins) = bins() else { return };
    let _one = exclusive().await;
    let c = Cluster::start(bins, Options::default()).await;
    let crds = root().join("tests/kube/crds/policyreports.yaml");
    c.kubectl_ok(&c.admin, &["apply", "-f", crds.to_str().unwrap()]);
    c.kubectl_ok(
        &c.admin,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/policyreports.wgpolicyk8s.io",
            "crd/clusterpolicyreports.wgpolicyk8s.io",
        ],
    );
    c.kubectl_ok(&c.admin, &["create", "namespace", "team-a"]);

    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: polr\n    type: policyreport\n    kubeconfig_file: {}\n    max_results: 2\n    batch_wait_ms: 50\n",
        c.admin.display()
    );
    let (r, metrics) = start(dir.path(), &yaml).await;
    let team = [
        about("Oldest", Priority::Critical, Some("team-a"), 30),
        about("Middle", Priority::Notice, Some("team-a"), 20),
        about("Newest", Priority::Warning, Some("team-a"), 10),
    ];
    let cluster_scoped = about("Node Changed", Priority::Error, None, 5);
    let gone = about(
        "In a deleted namespace",
        Priority::Informational,
        Some("gone"),
        5,
    );
    for a in team.iter().chain([&cluster_scoped, &gone]) {
        r.sender().send(a.clone()).await.unwrap();
    }
    wait_sent(&metrics, "polr", 5).await;
    r.shutdown().await;
    assert!(crate::support::json_lines(&dir.path().join("dead-letter/polr.jsonl")).is_empty());

    let ns = report(&c, &["policyreport", "-n", "team-a"]);
    assert_eq!(
        uuids(&ns),
        [team[1].uuid.to_string(), team[2].uuid.to_string()],
        "the newest two, oldest first"
    );
    let res = &ns["results"][1];
    assert_eq!(res["policy"], "Newest");
    assert_eq!(res["severity"], "medium");
    assert_eq!(res["result"], "fail");
    assert_eq!(res["message"], team[2].output);
    assert_eq!(res["resources"][0]["namespace"], "team-a");
    assert_eq!(res["properties"]["ka.user.name"], "alice");
    assert_eq!(ns["results"][0]["result"], "warn");
    assert_eq!(ns["summary"]["fail"], 1);
    assert_eq!(ns["summary"]["warn"], 1);
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kaudit"
    );

    let cl = report(&c, &["clusterpolicyreport"]);
    let mut got = uuids(&cl);
    got.sort();
    let mut want = vec![cluster_scoped.uuid.to_string(), gone.uuid.to_string()];
    want.sort();
    assert_eq!(got, want);
}
