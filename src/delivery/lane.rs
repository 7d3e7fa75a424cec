//! A lane: one destination's durable path. An in-memory queue in front of a spool writer (which
//! batches records into fsynced transactions and releases their holds), and a delivery worker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::append::spool_batch;
use super::direct::Handoff;
use super::spool::stored_len;
use super::worker::Worker;
use super::{
    Backoff, DeadLetters, Deliver, DeliveryMetrics, Hold, SinkLabels, Spool, SpoolConfig,
    SpoolError,
};

/// Errors of a lane.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The lane no longer accepts records (it is closing).
    #[error("lane {0:?} is closed")]
    Closed(String),
    /// The lane's spool cannot be written right now (its disk is failing); held work is refused
    /// at once so that its producer offers it again later and other sinks keep flowing.
    #[error("lane {0:?} cannot write its spool right now")]
    Faulted(String),
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

    /// Marks the lane's spool as a tenant's (`<spool_dir>/tenant` holds the namespace), so that a
    /// later start can quarantine it when the sink is gone ([`quarantine_orphans`]).
    pub fn mark_tenant(&self, namespace: &str) -> std::io::Result<()> {
        std::fs::write(self.spool_dir.join(TENANT_MARK), namespace)
    }

    /// Moves the spool directory and dead-letter file of a lane that is gone for good (a
    /// tenant's sink was deleted) to `<data_dir>/quarantine/<name>.<unix ms>/`, so that a sink
    /// of the same name created later (another team reusing the namespace) starts empty and
    /// never receives them. Returns where they went, or `None` when there was nothing.
    pub fn quarantine(&self, data_dir: &Path, name: &str) -> std::io::Result<Option<PathBuf>> {
        let present: Vec<&PathBuf> = [&self.spool_dir, &self.dead_letter]
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let to = data_dir.join("quarantine").join(format!("{name}.{ms}"));
        std::fs::create_dir_all(&to)?;
        for p in present {
            if let Some(file_name) = p.file_name() {
                std::fs::rename(p, to.join(file_name))?;
            }
        }
        Ok(Some(to))
    }
}

/// The file in a spool directory naming the tenant that owns it.
const TENANT_MARK: &str = "tenant";

/// Quarantines every tenant's spool under `<data_dir>/spool/` whose sink `keep` does not name
/// (its sink was removed while kaudit was not running); returns the sink names and where they
/// went.
pub fn quarantine_orphans(
    data_dir: &Path,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, std::io::Result<Option<PathBuf>>)> {
    let Ok(dirs) = std::fs::read_dir(data_dir.join("spool")) else {
        return Vec::new();
    };
    dirs.filter_map(Result::ok)
        .filter(|d| d.path().join(TENANT_MARK).is_file())
        .filter_map(|d| d.file_name().into_string().ok())
        .filter(|name| !keep(name))
        .map(|name| {
            let moved = LanePaths::under(data_dir, &name).quarantine(data_dir, &name);
            (name, moved)
        })
        .collect()
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
    /// Set by the spool writer while its writes fail, cleared by the next one that succeeds.
    faulted: Arc<AtomicBool>,
    /// Where the spool writer hands batches to an idle worker (see [`super::direct`]).
    handoff: Arc<Handoff>,
    /// Bytes queued and not yet spooled or delivered (as the spool counts them).
    pending: Arc<AtomicU64>,
    tx: Option<mpsc::Sender<Queued>>,
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
        let dead = Arc::new(
            DeadLetters::with_limits(
                paths.dead_letter.clone(),
                name,
                dead_letter_field,
                cfg.dead_letter_limits(),
            )
            .counting_discards(
                metrics
                    .dead_letters_discarded
                    .get_or_create(&labels)
                    .clone(),
            ),
        );
        let mut lane = Lane {
            name: name.to_string(),
            labels,
            cfg: cfg.clone(),
            spool,
            dead,
            metrics: metrics.clone(),
            notify: Arc::new(Notify::new()),
            faulted: Arc::new(AtomicBool::new(false)),
            handoff: Handoff::new(),
            pending: Arc::new(AtomicU64::new(0)),
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

    /// True while a worker runs that takes held batches straight from memory when the spool is
    /// empty (see [`super::direct`]).
    pub fn takes_direct(&self) -> bool {
        self.handoff.room() > 0
    }

    /// Bytes this lane holds for its destination, counted as the spool counts them: what is
    /// spooled, plus what is queued or on its way to the destination directly. Records leave
    /// it from the front only (delivered, refused, evicted), in the order they were queued.
    pub fn held_bytes(&self) -> u64 {
        self.spool.bytes() + self.pending.load(Ordering::Acquire)
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
        let (tx, rx) = mpsc::channel::<Queued>(self.cfg.queue_capacity.max(1));
        let task = tokio::spawn(
            Spooler {
                spool: self.spool.clone(),
                dead: self.dead.clone(),
                notify: self.notify.clone(),
                metrics: self.metrics.clone(),
                labels: self.labels.clone(),
                cfg: self.cfg.clone(),
                faulted: self.faulted.clone(),
                handoff: self.handoff.clone(),
                pending: self.pending.clone(),
            }
            .run(rx)
            .instrument(tracing::info_span!("spooler", sink = %self.name)),
        );
        self.tx = Some(tx);
        self.spooler = Some(task);
    }

    /// Queues one record; `hold` is released once the record is in the spool, or delivered
    /// straight from memory (see [`super::direct`]). Waits only while the spool writer is
    /// behind (disk-bound; a slow destination holds it for at most `spool.direct_delivery_ms`
    /// once, a dead one not at all, until the spool cap). While the spool's disk is failing, a
    /// record with a hold is refused at once ([`LaneError::Faulted`], the hold fails and its
    /// producer offers the work again later); one without a hold waits, as nothing else would
    /// keep it.
    pub async fn enqueue(&self, payload: Bytes, hold: Option<Hold>) -> Result<(), LaneError> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| LaneError::Closed(self.name.clone()))?;
        if hold.is_some() && self.faulted.load(Ordering::Acquire) {
            return Err(LaneError::Faulted(self.name.clone()));
        }
        let bytes = stored_len(payload.len());
        self.pending.fetch_add(bytes, Ordering::AcqRel);
        if tx.send(Queued { payload, hold }).await.is_err() {
            self.pending.fetch_sub(bytes, Ordering::AcqRel);
            return Err(LaneError::Closed(self.name.clone()));
        }
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
            denied_grace: Duration::from_secs(self.cfg.denied_retry_secs),
            denied_since: None,
            handoff: self.handoff.clone(),
            direct_wait: Duration::from_millis(self.cfg.direct_delivery_ms),
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

/// A record on its way to the spool, with the hold to release once it is there.
struct Queued {
    payload: Bytes,
    hold: Option<Hold>,
}

/// The spool writer of a lane: queued records into the spool in batches (one fsync each).
struct Spooler {
    spool: Arc<Spool>,
    dead: Arc<DeadLetters>,
    notify: Arc<Notify>,
    metrics: DeliveryMetrics,
    labels: SinkLabels,
    cfg: SpoolConfig,
    faulted: Arc<AtomicBool>,
    handoff: Arc<Handoff>,
    pending: Arc<AtomicU64>,
}

impl Spooler {
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        let Spooler {
            spool,
            dead,
            notify,
            metrics,
            labels,
            cfg,
            faulted,
            handoff,
            pending,
        } = self;
        let mut backoff = Backoff::new(
            Duration::from_millis(cfg.retry_initial_ms),
            Duration::from_millis(cfg.retry_max_ms),
        );
        while let Some(first) = rx.recv().await {
            // Straight to the destination when nothing waits in the spool (see `direct`): then
            // as many as the worker takes in one batch.
            let room = handoff.room();
            let direct = room > 0 && first.hold.is_some() && spool.is_empty();
            let limit = if direct {
                room.min(cfg.write_batch)
            } else {
                cfg.write_batch
            };
            let mut queued = vec![first];
            while queued.len() < limit {
                match rx.try_recv() {
                    Ok(p) => queued.push(p),
                    Err(_) => break,
                }
            }
            // More than another batch waiting behind this one: the destination does not keep
            // up, so the spool takes the backlog (at disk speed) rather than memory.
            let direct = direct && rx.len() < room;
            let (batch, holds): (Vec<Bytes>, Vec<Option<Hold>>) =
                queued.into_iter().map(|q| (q.payload, q.hold)).unzip();
            let batch = Arc::new(batch);
            let bytes: u64 = batch.iter().map(|b| stored_len(b.len())).sum();
            let spool_it = if direct {
                handoff.offer(batch, holds).await
            } else {
                Some((batch, holds))
            };
            if let Some((batch, holds)) = spool_it {
                loop {
                    match spool_batch(&spool, &dead, &metrics, &labels, &batch).await {
                        Ok(_) => {
                            backoff.reset();
                            if faulted.swap(false, Ordering::AcqRel) {
                                tracing::info!("spool writes again");
                            }
                            holds.into_iter().flatten().for_each(Hold::release);
                            break;
                        }
                        Err(e) => {
                            faulted.store(true, Ordering::Release);
                            tracing::error!(error = %e, records = batch.len(), "cannot write the spool; retrying (held alerts are routed again later)");
                        }
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                notify.notify_one();
            }
            // Spooled (counted in the spool's bytes now) or delivered.
            pending.fetch_sub(bytes, Ordering::AcqRel);
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
}
