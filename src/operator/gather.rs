//! Reading the inputs: every object of every input kind (those being deleted left out), and the
//! ConfigMaps and Secrets they refer to.

use std::collections::BTreeSet;

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};

use super::error::Error;
use super::inputs::{InputKind, Inputs, KindVisitor, SINK_CREDENTIALS_LABEL, for_each_kind};

/// The objects of `items` not being deleted.
pub(crate) fn live<K: Resource>(items: Vec<K>) -> Vec<K> {
    items
        .into_iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .collect()
}

/// Files a kind's listing into [`Inputs`].
type Filer = Box<dyn FnOnce(&mut Inputs) + Send>;

/// One listing per kind, in [`for_each_kind`]'s order.
struct Lists {
    client: Client,
    lists: Vec<BoxFuture<'static, Result<Filer, Error>>>,
}

impl KindVisitor for Lists {
    fn visit<K: InputKind>(&mut self) {
        let api = Api::<K>::all(self.client.clone());
        self.lists.push(Box::pin(async move {
            let items = live(api.list(&ListParams::default()).await?.items);
            Ok(Box::new(move |inputs: &mut Inputs| *K::of_mut(inputs) = items) as Filer)
        }));
    }
}

/// The ConfigMaps and Secrets the inputs refer to.
struct References<'a> {
    inputs: &'a Inputs,
    config_maps: BTreeSet<(String, String)>,
    secrets: BTreeSet<(String, String)>,
}

impl KindVisitor for References<'_> {
    fn visit<K: InputKind>(&mut self) {
        for o in K::of(self.inputs) {
            let r = o.references();
            self.config_maps.extend(r.config_maps);
            self.secrets.extend(r.secrets);
        }
    }
}

/// Adds the Secrets `kd`'s sources refer to (in its own namespace) to `inputs`.
pub async fn source_secrets(
    client: &Client,
    kd: &crate::operator::crd::KauditDeployment,
    inputs: &mut Inputs,
) -> Result<(), Error> {
    let ns = kube::ResourceExt::namespace(kd).unwrap_or_default();
    let names: BTreeSet<String> = kd
        .spec
        .sources
        .iter()
        .flat_map(|s| s.secret_refs.iter().map(|r| r.name.clone()))
        .collect();
    for name in names {
        if inputs.secrets.contains_key(&(ns.clone(), name.clone())) {
            continue;
        }
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
            inputs.secrets.insert((ns.clone(), name), data);
        }
    }
    Ok(())
}

/// Reads every input of a deployment: every object of every input kind (those being deleted
/// left out), then the ConfigMaps and Secrets they reference.
pub async fn gather(client: &Client) -> Result<Inputs, Error> {
    let mut lists = Lists {
        client: client.clone(),
        lists: Vec::new(),
    };
    for_each_kind(&mut lists);
    let mut inputs = Inputs::default();
    // One after the other, in order: the apiserver sees the same calls every time.
    for list in lists.lists {
        list.await?(&mut inputs);
    }
    let mut refs = References {
        inputs: &inputs,
        config_maps: BTreeSet::new(),
        secrets: BTreeSet::new(),
    };
    for_each_kind(&mut refs);
    let (config_maps, secrets) = (refs.config_maps, refs.secrets);
    for (ns, name) in config_maps {
        if let Some(cm) = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await?
        {
            inputs
                .config_maps
                .insert((ns, name), cm.data.unwrap_or_default());
        }
    }
    for (ns, name) in secrets {
        if let Some(sec) = Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await?
        {
            if sec
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SINK_CREDENTIALS_LABEL))
                .is_some_and(|v| v == "true")
            {
                inputs.sink_credentials.insert((ns.clone(), name.clone()));
            }
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
