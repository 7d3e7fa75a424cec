//! Sending: the body (Falco JSON or CloudEvents, one alert or a JSON array), optional gzip, and
//! the standard classification of the answer.

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::config::{headers, method};
use super::{BodyFormat, HttpConfig};
use crate::alert::{Alert, format_time};
use crate::delivery::sink::one_by_one;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::transport::{self, RetryPolicy};

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
        let method = method(&cfg.method).map_err(|e| SinkError::Permanent(e.to_string()))?;
        if transport::access::current().egress.is_some() && method != reqwest::Method::POST {
            return Err(SinkError::Permanent(
                "a restricted sink only POSTs (egress: restricted)".into(),
            ));
        }
        let headers = headers(&cfg.headers, &cfg.header_files)
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
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
                return one_by_one(alerts, |a| self.send(std::slice::from_ref(a))).await;
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
