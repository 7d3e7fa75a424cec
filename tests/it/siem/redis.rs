//! The `redis` sink against redis-server: XADD entries with their fields, per-priority
//! streams, MAXLEN trimming, a password from a file, TLS with a client certificate, a key of
//! another type dead-lettered, and a kill and restart (append-only file) losing nothing.

use std::collections::HashSet;

use kaudit::alert::{Alert, Priority};
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;

use super::servers::{REDIS_PASSWORD, RedisServer, SyslogTls, redis_bin};
use super::{Destination, outage_then_restart, start, wait_sent};
use crate::support::{alert, config, json_lines};

async fn conn(port: u16) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The entries of `key`; a restarted server answers LOADING while it replays its append-only
/// file, so that answer is asked again.
async fn entries(port: u16, key: &str) -> StreamRangeReply {
    let start = std::time::Instant::now();
    loop {
        match conn(port).await.xrange_all(key).await {
            Ok(r) => return r,
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                    && start.elapsed() < crate::support::PATIENCE =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("XRANGE {key}: {e}"),
        }
    }
}

fn password_file(dir: &std::path::Path) -> String {
    let p = dir.join("redis-password");
    std::fs::write(&p, format!("{REDIS_PASSWORD}\n")).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn entries_per_priority_stream_trimmed_to_maxlen() {
    let Some(bin) = redis_bin() else { return };
    let server = RedisServer::start(bin, None).await;
    let dir = tempfile::tempdir().unwrap();
    let (r, m) = start(
        dir.path(),
        &format!(
            "  - name: redis\n    type: redis\n    url: redis://127.0.0.1:{}/0\n    stream: 'falco:{{priority}}'\n    maxlen: 3\n    exact_maxlen: true\n    password_file: {}\n",
            server.port,
            password_file(dir.path())
        ),
    )
    .await;
    let warnings: Vec<Alert> = (0..5)
        .map(|i| alert(&format!("W{i}"), Priority::Warning))
        .collect();
    let crit = alert("Create Privileged Pod", Priority::Critical);
    for a in warnings.iter().chain([&crit]) {
        r.sender().send(a.clone()).await.unwrap();
    }
    wait_sent(&m, "redis", 6).await;
    r.shutdown().await;
    let w = entries(server.port, "falco:warning").await;
    let got: Vec<String> = w
        .ids
        .iter()
        .map(|e| e.get::<String>("uuid").unwrap())
        .collect();
    let want: Vec<String> = warnings[2..].iter().map(|a| a.uuid.to_string()).collect();
    assert_eq!(got, want, "trimmed to the newest 3, in order");
    let c = entries(server.port, "falco:critical").await;
    assert_eq!(c.ids.len(), 1);
    let e = &c.ids[0];
    assert_eq!(
        e.get::<String>("rule").as_deref(),
        Some("Create Privileged Pod")
    );
    assert_eq!(e.get::<String>("priority").as_deref(), Some("Critical"));
    assert_eq!(e.get::<String>("source").as_deref(), Some("k8s_audit"));
    let body: serde_json::Value = serde_json::from_str(&e.get::<String>("alert").unwrap()).unwrap();
    assert_eq!(body, serde_json::to_value(&crit).unwrap());
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    let Some(bin) = redis_bin() else { return };
    let pki = tempfile::tempdir().unwrap();
    let [ca, cert, key, client, client_key] = crate::support::write_pki(pki.path());
    let server = RedisServer::start(
        bin,
        Some(SyslogTls {
            ca: ca.clone(),
            cert,
            key,
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (r, m) = start(
        dir.path(),
        &format!(
            "  - name: redis\n    type: redis\n    url: rediss://127.0.0.1:{}/0\n    password_file: {}\n    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
            server.port,
            password_file(dir.path()),
            ca.display(),
            client.display(),
            client_key.display()
        ),
    )
    .await;
    let a = alert("Over TLS", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    wait_sent(&m, "redis", 1).await;
    r.shutdown().await;
    assert!(json_lines(&dir.path().join("dead-letter/redis.jsonl")).is_empty());
    // Read back over TLS with the same client identity.
    let certs = redis::TlsCertificates {
        client_tls: Some(redis::ClientTlsConfig {
            client_cert: std::fs::read(&client).unwrap(),
            client_key: std::fs::read(&client_key).unwrap(),
        }),
        root_cert: Some(std::fs::read(&ca).unwrap()),
    };
    let c = redis::Client::build_with_tls(
        format!("rediss://:{REDIS_PASSWORD}@127.0.0.1:{}/", server.port),
        certs,
    )
    .unwrap();
    let mut con = c.get_multiplexed_async_connection().await.unwrap();
    let got: StreamRangeReply = con.xrange_all("falco").await.unwrap();
    assert_eq!(got.ids[0].get::<String>("uuid"), Some(a.uuid.to_string()));
}

#[tokio::test]
async fn a_key_of_another_type_is_dead_lettered() {
    let Some(bin) = redis_bin() else { return };
    let server = RedisServer::start(bin, None).await;
    let _: () = conn(server.port)
        .await
        .set("taken", "a string")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: redis\n    type: redis\n    url: redis://127.0.0.1:{}\n    stream: taken\n    password_file: {}\n",
            server.port,
            password_file(dir.path())
        ),
    );
    let l = crate::support::refused_alert(&cfg, "redis").await;
    assert!(l["reason"].as_str().unwrap().contains("WRONGTYPE"), "{l}");
}

impl Destination for RedisServer {
    async fn stop(&mut self) {
        self.kill();
    }
    async fn start(&mut self) {
        self.restart().await;
    }
    async fn received(&mut self) -> HashSet<String> {
        entries(self.port, "falco")
            .await
            .ids
            .iter()
            .filter_map(|e| e.get::<String>("uuid"))
            .collect()
    }
}

#[tokio::test]
async fn an_outage_and_a_restart_lose_nothing() {
    let Some(bin) = redis_bin() else { return };
    let mut server = RedisServer::start(bin, None).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: redis\n    type: redis\n    url: redis://127.0.0.1:{}\n    password_file: {}\n    timeout_ms: 1000\n",
        server.port,
        password_file(dir.path())
    );
    outage_then_restart(dir.path(), &yaml, "redis", &mut server).await;
}
