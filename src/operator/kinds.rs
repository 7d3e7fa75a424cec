//! Reading the inputs: every rule, rules file and sink of the cluster, and the ConfigMaps and
//! Secrets they reference.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};

use super::crd::{AlertSink, ClusterAlertSink, FalcoRule, FalcoRulesFile};
use super::error::Error;
use super::inputs::Inputs;

/// The objects of `items` not being deleted.
pub(crate) fn live<K: Resource>(items: Vec<K>) -> Vec<K> {
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
