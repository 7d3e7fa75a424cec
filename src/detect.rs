//! The detect stage: takes accepted audit batches off the ingest queue, evaluates every event,
//! and sends the alerts to the router. The evaluator can be swapped while running (rules reload).

use std::sync::{Arc, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::alert::Alert;
use crate::audit::{AuditBatch, AuditEvent};
use crate::metrics::Metrics;

/// Labels of the alert counter: priority and origin, both bounded sets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// Lower-case priority.
    pub priority: &'static str,
    /// `embedded` or `falco`.
    pub origin: &'static str,
}

/// Metric families of detection.
#[derive(Clone)]
pub struct DetectMetrics {
    /// Events evaluated by the embedded engine.
    pub events_evaluated: Counter,
    /// Alerts raised, by priority and origin.
    pub alerts: Family<AlertLabels, Counter>,
    /// Time to evaluate one batch, in seconds.
    pub batch_duration: Histogram,
}

impl DetectMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = DetectMetrics {
            events_evaluated: Counter::default(),
            alerts: Family::default(),
            batch_duration: Histogram::new(exponential_buckets(0.00001, 3.0, 14)),
        };
        r.register(
            "events_evaluated",
            "Audit events evaluated by the embedded rules engine",
            m.events_evaluated.clone(),
        );
        r.register(
            "alerts",
            "Alerts raised, by priority and origin",
            m.alerts.clone(),
        );
        r.register(
            "detect_batch_duration_seconds",
            "Time to evaluate one batch",
            m.batch_duration.clone(),
        );
        m
    }
}

/// Evaluates one event, appending its alerts.
pub type EvaluateFn = dyn Fn(&AuditEvent, &mut Vec<Alert>) + Send + Sync;

/// The evaluator in force; replaced in place when rules are reloaded.
#[derive(Clone)]
pub struct Detector {
    current: Arc<RwLock<Option<Arc<EvaluateFn>>>>,
}

impl Detector {
    /// A detector that raises nothing until an evaluator is set.
    pub fn none() -> Self {
        Detector {
            current: Arc::new(RwLock::new(None)),
        }
    }

    /// Puts `f` in force for the next batch.
    pub fn set(&self, f: Arc<EvaluateFn>) {
        if let Ok(mut g) = self.current.write() {
            *g = Some(f);
        }
    }

    fn get(&self) -> Option<Arc<EvaluateFn>> {
        self.current.read().ok().and_then(|g| g.clone())
    }
}

/// Runs the stage until the ingest queue is closed (or `stop` fires) and drained.
pub fn spawn(
    mut rx: mpsc::Receiver<AuditBatch>,
    mut stop: watch::Receiver<bool>,
    detector: Detector,
    alerts: mpsc::Sender<Alert>,
    metrics: Metrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        loop {
            let batch = tokio::select! {
                b = rx.recv() => match b { Some(b) => b, None => break },
                _ = stop.changed() => {
                    // No new batches; what is already queued is still evaluated below.
                    rx.close();
                    continue;
                }
            };
            metrics.ingest.queue_depth.dec();
            let Some(eval) = detector.get() else { continue };
            let start = std::time::Instant::now();
            for ev in batch.events.iter() {
                eval(ev, &mut out);
            }
            metrics
                .detect
                .events_evaluated
                .inc_by(batch.events.len() as u64);
            metrics
                .detect
                .batch_duration
                .observe(start.elapsed().as_secs_f64());
            for alert in out.drain(..) {
                metrics
                    .detect
                    .alerts
                    .get_or_create(&AlertLabels {
                        priority: alert.priority.as_lower(),
                        origin: "embedded",
                    })
                    .inc();
                tracing::debug!(request_id = batch.id, uuid = %alert.uuid, rule = %alert.rule, "alert");
                if alerts.send(alert).await.is_err() {
                    tracing::error!("router is gone; dropping alert");
                }
            }
        }
    })
}
