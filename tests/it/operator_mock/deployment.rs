//! The deployment controller against the mock: the first reconcile, the steady state, apply
//! and render failures and their metric, and Falco's intake token.

use super::*;

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
            .contains("StatefulSet/kaudit 0/1"),
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
    // The kaudit StatefulSet is available (the apply response below says so).
    let ready = ready_condition(&[("StatefulSet/kaudit".into(), 1, 1)], Some(1), &t);
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
        for _ in 0..8 {
            let (req, send) = h.next_request().await.unwrap();
            assert_eq!(req.method(), "PATCH");
            let deployment = req.uri().path().contains("/statefulsets/");
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
        for _ in 0..8 {
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
                if path.contains("/deployments/") || path.contains("/statefulsets/") {
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
