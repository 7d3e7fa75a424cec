//! The credentials finalizer: added only with credentials, released after a re-render.

use super::*;

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
