//! The `nats` sink against a real nats-server: subjects and bodies, JetStream acks, and a
//! server killed mid-stream and restarted on the same port and store.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use kaudit::alert::{Alert, Priority};
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::Value;

use crate::support::{NatsServer, PATIENCE, alert, config, nats_server_bin, wait_until};

async fn create_stream(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(jetstream::stream::Config {
        name: "FALCO".into(),
        subjects: vec!["falco.>".into()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    js
}

/// Every message of stream FALCO: (subject, Nats-Msg-Id, body).
async fn stream_contents(js: &jetstream::Context) -> Vec<(String, String, Value)> {
    let mut stream = js.get_stream("FALCO").await.unwrap();
    let info = stream.info().await.unwrap().clone();
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let id = m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.to_string())
                .unwrap_or_default();
            out.push((
                m.subject.to_string(),
                id,
                serde_json::from_slice(&m.payload).unwrap(),
            ));
        }
    }
    out
}

async fn stream_len(js: &jetstream::Context) -> u64 {
    match js.get_stream("FALCO").await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn core_subjects_and_bodies() {
    let Some(bin) = nats_server_bin() else { return };
    let server = NatsServer::start(bin);
    let sub_client = async_nats::connect(server.url()).await.unwrap();
    let mut falco = sub_client.subscribe("falco.>").await.unwrap();
    let mut custom = sub_client.subscribe("custom.>").await.unwrap();
    sub_client.flush().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: nats-default\n    type: nats\n    servers: [\"{url}\"]\n  - name: nats-custom\n    type: nats\n    servers: [\"{url}\"]\n    min_priority: critical\n    subject: \"custom.{{field:ka.target.namespace}}.{{source}}.{{field:missing}}\"\n",
            url = server.url()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let alerts: Vec<Alert> = vec![
        alert("Attach/Exec Pod", Priority::Notice),
        alert("Create Privileged Pod (K8s)", Priority::Critical),
        alert("ClusterRole With Wildcard Created", Priority::Informational),
    ];
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = tokio::time::timeout(PATIENCE, falco.next())
            .await
            .expect("messages on falco.>")
            .expect("subscription open");
        got.push(m);
    }
    let subjects: Vec<String> = got.iter().map(|m| m.subject.to_string()).collect();
    assert_eq!(
        subjects,
        vec![
            "falco.notice.attach_exec_pod",
            "falco.critical.create_privileged_pod_k8s",
            "falco.informational.clusterrole_with_wildcard_created",
        ]
    );
    for (m, a) in got.iter().zip(&alerts) {
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body, serde_json::to_value(a).unwrap());
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string());
        assert_eq!(id, Some(a.uuid.to_string()));
    }
    let m = tokio::time::timeout(PATIENCE, custom.next())
        .await
        .expect("a message on custom.>")
        .expect("subscription open");
    assert_eq!(m.subject.as_str(), "custom.kube_system.k8s_audit.unknown");
    let body: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(body["uuid"], alerts[1].uuid.to_string());
    r.shutdown().await;
    // Only the Critical alert went to the second sink.
    let extra = tokio::time::timeout(Duration::from_millis(300), custom.next()).await;
    assert!(
        extra.is_err(),
        "an alert below min_priority reached the custom sink"
    );
}

#[tokio::test]
async fn jetstream_acks_and_stream_contents() {
    let Some(bin) = nats_server_bin() else { return };
    let server = NatsServer::start(bin);
    let js = create_stream(&server.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: js\n    type: nats\n    servers: [\"{}\"]\n    jetstream: true\n",
            server.url()
        ),
    );
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let alerts: Vec<Alert> = (0..10)
        .map(|i| alert(&format!("Rule {i}"), Priority::Warning))
        .collect();
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    r.shutdown().await;
    // Shutdown returned after the acks: the stream holds everything, in order.
    let contents = stream_contents(&js).await;
    assert_eq!(contents.len(), 10);
    for ((subject, id, body), a) in contents.iter().zip(&alerts) {
        assert_eq!(
            subject,
            &format!("falco.warning.{}", kaudit::sinks::template::slug(&a.rule))
        );
        assert_eq!(id, &a.uuid.to_string());
        assert_eq!(body, &serde_json::to_value(a).unwrap());
    }
    let text = metrics.encode();
    assert_eq!(
        crate::support::metric(&text, "kaudit_sink_sent_total", "js"),
        10.0
    );
}

#[tokio::test]
async fn server_killed_mid_stream_loses_nothing() {
    let Some(bin) = nats_server_bin() else { return };
    let mut server = NatsServer::start(bin);
    let js = create_stream(&server.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: js\n    type: nats\n    servers: [\"{}\"]\n    jetstream: true\n    timeout_ms: 1000\n",
            server.url()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let alerts: Vec<Alert> = (0..60)
        .map(|i| alert(&format!("Rule {i}"), Priority::Error))
        .collect();
    for a in &alerts[..30] {
        r.sender().send(a.clone()).await.unwrap();
    }
    let mut first = 0;
    for _ in 0..2000 {
        first = stream_len(&js).await;
        if first > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(first > 0, "nothing reached the stream before the kill");
    server.kill();
    for a in &alerts[30..] {
        r.sender().send(a.clone()).await.unwrap();
    }
    server.restart();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let want: HashSet<String> = alerts.iter().map(|a| a.uuid.to_string()).collect();
    let mut ids = Vec::new();
    let start = std::time::Instant::now();
    loop {
        if stream_len(&js).await >= 60 {
            ids = stream_contents(&js)
                .await
                .into_iter()
                .map(|(_, id, _)| id)
                .collect();
            let have: HashSet<String> = ids.iter().cloned().collect();
            if have == want {
                break;
            }
        }
        assert!(
            start.elapsed() < PATIENCE,
            "stream has {} of 60 after restart",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ids.len(), 60, "duplicates were not removed by Nats-Msg-Id");
    wait_until("the spool to empty", || r.spooled("js") == Some(0)).await;
    r.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_and_token_from_a_file() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let [ca, srv, srv_key, cli, cli_key] = crate::support::write_pki(dir.path());
    let s = |p: &std::path::Path| p.display().to_string();
    let server = NatsServer::start_with(
        bin,
        vec![
            "--tls".into(),
            "--tlscert".into(),
            s(&srv),
            "--tlskey".into(),
            s(&srv_key),
            "--tlscacert".into(),
            s(&ca),
            "--tlsverify".into(),
            "--auth".into(),
            "t0ken-42".into(),
        ],
    );
    crate::support::install_crypto_provider();
    let sub_client = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(ca.clone())
        .add_client_certificate(cli.clone(), cli_key.clone())
        .token("t0ken-42".into())
        .connect(server.url())
        .await
        .unwrap();
    let mut sub = sub_client.subscribe("falco.>").await.unwrap();
    sub_client.flush().await.unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0ken-42\n").unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: secure\n    type: nats\n    servers: [\"{}\"]\n    token_file: {}\n    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
            server.url(),
            s(&token_file),
            s(&ca),
            s(&cli),
            s(&cli_key)
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Secure Rule", Priority::Critical);
    r.sender().send(a.clone()).await.unwrap();
    let m = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .expect("a message over mTLS")
        .expect("subscription open");
    assert_eq!(m.subject.as_str(), "falco.critical.secure_rule");
    let body: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(body["uuid"], a.uuid.to_string());
    r.shutdown().await;
}
