//! NATS sink benchmark: alerts/s and submit→subscriber latency (p50/p99) through the whole
//! router (enrich, durable spool, worker, flush-confirmed publish), beside a baseline of a bare
//! async-nats publisher of the same payloads, in the same run against the same nats-server.
//!
//! The last rows run the whole pipeline: POST /k8s-audit → embedded rules → router → NATS, with
//! latency from the start of each POST to the subscriber.
//!
//! Run with `scripts/bench-nats` (or `cargo bench --bench nats`). `KAUDIT_BENCH_ALERTS` sets the
//! burst size (default 20000); `NATS_SERVER` the server binary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use kaudit::alert::{Alert, Priority};
use kaudit::config::{Config, Overrides};
use kaudit::metrics::Metrics;
use kaudit::sinks::template::slug;

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server() -> Result<(Server, String), String> {
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{bin}: {e} (apt-get install nats-server)"))?;
    let server = Server(child);
    let start = Instant::now();
    loop {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            let mut line = String::new();
            if BufReader::new(c).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                return Ok((server, format!("nats://127.0.0.1:{port}")));
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err("nats-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alerts(n: usize) -> Vec<Alert> {
    (0..n)
        .map(|i| {
            let mut f = serde_json::Map::new();
            f.insert("ka.target.namespace".into(), "kube-system".into());
            f.insert("ka.target.resource".into(), "pods".into());
            f.insert("ka.target.name".into(), format!("pod-{i}").into());
            f.insert("ka.user.name".into(), "system:serviceaccount:ci:deployer".into());
            f.insert("ka.verb".into(), "create".into());
            Alert {
                uuid: uuid::Uuid::new_v4(),
                time: Utc::now(),
                rule: "Create Privileged Pod".into(),
                priority: Priority::Warning,
                source: "k8s_audit".into(),
                hostname: "bench".into(),
                output: format!(
                    "Pod started with privileged container (user=system:serviceaccount:ci:deployer pod=pod-{i} ns=kube-system images=nginx)"
                ),
                output_fields: f,
                tags: vec!["k8s".into(), "privileged".into()],
            }
        })
        .collect()
}

type Submitted = Arc<Mutex<HashMap<String, Instant>>>;

/// Collects `n` messages on `falco.>`; returns per-message latency and the last arrival.
async fn subscriber(
    url: &str,
    n: usize,
    submitted: Submitted,
) -> tokio::task::JoinHandle<(Vec<Duration>, Instant)> {
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await
        .expect("subscriber connects");
    let mut sub = client.subscribe("falco.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    tokio::spawn(async move {
        let _keep = client;
        let mut lat = Vec::with_capacity(n);
        let mut last = Instant::now();
        while lat.len() < n {
            let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(60), sub.next()).await
            else {
                eprintln!("subscriber: only {} of {n} messages arrived", lat.len());
                break;
            };
            last = Instant::now();
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            if let Some(t) = submitted.lock().expect("lock").get(&id) {
                lat.push(last - *t);
            }
        }
        (lat, last)
    })
}

struct Figures {
    name: String,
    n: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(name: &str, start: Instant, (mut lat, last): (Vec<Duration>, Instant)) -> Figures {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        name: name.into(),
        n: lat.len(),
        rate: lat.len() as f64 / (last - start).as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

/// Paces submissions at `per_sec` when given, else submits as fast as possible.
async fn pace(i: usize, start: Instant, per_sec: Option<u64>) {
    if let Some(r) = per_sec {
        let due = start + Duration::from_micros(i as u64 * 1_000_000 / r);
        tokio::time::sleep_until(due.into()).await;
    }
}

async fn baseline(url: &str, alerts: &[Alert], per_sec: Option<u64>, name: &str) -> Figures {
    let submitted: Submitted = Arc::default();
    let sub = subscriber(url, alerts.len(), submitted.clone()).await;
    let client = async_nats::connect(url).await.expect("publisher connects");
    let start = Instant::now();
    for (i, a) in alerts.iter().enumerate() {
        pace(i, start, per_sec).await;
        submitted
            .lock()
            .expect("lock")
            .insert(a.uuid.to_string(), Instant::now());
        let subject = format!("falco.{}.{}", a.priority.as_lower(), slug(&a.rule));
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", a.uuid.to_string().as_str());
        client
            .publish_with_headers(subject, h, a.to_json().into())
            .await
            .expect("publish");
        if per_sec.is_some() {
            client.flush().await.expect("flush");
        }
    }
    client.flush().await.expect("flush");
    figures(name, start, sub.await.expect("subscriber"))
}

async fn through_kaudit(url: &str, alerts: &[Alert], per_sec: Option<u64>, name: &str) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = format!(
        "data_dir: {}\nsinks:\n  - name: nats\n    type: nats\n    servers: [\"{url}\"]\n",
        dir.path().display()
    );
    let file = dir.path().join("kaudit.yaml");
    std::fs::write(&file, yaml).expect("write config");
    let cfg =
        Config::load_with_env(Some(&file), &Overrides::default(), Vec::new()).expect("config");
    let router = kaudit::router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .expect("router");
    // Let the sink connect before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let submitted: Submitted = Arc::default();
    let sub = subscriber(url, alerts.len(), submitted.clone()).await;
    let tx = router.sender();
    let start = Instant::now();
    for (i, a) in alerts.iter().enumerate() {
        pace(i, start, per_sec).await;
        submitted
            .lock()
            .expect("lock")
            .insert(a.uuid.to_string(), Instant::now());
        tx.send(a.clone()).await.expect("router accepts");
    }
    let f = figures(name, start, sub.await.expect("subscriber"));
    drop(tx);
    router.shutdown().await;
    f
}

/// One exec-into-pod audit event per pod name, as the apiserver's webhook posts them (one batch
/// per request), so the embedded default rules raise one alert per request.
fn exec_bodies(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"bench-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/payments/pods/pod-{i}/exec?command=sh&container=api","verb":"create","user":{{"username":"jane@example.com","groups":["developers"]}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods","namespace":"payments","name":"pod-{i}","apiVersion":"v1","subresource":"exec"}},"responseStatus":{{"code":101}},"requestReceivedTimestamp":"2026-11-22T10:00:00.000000Z","stageTimestamp":"2026-11-22T10:00:00.001000Z"}}]}}"#
            )
        })
        .collect()
}

/// POST /k8s-audit → ingest → embedded rules → router → spool → NATS → subscriber: the whole
/// pipeline, with latency measured from the start of each POST.
async fn through_webhook(url: &str, n: usize, per_sec: Option<u64>, name: &str) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\nlog: {{level: warn}}\nsinks:\n  - name: nats\n    type: nats\n    servers: [\"{url}\"]\n",
        dir.path().display()
    );
    let file = dir.path().join("kaudit.yaml");
    std::fs::write(&file, yaml).expect("write config");
    let cfg =
        Config::load_with_env(Some(&file), &Overrides::default(), Vec::new()).expect("config");
    let running = kaudit::pipeline::start(cfg).await.expect("pipeline");
    let endpoint = format!("http://{}/k8s-audit", running.local_addr());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bodies = exec_bodies(n);

    // Keyed by pod name, which the exec rule puts in its output fields.
    let submitted: Submitted = Arc::default();
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(url)
        .await
        .expect("subscriber connects");
    let mut sub = client.subscribe("falco.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let seen = submitted.clone();
    let collector = tokio::spawn(async move {
        let _keep = client;
        let mut lat = Vec::with_capacity(n);
        let mut last = Instant::now();
        while lat.len() < n {
            let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(60), sub.next()).await
            else {
                eprintln!("subscriber: only {} of {n} alerts arrived", lat.len());
                break;
            };
            last = Instant::now();
            let pod = serde_json::from_slice::<Alert>(&m.payload)
                .ok()
                .and_then(|a| a.field_text("ka.target.name"))
                .unwrap_or_default();
            if let Some(t) = seen.lock().expect("lock").get(&pod) {
                lat.push(last - *t);
            }
        }
        (lat, last)
    });

    // A few concurrent posters, like the apiserver's webhook backend under load.
    kaudit::transport::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = Arc::new(bodies);
    let start = Instant::now();
    let mut posters = Vec::new();
    for _ in 0..8 {
        let (http, next, bodies, submitted, endpoint) = (
            http.clone(),
            next.clone(),
            bodies.clone(),
            submitted.clone(),
            endpoint.clone(),
        );
        posters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                pace(i, start, per_sec).await;
                submitted
                    .lock()
                    .expect("lock")
                    .insert(format!("pod-{i}"), Instant::now());
                let r = http
                    .post(&endpoint)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await;
                if !matches!(&r, Ok(resp) if resp.status().is_success()) {
                    eprintln!("POST {i} failed: {r:?}");
                }
            }
        }));
    }
    for p in posters {
        let _ = p.await;
    }
    let f = figures(name, start, collector.await.expect("subscriber"));
    running.shutdown().await;
    f
}

fn main() {
    let n: usize = std::env::var("KAUDIT_BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (server, url) = match start_server() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench-nats: {e}");
            std::process::exit(1);
        }
    };
    let burst = alerts(n);
    let paced = alerts(2_000);
    let rows = rt.block_on(async {
        vec![
            baseline(&url, &burst, None, "bare async-nats, burst").await,
            through_kaudit(&url, &burst, None, "kaudit router+spool, burst").await,
            baseline(&url, &paced, Some(1000), "bare async-nats, 1000/s").await,
            through_kaudit(&url, &paced, Some(1000), "kaudit router+spool, 1000/s").await,
            through_webhook(&url, n.min(10_000), None, "POST→NATS (whole), burst").await,
            through_webhook(&url, 2_000, Some(500), "POST→NATS (whole), 500/s").await,
        ]
    });
    drop(server);
    println!(
        "{:<30} {:>8} {:>12} {:>10} {:>10}",
        "run", "alerts", "alerts/s", "p50 ms", "p99 ms"
    );
    for f in rows {
        println!(
            "{:<30} {:>8} {:>12.0} {:>10.2} {:>10.2}",
            f.name,
            f.n,
            f.rate,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3
        );
    }
}
