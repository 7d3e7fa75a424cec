//! `kaudit operator`: the health server, leader election, then every controller (the
//! deployment controller, the input status pass, the sink finalizers) until the lease is lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::context::Context;
use super::crd::{AlertSink, ClusterAlertSink, FalcoRule, FalcoRulesFile, KauditDeployment};
use super::deployment::reconcile_deployment;
use super::error::Error;
use super::finalizer::reconcile_sink;
use super::health::serve_health;
use super::leader::LeaseLock;
use super::metrics::KindLabel;
use super::statuses::run_input_statuses;

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

/// Runs `kaudit operator`: health and metrics server, leader election, then the controllers
/// until the lease is lost (an error, so that the pod restarts and campaigns again).
pub async fn run(opts: OperatorOptions) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let ctx = Arc::new(Context::new(client.clone(), Some(opts.identity.clone())));
    let metrics = ctx.metrics.clone();
    let mut health = tokio::spawn(serve_health(opts.listen, metrics.clone()));

    let lock = LeaseLock::new(
        client.clone(),
        &opts.lease_namespace,
        &opts.lease_name,
        &opts.identity,
        Duration::from_secs(15),
    );
    tracing::info!(identity = %opts.identity, "waiting for leadership");
    tokio::select! {
        () = lock.acquire() => {}
        _ = &mut health => anyhow::bail!("health server stopped"),
    }
    metrics.leader.set(1);
    tracing::info!("leading");
    let lost = lock.hold();

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
