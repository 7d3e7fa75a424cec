//! The `alertmanager` sink against real Prometheus Alertmanagers (Debian's
//! `prometheus-alertmanager`), started on ephemeral ports: labels, annotations and `endsAt` as
//! Alertmanager stores them, every HA instance fed, an outage and a restart losing nothing, and
//! the test alert.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kaudit::alert::{Alert, Priority};
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::Value;

use crate::support::{PATIENCE, alert, config, free_port, json_lines, metric, wait_until};

/// The Alertmanager binary: under CI it must be there; elsewhere the test is skipped.
fn alertmanager_bin() -> Option<PathBuf> {
    for p in [
        "/usr/bin/prometheus-alertmanager",
        "/usr/local/bin/alertmanager",
    ] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("prometheus-alertmanager is missing: apt-get install prometheus-alertmanager");
    }
    eprintln!(
        "SKIPPED: prometheus-alertmanager is missing (apt-get install prometheus-alertmanager)"
    );
    None
}

/// A real Alertmanager, clustering off, killed on drop.
struct Alertmanager {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    async fn start(bin: &Path) -> Alertmanager {
        Self::start_on(bin, free_port()).await
    }

    async fn start_on(bin: &Path, port: u16) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(
            &cfg,
            "route:\n  receiver: none\n  group_wait: 1h\nreceivers:\n  - name: none\n",
        )
        .unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn alertmanager");
        let mut am = Alertmanager {
            port,
            child,
            _dir: dir,
        };
        let c = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = c.get(am.url("/-/ready")).send().await
                && r.status().is_success()
            {
                return am;
            }
            if let Ok(Some(st)) = am.child.try_wait() {
                panic!("alertmanager exited: {st}");
            }
            assert!(
                start.elapsed() < PATIENCE,
                "alertmanager never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every alert it holds.
    async fn alerts(&self) -> Vec<Value> {
        let v: Value = reqwest::get(self.url("/api/v2/alerts"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array().cloned().unwrap_or_default()
    }

    /// Waits until it holds an alert with each uuid of `alerts`, and returns what it holds.
    async fn wait_for(&self, alerts: &[&Alert]) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let held = self.alerts().await;
            let has = |a: &Alert| {
                held.iter()
                    .any(|h| h["annotations"]["uuid"] == a.uuid.to_string())
            };
            if alerts.iter().all(|a| has(a)) {
                return held;
            }
            assert!(start.elapsed() < PATIENCE, "alerts never arrived: {held:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sink(name: &str, urls: &[String]) -> String {
    let list: Vec<String> = urls.iter().map(|u| format!("      - {u}\n")).collect();
    format!(
        "  - name: {name}\n    type: alertmanager\n    urls:\n{}    labels:\n      cluster: kaudit-it\n    severity_map:\n      notice: warning\n    resolve_after_secs: 600\n    console_url: https://kaudit.example.com\n    template: '{{{{ rule }}}} by {{{{ output_fields[\"ka.user.name\"] }}}}'\n",
        list.concat()
    )
}

#[tokio::test]
async fn alerts_carry_bounded_labels_and_resolve() {
    crate::support::install_crypto_provider();
    let Some(bin) = alertmanager_bin() else {
        return;
    };
    let am = Alertmanager::start(&bin).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sink("am", &[am.url("")]));
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Create Privileged Pod", Priority::Critical);
    let mut b = alert("Anonymous Request", Priority::Notice);
    b.output_fields.remove("ka.target.namespace");
    r.sender().send(a.clone()).await.unwrap();
    r.sender().send(b.clone()).await.unwrap();
    let held = am.wait_for(&[&a, &b]).await;
    r.shutdown().await;
    let get = |x: &Alert| {
        held.iter()
            .find(|h| h["annotations"]["uuid"] == x.uuid.to_string())
            .unwrap()
            .clone()
    };
    let ha = get(&a);
    let labels = ha["labels"].as_object().unwrap();
    let mut names: Vec<&str> = labels.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "alertname",
            "cluster",
            "namespace",
            "priority",
            "rule",
            "severity",
            "source"
        ]
    );
    assert_eq!(labels["alertname"], "Create Privileged Pod");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["namespace"], "kube-system");
    assert_eq!(
        ha["annotations"]["summary"],
        "Create Privileged Pod by alice"
    );
    assert_eq!(ha["annotations"]["description"], a.output.as_str());
    assert_eq!(ha["status"]["state"], "active");
    assert_eq!(
        ha["generatorURL"],
        format!("https://kaudit.example.com/ui/alerts/{}", a.uuid)
    );
    // endsAt is set: the alert resolves by itself 10 minutes on.
    let starts = chrono::DateTime::parse_from_rfc3339(ha["startsAt"].as_str().unwrap()).unwrap();
    let ends = chrono::DateTime::parse_from_rfc3339(ha["endsAt"].as_str().unwrap()).unwrap();
    let span = ends - starts;
    assert!(
        span >= chrono::Duration::seconds(600) && span < chrono::Duration::seconds(660),
        "{span}"
    );
    let hb = get(&b);
    assert_eq!(hb["labels"]["severity"], "warning", "severity_map applies");
    assert!(hb["labels"].get("namespace").is_none());
}

#[tokio::test]
async fn every_ha_instance_gets_the_alerts_and_one_is_enough() {
    crate::support::install_crypto_provider();
    let Some(bin) = alertmanager_bin() else {
        return;
    };
    let am1 = Alertmanager::start(&bin).await;
    let mut am2 = Alertmanager::start(&bin).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sink("ha", &[am1.url(""), am2.url(""), dead]));
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let a = alert("HA one", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    am1.wait_for(&[&a]).await;
    am2.wait_for(&[&a]).await;
    // One instance down: delivered by the other.
    let _ = am2.child.kill();
    let _ = am2.child.wait();
    let b = alert("HA two", Priority::Error);
    r.sender().send(b.clone()).await.unwrap();
    am1.wait_for(&[&b]).await;
    wait_until("both counted as sent", || {
        metric(&metrics.encode(), "kaudit_sink_sent_total", "ha") >= 2.0
    })
    .await;
    r.shutdown().await;
    assert!(json_lines(&dir.path().join("dead-letter/ha.jsonl")).is_empty());
}

#[tokio::test]
async fn outage_and_restart_lose_nothing() {
    crate::support::install_crypto_provider();
    let Some(bin) = alertmanager_bin() else {
        return;
    };
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &sink("am", &[format!("http://127.0.0.1:{port}")]),
    );
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let alerts: Vec<Alert> = (0..3)
        .map(|i| alert(&format!("Outage {i}"), Priority::Warning))
        .collect();
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    wait_until("a failed attempt", || {
        metric(&metrics.encode(), "kaudit_sink_failed_total", "am") >= 1.0
    })
    .await;
    r.shutdown().await;
    let am = Alertmanager::start_on(&bin, port).await;
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    am.wait_for(&alerts.iter().collect::<Vec<_>>()).await;
    wait_until("the spool drained", || r.spooled("am") == Some(0)).await;
    r.shutdown().await;
}

#[tokio::test]
async fn test_alert_reaches_alertmanager() {
    crate::support::install_crypto_provider();
    let Some(bin) = alertmanager_bin() else {
        return;
    };
    let am = Alertmanager::start(&bin).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sink("am", &[am.url("")]));
    let got = kaudit::sinks::test_alert::send_test(
        &cfg.sinks,
        Some("am"),
        "kaudit-it",
        kaudit::sinks::test_alert::TEST_TIMEOUT,
    )
    .await
    .unwrap();
    assert!(got[0].delivered, "{got:?}");
    let held = am.alerts().await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["labels"]["alertname"], "Test rule");
    assert_eq!(held[0]["labels"]["severity"], "info");
}
