//! End to end: audit events in over HTTP, alerts out on a real nats-server.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use kaudit::alert::Alert;
use kaudit::config::Config;

use crate::ingest::spawn_kaudit;
use crate::support::{NatsServer, nats_server_bin};

fn example(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("examples/audit")
            .join(name),
    )
    .unwrap()
}

/// falcosidekick's subject slugging: lower case, runs of non-alphanumerics to `_`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            gap = false;
        } else if !gap {
            out.push('_');
            gap = true;
        }
    }
    out
}

async fn subscriber(url: &str) -> async_nats::Subscriber {
    let c = async_nats::connect(url).await.unwrap();
    let sub = c.subscribe("falco.>").await.unwrap();
    c.flush().await.unwrap();
    // Keep the client alive as long as the subscription.
    std::mem::forget(c);
    sub
}

/// Receives messages until `quiet` passes with nothing new; returns (subject, alert) pairs.
async fn drain(
    sub: &mut async_nats::Subscriber,
    at_least: usize,
    quiet: Duration,
) -> Vec<(String, Alert)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let wait = if got.len() < at_least {
            deadline - tokio::time::Instant::now()
        } else {
            quiet
        };
        match tokio::time::timeout(wait, sub.next()).await {
            Ok(Some(m)) => {
                let a: Alert = serde_json::from_slice(&m.payload).unwrap();
                got.push((m.subject.to_string(), a));
            }
            Ok(None) => break,
            Err(_) => {
                assert!(
                    got.len() >= at_least,
                    "only {} of {at_least} alerts arrived",
                    got.len()
                );
                break;
            }
        }
    }
    got
}

fn nats_config(data_dir: &Path, nats_url: &str) -> Config {
    crate::support::config_from_yaml(&format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\nspool: {{retry_initial_ms: 20, retry_max_ms: 200}}\nsinks:\n  - name: soc\n    type: nats\n    servers: [{nats_url}]\n",
        data_dir.display()
    ))
}

async fn post(c: &reqwest::Client, url: String, body: Vec<u8>) -> u16 {
    c.post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_audit_events_arrive_on_nats_as_alerts() {
    let Some(bin) = nats_server_bin() else { return };
    let nats = NatsServer::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let mut sub = subscriber(&nats.url()).await;
    let running = kaudit::pipeline::start(nats_config(dir.path(), &nats.url()))
        .await
        .unwrap();
    let base = format!("http://{}", running.local_addr());
    let c = crate::ingest::client();

    let mut per_file = BTreeMap::new();
    for (file, expect) in [
        ("exec-into-pod.json", Some(1)),
        ("privileged-pod.json", Some(1)),
        ("cluster-admin-binding.json", Some(1)),
        ("secret-read.json", Some(1)),
        ("anonymous-request.json", None),
        ("list-watch-noise.json", Some(0)),
    ] {
        assert_eq!(
            post(&c, format!("{base}/k8s-audit"), example(file)).await,
            200,
            "{file}"
        );
        let got = drain(&mut sub, expect.unwrap_or(1), Duration::from_millis(500)).await;
        if let Some(n) = expect {
            assert_eq!(
                got.len(),
                n,
                "{file}: {:?}",
                got.iter().map(|(_, a)| &a.rule).collect::<Vec<_>>()
            );
        } else {
            assert!(!got.is_empty(), "{file}: no alert");
        }
        for (subject, a) in &got {
            assert_eq!(
                subject,
                &format!("falco.{}.{}", a.priority.as_lower(), slug(&a.rule))
            );
            assert_eq!(a.source, "k8s_audit");
            assert_eq!(a.output_fields["kaudit.origin"], "embedded");
            assert!(a.output.contains(a.priority.as_str()), "{}", a.output);
        }
        per_file.insert(file, got);
    }
    // The secret read that fires is the contractor's, not the control plane's.
    let (_, secret) = &per_file["secret-read.json"][0];
    assert!(
        secret.output.contains("mallory@example.com"),
        "{}",
        secret.output
    );
    running.shutdown().await;
}

#[test]
fn alerts_spooled_for_a_dead_sink_survive_sigkill() {
    let Some(bin) = nats_server_bin() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // NATS is not running yet: reserve a port for it.
    let nats_port = crate::support::free_port();
    let cfg = dir.path().join("kaudit.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}\nspool: {{retry_initial_ms: 20, retry_max_ms: 200}}\nsinks:\n  - name: soc\n    type: nats\n    servers: ['nats://127.0.0.1:{nats_port}']\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (mut kaudit, base) = spawn_kaudit(&cfg, &[]);
    let posted = 5;
    rt.block_on(async {
        let c = crate::ingest::client();
        for i in 0..posted {
            assert_eq!(
                post(
                    &c,
                    format!("{base}/k8s-audit"),
                    crate::support::unique_events(&example("exec-into-pod.json"), i)
                )
                .await,
                200
            );
        }
        // Wait until every alert is in the spool, then kill kaudit without warning.
        crate::support::wait_for_metric(&c, &base, "spooled alerts", posted as f64, |t| {
            crate::support::metric(t, "kaudit_sink_spooled_total", "soc")
        })
        .await;
    });
    kaudit.kill().unwrap();
    kaudit.wait().unwrap();

    // NATS comes up on the reserved port; kaudit restarts and delivers what it spooled.
    let nats = NatsServer::start_on(bin, nats_port);
    rt.block_on(async {
        let mut sub = subscriber(&nats.url()).await;
        let (mut kaudit, _) = spawn_kaudit(&cfg, &[]);
        let got = drain(&mut sub, posted, Duration::from_millis(500)).await;
        let uuids: HashSet<_> = got.iter().map(|(_, a)| a.uuid).collect();
        assert_eq!(uuids.len(), posted, "every spooled alert, once per uuid");
        kaudit.kill().unwrap();
        kaudit.wait().unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falco_http_output_is_routed_and_bad_alerts_are_refused() {
    let Some(bin) = nats_server_bin() else { return };
    let nats = NatsServer::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let mut sub = subscriber(&nats.url()).await;
    let mut cfg = nats_config(dir.path(), &nats.url());
    cfg.detect.mode = kaudit::detect::DetectMode::Falco;
    cfg.falco.forward_url = format!("http://127.0.0.1:{}/k8s-audit", crate::support::free_port());
    let running = kaudit::pipeline::start(cfg).await.unwrap();
    let base = format!("http://{}", running.local_addr());
    let c = crate::ingest::client();

    let good = br#"{"hostname":"falco-0","output":"10:00:00.000000000: Notice K8s Serviceaccount Created (user=admin serviceaccount=ci-bot ns=kube-system)","output_fields":{"ka.user.name":"admin","ka.target.namespace":"kube-system"},"priority":"Notice","rule":"K8s Serviceaccount Created","source":"k8s_audit","tags":["k8s"],"time":"2026-11-22T10:00:00.123456789Z"}"#;
    assert_eq!(post(&c, format!("{base}/"), good.to_vec()).await, 200);
    let got = drain(&mut sub, 1, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "falco.notice.k8s_serviceaccount_created");
    assert_eq!(got[0].1.output_fields["kaudit.origin"], "falco");

    for bad in [&b"{\"rule\":\"x\"}"[..], b"not json", b"{\"output\":\"o\",\"priority\":\"Loud\",\"rule\":\"r\",\"time\":\"2026-11-22T10:00:00Z\"}"] {
        assert_eq!(post(&c, format!("{base}/"), bad.to_vec()).await, 400);
    }
    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("kaudit_falco_http_alerts_total{result=\"invalid\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("kaudit_alerts_total{priority=\"notice\",origin=\"falco\"} 1"),
        "{text}"
    );
    running.shutdown().await;
}

/// Posts `body` to `url` with curl: libcurl, as Falco's `http_output` uses it, turns the URL's
/// `user:password@` into Basic auth. Returns the HTTP status.
fn curl_post(url: &str, body: &[u8]) -> u16 {
    use std::io::Write;
    let mut child = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl (libcurl, as Falco uses) must be installed");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Falco authenticates its `http_output` with the token in its URL (as the operator renders
/// it): its own token, from `falco.intake_token_file`, good for `POST /` only, re-read when the
/// file changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falco_http_output_authenticates_with_the_token_in_its_url() {
    let Some(bin) = nats_server_bin() else { return };
    let nats = NatsServer::start(bin);
    let dir = tempfile::tempdir().unwrap();
    let intake_file = dir.path().join("falco-intake-token");
    std::fs::write(&intake_file, "intake-0123abcd\n").unwrap();
    let mut sub = subscriber(&nats.url()).await;
    let mut cfg = nats_config(dir.path(), &nats.url());
    cfg.detect.mode = kaudit::detect::DetectMode::Falco;
    cfg.falco.forward_url = format!("http://127.0.0.1:{}/k8s-audit", crate::support::free_port());
    cfg.falco.intake_token_file = Some(intake_file.clone());
    cfg.auth.tokens = vec![kaudit::secret::Secret::new("apiserver-token")];
    let running = kaudit::pipeline::start(cfg).await.unwrap();
    let port = running.local_addr().port();
    let alert = br#"{"output":"Notice K8s Secret Get (user=bob)","output_fields":{"ka.user.name":"bob"},"priority":"Notice","rule":"K8s Secret Get","source":"k8s_audit","tags":["k8s"],"time":"2026-11-22T10:00:00Z"}"#;
    let status = |url: String, body: &'static [u8]| {
        tokio::task::spawn_blocking(move || curl_post(&url, body))
    };

    // What the operator renders into falco.yaml, after Falco expanded the environment variable.
    let falco_url = format!("http://falco:intake-0123abcd@127.0.0.1:{port}/");
    assert_eq!(status(falco_url.clone(), alert).await.unwrap(), 200);
    let got = drain(&mut sub, 1, Duration::from_millis(300)).await;
    assert_eq!(got.len(), 1, "the authenticated alert is routed");
    assert_eq!(got[0].1.rule, "K8s Secret Get");

    for url in [
        format!("http://falco:wrong@127.0.0.1:{port}/"),
        format!("http://intake-0123abcd@127.0.0.1:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        // Falco's token cannot submit audit events.
        format!("http://falco:intake-0123abcd@127.0.0.1:{port}/k8s-audit"),
    ] {
        assert_eq!(status(url.clone(), alert).await.unwrap(), 401, "{url}");
    }
    assert!(
        drain(&mut sub, 0, Duration::from_millis(300))
            .await
            .is_empty(),
        "refused alerts are not routed"
    );

    // A new token in the file takes over without a restart.
    std::fs::write(&intake_file, "intake-4567efgh\n").unwrap();
    let rotated = format!("http://falco:intake-4567efgh@127.0.0.1:{port}/");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status(rotated.clone(), alert).await.unwrap() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new token was never accepted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        status(falco_url, alert).await.unwrap(),
        401,
        "the old token is gone"
    );
    running.shutdown().await;
}
