//! The credentials finalizer `kaudit.io/credentials`, on inputs that hold credentials only
//! (sinks with `secretRefs`; [`InputKind::holds_credentials`]). Their credentials are copied from
//! Secrets (of another namespace than the deployment's) into the deployment's config Secret;
//! owner references cannot express that link, so deleting such a sink waits until every
//! deployment was re-rendered without it, i.e. until its credentials are gone. Sinks without
//! credentials copy nothing and have no finalizer. One controller runs per kind that may hold
//! credentials ([`InputKind::MAY_HOLD_CREDENTIALS`]).

use std::sync::Arc;

use futures_util::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use serde_json::json;

use super::context::{Context, requeue_after_failure};
use super::deployment::reconcile_all;
use super::error::Error;
use super::inputs::InputKind;
use super::metrics::KindLabel;

/// The finalizer of sinks (see the module docs).
pub const SINK_FINALIZER: &str = "kaudit.io/credentials";

/// Runs the finalizer controller of kind `K` until shutdown.
pub(crate) async fn controller<K: InputKind>(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    Controller::new(Api::<K>::all(client.clone()), watcher::Config::default())
        .shutdown_on_signal()
        .run(
            move |s: Arc<K>, ctx: Arc<Context>| {
                let api = K::api(client.clone(), s.namespace().as_deref());
                let credentials = s.holds_credentials();
                reconcile_sink(s, ctx, api, credentials)
            },
            |_, err, ctx| requeue_after_failure(K::KIND.label, err, &ctx),
            ctx,
        )
        .for_each(|_| async {})
        .await;
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
    K: InputKind,
{
    ctx.metrics
        .reconciliations
        .get_or_create(&KindLabel {
            kind: K::KIND.label,
        })
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
    .map_err(|e| Error::Finalizer(Box::new(e)))
}
