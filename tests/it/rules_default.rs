//! The embedded default ruleset over hand-written events of each kind it should (and should
//! not) detect, in the shapes kube-apiserver sends.

use kaudit::audit::AuditEvent;
use kaudit::rules::{LoadOptions, RuleMatching, Ruleset};
use serde_json::{Value, json};

fn ev(user: &str, verb: &str, object_ref: Value, code: u32, extra: Value) -> AuditEvent {
    let mut j = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "11111111-2222-3333-4444-555555555555", "stage": "ResponseComplete",
        "requestURI": "/api/v1/x", "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.1.2.3"], "userAgent": "kubectl/v1.31.2",
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-11-22T09:10:01.000000Z",
        "stageTimestamp": "2026-11-22T09:10:01.500000Z",
        "annotations": {"authorization.k8s.io/decision": if code == 403 { "forbid" } else { "allow" }, "authorization.k8s.io/reason": ""}
    });
    if let (Some(o), Some(x)) = (j.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            o.insert(k.clone(), v.clone());
        }
    }
    AuditEvent::from_json(j).expect("event")
}

fn pod(spec: Value, ns: &str) -> AuditEvent {
    ev(
        "jane@example.com",
        "create",
        json!({"resource": "pods", "namespace": ns, "name": "p", "apiVersion": "v1"}),
        201,
        json!({"requestObject": {"kind": "Pod", "metadata": {"name": "p"}, "spec": spec},
               "responseObject": {"kind": "Pod", "metadata": {"name": "p"}}}),
    )
}

fn rules_fired(rs: &Ruleset, e: &AuditEvent) -> Vec<String> {
    let mut out = Vec::new();
    rs.evaluate(e, &mut out);
    out.into_iter().map(|a| a.rule).collect()
}

#[test]
fn default_ruleset_loads_cleanly() {
    let (rs, rep) = Ruleset::load_default(&LoadOptions::default()).expect("default rules load");
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    assert_eq!(rep.rules_skipped, 0);
    assert_eq!(rep.macros_skipped, 0);
    assert_eq!(rep.lists_skipped, 0);
    assert!(rep.rules_loaded >= 12, "{rep:?}");
    assert!(
        rs.rules()
            .all(|r| r.enabled && r.source == "k8s_audit" && !r.tags.is_empty())
    );
}

#[test]
fn default_ruleset_detects_each_kind() {
    let (rs, _) = Ruleset::load_default(&LoadOptions::default()).expect("default rules load");
    let exec_ref = |sub: &str| json!({"resource": "pods", "subresource": sub, "namespace": "payments", "name": "api-1", "apiVersion": "v1"});
    let ctr = |extra: Value| {
        let mut c = json!({"name": "c", "image": "alpine:3.20"});
        if let (Some(o), Some(x)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                o.insert(k.clone(), v.clone());
            }
        }
        c
    };
    let binding = |resource: &str, ns: Option<&str>, role: &str| {
        let mut r =
            json!({"resource": resource, "name": "b", "apiGroup": "rbac.authorization.k8s.io"});
        if let Some(ns) = ns {
            r["namespace"] = json!(ns);
        }
        ev(
            "ops@example.com",
            "create",
            r,
            201,
            json!({"requestObject": {"roleRef": {"kind": "ClusterRole", "name": role},
                    "subjects": [{"kind": "User", "name": "contractor@example.com"}]}}),
        )
    };
    let cases: Vec<(&str, AuditEvent, Option<&str>)> = vec![
        (
            "exec via SPDY",
            ev(
                "jane@example.com",
                "create",
                exec_ref("exec"),
                101,
                json!({"requestURI": "/api/v1/namespaces/payments/pods/api-1/exec?command=sh&container=api"}),
            ),
            Some("Exec Or Attach Into Pod"),
        ),
        (
            "attach via websocket",
            ev(
                "jane@example.com",
                "get",
                exec_ref("attach"),
                101,
                json!({}),
            ),
            Some("Exec Or Attach Into Pod"),
        ),
        (
            "refused exec",
            ev(
                "jane@example.com",
                "create",
                exec_ref("exec"),
                403,
                json!({}),
            ),
            Some("Forbidden Or Unauthorized Request"),
        ),
        (
            "port-forward",
            ev(
                "jane@example.com",
                "create",
                exec_ref("portforward"),
                101,
                json!({}),
            ),
            Some("Port Forward To Pod"),
        ),
        (
            "ephemeral container",
            ev(
                "jane@example.com",
                "patch",
                exec_ref("ephemeralcontainers"),
                200,
                json!({}),
            ),
            Some("Ephemeral Container Added"),
        ),
        (
            "privileged pod",
            pod(
                json!({"containers": [ctr(json!({"securityContext": {"privileged": true}}))]}),
                "default",
            ),
            Some("Create Privileged Pod"),
        ),
        (
            "privileged init container",
            pod(
                json!({"containers": [ctr(json!({}))], "initContainers": [ctr(json!({"securityContext": {"privileged": true}}))]}),
                "default",
            ),
            Some("Create Privileged Pod"),
        ),
        (
            "privileged pod in kube-system (excepted)",
            pod(
                json!({"hostNetwork": true, "containers": [ctr(json!({"securityContext": {"privileged": true}}))]}),
                "kube-system",
            ),
            None,
        ),
        (
            "hostPID pod",
            pod(
                json!({"hostPID": true, "containers": [ctr(json!({}))]}),
                "default",
            ),
            Some("Create Pod With Host Namespaces"),
        ),
        (
            "hostNetwork pod",
            pod(
                json!({"hostNetwork": true, "containers": [ctr(json!({}))]}),
                "default",
            ),
            Some("Create Pod With Host Namespaces"),
        ),
        (
            "hostIPC pod",
            pod(
                json!({"hostIPC": true, "containers": [ctr(json!({}))]}),
                "default",
            ),
            Some("Create Pod With Host Namespaces"),
        ),
        (
            "docker socket mount",
            pod(
                json!({"containers": [ctr(json!({}))], "volumes": [{"name": "s", "hostPath": {"path": "/var/run/docker.sock"}}]}),
                "default",
            ),
            Some("Create Pod With Sensitive Host Mount"),
        ),
        (
            "harmless host mount",
            pod(
                json!({"containers": [ctr(json!({}))], "volumes": [{"name": "s", "hostPath": {"path": "/var/log/app"}}]}),
                "default",
            ),
            None,
        ),
        (
            "plain pod",
            pod(json!({"containers": [ctr(json!({}))]}), "default"),
            None,
        ),
        (
            "clusterrolebinding to cluster-admin",
            binding("clusterrolebindings", None, "cluster-admin"),
            Some("Binding To Cluster Admin"),
        ),
        (
            "clusterrolebinding to view",
            binding("clusterrolebindings", None, "view"),
            None,
        ),
        (
            "rolebinding in kube-system",
            binding("rolebindings", Some("kube-system"), "view"),
            Some("Role Binding Created In Kube System"),
        ),
        (
            "secret read by a person",
            ev(
                "mallory@example.com",
                "get",
                json!({"resource": "secrets", "namespace": "payments", "name": "stripe"}),
                200,
                json!({}),
            ),
            Some("Secret Read By Unexpected User"),
        ),
        (
            "secret read by a kube-system controller",
            ev(
                "system:serviceaccount:kube-system:bootstrap-signer",
                "get",
                json!({"resource": "secrets", "namespace": "kube-system", "name": "t"}),
                200,
                json!({}),
            ),
            None,
        ),
        (
            "secret read by the controller manager",
            ev(
                "system:kube-controller-manager",
                "list",
                json!({"resource": "secrets"}),
                200,
                json!({}),
            ),
            None,
        ),
        (
            "anonymous secret read, refused",
            ev(
                "system:anonymous",
                "get",
                json!({"resource": "secrets", "namespace": "kube-system"}),
                403,
                json!({"user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]}}),
            ),
            Some("Anonymous Request"),
        ),
        (
            "unauthenticated group only",
            ev(
                "someone",
                "list",
                json!({"resource": "pods"}),
                401,
                json!({"user": {"username": "someone", "groups": ["system:unauthenticated"]}}),
            ),
            Some("Anonymous Request"),
        ),
        (
            "forbidden list by a person",
            ev(
                "mallory@example.com",
                "list",
                json!({"resource": "nodes"}),
                403,
                json!({}),
            ),
            Some("Forbidden Or Unauthorized Request"),
        ),
        (
            "service account in kube-system",
            ev(
                "jane@example.com",
                "create",
                json!({"resource": "serviceaccounts", "namespace": "kube-system", "name": "backdoor"}),
                201,
                json!({}),
            ),
            Some("Service Account Created In Kube System"),
        ),
        (
            "service account elsewhere",
            ev(
                "jane@example.com",
                "create",
                json!({"resource": "serviceaccounts", "namespace": "apps", "name": "a"}),
                201,
                json!({}),
            ),
            None,
        ),
        (
            "configmap with a password",
            ev(
                "jane@example.com",
                "create",
                json!({"resource": "configmaps", "namespace": "apps", "name": "cfg"}),
                201,
                json!({"requestObject": {"data": {"DB_PASSWORD": "hunter2"}}}),
            ),
            Some("ConfigMap With Credentials"),
        ),
        (
            "configmap without secrets",
            ev(
                "jane@example.com",
                "create",
                json!({"resource": "configmaps", "namespace": "apps", "name": "cfg"}),
                201,
                json!({"requestObject": {"data": {"LOG_LEVEL": "debug"}}}),
            ),
            None,
        ),
        (
            "clusterrole with wildcard verbs",
            ev(
                "jane@example.com",
                "create",
                json!({"resource": "clusterroles", "name": "god"}),
                201,
                json!({"requestObject": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]}}),
            ),
            Some("Role With Wildcard Permissions"),
        ),
        (
            "impersonation",
            ev(
                "jane@example.com",
                "get",
                json!({"resource": "pods"}),
                200,
                json!({"impersonatedUser": {"username": "admin"}}),
            ),
            Some("Impersonated Request"),
        ),
        (
            "exec before completion (ResponseStarted)",
            ev(
                "jane@example.com",
                "create",
                exec_ref("exec"),
                101,
                json!({"stage": "ResponseStarted"}),
            ),
            None,
        ),
        (
            "prometheus lists pods",
            ev(
                "system:serviceaccount:monitoring:prometheus",
                "list",
                json!({"resource": "pods", "namespace": "default"}),
                200,
                json!({}),
            ),
            None,
        ),
        (
            "kubelet renews its lease",
            ev(
                "system:node:worker-1",
                "update",
                json!({"resource": "leases", "namespace": "kube-node-lease", "name": "worker-1"}),
                200,
                json!({}),
            ),
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (what, e, want) in &cases {
        let got = rules_fired(&rs, e);
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        if got != want {
            failures.push(format!("{what}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn default_ruleset_all_matching_reports_every_finding() {
    let opts = LoadOptions {
        rule_matching: RuleMatching::All,
        ..LoadOptions::default()
    };
    let (rs, _) = Ruleset::load_default(&opts).expect("default rules load");
    let e = pod(
        json!({"hostNetwork": true, "hostPID": true,
               "containers": [{"name": "c", "image": "alpine", "securityContext": {"privileged": true}}],
               "volumes": [{"name": "r", "hostPath": {"path": "/"}}]}),
        "default",
    );
    assert_eq!(
        rules_fired(&rs, &e),
        [
            "Create Privileged Pod",
            "Create Pod With Host Namespaces",
            "Create Pod With Sensitive Host Mount"
        ]
    );
}
