//! The `splunk` sink against a loopback HTTP Event Collector that checks every request as HEC
//! does (token, event objects with a non-blank `event`, the indexes the token may write, the
//! channel of acknowledged requests) and answers with HEC's status codes and JSON bodies:
//! `{"text":"Invalid token","code":4}` (403), `Server is busy` (503, code 9), `Incorrect index`
//! (400, code 7), and `ackId`s that turn true after a few polls.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::{Value, json};

use super::outage_then_restart;
use crate::support::{Req, alert, config, json_lines, wait_until};

#[derive(Default)]
struct Hec {
    token: String,
    indexes: Vec<String>,
    ack: bool,
    busy: usize,
    /// Events received (indexed once acknowledged, or at once without ack).
    events: Vec<Value>,
    /// ackId → (events, polls left before true).
    pending: HashMap<u64, (Vec<Value>, usize)>,
    next_ack: u64,
    channels: HashSet<String>,
    polls: usize,
    violations: Vec<String>,
}

type Shared = Arc<Mutex<Hec>>;

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn hec(state: &Shared, req: &Req) -> Response {
    let mut s = state.lock().unwrap();
    match req.header("authorization") {
        None => {
            return answer(
                StatusCode::UNAUTHORIZED,
                json!({"text":"Token is required","code":2}),
            );
        }
        Some(a) if a != format!("Splunk {}", s.token) => {
            return answer(
                StatusCode::FORBIDDEN,
                json!({"text":"Invalid token","code":4}),
            );
        }
        _ => {}
    }
    let channel = req.header("x-splunk-request-channel");
    if s.ack && channel.is_none() {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"text":"Data channel is missing","code":10}),
        );
    }
    if let Some(c) = &channel {
        if uuid::Uuid::parse_str(c).is_err() {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"text":"Invalid data channel","code":11}),
            );
        }
        s.channels.insert(c.clone());
    }
    match req.uri.path() {
        "/services/collector/event" => {}
        "/services/collector/ack" => {
            s.polls += 1;
            let q = req.uri.query().unwrap_or_default();
            if channel.is_none_or(|c| q != format!("channel={c}")) {
                s.violations.push(format!("ack query {q:?}"));
            }
            let asked: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let mut acks = serde_json::Map::new();
            for id in asked["acks"].as_array().into_iter().flatten() {
                let id = id.as_u64().unwrap_or(u64::MAX);
                let done = match s.pending.get_mut(&id) {
                    Some((_, 0)) => true,
                    Some((_, left)) => {
                        *left -= 1;
                        false
                    }
                    None => false,
                };
                if done && let Some((ev, _)) = s.pending.remove(&id) {
                    s.events.extend(ev);
                }
                acks.insert(id.to_string(), done.into());
            }
            return answer(StatusCode::OK, json!({ "acks": acks }));
        }
        p => {
            s.violations.push(format!("path {p}"));
            return answer(
                StatusCode::NOT_FOUND,
                json!({"text":"The requested URL was not found on this server.","code":404}),
            );
        }
    }
    if s.busy > 0 {
        s.busy -= 1;
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"text":"Server is busy","code":9}),
        );
    }
    let mut events = Vec::new();
    for (n, e) in serde_json::Deserializer::from_slice(&req.body)
        .into_iter::<Value>()
        .enumerate()
    {
        let Ok(e) = e else {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"text":"Invalid data format","code":6,"invalid-event-number":n}),
            );
        };
        match &e["event"] {
            Value::Null => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"text":"Event field is required","code":12,"invalid-event-number":n}),
                );
            }
            Value::String(t) if t.trim().is_empty() => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({"text":"Event field cannot be blank","code":13,"invalid-event-number":n}),
                );
            }
            _ => {}
        }
        if let Some(i) = e["index"].as_str()
            && !s.indexes.iter().any(|x| x == i)
        {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"text":"Incorrect index","code":7,"invalid-event-number":n}),
            );
        }
        if !e["time"].is_number() || !e["fields"].is_object() {
            s.violations.push(format!("event {e}"));
        }
        events.push(e);
    }
    if events.is_empty() {
        return answer(StatusCode::BAD_REQUEST, json!({"text":"No data","code":5}));
    }
    if s.ack {
        let id = s.next_ack;
        s.next_ack += 1;
        s.pending.insert(id, (events, 2));
        answer(
            StatusCode::OK,
            json!({"text":"Success","code":0,"ackId":id}),
        )
    } else {
        s.events.extend(events);
        answer(StatusCode::OK, json!({"text":"Success","code":0}))
    }
}

type Loopback = super::Loopback<Hec>;

impl super::ApiState for Hec {
    fn violations(&self) -> &[String] {
        &self.violations
    }
    fn uuids(&self) -> HashSet<String> {
        self.events
            .iter()
            .filter_map(|e| e["event"]["uuid"].as_str().map(str::to_string))
            .collect()
    }
}

/// Starts the loopback API on an ephemeral port.
async fn start(state: Hec) -> Loopback {
    super::Loopback::serve(state, hec).await
}

fn hec_with(token: &str) -> Hec {
    Hec {
        token: token.into(),
        indexes: vec!["security".into()],
        ..Hec::default()
    }
}

#[tokio::test]
async fn events_with_fields_index_and_a_token_file() {
    let h = start(hec_with("11111111-2222-3333-4444-555555555555")).await;
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "11111111-2222-3333-4444-555555555555\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: splunk\n    type: splunk\n    url: {}\n    token_file: {}\n    index: security\n    sourcetype: falco:k8s\n    batch_max: 2\n    batch_wait_ms: 60000\n",
            h.url(),
            token.path().display()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Attach/Exec Pod", Priority::Notice);
    let b = alert("Delete Namespace", Priority::Critical);
    r.sender().send(a.clone()).await.unwrap();
    r.sender().send(b.clone()).await.unwrap();
    wait_until("2 events", || h.state.lock().unwrap().events.len() == 2).await;
    r.shutdown().await;
    h.check();
    let s = h.state.lock().unwrap();
    let e = s
        .events
        .iter()
        .find(|e| e["event"]["uuid"] == a.uuid.to_string())
        .unwrap();
    assert_eq!(e["event"], serde_json::to_value(&a).unwrap());
    assert_eq!(e["index"], "security");
    assert_eq!(e["sourcetype"], "falco:k8s");
    assert_eq!(e["source"], "kaudit");
    assert_eq!(e["host"], "kaudit-test");
    assert_eq!(e["fields"]["rule"], "Attach/Exec Pod");
    assert_eq!(e["fields"]["priority"], "Notice");
    assert_eq!(e["fields"]["namespace"], "kube-system");
    let t = e["time"].as_f64().unwrap();
    assert!(
        (t - a.time.timestamp_micros() as f64 / 1e6).abs() < 1e-5,
        "{t}"
    );
}

#[tokio::test]
async fn acknowledged_only_once_indexed() {
    let h = start(Hec {
        ack: true,
        ..hec_with("tok")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: splunk\n    type: splunk\n    url: {}\n    token: tok\n    ack: true\n    batch_wait_ms: 0\n",
            h.url()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Acked", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    wait_until("the spool to empty", || {
        r.spooled("splunk") == Some(0) && h.state.lock().unwrap().polls > 0
    })
    .await;
    r.shutdown().await;
    h.check();
    let s = h.state.lock().unwrap();
    assert_eq!(
        s.events.len(),
        1,
        "indexed (acknowledged) before the spool let it go"
    );
    assert!(s.polls >= 3, "polled until true: {}", s.polls);
    assert_eq!(s.channels.len(), 1);
}

#[tokio::test]
async fn busy_is_retried_and_a_refused_index_dead_lettered() {
    let h = start(Hec {
        busy: 2,
        ..hec_with("tok")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: ok\n    type: splunk\n    url: {u}\n    token: tok\n    batch_wait_ms: 0\n  - name: wrong-index\n    type: splunk\n    url: {u}\n    token: tok\n    index: main\n    batch_wait_ms: 0\n",
            u = h.url()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Busy", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    wait_until("the event", || h.state.lock().unwrap().events.len() == 1).await;
    let dl = dir.path().join("dead-letter/wrong-index.jsonl");
    wait_until("the dead letter", || !json_lines(&dl).is_empty()).await;
    r.shutdown().await;
    let l = &json_lines(&dl)[0];
    assert!(
        l["reason"].as_str().unwrap().contains("Incorrect index"),
        "{l}"
    );
    assert!(json_lines(&dir.path().join("dead-letter/ok.jsonl")).is_empty());
}

#[tokio::test]
async fn an_outage_and_a_restart_lose_nothing() {
    let mut h = start(Hec {
        ack: true,
        ..hec_with("tok")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "  - name: splunk\n    type: splunk\n    url: {}\n    token: tok\n    ack: true\n    batch_wait_ms: 0\n    timeout_ms: 1000\n",
        h.url()
    );
    outage_then_restart(dir.path(), &yaml, "splunk", &mut h).await;
    h.check();
}
