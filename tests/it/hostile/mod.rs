//! Hostile input and hostile tenants, against a real `kaudit serve` process (and the operator's
//! real renderer): each test is one attack of issue 13, and asserts that it fails, that the
//! failure is visible (a refusal, a status, a metric), and that everything else keeps flowing.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{PATIENCE, free_port};

mod budget;
mod config;
mod connections;
mod sinks;

/// A `kaudit serve` process on its own port, data directory and config file; killed on drop.
pub struct Kaudit {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The config file (rewrite it to reload).
    pub config: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// stderr, for assertions on logs.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kaudit {
    /// Starts kaudit with `yaml` (which must not set `listen` or `data_dir`) and waits until
    /// `/readyz` answers 200.
    pub async fn start(yaml: &str) -> Kaudit {
        crate::support::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        let config = dir.path().join("kaudit.yaml");
        let full = format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\n{yaml}",
            data.display()
        );
        std::fs::write(&config, full).expect("write config");
        let log = dir.path().join("stderr.log");
        let child = spawn(&config, &log);
        let k = Kaudit {
            child,
            base: format!("http://127.0.0.1:{port}"),
            config,
            data,
            log,
            _dir: dir,
        };
        k.wait_ready().await;
        k
    }

    /// Stops the process (SIGKILL) and starts it again on the same config and data directory.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.config, &self.log);
        self.wait_ready().await;
    }

    /// Waits until `/readyz` answers 200 (panics with the log when the process died).
    pub async fn wait_ready(&self) {
        let c = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = c.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "kaudit never became ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What kaudit logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics` (without a token).
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Posts an audit payload; the status code.
    pub async fn post(&self, body: &[u8]) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/k8s-audit", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Rewrites the config (same listen and data dir) with `yaml` and sends SIGHUP.
    pub fn reconfigure(&self, yaml: &str) {
        let old = std::fs::read_to_string(&self.config).expect("config");
        let head: String = old.lines().take(2).map(|l| format!("{l}\n")).collect();
        let mut f = std::fs::File::create(&self.config).expect("config");
        f.write_all(format!("{head}{yaml}").as_bytes())
            .expect("write");
        let _ = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status();
    }
}

/// `kaudit serve -c config`, stderr appended to `log`.
fn spawn(config: &Path, log: &Path) -> Child {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(["serve", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn kaudit")
}

impl Drop for Kaudit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`; panics with `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the first metric line starting with `prefix` (0 when absent).
pub fn metric(text: &str, prefix: &str) -> f64 {
    crate::support::metric_line(text, prefix)
}

/// A file under `dir` holding `content`.
pub fn file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write file");
    p
}
