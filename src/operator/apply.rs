//! Writing to the apiserver: server-side apply of the rendered objects with the operator's field
//! manager, pruning what a deployment no longer wants, and status patches.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::error::Error;
use super::render::{FIELD_MANAGER, Object};

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
pub(crate) async fn apply_object(
    client: &Client,
    ns: &str,
    o: &Object,
) -> Result<Option<(i32, i32)>, Error> {
    Ok(match o {
        Object::ConfigMap(x) => apply(client, ns, x).await.map(|_| None)?,
        Object::Secret(x) => apply(client, ns, x).await.map(|_| None)?,
        Object::ServiceAccount(x) => apply(client, ns, x).await.map(|_| None)?,
        Object::Service(x) => apply(client, ns, x).await.map(|_| None)?,
        Object::NetworkPolicy(x) => apply(client, ns, x).await.map(|_| None)?,
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
        Object::PodDisruptionBudget(x) => apply(client, ns, x).await.map(|_| None)?,
        Object::StatefulSet(x) => {
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

pub(crate) async fn prune(
    client: &Client,
    ns: &str,
    key: &str,
    owner_uid: &str,
) -> Result<(), Error> {
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
        "NetworkPolicy" => prune_one::<NetworkPolicy>(client, ns, name, owner_uid).await,
        "StatefulSet" => prune_one::<StatefulSet>(client, ns, name, owner_uid).await,
        "PodDisruptionBudget" => {
            prune_one::<PodDisruptionBudget>(client, ns, name, owner_uid).await
        }
        _ => Ok(()),
    }
}

/// Merge-patches `status` into the status subresource of `name`.
pub(crate) async fn patch_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl Serialize,
) -> Result<(), Error>
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let patch = json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
