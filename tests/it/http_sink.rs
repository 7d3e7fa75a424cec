//! The `http` sink against a loopback receiver: retries, dead letters, Retry-After, batching,
//! gzip and CloudEvents.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::Value;

use crate::support::{Recorder, alert, config, json_lines, metric, wait_until};

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let server = Recorder::start(Arc::new(|n, _| {
        if n < 3 {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        } else {
            StatusCode::OK.into_response()
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: hook\n    type: http\n    url: {}\n",
            server.url("/alerts")
        ),
    );
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let a = alert("Retry Me", Priority::Warning);
    r.sender().send(a.clone()).await.unwrap();
    wait_until("delivery after three 500s", || server.count() >= 4).await;
    r.shutdown().await;
    let reqs = server.requests();
    assert_eq!(reqs.len(), 4, "exactly one request after the last 500");
    for q in &reqs {
        assert_eq!(q.method, "POST");
        assert_eq!(q.uri.path(), "/alerts");
        assert_eq!(
            q.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            q.json()["uuid"],
            a.uuid.to_string(),
            "same alert on every attempt"
        );
        assert_eq!(q.json()["rule"], "Retry Me");
    }
    let text = metrics.encode();
    assert_eq!(
        metric(&text, "kaudit_sink_sent_total", "hook"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "kaudit_sink_retried_total", "hook"),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "kaudit_sink_failed_total", "hook"),
        3.0,
        "{text}"
    );
    assert!(json_lines(&dir.path().join("dead-letter/hook.jsonl")).is_empty());
}

#[tokio::test]
async fn client_errors_are_not_retried_and_are_dead_lettered() {
    let server = Recorder::start(Arc::new(|_, _| {
        (StatusCode::BAD_REQUEST, "missing field foo").into_response()
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: strict\n    type: http\n    url: {}\n",
            server.url("/")
        ),
    );
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let a = alert("Refused", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    let dl = dir.path().join("dead-letter/strict.jsonl");
    wait_until("the dead letter", || !json_lines(&dl).is_empty()).await;
    r.shutdown().await;
    assert_eq!(server.count(), 1, "a 400 is not retried");
    let lines = json_lines(&dl);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["sink"], "strict");
    let reason = l["reason"].as_str().unwrap();
    assert!(
        reason.contains("400") && reason.contains("missing field foo"),
        "{reason}"
    );
    assert_eq!(l["alert"]["uuid"], a.uuid.to_string());
    assert_eq!(l["alert"]["rule"], "Refused");
    assert!(l["time"].as_str().unwrap().ends_with('Z'));
    let text = metrics.encode();
    assert_eq!(
        metric(&text, "kaudit_sink_dead_lettered_total", "strict"),
        1.0
    );
    assert_eq!(metric(&text, "kaudit_sink_sent_total", "strict"), 0.0);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    // Retries are configured at 20-100 ms; the receiver asks for 2 s.
    let server = Recorder::start(Arc::new(|n, _| {
        if n == 0 {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")]).into_response()
        } else {
            StatusCode::OK.into_response()
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: polite\n    type: http\n    url: {}\n",
            server.url("/")
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    r.sender()
        .send(alert("Slow Down", Priority::Notice))
        .await
        .unwrap();
    wait_until("the retry", || server.count() >= 2).await;
    r.shutdown().await;
    let reqs = server.requests();
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, before Retry-After"
    );
}

#[tokio::test]
async fn batches_are_gzipped_cloudevents() {
    let server = Recorder::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: ce\n    type: http\n    url: {}\n    format: cloudevents\n    cloudevents_source: kaudit-it\n    gzip: true\n    batch:\n      max_alerts: 5\n      max_wait_ms: 60000\n",
            server.url("/ce")
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let alerts: Vec<_> = (0..5)
        .map(|i| alert(&format!("Rule {i}"), Priority::Critical))
        .collect();
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    wait_until("the batch", || server.count() >= 1).await;
    r.shutdown().await;
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "five alerts, one request");
    let q = &reqs[0];
    assert_eq!(q.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        q.header("content-type").as_deref(),
        Some("application/cloudevents-batch+json")
    );
    let Value::Array(events) = q.json() else {
        panic!("not an array")
    };
    assert_eq!(events.len(), 5);
    for (e, a) in events.iter().zip(&alerts) {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["id"], a.uuid.to_string());
        assert_eq!(e["source"], "kaudit-it");
        assert_eq!(e["type"], "falco.rule.output.v1");
        assert_eq!(e["time"], kaudit::alert::format_time(&a.time));
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["data"], serde_json::to_value(a).unwrap());
    }
}

#[tokio::test]
async fn single_cloudevent_with_headers_from_config_and_files() {
    let server = Recorder::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("auth");
    std::fs::write(&secret, "Bearer s3cret\n").unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: ce1\n    type: http\n    url: {}\n    method: PUT\n    format: cloudevents\n    headers:\n      X-Team: sec\n      Content-Type: application/vnd.team+json\n    header_files:\n      Authorization: {}\n  - name: ce2\n    type: http\n    url: {}\n    format: cloudevents\n",
            server.url("/one"),
            secret.display(),
            server.url("/two"),
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("One", Priority::Alert);
    r.sender().send(a.clone()).await.unwrap();
    wait_until("the events", || server.count() >= 2).await;
    r.shutdown().await;
    let reqs = server.requests();
    let two = reqs.iter().find(|q| q.uri.path() == "/two").unwrap();
    assert_eq!(
        two.header("content-type").as_deref(),
        Some("application/cloudevents+json")
    );
    assert_eq!(two.json()["id"], a.uuid.to_string());
    let q = reqs.iter().find(|q| q.uri.path() == "/one").unwrap();
    assert_eq!(q.method, "PUT");
    let ctypes: Vec<_> = q.headers.get_all("content-type").iter().collect();
    assert_eq!(
        ctypes,
        ["application/vnd.team+json"],
        "a configured header replaces the default"
    );
    assert_eq!(q.header("x-team").as_deref(), Some("sec"));
    assert_eq!(q.header("authorization").as_deref(), Some("Bearer s3cret"));
    assert!(q.header("content-encoding").is_none());
    let e = q.json();
    assert_eq!(e["id"], a.uuid.to_string());
    assert_eq!(e["source"], "kaudit");
    assert_eq!(e["data"]["rule"], "One");
    assert_eq!(e["data"]["priority"], "Alert");
}

#[tokio::test]
async fn https_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, srv, srv_key, cli, cli_key] = crate::support::write_pki(dir.path());
    let tls = kaudit::server::tls::TlsConfig {
        cert_file: srv,
        key_file: srv_key,
        client_ca_file: Some(ca.clone()),
        reload_interval_secs: 5,
    };
    let (server, _srv) =
        Recorder::start_tls(Arc::new(|_, _| StatusCode::OK.into_response()), &tls).await;
    let s = |p: &std::path::Path| p.display().to_string();
    // Without a client certificate the handshake fails: retried, never delivered.
    let metrics = Metrics::new();
    let no_cert = config(
        &dir.path().join("a"),
        &format!(
            "  - name: nocert\n    type: http\n    url: {}\n    tls:\n      ca_file: {}\n",
            server.https_url("/"),
            s(&ca)
        ),
    );
    let r = router::start(no_cert.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    r.sender()
        .send(alert("No Cert", Priority::Error))
        .await
        .unwrap();
    wait_until("a failed attempt", || {
        metric(&metrics.encode(), "kaudit_sink_failed_total", "nocert") >= 1.0
    })
    .await;
    assert_eq!(server.count(), 0);
    assert_eq!(
        r.spooled("nocert"),
        Some(1),
        "kept for retry, not dead-lettered"
    );
    r.shutdown().await;
    // With it, delivered.
    let with_cert = config(
        &dir.path().join("b"),
        &format!(
            "  - name: mtls\n    type: http\n    url: {}\n    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
            server.https_url("/secure"),
            s(&ca),
            s(&cli),
            s(&cli_key)
        ),
    );
    let r = router::start(with_cert.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("With Cert", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    wait_until("delivery over mTLS", || server.count() >= 1).await;
    r.shutdown().await;
    let q = &server.requests()[0];
    assert_eq!(q.uri.path(), "/secure");
    assert_eq!(q.json()["uuid"], a.uuid.to_string());
}
