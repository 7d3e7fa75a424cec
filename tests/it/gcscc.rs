//! The `gcscc` sink in both modes against loopback servers: a connector, an SCC API, a token
//! endpoint that verifies the signed JWT, and a metadata server.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::{Value, json};

use crate::support::{Recorder, alert, config, wait_until};

#[tokio::test]
async fn connector_gets_the_alert_with_the_raw_token() {
    let server = Recorder::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "conn-token-123\n").unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: scc\n    type: gcscc\n    mode: connector\n    webhook_url: {}\n    webhook_auth_token_file: {}\n",
            server.url("/events"),
            token.display()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Exec Into Pod", Priority::Notice);
    r.sender().send(a.clone()).await.unwrap();
    wait_until("the connector request", || server.count() >= 1).await;
    r.shutdown().await;
    let q = &server.requests()[0];
    assert_eq!(q.method, "POST");
    assert_eq!(q.uri.path(), "/events");
    assert_eq!(q.header("authorization").as_deref(), Some("conn-token-123"));
    assert_eq!(
        q.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(q.json(), serde_json::to_value(&a).unwrap());
}

/// Checks a finding request of the SCC API.
fn check_finding(q: &crate::support::Req, a: &kaudit::alert::Alert, token: &str) {
    assert_eq!(q.method, "POST");
    assert_eq!(
        q.uri.path(),
        "/v2/organizations/1234/sources/5678/locations/global/findings"
    );
    assert_eq!(
        q.uri.query(),
        Some(format!("findingId={}", a.uuid.simple()).as_str())
    );
    assert_eq!(q.header("authorization"), Some(format!("Bearer {token}")));
    let f = q.json();
    assert_eq!(f["state"], "ACTIVE");
    assert_eq!(f["findingClass"], "THREAT");
    assert_eq!(f["category"], a.rule);
    assert_eq!(f["severity"], "HIGH", "Error maps to HIGH");
    assert_eq!(f["eventTime"], kaudit::alert::format_time(&a.time));
    assert_eq!(f["description"], a.output);
    assert_eq!(
        f["resourceName"],
        "//container.googleapis.com/projects/proj-1/locations/europe-west1/clusters/prod/k8s/namespaces/kube-system/pods/nginx"
    );
    let p = &f["sourceProperties"];
    assert_eq!(p["ka_target_namespace"], "kube-system");
    assert_eq!(p["ka_user_name"], "alice");
    assert_eq!(p["rule"], a.rule);
    assert_eq!(p["priority"], "Error");
    assert_eq!(p["uuid"], a.uuid.to_string());
}

fn api_sink(endpoint: &str, extra: &str) -> String {
    format!(
        "  - name: scc-api\n    type: gcscc\n    mode: api\n    organization: \"1234\"\n    source: \"5678\"\n    endpoint: {endpoint}\n    project: proj-1\n    cluster_location: europe-west1\n    cluster: prod\n{extra}"
    )
}

#[tokio::test]
async fn api_mode_with_a_service_account_key() {
    use rsa::pkcs1::EncodeRsaPublicKey;
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let public = key
        .to_public_key()
        .to_pkcs1_der()
        .unwrap()
        .as_bytes()
        .to_vec();

    let seen_claims: Arc<Mutex<Vec<Value>>> = Arc::default();
    let claims2 = seen_claims.clone();
    let token_server = Recorder::start(Arc::new(move |_, q| {
        let body = String::from_utf8_lossy(&q.body).to_string();
        let mut grant = None;
        let mut assertion = None;
        for pair in body.split('&') {
            match pair.split_once('=') {
                Some(("grant_type", v)) => grant = Some(v.to_string()),
                Some(("assertion", v)) => assertion = Some(v.to_string()),
                _ => {}
            }
        }
        let ok_grant =
            grant.as_deref() == Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer");
        let Some(jwt) = assertion.filter(|_| ok_grant) else {
            return (StatusCode::BAD_REQUEST, "bad grant").into_response();
        };
        let parts: Vec<&str> = jwt.split('.').collect();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
        let verified = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &public,
        )
        .verify(signed.as_bytes(), &sig)
        .is_ok();
        if !verified {
            return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
        }
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "key-1");
        claims2.lock().unwrap().push(claims);
        axum::Json(json!({"access_token": "sa-token", "expires_in": 3600, "token_type": "Bearer"}))
            .into_response()
    }))
    .await;
    let scc = Recorder::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sa.json");
    std::fs::write(
        &key_file,
        json!({
            "type": "service_account",
            "project_id": "proj-1",
            "private_key_id": "key-1",
            "private_key": pem.as_str(),
            "client_email": "kaudit@proj-1.iam.gserviceaccount.com",
            "token_uri": token_server.url("/token"),
        })
        .to_string(),
    )
    .unwrap();
    let cfg = config(
        dir.path(),
        &api_sink(
            &scc.url(""),
            &format!("    credentials_file: {}\n", key_file.display()),
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let alerts = [
        alert("Create Privileged Pod", Priority::Error),
        alert("Delete Secret", Priority::Error),
    ];
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    wait_until("two findings", || scc.count() >= 2).await;
    r.shutdown().await;
    let reqs = scc.requests();
    for (q, a) in reqs.iter().zip(&alerts) {
        check_finding(q, a, "sa-token");
    }
    assert_eq!(token_server.count(), 1, "the token is cached");
    let claims = seen_claims.lock().unwrap().clone();
    assert_eq!(claims.len(), 1);
    let c = &claims[0];
    assert_eq!(c["iss"], "kaudit@proj-1.iam.gserviceaccount.com");
    assert_eq!(c["aud"], token_server.url("/token"));
    assert_eq!(c["scope"], "https://www.googleapis.com/auth/cloud-platform");
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
}

#[tokio::test]
async fn api_mode_with_the_metadata_server_and_an_existing_finding() {
    let metadata = Recorder::start(Arc::new(|_, q| {
        if q.header("metadata-flavor").as_deref() != Some("Google") {
            return StatusCode::FORBIDDEN.into_response();
        }
        axum::Json(json!({"access_token": "md-token", "expires_in": 3599, "token_type": "Bearer"}))
            .into_response()
    }))
    .await;
    // The first attempt's answer is "lost" (503); the retry finds the finding exists (409).
    let scc = Recorder::start(Arc::new(|n, _| match n {
        0 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => StatusCode::CONFLICT.into_response(),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &api_sink(
            &scc.url(""),
            &format!("    metadata_url: {}\n", metadata.url("")),
        ),
    );
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let a = alert("Create Privileged Pod", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    wait_until("the retry", || scc.count() >= 2).await;
    r.shutdown().await;
    for q in scc.requests() {
        check_finding(&q, &a, "md-token");
    }
    let m = &metadata.requests()[0];
    assert_eq!(m.method, "GET");
    assert_eq!(
        m.uri.path(),
        "/computeMetadata/v1/instance/service-accounts/default/token"
    );
    let text = metrics.encode();
    assert_eq!(
        crate::support::metric(&text, "kaudit_sink_sent_total", "scc-api"),
        1.0,
        "409 counts as delivered"
    );
    assert!(crate::support::json_lines(&dir.path().join("dead-letter/scc-api.jsonl")).is_empty());
}
