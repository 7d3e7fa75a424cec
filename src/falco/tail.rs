//! Follows Falco's JSON output file (`file_output` with `json_output: true`) and turns each
//! complete line into an alert.
//!
//! It follows the file across rotation by rename (it finishes the old file, then opens the new
//! one) and by truncation (copytruncate: it starts again from the top), never emits a partial last
//! line, and checkpoints the file's identity (device, inode) and the offset of the last complete
//! line it handed on, so that a restart resumes exactly where the last run stopped. Each alert's
//! uuid is derived from that position, so a line read twice (e.g. after a crash between routing
//! and checkpointing) carries the same uuid and consumers de-duplicate it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::alert::Alert;

/// Where a tailer stands: which file, and the offset after the last complete line handed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// Bytes consumed.
    pub offset: u64,
}

impl Checkpoint {
    /// Reads a checkpoint file; a missing or unreadable one means "start at the top".
    pub fn load(path: &Path) -> Option<Checkpoint> {
        let text = std::fs::read_to_string(path).ok()?;
        match serde_json::from_str(&text) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable tail checkpoint");
                None
            }
        }
    }

    /// Writes the checkpoint atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
        std::fs::rename(tmp, path)
    }
}

/// Label of the line counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `routed` or `invalid`.
    pub result: &'static str,
}

/// Metric families of Falco alert intake (tail and `http_output`).
#[derive(Clone)]
pub struct FalcoInMetrics {
    /// Lines read from Falco's output file, by result.
    pub tail_lines: Family<ResultLabel, Counter>,
    /// Alerts posted by Falco's `http_output`, by result.
    pub http_alerts: Family<ResultLabel, Counter>,
    /// File rotations followed (rename or truncation).
    pub rotations: Counter,
    /// 1 when Falco's health endpoint answered 2xx at the last check, else 0.
    pub falco_up: prometheus_client::metrics::gauge::Gauge,
    /// `kaudit_alerts_total` (shared with detection), where Falco's alerts count as `origin=falco`.
    pub alerts: Family<crate::detect::AlertLabels, Counter>,
}

impl FalcoInMetrics {
    /// Counts one alert from Falco, and whether it was routed or refused as invalid.
    pub fn routed(&self, family: &Family<ResultLabel, Counter>, alert: &Alert) {
        family
            .get_or_create(&ResultLabel { result: "routed" })
            .inc();
        self.alerts
            .get_or_create(&crate::detect::AlertLabels {
                priority: alert.priority.as_lower(),
                origin: "falco",
            })
            .inc();
    }
}

impl FalcoInMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry, alerts: Family<crate::detect::AlertLabels, Counter>) -> Self {
        let m = FalcoInMetrics {
            alerts,
            tail_lines: Family::default(),
            http_alerts: Family::default(),
            rotations: Counter::default(),
            falco_up: Default::default(),
        };
        r.register(
            "falco_up",
            "Falco's health endpoint answered at the last check",
            m.falco_up.clone(),
        );
        r.register(
            "falco_tail_lines",
            "Lines read from Falco's JSON output file",
            m.tail_lines.clone(),
        );
        r.register(
            "falco_http_alerts",
            "Alerts received on Falco's http_output intake",
            m.http_alerts.clone(),
        );
        r.register(
            "falco_tail_rotations",
            "Rotations of Falco's output file followed",
            m.rotations.clone(),
        );
        for result in ["routed", "invalid"] {
            let _ = m.tail_lines.get_or_create(&ResultLabel { result });
            let _ = m.http_alerts.get_or_create(&ResultLabel { result });
        }
        m
    }
}

/// What the tailer follows and where it keeps its checkpoint.
#[derive(Clone, Debug)]
pub struct TailSettings {
    /// Falco's output file.
    pub path: PathBuf,
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// How often the file is polled for growth and rotation.
    pub poll: Duration,
}

/// An open file being followed.
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Offset after the last complete line handed on.
    offset: u64,
    /// Bytes read past `offset` that do not end in a newline yet.
    partial: Vec<u8>,
}

impl OpenFile {
    fn open(path: &Path, offset: u64) -> std::io::Result<OpenFile> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let offset = if meta.len() >= offset { offset } else { 0 };
        file.seek(SeekFrom::Start(offset))?;
        Ok(OpenFile {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            partial: Vec::new(),
        })
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            dev: self.dev,
            ino: self.ino,
            offset: self.offset,
        }
    }

    /// Reads what is new and returns the complete lines, each with its start offset.
    fn read_lines(&mut self) -> std::io::Result<Vec<(u64, Vec<u8>)>> {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf)?;
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        let mut start = 0usize;
        while let Some(nl) = self.partial[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl;
            lines.push((
                self.offset + start as u64,
                self.partial[start..end].to_vec(),
            ));
            start = end + 1;
        }
        self.partial.drain(..start);
        self.offset += start as u64;
        Ok(lines)
    }

    /// True when `path` no longer names this file (renamed away, or replaced).
    fn rotated_away(&self, path: &Path) -> bool {
        match std::fs::metadata(path) {
            Ok(m) => m.ino() != self.ino || m.dev() != self.dev,
            Err(_) => true,
        }
    }

    /// True when the file shrank below what was consumed (copytruncate).
    fn truncated(&self) -> bool {
        self.file
            .metadata()
            .map(|m| m.len() < self.offset + self.partial.len() as u64)
            .unwrap_or(false)
    }
}

/// Finds a file in `path`'s directory with the given identity (a rotated-away file).
fn find_by_inode(path: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.ino() == ino && m.dev() == dev)
                .unwrap_or(false)
        })
}

/// The uuid of the line at `offset` of file (`dev`, `ino`): the same line always gets the same id.
pub fn line_uuid(dev: u64, ino: u64, offset: u64) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("kaudit-falco-tail:{dev}:{ino}:{offset}").as_bytes(),
    )
}

/// Follows the file until `stop` fires, sending alerts to `alerts`.
pub fn spawn(
    settings: TailSettings,
    alerts: mpsc::Sender<Alert>,
    metrics: FalcoInMetrics,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tailer = Tailer {
            settings,
            alerts,
            metrics,
            current: None,
            resume: None,
        };
        tailer.resume = Checkpoint::load(&tailer.settings.checkpoint);
        loop {
            tailer.poll().await;
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(tailer.settings.poll) => {}
            }
        }
        // One last read so that lines written before the stop are not left for the next run.
        tailer.poll().await;
    })
}

struct Tailer {
    settings: TailSettings,
    alerts: mpsc::Sender<Alert>,
    metrics: FalcoInMetrics,
    current: Option<OpenFile>,
    resume: Option<Checkpoint>,
}

impl Tailer {
    async fn poll(&mut self) {
        if self.current.is_none() {
            self.open_current().await;
        }
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        if cur.truncated() {
            tracing::info!(path = %self.settings.path.display(), "Falco output truncated; reading from the top");
            self.metrics.rotations.inc();
            cur.offset = 0;
            cur.partial.clear();
            if let Err(e) = cur.file.seek(SeekFrom::Start(0)) {
                tracing::warn!(error = %e, "cannot seek Falco output");
            }
        }
        self.drain_current().await;
        let rotated = self
            .current
            .as_ref()
            .is_some_and(|c| c.rotated_away(&self.settings.path));
        if rotated {
            // Finish the old file (Falco may have written its last lines just before the rename),
            // then switch to the new one from its start.
            self.drain_current().await;
            if let Some(old) = self.current.take()
                && !old.partial.is_empty()
            {
                tracing::warn!(
                    bytes = old.partial.len(),
                    "rotated Falco output ended with an incomplete line; dropped"
                );
                self.metrics
                    .tail_lines
                    .get_or_create(&ResultLabel { result: "invalid" })
                    .inc();
            }
            self.metrics.rotations.inc();
            tracing::info!(path = %self.settings.path.display(), "Falco output rotated; following the new file");
            self.open_at(0).await;
        }
    }

    /// Opens the file named by the path, resuming from the checkpoint when it is the same file;
    /// when the checkpointed file was rotated away while we were down, finishes it first.
    async fn open_current(&mut self) {
        let resume = self.resume.take();
        let Ok(meta) = std::fs::metadata(&self.settings.path) else {
            self.resume = resume;
            return;
        };
        if let Some(cp) = resume {
            if meta.ino() == cp.ino && meta.dev() == cp.dev {
                self.open_at(cp.offset).await;
                return;
            }
            if let Some(old) = find_by_inode(&self.settings.path, cp.dev, cp.ino) {
                match OpenFile::open(&old, cp.offset) {
                    Ok(o) => {
                        tracing::info!(file = %old.display(), "finishing the rotated Falco output first");
                        self.current = Some(o);
                        self.drain_current().await;
                        self.current = None;
                    }
                    Err(e) => {
                        tracing::warn!(file = %old.display(), error = %e, "cannot reopen rotated output")
                    }
                }
            }
        }
        self.open_at(0).await;
    }

    async fn open_at(&mut self, offset: u64) {
        match OpenFile::open(&self.settings.path, offset) {
            Ok(o) => {
                self.current = Some(o);
                self.save();
            }
            Err(e) => {
                tracing::debug!(path = %self.settings.path.display(), error = %e, "Falco output not readable yet");
            }
        }
    }

    async fn drain_current(&mut self) {
        loop {
            let Some(cur) = self.current.as_mut() else {
                return;
            };
            let lines = match cur.read_lines() {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read Falco output");
                    return;
                }
            };
            if lines.is_empty() {
                return;
            }
            let (dev, ino) = (cur.dev, cur.ino);
            for (offset, line) in lines {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match super::alert_in::parse(&line, line_uuid(dev, ino, offset)) {
                    Ok(alert) => {
                        self.metrics.routed(&self.metrics.tail_lines, &alert);
                        if self.alerts.send(alert).await.is_err() {
                            tracing::error!("router is gone; stopping the Falco tailer");
                            return;
                        }
                    }
                    Err(e) => {
                        self.metrics
                            .tail_lines
                            .get_or_create(&ResultLabel { result: "invalid" })
                            .inc();
                        tracing::warn!(
                            file = %self.settings.path.display(),
                            offset,
                            error = %e,
                            "invalid Falco alert line"
                        );
                    }
                }
            }
            self.save();
        }
    }

    fn save(&self) {
        if let Some(cur) = &self.current
            && let Err(e) = cur.checkpoint().save(&self.settings.checkpoint)
        {
            tracing::warn!(path = %self.settings.checkpoint.display(), error = %e, "cannot save tail checkpoint");
        }
    }
}
