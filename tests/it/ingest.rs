//! The webhook server, tested over real connections on an ephemeral port.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaudit::config::Config;
use kaudit::detect::Detector;
use kaudit::metrics::Metrics;
use kaudit::pipeline::{self, Running};
use kaudit::secret::Secret;
use kaudit::server::tls::TlsConfig;
use reqwest::StatusCode;

const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"11111111-2222-3333-4444-555555555555","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"alice","groups":["system:authenticated"]},"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-11-22T10:00:00.000000Z","stageTimestamp":"2026-11-22T10:00:00.001000Z"}"#;

fn event_list(n: usize) -> String {
    let items = vec![EVENT; n].join(",");
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{items}]}}"#
    )
}

/// A config on an ephemeral port with its own data directory (spools are locked per process,
/// so tests running in parallel must not share one). The directory is left for the OS to clean.
fn local_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: tempfile::tempdir().unwrap().keep(),
        ..Config::default()
    }
}

/// A detector that counts the events it sees.
fn counting() -> (Detector, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let d = Detector::none();
    let s = seen.clone();
    d.set(Arc::new(move |_ev, _out| {
        s.fetch_add(1, Ordering::SeqCst);
    }));
    (d, seen)
}

async fn start(cfg: Config) -> (Running, String) {
    let (d, _) = counting();
    start_with(cfg, d).await
}

async fn start_with(cfg: Config, d: Detector) -> (Running, String) {
    let tls = cfg.tls.is_some();
    let running = pipeline::start_with(cfg, d, Metrics::new()).await.unwrap();
    let scheme = if tls { "https" } else { "http" };
    let base = format!("{scheme}://{}", running.local_addr());
    (running, base)
}

pub fn client() -> reqwest::Client {
    kaudit::transport::tls::install_crypto_provider();
    reqwest::Client::new()
}

async fn post(
    c: &reqwest::Client,
    base: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    c.post(format!("{base}/k8s-audit"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The status of a GET.
async fn get_status(c: &reqwest::Client, url: String) -> StatusCode {
    c.get(url).send().await.unwrap().status()
}

async fn metric(c: &reqwest::Client, base: &str, line_prefix: &str) -> f64 {
    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    crate::support::metric_line(&text, line_prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_event_list_single_event_and_array() {
    let (d, seen) = counting();
    let (running, base) = start_with(local_config(), d).await;
    let c = client();

    let r = post(&c, &base, event_list(3)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 3);

    assert_eq!(post(&c, &base, EVENT).await.status(), StatusCode::OK);
    let arr = format!("[{EVENT},{EVENT}]");
    assert_eq!(post(&c, &base, arr).await.status(), StatusCode::OK);
    let beta = event_list(1).replace("audit.k8s.io/v1", "audit.k8s.io/v1beta1");
    assert_eq!(post(&c, &base, beta).await.status(), StatusCode::OK);

    running.shutdown().await;
    assert_eq!(seen.load(Ordering::SeqCst), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_is_415() {
    let (running, base) = start(local_config()).await;
    let c = client();
    let r = c
        .post(format!("{base}/k8s-audit"))
        .header("content-type", "text/plain")
        .body(EVENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = c
        .post(format!("{base}/k8s-audit"))
        .body(EVENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_body_is_413_declared_or_streamed() {
    let mut cfg = local_config();
    cfg.ingest.max_body_bytes = 4096;
    let (running, base) = start(cfg).await;
    let c = client();
    let big = event_list(20);
    assert!(big.len() > 4096);
    assert_eq!(
        post(&c, &base, big.clone()).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Chunked, with no Content-Length: the limit must trip while streaming.
    let addr = base.trim_start_matches("http://").to_string();
    let reply = raw_chunked_post(&addr, big.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    // Under the limit still works.
    assert_eq!(
        post(&c, &base, event_list(2)).await.status(),
        StatusCode::OK
    );
    running.shutdown().await;
}

/// Sends `body` in 512-byte chunks with `Transfer-Encoding: chunked`; returns the raw reply.
async fn raw_chunked_post(addr: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /k8s-audit HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for chunk in body.chunks(512) {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        // The server may answer and close before the whole body is sent: that is the point.
        if s.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    String::from_utf8_lossy(&reply).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_by_the_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = local_config();
    cfg.ingest.read_timeout_secs = 1;
    let (running, base) = start(cfg).await;
    let addr = base.trim_start_matches("http://").to_string();
    // Headers that never finish.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /k8s-audit HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        n.is_ok(),
        "connection with unfinished headers was never closed"
    );
    // A body that never finishes.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /k8s-audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        n.is_ok(),
        "connection with an unfinished body was never answered"
    );
    let reply = String::from_utf8_lossy(&buf);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_non_audit_json_are_400_with_reason() {
    let (running, base) = start(local_config()).await;
    let c = client();
    let r = post(&c, &base, "{\"kind\": \"EventList\", \"items\": [").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("malformed JSON"),
        "{e}"
    );

    let r = post(&c, &base, r#"{"kind": 0}"#).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: serde_json::Value = r.json().await.unwrap();
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("not recognized as a k8s audit event") && msg.contains("kind"),
        "{msg}"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_items_are_counted_and_valid_ones_go_on() {
    let (d, seen) = counting();
    let (running, base) = start_with(local_config(), d).await;
    let c = client();
    let body = format!(r#"{{"kind":"EventList","items":[{EVENT},17,{{"kind":"Event"}},{EVENT}]}}"#);
    let r = post(&c, &base, body).await;
    assert_eq!(r.status(), StatusCode::OK);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (b["accepted"].as_u64(), b["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        metric(
            &c,
            &base,
            "kaudit_events_rejected_total{reason=\"not_an_object\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &c,
            &base,
            "kaudit_events_rejected_total{reason=\"missing_stage_timestamp\"}"
        )
        .await,
        1.0
    );
    running.shutdown().await;
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_from_file_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "first-token\nsecond-token\n").unwrap();
    let mut cfg = local_config();
    cfg.auth.token_file = Some(tokens);
    cfg.auth.tokens = vec![Secret::new("inline-token")];
    let (running, base) = start(cfg).await;
    let c = client();
    let send = |tok: Option<&'static str>| {
        let mut rb = c
            .post(format!("{base}/k8s-audit"))
            .header("content-type", "application/json")
            .body(EVENT);
        if let Some(t) = tok {
            rb = rb.bearer_auth(t);
        }
        rb.send()
    };
    assert_eq!(send(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(Some("wrong")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(Some("second-token")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        send(Some("inline-token")).await.unwrap().status(),
        StatusCode::OK
    );
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(
        get_status(&c, format!("{base}/healthz")).await,
        StatusCode::OK
    );
    running.shutdown().await;
}

/// Each pipeline's `console` sinks are built over its own store. The store was once a process
/// global: a pipeline shutting down took it away from another still running (tests in this
/// binary then failed at random to start or reload with "no alert store is open").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_keeps_its_console_store_when_another_stops() {
    let (mut first, _) = start(local_config()).await;
    let (second, _) = start(local_config()).await;
    assert!(first.config().console.enabled && second.config().console.enabled);
    second.shutdown().await;
    let mut cfg = first.config().clone();
    cfg.sinks.push(kaudit::sinks::SinkConfig {
        name: "console-again".into(),
        ..kaudit::sinks::SinkConfig::console()
    });
    first
        .reload(cfg)
        .await
        .expect("a new console sink is built over the first pipeline's own store");
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_404_wrong_method_405_health_and_ready() {
    let (running, base) = start(local_config()).await;
    let c = client();
    assert_eq!(
        get_status(&c, format!("{base}/nope")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get_status(&c, format!("{base}/k8s-audit")).await,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        get_status(&c, format!("{base}/healthz")).await,
        StatusCode::OK
    );
    assert_eq!(
        get_status(&c, format!("{base}/readyz")).await,
        StatusCode::OK
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The held std lock is the point: it stalls the (synchronous) evaluator on another thread.
#[allow(clippy::await_holding_lock)]
async fn full_queue_is_429_with_retry_after() {
    // Detection blocks on a lock the test holds, so the queue (capacity 1) fills up.
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let d = Detector::none();
    let g = gate.clone();
    d.set(Arc::new(move |_ev, _out| {
        drop(g.lock());
    }));
    let mut cfg = local_config();
    cfg.ingest.queue_capacity = 1;
    let (running, base) = start_with(cfg, d).await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = post(&c, &base, EVENT).await;
        statuses.push((r.status(), r.headers().get("retry-after").cloned()));
    }
    assert_eq!(statuses[0].0, StatusCode::OK);
    let refused: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(!refused.is_empty(), "{statuses:?}");
    assert!(
        refused
            .iter()
            .all(|(_, ra)| ra.as_ref().is_some_and(|v| v == "1"))
    );
    // Refused before the body is read (the queue was full when the request came), or after its
    // check (it filled meanwhile): either way counted.
    let early = metric(
        &c,
        &base,
        "kaudit_ingest_requests_refused_total{reason=\"queue_full\"}",
    )
    .await;
    let late = metric(
        &c,
        &base,
        "kaudit_events_rejected_total{reason=\"queue_full\"}",
    )
    .await;
    assert_eq!(
        early + late,
        refused.len() as f64,
        "early {early}, late {late}"
    );
    drop(held);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_every_accepted_event() {
    let d = Detector::none();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    d.set(Arc::new(move |_ev, _out| {
        std::thread::sleep(Duration::from_millis(2));
        s.fetch_add(1, Ordering::SeqCst);
    }));
    let mut cfg = local_config();
    cfg.ingest.queue_capacity = 64;
    let (running, base) = start_with(cfg, d).await;
    let c = client();
    let mut accepted = 0;
    for _ in 0..20 {
        let r = post(&c, &base, event_list(10)).await;
        if r.status() == StatusCode::OK {
            accepted += 10;
        }
    }
    running.shutdown().await;
    assert_eq!(seen.load(Ordering::SeqCst), accepted);
    assert_eq!(accepted, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counters_move() {
    let (running, base) = start(local_config()).await;
    let c = client();
    for _ in 0..3 {
        post(&c, &base, event_list(4)).await;
    }
    post(&c, &base, "nope").await;
    assert_eq!(
        metric(&c, &base, "kaudit_events_received_total").await,
        12.0
    );
    assert_eq!(
        metric(&c, &base, "kaudit_events_accepted_total").await,
        12.0
    );
    assert_eq!(
        metric(
            &c,
            &base,
            "kaudit_http_requests_total{path=\"/k8s-audit\",status=\"200\"}"
        )
        .await,
        3.0
    );
    assert_eq!(
        metric(
            &c,
            &base,
            "kaudit_http_requests_total{path=\"/k8s-audit\",status=\"400\"}"
        )
        .await,
        1.0
    );
    assert_eq!(metric(&c, &base, "kaudit_batch_events_count").await, 3.0);
    running.shutdown().await;
}

/// A CA, a server certificate for 127.0.0.1 and client certificates, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kaudit test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        write("ca.pem", ca_cert.pem());
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        write("server.pem", server.pem());
        write("server-key.pem", server_key.serialize_pem());

        let client_key = KeyPair::generate().unwrap();
        let mut cp = CertificateParams::new(vec!["kube-apiserver".to_string()]).unwrap();
        cp.distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        let client = cp.signed_by(&client_key, &issuer).unwrap();
        write(
            "client.pem",
            format!("{}{}", client.pem(), client_key.serialize_pem()),
        );

        // A client certificate from a CA the server does not trust.
        let rogue_key = KeyPair::generate().unwrap();
        let rogue = CertificateParams::new(vec!["rogue".to_string()])
            .unwrap()
            .self_signed(&rogue_key)
            .unwrap();
        write(
            "rogue.pem",
            format!("{}{}", rogue.pem(), rogue_key.serialize_pem()),
        );
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tls(&self, mtls: bool) -> TlsConfig {
        TlsConfig {
            cert_file: self.path("server.pem"),
            key_file: self.path("server-key.pem"),
            client_ca_file: mtls.then(|| self.path("ca.pem")),
            reload_interval_secs: 1,
        }
    }

    fn client(&self, identity: Option<&str>) -> reqwest::Client {
        kaudit::transport::tls::install_crypto_provider();
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(self.path("ca.pem")).unwrap()).unwrap();
        let mut b = reqwest::Client::builder()
            .tls_certs_only([ca])
            .pool_max_idle_per_host(0);
        if let Some(id) = identity {
            let pem = std::fs::read(self.path(id)).unwrap();
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_with_server_certificate() {
    let pki = Pki::new();
    let mut cfg = local_config();
    cfg.tls = Some(pki.tls(false));
    let (running, base) = start(cfg).await;
    let c = pki.client(None);
    assert_eq!(post(&c, &base, EVENT).await.status(), StatusCode::OK);
    // Plain HTTP to a TLS port is refused.
    let plain = base.replace("https://", "http://");
    assert!(
        client()
            .get(format!("{plain}/healthz"))
            .send()
            .await
            .is_err()
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_accepts_good_client_and_refuses_none_or_rogue() {
    let pki = Pki::new();
    let mut cfg = local_config();
    cfg.tls = Some(pki.tls(true));
    let (running, base) = start(cfg).await;
    let good = pki.client(Some("client.pem"));
    assert_eq!(post(&good, &base, EVENT).await.status(), StatusCode::OK);
    let none = pki.client(None);
    assert!(none.get(format!("{base}/healthz")).send().await.is_err());
    let rogue = pki.client(Some("rogue.pem"));
    assert!(rogue.get(format!("{base}/healthz")).send().await.is_err());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_without_dropping_the_listener() {
    let pki = Pki::new();
    let mut cfg = local_config();
    cfg.tls = Some(pki.tls(false));
    let (running, base) = start(cfg).await;
    let c = pki.client(None);
    assert_eq!(post(&c, &base, EVENT).await.status(), StatusCode::OK);

    // Replace the server certificate with one from a new CA; the old client must now fail and a
    // client trusting the new CA must succeed, on the same listener.
    let pki2 = Pki::new();
    for f in ["server.pem", "server-key.pem"] {
        std::fs::copy(pki2.path(f), pki.path(f)).unwrap();
    }
    let c2 = pki2.client(None);
    let mut switched = false;
    for _ in 0..100 {
        if c2.get(format!("{base}/healthz")).send().await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "new certificate was never served");
    assert!(
        pki.client(None)
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
    running.shutdown().await;
}

#[test]
fn config_check_cli_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_kaudit");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "listen: 127.0.0.1:9999\nauth:\n  tokens: [sekrit]\n").unwrap();
    let out = std::process::Command::new(bin)
        .args(["config", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let y = String::from_utf8_lossy(&out.stdout);
    assert!(
        y.contains("127.0.0.1:9999") && !y.contains("sekrit") && y.contains("<redacted>"),
        "{y}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "ingest:\n  queue_capacity: many\n").unwrap();
    let out = std::process::Command::new(bin)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("ingest.queue_capacity"),
        "{err}"
    );
}

/// Starts the real binary; returns it with its bound address once `/readyz` answers.
pub fn spawn_kaudit(config: &Path, extra_env: &[(&str, &str)]) -> (std::process::Child, String) {
    let port = free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kaudit"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "kaudit exited ({status}) before listening:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kaudit did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, base)
}

/// An unused TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn sigterm_drains_and_exits_zero_with_alerts_on_stdout() {
    // The embedded default: default rules, one stdout sink. Every alert of every accepted
    // request must be on stdout, as one Falco JSON line, by the time SIGTERM's drain exits 0.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kaudit.yaml");
    std::fs::write(
        &cfg,
        format!("data_dir: {}\n", dir.path().join("data").display()),
    )
    .unwrap();
    let (child, base) = spawn_kaudit(&cfg, &[]);
    let exec = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/audit/exec-into-pod.json"),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client();
        for i in 0..5 {
            // Noise raises nothing; each exec raises one alert.
            assert_eq!(
                post(&c, &base, event_list(5)).await.status(),
                StatusCode::OK
            );
            assert_eq!(
                post(&c, &base, crate::support::unique_events(&exec, i))
                    .await
                    .status(),
                StatusCode::OK
            );
        }
    });
    let pid = child.id().to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("pipeline drained"), "{err}");

    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let mut uuids = std::collections::HashSet::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for key in [
            "uuid",
            "time",
            "rule",
            "priority",
            "source",
            "hostname",
            "output",
            "output_fields",
            "tags",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {l}");
        }
        assert_eq!(v["source"], "k8s_audit");
        // RFC 3339 UTC with nanoseconds and Z, as Falco writes it.
        let t = v["time"].as_str().unwrap();
        assert!(
            t.ends_with('Z') && t.split('.').nth(1).is_some_and(|f| f.len() == 10),
            "{t}"
        );
        assert_eq!(v["output_fields"]["ka.target.name"], "api-7d9f8b6c5-x2x4q");
        uuids.insert(v["uuid"].as_str().unwrap().to_string());
    }
    assert_eq!(uuids.len(), 5, "each alert has its own uuid");
}

/// Alerts (uuid, rule) in a file sink's output, once `n` have arrived.
async fn alerts_in(path: &Path, n: usize) -> Vec<(String, String)> {
    for _ in 0..500 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let got: Vec<(String, String)> = text
            .lines()
            .map(|l| {
                let a: kaudit::alert::Alert = serde_json::from_str(l).unwrap();
                (a.uuid.to_string(), a.rule)
            })
            .collect();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} alerts in {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_raised_by_the_check_match_those_read_back_from_the_inbox() {
    // The webhook evaluates a batch with the rules as it checks it, and the alerts travel with
    // the batch; past `inbox.memory_bytes` detection reads the batch back and evaluates it. The
    // same events must raise the same alerts (uuids included) either way.
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audit/exec-into-pod.json"),
    )
    .unwrap();
    let mut seen = Vec::new();
    for (memory, at) in [(64 << 20, "check"), (0, "inbox")] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("alerts.jsonl");
        let yaml = format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\ninbox: {{memory_bytes: {memory}}}\nconsole: {{enabled: false}}\nsinks:\n  - {{name: out, type: file, path: {}}}\n",
            dir.path().join("data").display(),
            out.display()
        );
        let cfg = Config::from_yaml("test", &yaml).unwrap();
        let running = pipeline::start(cfg).await.unwrap();
        let base = format!("http://{}", running.local_addr());
        let c = client();
        assert_eq!(post(&c, &base, body.clone()).await.status(), StatusCode::OK);
        let alerts = alerts_in(&out, 1).await;
        let line = format!("kaudit_detect_batches_total{{at=\"{at}\"}}");
        assert_eq!(metric(&c, &base, &line).await, 1.0, "{at}");
        let other = if at == "check" { "inbox" } else { "check" };
        let line = format!("kaudit_detect_batches_total{{at=\"{other}\"}}");
        assert_eq!(metric(&c, &base, &line).await, 0.0, "{at}");
        running.shutdown().await;
        seen.push(alerts);
    }
    assert_eq!(seen[0], seen[1]);
}
