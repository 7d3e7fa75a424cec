//! Durable delivery: the ONE queue mechanism every sink (and the Falco forwarder) goes through.
//!
//! A [`Lane`] is one destination's path: a bounded in-memory queue → a durable on-disk
//! [`spool::Spool`] → a worker that delivers in order with exponential backoff and jitter,
//! removing a record only after the destination confirmed it (at-least-once across outages,
//! restarts and `SIGKILL`). Refused records go to a dead-letter file. Lanes carry opaque byte
//! records; [`alerts`] is the Alert layer the router uses on top. See `docs/delivery.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use futures_util::future::BoxFuture;

pub mod alerts;
pub mod deadletter;
pub mod sink;
pub mod spool;

pub use deadletter::DeadLetters;
pub use sink::{Sink, SinkError};
pub use spool::{Record, Spool, SpoolError};

/// Settings of the per-sink durable spool and its delivery worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Largest size of one sink's spool in bytes; past it the oldest alerts are dead-lettered.
    pub max_bytes: u64,
    /// Records waiting in memory between the router and one sink's spool writer.
    pub queue_capacity: usize,
    /// Most records written to the spool in one transaction (one fsync).
    pub write_batch: usize,
    /// First retry delay after a retryable failure, in milliseconds (doubles each time).
    pub retry_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// On shutdown, how long the workers may keep delivering what is spooled, in milliseconds.
    pub shutdown_flush_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 256 * 1024 * 1024,
            queue_capacity: 4096,
            write_batch: 1024,
            retry_initial_ms: 200,
            retry_max_ms: 60_000,
            shutdown_flush_ms: 3_000,
        }
    }
}

impl SpoolConfig {
    /// Checks values types alone cannot; keys are relative to `spool`.
    pub fn validate(&self) -> Result<(), crate::invalid::Invalid> {
        use crate::invalid::{Invalid, positive};
        positive("max_bytes", self.max_bytes)?;
        positive("queue_capacity", self.queue_capacity as u64)?;
        positive("write_batch", self.write_batch as u64)?;
        positive("retry_initial_ms", self.retry_initial_ms)?;
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(Invalid::new(
                "retry_max_ms",
                "must be at least spool.retry_initial_ms",
            ));
        }
        Ok(())
    }
}

/// The bounded label set of every delivery metric: the sink's name and type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// The sink's configured name.
    pub sink: String,
    /// The sink's type (`nats`, `http`, ...), or `forwarder` for non-alert lanes.
    pub sink_type: String,
}

/// Metric families of delivery, one series per sink.
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// Records confirmed by the destination.
    pub sent: Family<SinkLabels, Counter>,
    /// Failed delivery attempts (records × attempts).
    pub failed: Family<SinkLabels, Counter>,
    /// Records sent again after a retryable failure.
    pub retried: Family<SinkLabels, Counter>,
    /// Records written to the durable spool.
    pub spooled: Family<SinkLabels, Counter>,
    /// Records written to the dead-letter file (refused for good, undecodable, or dropped at the cap).
    pub dead_lettered: Family<SinkLabels, Counter>,
    /// Records removed from a full spool (also counted in `dead_lettered`).
    pub dropped_at_cap: Family<SinkLabels, Counter>,
    /// Records in the in-memory queue in front of the spool.
    pub queue_depth: Family<SinkLabels, Gauge>,
    /// Records waiting in the spool.
    pub spool_records: Family<SinkLabels, Gauge>,
    /// Bytes waiting in the spool.
    pub spool_bytes: Family<SinkLabels, Gauge>,
    /// Time from enqueue to confirmation, in seconds.
    pub latency: Family<SinkLabels, Histogram>,
}

impl DeliveryMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = DeliveryMetrics {
            sent: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            spooled: Family::default(),
            dead_lettered: Family::default(),
            dropped_at_cap: Family::default(),
            queue_depth: Family::default(),
            spool_records: Family::default(),
            spool_bytes: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.5, 16))
            }),
        };
        r.register("sink_sent", "Records confirmed by the sink", m.sent.clone());
        r.register(
            "sink_failed",
            "Failed delivery attempts, in records",
            m.failed.clone(),
        );
        r.register(
            "sink_retried",
            "Records sent again after a retryable failure",
            m.retried.clone(),
        );
        r.register(
            "sink_spooled",
            "Records written to the durable spool",
            m.spooled.clone(),
        );
        r.register(
            "sink_dead_lettered",
            "Records written to the dead-letter file",
            m.dead_lettered.clone(),
        );
        r.register(
            "sink_dropped_at_cap",
            "Records removed from a full spool (dead-lettered)",
            m.dropped_at_cap.clone(),
        );
        r.register(
            "sink_queue_depth",
            "Records in memory waiting for the spool writer",
            m.queue_depth.clone(),
        );
        r.register(
            "sink_spool_records",
            "Records waiting in the spool",
            m.spool_records.clone(),
        );
        r.register(
            "sink_spool_bytes",
            "Bytes waiting in the spool",
            m.spool_bytes.clone(),
        );
        r.register(
            "sink_delivery_latency_seconds",
            "Time from enqueue to confirmation by the sink",
            m.latency.clone(),
        );
        m
    }
}

/// How a destination wants its records grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most records per `deliver` call.
    pub max: usize,
    /// How long to wait for a batch to fill; zero sends whatever is there at once.
    pub max_wait: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max: 1,
            max_wait: Duration::ZERO,
        }
    }
}

/// A destination of spooled records: confirms a batch or classifies the failure.
pub trait Deliver: Send + Sync + 'static {
    /// Delivers every record of the batch; on error none is taken as delivered.
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>>;
    /// How records are grouped into batches.
    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy::default()
    }
}

/// Exponential backoff with jitter: each delay is drawn in [d/2, d], d doubling up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `initial`, never past `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        let d = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let jitter_ms = rand::random_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Errors of a lane.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The lane no longer accepts records (it is closing).
    #[error("lane {0:?} is closed")]
    Closed(String),
}

/// Where a lane keeps its files.
#[derive(Clone, Debug)]
pub struct LanePaths {
    /// Spool directory (`<data_dir>/spool/<name>`).
    pub spool_dir: PathBuf,
    /// Dead-letter file (`<data_dir>/dead-letter/<name>.jsonl`).
    pub dead_letter: PathBuf,
}

impl LanePaths {
    /// The standard layout under `data_dir` for the lane called `name`.
    pub fn under(data_dir: &Path, name: &str) -> Self {
        LanePaths {
            spool_dir: data_dir.join("spool").join(name),
            dead_letter: data_dir.join("dead-letter").join(format!("{name}.jsonl")),
        }
    }
}

struct WorkerCtl {
    /// `None` while running; `Some(deadline)` asks the worker to stop once the spool is empty
    /// or the deadline has passed, whichever comes first.
    stop: watch::Sender<Option<Instant>>,
    task: JoinHandle<()>,
}

/// One destination's durable path: in-memory queue → spool → delivery worker.
pub struct Lane {
    name: String,
    labels: SinkLabels,
    cfg: SpoolConfig,
    spool: Arc<Spool>,
    dead: Arc<DeadLetters>,
    metrics: DeliveryMetrics,
    notify: Arc<Notify>,
    tx: Option<mpsc::Sender<Bytes>>,
    spooler: Option<JoinHandle<()>>,
    worker: Option<WorkerCtl>,
}

impl Lane {
    /// Opens the spool at `paths` (records a previous run left are delivered first) and starts
    /// the spool writer. Call [`Lane::start_worker`] to start delivering.
    pub async fn open(
        name: &str,
        labels: SinkLabels,
        paths: &LanePaths,
        dead_letter_field: &'static str,
        cfg: &SpoolConfig,
        metrics: &DeliveryMetrics,
    ) -> Result<Lane, LaneError> {
        let spool = open_spool_retrying(&paths.spool_dir, cfg.max_bytes).await?;
        let spool = Arc::new(spool);
        let dead = Arc::new(DeadLetters::new(
            paths.dead_letter.clone(),
            name,
            dead_letter_field,
        ));
        let mut lane = Lane {
            name: name.to_string(),
            labels,
            cfg: cfg.clone(),
            spool,
            dead,
            metrics: metrics.clone(),
            notify: Arc::new(Notify::new()),
            tx: None,
            spooler: None,
            worker: None,
        };
        lane.start_spooler();
        lane.update_gauges();
        Ok(lane)
    }

    /// The lane's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lane's spool (for inspection: `len`, `bytes`).
    pub fn spool(&self) -> Arc<Spool> {
        self.spool.clone()
    }

    fn update_gauges(&self) {
        self.metrics
            .spool_records
            .get_or_create(&self.labels)
            .set(self.spool.len() as i64);
        self.metrics
            .spool_bytes
            .get_or_create(&self.labels)
            .set(self.spool.bytes() as i64);
    }

    fn start_spooler(&mut self) {
        let (tx, rx) = mpsc::channel::<Bytes>(self.cfg.queue_capacity.max(1));
        let task = tokio::spawn(
            spooler(
                rx,
                self.spool.clone(),
                self.dead.clone(),
                self.notify.clone(),
                self.metrics.clone(),
                self.labels.clone(),
                self.cfg.clone(),
            )
            .instrument(tracing::info_span!("spooler", sink = %self.name)),
        );
        self.tx = Some(tx);
        self.spooler = Some(task);
    }

    /// Queues one record. Waits only while the spool writer is behind (disk-bound, never
    /// sink-bound: a slow or dead destination does not slow this down until the spool cap).
    pub async fn enqueue(&self, payload: Bytes) -> Result<(), LaneError> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| LaneError::Closed(self.name.clone()))?;
        tx.send(payload)
            .await
            .map_err(|_| LaneError::Closed(self.name.clone()))?;
        self.metrics
            .queue_depth
            .get_or_create(&self.labels)
            .set((tx.max_capacity() - tx.capacity()) as i64);
        Ok(())
    }

    /// Starts (or replaces) the delivery worker. A replaced worker is stopped at once; a batch it
    /// had in flight stays in the spool and is sent again (at-least-once).
    pub async fn start_worker(&mut self, deliver: Arc<dyn Deliver>) {
        self.stop_worker(Duration::ZERO).await;
        let (stop, stop_rx) = watch::channel(None);
        let w = Worker {
            spool: self.spool.clone(),
            dead: self.dead.clone(),
            notify: self.notify.clone(),
            metrics: self.metrics.clone(),
            labels: self.labels.clone(),
            backoff: Backoff::new(
                Duration::from_millis(self.cfg.retry_initial_ms),
                Duration::from_millis(self.cfg.retry_max_ms),
            ),
            deliver,
            stop: stop_rx,
        };
        let task = tokio::spawn(
            w.run()
                .instrument(tracing::info_span!("delivery", sink = %self.name)),
        );
        self.worker = Some(WorkerCtl { stop, task });
    }

    async fn stop_worker(&mut self, flush: Duration) {
        if let Some(w) = self.worker.take() {
            let _ = w.stop.send(Some(Instant::now() + flush));
            if let Err(e) = w.task.await {
                tracing::error!(sink = %self.name, error = %e, "delivery worker failed");
            }
        }
    }

    /// Stops taking records, writes everything queued to the spool (durable), lets the worker
    /// deliver for at most `flush`, then stops it. What is left stays spooled for the next run.
    pub async fn close(mut self, flush: Duration) {
        self.tx = None;
        if let Some(s) = self.spooler.take()
            && let Err(e) = s.await
        {
            tracing::error!(sink = %self.name, error = %e, "spool writer failed");
        }
        self.stop_worker(flush).await;
        self.update_gauges();
        let left = self.spool.len();
        if left > 0 {
            tracing::info!(sink = %self.name, records = left, "records stay spooled for the next run");
        }
    }

    /// Changes labels and spool settings (a sink reconfigured under the same name): drains the
    /// in-memory queue to the spool, stops the worker; call [`Lane::start_worker`] afterwards.
    pub async fn reconfigure(&mut self, labels: SinkLabels, cfg: &SpoolConfig) {
        self.tx = None;
        if let Some(s) = self.spooler.take() {
            let _ = s.await;
        }
        self.stop_worker(Duration::ZERO).await;
        self.labels = labels;
        self.cfg = cfg.clone();
        self.spool.set_max_bytes(cfg.max_bytes);
        self.start_spooler();
    }
}

/// Opens a spool, waiting briefly if a lane of the same name is still releasing the file.
async fn open_spool_retrying(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
    let mut tries = 0;
    loop {
        let d = dir.to_path_buf();
        let r = tokio::task::spawn_blocking(move || Spool::open(&d, max_bytes))
            .await
            .unwrap_or_else(|e| {
                Err(SpoolError::Dir {
                    path: dir.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        match r {
            Err(SpoolError::Db { ref source, .. })
                if matches!(**source, redb::Error::DatabaseAlreadyOpen) && tries < 50 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            other => return other,
        }
    }
}

async fn spooler(
    mut rx: mpsc::Receiver<Bytes>,
    spool: Arc<Spool>,
    dead: Arc<DeadLetters>,
    notify: Arc<Notify>,
    metrics: DeliveryMetrics,
    labels: SinkLabels,
    cfg: SpoolConfig,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.retry_initial_ms),
        Duration::from_millis(cfg.retry_max_ms),
    );
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < cfg.write_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let batch = Arc::new(batch);
        loop {
            let (s, d, b) = (spool.clone(), dead.clone(), batch.clone());
            let max = cfg.max_bytes;
            let r = tokio::task::spawn_blocking(move || {
                s.append(&b, &mut |evicted| {
                    d.write(
                        evicted,
                        &format!("spool full (spool.max_bytes {max}): dropped, oldest first"),
                    )
                    .map_err(|e| e.to_string())
                })
            })
            .await;
            match r {
                Ok(Ok(outcome)) => {
                    metrics
                        .spooled
                        .get_or_create(&labels)
                        .inc_by(outcome.appended as u64);
                    if outcome.evicted > 0 {
                        let n = outcome.evicted as u64;
                        metrics.dropped_at_cap.get_or_create(&labels).inc_by(n);
                        metrics.dead_lettered.get_or_create(&labels).inc_by(n);
                        tracing::warn!(
                            dropped = n,
                            max_bytes = cfg.max_bytes,
                            dead_letter = %dead.path().display(),
                            "spool full: oldest records dropped to the dead-letter file"
                        );
                    }
                    backoff.reset();
                    break;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, records = batch.len(), "cannot write the spool; retrying");
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool writer panicked; retrying");
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        notify.notify_one();
        metrics
            .queue_depth
            .get_or_create(&labels)
            .set(rx.len() as i64);
        metrics
            .spool_records
            .get_or_create(&labels)
            .set(spool.len() as i64);
        metrics
            .spool_bytes
            .get_or_create(&labels)
            .set(spool.bytes() as i64);
    }
}

struct Worker {
    spool: Arc<Spool>,
    dead: Arc<DeadLetters>,
    notify: Arc<Notify>,
    metrics: DeliveryMetrics,
    labels: SinkLabels,
    backoff: Backoff,
    deliver: Arc<dyn Deliver>,
    stop: watch::Receiver<Option<Instant>>,
}

/// What ended a wait of the worker.
enum Wake {
    Go,
    Stop,
}

impl Worker {
    fn deadline(&self) -> Option<Instant> {
        *self.stop.borrow()
    }

    /// Sleeps for `d`, or less when asked to stop and the stop deadline comes first.
    async fn sleep(&mut self, d: Duration) -> Wake {
        let until = Instant::now() + d;
        loop {
            let limit = match self.deadline() {
                Some(dl) if dl <= until => {
                    tokio::time::sleep_until(dl.into()).await;
                    return Wake::Stop;
                }
                _ => until,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(limit.into()) => return Wake::Go,
                r = self.stop.changed() => if r.is_err() { return Wake::Stop },
            }
        }
    }

    async fn peek(&self, max: usize) -> Result<Vec<Record>, String> {
        let s = self.spool.clone();
        tokio::task::spawn_blocking(move || s.peek(max))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    async fn remove(&self, batch: &[Record]) -> Result<(), String> {
        let s = self.spool.clone();
        let seqs: Vec<u64> = batch.iter().map(|r| r.seq).collect();
        tokio::task::spawn_blocking(move || s.remove(&seqs))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn gauges(&self) {
        self.metrics
            .spool_records
            .get_or_create(&self.labels)
            .set(self.spool.len() as i64);
        self.metrics
            .spool_bytes
            .get_or_create(&self.labels)
            .set(self.spool.bytes() as i64);
    }

    async fn run(mut self) {
        let policy = self.deliver.batch_policy();
        let max = policy.max.max(1);
        let mut retrying = false;
        loop {
            if let Some(dl) = self.deadline()
                && (self.spool.is_empty() || Instant::now() >= dl)
            {
                return;
            }
            let batch = match self.peek(max).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    let d = self.backoff.next_delay();
                    if let Wake::Stop = self.sleep(d).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.notify.notified() => {}
                    r = self.stop.changed() => if r.is_err() { return },
                }
                continue;
            }
            // Let a partial batch fill until its oldest record is `max_wait` old.
            if batch.len() < max && !policy.max_wait.is_zero() && self.deadline().is_none() {
                let age =
                    Duration::from_millis(spool::now_ms().saturating_sub(batch[0].enqueued_ms));
                if age < policy.max_wait {
                    tokio::select! {
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep(policy.max_wait - age) => {}
                        _ = self.stop.changed() => {}
                    }
                    // Re-read: the batch may be full now, or old enough.
                    continue;
                }
            }
            if let Wake::Stop = self.send(batch, &mut retrying).await {
                return;
            }
        }
    }

    /// One delivery attempt of `batch` and what follows from its outcome.
    async fn send(&mut self, batch: Vec<Record>, retrying: &mut bool) -> Wake {
        let n = batch.len() as u64;
        if *retrying {
            self.metrics.retried.get_or_create(&self.labels).inc_by(n);
        }
        let deliver = self.deliver.clone();
        let result = {
            let attempt = deliver.deliver(&batch);
            tokio::pin!(attempt);
            loop {
                let dl = self.deadline();
                tokio::select! {
                    r = &mut attempt => break Some(r),
                    _ = async {
                        match dl {
                            Some(dl) => tokio::time::sleep_until(dl.into()).await,
                            None => std::future::pending::<()>().await,
                        }
                    } => break None,
                    r = self.stop.changed() => if r.is_err() { break None },
                }
            }
        };
        let Some(result) = result else {
            // Stopped mid-send: the batch stays spooled and goes again next run.
            return Wake::Stop;
        };
        match result {
            Ok(()) => {
                if let Err(e) = self.remove(&batch).await {
                    tracing::error!(error = %e, "delivered, but cannot remove from the spool (will be sent again)");
                }
                let now = spool::now_ms();
                let hist = self.metrics.latency.get_or_create(&self.labels);
                for r in &batch {
                    hist.observe(now.saturating_sub(r.enqueued_ms) as f64 / 1000.0);
                }
                drop(hist);
                self.metrics.sent.get_or_create(&self.labels).inc_by(n);
                self.backoff.reset();
                *retrying = false;
                self.gauges();
                Wake::Go
            }
            Err(SinkError::Permanent(reason)) => {
                self.metrics.failed.get_or_create(&self.labels).inc_by(n);
                tracing::warn!(records = n, reason = %reason, "refused for good: dead-lettered");
                let dead = self.dead.clone();
                let b = batch.clone();
                let r = reason.clone();
                let written = tokio::task::spawn_blocking(move || dead.write(&b, &r))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                match written {
                    Ok(()) => {
                        self.metrics
                            .dead_lettered
                            .get_or_create(&self.labels)
                            .inc_by(n);
                        if let Err(e) = self.remove(&batch).await {
                            tracing::error!(error = %e, "cannot remove dead-lettered records from the spool");
                        }
                        *retrying = false;
                        self.gauges();
                        Wake::Go
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the dead-letter file; keeping the records spooled");
                        let d = self.backoff.next_delay();
                        self.sleep(d).await
                    }
                }
            }
            Err(SinkError::Retryable {
                message,
                retry_after,
            }) => {
                self.metrics.failed.get_or_create(&self.labels).inc_by(n);
                let d = match retry_after {
                    Some(ra) => {
                        self.backoff.next_delay();
                        ra
                    }
                    None => self.backoff.next_delay(),
                };
                tracing::warn!(records = n, error = %message, retry_in_ms = d.as_millis() as u64, "delivery failed; will retry");
                *retrying = true;
                self.sleep(d).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        for d in [100u64, 200, 400, 800, 1000, 1000] {
            let got = b.next_delay();
            assert!(
                got >= ms(d / 2) && got <= ms(d),
                "{got:?} not in [{}, {d}] ms",
                d / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= ms(100));
    }

    #[test]
    fn spool_settings_are_checked() {
        assert!(SpoolConfig::default().validate().is_ok());
        let bad = SpoolConfig {
            retry_max_ms: 1,
            ..SpoolConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().under("spool").key,
            "spool.retry_max_ms"
        );
    }
}
