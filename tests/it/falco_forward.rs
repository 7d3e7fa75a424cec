//! Forwarding to Falco's k8s-audit endpoint, played by a loopback server that records exactly
//! the bytes that arrive: byte-identical, in order, across Falco outages and a SIGKILL of kaudit.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post as route_post;
use kaudit::config::Config;
use kaudit::detect::DetectMode;
use kaudit::metrics::Metrics;
use tokio::net::TcpListener;

use crate::ingest::{free_port, spawn_kaudit};

/// What "Falco" received: (content type, body), in arrival order.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A stand-in for Falco's k8s-audit webserver that can be taken down and brought back on the
/// same port.
struct FakeFalco {
    addr: SocketAddr,
    received: Received,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeFalco {
    async fn start(port: u16, received: Received) -> FakeFalco {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                // The previous incarnation's socket may linger for a moment.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let app = Router::new()
            .route(
                "/healthz",
                axum::routing::get(|| async { "{\"status\": \"ok\"}" }),
            )
            .route(
                "/k8s-audit",
                route_post(
                    |State(r): State<Received>, h: HeaderMap, body: Bytes| async move {
                        let ct = h
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        r.lock().unwrap().push((ct, body));
                        StatusCode::OK
                    },
                ),
            )
            .with_state(received.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeFalco {
            addr,
            received,
            task: Some(task),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/k8s-audit", self.addr)
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    async fn wait_for(&self, n: usize) -> Vec<(String, Bytes)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.received.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} batches reached Falco",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A distinct, valid batch: its bytes carry `n`, and its formatting is unusual on purpose, so
/// that a re-serialization instead of a byte-for-byte forward would show.
fn batch(n: usize) -> String {
    format!(
        "{{ \"kind\":\"EventList\",\n  \"apiVersion\":\"audit.k8s.io/v1\", \"items\":[{{\"kind\":\"Event\",\"auditID\":\"batch-{n}\",\"verb\":\"get\",\"stageTimestamp\":\"2026-11-22T10:00:00.000000Z\",\"user\":{{\"username\":\"u{n}\"}}}}] }}\n"
    )
}

fn config(falco_url: &str, data_dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    cfg.detect.mode = DetectMode::Falco;
    cfg.falco.forward_url = falco_url.to_string();
    cfg.spool.retry_initial_ms = 20;
    cfg.spool.retry_max_ms = 200;
    cfg
}

async fn post(c: &reqwest::Client, base: &str, body: String, ct: &str) -> StatusCode {
    let r = c
        .post(format!("{base}/k8s-audit"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    StatusCode::from_u16(r.status().as_u16()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_byte_identical_and_in_order_across_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let received = Received::default();
    let mut falco = FakeFalco::start(free_port(), received.clone()).await;
    let cfg = config(&falco.url(), dir.path());
    let running =
        kaudit::pipeline::start_with(cfg, kaudit::detect::Detector::none(), Metrics::new())
            .await
            .unwrap();
    let base = format!("http://{}", running.local_addr());
    let c = crate::ingest::client();

    for n in 0..5 {
        let ct = if n % 2 == 0 {
            "application/json"
        } else {
            "application/json; charset=utf-8"
        };
        assert_eq!(post(&c, &base, batch(n), ct).await, StatusCode::OK);
    }
    falco.wait_for(5).await;

    // Falco goes down (a rules change restarts it); ingest carries on; batches wait.
    falco.stop();
    for n in 5..15 {
        assert_eq!(
            post(&c, &base, batch(n), "application/json").await,
            StatusCode::OK
        );
    }
    let port = falco.addr.port();
    let falco = FakeFalco::start(port, received.clone()).await;
    let got = falco.wait_for(15).await;

    let bodies: Vec<String> = got
        .iter()
        .map(|(_, b)| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..15).map(batch).collect();
    assert_eq!(bodies, expected, "not byte-identical or not in order");
    assert_eq!(got[1].0, "application/json; charset=utf-8");
    running.shutdown().await;
}

#[test]
fn buffered_batches_survive_sigkill_of_kaudit() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let falco_port = free_port();
    let cfg_path = dir.path().join("kaudit.yaml");
    std::fs::write(
        &cfg_path,
        format!(
            "data_dir: {}\ndetect: {{mode: falco}}\nfalco: {{forward_url: 'http://127.0.0.1:{falco_port}/k8s-audit'}}\nspool: {{retry_initial_ms: 20, retry_max_ms: 200}}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();

    // Falco is down; kaudit accepts and buffers, then is killed without a chance to clean up.
    let (mut child, base) = spawn_kaudit(&cfg_path, &[]);
    rt.block_on(async {
        let c = crate::ingest::client();
        for n in 0..10 {
            assert_eq!(
                post(&c, &base, batch(n), "application/json").await,
                StatusCode::OK
            );
        }
        // Accepted batches reach the spool asynchronously; wait until all ten are on disk.
        crate::support::wait_for_metric(&c, &base, "spooled batches", 10.0, |t| {
            crate::support::metric(t, "kaudit_sink_spooled_total", "falco.forward")
        })
        .await;
    });
    child.kill().unwrap();
    child.wait().unwrap();

    // Falco comes up, kaudit restarts: every batch arrives, in order.
    rt.block_on(async {
        let received = Received::default();
        let falco = FakeFalco::start(falco_port, received).await;
        let (mut child, _base) = spawn_kaudit(&cfg_path, &[]);
        let got = falco.wait_for(10).await;
        let bodies: Vec<String> = got
            .iter()
            .map(|(_, b)| String::from_utf8(b.to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (0..10).map(batch).collect();
        assert_eq!(bodies, expected);
        child.kill().unwrap();
        child.wait().unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falco_health_shows_on_readyz_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut falco = FakeFalco::start(free_port(), Received::default()).await;
    let mut cfg = config(&falco.url(), dir.path());
    cfg.falco.healthz_url = Some(format!("http://{}/healthz", falco.addr));
    cfg.falco.healthz_interval_ms = 100;
    let running =
        kaudit::pipeline::start_with(cfg, kaudit::detect::Detector::none(), Metrics::new())
            .await
            .unwrap();
    let base = format!("http://{}", running.local_addr());
    let c = crate::ingest::client();
    let state = |c: reqwest::Client, base: String| async move {
        let ready = c.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(
            ready.status().as_u16(),
            200,
            "kaudit stays ready whatever Falco's state"
        );
        let body = ready.text().await.unwrap();
        let metrics = c
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let up = metrics.lines().any(|l| l == "kaudit_falco_up 1");
        (body, up)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (body, up) = state(c.clone(), base.clone()).await;
        if body.contains("falco: up") && up {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Falco never seen up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    falco.stop();
    loop {
        let (body, up) = state(c.clone(), base.clone()).await;
        if body.contains("falco: down") && !up {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Falco never seen down: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.shutdown().await;
}
