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
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::alert::Alert;
use crate::audit::{AuditEvent, DecodeError, EventRef, Validated};
use crate::delivery::Hold;
use crate::delivery::alerts::AlertSender;
use crate::delivery::inbox::{
    Evaluated, InboxBatch, InboxReader, InboxRecord, Screen, Screened, ValidateOnly,
};
use crate::health::Probe;
use crate::lazy::{self, PathSet};
use crate::rules::{LoadError, LoadOptions, LoadReport, RuleLimits, RulesConfig, Ruleset};

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
    /// Takes `batch`, releasing `hold` once it has it durably; an error is logged and does not
    /// stop detection (the dropped hold brings the batch back later).
    fn take<'a>(&'a self, batch: &'a InboxRecord, hold: Hold) -> BoxFuture<'a, Result<(), String>>;
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
    /// Batches routed, by where their events were evaluated: `check` (as the webhook accepted
    /// them, [`Screener`]) or `inbox` (read back: replayed, offered again, or past
    /// `inbox.memory_bytes`).
    pub batches: Family<EvaluatedAtLabel, Counter>,
}

/// Label of the batches counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvaluatedAtLabel {
    /// `check` or `inbox`.
    pub at: &'static str,
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
            batches: Family::default(),
        };
        r.register(
            "detect_batches",
            "Batches routed, by where their events were evaluated (check: as accepted; inbox: read back)",
            m.batches.clone(),
        );
        for at in ["check", "inbox"] {
            let _ = m.batches.get_or_create(&EvaluatedAtLabel { at });
        }
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

/// The evaluator in force.
#[derive(Clone)]
enum InForce {
    /// Any function; it sees the whole event.
    Opaque(Arc<EvaluateFn>),
    /// A ruleset; it sees each event with only what its rules read built.
    Rules(Arc<Ruleset>),
}

/// The evaluator in force; replaced in place when rules are reloaded.
#[derive(Clone)]
pub struct Detector {
    current: Arc<RwLock<Option<InForce>>>,
    catalog: Arc<RwLock<RulesCatalog>>,
}

/// The rules in force and what their last load said, for the console.
#[derive(Clone, Debug, Default)]
pub struct RulesCatalog {
    /// Every rule loaded, as `kaudit rules list` shows it.
    pub rules: Vec<crate::rules::RuleInfo>,
    /// Warnings of the load in force.
    pub warnings: Vec<String>,
    /// Why the last reload failed (the previous rules stay in force), cleared by a good one.
    pub error: Option<String>,
}

impl Detector {
    /// A detector that raises nothing until an evaluator is set.
    pub fn none() -> Self {
        Detector {
            current: Arc::new(RwLock::new(None)),
            catalog: Arc::default(),
        }
    }

    /// The rules in force and their load's warnings and error.
    pub fn catalog(&self) -> RulesCatalog {
        self.catalog.read().map(|c| c.clone()).unwrap_or_default()
    }

    fn set_catalog(&self, f: impl FnOnce(&mut RulesCatalog)) {
        if let Ok(mut c) = self.catalog.write() {
            f(&mut c);
        }
    }

    /// Puts `f` in force for the next batch; it sees every event fully parsed.
    pub fn set(&self, f: Arc<EvaluateFn>) {
        self.put(InForce::Opaque(f));
    }

    /// Puts `rs` in force for the next batch, its alerts marked `kaudit.origin: embedded`; each
    /// event is built only as far as its rules read it (see `kaudit_engine::lazy`).
    pub fn set_rules(&self, rs: Arc<Ruleset>) {
        self.put(InForce::Rules(rs));
    }

    fn put(&self, f: InForce) {
        if let Ok(mut g) = self.current.write() {
            *g = Some(f);
        }
    }

    fn get(&self) -> Option<InForce> {
        self.current.read().ok().and_then(|g| g.clone())
    }
}

/// Evaluates every event of a payload with `f` (lazy extraction over its rules' paths), counting
/// what ingest's check counts on the way: the events accepted and rejected, and the alerts.
/// `seq` names the batch in the uuids of events without an `auditID`; before the batch has one
/// (a source's check, [`Screener`]) it is `None`, and no alerts come back if such an event
/// raised one: detection evaluates that batch again once it is in the inbox.
fn evaluate_payload(
    body: &[u8],
    seq: Option<u64>,
    max_event_bytes: usize,
    f: &InForce,
) -> Result<(Validated, Option<Evaluated>), DecodeError> {
    let start = std::time::Instant::now();
    let mut checked = Validated::default();
    let mut out = Vec::new();
    let mut keyless = false;
    // The rules' paths, or every path for an opaque evaluator (built only then).
    let whole;
    let paths = match f {
        InForce::Rules(rs) => rs.paths(),
        InForce::Opaque(_) => {
            whole = PathSet::whole();
            &whole
        }
    };
    lazy::for_each_event(body, max_event_bytes, paths, |i, item| {
        let (raw, ev) = match item {
            Ok(it) => it,
            Err(r) => return checked.rejected.push((i, r)),
        };
        checked.accepted += 1;
        let from = out.len();
        match f {
            InForce::Opaque(eval) => eval(&ev.to_event(), &mut out),
            InForce::Rules(rs) => {
                rs.evaluate_extracted(&ev, &raw, &mut out);
                mark_embedded(&mut out[from..]);
            }
        }
        let ev = ev.view();
        if out.len() > from && seq.is_none() && ev.audit_id().is_empty() {
            keyless = true;
        }
        for a in &mut out[from..] {
            a.uuid = alert_uuid(ev, seq.unwrap_or(0), i, &a.rule, "embedded");
        }
    })?;
    let evaluated = (!keyless).then(|| Evaluated {
        alerts: out,
        events: checked.accepted as u64,
        seconds: start.elapsed().as_secs_f64(),
    });
    Ok((checked, evaluated))
}

/// Evaluates an inbox batch, on a blocking thread.
fn evaluate_batch(body: &[u8], seq: u64, max_event_bytes: usize, f: Option<InForce>) -> Evaluated {
    let Some(f) = f else {
        return Evaluated::default();
    };
    match evaluate_payload(body, Some(seq), max_event_bytes, &f) {
        Ok((_, evaluated)) => evaluated.unwrap_or_default(),
        Err(e) => {
            // Only a payload that was valid JSON when accepted is in the inbox.
            tracing::error!(seq, error = %e, "inbox batch no longer decodes");
            Evaluated::default()
        }
    }
}

/// Ingest's check and detection in one pass: a source checking a batch with it gets the batch's
/// alerts (the rules in force as it is accepted) with its counts, and hands them to the inbox
/// with the batch, so an accepted event is read once, not once to check it and again to
/// evaluate it. Without a ruleset in force (Falco mode) it only validates.
#[derive(Clone)]
pub struct Screener {
    detector: Detector,
}

impl Screener {
    /// Checks with whatever `detector` has in force at the time.
    pub fn new(detector: Detector) -> Self {
        Screener { detector }
    }
}

impl Screen for Screener {
    fn screen(&self, body: &[u8], max_event_bytes: usize) -> Result<Screened, DecodeError> {
        // A ruleset is pure computation; an opaque evaluator (a test's hook) may block, and is
        // left to the detect stage, as is everything without rules in force (Falco mode). So is
        // a body past the one pass: its thousands of alerts would sit in the inbox's memory.
        let Some(f @ InForce::Rules(_)) = self.detector.get() else {
            return ValidateOnly.screen(body, max_event_bytes);
        };
        if body.len() > lazy::ONE_PASS_MAX_BYTES {
            return ValidateOnly.screen(body, max_event_bytes);
        }
        let (checked, evaluated) = evaluate_payload(body, None, max_event_bytes, &f)?;
        Ok(Screened { checked, evaluated })
    }
}

/// A batch on its way to routing: its alerts already raised, or being evaluated.
enum Job {
    Ready(Evaluated),
    Running(JoinHandle<Evaluated>),
}

/// The evaluators working at once: one per core.
fn pool_size() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the stage until the inbox is closed and every batch it had was read: each batch is
/// first handed to the taps (the Falco forwarder), in inbox order; its events are then
/// evaluated on a blocking thread, up to one batch per core at once; the alerts of each batch
/// are routed in inbox order, batch after batch, every one carrying a share of the batch's
/// hold, so the batch leaves the inbox only once all of them are spooled (a batch whose
/// evaluation failed is dropped unreleased, and comes back).
pub fn spawn(
    mut reader: InboxReader,
    detector: Detector,
    taps: Vec<Arc<dyn BatchTap>>,
    alerts: AlertSender,
    metrics: DetectMetrics,
    max_event_bytes: usize,
    probe: Probe,
) -> JoinHandle<()> {
    probe.ready();
    let supervised = probe.clone();
    let workers = pool_size();
    tokio::spawn(crate::health::supervise(supervised, async move {
        // Batches being evaluated, in inbox order; the bound keeps at most `workers` running.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Hold, Job)>(workers.max(1));
        let route_metrics = metrics.clone();
        let routing = tokio::spawn(async move {
            while let Some((seq, hold, job)) = rx.recv().await {
                let done = match job {
                    Job::Ready(done) => done,
                    Job::Running(job) => match job.await {
                        Ok(done) => done,
                        Err(e) => {
                            tracing::error!(seq, error = %e, "evaluating the batch failed; it stays in the inbox");
                            continue;
                        }
                    },
                };
                route_metrics.events_evaluated.inc_by(done.events);
                if done.events > 0 {
                    route_metrics.batch_duration.observe(done.seconds);
                }
                for alert in done.alerts {
                    route_metrics
                        .alerts
                        .get_or_create(&AlertLabels {
                            priority: alert.priority.as_lower(),
                            origin: "embedded",
                        })
                        .inc();
                    tracing::debug!(seq, uuid = %alert.uuid, rule = %alert.rule, "alert");
                    if alerts.send_held(alert, hold.share()).await.is_err() {
                        tracing::error!(seq, "router is gone; the batch stays in the inbox");
                    }
                }
                hold.release();
            }
        });
        while let Some(InboxBatch {
            record,
            hold,
            evaluated,
        }) = reader.next().await
        {
            probe.busy(STALL);
            let seq = record.seq;
            for tap in &taps {
                if let Err(e) = tap.take(&record, hold.share()).await {
                    tracing::error!(seq, error = %e, "cannot hand the batch on");
                }
            }
            // Evaluated as it was accepted ([`Screener`]), or now.
            let at = if evaluated.is_some() {
                "check"
            } else {
                "inbox"
            };
            metrics
                .batches
                .get_or_create(&EvaluatedAtLabel { at })
                .inc();
            let job = match evaluated {
                Some(done) => Job::Ready(done),
                None => {
                    let f = detector.get();
                    let body = record.body.clone();
                    Job::Running(tokio::task::spawn_blocking(move || {
                        evaluate_batch(&body, seq, max_event_bytes, f)
                    }))
                }
            };
            if tx.send((seq, hold, job)).await.is_err() {
                tracing::error!(seq, "alert routing stopped; the batch stays in the inbox");
                break;
            }
            probe.ready();
        }
        drop(tx);
        if let Err(e) = routing.await {
            tracing::error!(error = %e, "alert routing failed");
        }
    }))
}

/// How long one batch may take (evaluation plus handing its alerts to the router) before
/// detection counts as stuck on `/readyz`.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Namespace of the name-based hashes kaudit derives its alerts' uuids from.
pub const ALERT_UUID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b61_7564_6974_4a8e_9a1f_3c2d_5e7b_0a41);

/// An alert's uuid, derived from what it is: the event (its `auditID` and `stage`, or, for an
/// event without an `auditID`, its place in the inbox), the rule and the origin. A replayed or
/// re-sent batch raises alerts with the same uuids, so consumers de-duplicate them. The id is
/// time-ordered by the event's time ([`crate::alert::time_ordered`]).
pub fn alert_uuid(
    ev: EventRef<'_>,
    seq: u64,
    index: usize,
    rule: &str,
    origin: &str,
) -> uuid::Uuid {
    let id = ev.audit_id();
    let name = if id.is_empty() {
        format!("inbox:{seq}:{index}\0{rule}\0{origin}")
    } else {
        let stage = ev.str_at("stage").unwrap_or("");
        format!("{id}\0{stage}\0{rule}\0{origin}")
    };
    crate::alert::time_ordered(
        uuid::Uuid::new_v5(&ALERT_UUID_NAMESPACE, name.as_bytes()),
        &ev.time,
    )
}

/// Load options for the embedded engine: the rules settings and the host name alerts carry.
pub fn rules_options(rules: &RulesConfig, hostname: String) -> LoadOptions {
    LoadOptions {
        rule_matching: rules.rule_matching,
        min_priority: rules.min_priority,
        hostname,
    }
}

/// Loads `rules.files`, or the embedded default ruleset when there are none. The files the
/// operator renders from namespaced `FalcoRule`s (`50-ns-*`) load under the tenant cost limits
/// ([`RuleLimits::tenant`]), as the operator checked them.
pub fn load_rules(
    rules: &RulesConfig,
    opts: &LoadOptions,
) -> Result<(Ruleset, LoadReport), LoadError> {
    if rules.files.is_empty() {
        Ruleset::load_default(opts)
    } else {
        Ruleset::load_files_limited(&rules.files, opts, Some(&RuleLimits::tenant()))
    }
}

/// Marks alerts `kaudit.origin: embedded`.
fn mark_embedded(alerts: &mut [Alert]) {
    for a in alerts {
        a.output_fields.insert(
            ORIGIN_FIELD.into(),
            serde_json::Value::String("embedded".into()),
        );
    }
}

/// Puts `rs` in force (building only what its rules read of each event) and records it in
/// the metrics.
pub fn install(detector: &Detector, rs: Ruleset, report: &LoadReport, metrics: &DetectMetrics) {
    metrics.rules_active.set(report.rules_active as i64);
    let rules: Vec<_> = rs.rules().collect();
    detector.set_catalog(|c| {
        *c = RulesCatalog {
            rules,
            warnings: report.warnings.clone(),
            error: None,
        }
    });
    detector.set_rules(Arc::new(rs));
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
            detector.set_catalog(|c| c.error = Some(e.to_string()));
            metrics
                .rules_reloads
                .get_or_create(&ReloadLabel { result: "failed" })
                .inc();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example event, then items ingest drops (no `stageTimestamp`, not an object).
    fn body(without_audit_id: bool) -> Vec<u8> {
        let mut items = Vec::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audit");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            items.extend(v["items"].as_array().unwrap().iter().cloned());
        }
        if without_audit_id {
            for it in &mut items {
                it.as_object_mut().unwrap().remove("auditID");
            }
        }
        items.push(serde_json::json!({"kind": "Event", "verb": "get"}));
        items.push(serde_json::json!(7));
        serde_json::to_vec(&serde_json::json!({"kind": "EventList", "items": items})).unwrap()
    }

    fn with_rules() -> Detector {
        let (rs, _) = Ruleset::load_default(&LoadOptions::default()).unwrap();
        let d = Detector::none();
        d.set_rules(Arc::new(rs));
        d
    }

    fn summary(alerts: &[Alert]) -> Vec<(uuid::Uuid, String, String)> {
        alerts
            .iter()
            .map(|a| (a.uuid, a.rule.clone(), a.output.clone()))
            .collect()
    }

    #[test]
    fn the_screen_counts_as_ingest_does_and_raises_what_detection_raises() {
        let body = body(false);
        let s = Screener::new(with_rules()).screen(&body, 1 << 20).unwrap();
        assert_eq!(s.checked, lazy::validate(&body, 1 << 20).unwrap());
        assert_eq!(s.checked.rejected.len(), 2, "{:?}", s.checked.rejected);
        let screened = s.evaluated.expect("every event has an auditID");
        let later = evaluate_batch(&body, 42, 1 << 20, with_rules().get());
        assert!(!later.alerts.is_empty());
        assert_eq!(summary(&screened.alerts), summary(&later.alerts));
        assert_eq!(screened.events, later.events);
        assert_eq!(screened.events, s.checked.accepted as u64);
    }

    #[test]
    fn a_body_past_the_one_pass_limit_is_read_item_by_item_with_the_same_result() {
        let one = body(false);
        let v: serde_json::Value = serde_json::from_slice(&one).unwrap();
        let items = v["items"].as_array().unwrap();
        let copies = lazy::ONE_PASS_MAX_BYTES / one.len() + 1;
        let all: Vec<_> = (0..copies).flat_map(|_| items.iter().cloned()).collect();
        let big =
            serde_json::to_vec(&serde_json::json!({"kind": "EventList", "items": all})).unwrap();
        assert!(big.len() > lazy::ONE_PASS_MAX_BYTES);
        let f = with_rules().get().unwrap();
        let (c1, e1) = evaluate_payload(&one, Some(1), 1 << 20, &f).unwrap();
        let (cn, en) = evaluate_payload(&big, Some(1), 1 << 20, &f).unwrap();
        assert_eq!(cn, lazy::validate(&big, 1 << 20).unwrap());
        assert_eq!(cn.accepted, c1.accepted * copies);
        let rules = |e: Option<Evaluated>| {
            e.unwrap()
                .alerts
                .into_iter()
                .map(|a| (a.uuid, a.rule, a.output))
                .collect::<Vec<_>>()
        };
        let (r1, rn) = (rules(e1), rules(en));
        assert!(!r1.is_empty());
        let expected: Vec<_> = (0..copies).flat_map(|_| r1.iter().cloned()).collect();
        assert_eq!(rn, expected);
    }

    #[test]
    fn alerts_of_events_without_an_audit_id_wait_for_the_inbox_seq() {
        // Falco's `ka.*` fields need an `auditID`; a rule on `jevt.*` fields alerts without one.
        let rules = "- rule: Any list\n  desc: d\n  condition: jevt.value[/verb] = list\n  output: listed\n  priority: NOTICE\n  source: k8s_audit\n";
        let (rs, _) =
            Ruleset::load_sources(&[("t.yaml".into(), rules.into())], &LoadOptions::default())
                .unwrap();
        let d = Detector::none();
        d.set_rules(Arc::new(rs));
        let s = Screener::new(d.clone())
            .screen(&body(false), 1 << 20)
            .unwrap();
        assert!(s.evaluated.is_some_and(|e| !e.alerts.is_empty()));
        let body = body(true);
        let s = Screener::new(d).screen(&body, 1 << 20).unwrap();
        assert_eq!(s.checked, lazy::validate(&body, 1 << 20).unwrap());
        assert!(s.evaluated.is_none(), "their uuids name the inbox seq");
    }

    #[test]
    fn without_a_ruleset_in_force_the_screen_only_validates() {
        let body = body(false);
        let s = Screener::new(Detector::none())
            .screen(&body, 1 << 20)
            .unwrap();
        assert_eq!(s.checked, lazy::validate(&body, 1 << 20).unwrap());
        assert!(s.evaluated.is_none());
        let hook = Detector::none();
        hook.set(Arc::new(|_, _| {
            panic!("an opaque evaluator runs in the detect stage")
        }));
        let s = Screener::new(hook).screen(&body, 1 << 20).unwrap();
        assert!(s.evaluated.is_none());
        let bad = Screener::new(with_rules()).screen(b"{\"items\": [", 1 << 20);
        assert_eq!(
            bad.map(|_| ()).map_err(|e| e.to_string()),
            lazy::validate(b"{\"items\": [", 1 << 20)
                .map(|_| ())
                .map_err(|e| e.to_string())
        );
    }
}
