//! The input status pass: after any change of a rule, rules file, sink or deployment, every
//! input's status is computed once for all deployments ([`render::input_outcomes`]) and written
//! where it changed, so that two deployments never fight over a status and a rule shows whether
//! it is valid before any deployment exists.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::apply::patch_status;
use super::context::{Context, now};
use super::crd::{
    AlertSink, ClusterAlertSink, FalcoRule, FalcoRulesFile, KauditDeployment, RuleStatus,
};
use super::error::Error;
use super::inputs::Inputs;
use super::kinds::{gather, live};
use super::metrics::KindLabel;
use super::render::{self, ItemKind, Outcome, carry_transition_times, truncate};

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
