//! The input status pass: statuses and Events written once, and only when they change.

use super::*;

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
