//! The operator's pure half: CRDs, rendering (golden), tenancy (adversarial, with the real
//! rules engine), hashes and reloads, and every shipped manifest parsing into its typed object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PodTemplateSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kaudit::alert::Alert;
use kaudit::audit::AuditEvent;
use kaudit::config::{Config, RuleMatching};
use kaudit::operator::crd::{
    AlertSink, AlertSinkSpec, ClusterAlertSink, ClusterAlertSinkSpec, FalcoRule, FalcoRuleSpec,
    FalcoRulesFile, FalcoRulesFileSpec, KauditDeployment, KauditDeploymentSpec, RuleException,
    SinkSpec,
};
use kaudit::operator::inputs::{Inputs, SINK_CREDENTIALS_LABEL};
use kaudit::operator::render::{self, Desired, ItemKind, Object};
use kaudit::rules::{AlertFilter, LoadOptions, Ruleset};
use kube::api::ObjectMeta;
use serde_json::{Value, json};

mod console;
mod desired;
mod manifests;
mod rules;
mod sinks;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn t0() -> Time {
    Time(Timestamp::UNIX_EPOCH)
}

pub fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        uid: Some(format!("uid-{}-{name}", ns.unwrap_or("cluster"))),
        generation: Some(1),
        ..Default::default()
    }
}

pub fn kd(spec: Value) -> KauditDeployment {
    let spec: KauditDeploymentSpec = serde_json::from_value(spec).unwrap();
    let mut k = KauditDeployment::new("kaudit", spec);
    k.metadata = meta(Some("kaudit-system"), "kaudit");
    k
}

pub fn rule(ns: &str, name: &str, cond: &str) -> FalcoRule {
    rule_spec(
        ns,
        name,
        json!({"rule": format!("Rule {name}"), "condition": cond,
        "output": "hit user=%ka.user.name verb=%ka.verb", "priority": "warning"}),
    )
}

pub fn rule_spec(ns: &str, name: &str, spec: Value) -> FalcoRule {
    let spec: FalcoRuleSpec = serde_json::from_value(spec).unwrap();
    let mut r = FalcoRule::new(name, spec);
    r.metadata = meta(Some(ns), name);
    r
}

pub fn sink(ns: &str, name: &str, spec: Value) -> AlertSink {
    let sink: SinkSpec = serde_json::from_value(spec).unwrap();
    let mut s = AlertSink::new(name, AlertSinkSpec { sink });
    s.metadata = meta(Some(ns), name);
    s
}

fn cluster_sink(name: &str, spec: Value) -> ClusterAlertSink {
    let sink: SinkSpec = serde_json::from_value(spec).unwrap();
    let mut s = ClusterAlertSink::new(name, ClusterAlertSinkSpec { sink });
    s.metadata = meta(None, name);
    s
}

fn rules_file(name: &str, order: i32, text: &str) -> FalcoRulesFile {
    let mut f = FalcoRulesFile::new(
        name,
        FalcoRulesFileSpec {
            order,
            rules: Some(text.into()),
            config_map_ref: None,
        },
    );
    f.metadata = meta(None, name);
    f
}

/// Cluster rules every tenant may use: a macro and lists that match everything.
const CLUSTER_RULES: &str = r#"
- macro: always_true
  condition: (ka.verb exists)
- list: all_verbs
  items: [get, list, watch, create, update, patch, delete, deletecollection]
- list: victim_namespaces
  items: [victim]
- rule: Cluster Exec
  desc: any exec
  condition: ka.target.subresource = exec
  output: exec by %ka.user.name in %ka.target.namespace
  priority: NOTICE
  source: k8s_audit
"#;

fn event(
    ns: Option<&str>,
    verb: &str,
    resource: &str,
    sub: Option<&str>,
    user: &str,
) -> AuditEvent {
    let mut obj = json!({"resource": resource, "name": "p", "apiVersion": "v1"});
    if let Some(ns) = ns {
        obj["namespace"] = json!(ns);
    }
    if let Some(s) = sub {
        obj["subresource"] = json!(s);
    }
    let path = match ns {
        Some(ns) => format!("/api/v1/namespaces/{ns}/{resource}/p"),
        None => format!("/api/v1/{resource}/p"),
    };
    AuditEvent::from_json(json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": uuid::Uuid::new_v4().to_string(), "stage": "ResponseComplete",
        "requestURI": path, "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.1"], "userAgent": "kubectl",
        "objectRef": obj,
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-22T09:10:01.123456Z",
        "stageTimestamp": "2026-11-22T09:10:01.456789Z",
    }))
    .unwrap()
}

/// Events of every shape outside namespace `attacker`.
fn foreign_events() -> Vec<AuditEvent> {
    let mut v = Vec::new();
    for ns in [
        Some("victim"),
        Some("kube-system"),
        Some("attacker-2"),
        Some("xattacker"),
        None,
    ] {
        for verb in ["get", "list", "create", "delete", "patch"] {
            v.push(event(ns, verb, "pods", None, "mallory"));
            v.push(event(ns, verb, "secrets", None, "x\") or (ka.verb exists"));
        }
        v.push(event(ns, "create", "pods", Some("exec"), "mallory"));
    }
    v.push(event(
        None,
        "create",
        "clusterrolebindings",
        None,
        "mallory",
    ));
    v
}

fn own_events() -> Vec<AuditEvent> {
    let mut v = Vec::new();
    for verb in ["get", "list", "create", "delete", "patch"] {
        v.push(event(Some("attacker"), verb, "pods", None, "mallory"));
        v.push(event(Some("attacker"), verb, "secrets", None, "bob"));
    }
    v.push(event(
        Some("attacker"),
        "create",
        "pods",
        Some("exec"),
        "mallory",
    ));
    v
}

pub fn render(kd: &KauditDeployment, inputs: &Inputs) -> Desired {
    render::desired(kd, inputs, &t0()).unwrap()
}

/// The engine as the rendered kaudit config sets it up (files, rule matching).
fn engine(d: &Desired) -> Ruleset {
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert_eq!(cfg.rules.rule_matching, RuleMatching::All);
    let opts = LoadOptions {
        rule_matching: cfg.rules.rule_matching,
        ..Default::default()
    };
    Ruleset::load_sources(&d.rules_files, &opts)
        .unwrap_or_else(|e| panic!("rendered rules do not load: {e}"))
        .0
}

fn alerts(rs: &Ruleset, evs: &[AuditEvent]) -> Vec<Alert> {
    let mut out = Vec::new();
    for e in evs {
        rs.evaluate(e, &mut out);
    }
    out
}

pub fn outcome<'a>(d: &'a Desired, kind: ItemKind, name: &str) -> &'a render::Outcome {
    d.outcomes
        .iter()
        .find(|o| o.kind == kind && o.name == name)
        .unwrap_or_else(|| panic!("no outcome for {name}"))
}

fn deployment<'a>(d: &'a Desired, name: &str) -> &'a Deployment {
    d.objects
        .iter()
        .find_map(|o| match o {
            Object::Deployment(x) if x.metadata.name.as_deref() == Some(name) => Some(x),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Deployment {name}"))
}

fn statefulset<'a>(d: &'a Desired, name: &str) -> &'a StatefulSet {
    d.objects
        .iter()
        .find_map(|o| match o {
            Object::StatefulSet(x) if x.metadata.name.as_deref() == Some(name) => Some(x),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no StatefulSet {name}"))
}

/// kaudit's workload, a StatefulSet or (with `storage.emptyDir`) a Deployment.
fn kaudit_workload(d: &Desired) -> &Object {
    d.objects
        .iter()
        .find(|o| match o {
            Object::StatefulSet(x) => x.metadata.name.as_deref() == Some("kaudit"),
            Object::Deployment(x) => x.metadata.name.as_deref() == Some("kaudit"),
            _ => false,
        })
        .unwrap_or_else(|| panic!("no kaudit workload"))
}

/// kaudit's pod template, whichever kind its workload is.
fn kaudit_pod(d: &Desired) -> &PodTemplateSpec {
    match kaudit_workload(d) {
        Object::StatefulSet(x) => &x.spec.template,
        Object::Deployment(x) => &x.spec.template,
        o => panic!("{} is not kaudit's workload", o.key()),
    }
}

/// The rules-hash annotation of Falco's pod template (a change rolls Falco).
fn falco_rules_hash(d: &Desired) -> String {
    deployment(d, "kaudit-falco")
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[render::RULES_HASH_ANNOTATION]
        .clone()
}

pub fn config_secret(d: &Desired) -> &Secret {
    d.objects
        .iter()
        .find_map(|o| match o {
            Object::Secret(x) => Some(x),
            _ => None,
        })
        .unwrap()
}

fn config_map<'a>(d: &'a Desired, name: &str) -> &'a ConfigMap {
    d.objects
        .iter()
        .find_map(|o| match o {
            Object::ConfigMap(x) if x.metadata.name.as_deref() == Some(name) => Some(x),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

/// The Falco intake token of the golden deployment (the controller issues a random one).
const GOLDEN_TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
