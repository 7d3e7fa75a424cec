//! A SaaS API as a loopback server: it checks every request against the API's documented schema
//! (field names, types, limits, headers, auth) and answers as the API does (its success body,
//! its bad-payload error, rate limits, refused credentials), scripted per request. The tests
//! every API gets (`api_tests!`): a valid delivery, a rate limit retried, refusals
//! dead-lettered, an outage and a restart losing nothing, and the test alert.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kaudit::alert::{Alert, Priority};
use kaudit::metrics::Metrics;
use kaudit::router;
use serde_json::{Map, Value};

use crate::support::{Recorder, Req, alert, config, free_port, json_lines, metric, wait_until};

/// How the fake answers one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// As the API answers a valid request (or its bad-payload error for an invalid one).
    Ok,
    /// Rate limited.
    RateLimited,
    /// Credentials refused.
    Unauthorized,
    /// The API's bad-payload answer, whatever the request.
    BadPayload,
    /// A passing server error.
    ServerError,
}

/// One API: how it checks requests and answers.
pub struct Api {
    /// The sink type.
    pub sink_type: &'static str,
    /// `Err(why)` when the real API would refuse the request.
    pub check: fn(&Req) -> Result<(), String>,
    /// The answer to a valid request.
    pub ok: fn(&Req) -> Response,
    /// The API's answer to a payload it refuses.
    pub bad: fn(&str) -> Response,
    /// The API's rate-limit answer.
    pub rate_limited: fn() -> Response,
    /// The seconds of `Retry-After` in [`Api::rate_limited`], when the API sends one.
    pub retry_after: Option<u64>,
    /// The API's answer to refused credentials, and its status.
    pub unauthorized: fn() -> Response,
    /// The sink entry (YAML list item) of a sink called `name` talking to `base`; credentials
    /// are written as files under `dir`.
    pub sink: fn(name: &str, base: &str, dir: &Path) -> String,
}

/// The API running on a loopback port.
pub struct Fake {
    /// The recorder underneath.
    pub rec: Recorder,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    /// Starts `api` on an ephemeral port, answering the n-th request by `script[n]` (then Ok).
    pub async fn start(api: &'static Api, script: Vec<Script>) -> Fake {
        Self::start_on(api, 0, script).await
    }

    /// As [`Fake::start`], on `port`.
    pub async fn start_on(api: &'static Api, port: u16, script: Vec<Script>) -> Fake {
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let v = violations.clone();
        let rec = Recorder::start_on(
            port,
            Arc::new(move |n, req| {
                let checked = (api.check)(req);
                if let Err(why) = &checked {
                    v.lock().unwrap().push(why.clone());
                }
                match script.get(n).copied().unwrap_or(Script::Ok) {
                    Script::RateLimited => (api.rate_limited)(),
                    Script::Unauthorized => (api.unauthorized)(),
                    Script::BadPayload => (api.bad)("scripted refusal"),
                    Script::ServerError => {
                        (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response()
                    }
                    Script::Ok => match checked {
                        Ok(()) => (api.ok)(req),
                        Err(why) => (api.bad)(&why),
                    },
                }
            }),
        )
        .await;
        Fake { rec, violations }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        self.rec.url("")
    }

    /// Panics with every schema violation seen.
    pub fn assert_valid(&self) {
        let v = self.violations.lock().unwrap();
        assert!(v.is_empty(), "requests the API would refuse: {v:#?}");
    }
}

/// The object at `at`, or why not.
pub fn obj<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{at}: expected an object, got {v}"))
}

/// The array at `at` with at most `max` items, or why not.
pub fn arr<'a>(v: &'a Value, at: &str, max: usize) -> Result<&'a Vec<Value>, String> {
    let a = v
        .as_array()
        .ok_or_else(|| format!("{at}: expected an array, got {v}"))?;
    if a.len() > max {
        return Err(format!("{at}: {} items, at most {max}", a.len()));
    }
    Ok(a)
}

/// The string at `at` of `min..=max` characters, or why not.
pub fn text<'a>(v: &'a Value, at: &str, min: usize, max: usize) -> Result<&'a str, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{at}: expected a string, got {v}"))?;
    let n = s.chars().count();
    if n < min || n > max {
        return Err(format!("{at}: {n} characters, expected {min}..={max}"));
    }
    Ok(s)
}

/// Refuses keys outside `allowed`.
pub fn keys(m: &Map<String, Value>, at: &str, allowed: &[&str]) -> Result<(), String> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{at}: unknown field {k:?}")),
        None => Ok(()),
    }
}

/// The body as JSON, after checking the method and content type.
pub fn json_post(r: &Req, content_type: &str) -> Result<Value, String> {
    if r.method != "POST" {
        return Err(format!("method {}", r.method));
    }
    let ct = r.header("content-type").unwrap_or_default();
    if !ct.starts_with(content_type) {
        return Err(format!("content-type {ct:?}, expected {content_type}"));
    }
    serde_json::from_slice(&r.body).map_err(|e| format!("body is not JSON: {e}"))
}

/// A JSON answer.
pub fn json_answer(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// An alert with the usual fields, a console-worthy priority and a few awkward characters.
pub fn rich_alert() -> Alert {
    let mut a = alert("Attach/Exec Pod", Priority::Critical);
    a.output = format!("{} <b>&amp; @everyone", a.output);
    a.output_fields
        .insert("ka.verb".into(), Value::String("create".into()));
    a.output_fields
        .insert("ka.target.subresource".into(), Value::String("exec".into()));
    a
}

/// Writes `value` to `dir/name` and returns the path, as a mounted Secret would hold it.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    p.display().to_string()
}

/// Routes `a` through a sink of `api` at `fake`, waits for `n` requests, and returns them.
pub async fn deliver(api: &'static Api, fake: &Fake, a: &Alert, n: usize) -> Vec<Req> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &(api.sink)("s", &fake.base(), dir.path()));
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    r.sender().send(a.clone()).await.unwrap();
    wait_until("the requests", || fake.rec.count() >= n).await;
    r.shutdown().await;
    fake.rec.requests()
}

/// A valid request arrives and carries the alert.
pub async fn delivers(api: &'static Api) -> (Alert, Req) {
    let fake = Fake::start(api, vec![]).await;
    let a = rich_alert();
    let reqs = deliver(api, &fake, &a, 1).await;
    fake.assert_valid();
    assert_eq!(reqs.len(), 1);
    let q = reqs.into_iter().next().unwrap();
    assert!(
        String::from_utf8_lossy(&q.body).contains(&a.uuid.to_string()),
        "the alert's uuid is in the message"
    );
    (a, q)
}

/// A rate limit is retried (after `Retry-After` when the API sends one), then delivered once.
pub async fn rate_limit_is_retried(api: &'static Api) {
    let fake = Fake::start(api, vec![Script::RateLimited, Script::ServerError]).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &(api.sink)("s", &fake.base(), dir.path()));
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    r.sender().send(rich_alert()).await.unwrap();
    wait_until("the delivery", || {
        metric(&metrics.encode(), "kaudit_sink_sent_total", "s") >= 1.0
    })
    .await;
    r.shutdown().await;
    fake.assert_valid();
    let reqs = fake.rec.requests();
    assert_eq!(reqs.len(), 3, "429, 503, then delivered");
    if let Some(secs) = api.retry_after {
        let gap = reqs[1].at - reqs[0].at;
        assert!(
            gap >= std::time::Duration::from_secs(secs),
            "retried after {gap:?}, before Retry-After"
        );
    }
    assert!(json_lines(&dir.path().join("dead-letter/s.jsonl")).is_empty());
}

/// Refused credentials and a refused payload dead-letter the alert after one attempt, with the
/// API's reason.
pub async fn refusals_are_dead_lettered(api: &'static Api) {
    for script in [Script::Unauthorized, Script::BadPayload] {
        let fake = Fake::start(api, vec![script]).await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &(api.sink)("s", &fake.base(), dir.path()));
        let l = crate::support::refused_alert(&cfg, "s").await;
        assert_eq!(fake.rec.count(), 1, "{script:?} is not retried");
        let reason = l["reason"].as_str().unwrap_or_default().to_string();
        let status = (match script {
            Script::Unauthorized => (api.unauthorized)(),
            _ => (api.bad)("x"),
        })
        .status();
        assert!(
            reason.contains(status.as_str()),
            "{script:?}: reason {reason:?} names HTTP {status}"
        );
        assert!(
            !reason.contains("127.0.0.1"),
            "the URL (a credential) is not in the reason: {reason}"
        );
    }
}

/// Alerts routed while the API is down, and kaudit restarted, all arrive once it is back.
pub async fn outage_and_restart_lose_nothing(api: &'static Api) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let cfg = config(dir.path(), &(api.sink)("s", &base, dir.path()));
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .unwrap();
    let alerts: Vec<Alert> = (0..3)
        .map(|i| alert(&format!("Outage {i}"), Priority::Error))
        .collect();
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    wait_until("a failed attempt", || {
        metric(&metrics.encode(), "kaudit_sink_failed_total", "s") >= 1.0
    })
    .await;
    r.shutdown().await;
    // kaudit is down; the API comes back; kaudit starts again on the same data.
    let fake = Fake::start_on(api, port, vec![]).await;
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let seen = |fake: &Fake| {
        let bodies: Vec<String> = fake
            .rec
            .requests()
            .iter()
            .map(|q| String::from_utf8_lossy(&q.body).into_owned())
            .collect();
        alerts
            .iter()
            .all(|a| bodies.iter().any(|b| b.contains(&a.uuid.to_string())))
    };
    wait_until("every alert after the restart", || seen(&fake)).await;
    wait_until("the spool drained", || r.spooled("s") == Some(0)).await;
    r.shutdown().await;
    fake.assert_valid();
    assert!(json_lines(&dir.path().join("dead-letter/s.jsonl")).is_empty());
}

/// The test alert is delivered (and reported), and a refusal is reported with its reason.
pub async fn test_alert_reports(api: &'static Api) {
    let dir = tempfile::tempdir().unwrap();
    let good = Fake::start(api, vec![]).await;
    let bad = Fake::start(api, vec![Script::Unauthorized]).await;
    let cfg = config(
        dir.path(),
        &format!(
            "{}{}",
            (api.sink)("good", &good.base(), dir.path()),
            (api.sink)("bad", &bad.base(), dir.path())
        ),
    );
    let got = kaudit::sinks::test_alert::send_test(
        &cfg.sinks,
        None,
        "kaudit-it",
        kaudit::sinks::test_alert::TEST_TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 2);
    assert!(got[0].delivered, "{got:?}");
    assert_eq!(got[0].sink_type, api.sink_type);
    assert!(!got[1].delivered);
    let status = (api.unauthorized)().status();
    assert!(
        got[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains(status.as_str())),
        "{got:?}"
    );
    good.assert_valid();
    assert!(String::from_utf8_lossy(&good.rec.requests()[0].body).contains("Test rule"));
}

/// The generic tests of one API, as `#[tokio::test]`s of the calling module.
macro_rules! api_tests {
    ($api:expr) => {
        #[tokio::test]
        async fn rate_limit_is_retried() {
            $crate::chat::api::rate_limit_is_retried($api).await;
        }

        #[tokio::test]
        async fn refusals_are_dead_lettered() {
            $crate::chat::api::refusals_are_dead_lettered($api).await;
        }

        #[tokio::test]
        async fn outage_and_restart_lose_nothing() {
            $crate::chat::api::outage_and_restart_lose_nothing($api).await;
        }

        #[tokio::test]
        async fn test_alert_reports() {
            $crate::chat::api::test_alert_reports($api).await;
        }
    };
}

pub(crate) use api_tests;
