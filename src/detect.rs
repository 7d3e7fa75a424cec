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
use crate::config::{Config, RulesConfig};
use crate::metrics::Metrics;
use crate::rules::{LoadError, LoadOptions, LoadReport, Ruleset};

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

/// Where a batch goes besides the embedded engine: the Falco forwarder's durable lane.
pub type ForwardLane = Arc<crate::delivery::Lane>;

/// The spooled form of a forwarded batch: its content type, a newline, then the body as received.
pub fn encode_forward(batch: &AuditBatch) -> bytes::Bytes {
    let mut b = Vec::with_capacity(batch.content_type.len() + 1 + batch.body.len());
    b.extend_from_slice(batch.content_type.as_bytes());
    b.push(b'\n');
    b.extend_from_slice(&batch.body);
    bytes::Bytes::from(b)
}

/// Reads back [`encode_forward`]: `(content type, body)`.
pub fn decode_forward(payload: &bytes::Bytes) -> Option<(String, bytes::Bytes)> {
    let nl = payload.iter().position(|b| *b == b'\n')?;
    let ct = std::str::from_utf8(&payload[..nl]).ok()?.to_string();
    Some((ct, payload.slice(nl + 1..)))
}

/// Runs the stage until the ingest queue is closed (or `stop` fires) and drained: each batch is
/// first handed to the Falco forwarder (when there is one), then evaluated.
pub fn spawn(
    mut rx: mpsc::Receiver<AuditBatch>,
    mut stop: watch::Receiver<bool>,
    detector: Detector,
    forward: Option<ForwardLane>,
    alerts: mpsc::Sender<Alert>,
    metrics: Metrics,
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
            metrics.ingest.queue_depth.dec();
            if let Some(lane) = &forward
                && let Err(e) = lane.enqueue(encode_forward(&batch)).await
            {
                tracing::error!(request_id = batch.id, error = %e, "cannot queue the batch for Falco");
            }
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

/// Load options for the embedded engine from the config.
pub fn rules_options(cfg: &Config) -> LoadOptions {
    LoadOptions {
        rule_matching: cfg.rules.rule_matching,
        min_priority: cfg.rules.min_priority,
        hostname: cfg.effective_hostname(),
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
                crate::falco::alert_in::ORIGIN_FIELD.into(),
                serde_json::Value::String("embedded".into()),
            );
        }
    })
}

/// Puts `rs` in force and records it in the metrics.
pub fn install(detector: &Detector, rs: Ruleset, report: &LoadReport, metrics: &Metrics) {
    metrics.detect.rules_active.set(report.rules_active as i64);
    detector.set(evaluator(Arc::new(rs)));
}

/// Reloads the rules when any of their files changes; a set that fails to load is reported and
/// the old one stays in force.
pub fn spawn_rules_watch(
    rules: RulesConfig,
    opts: LoadOptions,
    detector: Detector,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if rules.files.is_empty() {
        return None;
    }
    let every = std::time::Duration::from_secs(rules.reload_interval_secs.max(1));
    Some(tokio::spawn(async move {
        let stamp = |files: &[std::path::PathBuf]| -> Vec<_> {
            files.iter().map(|f| crate::watch::mtime(f)).collect()
        };
        let mut last = stamp(&rules.files);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = stamp(&rules.files);
            if now == last {
                continue;
            }
            last = now;
            reload_rules(&rules, &opts, &detector, &metrics);
        }
    }))
}

/// Loads the rules again and puts them in force, or keeps the old ones and says why.
pub fn reload_rules(
    rules: &RulesConfig,
    opts: &LoadOptions,
    detector: &Detector,
    metrics: &Metrics,
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
                .detect
                .rules_reloads
                .get_or_create(&ReloadLabel { result: "ok" })
                .inc();
            true
        }
        Err(e) => {
            tracing::error!("rules reload failed; the previous rules stay in force:\n{e}");
            metrics
                .detect
                .rules_reloads
                .get_or_create(&ReloadLabel { result: "failed" })
                .inc();
            false
        }
    }
}
