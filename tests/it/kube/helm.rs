//! The Helm chart under deploy/helm/kaudit: `helm lint`, the same objects as
//! deploy/install.yaml with the default values, and `helm template | kubectl apply
//! --server-side --dry-run=server` against a real apiserver.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use super::cluster::{Bins, Cluster, Options, bins, check, exclusive, root};
use super::install::wait_crds_established;

fn chart() -> PathBuf {
    root().join("deploy/helm/kaudit")
}

/// Runs the built helm with its caches and config in `home`.
fn helm(bins: &Bins, home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(bins.path("helm"))
        .args(args)
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm")
}

/// Every document of a multi-document YAML text, as JSON (empty ones left out).
fn documents(text: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|d| {
            let v = <yaml_serde::Value as serde::Deserialize>::deserialize(d).expect("YAML");
            serde_json::to_value(v).expect("JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn key(o: &Value) -> String {
    format!(
        "{}/{}/{}",
        o["kind"].as_str().unwrap_or(""),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// `o` without the labels Helm adds (the chart's own labels stay compared).
fn without_chart_labels(mut o: Value) -> Value {
    let Some(meta) = o["metadata"].as_object_mut() else {
        return o;
    };
    if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
        for k in [
            "helm.sh/chart",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
        ] {
            labels.remove(k);
        }
        if labels.is_empty() {
            meta.remove("labels");
        }
    }
    o
}

#[test]
fn helm_chart_crds_are_kaudit_crds() {
    let chart = std::fs::read_to_string(chart().join("crds/crds.yaml")).expect("chart CRDs");
    let deploy = std::fs::read_to_string(root().join("deploy/crds.yaml")).expect("deploy CRDs");
    assert!(
        chart == deploy,
        "deploy/helm/kaudit/crds/crds.yaml drifted: cp deploy/crds.yaml deploy/helm/kaudit/crds/"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_chart_lints_renders_install_yaml_and_passes_server_side_dry_run() {
    let Some(bins) = bins() else { return };
    let home = tempfile::tempdir().expect("temp dir");
    let chart = chart();
    let chart = chart.to_string_lossy();
    check(
        "helm lint --strict",
        helm(&bins, home.path(), &["lint", "--strict", &chart]),
    );
    let rendered = check(
        "helm template",
        helm(
            &bins,
            home.path(),
            &[
                "template",
                "kaudit",
                &chart,
                "--namespace=kaudit-system",
                "--include-crds",
                "--set=namespace.create=true",
            ],
        ),
    );

    // The same objects as install.yaml, field for field (Helm's bookkeeping labels aside).
    let install = std::fs::read_to_string(root().join("deploy/install.yaml")).expect("install");
    let mut want: Vec<Value> = documents(&install);
    let mut got: Vec<Value> = documents(&rendered)
        .into_iter()
        .map(without_chart_labels)
        .collect();
    want.sort_by_key(key);
    got.sort_by_key(key);
    let wk: Vec<String> = want.iter().map(key).collect();
    let gk: Vec<String> = got.iter().map(key).collect();
    assert_eq!(wk, gk, "the chart renders other objects than install.yaml");
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(
            w,
            g,
            "{} differs between install.yaml and the chart",
            key(w)
        );
    }

    // Values: image, namespace, replicas, resources.
    let custom = check(
        "helm template with values",
        helm(
            &bins,
            home.path(),
            &[
                "template",
                "kaudit",
                &chart,
                "--namespace=security",
                "--set=image.repository=registry.example.com/kaudit,image.tag=v1.2.3",
                "--set=replicas=3,resources.limits.memory=1Gi",
            ],
        ),
    );
    let docs = documents(&custom);
    let dep = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment");
    assert_eq!(dep["metadata"]["namespace"], "security");
    assert_eq!(dep["spec"]["replicas"], 3);
    let ctr = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(ctr["image"], "registry.example.com/kaudit:v1.2.3");
    assert_eq!(ctr["resources"]["limits"]["memory"], "1Gi");
    assert!(docs.iter().all(|d| d["kind"] != "Namespace"));
    let crb = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .expect("binding");
    assert_eq!(crb["subjects"][0]["namespace"], "security");

    // The real apiserver accepts all of it. A dry run persists nothing, so the namespace must
    // exist for the objects in it.
    let _one = exclusive().await;
    let c = Cluster::start(bins.clone(), Options::default()).await;
    c.kubectl_ok(&c.admin, &["create", "namespace", "kaudit-system"]);
    let out = c.kubectl_in_ok(
        &c.admin,
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        rendered.as_bytes(),
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count(),
        want.len(),
        "{out}"
    );

    // And helm install, as docs/operator.md says it.
    c.kubectl_ok(
        &c.admin,
        &[
            "label",
            "namespace",
            "kaudit-system",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
    );
    let admin = c.admin.to_string_lossy().into_owned();
    check(
        "helm install",
        helm(
            &bins,
            home.path(),
            &[
                "install",
                "kaudit",
                &chart,
                "--namespace=kaudit-system",
                &format!("--kubeconfig={admin}"),
            ],
        ),
    );
    wait_crds_established(&c).await;
    let dep = c.kubectl_ok(
        &c.admin,
        &[
            "get",
            "deployment",
            "kaudit-operator",
            "-n",
            "kaudit-system",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.labels.app\\.kubernetes\\.io/managed-by}",
        ],
    );
    assert_eq!(dep, "2 Helm");
}
