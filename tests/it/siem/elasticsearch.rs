//! The `elasticsearch` and `opensearch` sinks against a loopback `_bulk` API that checks every
//! request the way Elasticsearch does (NDJSON content type, action and document line pairs,
//! index names, credentials) and answers as it does: `create` with an existing `_id` is a 409
//! version conflict, items can be rejected (429) or refused (400 mapper_parsing_exception), and
//! wrong credentials get 401 `security_exception`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kaudit::alert::{Alert, Priority};
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::{Value, json};

use super::outage_then_restart;
use crate::support::{Req, alert, config, json_lines, wait_until};

/// What the loopback cluster holds and how it misbehaves.
#[derive(Default)]
pub struct Cluster {
    /// Stored documents by (index, id).
    pub docs: HashMap<(String, String), Value>,
    /// The ids of every document received, in order (repeats included).
    pub arrivals: Vec<String>,
    /// The `Authorization` header it accepts; anything goes when `None`.
    pub auth: Option<String>,
    /// Ids rejected with 429 the next time they come (once each).
    pub reject_once: HashSet<String>,
    /// Schema violations seen (the test asserts there are none).
    pub violations: Vec<String>,
    /// Document counts of each `_bulk` request.
    pub requests: Vec<usize>,
}

type Shared = Arc<Mutex<Cluster>>;

fn error(status: StatusCode, kind: &str, reason: &str) -> Response {
    let body = json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status.as_u16()});
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn index_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n == n.to_lowercase()
        && !n.starts_with(['-', '_', '+'])
        && !n.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'])
}

/// Answers one request as Elasticsearch's `_bulk` API.
fn bulk(state: &Shared, req: &Req) -> Response {
    let mut s = state.lock().unwrap();
    if req.method != axum::http::Method::POST || req.uri.path() != "/_bulk" {
        s.violations.push(format!("{} {}", req.method, req.uri));
        return error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "no handler",
        );
    }
    if let Some(want) = &s.auth
        && req.header("authorization").as_ref() != Some(want)
    {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "security_exception",
            "unable to authenticate user [kaudit] for REST request [/_bulk]",
        );
        r.headers_mut().insert(
            "www-authenticate",
            "Basic realm=\"security\" charset=\"UTF-8\", ApiKey"
                .parse()
                .unwrap(),
        );
        return r;
    }
    if req.header("content-type").as_deref() != Some("application/x-ndjson") {
        s.violations
            .push(format!("content-type {:?}", req.header("content-type")));
        return error(
            StatusCode::NOT_ACCEPTABLE,
            "media_type_header_exception",
            "Content-Type header is not supported",
        );
    }
    let text = String::from_utf8_lossy(&req.body).to_string();
    if !text.ends_with('\n') {
        s.violations
            .push("the body does not end with a newline".into());
        return error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        );
    }
    let lines: Vec<&str> = text.lines().collect();
    if !lines.len().is_multiple_of(2) {
        s.violations.push("odd number of lines".into());
        return error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "odd lines",
        );
    }
    let mut items = Vec::new();
    let mut errors = false;
    for pair in lines.chunks(2) {
        let (Ok(action), Ok(doc)) = (
            serde_json::from_str::<Value>(pair[0]),
            serde_json::from_str::<Value>(pair[1]),
        ) else {
            s.violations.push(format!("not JSON: {pair:?}"));
            return error(
                StatusCode::BAD_REQUEST,
                "x_content_parse_exception",
                "not JSON",
            );
        };
        let Some(meta) = action
            .get("create")
            .filter(|_| action.as_object().map(|o| o.len()) == Some(1))
        else {
            s.violations.push(format!("not a create action: {action}"));
            continue;
        };
        let index = meta["_index"].as_str().unwrap_or_default().to_string();
        let id = meta["_id"].as_str().unwrap_or_default().to_string();
        if !index_name_ok(&index) {
            s.violations.push(format!("index name {index:?}"));
        }
        if doc["uuid"] != id.as_str()
            || doc["@timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_none()
        {
            s.violations.push(format!("document {doc}"));
        }
        s.arrivals.push(id.clone());
        let (status, err) = if s.docs.contains_key(&(index.clone(), id.clone())) {
            (
                409,
                Some((
                    "version_conflict_engine_exception",
                    format!("[{id}]: version conflict, document already exists"),
                )),
            )
        } else if s.reject_once.remove(&id) {
            (
                429,
                Some((
                    "es_rejected_execution_exception",
                    "rejected execution of coordinating operation".to_string(),
                )),
            )
        } else if doc["rule"]
            .as_str()
            .is_some_and(|r| r.contains("Unmappable"))
        {
            (
                400,
                Some((
                    "mapper_parsing_exception",
                    "failed to parse field [output_fields] of type [keyword]".to_string(),
                )),
            )
        } else {
            s.docs.insert((index.clone(), id.clone()), doc);
            (201, None)
        };
        let mut item = json!({"_index": index, "_id": id, "status": status});
        match err {
            Some((kind, reason)) => {
                errors = true;
                item["error"] = json!({"type": kind, "reason": reason});
            }
            None => {
                item["_version"] = 1.into();
                item["result"] = "created".into();
                item["_shards"] = json!({"total": 2, "successful": 1, "failed": 0});
            }
        }
        items.push(json!({ "create": item }));
    }
    s.requests.push(items.len());
    let body = json!({"took": 3, "errors": errors, "items": items});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

type Loopback = super::Loopback<Cluster>;

impl super::ApiState for Cluster {
    fn violations(&self) -> &[String] {
        &self.violations
    }
    fn uuids(&self) -> HashSet<String> {
        self.docs.keys().map(|(_, id)| id.clone()).collect()
    }
}

/// Starts the loopback API on an ephemeral port.
async fn start(state: Cluster) -> Loopback {
    super::Loopback::serve(state, bulk).await
}

async fn send_all(yaml: &str, alerts: &[Alert]) -> (tempfile::TempDir, router::RouterHandle) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), yaml);
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    for a in alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    (dir, r)
}

#[tokio::test]
async fn daily_indices_documents_and_basic_auth_from_a_file() {
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "kaudit:s3cret")
    );
    let es = start(Cluster {
        auth: Some(auth),
        ..Cluster::default()
    })
    .await;
    let pw = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw.path(), "s3cret\n").unwrap();
    let mut old = alert("Old", Priority::Error);
    old.time = chrono::DateTime::parse_from_rfc3339("2025-12-31T23:59:59.5Z")
        .unwrap()
        .into();
    let alerts = vec![old, alert("New", Priority::Notice)];
    let yaml = format!(
        "  - name: es\n    type: elasticsearch\n    url: {}\n    username: kaudit\n    password_file: {}\n    batch_wait_ms: 0\n  - name: os\n    type: opensearch\n    url: {}\n    index: audit-%Y.%m\n    username: kaudit\n    password_file: {}\n    batch_wait_ms: 0\n",
        es.url(),
        pw.path().display(),
        es.url(),
        pw.path().display()
    );
    let (_dir, r) = send_all(&yaml, &alerts).await;
    wait_until("4 documents", || es.state.lock().unwrap().docs.len() == 4).await;
    r.shutdown().await;
    es.check();
    let s = es.state.lock().unwrap();
    let today = alerts[1].time.format("%Y.%m.%d").to_string();
    let doc = &s.docs[&("falco-2025.12.31".to_string(), alerts[0].uuid.to_string())];
    assert!(
        s.docs
            .contains_key(&(format!("falco-{today}"), alerts[1].uuid.to_string()))
    );
    assert!(
        s.docs
            .contains_key(&("audit-2025.12".to_string(), alerts[0].uuid.to_string()))
    );
    assert_eq!(doc["@timestamp"], "2025-12-31T23:59:59.500000000Z");
    let mut want = serde_json::to_value(&alerts[0]).unwrap();
    want["@timestamp"] = doc["@timestamp"].clone();
    assert_eq!(doc, &want);
}

#[tokio::test]
async fn a_partial_bulk_failure_sends_again_only_the_failed_items() {
    let alerts: Vec<Alert> = (0..6)
        .map(|i| alert(&format!("R{i}"), Priority::Warning))
        .collect();
    let es = start(Cluster {
        reject_once: [1, 4]
            .iter()
            .map(|i: &usize| alerts[*i].uuid.to_string())
            .collect(),
        ..Cluster::default()
    })
    .await;
    let yaml = format!(
        "  - name: es\n    type: elasticsearch\n    url: {}\n    batch_max: 6\n    batch_wait_ms: 60000\n",
        es.url()
    );
    let (_dir, r) = send_all(&yaml, &alerts).await;
    wait_until("6 documents", || es.state.lock().unwrap().docs.len() == 6).await;
    wait_until("the spool to empty", || r.spooled("es") == Some(0)).await;
    r.shutdown().await;
    es.check();
    let s = es.state.lock().unwrap();
    assert_eq!(
        s.requests,
        vec![6, 2],
        "one bulk of 6, then only the 2 rejected"
    );
    let counts = crate::support::counts(s.arrivals.clone());
    for (i, a) in alerts.iter().enumerate() {
        let want = if i == 1 || i == 4 { 2 } else { 1 };
        assert_eq!(counts[&a.uuid.to_string()], want, "alert {i}");
    }
}

#[tokio::test]
async fn refused_items_are_dead_lettered_naming_them() {
    let es = start(Cluster::default()).await;
    let alerts = vec![
        alert("Fine", Priority::Warning),
        alert("Unmappable", Priority::Warning),
        alert("Also fine", Priority::Warning),
    ];
    let yaml = format!(
        "  - name: es\n    type: elasticsearch\n    url: {}\n    batch_max: 3\n    batch_wait_ms: 60000\n",
        es.url()
    );
    let (dir, r) = send_all(&yaml, &alerts).await;
    let dl = dir.path().join("dead-letter/es.jsonl");
    wait_until("the dead letters", || json_lines(&dl).len() == 3).await;
    r.shutdown().await;
    es.check();
    let l = &json_lines(&dl)[0];
    let reason = l["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "{}: HTTP 400: mapper_parsing_exception",
            alerts[1].uuid
        )),
        "{reason}"
    );
    assert!(
        reason.contains("1 of 3 documents refused, the others are indexed"),
        "{reason}"
    );
    let s = es.state.lock().unwrap();
    assert_eq!(s.docs.len(), 2);
    assert_eq!(s.arrivals.len(), 3, "the indexed ones were not sent again");
}

#[tokio::test]
async fn refused_credentials_are_retried_within_the_denial_window() {
    let es = start(Cluster {
        auth: Some("ApiKey old-key".into()),
        ..Cluster::default()
    })
    .await;
    let yaml = format!(
        "  - name: es\n    type: elasticsearch\n    url: {}\n    api_key: bmV3OmtleQ==\n    batch_wait_ms: 0\n",
        es.url()
    );
    let metrics = Metrics::new();
    let dir = tempfile::tempdir().unwrap();
    // A 401 is a denial like any sink's: retried for `spool.denied_retry_secs`, here an hour.
    let cfg = crate::support::config_from_yaml(&format!(
        "data_dir: {}\nspool:\n  retry_initial_ms: 20\n  retry_max_ms: 100\n  denied_retry_secs: 3600\nsinks:\n{yaml}",
        dir.path().display()
    ));
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let a = alert("Kept", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    wait_until("refused attempts", || {
        crate::support::metric(&metrics.encode(), "kaudit_sink_failed_total", "es") >= 2.0
    })
    .await;
    assert!(es.state.lock().unwrap().docs.is_empty());
    // The key is rotated on the cluster side to the one kaudit has.
    es.state.lock().unwrap().auth = Some("ApiKey bmV3OmtleQ==".into());
    wait_until("the document", || es.state.lock().unwrap().docs.len() == 1).await;
    r.shutdown().await;
    assert!(json_lines(&dir.path().join("dead-letter/es.jsonl")).is_empty());
}

#[tokio::test]
async fn refused_credentials_are_dead_lettered_once_the_window_is_over() {
    let es = start(Cluster {
        auth: Some("ApiKey old-key".into()),
        ..Cluster::default()
    })
    .await;
    let yaml = format!(
        "  - name: es\n    type: elasticsearch\n    url: {}\n    api_key: bmV3OmtleQ==\n    batch_wait_ms: 0\n",
        es.url()
    );
    let metrics = Metrics::new();
    let dir = tempfile::tempdir().unwrap();
    // `config` sets `denied_retry_secs: 0`: the first denial is final.
    let cfg = config(dir.path(), &yaml);
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    r.sender()
        .send(alert("Denied", Priority::Error))
        .await
        .unwrap();
    let dead = dir.path().join("dead-letter/es.jsonl");
    wait_until("the dead letter", || !json_lines(&dead).is_empty()).await;
    r.shutdown().await;
    let reason = json_lines(&dead)[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("401"), "{reason}");
    assert!(es.state.lock().unwrap().docs.is_empty());
}

#[tokio::test]
async fn an_outage_and_a_restart_lose_nothing() {
    let mut es = start(Cluster::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: es\n    type: elasticsearch\n    url: {}\n    batch_wait_ms: 0\n    timeout_ms: 1000\n",
        es.url()
    );
    outage_then_restart(dir.path(), &yaml, "es", &mut es).await;
    es.check();
}
