//! The `loki` sink against a loopback push API that checks every request as Loki does (path,
//! JSON content type, tenant header, credentials, label names, nanosecond timestamps as
//! strings) and answers Loki's errors: 429 when the ingestion rate limit is hit, 400 for an
//! entry older than the stream accepts, 401 without credentials.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::Value;

use super::outage_then_restart;
use crate::support::{Req, alert, config, json_lines, wait_until};

/// One stored entry.
#[derive(Clone, Debug)]
pub struct Entry {
    labels: BTreeMap<String, String>,
    ns: i64,
    line: String,
}

#[derive(Default)]
struct Store {
    entries: Vec<Entry>,
    auth: Option<String>,
    tenant: Option<String>,
    rate_limited: usize,
    pushes: usize,
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Store>>;

const ALLOWED: [&str; 5] = ["rule", "priority", "source", "namespace", "cluster"];

fn push(state: &Shared, req: &Req) -> Response {
    let mut s = state.lock().unwrap();
    let bad = |s: &mut Store, v: String| {
        s.violations.push(v.clone());
        (StatusCode::BAD_REQUEST, v).into_response()
    };
    if req.method != axum::http::Method::POST || req.uri.path() != "/loki/api/v1/push" {
        return bad(&mut s, format!("{} {}", req.method, req.uri));
    }
    if let Some(want) = &s.auth
        && req.header("authorization").as_ref() != Some(want)
    {
        return (StatusCode::UNAUTHORIZED, "no org id\n").into_response();
    }
    if s.tenant.is_some() && req.header("x-scope-orgid") != s.tenant {
        return (StatusCode::UNAUTHORIZED, "no org id\n").into_response();
    }
    if req.header("content-type").as_deref() != Some("application/json") {
        return bad(
            &mut s,
            format!("content-type {:?}", req.header("content-type")),
        );
    }
    s.pushes += 1;
    if s.rate_limited > 0 {
        s.rate_limited -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '1' lines totaling '600' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased\n",
        )
            .into_response();
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return bad(&mut s, format!("not JSON: {e}")),
    };
    let Some(streams) = body["streams"].as_array() else {
        return bad(&mut s, "no streams".into());
    };
    let mut accepted = Vec::new();
    for st in streams {
        let Some(labels) = st["stream"].as_object() else {
            return bad(&mut s, format!("stream without labels: {st}"));
        };
        let mut l = BTreeMap::new();
        for (k, v) in labels {
            if !ALLOWED.contains(&k.as_str()) {
                return bad(&mut s, format!("unbounded label {k}"));
            }
            let Some(v) = v.as_str() else {
                return bad(&mut s, format!("label {k} is not a string"));
            };
            l.insert(k.clone(), v.to_string());
        }
        let mut last = i64::MIN;
        for v in st["values"].as_array().into_iter().flatten() {
            let (Some(ts), Some(line)) = (v[0].as_str(), v[1].as_str()) else {
                return bad(&mut s, format!("entry {v}"));
            };
            let Ok(ns) = ts.parse::<i64>() else {
                return bad(&mut s, format!("timestamp {ts:?} is not nanoseconds"));
            };
            if ns < last {
                return bad(&mut s, "entries of a stream out of order".into());
            }
            last = ns;
            let week_ago =
                chrono::Utc::now().timestamp_nanos_opt().unwrap() - 7 * 86_400 * 1_000_000_000;
            if ns < week_ago {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("entry for stream '{l:?}' has timestamp too old: {ts}, oldest acceptable timestamp is: ...\n"),
                )
                    .into_response();
            }
            accepted.push(Entry {
                labels: l.clone(),
                ns,
                line: line.to_string(),
            });
        }
    }
    s.entries.extend(accepted);
    StatusCode::NO_CONTENT.into_response()
}

type Loopback = super::Loopback<Store>;

impl super::ApiState for Store {
    fn violations(&self) -> &[String] {
        &self.violations
    }
    fn uuids(&self) -> HashSet<String> {
        self.entries
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.line).ok())
            .filter_map(|v| v["uuid"].as_str().map(str::to_string))
            .collect()
    }
}

/// Starts the loopback API on an ephemeral port.
async fn start(state: Store) -> Loopback {
    super::Loopback::serve(state, push).await
}

#[tokio::test]
async fn bounded_labels_json_lines_tenant_and_token() {
    let loki = start(Store {
        auth: Some("Bearer t0ken".into()),
        tenant: Some("security".into()),
        ..Store::default()
    })
    .await;
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "t0ken\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: loki\n    type: loki\n    url: {}\n    tenant_id: security\n    token_file: {}\n    labels: {{cluster: prod}}\n    batch_max: 3\n    batch_wait_ms: 60000\n",
            loki.url(),
            token.path().display()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Attach/Exec Pod", Priority::Notice);
    let mut b = alert("Attach/Exec Pod", Priority::Notice);
    b.output_fields.insert("ka.user.name".into(), "bob".into());
    let mut c = alert("Create Privileged Pod", Priority::Critical);
    c.output_fields.remove("ka.target.namespace");
    for x in [&a, &b, &c] {
        r.sender().send(x.clone()).await.unwrap();
    }
    wait_until("3 entries", || {
        loki.state.lock().unwrap().entries.len() == 3
    })
    .await;
    r.shutdown().await;
    loki.check();
    let s = loki.state.lock().unwrap();
    assert_eq!(s.pushes, 1, "one push for the batch");
    let find = |u: &uuid::Uuid| {
        s.entries
            .iter()
            .find(|e| e.line.contains(&u.to_string()))
            .unwrap()
            .clone()
    };
    let ea = find(&a.uuid);
    let want: BTreeMap<String, String> = [
        ("cluster", "prod"),
        ("namespace", "kube-system"),
        ("priority", "Notice"),
        ("rule", "Attach/Exec Pod"),
        ("source", "k8s_audit"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(ea.labels, want);
    assert_eq!(
        find(&b.uuid).labels,
        want,
        "same labels: same stream, user in the line"
    );
    assert_eq!(ea.ns, a.time.timestamp_nanos_opt().unwrap());
    let line: Value = serde_json::from_str(&ea.line).unwrap();
    assert_eq!(line, serde_json::to_value(&a).unwrap());
    assert!(!find(&c.uuid).labels.contains_key("namespace"));
}

#[tokio::test]
async fn rate_limits_are_retried_and_too_old_entries_dead_lettered() {
    let loki = start(Store {
        rate_limited: 2,
        ..Store::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: loki\n    type: loki\n    url: {}\n    batch_wait_ms: 0\n",
            loki.url()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Fresh", Priority::Warning);
    r.sender().send(a.clone()).await.unwrap();
    wait_until("the entry", || {
        loki.state.lock().unwrap().entries.len() == 1
    })
    .await;
    assert_eq!(
        loki.state.lock().unwrap().pushes,
        3,
        "two 429s, then accepted"
    );
    let mut old = alert("Old", Priority::Warning);
    old.time -= chrono::Duration::days(30);
    r.sender().send(old.clone()).await.unwrap();
    let dl = dir.path().join("dead-letter/loki.jsonl");
    wait_until("the dead letter", || !json_lines(&dl).is_empty()).await;
    r.shutdown().await;
    loki.check();
    let l = &json_lines(&dl)[0];
    assert_eq!(l["alert"]["uuid"], old.uuid.to_string());
    assert!(
        l["reason"].as_str().unwrap().contains("timestamp too old"),
        "{l}"
    );
}

#[tokio::test]
async fn an_outage_and_a_restart_lose_nothing() {
    let mut loki = start(Store::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: loki\n    type: loki\n    url: {}\n    batch_wait_ms: 0\n    timeout_ms: 1000\n",
        loki.url()
    );
    outage_then_restart(dir.path(), &yaml, "loki", &mut loki).await;
    loki.check();
}
