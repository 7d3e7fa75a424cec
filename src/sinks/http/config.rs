//! The `http` sink's settings, and the method and headers they make.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, existing_file, positive};
use crate::sinks::SinkRules;
use crate::sinks::util::{check_url_host, parse_url};
use crate::transport::ClientTls;
use crate::transport::egress::forbidden_header;

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
    #[serde(default = "crate::transport::default_timeout_ms")]
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
fn default_ce_source() -> String {
    "kaudit".into()
}
fn default_ce_type() -> String {
    "falco.rule.output.v1".into()
}

impl HttpConfig {
    /// Checks the URL, method, headers, files and batch.
    pub fn validate(&self) -> Result<(), Invalid> {
        let url = parse_url("url", &self.url)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new(
                "url",
                format!("{:?}: use http:// or https://", self.url),
            ));
        }
        method(&self.method)?;
        headers(&self.headers, &BTreeMap::new())?;
        for (k, p) in &self.header_files {
            existing_file(&format!("header_files.{k}"), p)?;
        }
        positive("timeout_ms", self.timeout_ms)?;
        if let Some(b) = &self.batch {
            positive("batch.max_alerts", b.max_alerts as u64)?;
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }
}

impl HttpConfig {
    /// A restricted (tenant) sink: the URL's host must pass the egress policy, the method is
    /// POST, and no header may steer the request elsewhere (`Host`, proxies, framing) or speak
    /// to a metadata server.
    pub fn validate_restricted(&self, rules: &SinkRules) -> Result<(), Invalid> {
        check_url_host("url", &self.url, rules)?;
        if method(&self.method)? != reqwest::Method::POST {
            return Err(Invalid::new(
                "method",
                "a restricted sink only POSTs (egress: restricted)",
            ));
        }
        for (key, names) in [
            ("headers", self.headers.keys().collect::<Vec<_>>()),
            ("header_files", self.header_files.keys().collect()),
        ] {
            for n in names {
                if forbidden_header(n) {
                    return Err(Invalid::new(
                        format!("{key}.{n}"),
                        "a restricted sink may not set this header",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The request method of `method:`.
pub(super) fn method(m: &str) -> Result<reqwest::Method, Invalid> {
    match m.to_ascii_uppercase().as_str() {
        "POST" => Ok(reqwest::Method::POST),
        "PUT" => Ok(reqwest::Method::PUT),
        "PATCH" => Ok(reqwest::Method::PATCH),
        other => Err(Invalid::new(
            "method",
            format!("{other:?}: use POST, PUT or PATCH"),
        )),
    }
}

/// The configured headers: `headers` as given, `header_files` read now (marked sensitive).
pub(super) fn headers(
    inline: &BTreeMap<String, String>,
    files: &BTreeMap<String, PathBuf>,
) -> Result<HeaderMap, Invalid> {
    let mut map = HeaderMap::new();
    let mut add = |key: String, k: &str, v: &str| -> Result<(), Invalid> {
        let bad =
            |e: &dyn std::fmt::Display| Invalid::new(key.clone(), format!("header {k:?}: {e}"));
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(&e))?;
        let mut value = HeaderValue::from_str(v).map_err(|e| bad(&e))?;
        value.set_sensitive(files.contains_key(k));
        map.insert(name, value);
        Ok(())
    };
    for (k, v) in inline {
        add(format!("headers.{k}"), k, v)?;
    }
    for (k, p) in files {
        let key = format!("header_files.{k}");
        let v = std::fs::read_to_string(p)
            .map_err(|e| Invalid::new(key.clone(), format!("{}: {e}", p.display())))?;
        add(key, k, v.trim_end_matches(['\r', '\n']))?;
    }
    Ok(map)
}
