//! The detect stage: takes accepted audit batches off the ingest queue, hands each to the
//! [`BatchTap`]s (the Falco forwarder), evaluates every event, and sends the alerts to the
//! router. The evaluator can be swapped while running (rules reload).

use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::alert::Alert;
use crate::audit::{AuditBatch, AuditEvent};
use crate::config::RulesConfig;
use crate::ingest::queue::BatchReceiver;
use crate::rules::{LoadError, LoadOptions, LoadReport, Ruleset};

/// The output field that says where an alert was raised: `embedded` (kaudit's engine) or
/// `falco`.
pub const ORIGIN_FIELD: &str = "kaudit.origin";

/// Where detection runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectMode {
    /// kaudit's own rules engine (the default).
    #[default]
    Embedded,
    /// Forward to a managed Falco and route its alerts only.
    Falco,
    /// Both.
    Both,
}

impl DetectMode {
    /// True when kaudit's own engine evaluates events.
    pub fn embedded(self) -> bool {
        self != DetectMode::Falco
    }

    /// True when a managed Falco is involved.
    pub fn uses_falco(self) -> bool {
        self != DetectMode::Embedded
    }
}

/// Detection settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// `embedded`, `falco` or `both`.
    pub mode: DetectMode,
}

/// Something that takes every accepted batch before it is evaluated (the Falco forwarder's
/// durable lane). Defined here so that detection need not know who listens.
pub trait BatchTap: Send + Sync {
    /// Takes `batch`; an error is logged and does not stop detection.
    fn take<'a>(&'a self, batch: &'a AuditBatch) -> BoxFuture<'a, Result<(), String>>;
}

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
    /// Rules reloads, by result (`ok`, `failed`).
    pub rules_reloads: Family<ReloadLabel, Counter>,
    /// Rules the engine evaluates now.
    pub rules_active: prometheus_client::metrics::gauge::Gauge,
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
            rules_reloads: Family::default(),
            rules_active: Default::default(),
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
        r.register(
            "rules_reloads",
            "Rules reloads, by result",
            m.rules_reloads.clone(),
        );
        r.register(
            "rules_active",
            "Rules the embedded engine evaluates",
            m.rules_active.clone(),
        );
        for result in ["ok", "failed"] {
            let _ = m.rules_reloads.get_or_create(&ReloadLabel { result });
        }
        m
    }
}

/// Label of the reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// `ok` or `failed`.
    pub result: &'static str,
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

/// Runs the stage until the ingest queue is closed (or `stop` fires) and drained: each batch is
/// first handed to the Falco forwarder (when there is one), then evaluated.
pub fn spawn(
    mut rx: BatchReceiver,
    mut stop: watch::Receiver<bool>,
    detector: Detector,
    taps: Vec<std::sync::Arc<dyn BatchTap>>,
    alerts: mpsc::Sender<Alert>,
    metrics: DetectMetrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let mut closing = false;
        loop {
            let batch = if closing {
                match rx.recv().await {
                    Some(b) => b,
                    None => break,
                }
            } else {
                tokio::select! {
                    b = rx.recv() => match b { Some(b) => b, None => break },
                    _ = stop.changed() => {
                        // No new batches; what is already queued is still handled.
                        rx.close();
                        closing = true;
                        continue;
                    }
                }
            };
            for tap in &taps {
                if let Err(e) = tap.take(&batch).await {
                    tracing::error!(request_id = batch.id, error = %e, "cannot hand the batch on");
                }
            }
            let Some(eval) = detector.get() else { continue };
            let start = std::time::Instant::now();
            for ev in batch.events.iter() {
                eval(ev, &mut out);
            }
            metrics.events_evaluated.inc_by(batch.events.len() as u64);
            metrics
                .batch_duration
                .observe(start.elapsed().as_secs_f64());
            for alert in out.drain(..) {
                metrics
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

/// Load options for the embedded engine: the rules settings and the host name alerts carry.
pub fn rules_options(rules: &RulesConfig, hostname: String) -> LoadOptions {
    LoadOptions {
        rule_matching: rules.rule_matching,
        min_priority: rules.min_priority,
        hostname,
    }
}

/// Loads `rules.files`, or the embedded default ruleset when there are none.
pub fn load_rules(
    rules: &RulesConfig,
    opts: &LoadOptions,
) -> Result<(Ruleset, LoadReport), LoadError> {
    if rules.files.is_empty() {
        Ruleset::load_default(opts)
    } else {
        Ruleset::load_files(&rules.files, opts)
    }
}

/// An evaluator over `rs` that marks its alerts `kaudit.origin: embedded`.
pub fn evaluator(rs: Arc<Ruleset>) -> Arc<EvaluateFn> {
    Arc::new(move |ev: &AuditEvent, out: &mut Vec<Alert>| {
        let from = out.len();
        rs.evaluate(ev, out);
        for a in &mut out[from..] {
            a.output_fields.insert(
                ORIGIN_FIELD.into(),
                serde_json::Value::String("embedded".into()),
            );
        }
    })
}

/// Puts `rs` in force and records it in the metrics.
pub fn install(detector: &Detector, rs: Ruleset, report: &LoadReport, metrics: &DetectMetrics) {
    metrics.rules_active.set(report.rules_active as i64);
    detector.set(evaluator(Arc::new(rs)));
}

/// Reloads the rules when any of their files changes; a set that fails to load is reported and
/// the old one stays in force.
pub fn spawn_rules_watch(
    rules: RulesConfig,
    opts: LoadOptions,
    detector: Detector,
    metrics: DetectMetrics,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let every = std::time::Duration::from_secs(rules.reload_interval_secs.max(1));
    crate::watch::spawn_on_change(rules.files.clone(), every, Some(stop), move || {
        reload_rules(&rules, &opts, &detector, &metrics);
    })
}

/// Loads the rules again and puts them in force, or keeps the old ones and says why.
pub fn reload_rules(
    rules: &RulesConfig,
    opts: &LoadOptions,
    detector: &Detector,
    metrics: &DetectMetrics,
) -> bool {
    match load_rules(rules, opts) {
        Ok((rs, report)) => {
            tracing::info!(
                rules = report.rules_active,
                warnings = report.warnings.len(),
                "rules reloaded"
            );
            install(detector, rs, &report, metrics);
            metrics
                .rules_reloads
                .get_or_create(&ReloadLabel { result: "ok" })
                .inc();
            true
        }
        Err(e) => {
            tracing::error!("rules reload failed; the previous rules stay in force:\n{e}");
            metrics
                .rules_reloads
                .get_or_create(&ReloadLabel { result: "failed" })
                .inc();
            false
        }
    }
}
