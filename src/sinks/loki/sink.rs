//! The push request of a batch, and sending it.
//!
//! Alerts are grouped into streams by their label set (rule, priority, source, namespace, plus
//! the constant labels), each stream's entries in time order: `{"streams": [{"stream": {...},
//! "values": [["<unix ns>", "<line>"], ...]}]}`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};

use super::{LineFormat, LokiConfig};
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::transport::{self, RetryPolicy};

/// Loki's default `max_label_value_length`; longer values are cut there (the line keeps all).
pub const MAX_LABEL_VALUE: usize = 2048;

/// The standard rules: 429 is Loki's rate limit (retried); 400 refuses the push for good (an
/// entry too old, a line too long); 401/403 are denials, retried for `spool.denied_retry_secs`.
const PUSH: RetryPolicy = RetryPolicy::STANDARD;

/// The labels of an alert's stream.
pub fn labels(a: &Alert, constant: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let cut = |s: String| s.chars().take(MAX_LABEL_VALUE).collect::<String>();
    let mut l = constant.clone();
    l.insert("rule".into(), cut(a.rule.clone()));
    l.insert("priority".into(), a.priority.as_str().into());
    l.insert("source".into(), cut(a.source.clone()));
    if let Some(ns) = a
        .field_text("ka.target.namespace")
        .filter(|n| !n.is_empty())
    {
        l.insert("namespace".into(), cut(ns));
    }
    l
}

/// The push body of a batch.
pub fn push_body(
    alerts: &[Alert],
    constant: &BTreeMap<String, String>,
    format: LineFormat,
) -> Value {
    let mut streams: BTreeMap<BTreeMap<String, String>, Vec<&Alert>> = BTreeMap::new();
    for a in alerts {
        streams.entry(labels(a, constant)).or_default().push(a);
    }
    let streams: Vec<Value> = streams
        .into_iter()
        .map(|(labels, mut entries)| {
            entries.sort_by_key(|a| a.time);
            let values: Vec<Value> = entries
                .iter()
                .map(|a| {
                    let ns = a.time.timestamp_nanos_opt().unwrap_or_default();
                    let line = match format {
                        LineFormat::Json => a.to_json(),
                        LineFormat::Text => a.output.clone(),
                    };
                    json!([ns.to_string(), line])
                })
                .collect();
            json!({"stream": labels, "values": values})
        })
        .collect();
    json!({ "streams": streams })
}

/// Pushes alerts to Loki.
pub struct LokiSink {
    cfg: LokiConfig,
    client: reqwest::Client,
    url: String,
    auth: Option<HeaderValue>,
}

impl LokiSink {
    /// Builds the client and reads the credentials.
    pub fn new(cfg: LokiConfig) -> Result<LokiSink, SinkError> {
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        let [password, token] = cfg.secrets();
        let auth = match (&cfg.username, password.read()?, token.read()?) {
            (_, _, Some(t)) => Some(format!("Bearer {t}")),
            (Some(u), Some(p), None) => {
                use base64::Engine;
                let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                Some(format!("Basic {b}"))
            }
            _ => None,
        };
        let auth = auth
            .map(|v| {
                HeaderValue::from_str(&v)
                    .map(|mut v| {
                        v.set_sensitive(true);
                        v
                    })
                    .map_err(|_| {
                        SinkError::Permanent("loki: the credentials are not a valid header".into())
                    })
            })
            .transpose()?;
        Ok(LokiSink {
            url: format!("{}/loki/api/v1/push", cfg.url.trim_end_matches('/')),
            cfg,
            client,
            auth,
        })
    }

    async fn push(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let body = push_body(alerts, &self.cfg.labels, self.cfg.format);
        let mut req = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default());
        if let Some(v) = &self.auth {
            req = req.header(AUTHORIZATION, v.clone());
        }
        if let Some(t) = &self.cfg.tenant_id {
            req = req.header("X-Scope-OrgID", t);
        }
        PUSH.send(&format!("loki {}", self.url), req).await?;
        Ok(())
    }
}

impl Sink for LokiSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.push(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.batch_max,
            max_wait: Duration::from_millis(self.cfg.batch_wait_ms),
        }
    }
}
