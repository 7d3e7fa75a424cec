//! The `mqtt` sink against Mosquitto: QoS 1 publishes on templated topics, as a subscriber
//! receives them; user and password from a file; TLS with a client certificate; and a broker
//! stopped and restarted (persistence, a persistent subscriber session) losing nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use super::servers::{MQTT_USER, Mosquitto, SyslogTls, mosquitto_bin};
use super::{Destination, outage_then_restart};
use crate::support::{PATIENCE, alert, config};

/// A subscriber to `falco/#` with a persistent session, recording (topic, qos, payload).
struct Observer {
    got: Arc<Mutex<Vec<(String, QoS, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    async fn start(port: u16) -> Observer {
        let mut o = MqttOptions::new(format!("observer-{port}"), "127.0.0.1", port);
        o.set_clean_session(false)
            .set_credentials(MQTT_USER.0, MQTT_USER.1)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(o, 100);
        client.subscribe("falco/#", QoS::AtLeastOnce).await.unwrap();
        let got: Arc<Mutex<Vec<(String, QoS, Value)>>> = Arc::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut tx = Some(tx);
        let g = got.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(t) = tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        g.lock().unwrap().push((p.topic.clone(), p.qos, v));
                    }
                    Ok(_) => {}
                    // The broker is down: the next poll reconnects.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(PATIENCE, rx).await.unwrap().unwrap();
        Observer { got, task }
    }

    fn uuids(&self) -> HashSet<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, _, v)| v["uuid"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn password_file(dir: &std::path::Path) -> String {
    let p = dir.join("mqtt-password");
    std::fs::write(&p, format!("{}\n", MQTT_USER.1)).unwrap();
    p.display().to_string()
}

async fn two_alerts_arrive(observer: &Observer, sink_yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), sink_yaml);
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Terminal shell in container", Priority::Critical);
    let b = alert("Delete Namespace", Priority::Notice);
    r.sender().send(a.clone()).await.unwrap();
    r.sender().send(b.clone()).await.unwrap();
    let want: HashSet<String> = [a.uuid.to_string(), b.uuid.to_string()].into();
    crate::support::wait_until("both alerts", || want.is_subset(&observer.uuids())).await;
    r.shutdown().await;
    let got = observer.got.lock().unwrap().clone();
    let (topic, qos, body) = got
        .iter()
        .find(|(_, _, v)| v["uuid"] == a.uuid.to_string())
        .unwrap();
    assert_eq!(topic, "falco/critical/terminal_shell_in_container");
    assert_eq!(*qos, QoS::AtLeastOnce);
    assert_eq!(body, &serde_json::to_value(&a).unwrap());
    assert!(
        got.iter()
            .any(|(t, _, _)| t == "falco/notice/delete_namespace")
    );
}

#[tokio::test]
async fn qos1_publishes_on_templated_topics() {
    let Some(bin) = mosquitto_bin() else { return };
    let broker = Mosquitto::start(bin, None).await;
    let observer = Observer::start(broker.port).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: mqtt\n    type: mqtt\n    url: mqtt://127.0.0.1:{}\n    username: {}\n    password_file: {}\n",
        broker.port,
        MQTT_USER.0,
        password_file(dir.path())
    );
    two_alerts_arrive(&observer, &yaml).await;
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    let Some(bin) = mosquitto_bin() else { return };
    let pki = tempfile::tempdir().unwrap();
    let [ca, cert, key, client, client_key] = crate::support::write_pki(pki.path());
    let broker = Mosquitto::start(
        bin,
        Some(SyslogTls {
            ca: ca.clone(),
            cert,
            key,
        }),
    )
    .await;
    let observer = Observer::start(broker.port).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: mqtt\n    type: mqtt\n    url: mqtts://127.0.0.1:{}\n    username: {}\n    password_file: {}\n    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        broker.tls_port,
        MQTT_USER.0,
        password_file(dir.path()),
        ca.display(),
        client.display(),
        client_key.display()
    );
    two_alerts_arrive(&observer, &yaml).await;
}

struct Outage {
    broker: Mosquitto,
    observer: Observer,
}

impl Destination for Outage {
    async fn stop(&mut self) {
        self.broker.stop();
    }
    async fn start(&mut self) {
        self.broker.restart().await;
    }
    async fn received(&mut self) -> HashSet<String> {
        self.observer.uuids()
    }
}

#[tokio::test]
async fn an_outage_and_a_restart_lose_nothing() {
    let Some(bin) = mosquitto_bin() else { return };
    let broker = Mosquitto::start(bin, None).await;
    let observer = Observer::start(broker.port).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: mqtt\n    type: mqtt\n    url: mqtt://127.0.0.1:{}\n    username: {}\n    password_file: {}\n    timeout_ms: 1000\n",
        broker.port,
        MQTT_USER.0,
        password_file(dir.path())
    );
    let mut d = Outage { broker, observer };
    outage_then_restart(dir.path(), &yaml, "mqtt", &mut d).await;
}
