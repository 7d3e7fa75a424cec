//! The deployment controller: each run lists the inputs, renders with
//! [`render::desired`], applies the objects with the fixed field manager, prunes what the spec
//! no longer wants, and writes the deployment's own status (with an Event when it changes).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Client, Resource, ResourceExt};

use super::apply::{apply_object, patch_status, prune};
use super::context::{Context, now};
use super::crd::{KauditDeployment, KauditDeploymentStatus};
use super::error::Error;
use super::gather::gather;
use super::metrics::KindLabel;
use super::render::{self, Desired, carry_transition_times, truncate};

/// The `kind` label of the deployment controller's metrics.
pub const DEPLOYMENTS: &str = "kauditdeployment";

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

/// Reconciles one KauditDeployment (see the module docs).
pub async fn reconcile_deployment(
    kd: Arc<KauditDeployment>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.metrics
        .reconciliations
        .get_or_create(&KindLabel { kind: DEPLOYMENTS })
        .inc();
    if kd.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove every child.
        return Ok(Action::await_change());
    }
    let ns = kd.namespace().unwrap_or_default();
    let mut inputs = gather(&ctx.client).await?;
    super::gather::source_secrets(&ctx.client, &kd, &mut inputs).await?;
    inputs.sink_refusals =
        super::sink_check::dry_runs(&inputs, &render::kaudit_config::tenancy(&kd.spec.tenancy))
            .await;
    if render::needs_intake_token(&kd) {
        let token = intake_token(&ctx.client, &ns, &kd.name_any()).await?;
        inputs
            .intake_tokens
            .insert((ns.clone(), kd.name_any()), token);
    }
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
            report_failure(&ctx, &kd, &status, "RenderFailed", "Render", msg).await;
            return Err(e.into());
        }
    };
    let workloads = apply_all(&ctx, &kd, &desired).await?;
    let uid = kd.uid().unwrap_or_default();
    for key in &desired.prune {
        prune(&ctx.client, &ns, key, &uid).await?;
    }
    let mut status = desired.status;
    let ready = ready_condition(&workloads, kd.meta().generation, &now());
    for c in status.conditions.iter_mut() {
        if c.type_ == render::cond::READY {
            *c = ready.clone();
        }
    }
    write_status(&ctx, &kd, status).await?;
    // Referenced Secrets and ConfigMaps, and the rendered ones, are not watched (the operator
    // may only `get` them): look again now and then for rotations and drift.
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Applies every desired object in order; returns each workload's `(Kind/name, available,
/// wanted)` pods. The first failure is reported on the deployment and returned.
async fn apply_all(
    ctx: &Context,
    kd: &KauditDeployment,
    desired: &Desired,
) -> Result<Vec<(String, i32, i32)>, Error> {
    let ns = kd.namespace().unwrap_or_default();
    let mut workloads = Vec::new();
    for o in &desired.objects {
        match apply_object(&ctx.client, &ns, o).await {
            Ok(Some((have, want))) => workloads.push((o.key(), have, want)),
            Ok(None) => {}
            Err(e) => {
                let msg = truncate(&format!("{}: {e}", o.key()), 1000);
                let mut status = desired.status.clone();
                if let Some(c) = status
                    .conditions
                    .iter_mut()
                    .find(|c| c.type_ == render::cond::READY)
                {
                    c.status = "False".into();
                    c.reason = "ApplyFailed".into();
                    c.message = msg.clone();
                }
                report_failure(ctx, kd, &status, "ApplyFailed", "Apply", msg).await;
                return Err(e);
            }
        }
    }
    Ok(workloads)
}

/// Reports a failure on the deployment: `status` written and a Warning Event published, both
/// best effort (the error itself is what the controller retries on).
async fn report_failure(
    ctx: &Context,
    kd: &KauditDeployment,
    status: &KauditDeploymentStatus,
    reason: &str,
    action: &str,
    note: String,
) {
    let api = Api::<KauditDeployment>::namespaced(
        ctx.client.clone(),
        &kd.namespace().unwrap_or_default(),
    );
    let _ = patch_status(&api, &kd.name_any(), status).await;
    let ev = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    let _ = ctx.recorder.publish(&ev, &kd.object_ref(&())).await;
}

/// Writes the deployment's `status` when it changed, with an Event saying how its rules fared.
async fn write_status(
    ctx: &Context,
    kd: &KauditDeployment,
    mut status: KauditDeploymentStatus,
) -> Result<(), Error> {
    let old = kd.status.as_ref();
    if let Some(old) = old {
        carry_transition_times(&old.conditions, &mut status.conditions);
    }
    if old == Some(&status) {
        return Ok(());
    }
    let api = Api::<KauditDeployment>::namespaced(
        ctx.client.clone(),
        &kd.namespace().unwrap_or_default(),
    );
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
    Ok(())
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
