//! The inbox: a write-ahead log of accepted audit batches, so that "accepted" means "on disk".
//!
//! Every source (the webhook, the audit-log file, the cloud sources) appends a batch and answers
//! its client (a 200, an ack, a checkpoint) only once the append has returned: by then the batch
//! is fsynced. Appends are group-committed: one writer thread takes every batch waiting, writes
//! them with one `write` and one `fdatasync`, so many concurrent requests share one disk flush.
//!
//! Detection reads batches back in order ([`InboxReader`]). Each comes with a [`Hold`]: it is done
//! when every alert it raised (and, with Falco, the batch itself) is in its destination's spool.
//! Done batches count towards a watermark; segment files wholly below it are deleted (one is
//! kept to be reused, see below). A batch whose alerts could not all be spooled is offered again
//! after a backoff. On start the inbox replays every batch after the persisted watermark, so a
//! crash anywhere between "accepted" and "spooled" loses nothing; what is replayed keeps its
//! alert uuids (they are derived from the events), so consumers de-duplicate.
//!
//! On disk: `<data_dir>/inbox/<first seq>.seg` (records, see [`record`]), `done` (the
//! watermark) and at most one `spare`: a done segment kept to be written over by the next one.
//! A file that grows has its size and block map written by every `fdatasync` besides the data;
//! one written over within its length has only its data flushed, which took the sync's CPU from
//! about 120 to 65 microseconds per 80 KiB batch here. The spare is at most one segment
//! (`segment_bytes`) beyond `max_bytes`.
//!
//! A write or sync error fails that group's appends (the client gets 503, never a 200), closes
//! the segment, and the next append starts a new one, so a full or failing disk heals as soon
//! as it has room again.

mod carry;
mod reader;
pub mod record;
pub mod watermark;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{Backoff, Hold};
use crate::health::Probe;
use crate::invalid::{Invalid, positive};
use carry::{Admitted, Carried};
pub use carry::{Evaluated, Screen, Screened, ValidateOnly};
pub use record::InboxRecord;
use watermark::Watermark;
use writer::Append;

/// Settings of the inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// Most bytes of batches on disk not yet fully handled; past it sources are told to retry
    /// later (the webhook answers 429).
    pub max_bytes: u64,
    /// Size at which a segment file is closed and the next one started.
    pub segment_bytes: u64,
    /// First delay before a batch whose alerts could not all be spooled is offered again, in
    /// milliseconds (doubling).
    pub retry_initial_ms: u64,
    /// Longest such delay, in milliseconds.
    pub retry_max_ms: u64,
    /// Bytes of fresh batches (and the alerts their check raised) kept in memory for detection,
    /// so that it does not read back and evaluate again what was just accepted; past it a batch
    /// is read back from disk.
    pub memory_bytes: usize,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            max_bytes: 2 * 1024 * 1024 * 1024,
            segment_bytes: 64 * 1024 * 1024,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
            memory_bytes: 64 * 1024 * 1024,
        }
    }
}

impl InboxConfig {
    /// Checks what types alone cannot; keys are relative to `inbox`.
    pub fn validate(&self) -> Result<(), Invalid> {
        positive("max_bytes", self.max_bytes)?;
        positive("segment_bytes", self.segment_bytes)?;
        positive("retry_initial_ms", self.retry_initial_ms)?;
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(Invalid::new(
                "retry_max_ms",
                "must be at least inbox.retry_initial_ms",
            ));
        }
        Ok(())
    }
}

/// Why a batch was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InboxError {
    /// Over `inbox.max_bytes`: retry later.
    #[error("inbox full ({what}): retry later")]
    Full {
        /// Which limit: bytes or batches, with the numbers.
        what: String,
    },
    /// The disk refused the write (full, failing, read-only): nothing was accepted.
    #[error("inbox {dir}: cannot write: {message}")]
    Storage {
        /// The inbox directory.
        dir: String,
        /// What the OS said.
        message: String,
    },
    /// The inbox is closing.
    #[error("inbox is closed")]
    Closed,
}

/// Metric families of the inbox.
#[derive(Clone)]
pub struct InboxMetrics {
    /// Batches appended (fsynced).
    pub appended: Counter,
    /// Bytes appended.
    pub appended_bytes: Counter,
    /// Batches refused, by the writer (storage errors) or for room.
    pub refused: prometheus_client::metrics::family::Family<ReasonLabel, Counter>,
    /// Batches handled to the end (every alert spooled).
    pub done: Counter,
    /// Batches offered again after some alert could not be spooled.
    pub retried: Counter,
    /// Batches replayed at start (accepted by an earlier run, not finished).
    pub replayed: Counter,
    /// Batches accepted and not yet handled.
    pub pending: Gauge,
    /// Bytes of segment files on disk.
    pub disk_bytes: Gauge,
    /// Time of one group commit (write + fdatasync), in seconds.
    pub commit_seconds: Histogram,
    /// Batches per group commit.
    pub group_batches: Histogram,
}

/// Label of refused appends.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabel {
    /// `full` or `storage`.
    pub reason: &'static str,
}

impl InboxMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = InboxMetrics {
            appended: Counter::default(),
            appended_bytes: Counter::default(),
            refused: Default::default(),
            done: Counter::default(),
            retried: Counter::default(),
            replayed: Counter::default(),
            pending: Gauge::default(),
            disk_bytes: Gauge::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            group_batches: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
        };
        r.register(
            "inbox_appended",
            "Batches written to the inbox",
            m.appended.clone(),
        );
        r.register(
            "inbox_appended_bytes",
            "Bytes written to the inbox",
            m.appended_bytes.clone(),
        );
        r.register(
            "inbox_refused",
            "Batches the inbox refused, by reason",
            m.refused.clone(),
        );
        r.register("inbox_done", "Batches fully handled", m.done.clone());
        r.register(
            "inbox_retried",
            "Batches offered again because an alert could not be spooled",
            m.retried.clone(),
        );
        r.register(
            "inbox_replayed",
            "Batches replayed at start",
            m.replayed.clone(),
        );
        r.register(
            "inbox_pending_batches",
            "Batches accepted and not yet handled",
            m.pending.clone(),
        );
        r.register(
            "inbox_disk_bytes",
            "Bytes of inbox segment files",
            m.disk_bytes.clone(),
        );
        r.register(
            "inbox_commit_duration_seconds",
            "Time of one group commit (write + fdatasync)",
            m.commit_seconds.clone(),
        );
        r.register(
            "inbox_group_batches",
            "Batches per group commit",
            m.group_batches.clone(),
        );
        for reason in ["full", "storage"] {
            let _ = m.refused.get_or_create(&ReasonLabel { reason });
        }
        m
    }
}

/// Where one record is: enough to read it back.
#[derive(Clone, Debug)]
struct Entry {
    seq: u64,
    path: Arc<PathBuf>,
    offset: u64,
    len: usize,
    attempt: u32,
}

/// One segment file as the inbox tracks it.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// The last seq written to it (its first seq - 1 while empty).
    last_seq: u64,
    /// Bytes on disk.
    bytes: u64,
    /// Still being written.
    active: bool,
}

#[derive(Debug)]
struct State {
    watermark: Watermark,
    segments: BTreeMap<u64, Segment>,
    /// Seqs appended and not done.
    pending: u64,
    persisted: u64,
}

struct Shared {
    dir: PathBuf,
    cfg: InboxConfig,
    state: Mutex<State>,
    disk_bytes: AtomicU64,
    janitor: Notify,
    retry_tx: mpsc::UnboundedSender<Entry>,
    metrics: InboxMetrics,
    faulted: AtomicBool,
    probe: Option<Probe>,
    /// Held for a whole sweep, so two sweeps never interleave (an older watermark written
    /// after a newer one, or a caller returning while another sweep still deletes files).
    /// It also keeps the watermark file open (see [`write_watermark`]).
    sweeping: Mutex<Option<std::fs::File>>,
    /// True while the `spare` file is there; held while it is made or taken.
    spare: Mutex<bool>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn complete(&self, seq: u64) {
        let moved = {
            let mut st = self.lock();
            if st.watermark.is_done(seq) {
                return;
            }
            st.pending = st.pending.saturating_sub(1);
            self.metrics.pending.set(st.pending as i64);
            st.watermark.complete(seq)
        };
        self.metrics.done.inc();
        if moved {
            self.janitor.notify_one();
        }
    }

    fn set_faulted(&self, faulted: bool, why: &str) {
        let was = self.faulted.swap(faulted, Ordering::AcqRel);
        if was != faulted
            && let Some(p) = &self.probe
        {
            if faulted {
                p.not_ready(format!("cannot write: {why}"));
            } else {
                p.ready();
            }
        }
    }

    fn storage_error(&self, message: impl std::fmt::Display) -> InboxError {
        InboxError::Storage {
            dir: self.dir.display().to_string(),
            message: message.to_string(),
        }
    }

    /// Deletes segment files wholly done and persists the watermark.
    fn sweep(&self) {
        let mut one_at_a_time = self.sweeping.lock().unwrap_or_else(|p| p.into_inner());
        let (to_delete, mark) = {
            let mut st = self.lock();
            let mark = st.watermark.done_through();
            let gone: Vec<u64> = st
                .segments
                .iter()
                .filter(|(_, s)| !s.active && s.last_seq <= mark)
                .map(|(k, _)| *k)
                .collect();
            let mut paths = Vec::new();
            for k in gone {
                if let Some(s) = st.segments.remove(&k) {
                    self.disk_bytes.fetch_sub(s.bytes, Ordering::AcqRel);
                    paths.push(s.path);
                }
            }
            let persist = (st.persisted != mark).then_some(mark);
            if persist.is_some() {
                st.persisted = mark;
            }
            (paths, persist)
        };
        // The watermark first: a segment is only deleted once no restart would want it.
        if let Some(mark) = mark
            && let Err(e) = write_watermark(&mut one_at_a_time, &self.dir, mark)
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot persist the inbox watermark");
        }
        for p in to_delete {
            if self.keep_spare(&p) {
                continue;
            }
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %p.display(), error = %e, "cannot delete a done inbox segment");
            }
        }
        self.metrics
            .disk_bytes
            .set(self.disk_bytes.load(Ordering::Acquire) as i64);
    }
}

impl Shared {
    /// Keeps the done segment `p` as the spare when there is none (true: it is kept).
    fn keep_spare(&self, p: &Path) -> bool {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if *spare {
            return false;
        }
        match std::fs::rename(p, self.dir.join(SPARE_FILE)) {
            Ok(()) => {
                *spare = true;
                true
            }
            Err(e) => {
                tracing::debug!(file = %p.display(), error = %e, "cannot keep a done inbox segment to reuse");
                false
            }
        }
    }

    /// Makes the spare the segment file `path`, written over from its start (true), or says
    /// there is none to take.
    fn take_spare(&self, path: &Path) -> bool {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if !*spare {
            return false;
        }
        *spare = false;
        match std::fs::rename(self.dir.join(SPARE_FILE), path) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot reuse the spare inbox segment");
                false
            }
        }
    }
}

const WATERMARK_FILE: &str = "done";
/// A done segment file kept to be written over (see the module's doc).
const SPARE_FILE: &str = "spare";

fn read_watermark(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(WATERMARK_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Overwrites the watermark file in place (opened once, kept in `file`) with a record of fixed
/// length: one `pwrite`, where writing a new file and renaming it over the old one per moved
/// mark took 4 % of kaudit's CPU at 22,000 requests/s. A process killed at any point leaves the
/// old record or the new one (the write goes to the page cache whole); the mark is never
/// synced, as before: after a power loss a restart may replay done batches (at-least-once).
fn write_watermark(file: &mut Option<std::fs::File>, dir: &Path, mark: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = match file {
        Some(f) => f,
        None => file.insert(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(WATERMARK_FILE))?,
        ),
    };
    // 20 digits hold any u64; the record is never shorter than what it overwrites.
    let r = f.write_all_at(format!("{mark:020}\n").as_bytes(), 0);
    if r.is_err() {
        *file = None;
    }
    r
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

/// The appending side: cheap to clone, shared by every source.
#[derive(Clone)]
pub struct Inbox {
    tx: mpsc::UnboundedSender<Append>,
    shared: Arc<Shared>,
    /// `inbox.memory_bytes`: what carried batches may hold.
    carry: crate::memory::Budget,
}

/// The reading side, for detection: batches in order, then those offered again.
pub struct InboxReader {
    rx: mpsc::UnboundedReceiver<(Entry, Option<Carried>)>,
    retry_rx: mpsc::UnboundedReceiver<Entry>,
    shared: Arc<Shared>,
}

/// A batch read back from the inbox, with the hold that marks it done.
#[derive(Debug)]
pub struct InboxBatch {
    /// The batch as it was accepted.
    pub record: InboxRecord,
    /// Its alerts, when its source's check evaluated them as it was accepted (a fresh batch,
    /// within `inbox.memory_bytes`); `None`: evaluate the record.
    pub evaluated: Option<Evaluated>,
    /// Share it with everything the batch produces; when every share is released the batch is
    /// done, and if one is dropped unreleased the batch is offered again later.
    pub hold: Hold,
}

/// A running inbox: the appending side, the reading side, and the writer thread.
pub struct Opened {
    /// The appending side.
    pub inbox: Inbox,
    /// The reading side.
    pub reader: InboxReader,
    /// The writer thread and the janitor; await [`Worker::join`] after [`Inbox::close`].
    pub worker: Worker,
}

/// The inbox's background work.
pub struct Worker {
    writer: Option<std::thread::JoinHandle<()>>,
    janitor: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Worker {
    /// Waits for the writer to finish what was appended, then persists the watermark.
    pub async fn join(mut self) {
        if let Some(w) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        self.janitor.abort();
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.sweep()).await;
    }
}

impl Inbox {
    /// Opens (or creates) the inbox in `dir`, replays what an earlier run left unfinished, and
    /// starts the writer thread. Must be called inside a tokio runtime.
    pub fn open(
        dir: &Path,
        cfg: &InboxConfig,
        metrics: InboxMetrics,
        probe: Option<Probe>,
    ) -> Result<Opened, InboxError> {
        let err = |message: String| InboxError::Storage {
            dir: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create: {e}")))?;
        let mark = read_watermark(dir);
        let (entry_tx, entry_rx) = mpsc::unbounded_channel();
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let mut segments = BTreeMap::new();
        let mut max_seq = mark;
        let mut pending = 0u64;
        let mut disk = 0u64;
        let mut present = std::collections::HashSet::new();
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| err(format!("cannot list: {e}")))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let first = p
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".seg")?
                    .parse::<u64>()
                    .ok()?;
                Some((first, p))
            })
            .collect();
        files.sort();
        for (first, path) in files {
            let buf = std::fs::read(&path)
                .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
            let (records, end) = record::scan(&buf, first);
            if (end as usize) < buf.len() {
                // Past a reused file's newest record lie an earlier run's, intact: not a tear.
                if record::starts_intact(&buf[end as usize..]) {
                    tracing::debug!(file = %path.display(), end, "inbox segment was a reused file; cutting its earlier records");
                } else {
                    tracing::warn!(file = %path.display(), intact = end, size = buf.len(), "inbox segment has a torn tail; cutting it");
                }
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
                    let _ = f.set_len(end);
                }
            }
            let shared_path = Arc::new(path.clone());
            let mut last = first.saturating_sub(1);
            for (r, offset, len) in records {
                last = last.max(r.seq);
                max_seq = max_seq.max(r.seq);
                if r.seq > mark && present.insert(r.seq) {
                    pending += 1;
                    metrics.replayed.inc();
                    let entry = Entry {
                        seq: r.seq,
                        path: shared_path.clone(),
                        offset,
                        len,
                        attempt: 0,
                    };
                    let _ = entry_tx.send((entry, None));
                }
            }
            disk += end;
            segments.insert(
                first,
                Segment {
                    path,
                    last_seq: last,
                    bytes: end,
                    active: false,
                },
            );
        }
        if pending > 0 {
            tracing::info!(
                batches = pending,
                "inbox: replaying batches an earlier run accepted but did not finish"
            );
        }
        metrics.pending.set(pending as i64);
        metrics.disk_bytes.set(disk as i64);
        if let Some(p) = &probe {
            p.ready();
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            state: Mutex::new(State {
                watermark: Watermark::new(mark),
                segments,
                pending,
                persisted: mark,
            }),
            disk_bytes: AtomicU64::new(disk),
            janitor: Notify::new(),
            retry_tx,
            metrics,
            faulted: AtomicBool::new(false),
            probe,
            sweeping: Mutex::new(None),
            spare: Mutex::new(dir.join(SPARE_FILE).is_file()),
        });
        // Seqs after the watermark that are in no file (the refused group of an earlier run)
        // are done: nothing will ever complete them.
        {
            let mut st = shared.lock();
            for seq in mark + 1..=max_seq {
                if !present.contains(&seq) {
                    st.watermark.complete(seq);
                }
            }
        }
        let (tx, rx) = mpsc::unbounded_channel::<Append>();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("inbox-writer".into())
            .spawn(move || writer::writer_loop(rx, writer_shared, max_seq + 1, entry_tx))
            .map_err(|e| err(format!("cannot start the writer thread: {e}")))?;
        let js = shared.clone();
        let janitor = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = js.janitor.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let s = js.clone();
                let _ = tokio::task::spawn_blocking(move || s.sweep()).await;
            }
        });
        shared.sweep();
        Ok(Opened {
            inbox: Inbox {
                tx,
                shared: shared.clone(),
                carry: crate::memory::Budget::new(cfg.memory_bytes),
            },
            reader: InboxReader {
                rx: entry_rx,
                retry_rx,
                shared: shared.clone(),
            },
            worker: Worker {
                writer: Some(writer),
                janitor,
                shared,
            },
        })
    }

    /// Appends one batch; returns its seq once it is on disk (fsynced), or why it was not
    /// taken (then nothing of it will be processed, and the source should say so to its client).
    pub async fn append(
        &self,
        source: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<u64, InboxError> {
        self.append_evaluated(source, content_type, body, None)
            .await
    }

    /// As [`Inbox::append`], with the alerts the batch's check raised: detection takes them
    /// (and the body) from memory instead of reading the batch back and evaluating it, within
    /// `inbox.memory_bytes`.
    pub async fn append_evaluated(
        &self,
        source: &str,
        content_type: &str,
        body: Bytes,
        evaluated: Option<Evaluated>,
    ) -> Result<u64, InboxError> {
        // Only a batch with its alerts is carried: one without is read back and evaluated by
        // detection, which the disk read hardly adds to.
        let carried = evaluated.and_then(|evaluated| {
            let record_bytes = body.len() + source.len() + content_type.len();
            Admitted::within(&self.carry, record_bytes, evaluated)
        });
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Append {
                source: source.to_string(),
                content_type: content_type.to_string(),
                body,
                received_ms: super::spool::now_ms(),
                carried,
                reply,
            })
            .map_err(|_| InboxError::Closed)?;
        rx.await.unwrap_or(Err(InboxError::Closed))
    }

    /// Batches accepted and not yet handled.
    pub fn pending(&self) -> u64 {
        self.shared.lock().pending
    }

    /// True while the disk refuses writes.
    pub fn is_faulted(&self) -> bool {
        self.shared.faulted.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
