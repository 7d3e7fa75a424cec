//! The `gke` source against Google's Pub/Sub emulator: Cloud Logging entries (AuditLog
//! protoPayloads) published to a topic, converted, detected and delivered; a message is acked
//! only after the inbox has its event, so one pulled while the inbox refuses is redelivered.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{alert_lines, alerted, assert_exactly_once, start, wait_alerted};
use crate::brokers::{PubsubEmulator, pubsub_emulator_bin};
use crate::support::{PATIENCE, json_lines};

const PROJECT: &str = "kaudit-test";

/// A LogEntry as a Cloud Logging sink publishes it.
fn entry(id: &str, method: &str, resource: &str, status: Value) -> Value {
    json!({
        "insertId": id,
        "logName": format!("projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"),
        "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "prod", "location": "europe-west1", "project_id": PROJECT}},
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "receiveTimestamp": chrono::Utc::now().to_rfc3339(),
        "severity": "NOTICE",
        "labels": {"authorization.k8s.io/decision": "allow"},
        "operation": {"id": id, "producer": "k8s.io", "first": true, "last": true},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "k8s.io",
            "methodName": method,
            "resourceName": resource,
            "authenticationInfo": {"principalEmail": "alice@example.com"},
            "requestMetadata": {"callerIp": "10.0.0.7", "callerSuppliedUserAgent": "kubectl/v1.37.2"},
            "status": status
        }
    })
}

fn source(emu: &PubsubEmulator, sub: &str) -> String {
    format!(
        "  - name: gke\n    type: gke\n    subscription: projects/{PROJECT}/subscriptions/{sub}\n    emulator_host: {}\n",
        emu.host()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_become_events_and_are_acked_after_the_inbox() {
    let Some(bin) = pubsub_emulator_bin() else {
        return;
    };
    let emu = PubsubEmulator::start(bin).await;
    emu.topic_with_deadline(PROJECT, "k8s-audit", "k8s-audit-sub", 10)
        .await;
    let mut ids = BTreeSet::new();
    let mut msgs = Vec::new();
    for (id, method, resource, status) in [
        (
            "g1",
            "io.k8s.core.v1.pods.get",
            "core/v1/namespaces/default/pods/nginx",
            json!({}),
        ),
        (
            "g2",
            "io.k8s.core.v1.secrets.list",
            "core/v1/namespaces/kube-system/secrets",
            json!({"code": 0}),
        ),
        (
            "g3",
            "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
            "rbac.authorization.k8s.io/v1/clusterrolebindings/x",
            json!({"code": 7, "message": "forbidden"}),
        ),
        (
            "g4",
            "io.k8s.core.v1.pods.delete",
            "core/v1/namespaces/default/pods/nginx",
            json!({"code": 5}),
        ),
    ] {
        ids.insert(id.to_string());
        msgs.push(entry(id, method, resource, status));
    }
    // Not a Kubernetes audit entry: skipped, counted, acked.
    msgs.push(
        json!({"insertId": "x", "textPayload": "hello", "resource": {"type": "gce_instance"}}),
    );
    emu.publish(PROJECT, "k8s-audit", &msgs).await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &source(&emu, "k8s-audit-sub")).await;
    wait_alerted(dir.path(), &ids).await;
    // The response code is protoPayload.status's, not one guessed from the verb.
    let codes: Vec<(String, String)> = json_lines(&super::alerts_file(dir.path()))
        .iter()
        .map(|a| {
            (
                a["output_fields"]["ka.auditid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["output_fields"]["ka.response.code"].to_string(),
            )
        })
        .collect();
    for (id, code) in [("g1", "200"), ("g3", "403"), ("g4", "404")] {
        assert!(
            codes
                .iter()
                .any(|(i, c)| i == id && c.trim_matches('"') == code),
            "{id} should answer {code}: {codes:?}"
        );
    }
    let start_wait = std::time::Instant::now();
    while running
        .sources_view
        .get("gke")
        .and_then(|s| s.skipped.get("not_audit_log").copied())
        != Some(1)
    {
        assert!(
            start_wait.elapsed() < PATIENCE,
            "{:?}",
            running.sources_view.get("gke")
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    running.shutdown().await;
    assert!(
        emu.peek(PROJECT, "k8s-audit-sub").await.is_empty(),
        "everything was acked"
    );

    // The inbox refuses (full): messages are pulled but never acked, and come back.
    let late = [
        entry(
            "g5",
            "io.k8s.core.v1.pods.create",
            "core/v1/namespaces/default/pods/p",
            json!({}),
        ),
        entry(
            "g6",
            "io.k8s.core.v1.pods.exec.create",
            "core/v1/namespaces/default/pods/p/exec",
            json!({}),
        ),
    ];
    ids.extend(["g5".to_string(), "g6".to_string()]);
    emu.publish(PROJECT, "k8s-audit", &late).await;
    let full_dir = tempfile::tempdir().unwrap();
    let yaml =
        super::yaml(full_dir.path(), &source(&emu, "k8s-audit-sub")) + "inbox:\n  max_bytes: 1\n";
    let refusing = kaudit::pipeline::start(crate::support::config_from_yaml(&yaml))
        .await
        .unwrap();
    let start_wait = std::time::Instant::now();
    while !refusing
        .sources_view
        .get("gke")
        .and_then(|s| s.last_error)
        .is_some_and(|e| e.contains("inbox full"))
    {
        assert!(
            start_wait.elapsed() < PATIENCE,
            "{:?}",
            refusing.sources_view.get("gke")
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    refusing.shutdown().await;
    assert!(alerted(full_dir.path()).is_empty());
    // A normal kaudit gets them once the ack deadline (10 s) has passed.
    let running = start(dir.path(), &source(&emu, "k8s-audit-sub")).await;
    wait_alerted(dir.path(), &ids).await;
    running.shutdown().await;
    assert_exactly_once(dir.path(), &ids);
    assert_eq!(alert_lines(dir.path()), ids.len());
}
