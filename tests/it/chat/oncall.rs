//! PagerDuty's Events API v2 and Opsgenie's Alert API, checked against their documented
//! request schemas, limits and authentication.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::api::{Api, arr, delivers, json_answer, json_post, keys, obj, secret_file, text};
use crate::support::Req;

// ---- PagerDuty ----

const ROUTING_KEY: &str = "R0UT1NGK3Y0123456789abcdefABCDEF";

fn check_pagerduty(r: &Req) -> Result<(), String> {
    if r.uri.path() != "/v2/enqueue" {
        return Err(format!("path {}", r.uri.path()));
    }
    if r.body.len() > 512 * 1024 {
        return Err(format!("{} bytes, at most 512 KB", r.body.len()));
    }
    let v = json_post(r, "application/json")?;
    let m = obj(&v, "body")?;
    keys(
        m,
        "body",
        &[
            "routing_key",
            "event_action",
            "dedup_key",
            "payload",
            "images",
            "links",
            "client",
            "client_url",
        ],
    )?;
    let key = text(&m["routing_key"], "routing_key", 32, 32)
        .map_err(|e| format!("Length of 'routing_key' is incorrect: {e}"))?;
    if key != ROUTING_KEY {
        return Err("unknown routing key".into());
    }
    match m["event_action"].as_str() {
        Some("trigger" | "acknowledge" | "resolve") => {}
        a => return Err(format!("event_action {a:?}")),
    }
    text(&m["dedup_key"], "dedup_key", 1, 255)?;
    let p = obj(&m["payload"], "payload")?;
    keys(
        p,
        "payload",
        &[
            "summary",
            "source",
            "severity",
            "timestamp",
            "component",
            "group",
            "class",
            "custom_details",
        ],
    )?;
    text(&p["summary"], "payload.summary", 1, 1024)?;
    text(&p["source"], "payload.source", 1, usize::MAX)?;
    match p["severity"].as_str() {
        Some("critical" | "error" | "warning" | "info") => {}
        s => return Err(format!("payload.severity {s:?}")),
    }
    let ts = text(&p["timestamp"], "payload.timestamp", 1, 64)?;
    chrono::DateTime::parse_from_rfc3339(ts).map_err(|e| format!("payload.timestamp: {e}"))?;
    obj(&p["custom_details"], "payload.custom_details")?;
    if let Some(links) = m.get("links") {
        for (i, l) in arr(links, "links", usize::MAX)?.iter().enumerate() {
            let lo = obj(l, "links")?;
            keys(lo, &format!("links[{i}]"), &["href", "text"])?;
            text(&lo["href"], &format!("links[{i}].href"), 1, usize::MAX)?;
        }
    }
    Ok(())
}

fn pd_invalid(errors: &[&str]) -> axum::response::Response {
    json_answer(
        StatusCode::BAD_REQUEST,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

/// PagerDuty's answers: 202 `success`; 400 `invalid event` (a bad field or routing key); 429
/// when events arrive too fast (no `Retry-After`).
pub static PAGERDUTY: Api = Api {
    sink_type: "pagerduty",
    check: check_pagerduty,
    ok: |r| {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        json_answer(
            StatusCode::ACCEPTED,
            json!({"status": "success", "message": "Event processed", "dedup_key": v["dedup_key"]}),
        )
    },
    bad: |why| pd_invalid(&[why]),
    rate_limited: || {
        json_answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}),
        )
    },
    retry_after: None,
    unauthorized: || pd_invalid(&["Invalid routing key"]),
    sink: |name, base, dir| {
        let key = secret_file(dir, &format!("{name}-key"), ROUTING_KEY);
        format!(
            "  - name: {name}\n    type: pagerduty\n    routing_key_file: {key}\n    url: {base}/v2/enqueue\n    console_url: https://kaudit.example.com\n"
        )
    },
};

mod pagerduty_api {
    use super::*;

    super::super::api::api_tests!(&PAGERDUTY);

    #[tokio::test]
    async fn trigger_event_deduplicates_on_the_uuid() {
        let (a, q) = delivers(&PAGERDUTY).await;
        let v = q.json();
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["dedup_key"], a.uuid.to_string());
        assert_eq!(v["payload"]["severity"], "critical");
        assert_eq!(v["payload"]["summary"], a.output.as_str());
        assert_eq!(v["payload"]["group"], "kube-system");
        assert_eq!(v["payload"]["class"], "Attach/Exec Pod");
        assert_eq!(
            v["payload"]["custom_details"]["output_fields"]["ka.user.name"],
            "alice"
        );
        assert_eq!(
            v["links"][0]["href"],
            format!("https://kaudit.example.com/ui/alerts/{}", a.uuid)
        );
    }
}

// ---- Opsgenie ----

const GENIE_KEY: &str = "eb243592-faa2-4ba2-a551q-1afdf565c889";

fn check_opsgenie(r: &Req) -> Result<(), String> {
    if r.uri.path() != "/v2/alerts" {
        return Err(format!("path {}", r.uri.path()));
    }
    if r.header("authorization").as_deref() != Some(&format!("GenieKey {GENIE_KEY}")) {
        return Err("authorization: expected the GenieKey".into());
    }
    let v = json_post(r, "application/json")?;
    let m = obj(&v, "body")?;
    keys(
        m,
        "body",
        &[
            "message",
            "alias",
            "description",
            "responders",
            "visibleTo",
            "actions",
            "tags",
            "details",
            "entity",
            "source",
            "priority",
            "user",
            "note",
        ],
    )?;
    text(&m["message"], "message", 1, 130)?;
    text(&m["alias"], "alias", 1, 512)?;
    text(&m["description"], "description", 0, 15_000)?;
    for (i, t) in arr(&m["tags"], "tags", 20)?.iter().enumerate() {
        text(t, &format!("tags[{i}]"), 1, 50)?;
    }
    let details = obj(&m["details"], "details")?;
    let mut total = 0;
    for (k, v) in details {
        total += k.chars().count()
            + text(v, &format!("details.{k}"), 0, usize::MAX)?
                .chars()
                .count();
    }
    if total > 8000 {
        return Err(format!("details hold {total} characters, at most 8000"));
    }
    if let Some(e) = m.get("entity") {
        text(e, "entity", 0, 512)?;
    }
    text(&m["source"], "source", 0, 100)?;
    text(&m["user"], "user", 0, 100)?;
    match m["priority"].as_str() {
        Some("P1" | "P2" | "P3" | "P4" | "P5") => {}
        p => return Err(format!("priority {p:?}")),
    }
    if let Some(rs) = m.get("responders") {
        for (i, x) in arr(rs, "responders", 50)?.iter().enumerate() {
            let at = format!("responders[{i}]");
            let o = obj(x, &at)?;
            keys(o, &at, &["type", "id", "name", "username"])?;
            match o["type"].as_str() {
                Some("team" | "user" | "escalation" | "schedule") => {}
                t => return Err(format!("{at}.type {t:?}")),
            }
        }
    }
    Ok(())
}

/// Opsgenie's answers: 202 `Request will be processed`; 422 with the field errors; 401
/// `Could not authenticate`; 429 throttled.
pub static OPSGENIE: Api = Api {
    sink_type: "opsgenie",
    check: check_opsgenie,
    ok: |_| {
        json_answer(
            StatusCode::ACCEPTED,
            json!({"result": "Request will be processed", "took": 0.302, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}),
        )
    },
    bad: |why| {
        json_answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "Request body is not processable. Please check the errors.", "errors": {"message": why}, "took": 0.01, "requestId": "r1"}),
        )
    },
    rate_limited: || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("x-ratelimit-state", "THROTTLED"), ("retry-after", "1")],
            axum::Json(json!({"message": "Too many requests", "took": 0.0, "requestId": "r2"})),
        )
            .into_response()
    },
    retry_after: Some(1),
    unauthorized: || {
        json_answer(
            StatusCode::UNAUTHORIZED,
            json!({"message": "Could not authenticate", "took": 0.0, "requestId": "r3"}),
        )
    },
    sink: |name, base, dir| {
        let key = secret_file(dir, &format!("{name}-key"), GENIE_KEY);
        format!(
            "  - name: {name}\n    type: opsgenie\n    api_key_file: {key}\n    url: {base}\n    responders:\n      - {{type: team, name: security}}\n    tags: [kaudit]\n"
        )
    },
};

mod opsgenie_api {
    use super::*;

    super::super::api::api_tests!(&OPSGENIE);

    #[tokio::test]
    async fn alert_is_aliased_by_uuid_and_routed() {
        let (a, q) = delivers(&OPSGENIE).await;
        let v = q.json();
        assert_eq!(v["message"], "Critical: Attach/Exec Pod");
        assert_eq!(v["alias"], a.uuid.to_string());
        assert_eq!(v["priority"], "P2");
        assert_eq!(v["description"], a.output.as_str());
        assert_eq!(v["entity"], "kube-system");
        assert_eq!(v["tags"], json!(["k8s", "kaudit"]));
        assert_eq!(v["details"]["ka.user.name"], "alice");
        assert_eq!(
            v["responders"],
            json!([{"type": "team", "name": "security"}])
        );
    }
}
