//! The operator's client half against a scripted mock apiserver (`tower_test::mock::pair`):
//! every call is expected in order, answered, and checked; an unexpected call fails the test
//! (the mock is dropped once the script ends, so any further call errors the reconcile).

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kaudit::operator::Error;
use kaudit::operator::context::Context;
use kaudit::operator::crd::{ClusterAlertSink, KauditDeployment};
use kaudit::operator::deployment::{DEPLOYMENTS, ready_condition, reconcile_deployment};
use kaudit::operator::finalizer::{SINK_FINALIZER, reconcile_sink};
use kaudit::operator::inputs::Inputs;
use kaudit::operator::leader::LeaseLock;
use kaudit::operator::render::{self, FIELD_MANAGER};
use kaudit::operator::statuses::reconcile_inputs;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::operator::{kd, rule};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// One answered call: what was sent.
#[derive(Debug)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// Expects the next call to be `method path` (path without query) and answers `status, body`.
async fn expect(
    h: &mut ApiHandle,
    method: &str,
    path: &str,
    status: u16,
    body: impl FnOnce(&Value) -> Value,
) -> Call {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), h.next_request())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
        .unwrap_or_else(|| panic!("client gone before {method} {path}"));
    let (parts, b) = req.into_parts();
    let bytes = b.collect_bytes().await.unwrap();
    let body_in: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: body_in,
    };
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        (method, path),
        "unexpected call {call:?}"
    );
    let out = body(&call.body);
    send.send_response(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&out).unwrap()))
            .unwrap(),
    );
    call
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "kaudit.io/v1alpha1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": items})
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn echo(v: &Value) -> Value {
    v.clone()
}

fn with_kind(mut v: Value, api_version: &str, kind: &str) -> Value {
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    v
}

fn mock_ctx() -> (Arc<Context>, ApiHandle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    (Arc::new(Context::new(client, Some("test".into()))), handle)
}

fn the_kd() -> KauditDeployment {
    kd(json!({"defaultRules": false}))
}

fn rules_json(with_status: bool) -> Vec<Value> {
    let good = rule("team-a", "good", "ka.verb = get");
    let bad = rule("team-a", "bad", "ka.no.such.field = x");
    let mut out = Vec::new();
    for r in [good, bad] {
        let mut r = r;
        if with_status {
            let inputs = Inputs {
                rules: vec![
                    rule("team-a", "good", "ka.verb = get"),
                    rule("team-a", "bad", "ka.no.such.field = x"),
                ],
                ..Default::default()
            };
            let d = render::desired(
                &the_kd(),
                &inputs,
                &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
            )
            .unwrap();
            let o = d
                .outcomes
                .iter()
                .find(|o| Some(o.name.as_str()) == r.metadata.name.as_deref())
                .unwrap();
            r.status = Some(render::item_status(
                o,
                true,
                &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
            ));
        }
        out.push(serde_json::to_value(&r).unwrap());
    }
    out
}

const KD: &str = "/apis/kaudit.io/v1alpha1/namespaces/kaudit-system/kauditdeployments/kaudit";

/// The first reconcile of a deployment: lists inputs, applies every object with our field
/// manager, prunes an owned DaemonSet (the rest 404), then writes its own status with an Event
/// (the inputs' statuses are [`reconcile_inputs`]'s).
async fn first_run_script(mut h: ApiHandle, owned_daemonset: bool) -> Vec<Call> {
    let mut calls = Vec::new();
    calls.push(
        expect(
            &mut h,
            "GET",
            "/apis/kaudit.io/v1alpha1/falcorules",
            200,
            |_| list("FalcoRule", rules_json(false)),
        )
        .await,
    );
    calls.push(
        expect(
            &mut h,
            "GET",
            "/apis/kaudit.io/v1alpha1/falcorulesfiles",
            200,
            |_| list("FalcoRulesFile", vec![]),
        )
        .await,
    );
    calls.push(
        expect(
            &mut h,
            "GET",
            "/apis/kaudit.io/v1alpha1/alertsinks",
            200,
            |_| list("AlertSink", vec![]),
        )
        .await,
    );
    calls.push(
        expect(
            &mut h,
            "GET",
            "/apis/kaudit.io/v1alpha1/clusteralertsinks",
            200,
            |_| list("ClusterAlertSink", vec![]),
        )
        .await,
    );
    for p in [
        "/api/v1/namespaces/kaudit-system/serviceaccounts/kaudit",
        "/api/v1/namespaces/kaudit-system/configmaps/kaudit-rules",
        "/api/v1/namespaces/kaudit-system/secrets/kaudit-config",
        "/apis/apps/v1/namespaces/kaudit-system/deployments/kaudit",
        "/api/v1/namespaces/kaudit-system/services/kaudit",
    ] {
        calls.push(expect(&mut h, "PATCH", p, 200, echo).await);
    }
    for (p, found) in [
        (
            "/api/v1/namespaces/kaudit-system/serviceaccounts/kaudit-falco",
            false,
        ),
        (
            "/api/v1/namespaces/kaudit-system/configmaps/kaudit-falco",
            false,
        ),
        (
            "/apis/apps/v1/namespaces/kaudit-system/deployments/kaudit-falco",
            false,
        ),
        (
            "/apis/apps/v1/namespaces/kaudit-system/daemonsets/kaudit-falco",
            owned_daemonset,
        ),
        (
            "/api/v1/namespaces/kaudit-system/services/kaudit-falco",
            false,
        ),
    ] {
        if found {
            let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kaudit-falco", "namespace": "kaudit-system",
                "ownerReferences": [{"apiVersion": "kaudit.io/v1alpha1", "kind": "KauditDeployment", "name": "kaudit", "uid": "uid-kaudit-system-kaudit", "controller": true}]}});
            calls.push(expect(&mut h, "GET", p, 200, move |_| ds.clone()).await);
            calls.push(expect(&mut h, "DELETE", p, 200, |_| json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})).await);
        } else {
            calls.push(expect(&mut h, "GET", p, 404, |_| not_found()).await);
        }
    }
    calls.push(
        expect(&mut h, "PATCH", &format!("{KD}/status"), 200, |_| {
            serde_json::to_value(the_kd()).unwrap()
        })
        .await,
    );
    calls.push(
        expect(
            &mut h,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/kaudit-system/events",
            201,
            echo,
        )
        .await,
    );
    calls
}

async fn run_reconcile(
    ctx: Arc<Context>,
    kd: KauditDeployment,
) -> Result<kube::runtime::controller::Action, Error> {
    tokio::time::timeout(
        Duration::from_secs(20),
        reconcile_deployment(Arc::new(kd), ctx),
    )
    .await
    .expect("reconcile hung: an unexpected call was left unanswered")
}

#[tokio::test]
async fn first_reconcile_applies_prunes_and_reports() {
    let (ctx, handle) = mock_ctx();
    let script = tokio::spawn(first_run_script(handle, true));
    let result = run_reconcile(ctx.clone(), the_kd()).await;
    let calls = script.await.expect("script failed");
    result.expect("reconcile failed");

    // Server-side apply with the fixed field manager, forced, owner references set.
    for c in calls
        .iter()
        .filter(|c| c.method == "PATCH" && !c.path.ends_with("/status"))
    {
        assert!(
            c.query.contains(&format!("fieldManager={FIELD_MANAGER}")),
            "{}: {}",
            c.path,
            c.query
        );
        assert!(c.query.contains("force=true"), "{}", c.query);
        assert_eq!(c.content_type, "application/apply-patch+yaml");
        assert_eq!(
            c.body["metadata"]["ownerReferences"][0]["uid"], "uid-kaudit-system-kaudit",
            "{}",
            c.path
        );
        assert_eq!(c.body["metadata"]["ownerReferences"][0]["controller"], true);
    }
    // The owned, no longer wanted DaemonSet was deleted.
    assert!(
        calls
            .iter()
            .any(|c| c.method == "DELETE" && c.path.ends_with("/daemonsets/kaudit-falco"))
    );
    // The rules ConfigMap holds team-a's valid rule only, scoped.
    let cm = calls
        .iter()
        .find(|c| c.path.ends_with("/configmaps/kaudit-rules"))
        .unwrap();
    let text = cm.body["data"]["50-ns-team-a.yaml"].as_str().unwrap();
    assert!(text.contains("team-a/good: Rule good"), "{text}");
    assert!(
        text.contains("ka.target.namespace = \\\"team-a\\\"")
            || text.contains("ka.target.namespace = \"team-a\""),
        "{text}"
    );
    assert!(!text.contains("team-a/bad"), "{text}");
    // The deployment's status: generation observed, one invalid rule, RulesValid false.
    let st = calls
        .iter()
        .find(|c| c.path == format!("{KD}/status"))
        .unwrap();
    assert_eq!(st.body["status"]["observedGeneration"], 1);
    assert_eq!(st.body["status"]["invalidRules"], 1);
    assert_eq!(st.body["status"]["rules"], 1);
    // Ready follows the workloads: the apply response shows no available kaudit pod yet.
    let ready = st.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False", "{ready}");
    assert_eq!(ready["reason"], "Progressing");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("Deployment/kaudit 0/1"),
        "{ready}"
    );
    // /metrics: bounded labels, the run counted.
    let m = ctx.metrics.encode();
    assert!(
        m.contains("kaudit_operator_reconciliations_total{kind=\"kauditdeployment\"} 1"),
        "{m}"
    );
    // No input status was written: one status patch (its own) and one Event.
    assert_eq!(
        calls.iter().filter(|c| c.path.ends_with("/status")).count(),
        1
    );
    assert_eq!(calls.iter().filter(|c| c.method == "POST").count(), 1);
    let kd_ev = calls.iter().rfind(|c| c.method == "POST").unwrap();
    assert_eq!(kd_ev.body["reason"], "RulesInvalid");
    assert_eq!(kd_ev.body["regarding"]["kind"], "KauditDeployment");
}

/// With statuses already up to date, a reconcile writes no status and publishes no Event:
/// any such call would be unexpected and fail the test.
#[tokio::test]
async fn steady_state_writes_no_status_and_no_events() {
    let (ctx, mut h) = mock_ctx();
    let mut kd = the_kd();
    let inputs = Inputs {
        rules: vec![
            rule("team-a", "good", "ka.verb = get"),
            rule("team-a", "bad", "ka.no.such.field = x"),
        ],
        ..Default::default()
    };
    let t = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    );
    let mut status = render::desired(&kd, &inputs, &t).unwrap().status;
    // The kaudit Deployment is available (the apply response below says so).
    let ready = ready_condition(&[("Deployment/kaudit".into(), 1, 1)], Some(1), &t);
    for c in status.conditions.iter_mut().filter(|c| c.type_ == "Ready") {
        *c = ready.clone();
    }
    kd.status = Some(status);
    let script = tokio::spawn(async move {
        expect(
            &mut h,
            "GET",
            "/apis/kaudit.io/v1alpha1/falcorules",
            200,
            |_| list("FalcoRule", rules_json(true)),
        )
        .await;
        for k in ["falcorulesfiles", "alertsinks", "clusteralertsinks"] {
            expect(
                &mut h,
                "GET",
                &format!("/apis/kaudit.io/v1alpha1/{k}"),
                200,
                |_| list("X", vec![]),
            )
            .await;
        }
        for _ in 0..5 {
            let (req, send) = h.next_request().await.unwrap();
            assert_eq!(req.method(), "PATCH");
            let deployment = req.uri().path().contains("/deployments/");
            let b = req.into_body().collect_bytes().await.unwrap();
            let mut body: Value = serde_json::from_slice(&b).unwrap();
            if deployment {
                body["status"] = json!({"availableReplicas": 1});
            }
            send.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        }
        for _ in 0..5 {
            let (req, send) = h.next_request().await.unwrap();
            assert_eq!(req.method(), "GET", "{}", req.uri());
            send.send_response(
                Response::builder()
                    .status(404)
                    .body(Body::from(serde_json::to_vec(&not_found()).unwrap()))
                    .unwrap(),
            );
        }
        // Dropping the handle here makes any further call fail the reconcile.
    });
    let r = run_reconcile(ctx, kd).await;
    script.await.expect("script failed");
    r.expect("a call beyond the script was made (status patch or event on an unchanged state?)");
}

/// A reconcile whose first apply the apiserver refuses with `code`: the input lists, the refused
/// apply, then the deployment's status patch and its Event, returned.
async fn refused_apply_script(
    mut h: ApiHandle,
    code: u16,
    reason: &'static str,
    message: &'static str,
) -> (Call, Call) {
    for k in [
        "falcorules",
        "falcorulesfiles",
        "alertsinks",
        "clusteralertsinks",
    ] {
        expect(
            &mut h,
            "GET",
            &format!("/apis/kaudit.io/v1alpha1/{k}"),
            200,
            |_| list("X", vec![]),
        )
        .await;
    }
    expect(
        &mut h,
        "PATCH",
        "/api/v1/namespaces/kaudit-system/serviceaccounts/kaudit",
        code,
        |_| json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "code": code, "message": message}),
    )
    .await;
    let st = expect(&mut h, "PATCH", &format!("{KD}/status"), 200, |_| {
        serde_json::to_value(the_kd()).unwrap()
    })
    .await;
    let ev = expect(
        &mut h,
        "POST",
        "/apis/events.k8s.io/v1/namespaces/kaudit-system/events",
        201,
        echo,
    )
    .await;
    (st, ev)
}

/// A failed apply sets Ready=False with the error, publishes a Warning and returns the error.
#[tokio::test]
async fn apply_failure_is_reported() {
    let (ctx, h) = mock_ctx();
    let script = tokio::spawn(refused_apply_script(h, 422, "Invalid", "denied by policy"));
    let r = run_reconcile(ctx, the_kd()).await;
    let (st, ev) = script.await.unwrap();
    assert!(r.is_err());
    let ready = st.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("denied by policy"),
        "{ready}"
    );
    assert_eq!(ev.body["reason"], "ApplyFailed");
    assert_eq!(ev.body["type"], "Warning");
}

/// A reconcile failure is counted by controller and kind of failure, a bounded label: an
/// apiserver refusal is `apiserver`, never its message.
#[tokio::test]
async fn failures_are_counted_by_kind_of_failure() {
    let (ctx, h) = mock_ctx();
    let script = tokio::spawn(refused_apply_script(h, 403, "Forbidden", "forbidden"));
    let err = run_reconcile(ctx.clone(), the_kd()).await.unwrap_err();
    script.await.unwrap();
    assert_eq!(err.metric_label(), "apiserver");
    ctx.metrics.failed(DEPLOYMENTS, &err);
    let m = ctx.metrics.encode();
    assert!(
        m.contains(
            "kaudit_operator_reconcile_failures_total{kind=\"kauditdeployment\",error=\"apiserver\"} 1"
        ),
        "{m}"
    );
    assert!(!m.contains("forbidden"), "{m}");
}

fn csink(deleting: bool, finalizer: bool, credentials: bool) -> ClusterAlertSink {
    let mut spec = json!({"type": "http", "settings": {"url": "https://siem.example.com/"}});
    if credentials {
        spec["secretRefs"] = json!([{"setting": "header_files.Authorization",
            "namespace": "security", "name": "siem", "key": "authorization"}]);
    }
    let mut s: ClusterAlertSink = serde_json::from_value(json!({
        "apiVersion": "kaudit.io/v1alpha1", "kind": "ClusterAlertSink",
        "metadata": {"name": "siem", "uid": "uid-siem", "resourceVersion": "7"},
        "spec": spec,
    }))
    .unwrap();
    if finalizer {
        s.metadata.finalizers = Some(vec!["example.com/other".into(), SINK_FINALIZER.into()]);
    }
    if deleting {
        s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
    }
    s
}

async fn run_sink(
    ctx: Arc<Context>,
    sink: ClusterAlertSink,
) -> Result<kube::runtime::controller::Action, Error> {
    let api = kube::Api::<ClusterAlertSink>::all(ctx.client.clone());
    let creds = !sink.spec.sink.secret_refs.is_empty();
    tokio::time::timeout(
        Duration::from_secs(20),
        reconcile_sink(Arc::new(sink), ctx, api, creds),
    )
    .await
    .expect("reconcile hung: an unexpected call was left unanswered")
}

/// A new sink with credentials gets the credentials finalizer.
#[tokio::test]
async fn sink_with_credentials_gets_the_finalizer() {
    let (ctx, mut h) = mock_ctx();
    let script = tokio::spawn(async move {
        expect(
            &mut h,
            "PATCH",
            "/apis/kaudit.io/v1alpha1/clusteralertsinks/siem",
            200,
            |_| serde_json::to_value(csink(false, true, true)).unwrap(),
        )
        .await
    });
    let r = run_sink(ctx, csink(false, false, true)).await;
    let call = script.await.unwrap();
    r.unwrap();
    assert_eq!(call.content_type, "application/json-patch+json");
    assert!(
        call.body.to_string().contains(SINK_FINALIZER),
        "{}",
        call.body
    );
}

/// A sink without credentials copies nothing out of its namespace: no finalizer, no call at
/// all (the mock answers none, so any call would fail the reconcile).
#[tokio::test]
async fn sink_without_credentials_gets_no_finalizer() {
    let (ctx, h) = mock_ctx();
    drop(h);
    run_sink(ctx, csink(false, false, false))
        .await
        .expect("a call was made for a sink without credentials");
}

/// A sink whose credentials were removed loses the finalizer, after every deployment (here:
/// none) was re-rendered; the patch is conditional on the version it read and keeps other
/// finalizers.
#[tokio::test]
async fn sink_that_dropped_its_credentials_loses_the_finalizer() {
    let (ctx, mut h) = mock_ctx();
    let script = tokio::spawn(async move {
        expect(
            &mut h,
            "GET",
            "/apis/kaudit.io/v1alpha1/kauditdeployments",
            200,
            |_| list("KauditDeployment", vec![]),
        )
        .await;
        expect(
            &mut h,
            "PATCH",
            "/apis/kaudit.io/v1alpha1/clusteralertsinks/siem",
            200,
            |_| serde_json::to_value(csink(false, false, false)).unwrap(),
        )
        .await
    });
    let r = run_sink(ctx, csink(false, true, false)).await;
    let p = script.await.unwrap();
    r.unwrap();
    assert_eq!(p.content_type, "application/merge-patch+json");
    assert_eq!(
        p.body,
        json!({"metadata": {"finalizers": ["example.com/other"], "resourceVersion": "7"}})
    );
}

/// A deleted sink re-renders every deployment (here: none) before its finalizer goes.
#[tokio::test]
async fn deleted_sink_rerenders_then_releases_the_finalizer() {
    let (ctx, mut h) = mock_ctx();
    let script = tokio::spawn(async move {
        let l = expect(
            &mut h,
            "GET",
            "/apis/kaudit.io/v1alpha1/kauditdeployments",
            200,
            |_| list("KauditDeployment", vec![]),
        )
        .await;
        let p = expect(
            &mut h,
            "PATCH",
            "/apis/kaudit.io/v1alpha1/clusteralertsinks/siem",
            200,
            |_| serde_json::to_value(csink(true, false, true)).unwrap(),
        )
        .await;
        (l, p)
    });
    let r = run_sink(ctx, csink(true, true, true)).await;
    let (_, p) = script.await.unwrap();
    r.unwrap();
    assert!(p.body.to_string().contains("remove"), "{}", p.body);
}

/// The input lists every status pass reads: rules, rules files, sinks, cluster sinks, then the
/// deployments.
async fn expect_input_lists(h: &mut ApiHandle, rules: Vec<Value>, deployments: Vec<Value>) {
    expect(h, "GET", "/apis/kaudit.io/v1alpha1/falcorules", 200, |_| {
        list("FalcoRule", rules)
    })
    .await;
    for k in ["falcorulesfiles", "alertsinks", "clusteralertsinks"] {
        expect(
            h,
            "GET",
            &format!("/apis/kaudit.io/v1alpha1/{k}"),
            200,
            |_| list("X", vec![]),
        )
        .await;
    }
    expect(
        h,
        "GET",
        "/apis/kaudit.io/v1alpha1/kauditdeployments",
        200,
        |_| list("KauditDeployment", deployments),
    )
    .await;
}

/// Writes the two rules' statuses, each with its Event; returns the calls.
async fn expect_rule_statuses(h: &mut ApiHandle) -> Vec<Call> {
    let mut calls = Vec::new();
    for name in ["bad", "good"] {
        let p = format!("/apis/kaudit.io/v1alpha1/namespaces/team-a/falcorules/{name}/status");
        calls.push(
            expect(h, "PATCH", &p, 200, |_| {
                with_kind(
                    serde_json::to_value(rule("team-a", name, "ka.verb = get")).unwrap(),
                    "kaudit.io/v1alpha1",
                    "FalcoRule",
                )
            })
            .await,
        );
        calls.push(
            expect(
                h,
                "POST",
                "/apis/events.k8s.io/v1/namespaces/team-a/events",
                201,
                echo,
            )
            .await,
        );
    }
    calls
}

async fn run_inputs(ctx: &Context) -> Result<(), Error> {
    tokio::time::timeout(Duration::from_secs(20), reconcile_inputs(ctx))
        .await
        .expect("status pass hung: an unexpected call was left unanswered")
}

fn condition(call: &Call, type_: &str) -> Value {
    call.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {}", call.body))
        .clone()
}

/// The status pass validates every input once for all deployments and writes each status with
/// an Event; the invalid rule says why, and a stale rendered name is cleared explicitly.
#[tokio::test]
async fn input_statuses_are_written_with_events() {
    let (ctx, mut h) = mock_ctx();
    let script = tokio::spawn(async move {
        let kd = serde_json::to_value(the_kd()).unwrap();
        expect_input_lists(&mut h, rules_json(false), vec![kd]).await;
        expect_rule_statuses(&mut h).await
    });
    run_inputs(&ctx).await.expect("status pass failed");
    let calls = script.await.expect("script failed");
    let bad = &calls[0];
    let rv = condition(bad, "RulesValid");
    assert_eq!(rv["status"], "False");
    assert!(
        rv["message"].as_str().unwrap().contains("ka.no.such.field"),
        "{rv}"
    );
    assert!(
        bad.body["status"]["renderedName"].is_null()
            && bad.body["status"]
                .as_object()
                .unwrap()
                .contains_key("renderedName"),
        "a stale rendered name is cleared explicitly"
    );
    assert_eq!(calls[1].body["type"], "Warning");
    assert_eq!(calls[1].body["reason"], "InvalidRule");
    assert_eq!(calls[1].body["regarding"]["name"], "bad");
    let good = &calls[2];
    assert_eq!(condition(good, "Ready")["status"], "True");
    assert_eq!(
        good.body["status"]["renderedName"],
        "team-a/good: Rule good"
    );
    assert_eq!(calls[3].body["reason"], "RuleAccepted");
    let m = ctx.metrics.encode();
    assert!(
        m.contains("kaudit_operator_reconciliations_total{kind=\"inputs\"} 1"),
        "{m}"
    );
    assert!(m.contains("kaudit_operator_invalid_rules 1"), "{m}");
}

/// Before any KauditDeployment exists a rule still learns whether it is valid; it is not
/// Ready, and says why.
#[tokio::test]
async fn input_statuses_without_a_deployment_say_so() {
    let (ctx, mut h) = mock_ctx();
    let script = tokio::spawn(async move {
        expect_input_lists(&mut h, rules_json(false), vec![]).await;
        expect_rule_statuses(&mut h).await
    });
    run_inputs(&ctx).await.expect("status pass failed");
    let calls = script.await.expect("script failed");
    let good = &calls[2];
    assert_eq!(condition(good, "RulesValid")["status"], "True");
    let ready = condition(good, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "NoDeployment");
    assert_eq!(condition(&calls[0], "RulesValid")["status"], "False");
}

/// Up-to-date statuses are not written again, and no Event is published: any such call would
/// be unexpected and fail the pass.
#[tokio::test]
async fn input_statuses_steady_state_writes_nothing() {
    let (ctx, mut h) = mock_ctx();
    let script = tokio::spawn(async move {
        let kd = serde_json::to_value(the_kd()).unwrap();
        expect_input_lists(&mut h, rules_json(true), vec![kd]).await;
        // Dropping the handle here makes any further call fail the pass.
    });
    let r = run_inputs(&ctx).await;
    script.await.expect("script failed");
    r.expect("a call beyond the script was made (status patch or event on an unchanged state?)");
}

/// Answers every call as a cluster holding only `known` objects (by path) would: lists empty,
/// other GETs 404, server-side applies echoed (workloads fully available), status patches
/// answered with the deployment, Events accepted.
/// Returns the calls once the client is gone.
async fn answer_all(mut h: ApiHandle, known: Vec<(String, Value)>) -> Vec<Call> {
    let mut calls = Vec::new();
    while let Ok(Some((req, send))) =
        tokio::time::timeout(Duration::from_secs(20), h.next_request()).await
    {
        let (parts, b) = req.into_parts();
        let bytes = b.collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let path = parts.uri.path().to_string();
        let method = parts.method.to_string();
        let (status, out) = match method.as_str() {
            "GET" if path.starts_with("/apis/kaudit.io/") && path.matches('/').count() == 4 => {
                (200, list("X", vec![]))
            }
            "GET" => match known.iter().find(|(p, _)| *p == path) {
                Some((_, v)) => (200, v.clone()),
                None => (404, not_found()),
            },
            "PATCH" if path.ends_with("/status") => {
                let mut kd = serde_json::to_value(the_kd()).unwrap();
                kd["status"] = body["status"].clone();
                (200, kd)
            }
            "PATCH" | "POST" => {
                let mut out = body.clone();
                if path.contains("/deployments/") {
                    out["status"] = json!({"availableReplicas": body["spec"]["replicas"]});
                }
                (200, out)
            }
            _ => panic!("unexpected {method} {path}"),
        };
        send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&out).unwrap()))
                .unwrap(),
        );
        calls.push(Call {
            method,
            path,
            query: parts.uri.query().unwrap_or("").to_string(),
            content_type: String::new(),
            body,
        });
    }
    calls
}

/// With `tokenSecret` and Falco, the controller issues Falco's intake token on the first
/// reconcile (none in the config Secret yet) and reads the same one back afterwards.
#[tokio::test]
async fn falco_intake_token_is_issued_once_and_kept() {
    const SECRET: &str = "/api/v1/namespaces/kaudit-system/secrets/kaudit-config";
    let k = kd(json!({"detect": "both", "defaultRules": false,
        "service": {"tokenSecret": "kaudit-tokens"}}));
    let applied_secret = |calls: &[Call]| {
        calls
            .iter()
            .find(|c| c.method == "PATCH" && c.path == SECRET)
            .expect("config Secret applied")
            .body
            .clone()
    };
    let token_of = |secret: &Value| {
        use base64::Engine;
        let b64 = secret["data"][render::INTAKE_TOKEN_KEY].as_str().unwrap();
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };

    let (ctx, h) = mock_ctx();
    let script = tokio::spawn(answer_all(h, vec![]));
    run_reconcile(ctx.clone(), k.clone())
        .await
        .expect("first reconcile");
    drop(ctx);
    let calls = script.await.unwrap();
    assert!(
        calls.iter().any(|c| c.method == "GET" && c.path == SECRET),
        "looked for a token"
    );
    let secret = applied_secret(&calls);
    let token = token_of(&secret);
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let falco = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with("/deployments/kaudit-falco"))
        .unwrap();
    assert_eq!(
        falco.body["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"],
        json!({"name": "kaudit-config", "key": render::INTAKE_TOKEN_KEY})
    );

    // The next reconcile finds it in the Secret and keeps it.
    let (ctx, h) = mock_ctx();
    let script = tokio::spawn(answer_all(h, vec![(SECRET.to_string(), secret.clone())]));
    run_reconcile(ctx.clone(), k.clone())
        .await
        .expect("second reconcile");
    drop(ctx);
    let calls = script.await.unwrap();
    assert_eq!(
        token_of(&applied_secret(&calls)),
        token,
        "the token is kept"
    );

    // A value that is not one of ours (it would land in a URL) is replaced.
    let mut tampered = secret.clone();
    {
        use base64::Engine;
        tampered["data"][render::INTAKE_TOKEN_KEY] =
            json!(base64::engine::general_purpose::STANDARD.encode("x@evil.example/#"));
    }
    let (ctx, h) = mock_ctx();
    let script = tokio::spawn(answer_all(h, vec![(SECRET.to_string(), tampered)]));
    run_reconcile(ctx.clone(), k)
        .await
        .expect("third reconcile");
    drop(ctx);
    let calls = script.await.unwrap();
    let replaced = token_of(&applied_secret(&calls));
    assert!(replaced != token && replaced.bytes().all(|b| b.is_ascii_hexdigit()));
}

/// Leader election: create when absent, wait while another holder is live, take over an
/// expired lease with the read resourceVersion, and treat a lost race (409) as not leading.
#[tokio::test]
async fn lease_election() {
    let (svc, mut h) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let lock = LeaseLock::new(
        client,
        "kaudit-system",
        "kaudit-operator",
        "me",
        Duration::from_secs(15),
    );
    const P: &str = "/apis/coordination.k8s.io/v1/namespaces/kaudit-system/leases";
    let lease = |holder: &str, renew: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kaudit-operator", "namespace": "kaudit-system", "resourceVersion": "42"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew, "leaseTransitions": 3}})
    };
    let fresh = k8s_openapi::jiff::Timestamp::now().to_string();
    let script = tokio::spawn(async move {
        let mut calls = Vec::new();
        expect(&mut h, "GET", &format!("{P}/kaudit-operator"), 404, |_| {
            not_found()
        })
        .await;
        calls.push(expect(&mut h, "POST", P, 201, echo).await);
        let l = lease("other", &fresh);
        expect(
            &mut h,
            "GET",
            &format!("{P}/kaudit-operator"),
            200,
            move |_| l,
        )
        .await;
        let l = lease("other", "2020-01-01T00:00:00.000000Z");
        expect(
            &mut h,
            "GET",
            &format!("{P}/kaudit-operator"),
            200,
            move |_| l,
        )
        .await;
        calls.push(expect(&mut h, "PUT", &format!("{P}/kaudit-operator"), 409,
            |_| json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Conflict", "code": 409})).await);
        calls
    });
    assert!(
        lock.try_acquire_or_renew().await.unwrap(),
        "absent lease: acquired"
    );
    assert!(
        !lock.try_acquire_or_renew().await.unwrap(),
        "live foreign lease: wait"
    );
    assert!(
        !lock.try_acquire_or_renew().await.unwrap(),
        "lost race: not leading"
    );
    let calls = script.await.unwrap();
    assert_eq!(calls[0].body["spec"]["holderIdentity"], "me");
    let put = &calls[1].body;
    assert_eq!(put["metadata"]["resourceVersion"], "42");
    assert_eq!(put["spec"]["holderIdentity"], "me");
    assert_eq!(put["spec"]["leaseTransitions"], 4);
}

/// A spec that cannot render (a podTemplate patch that breaks the pod) sets Ready=False with
/// the reason and a Warning, and applies nothing.
#[tokio::test]
async fn render_failure_is_reported_and_applies_nothing() {
    let (ctx, mut h) = mock_ctx();
    let script = tokio::spawn(async move {
        for k in [
            "falcorules",
            "falcorulesfiles",
            "alertsinks",
            "clusteralertsinks",
        ] {
            expect(
                &mut h,
                "GET",
                &format!("/apis/kaudit.io/v1alpha1/{k}"),
                200,
                |_| list("X", vec![]),
            )
            .await;
        }
        let st = expect(&mut h, "PATCH", &format!("{KD}/status"), 200, |_| {
            serde_json::to_value(the_kd()).unwrap()
        })
        .await;
        let ev = expect(
            &mut h,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/kaudit-system/events",
            201,
            echo,
        )
        .await;
        (st, ev)
    });
    let bad = kd(json!({"podTemplate": {"spec": {"containers": "not a list"}}}));
    let r = run_reconcile(ctx, bad).await;
    let (st, ev) = script.await.unwrap();
    assert!(r.is_err());
    let ready = st.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "RenderFailed");
    assert_eq!(ev.body["reason"], "RenderFailed");
}

/// On shutdown the holder gives the lease up (holder cleared, with the read resourceVersion);
/// a lease held by someone else is left alone.
#[tokio::test]
async fn lease_release() {
    let (svc, mut h) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let lock = LeaseLock::new(
        client,
        "kaudit-system",
        "kaudit-operator",
        "me",
        Duration::from_secs(15),
    );
    const P: &str = "/apis/coordination.k8s.io/v1/namespaces/kaudit-system/leases/kaudit-operator";
    let lease = |holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kaudit-operator", "namespace": "kaudit-system", "resourceVersion": "9"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"}})
    };
    let script = tokio::spawn(async move {
        let l = lease("me");
        expect(&mut h, "GET", P, 200, move |_| l).await;
        let put = expect(&mut h, "PUT", P, 200, echo).await;
        let l = lease("other");
        expect(&mut h, "GET", P, 200, move |_| l).await;
        put
    });
    assert!(lock.release().await.unwrap());
    assert!(!lock.release().await.unwrap());
    let put = script.await.unwrap();
    assert!(put.body["spec"]["holderIdentity"].is_null(), "{}", put.body);
    assert_eq!(put.body["metadata"]["resourceVersion"], "9");
}
