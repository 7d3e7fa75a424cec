//! The `file` source: rotated files read in order on a first start, partial lines, rotation by
//! rename and by copytruncate, a restart from the checkpoint, and SIGKILLs of the real binary
//! while lines are being read: every line becomes exactly one alert.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{alert_lines, alerted, assert_exactly_once, event, start, wait_alerted, yaml};
use crate::support::PATIENCE;

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Lines for ids `from..to` with prefix `p`; adds the ids to `ids`.
fn lines(p: &str, r: std::ops::Range<usize>, ids: &mut BTreeSet<String>) -> String {
    let mut out = String::new();
    for i in r {
        let id = format!("{p}-{i:04}");
        out.push_str(&event(&id).to_string());
        out.push('\n');
        ids.insert(id);
    }
    out
}

fn source(log: &Path) -> String {
    format!(
        "  - name: apiserver-log\n    type: file\n    path: {}\n    poll_interval_ms: 20\n",
        log.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_partial_lines_and_restart_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("audit.log");
    let mut ids = BTreeSet::new();
    // kube-apiserver's rotated file, older than the current one: read first.
    append(
        &logs.join("audit-2026-03-01T10-00-00.000.log"),
        &lines("old", 0..3, &mut ids),
    );
    std::thread::sleep(Duration::from_millis(20));
    let text = lines("cur", 0..3, &mut ids);
    let partial = event("partial").to_string();
    append(&log, &format!("{text}not json at all\n{}", &partial[..40]));
    let running = start(dir.path(), &source(&log)).await;
    // No webhook entry: no /k8s-audit route.
    let r = reqwest::Client::new()
        .post(format!("http://{}/k8s-audit", running.local_addr()))
        .header("content-type", "application/json")
        .body(event("posted").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    wait_alerted(dir.path(), &ids).await;
    assert!(
        !alerted(dir.path()).contains_key("partial"),
        "a partial line waits"
    );
    // The line completes.
    append(&log, &format!("{}\n", &partial[40..]));
    ids.insert("partial".into());
    wait_alerted(dir.path(), &ids).await;
    // Rotation by rename (lumberjack): the renamed file's last lines first, then the new file.
    let last_old = lines("before-rename", 0..2, &mut ids);
    append(&log, &last_old);
    std::fs::rename(&log, logs.join("audit-2026-03-01T11-00-00.000.log")).unwrap();
    append(&log, &lines("after-rename", 0..2, &mut ids));
    wait_alerted(dir.path(), &ids).await;
    // Rotation by copytruncate: same inode, new first line.
    std::fs::copy(&log, logs.join("audit.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    append(&log, &lines("after-truncate", 0..4, &mut ids));
    wait_alerted(dir.path(), &ids).await;
    let stats = running.sources_view.get("apiserver-log").expect("stats");
    assert_eq!(stats.skipped.get("malformed"), Some(&1), "{stats:?}");
    running.shutdown().await;
    // Written while kaudit is down; the restart resumes at the checkpoint.
    append(&log, &lines("while-down", 0..3, &mut ids));
    let running = start(dir.path(), &source(&log)).await;
    wait_alerted(dir.path(), &ids).await;
    let stats = running.sources_view.get("apiserver-log").expect("stats");
    running.shutdown().await;
    assert_exactly_once(dir.path(), &ids);
    assert_eq!(
        alert_lines(dir.path()),
        ids.len(),
        "no repeats after a clean restart"
    );
    assert_eq!(
        stats.events_read, 3,
        "only the new lines after the restart: {stats:?}"
    );
    assert!(stats.position.contains("offset"), "{stats:?}");
}

/// `kaudit serve` is SIGKILLed three times while a writer appends lines; every line still
/// becomes exactly one alert (repeats of an alert, same uuid, are allowed: consumers
/// de-duplicate them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_read_and_inbox_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let cfg = dir.path().join("kaudit.yaml");
    std::fs::write(&cfg, yaml(dir.path(), &source(&log))).unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_kaudit"))
            .args(["serve", "-c"])
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kaudit")
    };
    let mut ids = BTreeSet::new();
    let mut child = spawn();
    for round in 0..4 {
        // Lines in small bursts, so that the kill lands while some are being read.
        for burst in 0..10 {
            let p = format!("r{round}b{burst}");
            append(&log, &lines(&p, 0..20, &mut ids));
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        if round < 3 {
            // Wait until kaudit is mid-way (some alerts out), then kill it hard.
            let before = alert_lines(dir.path());
            let start = std::time::Instant::now();
            while alert_lines(dir.path()) == before && start.elapsed() < PATIENCE {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            child = spawn();
        }
    }
    wait_alerted(dir.path(), &ids).await;
    child.kill().ok();
    child.wait().ok();
    assert_exactly_once(dir.path(), &ids);
    assert_eq!(ids.len(), 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_records_are_evaluated_by_its_check_as_detection_would() {
    // The file source's records are evaluated as they are checked, as the webhook's are: the
    // alerts travel with the batch through the inbox. Past `inbox.memory_bytes` detection reads
    // the batch back and evaluates it; the same events raise the same alerts (uuids included).
    let mut ids = BTreeSet::new();
    // The same lines both times (their times are in the uuids).
    let text = lines("ev", 0..5, &mut ids);
    let mut seen = Vec::new();
    for (memory, at) in [(64 << 20, "check"), (0, "inbox")] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        append(&log, &text);
        let yaml = super::yaml(dir.path(), &source(&log))
            + &format!("inbox: {{memory_bytes: {memory}}}\n");
        let running = kaudit::pipeline::start(crate::support::config_from_yaml(&yaml))
            .await
            .expect("pipeline starts");
        wait_alerted(dir.path(), &ids).await;
        let base = format!("http://{}", running.local_addr());
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let other = if at == "check" { "inbox" } else { "check" };
        let batches = |at: &str| {
            crate::support::metric_line(
                &text,
                &format!("kaudit_detect_batches_total{{at=\"{at}\"}}"),
            )
        };
        assert!(batches(at) >= 1.0, "{at}: {text}");
        assert_eq!(batches(other), 0.0, "{at}");
        running.shutdown().await;
        assert_exactly_once(dir.path(), &ids);
        seen.push(alerted(dir.path()));
    }
    assert_eq!(seen[0], seen[1]);
}
