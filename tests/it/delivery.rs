//! Durability: spooled alerts survive a SIGKILLed process; the spool cap dead-letters, counted.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;

use crate::support::{Recorder, alert, config, free_port, json_lines, metric, wait_until};

const CHILD_ENV: &str = "KAUDIT_IT_CRASH_CHILD";
const N: usize = 25;

/// The child half of `spooled_alerts_survive_sigkill`: run only by that test, in a child
/// process it kills. Starts a router whose sink is down, sends N alerts, waits until they are
/// spooled, prints their uuids and `SPOOLED`, then waits to be killed.
#[tokio::test]
#[ignore = "run by spooled_alerts_survive_sigkill in a child process"]
async fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        panic!(
            "{CHILD_ENV} is not set: this test only runs as a child of spooled_alerts_survive_sigkill"
        );
    };
    let (data_dir, url) = spec.split_once('|').expect("data_dir|url");
    let cfg = config(
        std::path::Path::new(data_dir),
        &format!("  - name: crashy\n    type: http\n    url: {url}\n"),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .expect("router");
    for i in 0..N {
        let a = alert(&format!("crash {i}"), Priority::Critical);
        println!("UUID {}", a.uuid);
        r.sender().send(a).await.expect("send");
    }
    wait_until("all spooled", || r.spooled("crashy") == Some(N as u64)).await;
    println!("SPOOLED");
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn spooled_alerts_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "delivery::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}|{url}", dir.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut uuids = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print `test ... ` on the same line before the child's output.
            if let Some(i) = line.find("UUID ") {
                uuids.push(line[i + 5..].trim().to_string());
            } else if line.trim_end().ends_with("SPOOLED") {
                let _ = tx.send(uuids);
                return;
            }
        }
    });
    let sent = rx
        .recv_timeout(crate::support::PATIENCE)
        .expect("the child never reported its alerts spooled");
    assert_eq!(sent.len(), N);
    child.kill().unwrap(); // SIGKILL: no shutdown, no flush.
    let _ = child.wait();

    // A new process (this one) with the sink up, on the same data_dir.
    let server = Recorder::start_on(
        port,
        std::sync::Arc::new(|_, _| axum::http::StatusCode::OK.into_response()),
    )
    .await;
    let cfg = config(
        dir.path(),
        &format!("  - name: crashy\n    type: http\n    url: {url}\n"),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    wait_until("every spooled alert delivered", || {
        server.uuids().into_iter().collect::<HashSet<_>>().len() >= N
    })
    .await;
    wait_until("the spool to empty", || r.spooled("crashy") == Some(0)).await;
    r.shutdown().await;
    let got: HashSet<String> = server.uuids().into_iter().collect();
    assert_eq!(got, sent.into_iter().collect::<HashSet<_>>());
    assert_eq!(server.count(), N, "each delivered exactly once");
}

use axum::response::IntoResponse;

#[tokio::test]
async fn the_spool_cap_dead_letters_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("http://127.0.0.1:{}/", free_port());
    // One alert is ~500 bytes: a 2 KiB cap holds a few.
    let mut cfg = config(
        dir.path(),
        &format!("  - name: capped\n    type: http\n    url: {dead}\n"),
    );
    cfg.spool.max_bytes = 2048;
    // The cap itself is under test: no namespace budget in front of it (its default share,
    // a quarter of the spool, would hold this one namespace to about one alert).
    cfg.tenancy.budget.spool_share = 1.0;
    let mut metrics = Metrics::new();
    // What the console's store is told: every dropped alert, dead-lettered, with the reason.
    let told = std::sync::Arc::new(DeadLettersTold::default());
    metrics.delivery.observer = Some(told.clone());
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let alerts: Vec<_> = (0..20)
        .map(|i| alert(&format!("cap {i}"), Priority::Warning))
        .collect();
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    let dl = dir.path().join("dead-letter/capped.jsonl");
    let dropped = || {
        metric(
            &metrics.encode(),
            "kaudit_sink_dropped_at_cap_total",
            "capped",
        )
    };
    wait_until("all 20 handled by the spool writer", || {
        r.spooled("capped").unwrap_or(0) as f64 + dropped() >= 20.0
    })
    .await;
    let kept = r.spooled("capped").unwrap() as usize;
    r.shutdown().await;
    let text = metrics.encode();
    let dropped = metric(&text, "kaudit_sink_dropped_at_cap_total", "capped") as usize;
    assert!(dropped > 0, "nothing was dropped at a 2 KiB cap");
    assert!(kept > 0);
    assert_eq!(
        kept + dropped,
        20,
        "every alert is either spooled or dead-lettered"
    );
    let lines = json_lines(&dl);
    assert_eq!(lines.len(), dropped);
    for (l, a) in lines.iter().zip(&alerts) {
        assert!(l["reason"].as_str().unwrap().contains("spool full"), "{l}");
        assert_eq!(
            l["alert"]["uuid"],
            a.uuid.to_string(),
            "the oldest go first"
        );
    }
    assert_eq!(
        metric(&text, "kaudit_sink_dead_lettered_total", "capped") as usize,
        dropped
    );
    let told = told.0.lock().unwrap().clone();
    let expected: Vec<String> = alerts[..dropped]
        .iter()
        .map(|a| a.uuid.to_string())
        .collect();
    assert_eq!(
        told.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(),
        expected,
        "the observer (the console's store) hears of each dropped alert, oldest first"
    );
    assert!(
        told.iter().all(|(_, r)| r.contains("spool full")),
        "{told:?}"
    );
}

/// An observer that keeps the uuid and reason of each dead-lettered payload.
#[derive(Default)]
struct DeadLettersTold(std::sync::Mutex<Vec<(String, String)>>);

impl kaudit::delivery::DeliveryObserver for DeadLettersTold {
    fn observe(
        &self,
        _: &kaudit::delivery::SinkLabels,
        payloads: &[&[u8]],
        outcome: kaudit::delivery::Outcome<'_>,
    ) {
        if let kaudit::delivery::Outcome::DeadLettered { reason } = outcome {
            let mut told = self.0.lock().unwrap();
            for p in payloads {
                let v: serde_json::Value = serde_json::from_slice(p).unwrap();
                told.push((v["uuid"].as_str().unwrap().to_string(), reason.to_string()));
            }
        }
    }
}
