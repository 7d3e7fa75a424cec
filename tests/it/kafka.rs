//! The `kafka` sink against a real Kafka-protocol broker (tansu, memory storage): keys, headers
//! and bodies as consumed back; a broker killed mid-stream and restarted loses no alert; a
//! missing topic is a permanent error that names it.

use std::collections::HashSet;

use kaudit::alert::{Alert, Priority};
use kaudit::metrics::Metrics;
use kaudit::router;

use crate::brokers::{Tansu, consume_until, consumer, tansu_bin, uuids};
use crate::support::{alert, config, json_lines, metric, wait_until};

fn with_target(rule: &str, name: &str) -> Alert {
    let mut a = alert(rule, Priority::Warning);
    a.output_fields
        .insert("ka.target.name".into(), name.to_string().into());
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_headers_and_bodies() {
    let Some(bin) = tansu_bin() else { return };
    let broker = Tansu::start(bin).await;
    broker.create_topic("falco").await;
    broker.create_topic("by-name").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: kafka-ns\n    type: kafka\n    brokers: [\"{b}\"]\n    topic: falco\n    key: namespace\n    compression: gzip\n    timeout_ms: 10000\n  - name: kafka-name\n    type: kafka\n    brokers: [\"{b}\"]\n    topic: by-name\n    key: {{field: ka.target.name}}\n    compression: lz4\n    timeout_ms: 10000\n",
            b = broker.bootstrap()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let alerts = vec![
        with_target("Attach/Exec Pod", "web-1"),
        with_target("Create Privileged Pod", "db-0"),
        with_target("ClusterRole With Wildcard Created", "admin"),
    ];
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    let by_ns = consume_until(
        &consumer(&broker.bootstrap(), "falco"),
        "topic falco",
        |m| m.len() >= 3,
    )
    .await;
    let by_name = consume_until(
        &consumer(&broker.bootstrap(), "by-name"),
        "topic by-name",
        |m| m.len() >= 3,
    )
    .await;
    r.shutdown().await;
    for (got, a) in by_ns.iter().zip(&alerts) {
        assert_eq!(got.body, serde_json::to_value(a).unwrap());
        assert_eq!(got.key.as_deref(), Some("kube-system"));
        assert_eq!(got.header("uuid"), Some(a.uuid.to_string().as_str()));
        assert_eq!(got.header("rule"), Some(a.rule.as_str()));
        assert_eq!(got.header("priority"), Some("Warning"));
        assert_eq!(got.header("source"), Some("k8s_audit"));
    }
    let keys: Vec<Option<&str>> = by_name.iter().map(|m| m.key.as_deref()).collect();
    assert_eq!(keys, vec![Some("web-1"), Some("db-0"), Some("admin")]);
    for (got, a) in by_name.iter().zip(&alerts) {
        assert_eq!(got.body, serde_json::to_value(a).unwrap());
    }
}

/// tansu's memory storage forgets everything on restart, so what the consumer saw before the
/// kill and what it reads after the restart together must hold every alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_stream_loses_nothing() {
    let Some(bin) = tansu_bin() else { return };
    let mut broker = Tansu::start(bin).await;
    broker.create_topic("falco").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: kafka\n    type: kafka\n    brokers: [\"{}\"]\n    topic: falco\n    timeout_ms: 3000\n",
            broker.bootstrap()
        ),
    );
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let mut sent = HashSet::new();
    for i in 0..20 {
        let a = alert(&format!("Before {i}"), Priority::Notice);
        sent.insert(a.uuid.to_string());
        r.sender().send(a).await.unwrap();
    }
    let before = consume_until(
        &consumer(&broker.bootstrap(), "falco"),
        "the first 20",
        |m| uuids(m).len() >= 20,
    )
    .await;
    let seen_before = uuids(&before);
    assert_eq!(seen_before, sent);

    broker.kill();
    let mut during = HashSet::new();
    for i in 0..20 {
        let a = alert(&format!("During {i}"), Priority::Notice);
        during.insert(a.uuid.to_string());
        r.sender().send(a).await.unwrap();
    }
    // The sink fails (the broker is gone) and the alerts wait in the spool.
    wait_until("a failed delivery while the broker is down", || {
        metric(&metrics.encode(), "kaudit_sink_failed_total", "kafka") > 0.0
    })
    .await;
    assert!(r.spooled("kafka").unwrap_or(0) > 0);

    broker.restart().await;
    broker.create_topic("falco").await;
    let mut after_sent = during.clone();
    for i in 0..10 {
        let a = alert(&format!("After {i}"), Priority::Notice);
        after_sent.insert(a.uuid.to_string());
        r.sender().send(a).await.unwrap();
    }
    let after = consume_until(
        &consumer(&broker.bootstrap(), "falco"),
        "every alert sent during and after the outage",
        |m| after_sent.is_subset(&uuids(m)),
    )
    .await;
    wait_until("the spool to drain", || r.spooled("kafka") == Some(0)).await;
    r.shutdown().await;
    let mut all = seen_before;
    all.extend(uuids(&after));
    sent.extend(after_sent);
    assert_eq!(all, sent, "every alert arrived");
    assert!(json_lines(&dir.path().join("dead-letter/kafka.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_a_permanent_error_naming_it() {
    let Some(bin) = tansu_bin() else { return };
    let broker = Tansu::start(bin).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: kafka\n    type: kafka\n    brokers: [\"{}\"]\n    topic: no-such-topic\n    timeout_ms: 60000\n",
            broker.bootstrap()
        ),
    );
    let l = crate::support::refused_alert(&cfg, "kafka").await;
    let reason = l["reason"].as_str().unwrap();
    assert!(reason.contains("no-such-topic"), "{reason}");
    // Not created behind our back.
    let admin = broker.admin();
    let md = tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(Some("no-such-topic"), std::time::Duration::from_secs(5))
            .map(|m| {
                m.topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .count()
            })
    })
    .await
    .unwrap();
    assert_eq!(md.ok(), Some(0), "the topic was not auto-created");
}

/// Faults a real broker cannot easily stage, from librdkafka's mock cluster: passing produce
/// errors are retried until the message is stored; a topic the client may not write to is a
/// permanent error naming it.
#[tokio::test]
async fn mock_cluster_refusals_are_classified() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("falco", 1, 1).unwrap();
    mock.create_topic("denied", 1, 1).unwrap();
    mock.topic_error(
        "denied",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    )
    .unwrap();
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3],
    );
    let bootstrap = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: kafka\n    type: kafka\n    brokers: [\"{bootstrap}\"]\n    topic: falco\n    key: rule\n  - name: denied\n    type: kafka\n    brokers: [\"{bootstrap}\"]\n    topic: denied\n",
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Retried", Priority::Critical);
    r.sender().send(a.clone()).await.unwrap();
    let got = consume_until(&consumer(&bootstrap, "falco"), "the retried alert", |m| {
        !m.is_empty()
    })
    .await;
    assert_eq!(got[0].uuid(), a.uuid.to_string());
    assert_eq!(got[0].key.as_deref(), Some("Retried"));
    let dl = dir.path().join("dead-letter/denied.jsonl");
    wait_until("the dead letter", || !json_lines(&dl).is_empty()).await;
    r.shutdown().await;
    let l = &json_lines(&dl)[0];
    assert_eq!(l["alert"]["uuid"], a.uuid.to_string());
    let reason = l["reason"].as_str().unwrap();
    assert!(
        reason.contains("not allowed to write to topic \"denied\""),
        "{reason}"
    );
    assert!(json_lines(&dir.path().join("dead-letter/kafka.jsonl")).is_empty());
}
