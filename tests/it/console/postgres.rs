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
        Postgres::start_with(None)
    }

    /// Starts one that takes only TLS connections from clients with a certificate of `pki`'s CA
    /// (`hostssl ... cert`: the certificate's CN is the user), serving `pki`'s server certificate.
    fn start_tls(pki: &[PathBuf; 5]) -> Option<Postgres> {
        Postgres::start_with(Some(pki))
    }

    fn start_with(pki: Option<&[PathBuf; 5]>) -> Option<Postgres> {
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
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60",
            pg.port,
            pg.dir.path().display()
        );
        if let Some([ca, cert, key, ..]) = pki {
            // The server's copies, owned by the server's user; its key readable by it alone.
            for (from, to) in [
                (ca, "ca.pem"),
                (cert, "server.pem"),
                (key, "server-key.pem"),
            ] {
                std::fs::copy(from, data.join(to)).expect("copy the server's PKI");
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
            )
            .expect("pg_hba.conf");
            if as_postgres {
                let ok = Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&data)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "chown the server's PKI to postgres");
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server-key.pem"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("chmod the server key");
            opts.push_str(
                " -c ssl=on -c ssl_cert_file=server.pem -c ssl_key_file=server-key.pem -c ssl_ca_file=ca.pem",
            );
        }
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
            deleted += k.metric("kaudit_console_store_deleted_total").await;
        }
        if s == 404 && st["total"] == 2 && deleted >= 1.0 {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "old alert never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `sslmode=require` is TLS that verifies the server (system roots plus `store.tls.ca_file`) and
/// presents `store.tls.cert_file`; against a server that takes only TLS with client
/// certificates, each missing piece is a refusal that says what is wrong, never a silent
/// fallback to plain text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_verified_tls_with_a_client_certificate() {
    use kaudit::store::{StoreConfig, StoreMetrics};
    use kaudit::transport::ClientTls;
    crate::support::install_crypto_provider();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = crate::support::write_pki(pki_dir.path());
    let Some(pg) = Postgres::start_tls(&pki) else {
        return;
    };
    let [ca, _, _, cert, key] = pki.clone();
    let url = |query: &str| {
        kaudit::secret::Secret::new(format!(
            "postgres://kaudit@127.0.0.1:{}/postgres{query}",
            pg.port
        ))
    };
    let full = ClientTls {
        ca_file: Some(ca.clone()),
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
    };
    let open = |u: kaudit::secret::Secret, tls: ClientTls| async move {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            url: Some(u),
            tls,
            ..StoreConfig::default()
        };
        kaudit::store::open(&cfg, dir.path(), StoreMetrics::default())
            .await
            .map(|s| (s, dir))
            .map_err(|e| e.to_string())
    };

    let (store, _dir) = open(url("?sslmode=require"), full.clone())
        .await
        .expect("TLS with the CA and a client certificate");
    let a = crate::support::alert("over TLS", Priority::Warning);
    store
        .insert(vec![a.clone()])
        .await
        .expect("insert over TLS");
    assert_eq!(store.count().await.unwrap(), 1);

    let e = open(
        url("?sslmode=require"),
        ClientTls {
            ca_file: None,
            ..full.clone()
        },
    )
    .await
    .err()
    .expect("a server certificate of an unknown CA is refused");
    assert!(e.contains("certificate"), "{e}");

    let e = open(url(""), full.clone())
        .await
        .err()
        .expect("without sslmode=require the connection is plain, and this server refuses it");
    assert!(e.contains("no encryption") || e.contains("pg_hba"), "{e}");

    let e = open(url("?sslmode=require"), ClientTls::ca(ca.clone()))
        .await
        .err()
        .expect("no client certificate, no entry");
    assert!(e.contains("certificate"), "{e}");

    let e = open(
        url("?sslmode=require"),
        ClientTls {
            ca_file: Some(pki_dir.path().join("missing.pem")),
            ..full
        },
    )
    .await
    .err()
    .expect("a missing CA file is an error naming it");
    assert!(e.contains("missing.pem"), "{e}");
}
