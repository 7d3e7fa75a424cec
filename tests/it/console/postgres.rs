//! The same API tests on PostgreSQL (`store.url`), against a real server this test starts
//! (Debian's `postgresql` binaries: initdb and pg_ctl in a temp dir on a free port; as the
//! `postgres` user when the tests run as root), plus what only a shared store does: two
//! replicas write to and read one history, and the live feed crosses them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use kaudit::alert::Priority;

use super::api;
use super::harness::*;
use crate::support::{PATIENCE, free_port};

/// A PostgreSQL server of our own, stopped on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    as_postgres: bool,
}

fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|d| d.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

impl Postgres {
    /// Starts one, or `None` (skipped outside CI) when PostgreSQL is not installed.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = pg_bin() else {
            let hint = "PostgreSQL is missing: apt-get install postgresql (or `source scripts/lib/deps.sh && ensure_postgres`)";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{hint}");
            }
            eprintln!("SKIPPED: {hint}");
            return None;
        };
        // initdb refuses to run as root: the cluster belongs to `postgres` then.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::tempdir().expect("temp dir");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let pg = Postgres {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = pg.dir.path().join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-A",
                "trust",
                "-U",
                "kaudit",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            pg.port,
            pg.dir.path().display()
        );
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &pg.dir.path().join("log").display().to_string(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        Some(pg)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    /// Creates a database of its own for one kaudit (or a group of replicas); returns the
    /// `store:` YAML that points at it.
    pub async fn database(&self, name: &str) -> String {
        let admin = format!(
            "host=127.0.0.1 port={} user=kaudit dbname=postgres",
            self.port
        );
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        format!(
            "store:\n  url: postgres://kaudit@127.0.0.1:{}/{name}\n",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let exe = self.bin.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&exe)
                .args(args)
                .output()
        } else {
            Command::new(&exe).args(args).output()
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_api_filters_pages_and_counts() {
    let Some(pg) = Postgres::start() else { return };
    api::filters_pages_and_counts_on(&pg.database("filters").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tenant_tokens_never_see_another_namespace() {
    let Some(pg) = Postgres::start() else { return };
    api::tenant_tokens_never_see_another_namespace_on(&pg.database("tenants").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_live_feed_gets_a_new_alert_within_a_second() {
    let Some(pg) = Postgres::start() else { return };
    api::live_feed_gets_a_new_alert_within_a_second_on(&pg.database("live").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sinks_show_health_errors_and_dead_letters() {
    let Some(pg) = Postgres::start() else { return };
    api::sinks_show_health_errors_and_dead_letters_on(&pg.database("sinks").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_history_and_one_live_feed() {
    let Some(pg) = Postgres::start() else { return };
    let store = pg.database("replicas").await;
    let retention = "  retention:\n    max_age_secs: 3600\n    check_interval_ms: 100\n";
    let one = Kaudit::start(|d| format!("{store}{retention}{}", default_sinks(d))).await;
    let two = Kaudit::start(|d| format!("{store}{retention}{}", default_sinks(d))).await;
    let mut feed_two = api::Feed::open(&two, ADMIN, "").await;

    let a = alert("Secret Read", Priority::Warning, "team-a", "alice");
    one.post(std::slice::from_ref(&a)).await;
    let got = feed_two
        .next_alert(PATIENCE)
        .await
        .expect("replica two's feed gets replica one's alert");
    assert_eq!(got["alert"]["uuid"], a.uuid.to_string());
    let b = alert("Exec Into Pod", Priority::Critical, "team-b", "bob");
    two.post(std::slice::from_ref(&b)).await;
    one.wait_count("", 2).await;
    two.wait_count("", 2).await;

    // Retention by age runs there too (either replica may delete).
    let old = alert_at(
        "Secret Read",
        Priority::Warning,
        "team-a",
        "alice",
        Utc::now() - chrono::Duration::days(2),
    );
    one.post(std::slice::from_ref(&old)).await;
    let start = Instant::now();
    loop {
        let (s, _) = two.get(ADMIN, &format!("alerts/{}", old.uuid)).await;
        let (_, st) = two.get(ADMIN, "stats").await;
        let mut deleted = 0.0;
        for k in [&one, &two] {
            let m = k
                .http
                .get(format!("{}/metrics", k.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            deleted += crate::support::metric_line(&m, "kaudit_console_store_deleted_total");
        }
        if s == 404 && st["total"] == 2 && deleted >= 1.0 {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "old alert never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
