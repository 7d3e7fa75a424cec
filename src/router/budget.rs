//! Per-namespace budgets on shared sinks: one team's flood cannot push the other teams' alerts
//! out of a sink they share (every sink without a `tenant`: the cluster's, the SOC's).
//!
//! Two limits per (shared sink, namespace), the namespace being the alert's
//! `ka.target.namespace` (alerts without one share the budget of the empty namespace):
//!
//! * a rate: a token bucket of `alerts_per_second`, holding up to `burst`;
//! * a share of the sink's spool: the namespace's alerts waiting in it may take at most
//!   `spool_share` of `spool.max_bytes`, so that while the sink is down a flood fills its own
//!   share and never reaches the cap at which the oldest alerts (anyone's) are dead-lettered.
//!
//! An alert over budget is not queued on that sink (its other sinks are unaffected): it counts
//! as handled, so the producer's hold is released, not failed. Drops are counted in
//! `kaudit_budget_dropped_total{sink, reason}` and logged as one summary line per sink every
//! [`LOG_EVERY`], naming the namespaces.
//!
//! What a namespace holds in a sink's lane is tracked without help from delivery: the router
//! records every alert it queues (namespace, bytes) in order, and since a lane only ever loses
//! records from its front (delivered, straight from memory or from the spool, refused,
//! evicted), whatever the lane no longer holds ([`crate::delivery::Lane::held_bytes`]: its spool
//! plus what is queued or on its way) left from the front of that record.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::invalid::Invalid;

/// The budgets (the `tenancy.budget` key of kaudit's config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    /// Alerts per second one namespace may queue on each shared sink; 0: no rate limit.
    pub alerts_per_second: f64,
    /// How many alerts a namespace may queue at once above its rate.
    pub burst: u32,
    /// The share of a shared sink's spool (`spool.max_bytes`) one namespace's waiting alerts
    /// may take, in (0, 1]; 1: no limit.
    pub spool_share: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            alerts_per_second: 0.0,
            burst: 0,
            spool_share: 0.25,
        }
    }
}

impl BudgetConfig {
    /// Checks the values; keys are relative to `budget`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(self.alerts_per_second >= 0.0 && self.alerts_per_second.is_finite()) {
            return Err(Invalid::new("alerts_per_second", "must be 0 or more"));
        }
        if self.alerts_per_second > 0.0 && self.burst == 0 {
            return Err(Invalid::new(
                "burst",
                "must be at least 1 with a rate (alerts_per_second)",
            ));
        }
        if !(self.spool_share > 0.0 && self.spool_share <= 1.0) {
            return Err(Invalid::new("spool_share", "must be in (0, 1]"));
        }
        Ok(())
    }
}

/// Label of a budget drop: the sink and why (`rate`, `spool_share`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// The shared sink.
    pub sink: String,
    /// `rate` or `spool_share`.
    pub reason: &'static str,
}

/// The budgets' metric family.
#[derive(Clone, Default)]
pub struct BudgetMetrics {
    /// Alerts not queued on a shared sink for their namespace's budget.
    pub dropped: Family<DropLabels, Counter>,
}

impl BudgetMetrics {
    /// Creates and registers the family.
    pub fn register(r: &mut Registry) -> Self {
        let m = BudgetMetrics::default();
        r.register(
            "budget_dropped",
            "Alerts not queued on a shared sink because their namespace was over its budget",
            m.dropped.clone(),
        );
        m
    }
}

/// The most namespaces tracked per sink; past it, namespaces seen once share one entry (audit
/// events can name namespaces that do not exist).
const MAX_NAMESPACES: usize = 4096;
/// The key of namespaces past [`MAX_NAMESPACES`].
const OVERFLOW: &str = "<other namespaces>";
/// How often a sink's drops are summed up in the log.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One shared sink's budgets.
#[derive(Debug)]
struct SinkBudget {
    buckets: HashMap<Arc<str>, Bucket>,
    /// Bytes each namespace has in the spool.
    held: HashMap<Arc<str>, u64>,
    /// What was queued, oldest first (consecutive records of one namespace merged).
    order: VecDeque<(Arc<str>, u64)>,
    /// The sum of `order`'s bytes, kept as it changes (summing it per alert made admission
    /// linear in the alerts queued).
    in_order: u64,
    /// Bytes at the spool's front that were there before we started counting.
    untracked: u64,
    dropped: BTreeMap<Arc<str>, u64>,
    logged: Instant,
}

impl SinkBudget {
    fn new(held: u64) -> SinkBudget {
        SinkBudget {
            buckets: HashMap::new(),
            held: HashMap::new(),
            order: VecDeque::new(),
            in_order: 0,
            untracked: held,
            dropped: BTreeMap::new(),
            logged: Instant::now(),
        }
    }

    /// Forgets what left the spool's front.
    fn reconcile(&mut self, in_spool: u64) {
        let tracked = self.untracked + self.in_order;
        let mut gone = tracked.saturating_sub(in_spool);
        let from_untracked = gone.min(self.untracked);
        self.untracked -= from_untracked;
        gone -= from_untracked;
        while gone > 0 {
            let Some((ns, bytes)) = self.order.front_mut() else {
                break;
            };
            let take = gone.min(*bytes);
            *bytes -= take;
            self.in_order -= take;
            gone -= take;
            if let Some(h) = self.held.get_mut(ns) {
                *h = h.saturating_sub(take);
                if *h == 0 {
                    self.held.remove(ns);
                }
            }
            if *bytes == 0 {
                self.order.pop_front();
            }
        }
    }

    /// The key of `ns`, interned; namespaces past the limit share one.
    fn key(&self, ns: &str) -> Arc<str> {
        if let Some((k, _)) = self.held.get_key_value(ns) {
            return k.clone();
        }
        if let Some((k, _)) = self.buckets.get_key_value(ns) {
            return k.clone();
        }
        if self.buckets.len().max(self.held.len()) >= MAX_NAMESPACES {
            return Arc::from(OVERFLOW);
        }
        Arc::from(ns)
    }

    fn take_token(&mut self, key: &Arc<str>, cfg: &BudgetConfig, now: Instant) -> bool {
        if cfg.alerts_per_second <= 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_NAMESPACES {
            // Full buckets carry no state: forget them.
            let cap = f64::from(cfg.burst);
            self.buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * cfg.alerts_per_second < cap
            });
        }
        let cap = f64::from(cfg.burst);
        let b = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * cfg.alerts_per_second).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn record(&mut self, key: Arc<str>, bytes: u64) {
        *self.held.entry(key.clone()).or_default() += bytes;
        self.in_order += bytes;
        match self.order.back_mut() {
            Some((k, b)) if *k == key => *b += bytes,
            _ => self.order.push_back((key, bytes)),
        }
    }

    fn drop_one(&mut self, sink: &str, key: Arc<str>, reason: &'static str, m: &BudgetMetrics) {
        m.dropped
            .get_or_create(&DropLabels {
                sink: sink.to_string(),
                reason,
            })
            .inc();
        if self.dropped.len() < 64 || self.dropped.contains_key(&key) {
            *self.dropped.entry(key).or_default() += 1;
        } else {
            *self.dropped.entry(Arc::from(OVERFLOW)).or_default() += 1;
        }
        if self.logged.elapsed() >= LOG_EVERY {
            let by_ns: Vec<String> = self
                .dropped
                .iter()
                .map(|(ns, n)| format!("{}={n}", if ns.is_empty() { "<none>" } else { ns }))
                .collect();
            tracing::warn!(
                sink,
                dropped = ?by_ns,
                "namespaces over their budget on a shared sink: alerts not queued there"
            );
            self.dropped.clear();
            self.logged = Instant::now();
        }
    }
}

/// The budgets of every shared sink.
pub struct Budgets {
    cfg: BudgetConfig,
    max_spool: u64,
    sinks: HashMap<String, SinkBudget>,
    metrics: BudgetMetrics,
}

impl Budgets {
    /// Budgets of `cfg` for spools capped at `max_spool` bytes.
    pub fn new(cfg: BudgetConfig, max_spool: u64, metrics: BudgetMetrics) -> Budgets {
        Budgets {
            cfg,
            max_spool,
            sinks: HashMap::new(),
            metrics,
        }
    }

    /// New settings (on reload); what each namespace holds is kept.
    pub fn configure(&mut self, cfg: BudgetConfig, max_spool: u64) {
        self.cfg = cfg;
        self.max_spool = max_spool;
    }

    /// Keeps the state of the sinks `keep` says to keep (the others were removed).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.sinks.retain(|name, _| keep(name));
    }

    /// Whether `alert` (queued as `bytes` payload bytes) may go to the shared sink `sink` whose
    /// lane holds `held` bytes now ([`crate::delivery::Lane::held_bytes`]: its spool, and what
    /// is queued or being delivered); counts it when it may, and the drop when not.
    pub fn admit(&mut self, sink: &str, held: u64, alert: &Alert, bytes: usize) -> bool {
        let ns = alert
            .output_fields
            .get("ka.target.namespace")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let stored = crate::delivery::spool::stored_len(bytes);
        // Looked up before inserting: no String allocated per alert once the sink is known.
        if !self.sinks.contains_key(sink) {
            self.sinks.insert(sink.to_string(), SinkBudget::new(held));
        }
        let Some(b) = self.sinks.get_mut(sink) else {
            return true;
        };
        b.reconcile(held);
        let key = b.key(ns);
        if !b.take_token(&key, &self.cfg, Instant::now()) {
            b.drop_one(sink, key, "rate", &self.metrics);
            return false;
        }
        if self.cfg.spool_share < 1.0 {
            let share = (self.max_spool as f64 * self.cfg.spool_share) as u64;
            let held = b.held.get(&key).copied().unwrap_or(0);
            if held + stored > share {
                b.drop_one(sink, key, "spool_share", &self.metrics);
                return false;
            }
        }
        b.record(key, stored);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Spool;

    fn alert(ns: &str) -> Alert {
        let mut a: Alert = serde_json::from_str(
            r#"{"time":"2026-01-01T00:00:00Z","rule":"r","priority":"Warning","output":"o"}"#,
        )
        .unwrap();
        a.output_fields
            .insert("ka.target.namespace".into(), ns.into());
        a
    }

    #[test]
    fn a_flooding_namespace_fills_its_share_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 10_000).unwrap();
        let cfg = BudgetConfig {
            spool_share: 0.25,
            ..BudgetConfig::default()
        };
        let mut b = Budgets::new(cfg, 10_000, BudgetMetrics::default());
        // Nothing is delivered (the spool only grows): 92 + 8 bytes each, 25 fit in 2500.
        let mut admitted = 0;
        for _ in 0..100 {
            if b.admit("soc", spool.bytes(), &alert("flood"), 92) {
                spool
                    .append(&[bytes::Bytes::from(vec![b'x'; 92])], &mut |_| Ok(()))
                    .unwrap();
                admitted += 1;
            }
        }
        assert_eq!(admitted, 25);
        // Another team still gets in.
        assert!(b.admit("soc", spool.bytes(), &alert("team-b"), 92));
        let dropped = b
            .metrics
            .dropped
            .get_or_create(&DropLabels {
                sink: "soc".into(),
                reason: "spool_share",
            })
            .get();
        assert_eq!(dropped, 75);
        // Once the spool is delivered, the flooding namespace's share is free again.
        let recs = spool.peek(1000).unwrap();
        let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
        spool.remove(&seqs).unwrap();
        assert!(b.admit("soc", spool.bytes(), &alert("flood"), 92));
    }

    #[test]
    fn the_rate_refills() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let cfg = BudgetConfig {
            alerts_per_second: 1000.0,
            burst: 3,
            spool_share: 1.0,
        };
        assert!(cfg.validate().is_ok());
        let mut b = Budgets::new(cfg, 1 << 20, BudgetMetrics::default());
        let got = (0..10)
            .filter(|_| b.admit("soc", spool.bytes(), &alert("a"), 10))
            .count();
        assert!((3..10).contains(&got), "{got}");
        std::thread::sleep(Duration::from_millis(20));
        assert!(b.admit("soc", spool.bytes(), &alert("a"), 10));
        // Another namespace has its own bucket.
        assert!(b.admit("soc", spool.bytes(), &alert("b"), 10));
        let bad = BudgetConfig {
            spool_share: 0.0,
            ..BudgetConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "spool_share");
    }
}
