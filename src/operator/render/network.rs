//! NetworkPolicies: Falco's audit endpoint (the k8saudit plugin speaks plain HTTP with no
//! authentication, and every alert it raises reaches every sink) and its health endpoint take
//! connections from this deployment's kaudit pods only; kaudit's pods take connections on the
//! webhook port only (from anywhere: the apiserver's address is not known in-cluster).
//!
//! They hold where the cluster's network plugin enforces NetworkPolicies; `networkPolicies:
//! false` in the spec leaves them out (and prunes them).

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::object::{Object, Objects};
use super::plan::{FALCO_HEALTH_PORT, FALCO_PLUGIN_PORT, KAUDIT_PORT, Plan};

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

fn pods(plan: &Plan, component: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(plan.selector(component)),
        ..LabelSelector::default()
    }
}

fn ingress_only(
    plan: &Plan,
    name: &str,
    component: &str,
    rule: NetworkPolicyIngressRule,
) -> Object {
    Object::NetworkPolicy(NetworkPolicy {
        metadata: plan.meta(name, component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods(plan, component)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![rule]),
            ..NetworkPolicySpec::default()
        }),
    })
}

/// The policies of `plan`'s pods (Falco's when Falco runs), or their pruning when the spec
/// turns them off.
pub fn policies(plan: &Plan, out: &mut Objects) {
    let falco = plan.falco_name();
    if !plan.kd.spec.network_policies {
        out.prune("NetworkPolicy", &plan.name);
        out.prune("NetworkPolicy", &falco);
        return;
    }
    out.add(ingress_only(
        plan,
        &plan.name,
        "kaudit",
        NetworkPolicyIngressRule {
            from: None,
            ports: Some(vec![tcp(KAUDIT_PORT)]),
        },
    ));
    if plan.falco_on {
        out.add(ingress_only(
            plan,
            &falco,
            "falco",
            NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(pods(plan, "kaudit")),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![tcp(FALCO_PLUGIN_PORT), tcp(FALCO_HEALTH_PORT)]),
            },
        ));
    } else {
        out.prune("NetworkPolicy", &falco);
    }
}
