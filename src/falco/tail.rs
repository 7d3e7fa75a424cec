//! Follows Falco's JSON output file (`file_output` with `json_output: true`) and turns each
//! complete line into an alert.
//!
//! Following (rotation by rename and by copytruncate, partial lines, resuming) is
//! [`crate::follow`]'s. The tailer routes a chunk's alerts, waits until every one is in its sinks'
//! spools, and only then saves the position, so a crash anywhere loses nothing. Each alert's uuid
//! is derived from its line's identity (the file's fingerprint and the line's offset), so a line
//! read twice carries the same uuid and consumers de-duplicate it, while a truncated or replaced
//! file's lines get new ones.

use std::path::PathBuf;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::alert::Alert;
use crate::delivery::alerts::AlertSender;
use crate::delivery::{Backoff, hold};
use crate::follow::{Chunk, Follower, Note, Position};

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

/// The uuid of the line at `offset` of the file with first-line fingerprint `fingerprint`: the
/// same line always gets the same id, a different file (or the same inode after copytruncate)
/// different ones.
pub fn line_uuid(fingerprint: u64, offset: u64) -> Uuid {
    Uuid::new_v5(
        &crate::detect::ALERT_UUID_NAMESPACE,
        format!("falco-tail:{fingerprint:016x}:{offset}").as_bytes(),
    )
}

/// Most bytes read from the file per chunk.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Follows the file until `stop` fires, sending alerts to `alerts`.
pub fn spawn(
    settings: TailSettings,
    alerts: AlertSender,
    metrics: FalcoInMetrics,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let resume = Position::load(&settings.checkpoint);
        let mut tailer = Tailer {
            follower: Follower::new(settings.path.clone(), resume),
            settings,
            alerts,
            metrics,
        };
        loop {
            if !tailer.poll(&mut stop).await {
                return;
            }
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(tailer.settings.poll) => {}
            }
        }
        // One last read so that lines written before the stop are not left for the next run.
        tailer.poll(&mut stop).await;
    })
}

struct Tailer {
    settings: TailSettings,
    follower: Follower,
    alerts: AlertSender,
    metrics: FalcoInMetrics,
}

impl Tailer {
    /// Reads and routes what is new; false when the router is gone.
    async fn poll(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            let (chunks, notes) = self.follower.poll(CHUNK_BYTES);
            for n in notes {
                self.note(n);
            }
            if chunks.is_empty() {
                return true;
            }
            for chunk in chunks {
                if !self.route(chunk, stop).await {
                    return false;
                }
            }
        }
    }

    fn note(&self, n: Note) {
        let path = self.settings.path.display();
        match n {
            Note::Rotated => {
                self.metrics.rotations.inc();
                tracing::info!(%path, "Falco output rotated; following the new file");
            }
            Note::Truncated => {
                self.metrics.rotations.inc();
                tracing::info!(%path, "Falco output truncated; reading from the top");
            }
            Note::DroppedPartial(bytes) => {
                tracing::warn!(%path, bytes, "rotated Falco output ended with an incomplete line; dropped");
                self.metrics
                    .tail_lines
                    .get_or_create(&ResultLabel { result: "invalid" })
                    .inc();
            }
            Note::Error(e) => tracing::warn!(%path, error = %e, "cannot read Falco output"),
        }
    }

    /// Routes one chunk's alerts and saves its end position once all are spooled; a chunk whose
    /// alerts could not all be spooled is routed again (same uuids) after a backoff.
    async fn route(&mut self, chunk: Chunk, stop: &mut watch::Receiver<bool>) -> bool {
        let mut alerts = Vec::new();
        // One log line per chunk for its invalid lines, never one per line: a file of junk
        // must not flood the log.
        let mut invalid = 0u64;
        let mut first_invalid = None;
        for line in &chunk.lines {
            if line.text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match super::alert_in::parse(&line.text, line_uuid(chunk.fingerprint(), line.offset)) {
                Ok(alert) => {
                    self.metrics.routed(&self.metrics.tail_lines, &alert);
                    alerts.push(alert);
                }
                Err(e) => {
                    invalid += 1;
                    first_invalid.get_or_insert((line.offset, e.to_string()));
                }
            }
        }
        if let Some((offset, error)) = first_invalid {
            self.metrics
                .tail_lines
                .get_or_create(&ResultLabel { result: "invalid" })
                .inc_by(invalid);
            tracing::warn!(
                file = %self.settings.path.display(),
                lines = invalid,
                first_offset = offset,
                first_error = %error,
                "invalid Falco alert lines dropped"
            );
        }
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            let (h, done) = hold::awaitable();
            for a in &alerts {
                if self.alerts.send_held(a.clone(), h.share()).await.is_err() {
                    tracing::error!("router is gone; stopping the Falco tailer");
                    return false;
                }
            }
            h.release();
            if done.await.unwrap_or(false) {
                break;
            }
            let wait = backoff.next_delay();
            tracing::warn!(
                retry_in_ms = wait.as_millis() as u64,
                "some Falco alerts were not spooled; routing them again"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // Not checkpointed: the next run reads these lines again.
                _ = stop.changed() => return false,
            }
        }
        if let Err(e) = chunk.end.save(&self.settings.checkpoint) {
            tracing::warn!(path = %self.settings.checkpoint.display(), error = %e, "cannot save tail checkpoint");
        }
        true
    }
}
