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
use super::crd::KauditDeployment;
use super::error::Error;
use super::gather::gather;
use super::metrics::KindLabel;
use super::render::{self, carry_transition_times, truncate};

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
