//! The client half: watches, server-side apply, status patches, Events and the sink finalizer.
//!
//! - `KauditDeployment` (a `Controller`): the main one. It is also triggered by every change of a
//!   `FalcoRule`, `FalcoRulesFile`, `AlertSink` or `ClusterAlertSink` (they all feed every
//!   deployment) and of the objects it owns. Each run lists its inputs, renders with
//!   [`render::desired`](super::render::desired), applies the objects with the fixed field
//!   manager, prunes what the spec no longer wants, and writes the deployment's own status.
//! - The input statuses ([`run_input_statuses`]): after any change of a rule, rules file, sink
//!   or deployment, every input's status is computed once for all deployments
//!   ([`render::input_outcomes`]) and written where it changed, so that two deployments never
//!   fight over a status and a rule shows whether it is valid before any deployment exists.
//! - `AlertSink` and `ClusterAlertSink` (a `Controller` each): the finalizer
//!   `kaudit.io/credentials`, on sinks with `secretRefs` only. Their credentials are copied from
//!   Secrets (of another namespace than the deployment's) into the deployment's config Secret;
//!   owner references cannot express that link, so deleting such a sink waits until every
//!   deployment was re-rendered without it, i.e. until its credentials are gone. Sinks without
//!   credentials copy nothing and have no finalizer.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::crd::{
    AlertSink, ClusterAlertSink, FalcoRule, FalcoRulesFile, KauditDeployment, RuleStatus,
};
use super::inputs::Inputs;
use super::leader::LeaseLock;
use super::render::{
    self, FIELD_MANAGER, ItemKind, Object, Outcome, RenderError, carry_transition_times, truncate,
};

/// The finalizer of sinks (see the module docs).
pub const SINK_FINALIZER: &str = "kaudit.io/credentials";

/// A failed reconciliation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An apiserver call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// JSON conversion failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The system's random source failed (issuing a token).
    #[error("no randomness for a new Falco intake token")]
    Random,
}

/// Which controller a metric is about (a bounded label).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `kauditdeployment`, `inputs`, `alertsink` or `clusteralertsink`.
    pub kind: &'static str,
}

/// The operator's metrics (`kaudit_operator_*`).
pub struct Metrics {
    /// Reconciliations run.
    pub reconciliations: Family<KindLabel, Counter>,
    /// Reconciliations failed.
    pub failures: Family<KindLabel, Counter>,
    /// 1 while this replica holds the lease.
    pub leader: Gauge,
    /// Namespace rules currently rejected.
    pub invalid_rules: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kaudit_operator");
        let reconciliations = Family::<KindLabel, Counter>::default();
        let failures = Family::<KindLabel, Counter>::default();
        let leader = Gauge::default();
        let invalid_rules = Gauge::default();
        registry.register(
            "reconciliations",
            "Reconciliations run",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciliations failed",
            failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease",
            leader.clone(),
        );
        registry.register(
            "invalid_rules",
            "Namespace rules rejected",
            invalid_rules.clone(),
        );
        Metrics {
            reconciliations,
            failures,
            leader,
            invalid_rules,
            registry,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What every reconciliation shares.
pub struct Context {
    /// The client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// A context with a fresh recorder reporting as `kaudit-operator`.
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics: Arc::new(Metrics::default()),
        }
    }
}

fn live<K: Resource>(items: Vec<K>) -> Vec<K> {
    items
        .into_iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .collect()
}

/// Reads every input of a deployment: all rules, rules files and sinks (those being deleted
/// left out), and the ConfigMaps and Secrets they reference.
pub async fn gather(client: &Client) -> Result<Inputs, Error> {
    let lp = ListParams::default();
    let rules = live(Api::<FalcoRule>::all(client.clone()).list(&lp).await?.items);
    let rules_files = live(
        Api::<FalcoRulesFile>::all(client.clone())
            .list(&lp)
            .await?
            .items,
    );
    let sinks = live(Api::<AlertSink>::all(client.clone()).list(&lp).await?.items);
    let cluster_sinks = live(
        Api::<ClusterAlertSink>::all(client.clone())
            .list(&lp)
            .await?
            .items,
    );
    let mut inputs = Inputs {
        rules,
        rules_files,
        sinks,
        cluster_sinks,
        ..Default::default()
    };
    let cms: BTreeSet<(String, String)> = inputs
        .rules_files
        .iter()
        .filter_map(|f| f.spec.config_map_ref.as_ref())
        .map(|r| (r.namespace.clone(), r.name.clone()))
        .collect();
    for (ns, name) in cms {
        if let Some(cm) = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await?
        {
            inputs
                .config_maps
                .insert((ns, name), cm.data.unwrap_or_default());
        }
    }
    let mut secrets: BTreeSet<(String, String)> = BTreeSet::new();
    for s in &inputs.sinks {
        let own = s.namespace().unwrap_or_default();
        for r in &s.spec.sink.secret_refs {
            // Only the sink's own namespace: a reference elsewhere is refused when rendering.
            if r.namespace.as_deref().is_none_or(|n| n == own) {
                secrets.insert((own.clone(), r.name.clone()));
            }
        }
    }
    for s in &inputs.cluster_sinks {
        for r in &s.spec.sink.secret_refs {
            if let Some(ns) = &r.namespace {
                secrets.insert((ns.clone(), r.name.clone()));
            }
        }
    }
    for (ns, name) in secrets {
        if let Some(sec) = Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await?
        {
            let data = sec
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            inputs.secrets.insert((ns, name), data);
        }
    }
    Ok(inputs)
}

async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&obj.name_any(), &pp, &Patch::Apply(obj)).await?)
}

/// Applies one object; for a workload, returns `(available, wanted)` pods as the live object
/// (the apply response) reports them.
async fn apply_object(client: &Client, ns: &str, o: &Object) -> Result<Option<(i32, i32)>, Error> {
    Ok(match o {
        Object::ConfigMap(x) => apply(client, ns, x).await.map(|_| None)?,
        Object::Secret(x) => apply(client, ns, x).await.map(|_| None)?,
        Object::ServiceAccount(x) => apply(client, ns, x).await.map(|_| None)?,
        Object::Service(x) => apply(client, ns, x).await.map(|_| None)?,
        Object::Deployment(x) => {
            let live = apply(client, ns, x).await?;
            let want = live.spec.replicas.unwrap_or(1);
            let have = live
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            Some((have, want))
        }
        Object::DaemonSet(x) => {
            let live = apply(client, ns, x).await?;
            let st = live.status.unwrap_or_default();
            Some((
                st.number_available.unwrap_or(0),
                st.desired_number_scheduled,
            ))
        }
    })
}

/// The `Ready` condition from the workloads' availability: `(Kind/name, available, wanted)`.
pub fn ready_condition(
    workloads: &[(String, i32, i32)],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let waiting: Vec<String> = workloads
        .iter()
        .filter(|(_, have, want)| have < want)
        .map(|(k, have, want)| format!("{k} {have}/{want} available"))
        .collect();
    if waiting.is_empty() {
        render::condition(
            render::cond::READY,
            true,
            "Available",
            "applied; every workload available",
            generation,
            now,
        )
    } else {
        render::condition(
            render::cond::READY,
            false,
            "Progressing",
            &format!("applied; waiting for {}", waiting.join(", ")),
            generation,
            now,
        )
    }
}

async fn prune_one<K>(client: &Client, ns: &str, name: &str, owner_uid: &str) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    if let Some(o) = api.get_opt(name).await?
        && o.owner_references().iter().any(|r| r.uid == owner_uid)
    {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn prune(client: &Client, ns: &str, key: &str, owner_uid: &str) -> Result<(), Error> {
    let Some((kind, name)) = key.split_once('/') else {
        return Ok(());
    };
    match kind {
        "ConfigMap" => prune_one::<ConfigMap>(client, ns, name, owner_uid).await,
        "Secret" => prune_one::<Secret>(client, ns, name, owner_uid).await,
        "ServiceAccount" => prune_one::<ServiceAccount>(client, ns, name, owner_uid).await,
        "Service" => prune_one::<Service>(client, ns, name, owner_uid).await,
        "Deployment" => prune_one::<Deployment>(client, ns, name, owner_uid).await,
        "DaemonSet" => prune_one::<DaemonSet>(client, ns, name, owner_uid).await,
        _ => Ok(()),
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

async fn patch_status<K>(api: &Api<K>, name: &str, status: &impl Serialize) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let patch = json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Writes an input's status when it changed, with an Event when it turned valid or invalid.
async fn write_item_status<K>(
    ctx: &Context,
    api: Api<K>,
    obj: &K,
    old: Option<&RuleStatus>,
    outcome: &Outcome,
    deployed: bool,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let mut status = render::item_status(outcome, deployed, &now());
    if let Some(old) = old {
        carry_transition_times(&old.conditions, &mut status.conditions);
        if *old == status {
            return Ok(());
        }
    }
    // A merge patch keeps what it omits: clear a stale rendered name explicitly.
    let mut body = serde_json::to_value(&status)?;
    if status.rendered_name.is_none() {
        body["renderedName"] = serde_json::Value::Null;
    }
    patch_status(&api, &obj.name_any(), &body).await?;
    let was_valid = old
        .and_then(|o| o.conditions.first())
        .map(|c| c.status == "True");
    let is_valid = outcome.error.is_none();
    if was_valid != Some(is_valid) {
        let what = match outcome.kind {
            ItemKind::FalcoRule => "Rule",
            ItemKind::FalcoRulesFile => "RulesFile",
            ItemKind::AlertSink | ItemKind::ClusterAlertSink => "Sink",
        };
        let ev = if is_valid {
            Event {
                type_: EventType::Normal,
                reason: format!("{what}Accepted"),
                note: outcome
                    .rendered_name
                    .clone()
                    .map(|n| format!("rendered as {n:?}")),
                action: "Validate".into(),
                secondary: None,
            }
        } else {
            Event {
                type_: EventType::Warning,
                reason: format!("Invalid{what}"),
                note: outcome.error.clone().map(|e| truncate(&e, 1000)),
                action: "Validate".into(),
                secondary: None,
            }
        };
        ctx.recorder.publish(&ev, &obj.object_ref(&())).await?;
    }
    Ok(())
}

async fn write_statuses(
    ctx: &Context,
    inputs: &Inputs,
    outcomes: &[Outcome],
    deployed: bool,
) -> Result<(), Error> {
    let c = &ctx.client;
    for o in outcomes {
        let ns = o.namespace.clone().unwrap_or_default();
        match o.kind {
            ItemKind::FalcoRule => {
                if let Some(r) = inputs
                    .rules
                    .iter()
                    .find(|r| r.name_any() == o.name && r.namespace().unwrap_or_default() == ns)
                {
                    let api = Api::<FalcoRule>::namespaced(c.clone(), &ns);
                    write_item_status(ctx, api, r, r.status.as_ref(), o, deployed).await?;
                }
            }
            ItemKind::FalcoRulesFile => {
                if let Some(r) = inputs.rules_files.iter().find(|r| r.name_any() == o.name) {
                    let api = Api::<FalcoRulesFile>::all(c.clone());
                    write_item_status(ctx, api, r, r.status.as_ref(), o, deployed).await?;
                }
            }
            ItemKind::AlertSink => {
                if let Some(r) = inputs
                    .sinks
                    .iter()
                    .find(|r| r.name_any() == o.name && r.namespace().unwrap_or_default() == ns)
                {
                    let api = Api::<AlertSink>::namespaced(c.clone(), &ns);
                    write_item_status(ctx, api, r, r.status.as_ref(), o, deployed).await?;
                }
            }
            ItemKind::ClusterAlertSink => {
                if let Some(r) = inputs.cluster_sinks.iter().find(|r| r.name_any() == o.name) {
                    let api = Api::<ClusterAlertSink>::all(c.clone());
                    write_item_status(ctx, api, r, r.status.as_ref(), o, deployed).await?;
                }
            }
        }
    }
    Ok(())
}

/// Reconciles one KauditDeployment (see the module docs).
pub async fn reconcile_deployment(
    kd: Arc<KauditDeployment>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.metrics
        .reconciliations
        .get_or_create(&KindLabel {
            kind: "kauditdeployment",
        })
        .inc();
    if kd.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove every child.
        return Ok(Action::await_change());
    }
    let ns = kd.namespace().unwrap_or_default();
    let uid = kd.uid().unwrap_or_default();
    let mut inputs = gather(&ctx.client).await?;
    if render::needs_intake_token(&kd) {
        let token = intake_token(&ctx.client, &ns, &kd.name_any()).await?;
        inputs
            .intake_tokens
            .insert((ns.clone(), kd.name_any()), token);
    }
    let api = Api::<KauditDeployment>::namespaced(ctx.client.clone(), &ns);
    let desired = match render::desired(&kd, &inputs, &now()) {
        Ok(d) => d,
        Err(e) => {
            // A spec that cannot render (e.g. a podTemplate patch that breaks the pod): say so.
            let mut status = kd.status.clone().unwrap_or_default();
            let msg = truncate(&e.to_string(), 1000);
            status.conditions.retain(|c| c.type_ != render::cond::READY);
            status.conditions.push(render::condition(
                render::cond::READY,
                false,
                "RenderFailed",
                &msg,
                kd.meta().generation,
                &now(),
            ));
            status.observed_generation = kd.meta().generation;
            let _ = patch_status(&api, &kd.name_any(), &status).await;
            let ev = Event {
                type_: EventType::Warning,
                reason: "RenderFailed".into(),
                note: Some(msg),
                action: "Render".into(),
                secondary: None,
            };
            let _ = ctx.recorder.publish(&ev, &kd.object_ref(&())).await;
            return Err(e.into());
        }
    };
    let mut workloads = Vec::new();
    for o in &desired.objects {
        let applied = apply_object(&ctx.client, &ns, o).await;
        if let Ok(Some((have, want))) = applied {
            workloads.push((o.key(), have, want));
        }
        if let Err(e) = applied {
            let mut status = desired.status.clone();
            if let Some(c) = status
                .conditions
                .iter_mut()
                .find(|c| c.type_ == render::cond::READY)
            {
                c.status = "False".into();
                c.reason = "ApplyFailed".into();
                c.message = truncate(&format!("{}: {e}", o.key()), 1000);
            }
            // Best effort: the error itself is what the controller retries on.
            let _ = patch_status(&api, &kd.name_any(), &status).await;
            let ev = Event {
                type_: EventType::Warning,
                reason: "ApplyFailed".into(),
                note: Some(truncate(&format!("{}: {e}", o.key()), 1000)),
                action: "Apply".into(),
                secondary: None,
            };
            let _ = ctx.recorder.publish(&ev, &kd.object_ref(&())).await;
            return Err(e);
        }
    }
    for key in &desired.prune {
        prune(&ctx.client, &ns, key, &uid).await?;
    }

    let mut status = desired.status.clone();
    let ready = ready_condition(&workloads, kd.meta().generation, &now());
    for c in status.conditions.iter_mut() {
        if c.type_ == render::cond::READY {
            *c = ready.clone();
        }
    }
    let old = kd.status.clone();
    if let Some(old) = &old {
        carry_transition_times(&old.conditions, &mut status.conditions);
    }
    if old.as_ref() != Some(&status) {
        patch_status(&api, &kd.name_any(), &status).await?;
        let rules_ok = status.invalid_rules == 0;
        let ev = Event {
            type_: if rules_ok {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: if rules_ok {
                "Reconciled"
            } else {
                "RulesInvalid"
            }
            .into(),
            note: Some(format!(
                "{} rules, {} invalid, {} sinks",
                status.rules, status.invalid_rules, status.sinks
            )),
            action: "Reconcile".into(),
            secondary: None,
        };
        ctx.recorder.publish(&ev, &kd.object_ref(&())).await?;
    }
    // Referenced Secrets and ConfigMaps, and the rendered ones, are not watched (the operator
    // may only `get` them): look again now and then for rotations and drift.
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// True for a token this operator issued (hex, long): anything else in the Secret is replaced,
/// so that the value Falco puts into a URL cannot carry URL syntax.
fn is_issued_token(t: &str) -> bool {
    t.len() >= 32 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The token `name`'s Falco presents to kaudit: read back from the deployment's config Secret,
/// or a new random one (256 bits, hex) on the first render or when it was lost.
async fn intake_token(client: &Client, ns: &str, name: &str) -> Result<String, Error> {
    use ring::rand::SecureRandom;
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&format!("{name}-config"))
        .await?;
    let existing = secret
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(render::INTAKE_TOKEN_KEY))
        .and_then(|v| String::from_utf8(v.0).ok())
        .filter(|t| is_issued_token(t));
    if let Some(t) = existing {
        return Ok(t);
    }
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Random)?;
    Ok(render::plan::hex(&bytes))
}

/// Writes the status of every rule, rules file and sink: validated once for all deployments
/// ([`render::input_outcomes`]), written where it changed, with an Event when an input turns
/// valid or invalid.
pub async fn reconcile_inputs(ctx: &Context) -> Result<(), Error> {
    ctx.metrics
        .reconciliations
        .get_or_create(&KindLabel { kind: "inputs" })
        .inc();
    let inputs = gather(&ctx.client).await?;
    let deployments = live(
        Api::<KauditDeployment>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await?
            .items,
    );
    let (outcomes, deployed) = render::input_outcomes(&deployments, &inputs)?;
    let invalid = outcomes
        .iter()
        .filter(|o| o.kind == ItemKind::FalcoRule && o.error.is_some())
        .count();
    ctx.metrics
        .invalid_rules
        .set(i64::try_from(invalid).unwrap_or(i64::MAX));
    write_statuses(ctx, &inputs, &outcomes, deployed).await
}

/// How often the input statuses are recomputed without a change: referenced Secrets and
/// ConfigMaps are not watched.
const INPUT_RESYNC: Duration = Duration::from_secs(300);

/// Keeps the input statuses current: runs [`reconcile_inputs`] after every change of a rule,
/// rules file, sink or deployment (a burst of changes is taken together), every five minutes,
/// and 30 s after a failure. Never returns.
pub async fn run_input_statuses(ctx: Arc<Context>) {
    use futures_util::stream::BoxStream;
    use kube::runtime::WatchStreamExt;
    fn changes<K>(api: Api<K>) -> BoxStream<'static, ()>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static,
    {
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(|_| ())
            .boxed()
    }
    let c = &ctx.client;
    let mut changed = futures_util::stream::select_all([
        changes(Api::<FalcoRule>::all(c.clone())),
        changes(Api::<FalcoRulesFile>::all(c.clone())),
        changes(Api::<AlertSink>::all(c.clone())),
        changes(Api::<ClusterAlertSink>::all(c.clone())),
        changes(Api::<KauditDeployment>::all(c.clone())),
    ]);
    let mut wait = INPUT_RESYNC;
    loop {
        if let Ok(None) = tokio::time::timeout(wait, changed.next()).await {
            // Every watch ended (never expected): keep the periodic pass.
            tokio::time::sleep(INPUT_RESYNC).await;
        }
        // Take the rest of a burst (a watch's initial listing, a kubectl apply of many files).
        let burst_end = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(())) = tokio::time::timeout_at(
            burst_end.min(tokio::time::Instant::now() + Duration::from_secs(1)),
            changed.next(),
        )
        .await
        {}
        wait = match reconcile_inputs(&ctx).await {
            Ok(()) => INPUT_RESYNC,
            Err(e) => {
                tracing::warn!(error = %e, "writing rule and sink statuses failed");
                ctx.metrics
                    .failures
                    .get_or_create(&KindLabel { kind: "inputs" })
                    .inc();
                Duration::from_secs(30)
            }
        };
    }
}

/// Reconciles every KauditDeployment (after a sink's deletion).
pub async fn reconcile_all(ctx: Arc<Context>) -> Result<(), Error> {
    let all = Api::<KauditDeployment>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    for kd in all.items {
        reconcile_deployment(Arc::new(kd), ctx.clone()).await?;
    }
    Ok(())
}

/// The sink controllers' reconcile. A sink with credentials (`holds_credentials`: it has
/// `secretRefs`) keeps the finalizer; on its deletion every deployment is re-rendered without
/// it before it goes. A sink without credentials needs none: a finalizer left from earlier
/// credentials is removed once every deployment was re-rendered without them.
pub async fn reconcile_sink<K>(
    sink: Arc<K>,
    ctx: Arc<Context>,
    api: Api<K>,
    holds_credentials: bool,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let kind = if sink.meta().namespace.is_some() {
        "alertsink"
    } else {
        "clusteralertsink"
    };
    ctx.metrics
        .reconciliations
        .get_or_create(&KindLabel { kind })
        .inc();
    let finalizers = sink.finalizers();
    if !holds_credentials && sink.meta().deletion_timestamp.is_none() {
        let Some(i) = finalizers.iter().position(|f| f == SINK_FINALIZER) else {
            return Ok(Action::await_change());
        };
        reconcile_all(ctx.clone()).await?;
        let mut rest = finalizers.to_vec();
        rest.remove(i);
        // The resourceVersion makes the patch fail if the sink changed meanwhile (e.g. got
        // credentials again); the next reconcile looks afresh.
        let patch = json!({"metadata": {
            "finalizers": rest,
            "resourceVersion": sink.resource_version(),
        }});
        api.patch(
            &sink.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        return Ok(Action::await_change());
    }
    let c = ctx.clone();
    finalizer(&api, SINK_FINALIZER, sink, |ev| async move {
        match ev {
            // The deployment controller renders live sinks; nothing to do here.
            FinalizerEvent::Apply(_) => Ok::<Action, Error>(Action::await_change()),
            FinalizerEvent::Cleanup(_) => {
                reconcile_all(c).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

fn error_policy<K>(_obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "reconcile failed");
    ctx.metrics
        .failures
        .get_or_create(&KindLabel { kind: "any" })
        .inc();
    Action::requeue(Duration::from_secs(30))
}

/// Settings of `kaudit operator`.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Address of `/healthz` and `/metrics`.
    pub listen: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own).
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
}

async fn serve_health(listen: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await
}

/// Runs `kaudit operator`: health and metrics server, leader election, then the controllers
/// until the lease is lost (an error, so that the pod restarts and campaigns again).
pub async fn run(opts: OperatorOptions) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let ctx = Arc::new(Context::new(client.clone(), Some(opts.identity.clone())));
    let metrics = ctx.metrics.clone();
    let health = tokio::spawn(serve_health(opts.listen, metrics.clone()));

    let lock = LeaseLock::new(
        client.clone(),
        &opts.lease_namespace,
        &opts.lease_name,
        &opts.identity,
        Duration::from_secs(15),
    );
    tracing::info!(identity = %opts.identity, "waiting for leadership");
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        if health.is_finished() {
            anyhow::bail!("health server stopped");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    metrics.leader.set(1);
    tracing::info!("leading");
    let renew_lock = lock.clone();
    let lost = async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(renew_lock.duration() / 3).await;
            match renew_lock.try_acquire_or_renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the lease");
                    if last_ok.elapsed() >= renew_lock.duration() {
                        return;
                    }
                }
            }
        }
    };

    let wc = watcher::Config::default();
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=kaudit-operator");
    let kd_api = Api::<KauditDeployment>::all(client.clone());
    let main = Controller::new(kd_api, wc.clone());
    let store = main.store();
    let all = move || {
        store
            .state()
            .iter()
            .map(|kd| ObjectRef::from_obj(kd.as_ref()))
            .collect::<Vec<_>>()
    };
    let (a1, a2, a3, a4) = (all.clone(), all.clone(), all.clone(), all);
    let main = main
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<DaemonSet>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client.clone()), owned.clone())
        .watches(
            Api::<FalcoRule>::all(client.clone()),
            wc.clone(),
            move |_| a1(),
        )
        .watches(
            Api::<FalcoRulesFile>::all(client.clone()),
            wc.clone(),
            move |_| a2(),
        )
        .watches(
            Api::<AlertSink>::all(client.clone()),
            wc.clone(),
            move |_| a3(),
        )
        .watches(
            Api::<ClusterAlertSink>::all(client.clone()),
            wc.clone(),
            move |_| a4(),
        )
        .shutdown_on_signal()
        .run(reconcile_deployment, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "kauditdeployment");
            }
        });
    let ns_client = client.clone();
    let sinks = Controller::new(Api::<AlertSink>::all(client.clone()), wc.clone())
        .shutdown_on_signal()
        .run(
            move |s: Arc<AlertSink>, ctx: Arc<Context>| {
                let api = Api::<AlertSink>::namespaced(
                    ns_client.clone(),
                    &s.namespace().unwrap_or_default(),
                );
                let creds = !s.spec.sink.secret_refs.is_empty();
                reconcile_sink(s, ctx, api, creds)
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let cs_client = client.clone();
    let cluster_sinks = Controller::new(Api::<ClusterAlertSink>::all(client.clone()), wc)
        .shutdown_on_signal()
        .run(
            move |s: Arc<ClusterAlertSink>, ctx: Arc<Context>| {
                let creds = !s.spec.sink.secret_refs.is_empty();
                reconcile_sink(
                    s,
                    ctx,
                    Api::<ClusterAlertSink>::all(cs_client.clone()),
                    creds,
                )
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let statuses = run_input_statuses(ctx.clone());
    let controllers = async {
        // The status loop never ends; the controllers end on SIGTERM/SIGINT.
        tokio::select! {
            _ = futures_util::future::join3(main, sinks, cluster_sinks) => {}
            () = statuses => {}
        }
    };
    tokio::select! {
        () = controllers => {
            metrics.leader.set(0);
            // Shut down on a signal: hand over at once rather than after the lease expires.
            if let Err(e) = lock.release().await {
                tracing::warn!(error = %e, "releasing the lease");
            }
            Ok(())
        }
        () = lost => {
            metrics.leader.set(0);
            anyhow::bail!("lost the leader lease")
        }
    }
}
