//! The `gcs` sink against a loopback Cloud Storage JSON API that checks each upload as the
//! service does (`POST /upload/storage/v1/b/<bucket>/o?uploadType=multipart`, a bearer token,
//! a `multipart/related` body of JSON metadata then media, `ifGenerationMatch=0` = create only)
//! and answers as it does: 412 `conditionNotMet` for an existing object, 404 for a missing
//! bucket (a denial: dead-lettered once `spool.denied_retry_secs` is over). The token comes from a loopback metadata server (Workload Identity).

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kaudit::alert::Priority;
use serde_json::{Value, json};

use super::{start, wait_sent};
use crate::support::{Recorder, Req, alert, config};

fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}]}});
    (status, axum::Json(body)).into_response()
}

/// Metadata and media of a `multipart/related` upload, or what is wrong with it.
fn parts(q: &Req) -> Result<(Value, Vec<u8>), String> {
    let ct = q.header("content-type").unwrap_or_default();
    let boundary = ct
        .strip_prefix("multipart/related; boundary=")
        .ok_or(format!("content-type {ct:?}"))?;
    let body = &q.body[..];
    let open = format!("--{boundary}\r\n");
    let next = format!("\r\n--{boundary}\r\n");
    let close = format!("\r\n--{boundary}--");
    let find = |hay: &[u8], needle: &str, from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .map(|p| p + from)
    };
    if !body.starts_with(open.as_bytes()) {
        return Err("body does not open with the boundary".into());
    }
    let h1 = find(body, "\r\n\r\n", 0).ok_or("no metadata headers")?;
    let headers = String::from_utf8_lossy(&body[open.len()..h1]).to_lowercase();
    if !headers.contains("content-type: application/json") {
        return Err(format!("metadata part headers {headers:?}"));
    }
    let m_end = find(body, &next, h1).ok_or("no media part")?;
    let meta: Value =
        serde_json::from_slice(&body[h1 + 4..m_end]).map_err(|e| format!("metadata: {e}"))?;
    let h2 = find(body, "\r\n\r\n", m_end + 2).ok_or("no media headers")?;
    let end = body
        .windows(close.len())
        .rposition(|w| w == close.as_bytes())
        .ok_or("no closing boundary")?;
    Ok((meta, body[h2 + 4..end].to_vec()))
}

/// A bucket `archive` whose first upload's answer is lost (stored, then 503).
fn gcs(objects: Arc<Mutex<HashMap<String, Vec<u8>>>>) -> crate::support::Responder {
    Arc::new(move |n, q| {
        let Some(bucket) = q
            .uri
            .path()
            .strip_prefix("/upload/storage/v1/b/")
            .and_then(|p| p.strip_suffix("/o"))
        else {
            return error(StatusCode::NOT_FOUND, "notFound", "Not Found");
        };
        if q.method != "POST" {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        if q.header("authorization").as_deref() != Some("Bearer md-token") {
            return error(StatusCode::UNAUTHORIZED, "required", "Invalid Credentials");
        }
        let query = q.uri.query().unwrap_or_default();
        if !query.split('&').any(|p| p == "uploadType=multipart") {
            return error(StatusCode::BAD_REQUEST, "invalid", "uploadType");
        }
        let create_only = query.split('&').any(|p| p == "ifGenerationMatch=0");
        if bucket != "archive" {
            return error(
                StatusCode::NOT_FOUND,
                "notFound",
                "The specified bucket does not exist.",
            );
        }
        let (meta, media) = match parts(q) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, "invalid", &e),
        };
        let Some(name) = meta["name"].as_str() else {
            return error(StatusCode::BAD_REQUEST, "required", "Required: name");
        };
        if meta["contentEncoding"] != "gzip" || meta["contentType"] != "application/x-ndjson" {
            return error(StatusCode::BAD_REQUEST, "invalid", &meta.to_string());
        }
        let mut objs = objects.lock().unwrap();
        if create_only && objs.contains_key(name) {
            return error(
                StatusCode::PRECONDITION_FAILED,
                "conditionNotMet",
                "At least one of the pre-conditions you specified did not hold.",
            );
        }
        objs.insert(name.to_string(), media);
        if n == 0 {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        axum::Json(
            json!({"kind": "storage#object", "bucket": bucket, "name": name, "generation": "1"}),
        )
        .into_response()
    })
}

async fn metadata() -> Recorder {
    Recorder::start(Arc::new(|_, q| {
        if q.header("metadata-flavor").as_deref() != Some("Google") {
            return StatusCode::FORBIDDEN.into_response();
        }
        axum::Json(json!({"access_token": "md-token", "expires_in": 3599, "token_type": "Bearer"}))
            .into_response()
    }))
    .await
}

fn sink(api: &Recorder, md: &Recorder, bucket: &str) -> String {
    format!(
        "  - name: gcs\n    type: gcs\n    bucket: {bucket}\n    prefix: falco\n    endpoint: {}\n    metadata_url: {}\n    batch_wait_ms: 50\n",
        api.url(""),
        md.url("")
    )
}

#[tokio::test]
async fn a_lost_answer_stores_the_batch_once() {
    let objects = Arc::new(Mutex::new(HashMap::new()));
    let api = Recorder::start(gcs(objects.clone())).await;
    let md = metadata().await;
    let dir = tempfile::tempdir().unwrap();
    let (r, metrics) = start(dir.path(), &sink(&api, &md, "archive")).await;
    let a = alert("Archived", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    wait_sent(&metrics, "gcs", 1).await;
    r.shutdown().await;
    let reqs = api.requests();
    assert_eq!(reqs.len(), 2, "the upload, then its retry");
    assert_eq!(parts(&reqs[0]).unwrap(), parts(&reqs[1]).unwrap());
    let objs = objects.lock().unwrap();
    assert_eq!(objs.len(), 1);
    let (name, media) = objs.iter().next().unwrap();
    assert!(
        name.starts_with(&a.time.format("falco/%Y/%m/%d/%H/").to_string()),
        "{name}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&media[..])
        .read_to_string(&mut text)
        .unwrap();
    let got: Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(got["uuid"], a.uuid.to_string());
    assert!(crate::support::json_lines(&dir.path().join("dead-letter/gcs.jsonl")).is_empty());
}

#[tokio::test]
async fn a_missing_bucket_is_dead_lettered() {
    let api = Recorder::start(gcs(Arc::default())).await;
    let md = metadata().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sink(&api, &md, "nowhere"));
    let l = crate::support::refused_alert(&cfg, "gcs").await;
    assert!(l["reason"].as_str().unwrap().contains("404"), "{l}");
}
