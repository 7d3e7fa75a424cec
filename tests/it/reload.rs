//! Hot reload in `kaudit serve`: rules files that change, and the config file on SIGHUP.

use std::path::Path;
use std::time::Duration;

use crate::ingest::{client, spawn_kaudit};
use crate::support::json_lines;

const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"r-1","stage":"ResponseComplete","verb":"get","requestURI":"/api/v1/namespaces/default/configmaps/x","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"default","name":"x"},"stageTimestamp":"2026-11-22T10:00:00.000000Z"}"#;

fn rule(name: &str) -> String {
    format!(
        "- rule: {name}\n  desc: test\n  condition: ka.verb = get\n  output: read by %ka.user.name\n  priority: WARNING\n  source: k8s_audit\n"
    )
}

async fn post(c: &reqwest::Client, base: &str) {
    let r = c
        .post(format!("{base}/k8s-audit"))
        .header("content-type", "application/json")
        .body(EVENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// Waits until `path` holds `n` alert lines; returns their rules.
async fn rules_in(path: &Path, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let lines = if path.exists() {
            json_lines(path)
        } else {
            Vec::new()
        };
        if lines.len() >= n {
            return lines
                .iter()
                .map(|v| v["rule"].as_str().unwrap_or("").to_string())
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} alerts in {}",
            lines.len(),
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metric_at_least(c: &reqwest::Client, base: &str, line: &str, n: f64) {
    crate::support::wait_for_metric(c, base, line, n, |t| crate::support::metric_line(t, line))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_on_change_and_a_bad_set_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    let alerts = dir.path().join("alerts.jsonl");
    std::fs::write(&rules, rule("First Rule")).unwrap();
    let cfg = crate::support::config_from_yaml(&format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\nrules: {{files: [{}], reload_interval_secs: 1}}\nsinks:\n  - {{name: out, type: file, path: {}}}\n",
        dir.path().join("data").display(),
        rules.display(),
        alerts.display()
    ));
    let running = kaudit::pipeline::start(cfg).await.unwrap();
    let base = format!("http://{}", running.local_addr());
    let c = client();

    post(&c, &base).await;
    assert_eq!(rules_in(&alerts, 1).await, ["First Rule"]);

    // A broken set is reported and the old rules stay in force.
    std::fs::write(&rules, "- rule: Broken\n  condition: ka.verb = \n").unwrap();
    metric_at_least(
        &c,
        &base,
        "kaudit_rules_reloads_total{result=\"failed\"}",
        1.0,
    )
    .await;
    post(&c, &base).await;
    assert_eq!(rules_in(&alerts, 2).await[1], "First Rule");

    // A good new set takes over without a restart.
    std::fs::write(&rules, rule("Second Rule")).unwrap();
    metric_at_least(&c, &base, "kaudit_rules_reloads_total{result=\"ok\"}", 1.0).await;
    post(&c, &base).await;
    assert_eq!(rules_in(&alerts, 3).await[2], "Second Rule");
    running.shutdown().await;
}

#[test]
fn sighup_reloads_sinks_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, rule("Read")).unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let cfg = dir.path().join("kaudit.yaml");
    let write_cfg = |sinks: &str| {
        std::fs::write(
            &cfg,
            format!(
                "data_dir: {}\nrules: {{files: [{}]}}\nsinks:\n{sinks}",
                dir.path().join("data").display(),
                rules.display()
            ),
        )
        .unwrap()
    };
    write_cfg(&format!(
        "  - {{name: a, type: file, path: {}}}\n",
        a.display()
    ));
    let (mut child, base) = spawn_kaudit(&cfg, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client();
        post(&c, &base).await;
        rules_in(&a, 1).await;

        // Replace sink a with sink b and send SIGHUP: the same process now writes to b only.
        write_cfg(&format!(
            "  - {{name: b, type: file, path: {}}}\n",
            b.display()
        ));
        let st = std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        // Keep posting until b receives (the reload is asynchronous to the signal).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            post(&c, &base).await;
            if b.exists() && !json_lines(&b).is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sink b never received an alert"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let a_before = json_lines(&a).len();
        post(&c, &base).await;
        rules_in(&b, 2).await;
        assert_eq!(
            json_lines(&a).len(),
            a_before,
            "the removed sink kept receiving"
        );
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "kaudit restarted or died"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_during_a_reload_still_drains_and_exits() {
    // Signals are caught for the whole life of the process: a SIGTERM that lands while a
    // SIGHUP reload is being applied must not be lost (kaudit would then never exit).
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kaudit.yaml");
    let sink = |n: usize| {
        format!(
            "data_dir: {}\nsinks:\n  - name: out\n    type: file\n    path: {}\n",
            dir.path().join("data").display(),
            dir.path().join(format!("alerts-{n}.jsonl")).display()
        )
    };
    std::fs::write(&cfg, sink(0)).unwrap();
    for round in 1..=5 {
        let (mut child, base) = spawn_kaudit(&cfg, &[]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async { post(&client(), &base).await });
        // A config change the reload has to apply (a sink restarted on another file).
        std::fs::write(&cfg, sink(round)).unwrap();
        let pid = child.id().to_string();
        for sig in ["-HUP", "-TERM"] {
            assert!(
                std::process::Command::new("kill")
                    .args([sig, &pid])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("round {round}: SIGTERM sent during a reload was lost: kaudit kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(0), "round {round}: {err}");
        assert!(err.contains("pipeline drained"), "round {round}: {err}");
    }
}
