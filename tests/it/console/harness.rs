//! A kaudit process with the console on: Falco's `http_output` intake takes the alerts the
//! tests POST (so they choose every field), the console-store sink keeps them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kaudit::alert::{Alert, Priority};
use serde_json::{Map, Value};

use crate::support::{PATIENCE, free_port};

/// The webhook's token (the intake's), never accepted by the console.
pub const WEBHOOK_TOKEN: &str = "webhook-0123";
/// A console token that sees everything.
pub const ADMIN: &str = "console-admin-0123";
/// A console token bound to `team-a`.
pub const TEAM_A: &str = "console-team-a-0123";
/// A console token bound to `team-b`.
pub const TEAM_B: &str = "console-team-b-0123";

/// A running kaudit, killed on drop.
pub struct Kaudit {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its data directory's parent (config, data).
    pub dir: tempfile::TempDir,
    /// An HTTP client.
    pub http: reqwest::Client,
}

/// The config every console test starts from; `extra` is appended (top-level keys).
pub fn config_yaml(data_dir: &Path, falco_port: u16, extra: &str) -> String {
    format!(
        "data_dir: {data}\n\
         detect:\n  mode: both\n\
         falco:\n  forward_url: http://127.0.0.1:{falco_port}/k8s-audit\n\
         auth:\n  tokens: [{WEBHOOK_TOKEN}]\n\
         spool:\n  retry_initial_ms: 20\n  retry_max_ms: 100\n  denied_retry_secs: 0\n\
         console:\n  tokens:\n\
         \x20   - token: {ADMIN}\n\
         \x20   - {{token: {TEAM_A}, namespaces: [team-a]}}\n\
         \x20   - {{token: {TEAM_B}, namespaces: [team-b]}}\n\
         {extra}",
        data = data_dir.display()
    )
}

/// The `sinks:` most tests use: the console's and a file sink.
pub fn default_sinks(dir: &Path) -> String {
    format!(
        "sinks:\n  - {{name: console-store, type: console}}\n  - {{name: archive, type: file, path: {}}}\n",
        dir.join("alerts.jsonl").display()
    )
}

impl Kaudit {
    /// Starts kaudit with [`config_yaml`] plus `extra` (which should hold `sinks:`), and waits
    /// for `/readyz`.
    pub async fn start(extra: impl FnOnce(&Path) -> String) -> Kaudit {
        kaudit::transport::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let extra = extra(dir.path());
        let yaml = config_yaml(&dir.path().join("data"), free_port(), &extra);
        Self::start_yaml(dir, &yaml).await
    }

    /// Starts kaudit with exactly `yaml` as its config file.
    pub async fn start_yaml(dir: tempfile::TempDir, yaml: &str) -> Kaudit {
        kaudit::transport::tls::install_crypto_provider();
        let cfg = dir.path().join("kaudit.yaml");
        std::fs::write(&cfg, yaml).expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("kaudit.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kaudit"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kaudit");
        let k = Kaudit {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::new(),
        };
        k.wait_ready().await;
        k
    }

    async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            if start.elapsed() > PATIENCE {
                panic!("kaudit did not get ready:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// What kaudit logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kaudit.log")).unwrap_or_default()
    }

    /// POSTs alerts as Falco's `http_output` does (one per request).
    pub async fn post(&self, alerts: &[Alert]) {
        for a in alerts {
            let r = self
                .http
                .post(format!("{}/", self.base))
                .bearer_auth(WEBHOOK_TOKEN)
                .header("content-type", "application/json")
                .body(a.to_json())
                .send()
                .await
                .expect("POST alert");
            assert_eq!(r.status(), 200, "POST / refused {}", a.uuid);
        }
    }

    /// GETs `path` (under `/api/v1/`) with `token`; returns status and JSON body.
    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/api/v1/{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The value of metric `name` (a whole line's name with its labels, as `metric_line` reads
    /// it) on kaudit's `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("/metrics body");
        crate::support::metric_line(&text, name)
    }

    /// Waits until the admin sees `n` alerts matching `query`.
    pub async fn wait_count(&self, query: &str, n: u64) {
        let start = Instant::now();
        loop {
            let (s, v) = self.get(ADMIN, &format!("stats?{query}")).await;
            if s == 200 && v["total"].as_u64() == Some(n) {
                return;
            }
            if start.elapsed() > PATIENCE {
                panic!(
                    "waited for {n} alerts matching {query:?}; last: {s} {v}\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Kaudit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An alert about `namespace` by `user`, raised at `time`.
pub fn alert_at(
    rule: &str,
    priority: Priority,
    namespace: &str,
    user: &str,
    time: DateTime<Utc>,
) -> Alert {
    let mut f = Map::new();
    f.insert("ka.target.namespace".into(), namespace.into());
    f.insert("ka.target.resource".into(), "secrets".into());
    f.insert("ka.target.name".into(), "db-password".into());
    f.insert("ka.user.name".into(), user.into());
    f.insert("ka.verb".into(), "get".into());
    Alert {
        uuid: uuid::Uuid::new_v4(),
        time,
        rule: rule.into(),
        priority,
        source: "k8s_audit".into(),
        hostname: "kaudit-test".into(),
        output: format!(
            "{}: {priority} {rule} (user={user} ns={namespace} resource=secrets)",
            time.format("%H:%M:%S%.9f")
        ),
        output_fields: f,
        tags: vec!["k8s".into(), format!("team:{namespace}")],
    }
}

/// [`alert_at`] now.
pub fn alert(rule: &str, priority: Priority, namespace: &str, user: &str) -> Alert {
    alert_at(rule, priority, namespace, user, Utc::now())
}

/// A value of a JSON array of objects by key.
pub fn values(v: &Value, list: &str, key: &str) -> Vec<String> {
    v[list]
        .as_array()
        .map(|a| a.iter().filter_map(|x| pointer_str(x, key)).collect())
        .unwrap_or_default()
}

fn pointer_str(v: &Value, key: &str) -> Option<String> {
    v.pointer(key).and_then(Value::as_str).map(str::to_string)
}

/// The uuids of a page of alerts.
pub fn uuids(page: &Value) -> Vec<String> {
    values(page, "alerts", "/alert/uuid")
}
