//! A team's flood during an outage of a shared (SOC) sink, against a real kaudit: the flooding
//! namespace fills its own share of the sink's spool and no more, the drops are counted, nothing
//! is evicted at the spool cap, and once the sink is back every other team's alert arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{Kaudit, eventually, metric};
use crate::support::Recorder;

/// An EventList of `n` pod execs in namespace `ns`, with distinct audit ids.
fn execs(ns: &str, n: usize, seed: usize) -> Vec<u8> {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": format!("00000000-0000-0000-{seed:04}-{i:012}"),
                "stage": "ResponseComplete",
                "requestURI": format!("/api/v1/namespaces/{ns}/pods/p-{i}/exec?command=sh&container=c&stdin=true&tty=true"),
                "verb": "create",
                "user": {"username": "jane@example.com", "groups": ["system:authenticated"]},
                "sourceIPs": ["10.0.0.1"],
                "objectRef": {"resource": "pods", "namespace": ns, "name": format!("p-{i}"), "apiVersion": "v1", "subresource": "exec"},
                "responseStatus": {"metadata": {}, "code": 101},
                "requestReceivedTimestamp": "2026-11-22T09:10:01.123456Z",
                "stageTimestamp": "2026-11-22T09:10:01.456789Z",
            })
        })
        .collect();
    serde_json::to_vec(
        &json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}),
    )
    .unwrap()
}

/// The namespaces of the alerts the recorder took (a body is one alert or an array).
fn namespaces(rec: &Recorder, ok_from: usize) -> Vec<String> {
    let reqs = rec.reqs.lock().unwrap();
    let mut out = Vec::new();
    for r in reqs.iter().skip(ok_from) {
        let v = r.json();
        let alerts = match v {
            Value::Array(a) => a,
            one => vec![one],
        };
        for a in alerts {
            if let Some(ns) = a["output_fields"]["ka.target.namespace"].as_str() {
                out.push(ns.to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_flood_during_a_soc_outage_never_evicts_other_teams_alerts() {
    let down = Arc::new(AtomicBool::new(true));
    let d2 = down.clone();
    let soc = Recorder::start(Arc::new(move |_, _| {
        if d2.load(Ordering::SeqCst) {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        } else {
            StatusCode::OK.into_response()
        }
    }))
    .await;
    let k = Kaudit::start(&format!(
        "spool: {{max_bytes: 65536}}\ntenancy: {{budget: {{spool_share: 0.25}}}}\n\
         sinks:\n- {{name: soc, type: http, url: 'http://{}/'}}\n",
        soc.addr
    ))
    .await;
    // The flood: far more than a quarter of the spool.
    for round in 0..4 {
        assert_eq!(k.post(&execs("flood", 50, round)).await, 200);
    }
    let dropped = "kaudit_budget_dropped_total{sink=\"soc\",reason=\"spool_share\"}";
    eventually("the flood over its share", || async {
        (metric(&k.metrics().await, dropped) > 0.0).then_some(())
    })
    .await;
    // Other teams, during the same outage.
    assert_eq!(k.post(&execs("team-b", 5, 90)).await, 200);
    assert_eq!(k.post(&execs("team-c", 5, 91)).await, 200);
    let m = k.metrics().await;
    assert_eq!(
        metric(&m, "kaudit_sink_dropped_at_cap_total{sink=\"soc\""),
        0.0,
        "{m}"
    );
    // The SOC is back: every other team's alert arrives.
    let failed_so_far = soc.reqs.lock().unwrap().len();
    down.store(false, Ordering::SeqCst);
    let got = eventually("team-b's and team-c's alerts at the SOC", || async {
        let ns = namespaces(&soc, failed_so_far);
        let count = |n: &str| ns.iter().filter(|x| *x == n).count();
        (count("team-b") >= 5 && count("team-c") >= 5).then_some(ns)
    })
    .await;
    let flood = got.iter().filter(|n| *n == "flood").count();
    assert!(
        flood > 0 && flood < 200,
        "{flood} of the flood's 200 alerts delivered"
    );
    assert_eq!(
        metric(
            &k.metrics().await,
            "kaudit_sink_dropped_at_cap_total{sink=\"soc\""
        ),
        0.0
    );
}
