//! What every reconciliation shares: the client, the Event recorder, the metrics.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};

use super::error::Error;
use super::metrics::Metrics;
use super::render::FIELD_MANAGER;

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

/// The time conditions are stamped with.
pub(crate) fn now() -> Time {
    Time(Timestamp::now())
}

/// What the controller of `kind` does after a failed reconcile: log it, count it by kind of
/// failure, retry in 30 s.
pub(crate) fn requeue_after_failure(kind: &'static str, err: &Error, ctx: &Context) -> Action {
    tracing::warn!(error = %err, kind, "reconcile failed");
    ctx.metrics.failed(kind, err);
    Action::requeue(Duration::from_secs(30))
}
