use super::*;
use std::io::Write;

fn cfg() -> InboxConfig {
    InboxConfig {
        segment_bytes: 256,
        retry_initial_ms: 10,
        retry_max_ms: 20,
        ..InboxConfig::default()
    }
}

fn open(dir: &Path, cfg: &InboxConfig) -> Opened {
    let mut reg = Registry::default();
    Inbox::open(dir, cfg, InboxMetrics::register(&mut reg), None).unwrap()
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

async fn settle(inbox: &Inbox) {
    for _ in 0..200 {
        if inbox.pending() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("inbox still has {} pending", inbox.pending());
}

#[tokio::test]
async fn appended_batches_come_back_in_order_and_done_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(dir.path(), &cfg());
    let mut seqs = Vec::new();
    for i in 0..20 {
        let body = Bytes::from(format!("{{\"n\":{i}}}"));
        seqs.push(
            o.inbox
                .append("webhook", "application/json", body)
                .await
                .unwrap(),
        );
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(segments(dir.path()) > 1, "small segments rotate");
    let mut reader = o.reader;
    for i in 0..20 {
        let b = reader.next().await.unwrap();
        assert_eq!(b.record.body, Bytes::from(format!("{{\"n\":{i}}}")));
        assert_eq!(b.record.source, "webhook");
        b.hold.release();
    }
    settle(&o.inbox).await;
    drop(o.inbox);
    o.worker.join().await;
    assert_eq!(segments(dir.path()), 0, "every segment was done");
    assert_eq!(read_watermark(dir.path()), *seqs.last().unwrap());
}

#[tokio::test]
async fn unfinished_batches_are_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = open(dir.path(), &cfg());
        for i in 0..5 {
            o.inbox
                .append("w", "", Bytes::from(format!("b{i}")))
                .await
                .unwrap();
        }
        let mut reader = o.reader;
        // The first two are finished, the third is read but its alerts never got spooled.
        for _ in 0..2 {
            reader.next().await.unwrap().hold.release();
        }
        let third = reader.next().await.unwrap();
        std::mem::forget(third);
        settle_until(&o.inbox, 3).await;
        drop(o.inbox);
        o.worker.join().await;
    }
    let o = open(dir.path(), &cfg());
    let mut reader = o.reader;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let b = reader.next().await.unwrap();
        bodies.push(b.record.body.clone());
        b.hold.release();
    }
    assert_eq!(bodies, vec!["b2", "b3", "b4"]);
    // Seqs keep increasing across runs.
    let next = o.inbox.append("w", "", Bytes::from("b5")).await.unwrap();
    assert_eq!(next, 6);
}

async fn settle_until(inbox: &Inbox, pending: u64) {
    for _ in 0..200 {
        if inbox.pending() == pending {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("inbox has {} pending, expected {pending}", inbox.pending());
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = open(dir.path(), &InboxConfig::default());
        for i in 0..3 {
            o.inbox
                .append("w", "", Bytes::from(format!("b{i}")))
                .await
                .unwrap();
        }
        drop(o.inbox);
        o.worker.join().await;
    }
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(b"KAI1\xff\xff").unwrap();
    let o = open(dir.path(), &InboxConfig::default());
    let mut reader = o.reader;
    for i in 0..3 {
        let b = reader.next().await.unwrap();
        assert_eq!(b.record.body, Bytes::from(format!("b{i}")));
        b.hold.release();
    }
    let n = o.inbox.append("w", "", Bytes::from("after")).await.unwrap();
    assert_eq!(n, 4);
}

#[tokio::test]
async fn a_failed_hold_offers_the_batch_again() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(dir.path(), &cfg());
    o.inbox.append("w", "", Bytes::from("x")).await.unwrap();
    let mut reader = o.reader;
    let first = reader.next().await.unwrap();
    let share = first.hold.share();
    first.hold.release();
    share.fail();
    let again = tokio::time::timeout(Duration::from_secs(5), reader.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.record.body, Bytes::from("x"));
    again.hold.release();
    settle(&o.inbox).await;
}

#[tokio::test]
async fn over_max_bytes_is_full_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let small = InboxConfig {
        max_bytes: 3000,
        ..cfg()
    };
    let o = open(dir.path(), &small);
    let e = o
        .inbox
        .append("w", "", Bytes::from(vec![b'x'; 4000]))
        .await
        .unwrap_err();
    assert!(matches!(e, InboxError::Full { .. }), "{e}");
    o.inbox
        .append("w", "", Bytes::from(vec![b'x'; 1000]))
        .await
        .unwrap();
    o.inbox
        .append("w", "", Bytes::from(vec![b'x'; 1000]))
        .await
        .unwrap();
    let e = o
        .inbox
        .append("w", "", Bytes::from(vec![b'x'; 1000]))
        .await
        .unwrap_err();
    assert!(matches!(e, InboxError::Full { .. }), "{e}");
    // Once handled, the room comes back.
    let mut reader = o.reader;
    for _ in 0..2 {
        reader.next().await.unwrap().hold.release();
    }
    settle(&o.inbox).await;
    for _ in 0..100 {
        if o.inbox
            .append("w", "", Bytes::from(vec![b'x'; 1000]))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("room never came back");
}

#[tokio::test]
async fn a_storage_error_refuses_the_batch_and_heals() {
    let dir = tempfile::tempdir().unwrap();
    let inbox_dir = dir.path().join("inbox");
    let o = open(&inbox_dir, &cfg());
    o.inbox
        .append("w", "", Bytes::from("before"))
        .await
        .unwrap();
    // Fill the active segment so the next append opens a new file, then take the directory away.
    for _ in 0..3 {
        o.inbox
            .append("w", "", Bytes::from(vec![b'y'; 200]))
            .await
            .unwrap();
    }
    std::fs::rename(&inbox_dir, dir.path().join("gone")).unwrap();
    let e = o
        .inbox
        .append("w", "", Bytes::from("refused"))
        .await
        .unwrap_err();
    assert!(matches!(e, InboxError::Storage { .. }), "{e}");
    assert!(o.inbox.is_faulted());
    std::fs::rename(dir.path().join("gone"), &inbox_dir).unwrap();
    let seq = o.inbox.append("w", "", Bytes::from("after")).await.unwrap();
    assert!(!o.inbox.is_faulted());
    let mut reader = o.reader;
    let mut bodies = Vec::new();
    loop {
        let b = reader.next().await.unwrap();
        bodies.push(b.record.body.clone());
        let s = b.record.seq;
        b.hold.release();
        if s == seq {
            break;
        }
    }
    assert_eq!(bodies.first().unwrap(), "before");
    assert_eq!(bodies.last().unwrap(), "after");
    assert!(!bodies.iter().any(|b| b == "refused"));
    settle(&o.inbox).await;
}

fn evaluated(rule: &str) -> Evaluated {
    let alert = serde_json::from_str(&format!(
        r#"{{"time":"2026-12-07T00:00:00Z","rule":"{rule}","priority":"Warning","output":"o"}}"#
    ))
    .unwrap();
    Evaluated {
        alerts: vec![alert],
        events: 1,
        seconds: 0.0,
    }
}

#[tokio::test]
async fn a_fresh_batch_brings_its_alerts_and_one_offered_again_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(dir.path(), &cfg());
    let seq = o
        .inbox
        .append_evaluated("w", "ct", Bytes::from("x"), Some(evaluated("r1")))
        .await
        .unwrap();
    let mut reader = o.reader;
    let first = reader.next().await.unwrap();
    assert_eq!(
        first.record.seq, seq,
        "the writer numbers the carried record"
    );
    assert_eq!(first.record.body, Bytes::from("x"));
    assert_eq!(first.record.content_type, "ct");
    let alerts = first.evaluated.as_ref().map(|e| e.alerts.len());
    assert_eq!(alerts, Some(1), "the check's alerts come with the batch");
    assert_eq!(o.inbox.carry.used(), 0, "taken: the memory is given back");
    first.hold.share().fail();
    first.hold.release();
    let again = tokio::time::timeout(Duration::from_secs(5), reader.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.record.seq, seq);
    assert_eq!(again.record.body, Bytes::from("x"), "read back from disk");
    assert!(again.evaluated.is_none(), "offered again: evaluated anew");
    again.hold.release();
    settle(&o.inbox).await;
}

#[tokio::test]
async fn past_the_memory_budget_a_batch_is_read_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(
        dir.path(),
        &InboxConfig {
            memory_bytes: 1500,
            ..cfg()
        },
    );
    let big = Bytes::from(vec![b'y'; 1000]);
    o.inbox
        .append_evaluated("w", "", big.clone(), None)
        .await
        .unwrap();
    assert_eq!(o.inbox.carry.used(), 0, "nothing evaluated: read back");
    o.inbox
        .append_evaluated("w", "", big.clone(), Some(evaluated("r1")))
        .await
        .unwrap();
    assert!(o.inbox.carry.used() >= 1000, "evaluated: carried");
    o.inbox
        .append_evaluated("w", "", big.clone(), Some(evaluated("r2")))
        .await
        .unwrap();
    let mut reader = o.reader;
    let a = reader.next().await.unwrap();
    let b = reader.next().await.unwrap();
    let c = reader.next().await.unwrap();
    let bodies = [&a, &b, &c].map(|x| x.record.body.len());
    assert_eq!(bodies, [1000, 1000, 1000]);
    let alerts = [&a, &b, &c].map(|x| x.evaluated.is_some());
    assert_eq!(
        alerts,
        [false, true, false],
        "the third had no room: its alerts are left to detection"
    );
    for x in [a, b, c] {
        x.hold.release();
    }
    settle(&o.inbox).await;
    assert_eq!(o.inbox.carry.used(), 0);
}

#[tokio::test]
async fn a_replayed_batch_comes_without_alerts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = open(dir.path(), &cfg());
        o.inbox
            .append_evaluated("w", "", Bytes::from("z"), Some(evaluated("r3")))
            .await
            .unwrap();
        drop(o.inbox);
        drop(o.reader);
        o.worker.join().await;
    }
    let o = open(dir.path(), &cfg());
    let mut reader = o.reader;
    let b = reader.next().await.unwrap();
    assert_eq!(b.record.body, Bytes::from("z"));
    assert!(b.evaluated.is_none(), "after a restart: evaluated anew");
    b.hold.release();
}

#[tokio::test]
async fn a_done_segment_is_written_over_and_a_restart_reads_only_the_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let spare = dir.path().join(SPARE_FILE);
    let seg_files = || -> Vec<PathBuf> {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect()
    };
    {
        let o = open(dir.path(), &cfg());
        let mut reader = o.reader;
        for i in 0..12 {
            let body = Bytes::from(format!("old-{i:04}"));
            o.inbox.append("w", "", body).await.unwrap();
            reader.next().await.unwrap().hold.release();
        }
        settle(&o.inbox).await;
        drop(o.inbox);
        o.worker.join().await;
    }
    assert!(spare.is_file(), "a done segment is kept to be reused");
    assert!(seg_files().is_empty());
    let kept = std::fs::metadata(&spare).unwrap().len();
    {
        // The next run's first segment is the spare, written over: two short records, then
        // the earlier run's, intact.
        let o = open(dir.path(), &cfg());
        for i in 0..2 {
            o.inbox
                .append("w", "", Bytes::from(format!("new-{i:04}")))
                .await
                .unwrap();
        }
        assert!(!spare.exists(), "the new segment took the spare");
        let files = seg_files();
        assert_eq!(files.len(), 1);
        let len = std::fs::metadata(&files[0]).unwrap().len();
        assert_eq!(len, kept, "written over within its length, not grown anew");
        drop(o.inbox);
        o.worker.join().await;
    }
    // Even with the watermark lost (a crash before it reached the disk), the earlier run's
    // records are not taken for this segment's.
    std::fs::remove_file(dir.path().join(WATERMARK_FILE)).unwrap();
    let o = open(dir.path(), &cfg());
    assert_eq!(o.inbox.pending(), 2, "only the new records are replayed");
    let mut reader = o.reader;
    for i in 0..2 {
        let b = reader.next().await.unwrap();
        assert_eq!(b.record.body, Bytes::from(format!("new-{i:04}")));
        b.hold.release();
    }
}
