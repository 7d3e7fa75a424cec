//! The `syslog` sink against rsyslog: RFC 5424 messages over TCP, TLS with a client
//! certificate (octet-counted framing both) and UDP, parsed by rsyslog field by field; and an
//! outage with a restart that loses nothing.

use std::collections::HashSet;

use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::Value;

use super::servers::{Rsyslog, SyslogTls, rsyslogd_bin};
use super::{Destination, outage_then_restart};
use crate::support::{PATIENCE, alert, config, write_pki};

async fn wait_messages(r: &Rsyslog, n: usize) -> Vec<Vec<String>> {
    let start = std::time::Instant::now();
    loop {
        let m = r.messages();
        if m.len() >= n {
            return m;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "rsyslog wrote {} of {n}",
            m.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// Sends two alerts through a sink of `yaml` and checks what rsyslog parsed.
async fn two_alerts_parsed(r: &Rsyslog, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), yaml);
    let router = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let mut a = alert("Terminal shell in container", Priority::Critical);
    a.rule = "Say \"hi\" [now]".into();
    let b = alert("Delete Namespace", Priority::Informational);
    router.sender().send(a.clone()).await.unwrap();
    router.sender().send(b.clone()).await.unwrap();
    let got = wait_messages(r, 2).await;
    router.shutdown().await;
    let by_uuid = |u: &str| {
        got.iter()
            .find(|m| m[7].contains(u))
            .unwrap_or_else(|| panic!("no message for {u}: {got:?}"))
            .clone()
    };
    let m = by_uuid(&a.uuid.to_string());
    // local0 (16) * 8 + critical (2)
    assert_eq!(m[0], "130", "{m:?}");
    assert_eq!(m[1], "1", "parsed as RFC 5424: {m:?}");
    assert_eq!(m[3], "kaudit-test");
    assert_eq!(m[4], "kaudit");
    assert_eq!(m[5], "-");
    assert_eq!(m[6], "falco");
    assert!(m[7].starts_with("[kaudit@32473 "), "{m:?}");
    assert!(m[7].contains(r#"rule="Say \"hi\" [now\]""#), "{m:?}");
    assert!(m[7].contains(r#"priority="Critical""#) && m[7].contains(r#"namespace="kube-system""#));
    let body: Value = serde_json::from_str(m[8].trim()).expect("MSG is the alert JSON");
    assert_eq!(body, serde_json::to_value(&a).unwrap());
    let m = by_uuid(&b.uuid.to_string());
    assert_eq!(m[0], "134", "local0 + informational: {m:?}");
    let t = chrono::DateTime::parse_from_rfc3339(&m[2]).expect("an RFC 3339 timestamp");
    assert_eq!(t.timestamp_micros(), b.time.timestamp_micros());
}

#[tokio::test]
async fn tcp_messages_are_rfc5424() {
    let Some(bin) = rsyslogd_bin() else { return };
    let r = Rsyslog::start(bin, None).await;
    let yaml = format!(
        "  - name: syslog\n    type: syslog\n    address: 127.0.0.1:{}\n",
        r.tcp
    );
    two_alerts_parsed(&r, &yaml).await;
}

#[tokio::test]
async fn udp_messages_are_rfc5424() {
    let Some(bin) = rsyslogd_bin() else { return };
    let r = Rsyslog::start(bin, None).await;
    let yaml = format!(
        "  - name: syslog\n    type: syslog\n    protocol: udp\n    address: 127.0.0.1:{}\n",
        r.udp
    );
    two_alerts_parsed(&r, &yaml).await;
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    let Some(bin) = rsyslogd_bin() else { return };
    let pki = tempfile::tempdir().unwrap();
    let [ca, cert, key, client, client_key] = write_pki(pki.path());
    let r = Rsyslog::start(
        bin,
        Some(SyslogTls {
            ca: ca.clone(),
            cert,
            key,
        }),
    )
    .await;
    let yaml = format!(
        "  - name: syslog\n    type: syslog\n    protocol: tls\n    address: 127.0.0.1:{}\n    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        r.tcp,
        ca.display(),
        client.display(),
        client_key.display()
    );
    two_alerts_parsed(&r, &yaml).await;
}

impl Destination for Rsyslog {
    async fn stop(&mut self) {
        self.kill();
    }
    async fn start(&mut self) {
        self.restart().await;
    }
    async fn received(&mut self) -> HashSet<String> {
        self.messages()
            .iter()
            .filter_map(|m| serde_json::from_str::<Value>(m.get(8)?.trim()).ok())
            .filter_map(|v| v["uuid"].as_str().map(str::to_string))
            .collect()
    }
}

#[tokio::test]
async fn an_outage_and_a_restart_lose_nothing() {
    let Some(bin) = rsyslogd_bin() else { return };
    let mut r = Rsyslog::start(bin, None).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: syslog\n    type: syslog\n    address: 127.0.0.1:{}\n    timeout_ms: 1000\n",
        r.tcp
    );
    outage_then_restart(dir.path(), &yaml, "syslog", &mut r).await;
}
