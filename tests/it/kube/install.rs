//! A user's first contact: `kubectl apply --server-side -f deploy/install.yaml` on a real
//! apiserver, the CRDs it installs, the examples, `kubectl explain`, and `deploy/kaudit.yaml`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;

use super::cluster::{Cluster, Options, bins, exclusive, root};

/// The five kinds: (plural, kind).
pub const KINDS: [(&str, &str); 5] = [
    ("falcorules", "FalcoRule"),
    ("falcorulesfiles", "FalcoRulesFile"),
    ("alertsinks", "AlertSink"),
    ("clusteralertsinks", "ClusterAlertSink"),
    ("kauditdeployments", "KauditDeployment"),
];

/// Waits until every kaudit.io CRD is Established and its names accepted; panics on a
/// `NonStructuralSchema` condition.
pub async fn wait_crds_established(c: &Cluster) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client(&c.admin).await);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut pending = Vec::new();
        for (plural, _) in KINDS {
            let name = format!("{plural}.kaudit.io");
            let crd = crds
                .get_opt(&name)
                .await
                .expect("get CRD")
                .unwrap_or_else(|| panic!("CRD {name} was not installed"));
            let conds = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            let is = |t: &str| conds.iter().any(|c| c.type_ == t && c.status == "True");
            assert!(
                !is("NonStructuralSchema"),
                "{name} has a non-structural schema: {conds:?}"
            );
            if !(is("Established") && is("NamesAccepted")) {
                pending.push(name);
            }
        }
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "CRDs never established: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies install.yaml server-side as the admin and waits for the CRDs.
pub async fn install(c: &Cluster) {
    let install = root().join("deploy/install.yaml");
    c.kubectl_ok(
        &c.admin,
        &["apply", "--server-side", "-f", &install.to_string_lossy()],
    );
    wait_crds_established(c).await;
}

/// The backticked names in the first column of the table under `heading` in docs/operator.md
/// (`falco.image`, `exceptions[]` without the brackets).
pub fn documented_fields(heading: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/operator.md")).expect("docs/operator.md");
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/operator.md has no heading {heading:?}"));
    let mut fields = Vec::new();
    let mut in_table = false;
    for line in doc[start..].lines().skip(1) {
        if line.starts_with('|') {
            in_table = true;
            let first = line.split('|').nth(1).unwrap_or("");
            for (i, part) in first.split('`').enumerate() {
                if i % 2 == 1 {
                    fields.push(part.trim_end_matches("[]").to_string());
                }
            }
        } else if in_table || line.starts_with('#') {
            break;
        }
    }
    assert!(!fields.is_empty(), "no field table under {heading:?}");
    fields
}

fn apply_examples(c: &Cluster) {
    let dir = root().join("examples/operator");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/operator")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    // Secrets first: the sinks reference them.
    files.sort_by_key(|p| !p.ends_with("secrets.yaml"));
    assert!(files.len() >= 6, "examples/operator has {files:?}");
    for f in files {
        c.kubectl_ok(
            &c.admin,
            &["apply", "--server-side", "-f", &f.to_string_lossy()],
        );
    }
}

fn explain(c: &Cluster, path: &str) -> String {
    c.kubectl_ok(&c.admin, &["explain", path])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_yaml_applies_server_side_crds_establish_examples_apply_and_explain_shows_the_documented_fields()
 {
    let Some(bins) = bins() else { return };
    let _one = exclusive().await;
    let c = Cluster::start(
        bins,
        Options {
            controller_manager: true,
            ..Default::default()
        },
    )
    .await;

    install(&c).await;
    // Applying again changes nothing and conflicts with nothing (the operator's field manager
    // never touches these objects).
    let again = c.kubectl_ok(
        &c.admin,
        &[
            "apply",
            "--server-side",
            "-f",
            &root().join("deploy/install.yaml").to_string_lossy(),
        ],
    );
    assert!(
        again.lines().all(|l| l.ends_with("serverside-applied")),
        "{again}"
    );

    // The operator's pods are created in the restricted namespace: the pod template passes
    // Pod Security admission (they stay Pending: no scheduler, no kubelet).
    let pods: Api<Pod> = Api::namespaced(c.client(&c.admin).await, "kaudit-system");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=kaudit-operator"))
            .await
            .expect("list pods")
            .items
            .len();
        if n == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the operator's 2 pods were never created: {}",
            c.kubectl_ok(
                &c.admin,
                &[
                    "get",
                    "replicasets,events",
                    "-n",
                    "kaudit-system",
                    "-o",
                    "wide"
                ]
            )
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every example applies (the namespace of the team examples first).
    c.kubectl_ok(&c.admin, &["create", "namespace", "payments"]);
    apply_examples(&c);
    let listed = c.kubectl_ok(&c.admin, &["get", "kaudit", "-A", "-o", "name"]);
    for (plural, _) in KINDS {
        assert!(
            listed.contains(&format!("{}.kaudit.io/", &plural[..plural.len() - 1])),
            "no {plural} in `kubectl get kaudit` (the category):\n{listed}"
        );
    }

    // kubectl explain shows every field docs/operator.md documents, with the CRD's text.
    let tables = [
        ("falcorule", "### FalcoRule fields"),
        ("falcorulesfile", "## Cluster rules files"),
        ("alertsink", "## Subscribe a team to alerts"),
        ("clusteralertsink", "## Subscribe a team to alerts"),
        ("kauditdeployment", "## The deployment"),
    ];
    for (kind, heading) in tables {
        for field in documented_fields(heading) {
            let out = explain(&c, &format!("{kind}.spec.{field}"));
            let leaf = field.rsplit('.').next().unwrap_or(&field);
            assert!(
                out.contains(&format!("FIELD: {leaf} "))
                    || out.contains(&format!("FIELD:    {leaf} ")),
                "kubectl explain {kind}.spec.{field}:\n{out}"
            );
        }
    }
    let rule = explain(&c, "falcorule.spec.condition");
    assert!(rule.contains("standalone Falco condition"), "{rule}");
    let status = explain(&c, "falcorule.status.conditions");
    assert!(status.contains("lastTransitionTime"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kaudit_yaml_passes_server_side_dry_run() {
    let Some(bins) = bins() else { return };
    let _one = exclusive().await;
    let c = Cluster::start(bins, Options::default()).await;
    let file = root().join("deploy/kaudit.yaml");
    let file = file.to_string_lossy();
    // A dry run persists nothing, so the namespace the file creates does not exist for the
    // objects after it: the apiserver answers NotFound. That is the dry run's limit, not the
    // file's; with the namespace present every object must pass validation and admission.
    let first = c.kubectl(
        &c.admin,
        &["apply", "--server-side", "--dry-run=server", "-f", &file],
    );
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        first.status.success() || stderr.contains("namespaces \"kaudit\" not found"),
        "{stderr}"
    );
    // The namespace for real (with its Pod Security label), then the whole file: the
    // StatefulSet's pod template must meet `restricted` without a warning.
    let ns_doc = std::fs::read_to_string(root().join("deploy/kaudit.yaml"))
        .expect("kaudit.yaml")
        .split("\n---\n")
        .find(|d| d.contains("kind: Namespace"))
        .expect("a Namespace in kaudit.yaml")
        .to_string();
    c.kubectl_in_ok(
        &c.admin,
        &["apply", "--server-side", "-f", "-"],
        ns_doc.as_bytes(),
    );
    let run = c.kubectl(
        &c.admin,
        &["apply", "--server-side", "--dry-run=server", "-f", &file],
    );
    let warnings = String::from_utf8_lossy(&run.stderr).into_owned();
    let out = super::cluster::check("dry run of deploy/kaudit.yaml", run);
    assert!(!warnings.contains("PodSecurity"), "{warnings}");
    for obj in [
        "namespace/kaudit",
        "configmap/kaudit",
        "statefulset.apps/kaudit",
        "service/kaudit-headless",
        "poddisruptionbudget.policy/kaudit",
        "service/kaudit",
    ] {
        assert!(
            out.contains(&format!("{obj} serverside-applied (server dry run)")),
            "{obj} missing:\n{out}"
        );
    }
}
