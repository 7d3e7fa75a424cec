//! Identity and reachability: the ServiceAccounts (no API access, so no token and no RBAC) and
//! the Services of kaudit's webhook and Falco's plugin.

use serde_json::json;

use super::object::{Object, Objects};
use super::plan::{FALCO_HEALTH_PORT, FALCO_PLUGIN_PORT, Plan, RenderError, typed};

/// kaudit's ServiceAccount, and Falco's when Falco runs (else it is pruned).
pub fn accounts(plan: &Plan, out: &mut Objects) -> Result<(), RenderError> {
    for (sa, comp) in [(plan.name.clone(), "kaudit"), (plan.falco_name(), "falco")] {
        if comp == "falco" && !plan.falco_on {
            out.prune("ServiceAccount", &sa);
            continue;
        }
        out.add(Object::ServiceAccount(typed(
            "ServiceAccount",
            json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": plan.meta(&sa, comp),
                "automountServiceAccountToken": false,
            }),
        )?));
    }
    Ok(())
}

/// kaudit's webhook Service.
pub fn kaudit(plan: &Plan) -> Result<Object, RenderError> {
    let service = &plan.kd.spec.service;
    Ok(Object::Service(typed(
        "kaudit Service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": plan.meta(&plan.name, "kaudit"),
            "spec": {
                "type": service.type_,
                "selector": plan.selector("kaudit"),
                "ports": [{"name": "webhook", "port": service.port, "targetPort": "webhook"}],
            }
        }),
    )?))
}

/// Falco's Service: the plugin's audit endpoint kaudit forwards to, and its health endpoint.
pub fn falco(plan: &Plan) -> Result<Object, RenderError> {
    Ok(Object::Service(typed(
        "Falco Service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": plan.meta(&plan.falco_name(), "falco"),
            "spec": {
                "selector": plan.selector("falco"),
                "ports": [
                    {"name": "k8saudit", "port": FALCO_PLUGIN_PORT, "targetPort": "k8saudit"},
                    {"name": "health", "port": FALCO_HEALTH_PORT, "targetPort": "health"},
                ],
            }
        }),
    )?))
}
