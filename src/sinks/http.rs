//! `http`: POSTs alerts to a webhook as Falco JSON or as CloudEvents 1.0 structured events,
//! optionally batched (JSON array body) and gzipped.
//!
//! Classification: connection errors, timeouts, 408, 429 and 5xx are retryable (`Retry-After`
//! in seconds or as an HTTP date is honoured); any other non-2xx answer is permanent and the
//! alerts go to the dead-letter file with the status and the start of the response body.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::alert::{Alert, format_time};
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::transport::{self, ClientTls, RetryPolicy};
use futures_util::future::BoxFuture;

/// The body format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// The alert's Falco JSON (`application/json`).
    #[default]
    Json,
    /// A CloudEvents 1.0 structured-mode event with the alert as `data`
    /// (`application/cloudevents+json`; batches: `application/cloudevents-batch+json`).
    Cloudevents,
}

/// Batching of an `http` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBatch {
    /// Most alerts per request.
    pub max_alerts: usize,
    /// Longest time the first alert of a batch waits for others, in milliseconds.
    #[serde(default)]
    pub max_wait_ms: u64,
}

/// Settings of an `http` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The receiver's URL (`http://` or `https://`).
    pub url: String,
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra request headers (they win over the defaults, e.g. a custom `Content-Type`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra request headers whose values are read from files (secrets such as `Authorization`).
    #[serde(default)]
    pub header_files: BTreeMap<String, PathBuf>,
    /// Request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate (mTLS).
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// `json` (default) or `cloudevents`.
    #[serde(default)]
    pub format: BodyFormat,
    /// CloudEvents `source` attribute.
    #[serde(default = "default_ce_source")]
    pub cloudevents_source: String,
    /// CloudEvents `type` attribute (falcosidekick's is `falco.rule.output.v1`).
    #[serde(default = "default_ce_type")]
    pub cloudevents_type: String,
    /// Send several alerts per request as a JSON array.
    #[serde(default)]
    pub batch: Option<HttpBatch>,
    /// Compress bodies with gzip (`Content-Encoding: gzip`).
    #[serde(default)]
    pub gzip: bool,
}

fn default_method() -> String {
    "POST".into()
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_ce_source() -> String {
    "kaudit".into()
}
fn default_ce_type() -> String {
    "falco.rule.output.v1".into()
}

impl HttpConfig {
    /// Checks the URL, method, headers, files and batch.
    pub fn validate(&self) -> Result<(), String> {
        let url =
            reqwest::Url::parse(&self.url).map_err(|e| format!("`url` {:?}: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`url` {:?}: use http:// or https://", self.url));
        }
        method(&self.method)?;
        headers(&self.headers, &BTreeMap::new())?;
        for (k, p) in &self.header_files {
            if !p.exists() {
                return Err(format!(
                    "`header_files.{k}`: {} does not exist",
                    p.display()
                ));
            }
        }
        if self.timeout_ms == 0 {
            return Err("`timeout_ms` must be greater than 0".into());
        }
        if let Some(b) = &self.batch
            && b.max_alerts == 0
        {
            return Err("`batch.max_alerts` must be greater than 0".into());
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls").to_string())?;
        }
        Ok(())
    }
}

fn method(m: &str) -> Result<reqwest::Method, String> {
    match m.to_ascii_uppercase().as_str() {
        "POST" => Ok(reqwest::Method::POST),
        "PUT" => Ok(reqwest::Method::PUT),
        "PATCH" => Ok(reqwest::Method::PATCH),
        other => Err(format!("`method` {other:?}: use POST, PUT or PATCH")),
    }
}

fn headers(
    inline: &BTreeMap<String, String>,
    files: &BTreeMap<String, PathBuf>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    let mut add = |k: &str, v: &str| -> Result<(), String> {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k:?}: {e}"))?;
        let mut value = HeaderValue::from_str(v).map_err(|e| format!("header {k:?}: {e}"))?;
        value.set_sensitive(files.contains_key(k));
        map.insert(name, value);
        Ok(())
    };
    for (k, v) in inline {
        add(k, v)?;
    }
    for (k, p) in files {
        let v = std::fs::read_to_string(p)
            .map_err(|e| format!("header_files.{k}: {}: {e}", p.display()))?;
        add(k, v.trim_end_matches(['\r', '\n']))?;
    }
    Ok(map)
}

/// Sends alerts to an HTTP receiver.
pub struct HttpSink {
    cfg: HttpConfig,
    client: reqwest::Client,
    method: reqwest::Method,
    headers: HeaderMap,
}

impl HttpSink {
    /// Builds the client (reads header files and TLS files now).
    pub fn new(cfg: HttpConfig) -> Result<HttpSink, SinkError> {
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        let method = method(&cfg.method).map_err(SinkError::Permanent)?;
        let headers = headers(&cfg.headers, &cfg.header_files).map_err(SinkError::Permanent)?;
        Ok(HttpSink {
            cfg,
            client,
            method,
            headers,
        })
    }

    /// The CloudEvents structured form of an alert.
    pub fn cloudevent(&self, a: &Alert) -> Value {
        json!({
            "specversion": "1.0",
            "id": a.uuid.to_string(),
            "source": self.cfg.cloudevents_source,
            "type": self.cfg.cloudevents_type,
            "time": format_time(&a.time),
            "datacontenttype": "application/json",
            "data": a,
        })
    }

    fn body(&self, alerts: &[Alert]) -> Result<(Vec<u8>, &'static str), SinkError> {
        let item = |a: &Alert| match self.cfg.format {
            BodyFormat::Json => serde_json::to_value(a).unwrap_or(Value::Null),
            BodyFormat::Cloudevents => self.cloudevent(a),
        };
        let (value, ctype) = match (&self.cfg.batch, self.cfg.format) {
            (Some(_), BodyFormat::Json) => (
                Value::Array(alerts.iter().map(item).collect()),
                "application/json",
            ),
            (Some(_), BodyFormat::Cloudevents) => (
                Value::Array(alerts.iter().map(item).collect()),
                "application/cloudevents-batch+json",
            ),
            (None, f) => {
                let one = alerts
                    .first()
                    .map(item)
                    .ok_or_else(|| SinkError::Permanent("empty batch".into()))?;
                let ct = match f {
                    BodyFormat::Json => "application/json",
                    BodyFormat::Cloudevents => "application/cloudevents+json",
                };
                (one, ct)
            }
        };
        let json = serde_json::to_vec(&value).map_err(|e| SinkError::Permanent(e.to_string()))?;
        Ok((json, ctype))
    }
}

impl Sink for HttpSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            // Without batching, a batch of several (never made by delivery) goes one by one.
            if self.cfg.batch.is_none() && alerts.len() > 1 {
                for a in alerts {
                    self.send(std::slice::from_ref(a)).await?;
                }
                return Ok(());
            }
            let (mut body, ctype) = self.body(alerts)?;
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
            if self.cfg.gzip {
                body = transport::encode::gzip(&body)
                    .map_err(|e| SinkError::retryable(format!("gzip: {e}")))?;
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            // Configured headers replace the defaults of the same name.
            for (k, v) in &self.headers {
                headers.insert(k.clone(), v.clone());
            }
            let req = self
                .client
                .request(self.method.clone(), &self.cfg.url)
                .headers(headers);
            RetryPolicy::STANDARD.send("http", req.body(body)).await?;
            Ok(())
        })
    }

    fn batch_policy(&self) -> BatchPolicy {
        match &self.cfg.batch {
            Some(b) => BatchPolicy {
                max: b.max_alerts,
                max_wait: Duration::from_millis(b.max_wait_ms),
            },
            None => BatchPolicy::default(),
        }
    }
}
