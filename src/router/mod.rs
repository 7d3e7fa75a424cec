//! The alert router: enrichment, per-sink `min_priority` and filter, fan-out to one durable
//! [`Lane`] per sink, and config reload.
//!
//! Every accepted alert is enriched once (custom fields and tags), encoded once, and queued on
//! the lane of each sink it matches. A lane's in-memory queue only waits on its spool writer
//! (the local disk), never on the sink: a slow or dead sink only makes its own spool grow (up
//! to `spool.max_bytes`), so it holds up neither the other sinks nor ingest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::alert::Alert;
use crate::delivery::alerts::{AlertDeliver, AlertSender, DEAD_LETTER_FIELD, Routed, encode};
use crate::delivery::{
    DeliveryMetrics, Lane, LaneError, LanePaths, SinkLabels, Spool, SpoolConfig,
};
use crate::health::Probe;
use crate::rules::AlertFilter;
use crate::sinks::{self, Sink, SinkConfig, SinkRules};
use crate::store::AlertStore;

pub mod budget;

/// Enrichment applied to every alert, as falcosidekick's `customfields` and custom tags.
///
/// Values of `custom_fields` may name environment variables as `${VAR}` or `${VAR:-default}`
/// (expanded when the router starts or reloads; an unset variable without a default is an
/// error; `$${` writes a literal `${`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Static output fields added to every alert (an alert's own field of the same name wins).
    pub custom_fields: BTreeMap<String, String>,
    /// Tags added to every alert.
    pub custom_tags: Vec<String>,
    /// Alerts waiting between detection and the router.
    pub queue_capacity: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            custom_fields: BTreeMap::new(),
            custom_tags: Vec::new(),
            queue_capacity: 4096,
        }
    }
}

/// What the router is built from: its own settings, the spool's, the sinks, and the directory
/// their spools live under.
#[derive(Clone)]
pub struct RouterSetup<'a> {
    /// Enrichment and the router's queue.
    pub router: &'a RouterConfig,
    /// The per-sink spool settings.
    pub spool: &'a SpoolConfig,
    /// The sinks.
    pub sinks: &'a [SinkConfig],
    /// Where spools and dead letters live.
    pub data_dir: &'a Path,
    /// Reports the router stuck on `/readyz` (and dead on `/healthz`), when given.
    pub probe: Option<Probe>,
    /// What restricted (tenant) sinks are checked and built against.
    pub sink_rules: SinkRules,
    /// Per-namespace budgets on shared sinks.
    pub budget: budget::BudgetConfig,
    /// Where budget drops are counted, when given.
    pub budget_metrics: Option<budget::BudgetMetrics>,
    /// The console's store, which `console` sinks write to: read at start and kept for the
    /// router's life (a reload's is ignored; console settings take a restart).
    pub store: Option<Arc<dyn AlertStore>>,
}

impl RouterSetup<'_> {
    fn validate_spool(&self) -> Result<(), RouterError> {
        self.spool
            .validate()
            .map_err(|e| e.under("spool"))
            .map_err(|e| RouterError::Config {
                key: e.key,
                message: e.message,
            })
    }

    fn validate(&self) -> Result<(), RouterError> {
        self.budget
            .validate()
            .map_err(|e| e.under("tenancy.budget"))
            .map_err(|e| RouterError::Config {
                key: e.key,
                message: e.message,
            })?;
        sinks::validate_all(self.sinks, &self.sink_rules).map_err(|e| RouterError::Config {
            key: e.key,
            message: e.message,
        })?;
        self.validate_spool()
    }
}

/// Why the router could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A sink could not be built.
    #[error("sink {name:?}: {message}")]
    Sink {
        /// The sink's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The router's or the spool's settings are unusable.
    #[error("{key}: {message}")]
    Config {
        /// The key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A sink's spool could not be opened.
    #[error("sink {name:?}: {message}")]
    Spool {
        /// The sink's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The router has stopped.
    #[error("the router has stopped")]
    Stopped,
}

/// Expands `${VAR}` and `${VAR:-default}` with `lookup`; `$${` is a literal `${`.
pub fn expand_env(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
            let inner = &r[..end];
            let v = match inner.split_once(":-") {
                Some((name, default)) => lookup(name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| default.to_string()),
                None => lookup(inner)
                    .ok_or_else(|| format!("environment variable {inner} is not set"))?,
            };
            out.push_str(&v);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The resolved enrichment.
#[derive(Clone, Debug, Default)]
struct Enrichment {
    fields: Vec<(String, Value)>,
    tags: Vec<String>,
}

impl Enrichment {
    fn from_config(cfg: &RouterConfig) -> Result<Enrichment, RouterError> {
        let mut fields = Vec::new();
        for (k, v) in &cfg.custom_fields {
            let v = expand_env(v, |n| std::env::var(n).ok()).map_err(|message| {
                RouterError::Config {
                    key: format!("router.custom_fields.{k}"),
                    message,
                }
            })?;
            fields.push((k.clone(), Value::String(v)));
        }
        Ok(Enrichment {
            fields,
            tags: cfg.custom_tags.clone(),
        })
    }

    fn apply(&self, a: &mut Alert) {
        for (k, v) in &self.fields {
            a.output_fields
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        for t in &self.tags {
            if !a.tags.contains(t) {
                a.tags.push(t.clone());
            }
        }
    }
}

struct Route {
    cfg: SinkConfig,
    filter: Option<AlertFilter>,
    lane: Lane,
}

impl Route {
    fn wants(&self, a: &Alert) -> bool {
        a.priority.at_least(self.cfg.min_priority)
            && self.filter.as_ref().is_none_or(|f| f.matches(a))
    }
}

/// A sink to (re)start on reload: its config and the connected sink.
struct Built {
    cfg: SinkConfig,
    sink: Option<Box<dyn Sink>>,
}

enum Ctl {
    Reload {
        enrich: Enrichment,
        spool: SpoolConfig,
        budget: budget::BudgetConfig,
        sinks: Vec<Built>,
        reply: oneshot::Sender<Result<(), RouterError>>,
    },
    Shutdown,
}

type SpoolMap = Arc<Mutex<HashMap<String, Arc<Spool>>>>;

/// How long the router waits for a lane's queue before it gives up on a held alert there.
const LANE_WAIT: Duration = Duration::from_secs(2);

/// How long routing one alert may take before the router counts as stuck on `/readyz` (an
/// alert without a hold waits for a lane's room without limit).
const STALL: Duration = Duration::from_secs(30);

/// A running router: send alerts into it; `reload` changes its sinks; `shutdown` drains it.
pub struct RouterHandle {
    tx: mpsc::Sender<Routed>,
    ctl: mpsc::Sender<Ctl>,
    task: JoinHandle<()>,
    current: Mutex<Vec<SinkConfig>>,
    current_rules: Mutex<SinkRules>,
    spools: SpoolMap,
    store: Option<Arc<dyn AlertStore>>,
}

impl RouterHandle {
    /// Where detection sends alerts. Waits (pushes back) only while spool writers are behind.
    pub fn sender(&self) -> AlertSender {
        AlertSender::new(self.tx.clone())
    }

    /// Alerts waiting in the spool of the sink `name` (`None` for an unknown sink).
    pub fn spooled(&self, name: &str) -> Option<u64> {
        let map = self.spools.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).map(|s| s.len())
    }

    /// Applies a new config: adds, changes and removes sinks, and replaces the enrichment.
    ///
    /// Unchanged sinks keep running untouched. A changed sink keeps its spool (nothing queued
    /// is lost) and restarts its worker with the new settings; an alert in flight at that moment
    /// is sent again (at-least-once). A removed sink's spool stays on disk under
    /// `<data_dir>/spool/<name>` and is delivered when a sink of that name comes back, except
    /// a tenant's: its spool and dead letters move to `<data_dir>/quarantine/`. New
    /// `spool.*` settings apply to added and changed sinks, and `max_bytes` to all.
    /// On error (a sink cannot be built) nothing has changed.
    pub async fn reload(&self, config: RouterSetup<'_>) -> Result<(), RouterError> {
        config.validate()?;
        let enrich = Enrichment::from_config(config.router)?;
        let current = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // A sink built under other rules (a new egress policy) is built again.
        let same_rules =
            *self.current_rules.lock().unwrap_or_else(|p| p.into_inner()) == config.sink_rules;
        let mut built = Vec::new();
        for s in config.sinks {
            let unchanged = current.iter().any(|c| c == s)
                && (same_rules || (!s.restricted() && s.ambient_credentials));
            let sink = if unchanged {
                None
            } else {
                Some(build_sink(s, &config.sink_rules, &self.store).await?)
            };
            built.push(Built {
                cfg: s.clone(),
                sink,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.ctl
            .send(Ctl::Reload {
                enrich,
                spool: config.spool.clone(),
                budget: config.budget.clone(),
                sinks: built,
                reply,
            })
            .await
            .map_err(|_| RouterError::Stopped)?;
        let r = rx.await.map_err(|_| RouterError::Stopped)?;
        if r.is_ok() {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = config.sinks.to_vec();
            *self.current_rules.lock().unwrap_or_else(|p| p.into_inner()) = config.sink_rules;
        }
        r
    }

    /// Stops taking alerts, writes every accepted alert to its sinks' spools (durable), lets the
    /// workers deliver for at most `spool.shutdown_flush_ms`, then returns. Nothing accepted is
    /// lost: what is not delivered yet is delivered by the next run.
    pub async fn shutdown(self) {
        let _ = self.ctl.send(Ctl::Shutdown).await;
        drop(self.tx);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "router task failed");
        }
    }
}

async fn build_sink(
    s: &SinkConfig,
    rules: &SinkRules,
    store: &Option<Arc<dyn AlertStore>>,
) -> Result<Box<dyn Sink>, RouterError> {
    let built = crate::store::scope(store.clone(), sinks::build(s, rules)).await;
    built.map_err(|e| RouterError::Sink {
        name: s.name.clone(),
        message: e.to_string(),
    })
}

fn labels(s: &SinkConfig) -> SinkLabels {
    SinkLabels {
        sink: s.name.clone(),
        sink_type: s.settings.type_name().to_string(),
    }
}

fn compile_filter(s: &SinkConfig) -> Result<Option<AlertFilter>, RouterError> {
    s.filter
        .as_deref()
        .map(AlertFilter::compile)
        .transpose()
        .map_err(|e| RouterError::Config {
            key: format!("sink {:?} filter", s.name),
            message: e.to_string(),
        })
}

struct State {
    data_dir: PathBuf,
    spool_cfg: SpoolConfig,
    metrics: DeliveryMetrics,
    enrich: Enrichment,
    routes: Vec<Route>,
    spools: SpoolMap,
    budgets: budget::Budgets,
}

impl State {
    async fn open_route(&self, cfg: SinkConfig, sink: Box<dyn Sink>) -> Result<Route, RouterError> {
        let filter = compile_filter(&cfg)?;
        let paths = LanePaths::under(&self.data_dir, &cfg.name);
        let mut lane = Lane::open(
            &cfg.name,
            labels(&cfg),
            &paths,
            DEAD_LETTER_FIELD,
            &self.spool_cfg,
            &self.metrics,
        )
        .await
        .map_err(|e| RouterError::Spool {
            name: cfg.name.clone(),
            message: e.to_string(),
        })?;
        if let Some(ns) = &cfg.tenant
            && let Err(e) = paths.mark_tenant(ns)
        {
            tracing::warn!(sink = %cfg.name, error = %e, "cannot mark the spool as a tenant's");
        }
        let left = lane.spool().len();
        if left > 0 {
            tracing::info!(sink = %cfg.name, records = left, "delivering alerts spooled by an earlier run");
        }
        lane.start_worker(Arc::new(AlertDeliver::new(&cfg.name, sink)))
            .await;
        self.spools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cfg.name.clone(), lane.spool());
        Ok(Route { cfg, filter, lane })
    }

    /// Queues the alert on every lane that wants it. With a hold, a lane that cannot take it
    /// within `LANE_WAIT` (its disk is failing or far behind) is skipped and the hold fails, so
    /// the producer offers the work again later while the other sinks keep flowing; without a
    /// hold nothing else would keep the alert, so the router waits.
    async fn route(&mut self, routed: Routed) {
        let Routed { mut alert, hold } = routed;
        self.enrich.apply(&mut alert);
        let payload = encode(&alert);
        for r in &self.routes {
            if !r.wants(&alert) {
                continue;
            }
            // Over its namespace's budget on a shared sink: handled (the hold is released below).
            if r.cfg.tenant.is_none()
                && !self
                    .budgets
                    .admit(&r.cfg.name, r.lane.held_bytes(), &alert, payload.len())
            {
                continue;
            }
            let queued = match &hold {
                Some(h) => {
                    match tokio::time::timeout(
                        LANE_WAIT,
                        r.lane.enqueue(payload.clone(), Some(h.share())),
                    )
                    .await
                    {
                        Ok(q) => q,
                        Err(_) => {
                            tracing::warn!(sink = %r.cfg.name, uuid = %alert.uuid, "sink's spool writer is stuck; the alert will be routed again later");
                            continue;
                        }
                    }
                }
                None => r.lane.enqueue(payload.clone(), None).await,
            };
            match queued {
                Ok(()) => {}
                // The spool writer logs its own failures; the alert is routed again later.
                Err(LaneError::Faulted(_)) => {
                    tracing::debug!(sink = %r.cfg.name, uuid = %alert.uuid, "sink's spool is failing; the alert will be routed again later");
                }
                Err(e) => {
                    tracing::error!(sink = %r.cfg.name, uuid = %alert.uuid, error = %e, "cannot queue alert");
                }
            }
        }
        if let Some(h) = hold {
            h.release();
        }
    }

    async fn reload(
        &mut self,
        enrich: Enrichment,
        spool: SpoolConfig,
        budget: budget::BudgetConfig,
        sinks: Vec<Built>,
    ) -> Result<(), RouterError> {
        self.enrich = enrich;
        self.spool_cfg = spool;
        self.budgets.configure(budget, self.spool_cfg.max_bytes);
        let mut old: HashMap<String, Route> = self
            .routes
            .drain(..)
            .map(|r| (r.cfg.name.clone(), r))
            .collect();
        let mut result = Ok(());
        for b in sinks {
            let existing = old.remove(&b.cfg.name);
            match (existing, b.sink) {
                (Some(r), None) => {
                    r.lane.spool().set_max_bytes(self.spool_cfg.max_bytes);
                    self.routes.push(r);
                }
                (Some(mut r), Some(sink)) => {
                    tracing::info!(sink = %b.cfg.name, "sink changed: restarting its worker on the same spool");
                    let filter = match compile_filter(&b.cfg) {
                        Ok(f) => f,
                        Err(e) => {
                            result = Err(e);
                            self.routes.push(r);
                            continue;
                        }
                    };
                    r.lane.reconfigure(labels(&b.cfg), &self.spool_cfg).await;
                    r.lane
                        .start_worker(Arc::new(AlertDeliver::new(&b.cfg.name, sink)))
                        .await;
                    r.cfg = b.cfg;
                    r.filter = filter;
                    self.routes.push(r);
                }
                (None, Some(sink)) => {
                    tracing::info!(sink = %b.cfg.name, "sink added");
                    match self.open_route(b.cfg, sink).await {
                        Ok(r) => self.routes.push(r),
                        Err(e) => result = Err(e),
                    }
                }
                (None, None) => {
                    result = Err(RouterError::Sink {
                        name: b.cfg.name.clone(),
                        message: "not running and not built".into(),
                    });
                }
            }
        }
        let routes = &self.routes;
        self.budgets
            .retain(|name| routes.iter().any(|r| r.cfg.name == name));
        for (name, r) in old {
            self.spools
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
            let tenant = r.cfg.tenant.clone();
            r.lane.close(Duration::ZERO).await;
            match tenant {
                None => {
                    tracing::info!(sink = %name, "sink removed: its spool stays on disk until a sink of that name returns");
                }
                // A tenant's sink is gone with its owner: what it kept must not reach whoever
                // creates a sink of that name next.
                Some(ns) => match LanePaths::under(&self.data_dir, &name)
                    .quarantine(&self.data_dir, &name)
                {
                    Ok(Some(to)) => {
                        tracing::info!(sink = %name, tenant = %ns, to = %to.display(), "tenant sink removed: its spool and dead letters quarantined");
                    }
                    Ok(None) => tracing::info!(sink = %name, tenant = %ns, "tenant sink removed"),
                    Err(e) => {
                        tracing::error!(sink = %name, tenant = %ns, error = %e, "tenant sink removed, but its spool could not be quarantined");
                    }
                },
            }
        }
        result
    }

    async fn shutdown(self) {
        let flush = Duration::from_millis(self.spool_cfg.shutdown_flush_ms);
        let mut set = tokio::task::JoinSet::new();
        for r in self.routes {
            set.spawn(r.lane.close(flush));
        }
        while set.join_next().await.is_some() {}
    }
}

/// Builds every sink of `config`, opens their spools (delivering what an earlier run left) and
/// starts routing.
pub async fn start(
    config: RouterSetup<'_>,
    metrics: &DeliveryMetrics,
) -> Result<RouterHandle, RouterError> {
    config.validate_spool()?;
    let enrich = Enrichment::from_config(config.router)?;
    let spools: SpoolMap = Arc::default();
    let mut state = State {
        data_dir: config.data_dir.to_path_buf(),
        spool_cfg: config.spool.clone(),
        metrics: metrics.clone(),
        enrich,
        routes: Vec::new(),
        spools: spools.clone(),
        budgets: budget::Budgets::new(
            config.budget.clone(),
            config.spool.max_bytes,
            config.budget_metrics.clone().unwrap_or_default(),
        ),
    };
    for s in config.sinks {
        let sink = build_sink(s, &config.sink_rules, &config.store).await?;
        let route = state.open_route(s.clone(), sink).await?;
        state.routes.push(route);
    }
    // Tenants' sinks removed while kaudit was down: their spools go to quarantine too.
    for (name, moved) in crate::delivery::quarantine_orphans(config.data_dir, |n| {
        config.sinks.iter().any(|s| s.name == n)
    }) {
        match moved {
            Ok(to) => {
                tracing::info!(sink = %name, to = ?to, "spool of a removed tenant sink quarantined")
            }
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "spool of a removed tenant sink could not be quarantined")
            }
        }
    }
    let (tx, mut rx) = mpsc::channel::<Routed>(config.router.queue_capacity.max(1));
    let (ctl, mut ctl_rx) = mpsc::channel::<Ctl>(4);
    let probe = config.probe.clone();
    if let Some(p) = &probe {
        p.ready();
    }
    let routing = async move {
        loop {
            tokio::select! {
                biased;
                c = ctl_rx.recv() => match c {
                    Some(Ctl::Reload { enrich, spool, budget, sinks, reply }) => {
                        let r = state.reload(enrich, spool, budget, sinks).await;
                        let _ = reply.send(r);
                    }
                    Some(Ctl::Shutdown) | None => break,
                },
                a = rx.recv() => match a {
                    Some(a) => {
                        if let Some(p) = &probe {
                            p.busy(STALL);
                        }
                        state.route(a).await;
                        if let Some(p) = &probe {
                            p.ready();
                        }
                    }
                    None => break,
                },
            }
        }
        // Stop taking alerts; route what was accepted, then drain every lane.
        rx.close();
        while let Some(a) = rx.recv().await {
            state.route(a).await;
        }
        state.shutdown().await;
        tracing::info!("router drained");
    }
    .instrument(tracing::info_span!("router"));
    let task = match config.probe {
        Some(p) => tokio::spawn(crate::health::supervise(p, routing)),
        None => tokio::spawn(routing),
    };
    Ok(RouterHandle {
        tx,
        ctl,
        task,
        current: Mutex::new(config.sinks.to_vec()),
        current_rules: Mutex::new(config.sink_rules.clone()),
        spools,
        store: config.store.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        let look = |n: &str| (n == "CLUSTER").then(|| "prod".to_string());
        assert_eq!(expand_env("k8s-${CLUSTER}", look).unwrap(), "k8s-prod");
        assert_eq!(expand_env("$${CLUSTER} $5", look).unwrap(), "${CLUSTER} $5");
        assert!(expand_env("${MISSING}", look).is_err());
        assert_eq!(
            expand_env("${MISSING:-x}/${CLUSTER:-y}", look).unwrap(),
            "x/prod"
        );
        assert!(expand_env("${CLUSTER", look).is_err());
    }
}
