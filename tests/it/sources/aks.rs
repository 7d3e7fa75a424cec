//! The `aks` source against tansu (a Kafka-protocol broker, as Event Hubs' Kafka endpoint is):
//! diagnostic-settings bodies produced to the hub's topic, consumed by a consumer group, offsets
//! committed after the inbox, non-audit records skipped without stopping the partition, and a
//! restart resuming at the committed offsets.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use super::{alert_lines, assert_exactly_once, event, start, wait_alerted};
use crate::brokers::{Tansu, tansu_bin};
use crate::support::PATIENCE;

const HUB: &str = "insights-logs-kube-audit";
const GROUP: &str = "kaudit-test";

/// One diagnostic-settings record of `category` whose `properties.log` is `log`.
fn record(category: &str, log: &str) -> Value {
    json!({
        "time": chrono::Utc::now().to_rfc3339(),
        "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD",
        "category": category,
        "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
        "properties": {"log": log, "stream": "stdout", "pod": "kube-apiserver-6d8f9c7b5-abcde"}
    })
}

fn audit(ids: &mut BTreeSet<String>, category: &str, id: &str) -> Value {
    ids.insert(id.to_string());
    record(category, &event(id).to_string())
}

async fn produce(bootstrap: &str, bodies: &[String]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for b in bodies {
        p.send(
            FutureRecord::<(), _>::to(HUB).payload(b),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
    }
}

/// The group's committed offset of partition 0.
fn committed(bootstrap: &str) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(HUB, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    match got.elements().first()?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

fn source(bootstrap: &str) -> String {
    format!(
        "  - name: aks\n    type: aks\n    event_hub: {HUB}\n    consumer_group: {GROUP}\n    brokers: [\"{bootstrap}\"]\n    start_at: beginning\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostic_records_offsets_after_the_inbox_and_resume() {
    let Some(bin) = tansu_bin() else { return };
    let broker = Tansu::start(bin).await;
    broker.create_topic(HUB).await;
    let bootstrap = broker.bootstrap();
    let mut ids = BTreeSet::new();
    let mut cut = event("cut").to_string();
    cut.truncate(100);
    let bodies = vec![
        json!({"records": [audit(&mut ids, "kube-audit", "k1"), audit(&mut ids, "kube-audit", "k2"), record("kube-apiserver", "I0301 10:00:00.000000 1 controller.go:1] klog text")]}).to_string(),
        "this body is not JSON".to_string(),
        json!({"records": [audit(&mut ids, "kube-audit-admin", "k3"), record("kube-audit", &cut)]}).to_string(),
    ];
    produce(&bootstrap, &bodies).await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &source(&bootstrap)).await;
    wait_alerted(dir.path(), &ids).await;
    // Offsets are committed after the inbox took the batch: all three messages.
    let t = std::time::Instant::now();
    while committed(&bootstrap) != Some(3) {
        assert!(
            t.elapsed() < PATIENCE,
            "committed offset: {:?}",
            committed(&bootstrap)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = running.sources_view.get("aks").expect("stats");
    assert_eq!(stats.skipped.get("other_category"), Some(&1), "{stats:?}");
    // `kaudit sources check`: the hub's partitions and the group's committed offsets.
    let v = super::check(dir.path(), &source(&bootstrap)).await;
    let ok = v[0].result.clone().unwrap();
    assert!(ok.contains("1 partitions") && ok.contains("p0@3"), "{ok}");
    assert_eq!(
        stats.skipped.get("malformed"),
        Some(&2),
        "the body and the cut record: {stats:?}"
    );
    running.shutdown().await;

    // Produced while kaudit is down; the restart resumes at offset 3.
    produce(
        &bootstrap,
        &[json!({"records": [audit(&mut ids, "kube-audit", "k4"), audit(&mut ids, "kube-audit", "k5")]}).to_string()],
    )
    .await;
    let running = start(dir.path(), &source(&bootstrap)).await;
    wait_alerted(dir.path(), &ids).await;
    let stats = running.sources_view.get("aks").expect("stats");
    running.shutdown().await;
    assert_exactly_once(dir.path(), &ids);
    assert_eq!(alert_lines(dir.path()), ids.len(), "nothing read twice");
    assert_eq!(stats.events_read, 2, "{stats:?}");
}
