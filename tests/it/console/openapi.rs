//! docs/openapi.yaml against the server: every documented route answers, every documented
//! parameter is accepted, and every answer (200s and errors) matches its documented schema,
//! with no undocumented field.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use kaudit::alert::Priority;
use serde_json::Value;

use super::harness::*;
use crate::support::{PATIENCE, Recorder};

fn document() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/openapi.yaml");
    yaml_serde::from_str(&text).expect("docs/openapi.yaml is YAML")
}

/// Follows a `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
            resolve(doc, target)
        }
        None => v,
    }
}

/// Checks `v` against `schema` (the subset of JSON Schema the document uses); objects that
/// list `properties` are closed. Errors name the JSON path.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    let s = resolve(doc, schema);
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            errs.push(format!("{at}: {v} is not {types:?}"));
            return;
        }
    }
    if let (Some(e), false) = (s.get("enum").and_then(Value::as_array), v.is_null())
        && !e.contains(v)
    {
        errs.push(format!("{at}: {v} not in {e:?}"));
    }
    if let (Some(f), Some(text)) = (s.get("format").and_then(Value::as_str), v.as_str()) {
        let ok = match f {
            "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            "uuid" => text.parse::<uuid::Uuid>().is_ok(),
            _ => true,
        };
        if !ok {
            errs.push(format!("{at}: {text:?} is not a {f}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = r.as_str().unwrap_or_default();
            if !obj.contains_key(k) {
                errs.push(format!("{at}: missing required `{k}`"));
            }
        }
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, x) in obj {
                match props.get(k) {
                    Some(ps) => check(doc, ps, x, &format!("{at}.{k}"), errs),
                    None => errs.push(format!("{at}: undocumented field `{k}`")),
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"), errs);
        }
    }
}

/// The documented answer of `GET path` with `status`: its content type and schema.
fn documented(doc: &Value, path: &str, status: u16) -> (String, Value) {
    let op = &doc["paths"][path]["get"];
    assert!(op.is_object(), "{path} is not documented");
    let resp = resolve(doc, &op["responses"][status.to_string()]);
    let content = resp["content"]
        .as_object()
        .unwrap_or_else(|| panic!("{path}: no documented {status} answer"));
    let (ct, body) = content.iter().next().expect("one content type");
    (ct.clone(), body["schema"].clone())
}

async fn conforms(k: &Kaudit, doc: &Value, path: &str, concrete: &str, token: &str) -> u16 {
    let r = k
        .http
        .get(format!("{}/api/v1{concrete}", k.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let (want_ct, schema) = documented(doc, path, status);
    assert!(
        ct.starts_with(&want_ct),
        "{concrete}: {ct} is not {want_ct}"
    );
    if want_ct == "application/json" {
        let body: Value = r.json().await.expect("JSON body");
        let mut errs = Vec::new();
        check(doc, &schema, &body, "$", &mut errs);
        assert!(
            errs.is_empty(),
            "{concrete} ({status}) breaks docs/openapi.yaml:\n{}\n{body}",
            errs.join("\n")
        );
    }
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_docs_openapi_yaml() {
    let doc = document();
    let mut paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/alerts",
            "/alerts/{uuid}",
            "/rules",
            "/sinks",
            "/sources",
            "/stats",
            "/stream"
        ],
        "every route of the console is documented, and only those"
    );

    let refusing = Recorder::start(Arc::new(|_, _| {
        (StatusCode::BAD_REQUEST, "no").into_response()
    }))
    .await;
    let dead = crate::support::free_port();
    let k = Kaudit::start(|d| {
        format!(
            "{}  - {{name: refusing, type: http, url: \"{}\"}}\n  - {{name: down, type: http, url: \"http://127.0.0.1:{dead}/\"}}\n",
            default_sinks(d),
            refusing.url("/")
        )
    })
    .await;
    let a = alert(
        "Secret Read By Unexpected User",
        Priority::Warning,
        "team-a",
        "alice",
    );
    let b = alert("Exec Or Attach Into Pod", Priority::Notice, "team-b", "bob");
    k.post(&[a.clone(), b.clone()]).await;
    k.wait_count("", 2).await;
    // Let every sink report, so that the optional fields are there to check.
    let start = Instant::now();
    loop {
        let (_, s) = k.get(ADMIN, "sinks").await;
        let ready = s["sinks"].as_array().is_some_and(|l| {
            l.iter()
                .any(|x| x["name"] == "down" && x["last_error"].is_string())
                && l.iter()
                    .any(|x| x["name"] == "refusing" && x["last_dead_letter"].is_string())
        });
        if ready {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "sinks never reported: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let id = a.uuid;
    for (path, concrete, token, status) in [
        ("/alerts", "/alerts?limit=1".to_string(), ADMIN, 200),
        ("/alerts", "/alerts?nope=1".to_string(), ADMIN, 400),
        ("/alerts", "/alerts".to_string(), "wrong", 401),
        ("/alerts/{uuid}", format!("/alerts/{id}"), ADMIN, 200),
        (
            "/alerts/{uuid}",
            format!("/alerts/{}", uuid::Uuid::new_v4()),
            ADMIN,
            404,
        ),
        ("/alerts/{uuid}", "/alerts/x".to_string(), ADMIN, 400),
        ("/alerts/{uuid}", format!("/alerts/{}", b.uuid), TEAM_A, 404),
        ("/stats", "/stats".to_string(), ADMIN, 200),
        ("/stats", "/stats?bucket=0".to_string(), ADMIN, 400),
        ("/sinks", "/sinks".to_string(), ADMIN, 200),
        ("/sinks", "/sinks".to_string(), "", 401),
        ("/rules", "/rules".to_string(), ADMIN, 200),
        ("/sources", "/sources".to_string(), ADMIN, 200),
        ("/stream", "/stream?priority=x".to_string(), ADMIN, 400),
    ] {
        assert_eq!(
            conforms(&k, &doc, path, &concrete, token).await,
            status,
            "{concrete}"
        );
    }
    // The first page has a cursor when there is more.
    let (_, page) = k.get(ADMIN, "alerts?limit=1").await;
    assert!(page["next"].is_string());

    // Every documented query parameter is accepted by its route.
    let since = (Utc::now() - chrono::Duration::hours(1))
        .to_rfc3339()
        .replace('+', "%2B");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for p in item["get"]["parameters"].as_array().into_iter().flatten() {
            let p = resolve(&doc, p);
            if p["in"] != "query" {
                continue;
            }
            let name = p["name"].as_str().unwrap();
            let value = match name {
                "since" | "until" => since.clone(),
                "priority" => "warning".into(),
                "limit" => "5".into(),
                "bucket" => "60".into(),
                "cursor" => "s100".into(),
                _ => "x".into(),
            };
            let url = format!("{}/api/v1{path}?{name}={value}", k.base);
            let r = k.http.get(url).bearer_auth(ADMIN).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}?{name}= is documented but refused");
        }
    }

    // The live feed's content type.
    let r = k
        .http
        .get(format!("{}/api/v1/stream", k.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let (ct, _) = documented(&doc, "/stream", 200);
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), ct);
}
