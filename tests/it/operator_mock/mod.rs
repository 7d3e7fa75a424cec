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

mod deployment;
mod finalizer;
mod lease;
mod statuses;

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
        "/api/v1/namespaces/kaudit-system/services/kaudit-headless",
        "/apis/apps/v1/namespaces/kaudit-system/statefulsets/kaudit",
        "/api/v1/namespaces/kaudit-system/services/kaudit",
        "/apis/policy/v1/namespaces/kaudit-system/poddisruptionbudgets/kaudit",
        "/apis/networking.k8s.io/v1/namespaces/kaudit-system/networkpolicies/kaudit",
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
        // kaudit runs as a StatefulSet: a Deployment of the same name is pruned.
        (
            "/apis/apps/v1/namespaces/kaudit-system/deployments/kaudit",
            false,
        ),
        // The console is off: its Service is pruned.
        (
            "/api/v1/namespaces/kaudit-system/services/kaudit-console",
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
        (
            "/apis/networking.k8s.io/v1/namespaces/kaudit-system/networkpolicies/kaudit-falco",
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
