//! Dead letters you can act on: a denied delivery (401) is retried for its grace period before
//! it is dead-lettered, and `kaudit deadletter replay` sends it through the fixed sink.

use std::process::Command;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;

use crate::support::{Recorder, alert, config_from_yaml, json_lines, wait_until};

fn config_yaml(dir: &std::path::Path, url: &str, token: &str) -> String {
    format!(
        "data_dir: {}\nspool:\n  retry_initial_ms: 20\n  retry_max_ms: 100\n  denied_retry_secs: 1\n\
         sinks:\n  - name: soc\n    type: http\n    url: {url}\n    headers:\n      Authorization: Bearer {token}\n",
        dir.display()
    )
}

fn kaudit(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .env_remove("KAUDIT_CONFIG")
        .output()
        .expect("run kaudit");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Multi-threaded: the recorder must answer while this test waits for a kaudit process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_alert_is_retried_then_dead_lettered_and_replayed_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Recorder::start(Arc::new(|_, req| {
        if req.header("authorization").as_deref() == Some("Bearer fresh") {
            StatusCode::OK.into_response()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        }
    }))
    .await;
    let url = server.url("/alerts");

    // A stale token: 401 every time.
    let cfg = config_from_yaml(&config_yaml(dir.path(), &url, "stale"));
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Denied", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    let dl = dir.path().join("dead-letter/soc.jsonl");
    wait_until("the dead letter", || !json_lines(&dl).is_empty()).await;
    r.shutdown().await;
    assert!(
        server.count() >= 2,
        "a 401 is retried before it is dead-lettered ({} requests)",
        server.count()
    );
    let line = json_lines(&dl).remove(0);
    assert_eq!(line["alert"]["uuid"], a.uuid.to_string());
    let reason = line["reason"].as_str().unwrap();
    assert!(
        reason.contains("401") && reason.contains("still denied"),
        "{reason}"
    );

    // The list names it.
    let file = dir.path().join("kaudit.yaml");
    std::fs::write(&file, config_yaml(dir.path(), &url, "stale")).unwrap();
    let cfg_arg = file.to_str().unwrap();
    let (ok, out, err) = kaudit(&["deadletter", "list", "--config", cfg_arg]);
    assert!(ok, "{err}");
    assert!(out.starts_with("soc: 1 records"), "{out}");
    assert!(out.contains("still denied"), "{out}");

    // Replay with the token still stale: refused again, kept, exit 1.
    let (ok, out, err) = kaudit(&[
        "deadletter",
        "replay",
        "--config",
        cfg_arg,
        "--attempts",
        "1",
        "soc",
    ]);
    assert!(!ok, "{out}{err}");
    assert!(out.contains("0 sent, 1 refused again"), "{out}{err}");
    assert_eq!(
        json_lines(&dl).len(),
        1,
        "refused again, still a dead letter"
    );

    // The credential fixed: replay delivers it and nothing is left.
    std::fs::write(&file, config_yaml(dir.path(), &url, "fresh")).unwrap();
    let (ok, out, err) = kaudit(&["deadletter", "replay", "--config", cfg_arg, "soc"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 sent, 0 refused again"), "{out}");
    let delivered: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|q| q.header("authorization").as_deref() == Some("Bearer fresh"))
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].json()["uuid"], a.uuid.to_string());
    let (ok, out, _) = kaudit(&["deadletter", "list", "--config", cfg_arg]);
    assert!(ok && out.starts_with("soc: 0 records"), "{out}");

    // An unknown sink is a usage error that names the configured ones.
    let (ok, _, err) = kaudit(&["deadletter", "replay", "--config", cfg_arg, "nope"]);
    assert!(
        !ok && err.contains("no sink named 'nope'") && err.contains("soc"),
        "{err}"
    );
}
