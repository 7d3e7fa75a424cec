//! The `sns` sink against moto's server, with a real SQS queue subscribed to the topic (raw
//! delivery off, so the queue gets SNS's envelope with the message attributes): the output
//! with every attribute falcosidekick sends; the alert JSON with `raw_json: true`; a missing
//! topic dead-lettered.

use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::Value;

use crate::brokers::{Moto, moto_bin};
use crate::support::{alert, config};

fn attr<'a>(envelope: &'a Value, name: &str) -> Option<&'a str> {
    let a = &envelope["MessageAttributes"][name];
    assert!(
        a.is_null() || a["Type"] == "String",
        "attribute {name} is a String: {a}"
    );
    a["Value"].as_str()
}

/// Static credentials from files, as a mounted Secret gives them (moto accepts any).
fn creds(dir: &std::path::Path) -> String {
    std::fs::write(dir.join("id"), "AKIDTEST\n").unwrap();
    std::fs::write(dir.join("secret"), "c2VjcmV0\n").unwrap();
    format!(
        "    access_key_id_file: {}\n    secret_access_key_file: {}\n",
        dir.join("id").display(),
        dir.join("secret").display()
    )
}

#[tokio::test]
async fn output_with_falcosidekick_attributes() {
    let Some(bin) = moto_bin() else { return };
    let moto = Moto::start(bin).await;
    let (arn, queue) = moto.topic_with_queue("falco").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: sns\n    type: sns\n    topic_arn: {arn}\n    endpoint: {}\n{}",
            moto.url(),
            creds(dir.path())
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let mut a = alert("Attach/Exec Pod", Priority::Notice);
    a.tags = vec!["k8s".into(), "mitre_execution".into()];
    a.output_fields
        .insert("ka.req.pod.containers.image".into(), Value::Null);
    a.output_fields.insert("ka.resp.code".into(), 101.into());
    r.sender().send(a.clone()).await.unwrap();
    let got = moto.receive(&queue, 1).await;
    r.shutdown().await;
    let env = &got[0];
    assert_eq!(env["Type"], "Notification");
    assert_eq!(env["TopicArn"], arn.as_str());
    assert_eq!(env["Message"], a.output.as_str());
    assert_eq!(attr(env, "priority"), Some("Notice"));
    assert_eq!(attr(env, "rule"), Some("Attach/Exec Pod"));
    assert_eq!(attr(env, "source"), Some("k8s_audit"));
    assert_eq!(attr(env, "tags"), Some("k8s,mitre_execution"));
    assert_eq!(attr(env, "hostname"), Some("kaudit-test"));
    assert_eq!(attr(env, "uuid"), Some(a.uuid.to_string().as_str()));
    assert_eq!(attr(env, "ka.target.namespace"), Some("kube-system"));
    assert_eq!(attr(env, "ka.target.resource"), Some("pods"));
    assert_eq!(attr(env, "ka.target.name"), Some("nginx"));
    assert_eq!(attr(env, "ka.user.name"), Some("alice"));
    // 10 attributes at most: the non-string field after the tenth is left out, nulls skipped.
    let n = env["MessageAttributes"].as_object().map(|m| m.len());
    assert_eq!(n, Some(10), "{env}");
    assert_eq!(attr(env, "ka.req.pod.containers.image"), None);
}

#[tokio::test]
async fn raw_json_sends_the_alert() {
    let Some(bin) = moto_bin() else { return };
    let moto = Moto::start(bin).await;
    let (arn, queue) = moto.topic_with_queue("falco-raw").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: sns-raw\n    type: sns\n    topic_arn: {arn}\n    endpoint: {}\n    raw_json: true\n{}",
            moto.url(),
            creds(dir.path())
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let alerts = [
        alert("Create Privileged Pod", Priority::Critical),
        alert("Delete Namespace", Priority::Warning),
    ];
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    let got = moto.receive(&queue, 2).await;
    r.shutdown().await;
    let mut bodies: Vec<Value> = got
        .iter()
        .map(|e| serde_json::from_str(e["Message"].as_str().unwrap()).unwrap())
        .collect();
    bodies.sort_by_key(|b| b["rule"].as_str().map(str::to_string));
    assert_eq!(bodies[0], serde_json::to_value(&alerts[0]).unwrap());
    assert_eq!(bodies[1], serde_json::to_value(&alerts[1]).unwrap());
    assert!(got.iter().all(|e| {
        e["MessageAttributes"]
            .as_object()
            .is_none_or(|m| m.is_empty())
    }));
}

#[tokio::test]
async fn a_missing_topic_is_dead_lettered() {
    let Some(bin) = moto_bin() else { return };
    let moto = Moto::start(bin).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: sns\n    type: sns\n    topic_arn: arn:aws:sns:us-east-1:123456789012:nope\n    endpoint: {}\n{}",
            moto.url(),
            creds(dir.path())
        ),
    );
    let l = &crate::support::refused_alert(&cfg, "sns").await;
    assert!(l["reason"].as_str().unwrap().contains("NotFound"), "{l}");
}
