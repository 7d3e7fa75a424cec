//! `kaudit operator`: the health server, leader election, then every controller (the
//! deployment controller, the input status pass, the sink finalizers) until the lease is lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::context::{Context, requeue_after_failure};
use super::crd::KauditDeployment;
use super::deployment::{DEPLOYMENTS, reconcile_deployment};
use super::error::Error;
use super::finalizer;
use super::health::serve_health;
use super::inputs::{InputKind, KindVisitor, for_each_kind};
use super::leader::LeaseLock;
use super::statuses::run_input_statuses;

/// Lists every KauditDeployment the controller knows.
type AllDeployments = Arc<dyn Fn() -> Vec<ObjectRef<KauditDeployment>> + Send + Sync>;

/// Adds a watch of a kind to the deployment controller.
type AddWatch = Box<dyn FnOnce(Controller<KauditDeployment>) -> Controller<KauditDeployment>>;

/// A watch of every input kind for the deployment controller.
struct Triggers {
    client: Client,
    all: AllDeployments,
    watches: Vec<AddWatch>,
}

impl KindVisitor for Triggers {
    fn visit<K: InputKind>(&mut self) {
        let (api, all) = (Api::<K>::all(self.client.clone()), self.all.clone());
        self.watches.push(Box::new(move |c| {
            c.watches(api, watcher::Config::default(), move |_| all())
        }));
    }
}

/// The credentials finalizer's controller of every kind that may hold credentials.
struct Finalizers {
    ctx: Arc<Context>,
    controllers: Vec<BoxFuture<'static, ()>>,
}

impl KindVisitor for Finalizers {
    fn visit<K: InputKind>(&mut self) {
        if K::MAY_HOLD_CREDENTIALS {
            self.controllers
                .push(Box::pin(finalizer::controller::<K>(self.ctx.clone())));
        }
    }
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
pub async fn run(opts: OperatorOptions) -> Result<(), Error> {
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
        r = &mut health => return Err(match r {
            Ok(Err(e)) => Error::Health(e),
            _ => Error::HealthStopped,
        }),
    }
    metrics.leader.set(1);
    tracing::info!("leading");
    let lost = lock.hold();

    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=kaudit-operator");
    let main = Controller::new(
        Api::<KauditDeployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = main.store();
    let main = main
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<DaemonSet>::all(client.clone()), owned.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
        .owns(
            Api::<PodDisruptionBudget>::all(client.clone()),
            owned.clone(),
        )
        .owns(Api::<Service>::all(client.clone()), owned);
    // Every input feeds every deployment: a change of any reconciles them all.
    let mut triggers = Triggers {
        client: client.clone(),
        watches: Vec::new(),
        all: Arc::new(move || {
            store
                .state()
                .iter()
                .map(|kd| ObjectRef::from_obj(kd.as_ref()))
                .collect()
        }),
    };
    for_each_kind(&mut triggers);
    let main = triggers
        .watches
        .into_iter()
        .fold(main, |c, add| add(c))
        .shutdown_on_signal()
        .run(
            reconcile_deployment,
            |_, err, ctx| requeue_after_failure(DEPLOYMENTS, err, &ctx),
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "kauditdeployment");
            }
        });
    let mut finalizers = Finalizers {
        ctx: ctx.clone(),
        controllers: Vec::new(),
    };
    for_each_kind(&mut finalizers);
    let finalizers = futures_util::future::join_all(finalizers.controllers);
    let statuses = run_input_statuses(ctx.clone());
    let controllers = async {
        // The status loop never ends; the controllers end on SIGTERM/SIGINT.
        tokio::select! {
            _ = futures_util::future::join(main, finalizers) => {}
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
            Err(Error::LostLease)
        }
    }
}
