//! The k8saudit plugin's `ka.*` fields: one row per field, in documentation order (the
//! per-container `ka.req.pod.<group>.*` fields are generated from `containers`).
//!
//! To add a field, add its row here: [`Row::path`] for one value at a path of the event,
//! [`Row::scalar`] or [`Row::list`] with a function below for anything else.

use std::borrow::Cow;

use serde_json::Value;

use super::values::{array, indexed, json_pointer, stringify, uri_param};
use super::{ArgKind as A, Field, Reads, Row, Values, containers};
use crate::audit::EventRef;
use crate::json::JsonRef;

/// The `ka.*` rows (every one needs the event's `auditID`).
pub const FIELDS: &[Row] = &[
    Row::path("ka.auditid", &["auditID"], "the event's audit id"),
    Row::path(
        "ka.stage",
        &["stage"],
        "the stage of the request (ResponseComplete, ...)",
    ),
    Row::path(
        "ka.auth.decision",
        &["annotations", "authorization.k8s.io/decision"],
        "the authorization decision (allow, forbid)",
    ),
    Row::path(
        "ka.auth.reason",
        &["annotations", "authorization.k8s.io/reason"],
        "why the request was authorized or not",
    ),
    Row::path(
        "ka.auth.openshift.decision",
        &["annotations", "authentication.openshift.io/decision"],
        "OpenShift's authentication decision",
    ),
    Row::path(
        "ka.validations.admission.policy.failure",
        &[
            "annotations",
            "validation.policy.admission.k8s.io/validation_failure",
        ],
        "a validating admission policy's failure",
    ),
    Row::path(
        "ka.security.pod.violations",
        &["annotations", "pod-security.kubernetes.io/audit-violations"],
        "pod security admission's audit violations",
    ),
    Row::path(
        "ka.auth.openshift.username",
        &["annotations", "authentication.openshift.io/username"],
        "OpenShift's authenticated user name",
    ),
    Row::path(
        "ka.user.name",
        &["user", "username"],
        "the user who made the request",
    ),
    Row::list(
        "ka.user.groups",
        A::None,
        "the groups of the user",
        user_groups,
    )
    .reading(&["/user/groups"]),
    Row::path(
        "ka.impuser.name",
        &["impersonatedUser", "username"],
        "the impersonated user",
    ),
    Row::path("ka.verb", &["verb"], "the request verb (get, create, ...)"),
    Row::path("ka.uri", &["requestURI"], "the request URI"),
    Row::scalar(
        "ka.uri.param",
        A::Key,
        "a query parameter of the request URI, e.g. ka.uri.param[command]",
        uri_param_of,
    )
    .reading(&["/requestURI"]),
    Row::path(
        "ka.target.name",
        &["objectRef", "name"],
        "the target object's name",
    ),
    Row::path(
        "ka.target.namespace",
        &["objectRef", "namespace"],
        "the target object's namespace",
    ),
    Row::path(
        "ka.target.resource",
        &["objectRef", "resource"],
        "the target object's resource (pods, secrets, ...)",
    ),
    Row::path(
        "ka.target.subresource",
        &["objectRef", "subresource"],
        "the target object's subresource (exec, log, ...)",
    ),
    Row::scalar(
        "ka.target.pod.name",
        A::None,
        "the created pod's name (pods without subresource only)",
        target_pod_name,
    )
    .reading(&[
        "/objectRef/resource",
        "/objectRef/subresource",
        "/responseObject/metadata/name",
    ]),
    Row::list(
        "ka.req.binding.subjects",
        A::None,
        "the subjects of a role binding, as JSON",
        subjects,
    )
    .reading(&["/requestObject/subjects"]),
    Row::list(
        "ka.req.binding.subjects.user_names",
        A::None,
        "names of the User subjects of a role binding",
        subject_users,
    )
    .reading(&["/requestObject/subjects"]),
    Row::list(
        "ka.req.binding.subjects.serviceaccount_names",
        A::None,
        "names of the ServiceAccount subjects of a role binding",
        subject_service_accounts,
    )
    .reading(&["/requestObject/subjects"]),
    Row::list(
        "ka.req.binding.subjects.serviceaccount_ns_names",
        A::None,
        "namespace:name of the ServiceAccount subjects of a role binding",
        subject_service_account_ns_names,
    )
    .reading(&["/requestObject/subjects"]),
    Row::list(
        "ka.req.binding.subjects.group_names",
        A::None,
        "names of the Group subjects of a role binding",
        subject_groups,
    )
    .reading(&["/requestObject/subjects"]),
    Row::path(
        "ka.req.binding.role",
        &["requestObject", "roleRef", "name"],
        "the role a binding refers to",
    ),
    Row::scalar(
        "ka.req.binding.subject.has_name",
        A::Key,
        "always true, as in the plugin",
        always_true,
    )
    .reads(Reads::Nothing),
    Row::path(
        "ka.req.configmap.name",
        &["objectRef", "name"],
        "the config map's name",
    ),
    Row::path(
        "ka.req.configmap.obj",
        &["requestObject", "data"],
        "the config map's data, as JSON",
    ),
    Row::scalar(
        "ka.req.container.image",
        A::None,
        "the first container's image (deprecated)",
        first_image,
    )
    .reading(&["/requestObject/spec/containers"]),
    Row::scalar(
        "ka.req.container.image.repository",
        A::None,
        "the first container's image without tag (deprecated)",
        first_repository,
    )
    .reading(&["/requestObject/spec/containers"]),
    Row::path(
        "ka.req.pod.host_ipc",
        &["requestObject", "spec", "hostIPC"],
        "the pod's hostIPC",
    ),
    Row::path(
        "ka.req.pod.host_network",
        &["requestObject", "spec", "hostNetwork"],
        "the pod's hostNetwork",
    ),
    Row::path(
        "ka.req.container.host_network",
        &["requestObject", "spec", "hostNetwork"],
        "the pod's hostNetwork (deprecated name)",
    ),
    Row::path(
        "ka.req.pod.host_pid",
        &["requestObject", "spec", "hostPID"],
        "the pod's hostPID",
    ),
    Row::scalar(
        "ka.req.container.privileged",
        A::None,
        "true when any container is privileged",
        any_privileged,
    )
    .reading(&["/requestObject/spec/containers"]),
    Row::path(
        "ka.req.pod.run_as_user",
        &["requestObject", "spec", "securityContext", "runAsUser"],
        "the pod's runAsUser",
    ),
    Row::path(
        "ka.req.pod.run_as_group",
        &["requestObject", "spec", "securityContext", "runAsGroup"],
        "the pod's runAsGroup",
    ),
    Row::list(
        "ka.req.role.rules",
        A::None,
        "the rules of a role, as JSON",
        role_rules,
    )
    .reading(&["/requestObject/rules"]),
    Row::list(
        "ka.req.role.rules.apiGroups",
        A::Index,
        "the API groups of a role's rules",
        role_api_groups,
    )
    .reading(&["/requestObject/rules"]),
    Row::list(
        "ka.req.role.rules.nonResourceURLs",
        A::Index,
        "the non-resource URLs of a role's rules",
        role_non_resource_urls,
    )
    .reading(&["/requestObject/rules"]),
    Row::list(
        "ka.req.role.rules.verbs",
        A::Index,
        "the verbs of a role's rules",
        role_verbs,
    )
    .reading(&["/requestObject/rules"]),
    Row::list(
        "ka.req.role.rules.resources",
        A::Index,
        "the resources of a role's rules",
        role_resources,
    )
    .reading(&["/requestObject/rules"]),
    Row::path(
        "ka.req.pod.fs_group",
        &["requestObject", "spec", "securityContext", "fsGroup"],
        "the pod's fsGroup",
    ),
    Row::list(
        "ka.req.pod.supplemental_groups",
        A::None,
        "the pod's supplemental groups",
        supplemental_groups,
    )
    .reading(&["/requestObject/spec/securityContext/supplementalGroups"]),
    Row::path(
        "ka.req.service.type",
        &["requestObject", "spec", "type"],
        "the service's type",
    ),
    Row::list(
        "ka.req.service.ports",
        A::Index,
        "the service's ports: one value, the JSON of the whole array",
        service_ports,
    )
    .reading(&["/requestObject/spec/ports"]),
    Row::list(
        "ka.req.pod.volumes.hostpath",
        A::Index,
        "the host paths of the pod's volumes",
        volume_host_paths,
    )
    .reading(&["/requestObject/spec/volumes"]),
    Row::scalar(
        "ka.req.volume.hostpath",
        A::Key,
        "true when a volume mounts the host path (a trailing * matches a prefix)",
        volume_host_path_match,
    )
    .reading(&["/requestObject/spec/volumes"]),
    Row::list(
        "ka.req.pod.volumes.flexvolume_driver",
        A::Index,
        "the flexVolume drivers of the pod's volumes",
        flex_volume_drivers,
    )
    .reading(&["/requestObject/spec/volumes"]),
    Row::list(
        "ka.req.pod.volumes.volume_type",
        A::Index,
        "the types of the pod's volumes (hostPath, secret, ...)",
        volume_types,
    )
    .reading(&["/requestObject/spec/volumes"]),
    Row::path(
        "ka.resp.name",
        &["responseObject", "metadata", "name"],
        "the response object's name",
    ),
    Row::path(
        "ka.response.code",
        &["responseStatus", "code"],
        "the response's HTTP status code",
    ),
    Row::path(
        "ka.response.reason",
        &["responseStatus", "reason"],
        "the response's reason",
    ),
    Row::path("ka.useragent", &["userAgent"], "the client's user agent"),
    Row::list(
        "ka.sourceips",
        A::Index,
        "the client's source IP addresses",
        source_ips,
    )
    .reading(&["/sourceIPs"]),
    Row::path(
        "ka.cluster.name",
        &["annotations", "cluster_name"],
        "the cluster name annotation",
    ),
];

fn many(v: Vec<Cow<'_, str>>) -> Option<Values<'_>> {
    Some(Values::Many(v))
}

fn one(v: Cow<'_, str>) -> Option<Values<'_>> {
    Some(Values::One(v))
}

fn flag<'e>(b: bool) -> Option<Values<'e>> {
    one(Cow::Borrowed(if b { "true" } else { "false" }))
}

fn user_groups<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    many(json_pointer(ev.json, "/user/groups")?.strings()?)
}

fn uri_param_of<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let uri = json_pointer(ev.json, "/requestURI")?.as_str()?;
    one(Cow::Owned(uri_param(uri, f.key.as_deref()?)?))
}

fn target_pod_name<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let j = ev.json;
    let res = json_pointer(j, "/objectRef/resource")?.as_str()?;
    let sub = json_pointer(j, "/objectRef/subresource").and_then(JsonRef::as_str);
    if res != "pods" || sub.is_some_and(|s| !s.is_empty()) {
        return None;
    }
    one(json_pointer(j, "/responseObject/metadata/name")?.stringify())
}

fn subjects<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let a = array(ev.json, "/requestObject/subjects")?;
    many(a.iter().map(|s| Cow::Owned(s.to_string())).collect())
}

/// Names of the binding's subjects of one kind.
fn subject_names<'e>(ev: EventRef<'e>, kind: &str) -> Option<Values<'e>> {
    let a = array(ev.json, "/requestObject/subjects")?;
    many(
        a.iter()
            .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
            .filter_map(|s| s.get("name").map(stringify))
            .collect(),
    )
}

fn subject_users<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    subject_names(ev, "User")
}

fn subject_service_accounts<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    subject_names(ev, "ServiceAccount")
}

fn subject_groups<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    subject_names(ev, "Group")
}

fn subject_service_account_ns_names<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let a = array(ev.json, "/requestObject/subjects")?;
    many(
        a.iter()
            .filter(|s| s.get("kind").and_then(Value::as_str) == Some("ServiceAccount"))
            .filter_map(|s| {
                let ns = s.get("namespace")?;
                let name = s.get("name")?;
                Some(Cow::Owned(format!("{}:{}", stringify(ns), stringify(name))))
            })
            .collect(),
    )
}

fn always_true<'e>(_: &Field, _: EventRef<'e>) -> Option<Values<'e>> {
    one(Cow::Borrowed("true"))
}

fn first_image<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    containers::first(ev.json, containers::image)
}

fn first_repository<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    containers::first(ev.json, containers::repository)
}

fn any_privileged<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let a = array(ev.json, "/requestObject/spec/containers")?;
    flag(
        a.iter()
            .any(|c| c.pointer("/securityContext/privileged") == Some(&Value::Bool(true))),
    )
}

fn role_rules<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let a = array(ev.json, "/requestObject/rules")?;
    many(a.iter().map(|r| Cow::Owned(r.to_string())).collect())
}

/// One array property of every role rule (or only rule `[N]`), flattened.
fn role_rule_prop<'e>(f: &Field, ev: EventRef<'e>, key: &str) -> Option<Values<'e>> {
    let a = array(ev.json, "/requestObject/rules")?;
    let mut out = Vec::new();
    for r in indexed(a, f.index) {
        match r.get(key) {
            Some(Value::Array(items)) => out.extend(items.iter().map(stringify)),
            Some(Value::Null) | None => {}
            Some(other) => out.push(stringify(other)),
        }
    }
    many(out)
}

fn role_api_groups<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    role_rule_prop(f, ev, "apiGroups")
}

fn role_non_resource_urls<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    role_rule_prop(f, ev, "nonResourceURLs")
}

fn role_verbs<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    role_rule_prop(f, ev, "verbs")
}

fn role_resources<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    role_rule_prop(f, ev, "resources")
}

fn supplemental_groups<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let a = array(
        ev.json,
        "/requestObject/spec/securityContext/supplementalGroups",
    )?;
    many(a.iter().map(stringify).collect())
}

fn service_ports<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let ports = json_pointer(ev.json, "/requestObject/spec/ports")?;
    many(vec![Cow::Owned(ports.to_value().to_string())])
}

/// A value of every volume (or only volume `[N]`) at a pointer inside it.
fn volume_values<'e>(f: &Field, ev: EventRef<'e>, p: &str) -> Option<Values<'e>> {
    let a = array(ev.json, "/requestObject/spec/volumes")?;
    many(
        indexed(a, f.index)
            .iter()
            .filter_map(|v| v.pointer(p).map(stringify))
            .collect(),
    )
}

fn volume_host_paths<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    volume_values(f, ev, "/hostPath/path")
}

fn flex_volume_drivers<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    volume_values(f, ev, "/flexVolume/driver")
}

fn volume_types<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let a = array(ev.json, "/requestObject/spec/volumes")?;
    let mut out = Vec::new();
    for v in indexed(a, f.index) {
        if let Some(o) = v.as_object() {
            out.extend(
                o.keys()
                    .filter(|k| k.as_str() != "name")
                    .map(|k| Cow::Borrowed(k.as_str())),
            );
        }
    }
    many(out)
}

fn volume_host_path_match<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let a = array(ev.json, "/requestObject/spec/volumes")?;
    if a.is_empty() {
        return None;
    }
    let key = f.key.as_deref()?;
    flag(a.iter().any(|v| {
        let Some(path) = v.pointer("/hostPath/path").and_then(Value::as_str) else {
            return false;
        };
        match key.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == key,
        }
    }))
}

fn source_ips<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let a = array(ev.json, "/sourceIPs")?;
    many(indexed(a, f.index).iter().map(stringify).collect())
}
