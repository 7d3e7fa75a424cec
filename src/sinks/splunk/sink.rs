//! Events, the request, and indexer acknowledgement.
//!
//! A batch is one request to `/services/collector/event`: the events' JSON objects one after
//! the other. Without `ack`, HEC's 200 (`{"text":"Success","code":0}`) is the confirmation.
//! With `ack`, the request carries the channel (`X-Splunk-Request-Channel`), the answer an
//! `ackId`, and the sink polls `/services/collector/ack` until Splunk reports it indexed.

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};

use super::SplunkConfig;
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::transport::{self, RetryPolicy};

/// HEC's answers, by the standard rules: 400 with codes 5–7 and 10–16 (bad data, an index the
/// token may not write, acknowledgement disabled on the token) refuse for good; 500 (code 8) and
/// 503 (code 9, busy; unhealthy queues) are retried; 401/403 (codes 1–4: a token missing,
/// disabled or unknown) are denials, retried for `spool.denied_retry_secs`, then dead-lettered.
const HEC: RetryPolicy = RetryPolicy::STANDARD;

/// How often an acknowledgement is asked for.
const ACK_POLL: Duration = Duration::from_millis(250);

/// The HEC event of an alert.
pub fn event(a: &Alert, cfg: &SplunkConfig) -> Value {
    let mut fields = Map::new();
    fields.insert("uuid".into(), a.uuid.to_string().into());
    fields.insert("rule".into(), a.rule.clone().into());
    fields.insert("priority".into(), a.priority.as_str().into());
    if let Some(ns) = a.field_text("ka.target.namespace") {
        fields.insert("namespace".into(), ns.into());
    }
    let secs = a.time.timestamp() as f64 + f64::from(a.time.timestamp_subsec_micros()) / 1e6;
    let mut e = json!({
        "time": format!("{secs:.6}").parse::<f64>().unwrap_or(secs),
        "host": cfg.host.clone().unwrap_or_else(|| a.hostname.clone()),
        "source": cfg.source,
        "sourcetype": cfg.sourcetype,
        "event": a,
        "fields": fields,
    });
    if let Some(i) = &cfg.index {
        e["index"] = i.clone().into();
    }
    e
}

/// Sends alerts to Splunk's HTTP Event Collector.
pub struct SplunkSink {
    cfg: SplunkConfig,
    client: reqwest::Client,
    event_url: String,
    ack_url: String,
    auth: HeaderValue,
    channel: String,
}

impl SplunkSink {
    /// Builds the client and reads the token.
    pub fn new(cfg: SplunkConfig) -> Result<SplunkSink, SinkError> {
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        let token = cfg
            .token()
            .read()?
            .ok_or_else(|| SinkError::Permanent("splunk: no token".into()))?;
        let mut auth = HeaderValue::from_str(&format!("Splunk {token}"))
            .map_err(|_| SinkError::Permanent("splunk: the token is not a valid header".into()))?;
        auth.set_sensitive(true);
        let base = cfg.url.trim_end_matches('/').to_string();
        let channel = cfg
            .channel
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(SplunkSink {
            event_url: format!("{base}/services/collector/event"),
            ack_url: format!("{base}/services/collector/ack?channel={channel}"),
            cfg,
            client,
            auth,
            channel,
        })
    }

    fn request(&self, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if self.cfg.ack {
            req = req.header("X-Splunk-Request-Channel", &self.channel);
        }
        req
    }

    async fn post(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let mut body = Vec::new();
        for a in alerts {
            body.extend(serde_json::to_vec(&event(a, &self.cfg)).unwrap_or_default());
            body.push(b'\n');
        }
        let what = format!("splunk {}", self.event_url);
        let resp = HEC.send(&what, self.request(&self.event_url, body)).await?;
        if !self.cfg.ack {
            return Ok(());
        }
        let answer: Value = resp
            .json()
            .await
            .map_err(|e| SinkError::retryable(format!("{what}: unreadable answer: {e}")))?;
        let id = answer["ackId"].as_u64().ok_or_else(|| {
            SinkError::Permanent(format!(
                "{what}: no ackId in the answer {answer}: is indexer acknowledgement enabled on the token? (or set ack: false)"
            ))
        })?;
        self.await_ack(id).await
    }

    async fn await_ack(&self, id: u64) -> Result<(), SinkError> {
        let what = format!("splunk {}", self.ack_url);
        let deadline = Instant::now() + Duration::from_millis(self.cfg.ack_timeout_ms);
        loop {
            let body = serde_json::to_vec(&json!({ "acks": [id] })).unwrap_or_default();
            let answer: Value = HEC
                .send(&what, self.request(&self.ack_url, body))
                .await?
                .json()
                .await
                .map_err(|e| SinkError::retryable(format!("{what}: unreadable answer: {e}")))?;
            if answer["acks"][id.to_string()].as_bool() == Some(true) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(SinkError::retryable(format!(
                    "{what}: ackId {id} not acknowledged within {} ms; the batch is sent again",
                    self.cfg.ack_timeout_ms
                )));
            }
            tokio::time::sleep(ACK_POLL).await;
        }
    }
}

impl Sink for SplunkSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.post(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.batch_max,
            max_wait: Duration::from_millis(self.cfg.batch_wait_ms),
        }
    }
}
