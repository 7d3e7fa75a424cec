//! `pubsub`: Google Cloud Pub/Sub, through the REST API
//! (`POST {endpoint}/v1/projects/{project}/topics/{topic}:publish`) over the shared reqwest
//! client, which keeps the build free of gRPC.
//!
//! Each alert is one message: `data` = the alert's Falco JSON, attributes `uuid`, `rule`,
//! `priority`, `source` plus the configured `attributes`, and an optional `orderingKey` rendered
//! from a template. A batch is one publish request; Pub/Sub answers with the message ids once it
//! has stored every message, so a 200 is the delivery confirmation.
//!
//! Authentication: a service-account key file (JWT bearer grant) or the metadata server
//! (Application Default Credentials on GKE, Workload Identity included). With an emulator
//! (`emulator_host`, or the `PUBSUB_EMULATOR_HOST` environment variable as Google's client
//! libraries honour it) requests go over plain HTTP without authentication.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::google::GoogleAuth;
use super::template::Template;
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::transport::{self, ClientTls, RetryPolicy, TransportError};
use futures_util::future::BoxFuture;

/// The attributes every message carries; custom `attributes` may not reuse these names.
pub const STANDARD_ATTRIBUTES: [&str; 4] = ["uuid", "rule", "priority", "source"];

/// Settings of a `pubsub` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubConfig {
    /// The Google Cloud project id that owns the topic.
    pub project: String,
    /// The topic id (the last part of `projects/P/topics/T`). It must exist: a missing topic is
    /// a permanent error (HTTP 404) and the alerts are dead-lettered.
    pub topic: String,
    /// Extra attributes set on every message (`cluster: prod`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Ordering key template (see `sinks::template`, values slugged), e.g.
    /// `{field:ka.target.namespace}`; unset = no ordering key. Subscribers only get ordered
    /// delivery when their subscription enables message ordering.
    #[serde(default)]
    pub ordering_key: Option<String>,
    /// API base URL (default `https://pubsub.googleapis.com`; a regional endpoint such as
    /// `https://europe-west1-pubsub.googleapis.com` keeps ordered messages in one region).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `host:port` of a Pub/Sub emulator: plain HTTP, no authentication. Defaults to the
    /// `PUBSUB_EMULATOR_HOST` environment variable when that is set.
    #[serde(default)]
    pub emulator_host: Option<String>,
    /// A service-account key file (JSON); without it the metadata server is asked.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Base URL of the metadata server (default `http://metadata.google.internal`).
    #[serde(default = "super::google::default_metadata_url")]
    pub metadata_url: String,
    /// Most alerts per publish request (Pub/Sub allows 1000 messages and 10 MB).
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate for the endpoints.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_endpoint() -> String {
    "https://pubsub.googleapis.com".into()
}
fn default_batch_max() -> usize {
    100
}
fn default_timeout_ms() -> u64 {
    10_000
}

impl PubsubConfig {
    /// Checks names, the template, URLs and files.
    pub fn validate(&self) -> Result<(), String> {
        if self.project.is_empty() || self.topic.is_empty() {
            return Err("`project` and `topic` must not be empty".into());
        }
        if self.topic.contains('/') || self.project.contains('/') {
            return Err("`project` and `topic` are ids, not paths (no `/`)".into());
        }
        if let Some(t) = &self.ordering_key {
            Template::parse(t).map_err(|e| format!("`ordering_key`: {e}"))?;
        }
        for k in self.attributes.keys() {
            if STANDARD_ATTRIBUTES.contains(&k.as_str()) {
                return Err(format!(
                    "`attributes.{k}`: set by kaudit on every message; choose another name"
                ));
            }
            if k.is_empty() || k.starts_with("goog") {
                return Err(format!(
                    "`attributes`: {k:?} is not a valid attribute name (empty or `goog` prefix)"
                ));
            }
        }
        if self.batch_max == 0 || self.batch_max > 1000 || self.timeout_ms == 0 {
            return Err("`batch_max` must be 1..=1000 and `timeout_ms` greater than 0".into());
        }
        for (key, u) in [
            ("endpoint", &self.endpoint),
            ("metadata_url", &self.metadata_url),
        ] {
            reqwest::Url::parse(u).map_err(|e| format!("`{key}` {u:?}: {e}"))?;
        }
        if let Some(p) = &self.credentials_file
            && !p.exists()
        {
            return Err(format!(
                "`credentials_file`: {} does not exist",
                p.display()
            ));
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls").to_string())?;
        }
        Ok(())
    }
}

/// The publish request body for a batch of alerts.
pub fn publish_body(
    alerts: &[Alert],
    extra: &BTreeMap<String, String>,
    ordering_key: Option<&Template>,
) -> Value {
    let messages: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let mut attrs = serde_json::Map::new();
            for (k, v) in extra {
                attrs.insert(k.clone(), v.clone().into());
            }
            attrs.insert("uuid".into(), a.uuid.to_string().into());
            attrs.insert("rule".into(), a.rule.clone().into());
            attrs.insert("priority".into(), a.priority.as_str().into());
            attrs.insert("source".into(), a.source.clone().into());
            let mut m = json!({
                "data": STANDARD.encode(a.to_json()),
                "attributes": attrs,
            });
            if let Some(t) = ordering_key {
                m["orderingKey"] = t.render_slugged(a).into();
            }
            m
        })
        .collect();
    json!({ "messages": messages })
}

/// Publishes alerts to a Pub/Sub topic.
pub struct PubsubSink {
    client: reqwest::Client,
    url: String,
    auth: Option<GoogleAuth>,
    attributes: BTreeMap<String, String>,
    ordering_key: Option<Template>,
    batch_max: usize,
}

impl PubsubSink {
    /// Builds the client and reads the key file.
    pub fn new(cfg: PubsubConfig) -> Result<PubsubSink, SinkError> {
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        let emulator = cfg
            .emulator_host
            .clone()
            .or_else(|| std::env::var("PUBSUB_EMULATOR_HOST").ok())
            .filter(|h| !h.is_empty());
        let (base, auth) = match emulator {
            Some(host) => (format!("http://{host}"), None),
            None => {
                let auth = match &cfg.credentials_file {
                    Some(path) => GoogleAuth::from_key_file(path, "pubsub")?,
                    None => GoogleAuth::metadata(&cfg.metadata_url, "pubsub"),
                };
                (cfg.endpoint.trim_end_matches('/').to_string(), Some(auth))
            }
        };
        let ordering_key = cfg
            .ordering_key
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(SinkError::Permanent)?;
        Ok(PubsubSink {
            client,
            url: format!(
                "{base}/v1/projects/{}/topics/{}:publish",
                cfg.project, cfg.topic
            ),
            auth,
            attributes: cfg.attributes,
            ordering_key,
            batch_max: cfg.batch_max,
        })
    }

    async fn publish(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let body = publish_body(alerts, &self.attributes, self.ordering_key.as_ref());
        let mut req = self.client.post(&self.url).json(&body);
        if let Some(auth) = &self.auth {
            req = req.bearer_auth(auth.token(&self.client).await?);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| TransportError::request("pubsub", e))?;
        match resp.status().as_u16() {
            401 => {
                if let Some(auth) = &self.auth {
                    auth.invalidate().await;
                }
                Err(SinkError::retryable("pubsub: HTTP 401: token refused"))
            }
            404 => {
                let text = resp.text().await.unwrap_or_default();
                Err(SinkError::Permanent(format!(
                    "pubsub: {}: topic not found (HTTP 404): {}",
                    self.url,
                    text.chars().take(300).collect::<String>()
                )))
            }
            _ => {
                RetryPolicy::STANDARD.check("pubsub", resp).await?;
                Ok(())
            }
        }
    }
}

impl Sink for PubsubSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.publish(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.batch_max,
            max_wait: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<PubsubConfig, String> {
        let c: PubsubConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c)
    }

    #[test]
    fn validates() {
        assert!(cfg("project: p\ntopic: t\n").is_ok());
        assert!(cfg("project: p\ntopic: t\nattributes: {rule: x}\n").is_err());
        assert!(cfg("project: p\ntopic: projects/p/topics/t\n").is_err());
        assert!(cfg("project: p\ntopic: t\nordering_key: \"{nope}\"\n").is_err());
        assert!(cfg("project: p\ntopic: t\nbogus: 1\n").is_err());
    }
}
