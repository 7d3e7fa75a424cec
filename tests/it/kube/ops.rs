//! What several kube tests do: wait for a state, read objects as JSON, run `kaudit operator`
//! under its own ServiceAccount, and run `kaudit serve` from the configuration the operator
//! rendered.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use super::cluster::{Cluster, Proc};
use crate::support::free_port;

/// Polls `f` every 250 ms until it returns `Some`; panics naming `what` after `timeout`, with
/// the last `Err` text `f` gave.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {what}: {last}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `kubectl get <args> -o json` as the admin; `None` when it fails (NotFound).
pub fn get_json(c: &Cluster, args: &[&str]) -> Option<Value> {
    let mut all: Vec<&str> = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = c.kubectl(&c.admin, &all);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// A Secret's data, decoded: key → text.
pub fn secret_data(secret: &Value) -> Vec<(String, String)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    secret["data"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let bytes = b64.decode(v.as_str().unwrap_or("")).unwrap_or_default();
                    (k.clone(), String::from_utf8_lossy(&bytes).into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A kubeconfig for the operator's ServiceAccount from install.yaml, with a token from the
/// TokenRequest API (what the kubelet would mount into its pod).
pub fn operator_kubeconfig(c: &Cluster) -> PathBuf {
    let token = c.kubectl_ok(
        &c.admin,
        &[
            "create",
            "token",
            "kaudit-operator",
            "-n",
            "kaudit-system",
            "--duration=2h",
        ],
    );
    let kc = c.token_user("kaudit-operator", token.trim());
    let who = c.kubectl_ok(
        &kc,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(who, "system:serviceaccount:kaudit-system:kaudit-operator");
    kc
}

/// A running `kaudit operator`.
pub struct Operator {
    /// The process.
    pub proc: Proc,
    /// Its `/healthz` and `/metrics` address.
    pub base: String,
}

impl Operator {
    /// Starts `kaudit operator` as `identity` with the credentials of `kubeconfig`, its Lease
    /// in kaudit-system (as the Deployment of install.yaml sets it).
    pub async fn start(c: &Cluster, kubeconfig: &Path, identity: &str) -> Operator {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaudit"));
        cmd.args(["operator", "--listen", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", "kaudit-system")
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info,kaudit=debug")
            .env_remove("KUBERNETES_SERVICE_HOST");
        let mut proc = Proc::spawn(&format!("operator-{identity}"), c.dir(), &mut cmd);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            proc.check_alive();
            assert!(Instant::now() < deadline, "operator never served /healthz");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Operator { proc, base }
    }

    /// Its `kaudit_operator_leader` gauge.
    pub async fn leader(&self) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("operator /metrics")
            .text()
            .await
            .expect("metrics body");
        crate::support::metric_line(&text, "kaudit_operator_leader ")
    }

    /// Every log line that reports the apiserver refusing the operator (RBAC).
    pub fn forbidden_lines(&self) -> Vec<String> {
        self.proc
            .log_text()
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
            .map(str::to_string)
            .collect()
    }
}

/// The holder of the operator's Lease, if any.
pub fn lease_holder(c: &Cluster) -> Option<String> {
    get_json(c, &["lease", "kaudit-operator", "-n", "kaudit-system"])
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .filter(|h| !h.is_empty())
}

/// The files a kubelet would mount for a rendered kaudit Deployment, in `dir`: the config
/// Secret's keys under `config/`, the rules ConfigMap's under `rules/`, and `data/`; the
/// rendered kaudit.yaml is rewritten to point there instead of `/etc/kaudit/...` and
/// `/var/lib/kaudit`. Returns the config file.
pub fn materialize(c: &Cluster, ns: &str, name: &str, dir: &Path) -> PathBuf {
    let secret = get_json(c, &["secret", &format!("{name}-config"), "-n", ns])
        .expect("the rendered config Secret");
    let rules = get_json(c, &["configmap", &format!("{name}-rules"), "-n", ns])
        .expect("the rendered rules ConfigMap");
    let config_dir = dir.join("config");
    let rules_dir = dir.join("rules");
    let data_dir = dir.join("data");
    for d in [&config_dir, &rules_dir, &data_dir] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let rewrite = |text: &str| {
        text.replace("/etc/kaudit/config", &config_dir.to_string_lossy())
            .replace("/etc/kaudit/rules", &rules_dir.to_string_lossy())
            .replace("/var/lib/kaudit", &data_dir.to_string_lossy())
    };
    for (k, v) in secret_data(&secret) {
        let v = if k == "kaudit.yaml" { rewrite(&v) } else { v };
        std::fs::write(config_dir.join(&k), v).expect("write config file");
    }
    for (k, v) in rules["data"].as_object().expect("rules data") {
        std::fs::write(rules_dir.join(k), v.as_str().unwrap_or("")).expect("write rules file");
    }
    config_dir.join("kaudit.yaml")
}

/// `kaudit serve --config <config> --listen 127.0.0.1:<port>`, ready when `/readyz` answers.
pub async fn serve(c: &Cluster, name: &str, config: &Path, port: u16) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaudit"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    let mut proc = Proc::spawn(name, c.dir(), &mut cmd);
    wait_ready(&mut proc, port, false).await;
    proc
}

/// Waits until kaudit on `port` accepts connections and, over plain HTTP, answers `/readyz`
/// (with TLS it may demand a client certificate the probe does not have).
pub async fn wait_ready(proc: &mut Proc, port: u16, tls: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let ready = up
            && (tls
                || reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
                    .await
                    .is_ok_and(|r| r.status().is_success()));
        if ready {
            return;
        }
        proc.check_alive();
        assert!(Instant::now() < deadline, "kaudit never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The alerts a file sink wrote (JSON lines), every file under `dir` whose name starts with
/// `prefix`.
pub fn alerts_in(dir: &Path, prefix: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                // The sink may be mid-line: only whole lines count.
                out.extend(
                    text.lines()
                        .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
                );
            }
        }
    }
    out
}
