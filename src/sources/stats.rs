//! What each source has read: Prometheus families (labelled by the source's name, a bounded set
//! from the config) and a [`SourcesView`] that the console and tests read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::audit::Rejection;

/// Why a record was skipped. A bounded set: it labels metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Skip {
    /// Not JSON (a klog line, a cut-off record).
    Malformed,
    /// JSON, but not an audit Event, EventList or array of them.
    NotAnEvent,
    /// An item of a list that is not an object.
    NotAnObject,
    /// An event without `stageTimestamp`.
    MissingStageTimestamp,
    /// An event whose `stageTimestamp` is not RFC 3339.
    BadStageTimestamp,
    /// Larger than `ingest.max_event_bytes`.
    TooLarge,
    /// A CloudWatch message cut by CloudWatch (ends with `[Truncated...]`).
    Truncated,
    /// A Pub/Sub message that is not a Kubernetes AuditLog LogEntry.
    NotAuditLog,
    /// An Azure diagnostic record of another category (`kube-apiserver` klog lines...).
    OtherCategory,
    /// A rotated-away file ended without a newline.
    PartialLine,
}

impl Skip {
    /// Every reason, for pre-registering label values.
    pub const ALL: [Skip; 10] = [
        Skip::Malformed,
        Skip::NotAnEvent,
        Skip::NotAnObject,
        Skip::MissingStageTimestamp,
        Skip::BadStageTimestamp,
        Skip::TooLarge,
        Skip::Truncated,
        Skip::NotAuditLog,
        Skip::OtherCategory,
        Skip::PartialLine,
    ];

    /// Metric label and log text.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Malformed => "malformed",
            Skip::NotAnEvent => "not_an_event",
            Skip::NotAnObject => "not_an_object",
            Skip::MissingStageTimestamp => "missing_stage_timestamp",
            Skip::BadStageTimestamp => "bad_stage_timestamp",
            Skip::TooLarge => "too_large",
            Skip::Truncated => "truncated",
            Skip::NotAuditLog => "not_audit_log",
            Skip::OtherCategory => "other_category",
            Skip::PartialLine => "partial_line",
        }
    }
}

impl From<Rejection> for Skip {
    fn from(r: Rejection) -> Skip {
        match r {
            Rejection::NotAnObject => Skip::NotAnObject,
            Rejection::MissingStageTimestamp => Skip::MissingStageTimestamp,
            Rejection::BadStageTimestamp => Skip::BadStageTimestamp,
            Rejection::TooLarge => Skip::TooLarge,
            Rejection::Malformed => Skip::Malformed,
        }
    }
}

/// Label of the per-source families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// The source's name.
    pub source: String,
    /// Its type.
    pub source_type: &'static str,
}

/// Label of skipped records.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabel {
    /// The source's name.
    pub source: String,
    /// Why ([`Skip::as_str`]).
    pub reason: &'static str,
}

/// Metric families of the sources (the webhook's are `ingest`'s).
#[derive(Clone, Default)]
pub struct SourceMetrics {
    /// Events appended to the inbox.
    pub events_read: Family<SourceLabel, Counter>,
    /// Records skipped, by reason.
    pub skipped: Family<SkipLabel, Counter>,
    /// Seconds between the newest appended event's `stageTimestamp` and the append.
    pub lag_seconds: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// The source's position as a number (see docs/sources.md for each type's meaning).
    pub position: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Failed reads of the service, and inbox refusals.
    pub errors: Family<SourceLabel, Counter>,
    /// 1 when the last read of the service succeeded, else 0.
    pub up: Family<SourceLabel, Gauge>,
}

impl SourceMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = SourceMetrics::default();
        r.register(
            "source_events_read",
            "Audit events a source appended to the inbox",
            m.events_read.clone(),
        );
        r.register(
            "source_skipped",
            "Records a source skipped, by reason",
            m.skipped.clone(),
        );
        r.register(
            "source_lag_seconds",
            "Age of the newest event a source appended, at the time of the append",
            m.lag_seconds.clone(),
        );
        r.register(
            "source_position",
            "A source's position (file: byte offset; eks: newest timestamp in ms; gke: messages acked; aks: sum of committed offsets)",
            m.position.clone(),
        );
        r.register(
            "source_errors",
            "Failed reads of a source's service and inbox refusals",
            m.errors.clone(),
        );
        r.register(
            "source_up",
            "1 when a source's last read of its service succeeded",
            m.up.clone(),
        );
        m
    }
}

/// A snapshot of one source, for the console.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SourceStatus {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Events appended to the inbox.
    pub events_read: u64,
    /// Records skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Age of the newest appended event when it was appended, in seconds.
    pub lag_seconds: Option<f64>,
    /// Where it stands, in its own terms (`inode 12 offset 3456`, `acked 42`...).
    pub position: String,
    /// When it last appended.
    pub last_append: Option<DateTime<Utc>>,
    /// The last error reading its service, cleared by the next good read.
    pub last_error: Option<String>,
}

struct Inner {
    label: SourceLabel,
    metrics: SourceMetrics,
    read: AtomicU64,
    status: Mutex<SourceStatus>,
}

/// One source's counters: updates the metric families and the snapshot together.
#[derive(Clone)]
pub struct SourceStats(Arc<Inner>);

impl SourceStats {
    /// Stats of source `name` of type `type_name`, with its metric series pre-created.
    pub fn new(name: &str, type_name: &'static str, metrics: &SourceMetrics) -> SourceStats {
        let label = SourceLabel {
            source: name.to_string(),
            source_type: type_name,
        };
        let _ = metrics.events_read.get_or_create(&label);
        let _ = metrics.errors.get_or_create(&label);
        let _ = metrics.up.get_or_create(&label);
        for s in Skip::ALL {
            let _ = metrics.skipped.get_or_create(&SkipLabel {
                source: name.to_string(),
                reason: s.as_str(),
            });
        }
        SourceStats(Arc::new(Inner {
            label,
            metrics: metrics.clone(),
            read: AtomicU64::new(0),
            status: Mutex::new(SourceStatus {
                name: name.to_string(),
                type_name: type_name.to_string(),
                ..SourceStatus::default()
            }),
        }))
    }

    fn status(&self) -> std::sync::MutexGuard<'_, SourceStatus> {
        self.0.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.0.label.source
    }

    /// `n` events were appended; the newest had `newest` as its `stageTimestamp`.
    pub fn appended(&self, n: u64, newest: Option<DateTime<Utc>>) {
        self.0.read.fetch_add(n, Ordering::Relaxed);
        self.0
            .metrics
            .events_read
            .get_or_create(&self.0.label)
            .inc_by(n);
        let now = Utc::now();
        let mut st = self.status();
        st.events_read += n;
        st.last_append = Some(now);
        if let Some(t) = newest {
            let lag = (now - t).num_milliseconds().max(0) as f64 / 1000.0;
            st.lag_seconds = Some(lag);
            self.0
                .metrics
                .lag_seconds
                .get_or_create(&self.0.label)
                .set(lag);
        }
    }

    /// `n` records were skipped for `why`.
    pub fn skipped(&self, why: Skip, n: u64) {
        if n == 0 {
            return;
        }
        self.0
            .metrics
            .skipped
            .get_or_create(&SkipLabel {
                source: self.0.label.source.clone(),
                reason: why.as_str(),
            })
            .inc_by(n);
        *self
            .status()
            .skipped
            .entry(why.as_str().into())
            .or_default() += n;
    }

    /// The position advanced: `text` for people, `value` for the gauge.
    pub fn position(&self, text: String, value: f64) {
        self.0
            .metrics
            .position
            .get_or_create(&self.0.label)
            .set(value);
        self.status().position = text;
    }

    /// A read of the service succeeded.
    pub fn ok(&self) {
        self.0.metrics.up.get_or_create(&self.0.label).set(1);
        self.status().last_error = None;
    }

    /// A read of the service (or an append) failed.
    pub fn error(&self, e: impl std::fmt::Display) {
        self.0.metrics.errors.get_or_create(&self.0.label).inc();
        self.0.metrics.up.get_or_create(&self.0.label).set(0);
        self.status().last_error = Some(e.to_string());
    }

    /// The snapshot.
    pub fn snapshot(&self) -> SourceStatus {
        self.status().clone()
    }
}

/// A source's snapshot, from its stats or computed (the webhook's, from ingest's counters).
type Snapshot = Arc<dyn Fn() -> SourceStatus + Send + Sync>;

/// Every running source's stats; cheap to clone, read by the console.
#[derive(Clone, Default)]
pub struct SourcesView(Arc<Mutex<Vec<(String, Snapshot)>>>);

impl SourcesView {
    /// Adds a source's stats.
    pub fn add(&self, s: SourceStats) {
        let name = s.name().to_string();
        self.add_fn(&name, move || s.snapshot());
    }

    /// Adds a source whose snapshot is computed when asked (the webhook).
    pub fn add_fn(&self, name: &str, f: impl Fn() -> SourceStatus + Send + Sync + 'static) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), Arc::new(f)));
    }

    /// A snapshot of every source, in start order.
    pub fn snapshot(&self) -> Vec<SourceStatus> {
        let list = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        list.iter().map(|(_, f)| f()).collect()
    }

    /// One source's snapshot.
    pub fn get(&self, name: &str) -> Option<SourceStatus> {
        let f = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())?;
        Some(f())
    }
}
