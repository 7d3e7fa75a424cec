//! What the operator reads: the input kinds the deployments load (FalcoRule, FalcoRulesFile,
//! AlertSink, ClusterAlertSink), what each of them is to the operator ([`InputKind`]), and
//! everything read for a render ([`Inputs`]).
//!
//! Adding an input kind: its CRD in [`crd`](super::crd), a field of [`Inputs`], an
//! [`InputKind`] impl here and one line in [`for_each_kind`]; the client side (listing, watching,
//! statuses, the credentials finalizer) then handles it. What it renders into is
//! [`render`](super::render)'s.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kube::api::Api;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::crd::{
    AlertSink, ClusterAlertSink, FalcoRule, FalcoRulesFile, RuleStatus, SinkSpec, cond,
};

/// The label that opts a Secret in for namespaced sinks: a team marks the Secrets its
/// `AlertSink`s may read, so that creating an `AlertSink` is not a way to read every Secret of
/// the namespace.
pub const SINK_CREDENTIALS_LABEL: &str = "kaudit.io/sink-credentials";

/// Everything a [`KauditDeployment`](super::crd::KauditDeployment) depends on, as read from the
/// apiserver.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// Every FalcoRule of the cluster.
    pub rules: Vec<FalcoRule>,
    /// Every FalcoRulesFile.
    pub rules_files: Vec<FalcoRulesFile>,
    /// Every AlertSink.
    pub sinks: Vec<AlertSink>,
    /// Every ClusterAlertSink.
    pub cluster_sinks: Vec<ClusterAlertSink>,
    /// ConfigMaps referenced by rules files: (namespace, name) → data.
    pub config_maps: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Secrets referenced by sinks: (namespace, name) → data.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// The Secrets of `secrets` labelled [`SINK_CREDENTIALS_LABEL`]`: "true"`: the only ones a
    /// namespaced sink may use (its team opted them in).
    pub sink_credentials: BTreeSet<(String, String)>,
    /// Sinks the controller's dry run refused, by config sink name: the reason (see
    /// [`sink_check`](super::sink_check)).
    pub sink_refusals: BTreeMap<String, String>,
    /// The token each deployment's Falco presents to kaudit's `http_output` intake, by the
    /// deployment's (namespace, name); only deployments that need one
    /// ([`needs_intake_token`](super::render::needs_intake_token)). The controller reads it back
    /// from the config Secret, or issues a new one.
    pub intake_tokens: BTreeMap<(String, String), String>,
}

/// What an input kind is to the operator: the facts its outcomes, statuses, Events and metrics
/// carry. Each [`InputKind`] has one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ItemKind {
    /// The kind, as in the API (`FalcoRule`).
    pub name: &'static str,
    /// The kind in lower case: the `kind` label of the operator's metrics (a bounded set).
    pub label: &'static str,
    /// The condition type that says whether an object of the kind is valid.
    pub valid_condition: &'static str,
    /// The noun of its Events: `<noun>Accepted`, `Invalid<noun>`.
    pub event_noun: &'static str,
}

impl fmt::Debug for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

// Named like the kinds they stand for, so that `ItemKind::FalcoRule` reads like the kind.
#[allow(non_upper_case_globals)]
impl ItemKind {
    /// [`FalcoRule`]'s.
    pub const FalcoRule: ItemKind = <FalcoRule as InputKind>::KIND;
    /// [`FalcoRulesFile`]'s.
    pub const FalcoRulesFile: ItemKind = <FalcoRulesFile as InputKind>::KIND;
    /// [`AlertSink`]'s.
    pub const AlertSink: ItemKind = <AlertSink as InputKind>::KIND;
    /// [`ClusterAlertSink`]'s.
    pub const ClusterAlertSink: ItemKind = <ClusterAlertSink as InputKind>::KIND;
}

/// The ConfigMaps and Secrets an input refers to, read with it: (namespace, name).
#[derive(Debug, Default)]
pub struct References {
    /// ConfigMaps.
    pub config_maps: Vec<(String, String)>,
    /// Secrets.
    pub secrets: Vec<(String, String)>,
}

/// One kind of input resource: every deployment loads every object of it. The client side
/// (listing, watching, writing statuses) is generic over this trait.
pub trait InputKind:
    Resource<DynamicType = ()>
    + Clone
    + fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Its facts.
    const KIND: ItemKind;

    /// The objects of the kind among `inputs`.
    fn of(inputs: &Inputs) -> &[Self];

    /// The same, to fill.
    fn of_mut(inputs: &mut Inputs) -> &mut Vec<Self>;

    /// The status the operator wrote.
    fn status(&self) -> Option<&RuleStatus>;

    /// The API of objects of the kind in `namespace` (cluster kinds have none).
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;

    /// The ConfigMaps and Secrets this object refers to (read with the inputs).
    fn references(&self) -> References {
        References::default()
    }

    /// True when objects of the kind may hold credentials ([`holds_credentials`]): the
    /// credentials finalizer then runs for the kind ([`finalizer`](super::finalizer)).
    ///
    /// [`holds_credentials`]: InputKind::holds_credentials
    const MAY_HOLD_CREDENTIALS: bool = false;

    /// True when this object's credentials are copied into deployments' config Secrets: it then
    /// carries the finalizer that removes them before it goes.
    fn holds_credentials(&self) -> bool {
        false
    }
}

/// Something done once per input kind (see [`for_each_kind`]).
pub trait KindVisitor {
    /// Called once for each kind, in [`for_each_kind`]'s order.
    fn visit<K: InputKind>(&mut self);
}

/// Every input kind, in the order the operator reads them: the one list a new kind joins.
pub fn for_each_kind(v: &mut impl KindVisitor) {
    v.visit::<FalcoRule>();
    v.visit::<FalcoRulesFile>();
    v.visit::<AlertSink>();
    v.visit::<ClusterAlertSink>();
}

/// An input kind that is an alert sink.
pub trait SinkInput: InputKind {
    /// Its sink.
    fn sink(&self) -> &SinkSpec;
}

impl InputKind for FalcoRule {
    const KIND: ItemKind = ItemKind {
        name: "FalcoRule",
        label: "falcorule",
        valid_condition: cond::RULES_VALID,
        event_noun: "Rule",
    };

    fn of(inputs: &Inputs) -> &[Self] {
        &inputs.rules
    }

    fn of_mut(inputs: &mut Inputs) -> &mut Vec<Self> {
        &mut inputs.rules
    }

    fn status(&self) -> Option<&RuleStatus> {
        self.status.as_ref()
    }

    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        Api::namespaced(client, namespace.unwrap_or_default())
    }
}

impl InputKind for FalcoRulesFile {
    const KIND: ItemKind = ItemKind {
        name: "FalcoRulesFile",
        label: "falcorulesfile",
        valid_condition: cond::RULES_VALID,
        event_noun: "RulesFile",
    };

    fn of(inputs: &Inputs) -> &[Self] {
        &inputs.rules_files
    }

    fn of_mut(inputs: &mut Inputs) -> &mut Vec<Self> {
        &mut inputs.rules_files
    }

    fn status(&self) -> Option<&RuleStatus> {
        self.status.as_ref()
    }

    fn api(client: Client, _: Option<&str>) -> Api<Self> {
        Api::all(client)
    }

    fn references(&self) -> References {
        References {
            config_maps: self
                .spec
                .config_map_ref
                .iter()
                .map(|r| (r.namespace.clone(), r.name.clone()))
                .collect(),
            secrets: Vec::new(),
        }
    }
}

impl InputKind for AlertSink {
    const KIND: ItemKind = ItemKind {
        name: "AlertSink",
        label: "alertsink",
        valid_condition: cond::VALID,
        event_noun: "Sink",
    };
    const MAY_HOLD_CREDENTIALS: bool = true;

    fn of(inputs: &Inputs) -> &[Self] {
        &inputs.sinks
    }

    fn of_mut(inputs: &mut Inputs) -> &mut Vec<Self> {
        &mut inputs.sinks
    }

    fn status(&self) -> Option<&RuleStatus> {
        self.status.as_ref()
    }

    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        Api::namespaced(client, namespace.unwrap_or_default())
    }

    fn references(&self) -> References {
        let own = self.namespace().unwrap_or_default();
        References {
            config_maps: Vec::new(),
            // Only the sink's own namespace: a reference elsewhere is refused when rendering.
            secrets: self
                .spec
                .sink
                .secret_refs
                .iter()
                .filter(|r| r.namespace.as_deref().is_none_or(|n| n == own))
                .map(|r| (own.clone(), r.name.clone()))
                .collect(),
        }
    }

    fn holds_credentials(&self) -> bool {
        !self.spec.sink.secret_refs.is_empty()
    }
}

impl SinkInput for AlertSink {
    fn sink(&self) -> &SinkSpec {
        &self.spec.sink
    }
}

impl InputKind for ClusterAlertSink {
    const KIND: ItemKind = ItemKind {
        name: "ClusterAlertSink",
        label: "clusteralertsink",
        valid_condition: cond::VALID,
        event_noun: "Sink",
    };
    const MAY_HOLD_CREDENTIALS: bool = true;

    fn of(inputs: &Inputs) -> &[Self] {
        &inputs.cluster_sinks
    }

    fn of_mut(inputs: &mut Inputs) -> &mut Vec<Self> {
        &mut inputs.cluster_sinks
    }

    fn status(&self) -> Option<&RuleStatus> {
        self.status.as_ref()
    }

    fn api(client: Client, _: Option<&str>) -> Api<Self> {
        Api::all(client)
    }

    fn references(&self) -> References {
        References {
            config_maps: Vec::new(),
            secrets: self
                .spec
                .sink
                .secret_refs
                .iter()
                .filter_map(|r| Some((r.namespace.clone()?, r.name.clone())))
                .collect(),
        }
    }

    fn holds_credentials(&self) -> bool {
        !self.spec.sink.secret_refs.is_empty()
    }
}

impl SinkInput for ClusterAlertSink {
    fn sink(&self) -> &SinkSpec {
        &self.spec.sink
    }
}
