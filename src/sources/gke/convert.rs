//! A Cloud Logging `LogEntry` whose `protoPayload` is a Kubernetes `google.cloud.audit.AuditLog`,
//! turned into the `audit.k8s.io/v1` Event kube-apiserver would have logged, field by field.
//! docs/sources.md lists every mapping and where it differs from Falco's k8saudit-gke plugin.

use serde_json::{Map, Value, json};

use crate::sources::Skip;

/// `@type` of the payload.
pub const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";

fn text<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What `methodName` (`io.k8s.core.v1.pods.exec.create`) says: resource, subresource, verb.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Method {
    /// `pods`.
    pub resource: Option<String>,
    /// `exec`.
    pub subresource: Option<String>,
    /// `create`.
    pub verb: String,
}

fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|p| {
            tail.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Parses `methodName`: the verb is its last part; the resource (and subresource) follow the
/// version part.
pub fn parse_method(m: &str) -> Method {
    let parts: Vec<&str> = m.split('.').collect();
    let verb = parts.last().copied().unwrap_or_default().to_string();
    let Some(v) = parts
        .iter()
        .skip(2)
        .position(|p| is_version(p))
        .map(|i| i + 2)
    else {
        return Method {
            verb,
            ..Method::default()
        };
    };
    let rest = &parts[v + 1..parts.len().saturating_sub(1).max(v + 1)];
    Method {
        resource: rest.first().map(|s| s.to_string()),
        subresource: (rest.len() >= 2).then(|| rest[1].to_string()),
        verb,
    }
}

/// The objectRef and the request path from `resourceName`
/// (`core/v1/namespaces/default/pods/nginx/exec`), with `method` settling what the path alone
/// cannot (`namespaces/foo/finalize` is the namespace's subresource, `namespaces/foo/pods` a
/// list of pods in it).
pub fn parse_resource_name(rn: &str, method: &Method) -> (Option<Value>, Option<String>) {
    let p: Vec<&str> = rn.split('/').filter(|s| !s.is_empty()).collect();
    if p.len() < 3 {
        return (None, None);
    }
    let (group, version, rest) = (p[0], p[1], &p[2..]);
    let namespace_itself = rest[0] == "namespaces"
        && (rest.len() == 2
            || (rest.len() == 3 && method.resource.as_deref() == Some("namespaces")));
    let (namespace, resource, name, sub) =
        if rest[0] == "namespaces" && rest.len() >= 3 && !namespace_itself {
            (Some(rest[1]), rest[2], rest.get(3), rest.get(4))
        } else {
            (None, rest[0], rest.get(1), rest.get(2))
        };
    let mut o = Map::new();
    o.insert("resource".into(), resource.into());
    if let Some(ns) = namespace {
        o.insert("namespace".into(), ns.into());
    }
    if let Some(n) = name {
        o.insert("name".into(), (*n).into());
    }
    if group != "core" {
        o.insert("apiGroup".into(), group.into());
    }
    o.insert("apiVersion".into(), version.into());
    if let Some(s) = sub {
        o.insert("subresource".into(), (*s).into());
    }
    let uri = if group == "core" {
        format!("/api/{version}/{}", rest.join("/"))
    } else {
        format!("/apis/{group}/{version}/{}", rest.join("/"))
    };
    (Some(Value::Object(o)), Some(uri))
}

/// The HTTP status of a `google.rpc.Code` (the mapping in google/rpc/code.proto).
pub fn rpc_to_http(code: i64) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

fn long_running(sub: Option<&str>) -> bool {
    matches!(sub, Some("exec" | "attach" | "portforward"))
}

/// `value` without its `"@type"` key (the Struct's type tag, which native events do not have).
fn object(value: &Value) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "@type")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The response code: the Kubernetes `Status` in `response` when there is one (it carries the
/// HTTP code), else `protoPayload.status` mapped from its gRPC code, else success for the verb.
fn response_code(pp: &Value, verb: &str, sub: Option<&str>) -> u16 {
    if let Some(r) = pp.get("response")
        && text(r, "/@type").is_some_and(|t| t.ends_with(".Status") || t.ends_with("/Status"))
        && let Some(c) = r.get("code").and_then(Value::as_f64)
        && (100.0..600.0).contains(&c)
    {
        return c as u16;
    }
    match pp.pointer("/status/code").and_then(Value::as_i64) {
        Some(c) if c != 0 => rpc_to_http(c),
        _ if long_running(sub) => 101,
        _ if verb == "create" => 201,
        _ => 200,
    }
}

/// Converts one LogEntry (JSON) into an Event, or says why it is not one.
pub fn convert(entry: &Value) -> Result<Value, Skip> {
    let pp = entry.get("protoPayload").ok_or(Skip::NotAuditLog)?;
    if text(pp, "/@type") != Some(AUDIT_LOG_TYPE) || text(pp, "/serviceName") != Some("k8s.io") {
        return Err(Skip::NotAuditLog);
    }
    if text(entry, "/resource/type").is_some_and(|t| t != "k8s_cluster") {
        return Err(Skip::NotAuditLog);
    }
    let method = parse_method(text(pp, "/methodName").unwrap_or_default());
    let (object_ref, uri) =
        parse_resource_name(text(pp, "/resourceName").unwrap_or_default(), &method);
    let sub = object_ref
        .as_ref()
        .and_then(|o| o.get("subresource"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| method.subresource.clone());
    let time = text(entry, "/timestamp")
        .or_else(|| text(entry, "/receiveTimestamp"))
        .ok_or(Skip::MissingStageTimestamp)?;
    let code = response_code(pp, &method.verb, sub.as_deref());
    let (request, response) = (pp.get("request"), pp.get("response"));
    let level = match (request.is_some(), response.is_some()) {
        (_, true) => "RequestResponse",
        (true, false) => "Request",
        _ => "Metadata",
    };
    let stage = if long_running(sub.as_deref()) && code < 400 {
        "ResponseStarted"
    } else {
        "ResponseComplete"
    };
    let mut ev = Map::new();
    ev.insert("kind".into(), "Event".into());
    ev.insert("apiVersion".into(), "audit.k8s.io/v1".into());
    ev.insert("level".into(), level.into());
    if let Some(id) = text(entry, "/insertId").or_else(|| text(entry, "/operation/id")) {
        ev.insert("auditID".into(), id.into());
    }
    ev.insert("stage".into(), stage.into());
    if let Some(u) = uri {
        ev.insert("requestURI".into(), u.into());
    }
    ev.insert("verb".into(), method.verb.clone().into());
    let mut user = Map::new();
    if let Some(u) = text(pp, "/authenticationInfo/principalEmail") {
        user.insert("username".into(), u.into());
    }
    ev.insert("user".into(), Value::Object(user));
    if let Some(ip) = text(pp, "/requestMetadata/callerIp") {
        ev.insert("sourceIPs".into(), json!([ip]));
    }
    if let Some(ua) = text(pp, "/requestMetadata/callerSuppliedUserAgent") {
        ev.insert("userAgent".into(), ua.into());
    }
    if let Some(o) = object_ref {
        ev.insert("objectRef".into(), o);
    }
    let mut status = Map::new();
    status.insert("metadata".into(), json!({}));
    status.insert("code".into(), code.into());
    if code >= 400 {
        status.insert("status".into(), "Failure".into());
        if let Some(m) =
            text(pp, "/status/message").or_else(|| response.and_then(|r| text(r, "/message")))
        {
            status.insert("message".into(), m.into());
        }
        if let Some(r) = response.and_then(|r| text(r, "/reason")) {
            status.insert("reason".into(), r.into());
        }
    }
    ev.insert("responseStatus".into(), Value::Object(status));
    if let Some(r) = request {
        ev.insert("requestObject".into(), object(r));
    }
    if let Some(r) = response {
        ev.insert("responseObject".into(), object(r));
    }
    ev.insert("requestReceivedTimestamp".into(), time.into());
    ev.insert("stageTimestamp".into(), time.into());
    let mut ann = Map::new();
    for src in ["/labels", "/resource/labels"] {
        if let Some(Value::Object(m)) = entry.pointer(src) {
            for (k, v) in m {
                if let Some(s) = v.as_str() {
                    ann.insert(k.clone(), s.into());
                }
            }
        }
    }
    if !ann.is_empty() {
        ev.insert("annotations".into(), Value::Object(ann));
    }
    Ok(Value::Object(ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: &str, resource: &str, extra: Value) -> Value {
        let mut e = json!({
            "insertId": "5e3f-1",
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "prod", "location": "europe-west1", "project_id": "p"}},
            "timestamp": "2026-03-01T10:00:00.123456Z",
            "receiveTimestamp": "2026-03-01T10:00:01.5Z",
            "labels": {"authorization.k8s.io/decision": "allow"},
            "protoPayload": {
                "@type": AUDIT_LOG_TYPE,
                "serviceName": "k8s.io",
                "methodName": method,
                "resourceName": resource,
                "authenticationInfo": {"principalEmail": "alice@example.com"},
                "requestMetadata": {"callerIp": "10.0.0.7", "callerSuppliedUserAgent": "kubectl/v1.37.2"}
            }
        });
        if let (Some(pp), Value::Object(x)) = (e["protoPayload"].as_object_mut(), extra) {
            pp.extend(x);
        }
        e
    }

    #[test]
    fn exec_into_a_pod() {
        let ev = convert(&entry(
            "io.k8s.core.v1.pods.exec.create",
            "core/v1/namespaces/default/pods/nginx/exec",
            json!({"status": {}}),
        ))
        .unwrap();
        assert_eq!(ev["auditID"], "5e3f-1");
        assert_eq!(ev["verb"], "create");
        assert_eq!(ev["stage"], "ResponseStarted");
        assert_eq!(
            ev["requestURI"],
            "/api/v1/namespaces/default/pods/nginx/exec"
        );
        assert_eq!(
            ev["objectRef"],
            json!({"resource": "pods", "namespace": "default", "name": "nginx", "apiVersion": "v1", "subresource": "exec"})
        );
        assert_eq!(ev["user"]["username"], "alice@example.com");
        assert_eq!(ev["sourceIPs"], json!(["10.0.0.7"]));
        assert_eq!(ev["responseStatus"]["code"], 101);
        assert_eq!(ev["stageTimestamp"], "2026-03-01T10:00:00.123456Z");
        assert_eq!(ev["annotations"]["cluster_name"], "prod");
        assert_eq!(ev["annotations"]["authorization.k8s.io/decision"], "allow");
        assert_eq!(ev["level"], "Metadata");
        crate::audit::AuditEvent::from_json(ev).unwrap();
    }

    #[test]
    fn denied_requests_keep_their_status() {
        let ev = convert(&entry(
            "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
            "rbac.authorization.k8s.io/v1/clusterrolebindings/x",
            json!({"status": {"code": 7, "message": "forbidden: no"}, "request": {"@type": "rbac.authorization.k8s.io/v1.ClusterRoleBinding", "kind": "ClusterRoleBinding"}}),
        ))
        .unwrap();
        assert_eq!(ev["responseStatus"]["code"], 403);
        assert_eq!(ev["responseStatus"]["message"], "forbidden: no");
        assert_eq!(ev["stage"], "ResponseComplete");
        assert_eq!(ev["objectRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(
            ev["requestURI"],
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/x"
        );
        assert_eq!(ev["requestObject"], json!({"kind": "ClusterRoleBinding"}));
        assert_eq!(ev["level"], "Request");
        // A Kubernetes Status in the response carries the HTTP code itself.
        let ev = convert(&entry(
            "io.k8s.core.v1.pods.create",
            "core/v1/namespaces/a/pods/p",
            json!({"status": {"code": 6}, "response": {"@type": "core.k8s.io/v1.Status", "code": 409, "reason": "AlreadyExists"}}),
        ))
        .unwrap();
        assert_eq!(ev["responseStatus"]["code"], 409);
        assert_eq!(ev["responseStatus"]["reason"], "AlreadyExists");
        let ok = convert(&entry(
            "io.k8s.core.v1.pods.create",
            "core/v1/namespaces/a/pods/p",
            json!({}),
        ))
        .unwrap();
        assert_eq!(ok["responseStatus"]["code"], 201);
    }

    #[test]
    fn resource_names() {
        let m = |s: &str| parse_method(s);
        assert_eq!(
            m("io.k8s.core.v1.namespaces.finalize.update"),
            Method {
                resource: Some("namespaces".into()),
                subresource: Some("finalize".into()),
                verb: "update".into()
            }
        );
        assert_eq!(
            m("io.k8s.apps.v1beta2.deployments.list")
                .resource
                .as_deref(),
            Some("deployments")
        );
        assert_eq!(m("weird").verb, "weird");
        let r = |rn: &str, meth: &str| parse_resource_name(rn, &parse_method(meth));
        let (o, u) = r(
            "core/v1/namespaces/foo/finalize",
            "io.k8s.core.v1.namespaces.finalize.update",
        );
        assert_eq!(
            o.unwrap(),
            json!({"resource": "namespaces", "name": "foo", "apiVersion": "v1", "subresource": "finalize"})
        );
        assert_eq!(u.unwrap(), "/api/v1/namespaces/foo/finalize");
        let (o, _) = r("core/v1/namespaces/foo/pods", "io.k8s.core.v1.pods.list");
        assert_eq!(
            o.unwrap(),
            json!({"resource": "pods", "namespace": "foo", "apiVersion": "v1"})
        );
        let (o, _) = r("core/v1/nodes", "io.k8s.core.v1.nodes.list");
        assert_eq!(o.unwrap(), json!({"resource": "nodes", "apiVersion": "v1"}));
        assert_eq!(r("core/v1", "x").0, None);
    }

    #[test]
    fn other_entries_are_skipped() {
        assert_eq!(
            convert(&json!({"textPayload": "x"})),
            Err(Skip::NotAuditLog)
        );
        let mut e = entry(
            "io.k8s.core.v1.pods.get",
            "core/v1/namespaces/a/pods/p",
            json!({}),
        );
        e["protoPayload"]["serviceName"] = "compute.googleapis.com".into();
        assert_eq!(convert(&e), Err(Skip::NotAuditLog));
    }
}
