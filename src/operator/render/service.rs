//! Identity and reachability: the ServiceAccounts (no API access, so no token and no RBAC) and
//! the Services of kaudit's webhook (and the headless one of its StatefulSet) and Falco's plugin.

use k8s_openapi::api::core::v1::{Service, ServiceAccount, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::object::{Object, Objects};
use super::plan::{FALCO_HEALTH_PORT, FALCO_PLUGIN_PORT, KAUDIT_PORT, Plan};

/// kaudit's ServiceAccount, and Falco's when Falco runs (else it is pruned).
pub fn accounts(plan: &Plan, out: &mut Objects) {
    for (sa, comp) in [(plan.name.clone(), "kaudit"), (plan.falco_name(), "falco")] {
        if comp == "falco" && !plan.falco_on {
            out.prune("ServiceAccount", &sa);
            continue;
        }
        out.add(Object::ServiceAccount(ServiceAccount {
            metadata: plan.meta(&sa, comp),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }));
    }
}

/// A Service port forwarding to the container port of the same name.
fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        ..ServicePort::default()
    }
}

/// kaudit's webhook Service.
pub fn kaudit(plan: &Plan) -> Object {
    let service = &plan.kd.spec.service;
    Object::Service(Service {
        metadata: plan.meta(&plan.name, "kaudit"),
        spec: Some(ServiceSpec {
            type_: Some(service.type_.clone()),
            selector: Some(plan.selector("kaudit")),
            ports: Some(vec![port("webhook", service.port)]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The headless Service kaudit's StatefulSet names as its `serviceName` (stable pod DNS); pruned
/// when kaudit runs as a Deployment (`storage.emptyDir`).
pub fn kaudit_headless(plan: &Plan, out: &mut Objects) {
    let name = plan.headless_service();
    if plan.kd.spec.storage.empty_dir {
        out.prune("Service", &name);
        return;
    }
    out.add(Object::Service(Service {
        metadata: plan.meta(&name, "kaudit"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(plan.selector("kaudit")),
            ports: Some(vec![port("webhook", KAUDIT_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }));
}

/// Falco's Service: the plugin's audit endpoint kaudit forwards to, and its health endpoint.
pub fn falco(plan: &Plan) -> Object {
    Object::Service(Service {
        metadata: plan.meta(&plan.falco_name(), "falco"),
        spec: Some(ServiceSpec {
            selector: Some(plan.selector("falco")),
            ports: Some(vec![
                port("k8saudit", FALCO_PLUGIN_PORT),
                port("health", FALCO_HEALTH_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}
