//! Back-pressure with the real client: what kube-apiserver's batch webhook backend does when
//! kaudit says 429 (or fails), measured. webhook-config/README.md states these results.
//!
//! 1. A real `kaudit serve` with every queue at its minimum and an fsync'ing file sink, under a
//!    burst of API calls: kaudit answers 429 while it is behind, the apiserver retries, and
//!    every event arrives (each of the burst's ConfigMaps raises exactly one alert).
//! 2. The apiserver's retry policy itself, against a scripted endpoint (the one fault a real
//!    kaudit cannot be made to show on cue: refusing one chosen batch forever): a batch answered
//!    503 is tried 5 times with growing pauses, then dropped; a batch answered 429 with
//!    `Retry-After: 1` is retried by the HTTP client after at least that second, 10 times per
//!    attempt, for each of the 5 attempts, then dropped. The apiserver counts each dropped
//!    event in `apiserver_audit_error_total{plugin="webhook"}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use super::cluster::{Cluster, Options, bins, exclusive};
use super::hook::{audit, http_lab};
use super::ops::{alerts_in, eventually, serve};
use crate::support::{Recorder, Req, free_port, metric_line};

/// The apiserver's own metric line value (`name{labels}` prefix).
fn apiserver_metric(c: &Cluster, prefix: &str) -> f64 {
    let text = c.kubectl_ok(&c.admin, &["get", "--raw", "/metrics"]);
    metric_line(&text, prefix)
}

async fn burst(c: &Cluster, ns: &str, prefix: &str, n: usize) {
    let api: Api<ConfigMap> = Api::namespaced(c.client(&c.admin).await, ns);
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("{prefix}-{i}")),
                        ..Default::default()
                    },
                    data: Some([("password".to_string(), format!("hunter{i}"))].into()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_tiny_queues_answer_429_and_the_apiserver_retries_until_every_event_arrives() {
    let Some(bins) = bins() else { return };
    let _one = exclusive().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let hook = http_lab(port, dir.path());
    // Many small batches posted at once, so that they meet a full queue.
    let c = Cluster::start(
        bins,
        Options {
            audit: Some(audit(
                &hook,
                &[
                    "--audit-webhook-batch-max-size=5",
                    "--audit-webhook-batch-throttle-enable=false",
                ],
            )),
            controller_manager: false,
            ..Default::default()
        },
    )
    .await;
    let cfg = dir.path().join("kaudit.yaml");
    let alerts = dir.path().join("alerts.json");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {:?}\ningest: {{queue_capacity: 1}}\nrouter: {{queue_capacity: 1}}\n\
             spool: {{queue_capacity: 1, write_batch: 1}}\n\
             sinks:\n  - {{name: alerts, type: file, path: {:?}, fsync: true}}\n",
            dir.path().join("data").display().to_string(),
            alerts.display().to_string()
        ),
    )
    .expect("config");
    let _kaudit = serve(&c, "kaudit", &cfg, port).await;
    c.kubectl_ok(&c.admin, &["create", "namespace", "burst"]);

    let n = 600;
    let start = Instant::now();
    burst(&c, "burst", "cm", n).await;
    let api_secs = start.elapsed().as_secs_f64();
    let got = eventually(
        "an alert for every ConfigMap of the burst",
        Duration::from_secs(240),
        || async {
            let names: std::collections::BTreeSet<String> = alerts_in(dir.path(), "alerts")
                .iter()
                .filter(|a| a["rule"] == "ConfigMap With Credentials")
                .filter_map(|a| {
                    a["output_fields"]["ka.target.name"]
                        .as_str()
                        .map(str::to_string)
                })
                .filter(|n| n.starts_with("cm-"))
                .collect();
            if names.len() == n {
                Ok(names.len())
            } else {
                Err(format!("{} of {n}", names.len()))
            }
        },
    )
    .await;
    let all_secs = start.elapsed().as_secs_f64();
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let refused = metric_line(
        &metrics,
        "kaudit_http_requests_total{path=\"/k8s-audit\",status=\"429\"}",
    );
    let accepted = metric_line(
        &metrics,
        "kaudit_http_requests_total{path=\"/k8s-audit\",status=\"200\"}",
    );
    let dropped = apiserver_metric(&c, "apiserver_audit_error_total{plugin=\"webhook\"}");
    eprintln!(
        "MEASURED backpressure: {n} ConfigMaps created in {api_secs:.1}s, all {got} alerts after \
         {all_secs:.1}s; kaudit answered {accepted} POSTs 200 and {refused} POSTs 429; the \
         apiserver dropped {dropped} events"
    );
    assert_eq!(dropped, 0.0, "the apiserver dropped audit events");
    assert!(
        refused > 0.0,
        "the queues never filled: no 429 to measure\n{metrics}"
    );
}

/// The `auditID`s of the events a recorded POST carried.
fn audit_ids(r: &Req) -> Vec<String> {
    r.json()["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["auditID"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// True when the POST carries the audit event of creating ConfigMap `name`.
fn carries(r: &Req, name: &str) -> bool {
    r.json()["items"].as_array().is_some_and(|items| {
        items.iter().any(|i| {
            i["objectRef"]["resource"] == "configmaps"
                && i["objectRef"]["name"] == name
                && i["verb"] == "create"
        })
    })
}

/// The attempts at delivering the batch that carried ConfigMap `name`: their times, relative
/// to the first.
fn attempts(rec: &Recorder, name: &str) -> Vec<f64> {
    let reqs = rec.requests();
    let Some(first) = reqs.iter().find(|r| carries(r, name)) else {
        return Vec::new();
    };
    let ids = audit_ids(first);
    let t0 = first.at;
    reqs.iter()
        .filter(|r| audit_ids(r) == ids)
        .map(|r| r.at.duration_since(t0).as_secs_f64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_apiserver_retries_a_refused_batch_with_backoff_honours_retry_after_then_drops_it()
 {
    let Some(bins) = bins() else { return };
    let _one = exclusive().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = Recorder::start(Arc::new(|_, r: &Req| {
        if carries(r, "refuse-503") {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        } else if carries(r, "refuse-429") {
            (StatusCode::TOO_MANY_REQUESTS, [("Retry-After", "1")]).into_response()
        } else {
            StatusCode::OK.into_response()
        }
    }))
    .await;
    let hook = http_lab(rec.addr.port(), dir.path());
    // One event per POST, so that a refused batch holds just the probe.
    let c = Cluster::start(
        bins,
        Options {
            audit: Some(audit(&hook, &["--audit-webhook-batch-max-size=1"])),
            controller_manager: false,
            ..Default::default()
        },
    )
    .await;
    let dropped0 = apiserver_metric(&c, "apiserver_audit_error_total{plugin=\"webhook\"}");

    c.kubectl_ok(
        &c.admin,
        &["create", "configmap", "refuse-503", "-n", "default"],
    );
    c.kubectl_ok(
        &c.admin,
        &["create", "configmap", "refuse-429", "-n", "default"],
    );
    c.kubectl_ok(
        &c.admin,
        &["create", "configmap", "accepted", "-n", "default"],
    );

    // 503: five attempts with growing pauses (initial backoff 1s from the README's flags,
    // factor 1.5, jitter up to 20%), then the batch is dropped.
    let t503 = eventually(
        "the 503 batch to be given up",
        Duration::from_secs(60),
        || async {
            let a = attempts(&rec, "refuse-503");
            let dropped = apiserver_metric(&c, "apiserver_audit_error_total{plugin=\"webhook\"}");
            if a.len() >= 5 && dropped > dropped0 {
                Ok(a)
            } else {
                Err(format!("{a:?}, dropped {dropped}"))
            }
        },
    )
    .await;
    // 429 + Retry-After: the HTTP client waits the second and retries, 10 times per attempt.
    let t429 = eventually(
        "the 429 batch to be given up",
        Duration::from_secs(180),
        || async {
            let a = attempts(&rec, "refuse-429");
            let dropped = apiserver_metric(&c, "apiserver_audit_error_total{plugin=\"webhook\"}");
            if a.len() >= 55 && dropped >= dropped0 + 2.0 {
                Ok(a)
            } else {
                Err(format!("{} attempts, dropped {dropped}", a.len()))
            }
        },
    )
    .await;
    // Nothing more comes after it was dropped.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let final503 = attempts(&rec, "refuse-503");
    let final429 = attempts(&rec, "refuse-429");
    let ok = attempts(&rec, "accepted");
    let gaps = |t: &[f64]| -> Vec<f64> {
        t.windows(2)
            .map(|w| ((w[1] - w[0]) * 100.0).round() / 100.0)
            .collect()
    };
    eprintln!(
        "MEASURED apiserver retries: 503 -> {} attempts, gaps {:?}s; 429 Retry-After: 1 -> {} \
         attempts over {:.1}s, gaps {:?}s; 200 -> {} attempt(s); dropped events {}",
        final503.len(),
        gaps(&final503),
        final429.len(),
        final429.last().copied().unwrap_or(0.0),
        gaps(&final429),
        ok.len(),
        apiserver_metric(&c, "apiserver_audit_error_total{plugin=\"webhook\"}") - dropped0
    );
    assert_eq!(final503.len(), 5, "{t503:?}");
    let g = gaps(&final503);
    for (i, w) in g.iter().enumerate() {
        // 1s * 1.5^i, jitter adds up to 20%.
        let base = 1.5f64.powi(i as i32);
        assert!(
            *w >= base * 0.95 && *w <= base * 1.2 + 0.5,
            "503 gap {i}: {w}s of {g:?}"
        );
    }
    assert_eq!(final429.len(), 55, "{t429:?}");
    assert!(
        gaps(&final429).iter().all(|w| *w >= 0.95),
        "a retry came before Retry-After: {:?}",
        gaps(&final429)
    );
    assert_eq!(ok.len(), 1);
}
