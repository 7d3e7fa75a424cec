//! Following Falco's JSON output file: appends, partial lines, rename rotation, copytruncate,
//! and resuming after a restart, each with the exact set of alerts and no duplicates.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kaudit::alert::Alert;
use kaudit::delivery::alerts::{AlertSender, Routed};
use kaudit::falco::tail::{self, FalcoInMetrics, TailSettings};
use tokio::sync::{mpsc, watch};

fn line(n: usize) -> String {
    format!(
        r#"{{"hostname":"falco-0","output":"10:00:00.000000000: Warning alert {n}","output_fields":{{"n":{n}}},"priority":"Warning","rule":"R{n}","source":"k8s_audit","tags":["k8s"],"time":"2026-11-22T10:00:00.000000000Z"}}"#
    ) + "\n"
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

struct Tail {
    rx: mpsc::Receiver<Routed>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    metrics: FalcoInMetrics,
}

fn start(path: &Path, checkpoint: &Path) -> Tail {
    let (tx, rx) = mpsc::channel(1000);
    let (stop, stop_rx) = watch::channel(false);
    let mut reg = prometheus_client::registry::Registry::default();
    let metrics = FalcoInMetrics::register(&mut reg, Default::default());
    let settings = TailSettings {
        path: path.to_path_buf(),
        checkpoint: checkpoint.to_path_buf(),
        poll: Duration::from_millis(20),
    };
    let task = tail::spawn(settings, AlertSender::new(tx), metrics.clone(), stop_rx);
    Tail {
        rx,
        stop,
        task,
        metrics,
    }
}

/// Plays the router: takes the alert and says it is spooled.
fn spooled(r: Routed) -> Alert {
    if let Some(h) = r.hold {
        h.release();
    }
    r.alert
}

impl Tail {
    /// Receives exactly `n` alerts (waiting for them), returning their rule numbers.
    async fn take(&mut self, n: usize) -> Vec<usize> {
        let mut got = Vec::new();
        while got.len() < n {
            let a = tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} alerts arrived: {got:?}", got.len()))
                .map(spooled)
                .unwrap();
            got.push(a.rule.trim_start_matches('R').parse().unwrap());
        }
        got
    }

    /// Asserts nothing more arrives over several poll periods.
    async fn quiet(&mut self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(a) = self.rx.try_recv() {
            panic!("unexpected extra alert {}", a.alert.rule);
        }
    }

    async fn stop(self) -> mpsc::Receiver<Routed> {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
        self.rx
    }
}

fn paths() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.json");
    let cp = dir.path().join("state/tail.checkpoint");
    (dir, out, cp)
}

#[tokio::test]
async fn appends_and_partial_lines() {
    let (_d, out, cp) = paths();
    let mut t = start(&out, &cp);
    // The file does not exist yet: Falco has not started.
    append(&out, &(line(1) + &line(2)));
    assert_eq!(t.take(2).await, vec![1, 2]);
    // Half a line: nothing until the newline arrives.
    let l3 = line(3);
    let (a, b) = l3.split_at(40);
    append(&out, a);
    t.quiet().await;
    append(&out, b);
    assert_eq!(t.take(1).await, vec![3]);
    // Garbage and blank lines are counted, not routed, and do not stop the rest.
    append(&out, &format!("not json\n\n{}", line(4)));
    assert_eq!(t.take(1).await, vec![4]);
    t.quiet().await;
    let invalid = t
        .metrics
        .tail_lines
        .get_or_create(&tail::ResultLabel { result: "invalid" })
        .get();
    assert_eq!(invalid, 1);
    t.stop().await;
}

#[tokio::test]
async fn rename_rotation_finishes_old_file_then_follows_new() {
    let (_d, out, cp) = paths();
    let mut t = start(&out, &cp);
    append(&out, &line(1));
    assert_eq!(t.take(1).await, vec![1]);
    // Falco writes one more line, then logrotate renames the file and Falco starts a new one.
    append(&out, &line(2));
    std::fs::rename(&out, out.with_extension("json.1")).unwrap();
    append(&out, &(line(3) + &line(4)));
    let got: BTreeSet<usize> = t.take(3).await.into_iter().collect();
    assert_eq!(got, BTreeSet::from([2, 3, 4]));
    t.quiet().await;
    assert!(t.metrics.rotations.get() >= 1);
    t.stop().await;
}

#[tokio::test]
async fn copytruncate_starts_again_from_the_top() {
    let (_d, out, cp) = paths();
    let mut t = start(&out, &cp);
    append(&out, &(line(1) + &line(2)));
    assert_eq!(t.take(2).await, vec![1, 2]);
    // copytruncate: copy elsewhere, truncate in place; Falco keeps appending to the same inode.
    std::fs::copy(&out, out.with_extension("json.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&out)
        .unwrap();
    append(&out, &line(3));
    assert_eq!(t.take(1).await, vec![3]);
    t.quiet().await;
    t.stop().await;
}

#[tokio::test]
async fn restart_resumes_without_loss_or_repeat() {
    let (_d, out, cp) = paths();
    let mut t = start(&out, &cp);
    append(&out, &(line(1) + &line(2)));
    assert_eq!(t.take(2).await, vec![1, 2]);
    let mut rx = t.stop().await;
    assert!(rx.try_recv().is_err());

    // While kaudit is down Falco writes more, including half a line.
    let l5 = line(5);
    let (a, b) = l5.split_at(30);
    append(&out, &(line(3) + &line(4) + a));
    let mut t = start(&out, &cp);
    assert_eq!(t.take(2).await, vec![3, 4]);
    t.quiet().await;
    append(&out, b);
    assert_eq!(t.take(1).await, vec![5]);
    t.stop().await;
}

#[tokio::test]
async fn restart_after_rotation_while_down_finishes_the_old_file() {
    let (_d, out, cp) = paths();
    let mut t = start(&out, &cp);
    append(&out, &line(1));
    assert_eq!(t.take(1).await, vec![1]);
    t.stop().await;
    // Down: one more line lands in the old file, which is then rotated away.
    append(&out, &line(2));
    std::fs::rename(&out, out.with_extension("json.1")).unwrap();
    append(&out, &line(3));
    let mut t = start(&out, &cp);
    assert_eq!(t.take(2).await, vec![2, 3]);
    t.quiet().await;
    t.stop().await;
}

#[tokio::test]
async fn a_reread_line_keeps_its_uuid() {
    let (_d, out, cp) = paths();
    append(&out, &line(1));
    let mut t = start(&out, &cp);
    let first = tokio::time::timeout(Duration::from_secs(10), t.rx.recv())
        .await
        .unwrap()
        .map(spooled)
        .unwrap();
    t.stop().await;
    // Lose the checkpoint (as a crash before it was written would): the line is read again.
    std::fs::remove_file(&cp).unwrap();
    let mut t = start(&out, &cp);
    let again = tokio::time::timeout(Duration::from_secs(10), t.rx.recv())
        .await
        .unwrap()
        .map(spooled)
        .unwrap();
    assert_eq!(first.uuid, again.uuid);
    assert_eq!(first.output_fields["kaudit.origin"], "falco");
    t.stop().await;
}

#[tokio::test]
async fn copytruncate_gives_new_lines_new_uuids() {
    let (_d, out, cp) = paths();
    let mut t = start(&out, &cp);
    append(&out, &line(1));
    let first = tokio::time::timeout(Duration::from_secs(10), t.rx.recv())
        .await
        .unwrap()
        .map(spooled)
        .unwrap();
    // Truncated in place: the next line starts at offset 0 again, in the same inode.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&out)
        .unwrap();
    append(&out, &line(2));
    let second = tokio::time::timeout(Duration::from_secs(10), t.rx.recv())
        .await
        .unwrap()
        .map(spooled)
        .unwrap();
    assert_eq!(second.rule, "R2");
    assert_ne!(
        first.uuid, second.uuid,
        "a new line at a reused offset must not reuse the old line's uuid"
    );
    t.stop().await;
}
