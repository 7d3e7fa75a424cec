//! Every field's extraction, per the plugin: pod, RBAC and service events, and error shapes.

use super::*;

#[test]
fn every_field_extracts_per_the_plugin() {
    let ev = pod_event();
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        ("ka.auditid", None, &["id-1"]),
        ("ka.stage", None, &["ResponseComplete"]),
        ("ka.auth.decision", None, &["allow"]),
        ("ka.auth.reason", None, &["RBAC"]),
        ("ka.auth.openshift.decision", None, &[]),
        ("ka.auth.openshift.username", None, &[]),
        ("ka.validations.admission.policy.failure", None, &[]),
        ("ka.security.pod.violations", None, &[]),
        ("ka.user.name", None, &["jane"]),
        ("ka.user.groups", None, &["dev", "system:authenticated"]),
        ("ka.impuser.name", None, &["bob"]),
        ("ka.verb", None, &["create"]),
        (
            "ka.uri",
            None,
            &["/api/v1/namespaces/default/pods?dryRun=All&x=a+b%2Fc&x=second"],
        ),
        ("ka.uri.param", Some("x"), &["a b/c"]),
        ("ka.uri.param", Some("dryRun"), &["All"]),
        ("ka.uri.param", Some("nope"), &[]),
        ("ka.target.name", None, &["web"]),
        ("ka.target.namespace", None, &["default"]),
        ("ka.target.resource", None, &["pods"]),
        ("ka.target.subresource", None, &[]),
        ("ka.target.pod.name", None, &["web-abc"]),
        ("ka.req.configmap.name", None, &["web"]),
        ("ka.req.configmap.obj", None, &[]),
        ("ka.req.pod.containers.name", None, &["nginx", "side"]),
        ("ka.req.pod.containers.name", Some("1"), &["side"]),
        (
            "ka.req.pod.containers.image",
            None,
            &["nginx:1.25", "reg.io/team/side@sha256:abcd"],
        ),
        ("ka.req.pod.containers.image", Some("0"), &["nginx:1.25"]),
        ("ka.req.pod.containers.image", Some("5"), &[]),
        ("ka.req.container.image", None, &["nginx:1.25"]),
        (
            "ka.req.pod.containers.image.repository",
            None,
            &["nginx", "reg.io/team/side"],
        ),
        ("ka.req.container.image.repository", None, &["nginx"]),
        ("ka.req.pod.containers.command", None, &["nginx -g"]),
        ("ka.req.pod.containers.args", None, &["daemon off;"]),
        ("ka.req.pod.host_ipc", None, &[]),
        ("ka.req.pod.host_network", None, &["true"]),
        ("ka.req.container.host_network", None, &["true"]),
        ("ka.req.pod.host_pid", None, &["false"]),
        ("ka.req.pod.containers.host_port", None, &["80", "8443"]),
        ("ka.req.pod.containers.privileged", None, &["true"]),
        ("ka.req.container.privileged", None, &["true"]),
        (
            "ka.req.pod.containers.allow_privilege_escalation",
            None,
            &["false"],
        ),
        ("ka.req.pod.containers.read_only_fs", None, &["true"]),
        ("ka.req.pod.run_as_user", None, &["1000"]),
        ("ka.req.pod.containers.run_as_user", None, &["0"]),
        (
            "ka.req.pod.containers.eff_run_as_user",
            None,
            &["0", "1000"],
        ),
        ("ka.req.pod.run_as_group", None, &["3000"]),
        ("ka.req.pod.containers.run_as_group", None, &[]),
        (
            "ka.req.pod.containers.eff_run_as_group",
            None,
            &["3000", "3000"],
        ),
        ("ka.req.pod.containers.proc_mount", None, &["Default"]),
        (
            "ka.req.pod.containers.add_capabilities",
            None,
            &["[\"NET_ADMIN\",\"SYS_TIME\"]"],
        ),
        ("ka.req.pod.fs_group", None, &["2000"]),
        ("ka.req.pod.supplemental_groups", None, &["4", "5"]),
        ("ka.req.pod.volumes.hostpath", None, &["/etc/kubernetes"]),
        ("ka.req.volume.hostpath", Some("/etc/kubernetes"), &["true"]),
        ("ka.req.volume.hostpath", Some("/etc*"), &["true"]),
        ("ka.req.volume.hostpath", Some("/var*"), &["false"]),
        ("ka.req.pod.volumes.flexvolume_driver", None, &["acme/drv"]),
        (
            "ka.req.pod.volumes.volume_type",
            None,
            &["hostPath", "configMap", "flexVolume"],
        ),
        ("ka.req.pod.initContainers.image", None, &["busybox"]),
        ("ka.req.pod.initContainers.privileged", None, &["false"]),
        ("ka.req.pod.ephemeralContainers.image", None, &[]),
        ("ka.resp.name", None, &["web-abc"]),
        ("ka.response.code", None, &["201"]),
        ("ka.response.reason", None, &["Created"]),
        ("ka.useragent", None, &["kubectl/v1.31"]),
        ("ka.sourceips", None, &["10.0.0.1", "10.0.0.2"]),
        ("ka.sourceips", Some("1"), &["10.0.0.2"]),
        ("ka.cluster.name", None, &["prod-1"]),
        ("ka.req.service.type", None, &[]),
        ("ka.req.service.ports", None, &[]),
        ("ka.req.binding.role", None, &[]),
        ("ka.req.binding.subject.has_name", Some("x"), &["true"]),
        ("ka.req.role.rules", None, &[]),
        ("jevt.value", Some("/user/username"), &["jane"]),
        (
            "jevt.value",
            Some("/requestObject/spec/containers/1/name"),
            &["side"],
        ),
        (
            "jevt.value",
            Some("/annotations/authorization.k8s.io~1decision"),
            &["allow"],
        ),
        (
            "jevt.value",
            Some("/responseStatus"),
            &["{\"code\":201,\"reason\":\"Created\"}"],
        ),
        ("jevt.value", Some("/nope"), &[]),
        ("json.value", Some("/verb"), &["create"]),
        ("jevt.rawtime", None, &["1767323045123456789"]),
        ("json.rawtime", None, &["1767323045123456789"]),
        ("evt.time", None, &["03:04:05.123456789"]),
        (
            "evt.time.iso8601",
            None,
            &["2026-01-02T03:04:05.123456789+0000"],
        ),
        ("evt.source", None, &["k8s_audit"]),
    ];
    for (field, arg, want) in cases {
        assert_eq!(vals(field, *arg, &ev), s(want), "{field}[{arg:?}]");
    }
    let obj = vals("jevt.obj", None, &ev);
    assert!(obj[0].starts_with("{\n  \"kind\": \"Event\""), "{obj:?}");
    assert!(lookup("ka.uri.param", None).is_err());
    assert!(lookup("ka.verb", Some("1")).is_err());
    assert!(lookup("ka.req.pod.containers.image", Some("01")).is_err());
    assert!(lookup("ka.req.pod.containers.image", Some("x")).is_err());
    assert!(lookup("ka.nope", None).is_err());
}

#[test]
fn rbac_service_and_error_shapes() {
    let ev = event(json!({
        "auditID": "a", "stageTimestamp": "2026-01-01T00:00:00Z",
        "objectRef": {"resource": "pods", "subresource": "exec"},
        "responseObject": {"metadata": {"name": "p"}},
        "requestObject": {
            "roleRef": {"name": "cluster-admin"},
            "subjects": [
                {"kind": "User", "name": "u1"},
                {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                {"kind": "ServiceAccount", "name": "nons"},
                {"kind": "Group", "name": "g"}
            ],
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["get"]},
                {"nonResourceURLs": ["/healthz"], "verbs": ["*"]}
            ],
            "data": {"password": "x"},
            "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}],
                     "containers": [{"image": "no-name"}]}
        }
    }));
    assert_eq!(vals("ka.target.pod.name", None, &ev), s(&[]));
    assert_eq!(
        vals("ka.req.binding.role", None, &ev),
        s(&["cluster-admin"])
    );
    assert_eq!(
        vals("ka.req.binding.subjects.user_names", None, &ev),
        s(&["u1"])
    );
    assert_eq!(
        vals("ka.req.binding.subjects.serviceaccount_names", None, &ev),
        s(&["sa", "nons"])
    );
    assert_eq!(
        vals("ka.req.binding.subjects.serviceaccount_ns_names", None, &ev),
        s(&["ns:sa"])
    );
    assert_eq!(
        vals("ka.req.binding.subjects.group_names", None, &ev),
        s(&["g"])
    );
    assert_eq!(vals("ka.req.binding.subjects", None, &ev).len(), 4);
    assert_eq!(
        vals("ka.req.role.rules.resources", None, &ev),
        s(&["pods", "pods/exec"])
    );
    assert_eq!(vals("ka.req.role.rules.verbs", None, &ev), s(&["get", "*"]));
    assert_eq!(vals("ka.req.role.rules.verbs", Some("1"), &ev), s(&["*"]));
    assert_eq!(vals("ka.req.role.rules.apiGroups", None, &ev), s(&[""]));
    assert_eq!(
        vals("ka.req.role.rules.nonResourceURLs", None, &ev),
        s(&["/healthz"])
    );
    assert_eq!(vals("ka.req.role.rules", None, &ev).len(), 2);
    assert_eq!(
        vals("ka.req.configmap.obj", None, &ev),
        s(&["{\"password\":\"x\"}"])
    );
    assert_eq!(vals("ka.req.service.type", None, &ev), s(&["NodePort"]));
    assert_eq!(
        vals("ka.req.service.ports", None, &ev),
        s(&["[{\"port\":80},{\"port\":81}]"])
    );
    // A container without a name makes the whole field unavailable.
    assert_eq!(vals("ka.req.pod.containers.name", None, &ev), s(&[]));
    assert_eq!(
        vals("ka.req.pod.containers.image", None, &ev),
        s(&["no-name"])
    );
    assert_eq!(
        vals("ka.req.pod.containers.eff_run_as_user", None, &ev),
        s(&["0"])
    );
    assert_eq!(vals("ka.req.volume.hostpath", Some("/"), &ev), s(&[]));
    // ka.user.groups that is not an array is an extraction error = unavailable.
    let bad = event(
        json!({"auditID": "a", "user": {"groups": "x"}, "stageTimestamp": "2026-01-01T00:00:00Z"}),
    );
    assert_eq!(vals("ka.user.groups", None, &bad), s(&[]));
}
