//! Shared harness: ephemeral ports, readiness waits, real servers cleaned up on drop.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use kaudit::alert::{Alert, Priority};
use kaudit::config::{Config, Overrides};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The longest any test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Polls `cond` until it holds; panics with `what` after [`PATIENCE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > PATIENCE {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An alert with a fresh uuid.
pub fn alert(rule: &str, priority: Priority) -> Alert {
    let mut fields = Map::new();
    fields.insert("ka.target.namespace".into(), "kube-system".into());
    fields.insert("ka.target.resource".into(), "pods".into());
    fields.insert("ka.target.name".into(), "nginx".into());
    fields.insert("ka.user.name".into(), "alice".into());
    Alert {
        uuid: Uuid::new_v4(),
        time: Utc::now(),
        rule: rule.to_string(),
        priority,
        source: "k8s_audit".into(),
        hostname: "kaudit-test".into(),
        output: format!(
            "{}: {priority} {rule} (user=alice)",
            Utc::now().format("%H:%M:%S")
        ),
        output_fields: fields,
        tags: vec!["k8s".into()],
    }
}

/// A tiny deterministic generator (xorshift) for generated-input tests, so that a failing round
/// can be replayed from its seed.
pub struct Gen(pub u64);

impl Gen {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `from`.
    pub fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

/// Loads a config from YAML text (the real loader, with validation), environment ignored.
pub fn config_from_yaml(yaml: &str) -> Config {
    try_config(yaml).unwrap_or_else(|e| panic!("config does not load: {e}\n{yaml}"))
}

/// As [`config_from_yaml`], returning the error.
pub fn try_config(yaml: &str) -> Result<Config, kaudit::config::ConfigError> {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(yaml.as_bytes()).expect("write config");
    Config::load_with_env(Some(f.path()), &Overrides::default(), Vec::new())
}

/// A config with `data_dir`, fast retries, denials (401/403/404) dead-lettered at once (their
/// grace period has its own test in `deadletter`) and the given `sinks:` YAML (indented items).
pub fn config(data_dir: &Path, sinks_yaml: &str) -> Config {
    config_from_yaml(&format!(
        "data_dir: {}\nspool:\n  retry_initial_ms: 20\n  retry_max_ms: 100\n  shutdown_flush_ms: 2000\n  denied_retry_secs: 0\nsinks:\n{sinks_yaml}",
        data_dir.display()
    ))
}

/// Lines of a JSON-lines file (empty when missing).
pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Is nats-server installed? Under CI it must be; elsewhere the test is skipped.
pub fn nats_server_bin() -> Option<PathBuf> {
    for p in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("nats-server is missing: apt-get install nats-server");
    }
    eprintln!("SKIPPED: nats-server is missing (apt-get install nats-server)");
    None
}

/// A real nats-server with JetStream on an ephemeral port, killed on drop.
pub struct NatsServer {
    bin: PathBuf,
    /// Its port (kept across restarts).
    pub port: u16,
    store: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts one and waits until it accepts clients.
    pub fn start(bin: PathBuf) -> NatsServer {
        Self::start_with(bin, Vec::new())
    }

    /// As [`NatsServer::start`], with extra command-line arguments (TLS, auth).
    pub fn start_with(bin: PathBuf, extra: Vec<String>) -> NatsServer {
        let mut s = NatsServer {
            bin,
            port: free_port(),
            store: tempfile::tempdir().expect("temp dir"),
            extra,
            child: None,
        };
        s.spawn();
        s
    }

    /// Starts one on a given port (one reserved earlier with [`free_port`]).
    pub fn start_on(bin: PathBuf, port: u16) -> NatsServer {
        let mut s = NatsServer {
            bin,
            port,
            store: tempfile::tempdir().expect("temp dir"),
            child: None,
            extra: Vec::new(),
        };
        s.spawn();
        s
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["-js", "-sd"])
            .arg(self.store.path())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        // Ready when a client connection gets the server's INFO line.
        let start = Instant::now();
        loop {
            if let Ok(c) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if BufReader::new(c).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                    return;
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("nats-server exited: {st}");
            }
            if start.elapsed() > PATIENCE {
                panic!("nats-server on port {} never became ready", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One request a [`Recorder`] received.
#[derive(Clone, Debug)]
pub struct Req {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: Uri,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Req {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The body as JSON (gunzipped when `Content-Encoding: gzip`).
    pub fn json(&self) -> Value {
        let raw = if self.header("content-encoding").as_deref() == Some("gzip") {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_end(&mut out)
                .expect("gzip body");
            out
        } else {
            self.body.to_vec()
        };
        serde_json::from_slice(&raw).expect("JSON body")
    }
}

/// Decides the answer to the n-th request (0-based).
pub type Responder = Arc<dyn Fn(usize, &Req) -> Response + Send + Sync>;

/// A loopback HTTP server that records every request and answers as scripted.
pub struct Recorder {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests so far.
    pub reqs: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    /// Starts an HTTPS recorder on an ephemeral port with kaudit's own TLS server (`tls`).
    pub async fn start_tls(
        respond: Responder,
        tls: &kaudit::server::tls::TlsConfig,
    ) -> (Recorder, kaudit::server::Server) {
        let reqs: Arc<Mutex<Vec<Req>>> = Arc::default();
        let app = Self::app(reqs.clone(), respond);
        let tls = kaudit::server::tls::ReloadingTls::new(tls).expect("server TLS");
        let server = kaudit::server::serve(
            "127.0.0.1:0".parse().expect("addr"),
            app,
            Some(tls),
            Duration::from_secs(10),
        )
        .await
        .expect("serve");
        let addr = server.local_addr();
        let task = tokio::spawn(async {});
        (Recorder { addr, reqs, task }, server)
    }

    fn app(reqs: Arc<Mutex<Vec<Req>>>, respond: Responder) -> axum::Router {
        let r2 = reqs;
        axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let reqs = r2.clone();
                let respond = respond.clone();
                async move {
                    let req = Req {
                        method,
                        uri,
                        headers,
                        body,
                        at: Instant::now(),
                    };
                    let n = {
                        let mut v = reqs.lock().expect("lock");
                        v.push(req.clone());
                        v.len() - 1
                    };
                    respond(n, &req)
                }
            },
        )
    }

    /// Starts on an ephemeral port (or `port`), answering with `respond`.
    pub async fn start_on(port: u16, respond: Responder) -> Recorder {
        let reqs: Arc<Mutex<Vec<Req>>> = Arc::default();
        let r2 = reqs.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let reqs = r2.clone();
                let respond = respond.clone();
                async move {
                    let req = Req {
                        method,
                        uri,
                        headers,
                        body,
                        at: Instant::now(),
                    };
                    let n = {
                        let mut v = reqs.lock().expect("lock");
                        v.push(req.clone());
                        v.len() - 1
                    };
                    respond(n, &req)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Recorder { addr, reqs, task }
    }

    /// Starts on an ephemeral port.
    pub async fn start(respond: Responder) -> Recorder {
        Self::start_on(0, respond).await
    }

    /// Always 200.
    pub async fn ok() -> Recorder {
        Self::start(Arc::new(|_, _| StatusCode::OK.into_response())).await
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A copy of the requests so far.
    pub fn requests(&self) -> Vec<Req> {
        self.reqs.lock().expect("lock").clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.reqs.lock().expect("lock").len()
    }

    /// The uuids of every alert received (bodies that are an alert or an array of alerts).
    pub fn uuids(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in self.requests() {
            match r.json() {
                Value::Array(items) => out.extend(
                    items
                        .iter()
                        .filter_map(|i| i["uuid"].as_str().map(str::to_string)),
                ),
                v => out.extend(v["uuid"].as_str().map(str::to_string)),
            }
        }
        out
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts per value.
pub fn counts(items: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}

/// A metric's value from the Prometheus text (`name{labels} value`), 0 when absent.
pub fn metric(text: &str, name: &str, sink: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("sink=\"{sink}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The process-wide rustls provider kaudit uses (ring).
pub fn install_crypto_provider() {
    kaudit::transport::tls::install_crypto_provider();
}

/// Writes a CA, a server certificate for 127.0.0.1 and localhost, and a client certificate,
/// each with its own subject (OpenSSL-based servers such as rsyslog, Redis, Mosquitto and
/// RabbitMQ take a leaf whose subject equals its issuer's for self-signed); returns paths
/// (ca, server cert, server key, client cert, client key).
pub fn write_pki(dir: &std::path::Path) -> [std::path::PathBuf; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let named = |sans: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = named(Vec::new(), "kaudit test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let srv_key = KeyPair::generate().unwrap();
    let mut srv_params = named(vec!["127.0.0.1".into(), "localhost".into()], "127.0.0.1");
    srv_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let srv_cert = srv_params.signed_by(&srv_key, &issuer).unwrap();
    let cli_key = KeyPair::generate().unwrap();
    let mut cli_params = named(vec!["kaudit".into()], "kaudit");
    cli_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cli_cert = cli_params.signed_by(&cli_key, &issuer).unwrap();
    let files = [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", srv_cert.pem()),
        ("server-key.pem", srv_key.serialize_pem()),
        ("client.pem", cli_cert.pem()),
        ("client-key.pem", cli_key.serialize_pem()),
    ];
    files.map(|(name, pem)| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    })
}

/// Scrapes kaudit's `/metrics` at `base` until `value(text)` reaches `at_least`; the panic
/// message names `what` and shows the last scrape.
pub async fn wait_for_metric(
    c: &reqwest::Client,
    base: &str,
    what: &str,
    at_least: f64,
    value: impl Fn(&str) -> f64,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = c
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        if value(&text) >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never reached {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the metric line that starts with `line_prefix` (name and labels), 0 if absent.
pub fn metric_line(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Routes one alert through `cfg` to the sink called `sink`, which must refuse it for good;
/// waits for its dead letter and returns that record after checking it is this alert's.
pub async fn refused_alert(cfg: &Config, sink: &str) -> Value {
    let r = kaudit::router::start(
        cfg.router_setup(),
        &kaudit::metrics::Metrics::new().delivery,
    )
    .await
    .expect("router starts");
    let a = alert("Lost", Priority::Error);
    r.sender().send(a.clone()).await.expect("router accepts");
    let dl = cfg.data_dir.join(format!("dead-letter/{sink}.jsonl"));
    wait_until("the dead letter", || !json_lines(&dl).is_empty()).await;
    r.shutdown().await;
    let l = json_lines(&dl).remove(0);
    assert_eq!(l["alert"]["uuid"], a.uuid.to_string());
    l
}

/// The audit payload `body` with every event's `auditID` made unique to `n`: the same example
/// posted as a different request (kaudit derives alert uuids from auditIDs, so a payload posted
/// twice unchanged is a retry and raises the same alerts again, with the same uuids).
pub fn unique_events(body: &[u8], n: usize) -> Vec<u8> {
    fn mark(v: &mut Value, n: usize) {
        match v {
            Value::Array(items) => items.iter_mut().for_each(|i| mark(i, n)),
            Value::Object(o) => {
                if let Some(Value::Array(items)) = o.get_mut("items") {
                    items.iter_mut().for_each(|i| mark(i, n));
                }
                if let Some(Value::String(id)) = o.get_mut("auditID") {
                    id.push_str(&format!("-{n}"));
                }
            }
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_slice(body).expect("an audit payload");
    mark(&mut v, n);
    serde_json::to_vec(&v).expect("serializable")
}
