//! Fixtures for the broker sinks: a tansu Kafka broker, moto's AWS server and Google's Pub/Sub
//! emulator, each on an ephemeral port, waited for, and killed (with its children) on drop.
//! Plus the end-to-end test: one audit EventList through `/k8s-audit` to all three.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::support::{PATIENCE, free_port};

/// Finds a test server: the first existing path; under CI a missing one fails the test with
/// `install`, elsewhere the test is skipped with that message.
pub fn find_bin(what: &str, candidates: &[PathBuf], install: &str) -> Option<PathBuf> {
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Some(p.clone());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is missing: {install}");
    }
    eprintln!("SKIPPED: {what} is missing ({install})");
    None
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default())
}

/// The tansu broker (`cargo install tansu --features dynostore`, or `scripts/test`).
pub fn tansu_bin() -> Option<PathBuf> {
    let mut c = vec![home().join(".cargo/bin/tansu")];
    if let Ok(h) = std::env::var("CARGO_HOME") {
        c.insert(0, Path::new(&h).join("bin/tansu"));
    }
    find_bin(
        "tansu",
        &c,
        "scripts/test installs it, or: cargo install tansu --features dynostore",
    )
}

/// moto's server from the venv `scripts/lib/deps.sh` makes.
pub fn moto_bin() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    find_bin(
        "moto_server",
        &[root.join(".tools/venv/bin/moto_server")],
        "scripts/test installs it into .tools/venv, or: python3 -m venv .tools/venv && .tools/venv/bin/pip install 'moto[server]'",
    )
}

/// Google's Pub/Sub emulator (with the Google Cloud SDK).
pub fn pubsub_emulator_bin() -> Option<PathBuf> {
    find_bin(
        "the Pub/Sub emulator",
        &[PathBuf::from(
            "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator",
        )],
        "apt-get install google-cloud-cli-pubsub-emulator (and a Java runtime)",
    )
}

/// A child process in its own process group, killed with its group on drop.
pub struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc {
            child: Some(child),
            log,
        }
    }

    /// Panics with the log when the process has exited.
    fn check_alive(&mut self, what: &str) {
        if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("{what} exited ({st}):\n{log}");
        }
    }

    /// SIGKILLs the process group and reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (polling) until `port` accepts TCP connections.
async fn wait_port(proc: &mut Proc, what: &str, port: u16) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        proc.check_alive(what);
        if start.elapsed() > PATIENCE {
            panic!("{what} on port {port} never became ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A tansu broker with memory storage.
pub struct Tansu {
    bin: PathBuf,
    /// Its port (kept across restarts).
    pub port: u16,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
}

impl Tansu {
    /// Starts one on an ephemeral port and waits until it answers metadata requests.
    pub async fn start(bin: PathBuf) -> Tansu {
        let mut t = Tansu {
            bin,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            proc: None,
        };
        t.spawn().await;
        t
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("broker")
            .args(["--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn(&mut cmd, self.dir.path().join("tansu.log"));
        wait_port(&mut proc, "tansu", self.port).await;
        self.proc = Some(proc);
        // Ready when a metadata request gets an answer.
        let start = Instant::now();
        loop {
            let bootstrap = self.bootstrap();
            let admin = self.admin();
            let a = tokio::task::spawn_blocking(move || {
                admin
                    .inner()
                    .fetch_metadata(None, Duration::from_secs(2))
                    .map(|m| m.brokers().len())
            })
            .await
            .expect("metadata task");
            match a {
                Ok(n) if n > 0 => return,
                other => {
                    if let Some(p) = self.proc.as_mut() {
                        p.check_alive("tansu");
                    }
                    if start.elapsed() > PATIENCE {
                        panic!("tansu at {bootstrap} never answered metadata: {other:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// An admin client.
    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client")
    }

    /// Creates a topic with one partition (retrying while the broker settles).
    pub async fn create_topic(&self, name: &str) {
        let admin = self.admin();
        let start = Instant::now();
        loop {
            let r = admin
                .create_topics(
                    &[NewTopic::new(name, 1, TopicReplication::Fixed(1))],
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))),
                )
                .await;
            match r.as_deref() {
                Ok([Ok(_)]) => return,
                Ok([Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))]) => return,
                other => {
                    if start.elapsed() > PATIENCE {
                        panic!("cannot create topic {name}: {other:?}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// SIGKILLs the broker (memory storage: its topics and messages are gone).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

/// A consumer reading partition 0 of `topic` from the beginning.
pub fn consumer(bootstrap: &str, topic: &str) -> StreamConsumer {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("kaudit-test-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    c
}

/// One consumed Kafka message.
#[derive(Clone, Debug)]
pub struct Received {
    /// Key as text.
    pub key: Option<String>,
    /// Headers as (name, text).
    pub headers: Vec<(String, String)>,
    /// The body as JSON.
    pub body: Value,
}

impl Received {
    fn from(m: &BorrowedMessage<'_>) -> Received {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Received {
            key: m.key().map(|k| String::from_utf8_lossy(k).to_string()),
            headers,
            body: serde_json::from_slice(m.payload().unwrap_or_default()).expect("a JSON body"),
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The alert uuid of the body.
    pub fn uuid(&self) -> String {
        self.body["uuid"].as_str().unwrap_or_default().to_string()
    }
}

/// Reads messages until `done` holds for what was read so far.
pub async fn consume_until(
    c: &StreamConsumer,
    what: &str,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done(&out) {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Err(_) => panic!("timed out waiting for {what}; got {} messages", out.len()),
            Ok(Ok(m)) => out.push(Received::from(&m)),
            // Transport errors while a broker restarts: keep reading.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    out
}

/// The distinct uuids of received messages.
pub fn uuids(msgs: &[Received]) -> HashSet<String> {
    msgs.iter().map(Received::uuid).collect()
}

/// moto's server (`moto_server -p PORT`).
pub struct Moto {
    /// Its port.
    pub port: u16,
    _dir: tempfile::TempDir,
    _proc: Proc,
    http: reqwest::Client,
}

/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

impl Moto {
    /// Starts one and waits until it answers HTTP.
    pub async fn start(bin: PathBuf) -> Moto {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut proc = Proc::spawn(&mut cmd, dir.path().join("moto.log"));
        wait_port(&mut proc, "moto_server", port).await;
        kaudit::transport::tls::install_crypto_provider();
        let http = reqwest::Client::new();
        let m = Moto {
            port,
            _dir: dir,
            _proc: proc,
            http,
        };
        let start = Instant::now();
        while m
            .http
            .get(format!("{}/moto-api/", m.url()))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(start.elapsed() < PATIENCE, "moto never answered HTTP");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        m
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An SNS Query API call; returns the XML answer.
    pub async fn sns(&self, params: &[(&str, &str)]) -> String {
        let body = params
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let r = self
            .http
            .post(format!("{}/", self.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body)
            .send()
            .await
            .expect("sns call");
        let status = r.status();
        let text = r.text().await.expect("sns answer");
        assert!(status.is_success(), "sns {params:?}: {status}: {text}");
        text
    }

    /// An SQS JSON-protocol call.
    pub async fn sqs(&self, action: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/", self.url()))
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("sqs call");
        let status = r.status();
        let text = r.text().await.expect("sqs answer");
        assert!(status.is_success(), "sqs {action}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates topic `name` and an SQS queue subscribed to it (raw delivery off); returns the
    /// topic ARN and the queue URL.
    pub async fn topic_with_queue(&self, name: &str) -> (String, String) {
        let xml = self.sns(&[("Action", "CreateTopic"), ("Name", name)]).await;
        let arn = between(&xml, "<TopicArn>", "</TopicArn>").expect("TopicArn");
        let q = self
            .sqs("CreateQueue", json!({"QueueName": format!("{name}-q")}))
            .await;
        let queue_url = q["QueueUrl"].as_str().expect("QueueUrl").to_string();
        let queue_arn = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{name}-q");
        self.sns(&[
            ("Action", "Subscribe"),
            ("TopicArn", &arn),
            ("Protocol", "sqs"),
            ("Endpoint", &queue_arn),
        ])
        .await;
        (arn, queue_url)
    }

    /// Receives until `n` messages came; returns their bodies parsed as JSON (SNS envelopes).
    pub async fn receive(&self, queue_url: &str, n: usize) -> Vec<Value> {
        self.receive_until(queue_url, |m| m.len() >= n).await
    }

    /// Receives until `done` holds for the envelopes received so far.
    pub async fn receive_until(
        &self,
        queue_url: &str,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let start = Instant::now();
        while !done(&out) {
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for SQS messages; got {out:?}"
            );
            let r = self
                .sqs(
                    "ReceiveMessage",
                    json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1, "MessageAttributeNames": ["All"]}),
                )
                .await;
            for m in r["Messages"].as_array().cloned().unwrap_or_default() {
                let body = m["Body"].as_str().unwrap_or_default();
                out.push(serde_json::from_str(body).expect("an SNS envelope"));
                self.sqs(
                    "DeleteMessage",
                    json!({"QueueUrl": queue_url, "ReceiptHandle": m["ReceiptHandle"]}),
                )
                .await;
            }
        }
        out
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters (the Query API's form).
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text between two markers.
pub fn between(s: &str, open: &str, close: &str) -> Option<String> {
    let a = s.find(open)? + open.len();
    let b = s[a..].find(close)?;
    Some(s[a..a + b].to_string())
}

/// Google's Pub/Sub emulator.
pub struct PubsubEmulator {
    /// Its port.
    pub port: u16,
    _dir: tempfile::TempDir,
    _proc: Proc,
    http: reqwest::Client,
}

impl PubsubEmulator {
    /// Starts one and waits until it answers HTTP.
    pub async fn start(bin: PathBuf) -> PubsubEmulator {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(bin);
        cmd.arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .env("JAVA", "/usr/bin/java");
        let mut proc = Proc::spawn(&mut cmd, dir.path().join("emulator.log"));
        wait_port(&mut proc, "the Pub/Sub emulator", port).await;
        kaudit::transport::tls::install_crypto_provider();
        let e = PubsubEmulator {
            port,
            _dir: dir,
            _proc: proc,
            http: reqwest::Client::new(),
        };
        let start = Instant::now();
        while e
            .http
            .get(format!("{}/", e.url()))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < PATIENCE,
                "the emulator never answered HTTP"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        e
    }

    /// `127.0.0.1:<port>`, for `emulator_host`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .json(&body)
            .send()
            .await
            .expect("emulator call");
        let status = r.status();
        let text = r.text().await.expect("emulator answer");
        assert!(status.is_success(), "{path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates topic `t` and subscription `s` on it in project `p`.
    pub async fn topic_with_subscription(&self, p: &str, t: &str, s: &str) {
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/projects/{p}/topics/{t}"),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/projects/{p}/subscriptions/{s}"),
            json!({"topic": format!("projects/{p}/topics/{t}"), "ackDeadlineSeconds": 60}),
        )
        .await;
    }

    /// Creates topic `t` and subscription `s` on it with an ack deadline of `deadline_secs`.
    pub async fn topic_with_deadline(&self, p: &str, t: &str, s: &str, deadline_secs: u32) {
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/projects/{p}/topics/{t}"),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/projects/{p}/subscriptions/{s}"),
            json!({"topic": format!("projects/{p}/topics/{t}"), "ackDeadlineSeconds": deadline_secs}),
        )
        .await;
    }

    /// Publishes each of `data` (JSON) as one message to topic `t`.
    pub async fn publish(&self, p: &str, t: &str, data: &[Value]) {
        use base64::Engine;
        let messages: Vec<Value> = data
            .iter()
            .map(|d| json!({"data": base64::engine::general_purpose::STANDARD.encode(d.to_string())}))
            .collect();
        self.call(
            reqwest::Method::POST,
            &format!("/v1/projects/{p}/topics/{t}:publish"),
            json!({ "messages": messages }),
        )
        .await;
    }

    /// One pull that returns at once, without acking: the messages waiting now.
    pub async fn peek(&self, p: &str, s: &str) -> Vec<Value> {
        let r = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/projects/{p}/subscriptions/{s}:pull"),
                json!({"maxMessages": 100, "returnImmediately": true}),
            )
            .await;
        r["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Pulls (and acks) until `n` messages came; returns the `message` objects.
    pub async fn pull(&self, p: &str, s: &str, n: usize) -> Vec<Value> {
        self.pull_until(p, s, |m| m.len() >= n).await
    }

    /// Pulls (and acks) until `done` holds for the messages pulled so far.
    pub async fn pull_until(
        &self,
        p: &str,
        s: &str,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let start = Instant::now();
        while !done(&out) {
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for Pub/Sub messages; got {out:?}"
            );
            let r = self
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/projects/{p}/subscriptions/{s}:pull"),
                    json!({"maxMessages": 100, "returnImmediately": true}),
                )
                .await;
            let got = r["receivedMessages"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if got.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let ack_ids: Vec<Value> = got.iter().map(|m| m["ackId"].clone()).collect();
            self.call(
                reqwest::Method::POST,
                &format!("/v1/projects/{p}/subscriptions/{s}:acknowledge"),
                json!({ "ackIds": ack_ids }),
            )
            .await;
            out.extend(got.into_iter().map(|m| m["message"].clone()));
        }
        out
    }
}

/// Decodes a Pub/Sub message's base64 `data` as JSON.
pub fn pubsub_data(m: &Value) -> Value {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(m["data"].as_str().unwrap_or_default())
        .expect("base64 data");
    serde_json::from_slice(&raw).expect("JSON data")
}

/// A Falco rule matching `examples/audit/exec-into-pod.json`.
const EXEC_RULE: &str = r#"
- required_engine_version: 15
- rule: Attach/Exec Pod
  desc: Someone opened a shell in a pod or attached to one.
  condition: ka.verb = create and ka.target.resource = pods and ka.target.subresource in (exec, attach)
  output: Attach/Exec to pod (user=%ka.user.name pod=%ka.target.name resource=%ka.target.resource ns=%ka.target.namespace action=%ka.target.subresource)
  priority: NOTICE
  source: k8s_audit
  tags: [k8s]
"#;

/// One audit EventList POSTed to `/k8s-audit` of a running pipeline (rules engine) reaches
/// Kafka, SNS and Pub/Sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_audit_events_reach_every_broker() {
    let (Some(tansu), Some(moto), Some(emulator)) =
        (tansu_bin(), moto_bin(), pubsub_emulator_bin())
    else {
        return;
    };
    let broker = Tansu::start(tansu).await;
    broker.create_topic("falco").await;
    let moto = Moto::start(moto).await;
    let (arn, queue) = moto.topic_with_queue("falco").await;
    let emu = PubsubEmulator::start(emulator).await;
    emu.topic_with_subscription("kaudit-test", "falco", "falco-sub")
        .await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("id"), "AKIDTEST").unwrap();
    std::fs::write(dir.path().join("secret"), "c2VjcmV0").unwrap();
    let mut cfg = crate::support::config(
        dir.path(),
        &format!(
            "  - name: kafka\n    type: kafka\n    brokers: [\"{}\"]\n    topic: falco\n    key: namespace\n  - name: sns\n    type: sns\n    topic_arn: {arn}\n    endpoint: {}\n    access_key_id_file: {}\n    secret_access_key_file: {}\n  - name: pubsub\n    type: pubsub\n    project: kaudit-test\n    topic: falco\n    emulator_host: {}\n",
            broker.bootstrap(),
            moto.url(),
            dir.path().join("id").display(),
            dir.path().join("secret").display(),
            emu.host()
        ),
    );
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    // Our own rule file, so that the test does not depend on the embedded ruleset's contents.
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, EXEC_RULE).unwrap();
    cfg.rules.files = vec![rules];
    let running = kaudit::pipeline::start(cfg).await.unwrap();
    let events = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audit/exec-into-pod.json"),
    )
    .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/k8s-audit", running.local_addr()))
        .header("content-type", "application/json")
        .body(events)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());

    let kafka = consume_until(
        &consumer(&broker.bootstrap(), "falco"),
        "a Kafka alert",
        |m| !m.is_empty(),
    )
    .await;
    let k = &kafka[0];
    let uuid = k.uuid();
    let rule = k.body["rule"].as_str().unwrap().to_string();
    let sns = moto
        .receive_until(&queue, |m| {
            m.iter()
                .any(|e| e["MessageAttributes"]["uuid"]["Value"] == uuid.as_str())
        })
        .await;
    let pubsub = emu
        .pull_until("kaudit-test", "falco-sub", |m| {
            m.iter().any(|m| m["attributes"]["uuid"] == uuid.as_str())
        })
        .await;
    running.shutdown().await;

    assert_eq!(k.body["source"], "k8s_audit");
    assert_eq!(k.body["output_fields"]["ka.target.namespace"], "payments");
    assert_eq!(k.key.as_deref(), Some("payments"));
    assert_eq!(k.header("rule"), Some(rule.as_str()));
    // The same alert (same uuid) went to every sink.
    assert!(
        sns.iter()
            .any(|e| e["MessageAttributes"]["uuid"]["Value"] == uuid.as_str()
                && e["MessageAttributes"]["rule"]["Value"] == rule.as_str())
    );
    assert!(pubsub.iter().any(
        |m| m["attributes"]["uuid"] == uuid.as_str() && pubsub_data(m)["rule"] == rule.as_str()
    ));
}
