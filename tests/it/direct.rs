//! Direct delivery: a held batch reaching an idle sink with an empty spool goes straight to it;
//! a failing or slow sink gets it through the spool, in order, exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use kaudit::delivery::{
    BatchPolicy, Deliver, DeliveryMetrics, Hold, Lane, LanePaths, Record, SinkError, SinkLabels,
    SpoolConfig,
};
use kaudit::metrics::Metrics;
use tokio::sync::{Semaphore, oneshot};

use crate::support::{PATIENCE, wait_until};

/// What the scripted destination does with an attempt.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Up,
    Down,
    /// Waits for a permit of the gate, then confirms.
    Gated,
}

/// A destination that confirms, fails or waits as the test says, and keeps what it confirmed.
struct Scripted {
    mode: Mutex<Mode>,
    gate: Semaphore,
    attempts: AtomicUsize,
    confirmed: Mutex<Vec<Bytes>>,
}

impl Scripted {
    fn new(mode: Mode) -> Arc<Scripted> {
        Arc::new(Scripted {
            mode: Mutex::new(mode),
            gate: Semaphore::new(0),
            attempts: AtomicUsize::new(0),
            confirmed: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn confirmed(&self) -> Vec<Bytes> {
        self.confirmed.lock().unwrap().clone()
    }
}

impl Deliver for Scripted {
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let mode = *self.mode.lock().unwrap();
            match mode {
                Mode::Down => {
                    return Err(SinkError::Retryable {
                        message: "down".into(),
                        retry_after: Some(Duration::from_millis(20)),
                    });
                }
                Mode::Gated => {
                    let permit = self.gate.acquire().await;
                    drop(permit);
                }
                Mode::Up => {}
            }
            let mut c = self.confirmed.lock().unwrap();
            c.extend(records.iter().map(|r| r.payload.clone()));
            Ok(())
        })
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: 16,
            max_wait: Duration::ZERO,
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    lane: Lane,
    sink: Arc<Scripted>,
    metrics: DeliveryMetrics,
    labels: SinkLabels,
}

impl Setup {
    async fn new(mode: Mode, direct_delivery_ms: u64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let labels = SinkLabels {
            sink: "scripted".into(),
            sink_type: "test".into(),
        };
        let cfg = SpoolConfig {
            direct_delivery_ms,
            retry_initial_ms: 20,
            retry_max_ms: 40,
            ..SpoolConfig::default()
        };
        let metrics = Metrics::new().delivery;
        let mut lane = Lane::open(
            "scripted",
            labels.clone(),
            &LanePaths::under(dir.path(), "scripted"),
            "alert",
            &cfg,
            &metrics,
        )
        .await
        .unwrap();
        let sink = Scripted::new(mode);
        lane.start_worker(sink.clone()).await;
        Setup {
            _dir: dir,
            lane,
            sink,
            metrics,
            labels,
        }
    }

    /// Queues `payload` with a hold; the receiver hears the hold's outcome.
    async fn send_held(&self, payload: &'static str) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let hold = Hold::new(move |ok| {
            let _ = tx.send(ok);
        });
        self.lane
            .enqueue(Bytes::from_static(payload.as_bytes()), Some(hold))
            .await
            .unwrap();
        rx
    }

    async fn idle(&self) {
        wait_until("the worker to wait idle", || self.lane.takes_direct()).await;
    }

    fn spooled(&self) -> u64 {
        self.metrics.spooled.get_or_create(&self.labels).get()
    }

    fn sent(&self) -> u64 {
        self.metrics.sent.get_or_create(&self.labels).get()
    }
}

async fn settled(rx: oneshot::Receiver<bool>) -> bool {
    tokio::time::timeout(PATIENCE, rx)
        .await
        .expect("the hold settled")
        .expect("the hold's outcome")
}

fn bytes(items: &[&'static str]) -> Vec<Bytes> {
    items
        .iter()
        .map(|s| Bytes::from_static(s.as_bytes()))
        .collect()
}

#[tokio::test]
async fn a_held_batch_for_an_idle_sink_is_delivered_without_the_spool() {
    let s = Setup::new(Mode::Up, 100).await;
    for p in ["a", "b", "c"] {
        s.idle().await;
        let held = s.send_held(p).await;
        assert!(settled(held).await, "released once confirmed");
    }
    assert_eq!(s.sink.confirmed(), bytes(&["a", "b", "c"]));
    assert_eq!(s.spooled(), 0, "nothing was written to the spool");
    assert_eq!(s.sent(), 3);
    assert_eq!(s.lane.spool().len(), 0);
    assert_eq!(s.lane.held_bytes(), 0);
    s.lane.close(Duration::ZERO).await;
}

#[tokio::test]
async fn a_batch_the_sink_fails_is_spooled_and_delivered_later_in_order() {
    let s = Setup::new(Mode::Down, 100).await;
    s.idle().await;
    let first = s.send_held("1").await;
    assert!(settled(first).await, "released once spooled");
    assert_eq!(s.spooled(), 1, "the failed direct batch went to the spool");
    // Behind a spooled record, later ones are spooled too, never sent ahead of it.
    let later = [s.send_held("2").await, s.send_held("3").await];
    for h in later {
        assert!(settled(h).await);
    }
    assert_eq!(s.spooled(), 3);
    assert!(s.sink.confirmed().is_empty());
    s.sink.set(Mode::Up);
    wait_until("all three delivered", || s.sink.confirmed().len() >= 3).await;
    wait_until("the spool to empty", || s.lane.spool().is_empty()).await;
    assert_eq!(
        s.sink.confirmed(),
        bytes(&["1", "2", "3"]),
        "once each, in order"
    );
    s.lane.close(Duration::ZERO).await;
}

#[tokio::test]
async fn a_batch_the_sink_is_slow_with_is_spooled_meanwhile_and_sent_once() {
    let s = Setup::new(Mode::Gated, 50).await;
    s.idle().await;
    let slow = s.send_held("slow").await;
    assert!(
        s.lane.held_bytes() >= 4 + 8,
        "a batch on its way counts as held (namespace budgets read it)"
    );
    // The sink has not answered (it cannot before the gate opens), yet the hold is released:
    // the worker spooled the batch when the direct wait ran out.
    assert!(settled(slow).await);
    assert_eq!(s.spooled(), 1);
    assert_eq!(s.lane.spool().len(), 1);
    let next = s.send_held("next").await;
    assert!(settled(next).await, "the spool writer went on meanwhile");
    assert_eq!(s.spooled(), 2);
    assert!(s.sink.confirmed().is_empty());
    s.sink.gate.add_permits(1000);
    wait_until("both delivered", || s.sink.confirmed().len() >= 2).await;
    wait_until("the spool to empty", || s.lane.spool().is_empty()).await;
    assert_eq!(
        s.sink.confirmed(),
        bytes(&["slow", "next"]),
        "the slow one is not sent again from the spool"
    );
    assert_eq!(s.sink.attempts.load(Ordering::SeqCst), 2);
    assert_eq!(s.lane.held_bytes(), 0);
    s.lane.close(Duration::ZERO).await;
}

#[tokio::test]
async fn direct_delivery_off_spools_every_batch_first() {
    let s = Setup::new(Mode::Up, 0).await;
    let held = s.send_held("x").await;
    assert!(settled(held).await);
    wait_until("delivered", || !s.sink.confirmed().is_empty()).await;
    assert!(!s.lane.takes_direct());
    assert_eq!(s.spooled(), 1);
    assert_eq!(s.sink.confirmed(), bytes(&["x"]));
    s.lane.close(Duration::ZERO).await;
}

#[tokio::test]
async fn records_without_a_hold_always_go_through_the_spool() {
    let s = Setup::new(Mode::Up, 100).await;
    s.idle().await;
    s.lane
        .enqueue(Bytes::from_static(b"unheld"), None)
        .await
        .unwrap();
    wait_until("delivered", || !s.sink.confirmed().is_empty()).await;
    assert_eq!(s.spooled(), 1, "its only durable copy is the spool");
    s.lane.close(Duration::ZERO).await;
}

#[tokio::test]
async fn a_backlog_behind_a_direct_batch_goes_to_the_spool() {
    // Direct batches wait on the sink for as long as it takes: only the backlog can spool.
    let s = Setup::new(Mode::Gated, 60_000).await;
    s.idle().await;
    const NAMES: [&str; 34] = [
        "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14",
        "15", "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29",
        "30", "31", "32", "33",
    ];
    let mut held = vec![s.send_held(NAMES[0]).await];
    wait_until("the first batch at the sink", || {
        s.sink.attempts.load(Ordering::SeqCst) == 1
    })
    .await;
    for n in NAMES[1..].iter().copied() {
        held.push(s.send_held(n).await);
    }
    // The first went straight to the sink and waits there; 33 queued behind it, more than two
    // of the sink's batches (16).
    assert_eq!(s.spooled(), 0);
    s.sink.gate.add_permits(1000);
    for h in held {
        assert!(settled(h).await);
    }
    wait_until("all delivered", || s.sink.confirmed().len() >= NAMES.len()).await;
    wait_until("the spool to empty", || s.lane.spool().is_empty()).await;
    assert!(
        s.spooled() >= 16,
        "the backlog was spooled, not held in memory: {} spooled",
        s.spooled()
    );
    assert_eq!(s.sink.confirmed(), bytes(&NAMES), "once each, in order");
    s.lane.close(Duration::ZERO).await;
}
