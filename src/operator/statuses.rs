//! The input status pass: after any change of a rule, rules file, sink or deployment, every
//! input's status is computed once for all deployments ([`render::input_outcomes`]) and written
//! where it changed, so that two deployments never fight over a status and a rule shows whether
//! it is valid before any deployment exists.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::apply::patch_status;
use super::context::{Context, now};
use super::crd::KauditDeployment;
use super::error::Error;
use super::gather::{gather, live};
use super::inputs::{InputKind, Inputs, KindVisitor, for_each_kind};
use super::metrics::KindLabel;
use super::render::{self, ItemKind, Outcome, carry_transition_times, truncate};

/// Writes the status of the object `outcome` is about when it changed, with an Event when it
/// turned valid or invalid.
async fn write_status<K: InputKind>(
    ctx: &Context,
    inputs: &Inputs,
    outcome: &Outcome,
    deployed: bool,
) -> Result<(), Error> {
    let Some(obj) = K::of(inputs)
        .iter()
        .find(|r| r.name_any() == outcome.name && r.namespace() == outcome.namespace)
    else {
        return Ok(());
    };
    let old = obj.status();
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
    let api = K::api(ctx.client.clone(), outcome.namespace.as_deref());
    patch_status(&api, &obj.name_any(), &body).await?;
    let was_valid = old
        .and_then(|o| o.conditions.first())
        .map(|c| c.status == "True");
    let is_valid = outcome.error.is_none();
    if was_valid != Some(is_valid) {
        let what = K::KIND.event_noun;
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

/// The status write of one outcome, by its kind.
struct StatusWrite<'a> {
    ctx: &'a Context,
    inputs: &'a Inputs,
    outcome: &'a Outcome,
    deployed: bool,
    write: Option<BoxFuture<'a, Result<(), Error>>>,
}

impl KindVisitor for StatusWrite<'_> {
    fn visit<K: InputKind>(&mut self) {
        if self.outcome.kind == K::KIND {
            self.write = Some(Box::pin(write_status::<K>(
                self.ctx,
                self.inputs,
                self.outcome,
                self.deployed,
            )));
        }
    }
}

/// Writes the statuses of `outcomes` that changed, in order.
async fn write_statuses(
    ctx: &Context,
    inputs: &Inputs,
    outcomes: &[Outcome],
    deployed: bool,
) -> Result<(), Error> {
    for outcome in outcomes {
        let mut w = StatusWrite {
            ctx,
            inputs,
            outcome,
            deployed,
            write: None,
        };
        for_each_kind(&mut w);
        if let Some(write) = w.write {
            write.await?;
        }
    }
    Ok(())
}

/// A stream that yields on every change of an object of `api`'s kind.
fn changes<K>(api: Api<K>) -> BoxStream<'static, ()>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map(|_| ())
        .boxed()
}

/// The changes of every input kind.
struct Changes {
    client: Client,
    streams: Vec<BoxStream<'static, ()>>,
}

impl KindVisitor for Changes {
    fn visit<K: InputKind>(&mut self) {
        self.streams
            .push(changes(Api::<K>::all(self.client.clone())));
    }
}

/// Writes the status of every rule, rules file and sink: validated once for all deployments
/// ([`render::input_outcomes`]), written where it changed, with an Event when an input turns
/// valid or invalid.
pub async fn reconcile_inputs(ctx: &Context) -> Result<(), Error> {
    ctx.metrics
        .reconciliations
        .get_or_create(&KindLabel { kind: INPUTS })
        .inc();
    let mut inputs = gather(&ctx.client).await?;
    let deployments = live(
        Api::<KauditDeployment>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await?
            .items,
    );
    // The dry run checks credentials and builds, which the tenancy limits do not change.
    let tenancy = deployments
        .first()
        .map(|kd| kd.spec.tenancy.clone())
        .unwrap_or_default();
    inputs.sink_refusals =
        super::sink_check::dry_runs(&inputs, &render::kaudit_config::tenancy(&tenancy)).await;
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

/// The `kind` label of the status pass's metrics.
const INPUTS: &str = "inputs";

/// How often the input statuses are recomputed without a change: referenced Secrets and
/// ConfigMaps are not watched.
const INPUT_RESYNC: Duration = Duration::from_secs(300);

/// Keeps the input statuses current: runs [`reconcile_inputs`] after every change of a rule,
/// rules file, sink or deployment (a burst of changes is taken together), every five minutes,
/// and 30 s after a failure. Never returns.
pub async fn run_input_statuses(ctx: Arc<Context>) {
    let mut inputs = Changes {
        client: ctx.client.clone(),
        streams: Vec::new(),
    };
    for_each_kind(&mut inputs);
    let mut changed =
        futures_util::stream::select_all(inputs.streams.into_iter().chain([changes(Api::<
            KauditDeployment,
        >::all(
            ctx.client.clone(),
        ))]));
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
                ctx.metrics.failed(INPUTS, &e);
                Duration::from_secs(30)
            }
        };
    }
}
