//! The `rabbitmq` sink against one real RabbitMQ shared by the test run (it boots in seconds,
//! not milliseconds; the time is printed): persistent, confirmed messages with the alert's
//! uuid as message id and its headers, read back from a durable queue; AMQPS with a client
//! certificate; a message no queue takes dead-lettered; and an outage (the network to the
//! broker cut by a proxy) through a restart of kaudit losing nothing.

use std::collections::HashSet;

use kaudit::alert::Priority;
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::Value;

use super::servers::{Proxy, RABBIT_USER, Rabbit, rabbit};
use super::{Destination, outage_then_restart, start, wait_sent};
use crate::support::{alert, config, json_lines};

/// A fresh durable queue; returns its name.
async fn queue(r: &Rabbit) -> String {
    let name = format!("kaudit-{}", uuid::Uuid::new_v4().simple());
    let conn = r.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        ShortString::from(name.as_str()),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    name
}

/// Takes every message in `q` now (acknowledged as taken).
async fn drain(r: &Rabbit, q: &str) -> Vec<lapin::message::BasicGetMessage> {
    let conn = r.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(ShortString::from(q), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        out.push(m);
    }
    out
}

fn password_file(dir: &std::path::Path) -> String {
    let p = dir.join("rabbit-password");
    std::fs::write(&p, format!("{}\n", RABBIT_USER.1)).unwrap();
    p.display().to_string()
}

fn header(m: &lapin::message::BasicGetMessage, k: &str) -> Option<String> {
    match m.delivery.properties.headers().as_ref()?.inner().get(k)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        _ => None,
    }
}

async fn one_alert_arrives(r: &Rabbit, q: &str, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (router, m) = start(dir.path(), yaml).await;
    let a = alert("Attach/Exec Pod", Priority::Notice);
    router.sender().send(a.clone()).await.unwrap();
    wait_sent(&m, "rabbit", 1).await;
    router.shutdown().await;
    let got = drain(r, q).await;
    assert_eq!(got.len(), 1, "confirmed before the spool let it go");
    let m = &got[0];
    let body: Value = serde_json::from_slice(&m.delivery.data).unwrap();
    assert_eq!(body, serde_json::to_value(&a).unwrap());
    let p = &m.delivery.properties;
    assert_eq!(p.delivery_mode(), &Some(2), "persistent");
    assert_eq!(
        p.message_id().as_ref().map(|s| s.to_string()),
        Some(a.uuid.to_string())
    );
    assert_eq!(
        p.content_type().as_ref().map(|s| s.to_string()).as_deref(),
        Some("application/json")
    );
    assert_eq!(header(m, "rule").as_deref(), Some("Attach/Exec Pod"));
    assert_eq!(header(m, "priority").as_deref(), Some("Notice"));
    assert_eq!(header(m, "uuid"), Some(a.uuid.to_string()));
    assert!(json_lines(&dir.path().join("dead-letter/rabbit.jsonl")).is_empty());
}

#[tokio::test]
async fn confirmed_persistent_messages_with_headers() {
    let Some(r) = rabbit().await else { return };
    let q = queue(r).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: rabbit\n    type: rabbitmq\n    url: amqp://127.0.0.1:{}/%2f\n    routing_key: {q}\n    username: {}\n    password_file: {}\n",
        r.port,
        RABBIT_USER.0,
        password_file(dir.path())
    );
    one_alert_arrives(r, &q, &yaml).await;
}

#[tokio::test]
async fn amqps_with_a_client_certificate() {
    let Some(r) = rabbit().await else { return };
    let q = queue(r).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: rabbit\n    type: rabbitmq\n    url: amqps://127.0.0.1:{}/%2f\n    routing_key: {q}\n    username: {}\n    password_file: {}\n    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        r.tls_port,
        RABBIT_USER.0,
        password_file(dir.path()),
        r.ca.display(),
        r.client.0.display(),
        r.client.1.display()
    );
    one_alert_arrives(r, &q, &yaml).await;
}

#[tokio::test]
async fn an_unroutable_message_is_dead_lettered() {
    let Some(r) = rabbit().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: rabbit\n    type: rabbitmq\n    url: amqp://127.0.0.1:{}\n    routing_key: no-such-queue\n    username: {}\n    password_file: {}\n",
            r.port,
            RABBIT_USER.0,
            password_file(dir.path())
        ),
    );
    let l = crate::support::refused_alert(&cfg, "rabbit").await;
    assert!(l["reason"].as_str().unwrap().contains("unroutable"), "{l}");
}

struct Cut<'a> {
    rabbit: &'a Rabbit,
    queue: String,
    proxy: Proxy,
    seen: HashSet<String>,
}

impl Destination for Cut<'_> {
    async fn stop(&mut self) {
        self.proxy.cut();
    }
    async fn start(&mut self) {
        self.proxy.open().await;
    }
    async fn received(&mut self) -> HashSet<String> {
        for m in drain(self.rabbit, &self.queue).await {
            if let Some(u) = header(&m, "uuid") {
                self.seen.insert(u);
            }
        }
        self.seen.clone()
    }
}

#[tokio::test]
async fn an_outage_and_a_restart_lose_nothing() {
    let Some(r) = rabbit().await else { return };
    let q = queue(r).await;
    let proxy = Proxy::start(r.port).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: rabbit\n    type: rabbitmq\n    url: amqp://127.0.0.1:{}\n    routing_key: {q}\n    username: {}\n    password_file: {}\n    timeout_ms: 1000\n",
        proxy.port,
        RABBIT_USER.0,
        password_file(dir.path())
    );
    let mut d = Cut {
        rabbit: r,
        queue: q,
        proxy,
        seen: HashSet::new(),
    };
    outage_then_restart(dir.path(), &yaml, "rabbit", &mut d).await;
}
