//! The `pubsub` sink against Google's Pub/Sub emulator: data, standard and custom attributes,
//! ordering keys as pulled back from a subscription; a missing topic dead-lettered.

use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;

use crate::brokers::{PubsubEmulator, pubsub_data, pubsub_emulator_bin};
use crate::support::{alert, config};

#[tokio::test]
async fn data_attributes_and_ordering_keys() {
    let Some(bin) = pubsub_emulator_bin() else {
        return;
    };
    let emu = PubsubEmulator::start(bin).await;
    emu.topic_with_subscription("kaudit-test", "falco", "falco-sub")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: pubsub\n    type: pubsub\n    project: kaudit-test\n    topic: falco\n    emulator_host: {}\n    attributes:\n      cluster: prod-eu\n    ordering_key: \"{{field:ka.target.namespace}}\"\n",
            emu.host()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let alerts = [
        alert("Attach/Exec Pod", Priority::Notice),
        alert("Create Privileged Pod", Priority::Critical),
        alert("Delete Namespace", Priority::Warning),
    ];
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    let got = emu.pull("kaudit-test", "falco-sub", 3).await;
    r.shutdown().await;
    assert_eq!(got.len(), 3);
    for a in &alerts {
        let m = got
            .iter()
            .find(|m| m["attributes"]["uuid"] == a.uuid.to_string())
            .unwrap_or_else(|| panic!("alert {} not received: {got:?}", a.uuid));
        assert_eq!(pubsub_data(m), serde_json::to_value(a).unwrap());
        let attrs = m["attributes"].as_object().unwrap();
        assert_eq!(attrs.len(), 5, "{attrs:?}");
        assert_eq!(attrs["rule"], a.rule.as_str());
        assert_eq!(attrs["priority"], a.priority.as_str());
        assert_eq!(attrs["source"], "k8s_audit");
        assert_eq!(attrs["cluster"], "prod-eu");
        assert_eq!(m["orderingKey"], "kube_system");
    }
}

#[tokio::test]
async fn a_missing_topic_is_dead_lettered() {
    let Some(bin) = pubsub_emulator_bin() else {
        return;
    };
    let emu = PubsubEmulator::start(bin).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: pubsub\n    type: pubsub\n    project: kaudit-test\n    topic: nope\n    emulator_host: {}\n",
            emu.host()
        ),
    );
    let l = &crate::support::refused_alert(&cfg, "pubsub").await;
    let reason = l["reason"].as_str().unwrap();
    assert!(
        reason.contains("topic not found") && reason.contains("nope"),
        "{reason}"
    );
}
