//! Forwarding audit batches to Falco's k8s-audit endpoint, byte for byte, and watching Falco's
//! health. Ordering, buffering across Falco restarts and retries belong to `delivery`; this file
//! only knows how to talk to Falco and how to classify its answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use futures_util::future::BoxFuture;

use super::FalcoConfig;
use crate::delivery::inbox::InboxRecord;
use crate::delivery::{Hold, Lane, SinkError};
use crate::detect::BatchTap;
use crate::secret::resolve_secret;

/// A forwarder that could not be set up, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A config value is unusable.
    #[error("falco.{key}: {message}")]
    Config {
        /// The key under `falco.`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// An HTTP client for Falco's k8s-audit endpoint.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    url: reqwest::Url,
    token: Option<String>,
}

impl Forwarder {
    /// Builds the client from `falco.*` settings.
    pub fn new(cfg: &FalcoConfig) -> Result<Forwarder, ForwardError> {
        crate::transport::tls::install_crypto_provider();
        let url: reqwest::Url = cfg.forward_url.parse().map_err(|e| ForwardError::Config {
            key: "forward_url",
            message: format!("{:?}: {e}", cfg.forward_url),
        })?;
        let token = resolve_secret(
            cfg.forward_token.as_ref(),
            cfg.forward_token_file.as_deref(),
            "forward_token",
        )
        .map_err(|e| ForwardError::Config {
            key: "forward_token",
            message: e.to_string(),
        })?
        .map(|s| s.expose().to_string());
        let tls = cfg
            .forward_ca_file
            .as_ref()
            .map(|ca| crate::transport::ClientTls::ca(ca.clone()));
        let timeout = Duration::from_secs(cfg.forward_timeout_secs.max(1));
        let client =
            crate::transport::client(timeout, tls.as_ref()).map_err(|e| ForwardError::Config {
                key: "forward_ca_file",
                message: e.to_string(),
            })?;
        Ok(Forwarder { client, url, token })
    }

    /// Posts one batch exactly as it arrived. Connection errors, timeouts, 408, 429 and 5xx are
    /// retryable (Falco restarting); any other non-2xx means Falco refused the data for good.
    pub async fn post(&self, content_type: &str, body: bytes::Bytes) -> Result<(), SinkError> {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let what = format!("falco {}", self.url);
        crate::transport::RetryPolicy::STANDARD
            .send(&what, req)
            .await?;
        Ok(())
    }
}

/// Falco's health as last seen: unknown (no health URL or not checked yet), up, or down.
#[derive(Clone, Default)]
pub struct FalcoHealth(Arc<AtomicU8>);

impl FalcoHealth {
    /// `unknown`, `up` or `down`.
    pub fn as_str(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            1 => "up",
            2 => "down",
            _ => "unknown",
        }
    }

    fn set(&self, up: bool) {
        self.0.store(if up { 1 } else { 2 }, Ordering::Relaxed);
    }
}

/// Polls `url` (with the forwarder's HTTP client) every `every` until `stop` fires; records the result in `health` and `gauge` (1/0).
pub fn spawn_health(
    forwarder: &Forwarder,
    url: String,
    every: Duration,
    health: FalcoHealth,
    gauge: Gauge,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    // The forwarder's client: same CA for an https Falco, and its timeouts.
    let client = forwarder.client.clone();
    tokio::spawn(async move {
        let mut was = None;
        loop {
            let up = matches!(client.get(&url).send().await, Ok(r) if r.status().is_success());
            health.set(up);
            gauge.set(i64::from(up));
            if was != Some(up) {
                let shown = crate::secret::redact_text(&url);
                if up {
                    tracing::info!(url = %shown, "Falco is up");
                } else {
                    tracing::warn!(url = %shown, "Falco is down; audit batches wait in the spool");
                }
                was = Some(up);
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}

/// The forwarder as a destination of the delivery spool: each record is one batch, sent alone
/// and in order (the lane retries the head until Falco takes it).
pub struct ForwardDeliver {
    forwarder: Forwarder,
}

impl ForwardDeliver {
    /// Wraps a forwarder.
    pub fn new(forwarder: Forwarder) -> Self {
        ForwardDeliver { forwarder }
    }
}

impl crate::delivery::Deliver for ForwardDeliver {
    fn deliver<'a>(
        &'a self,
        records: &'a [crate::delivery::Record],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            for r in records {
                let (ct, body) = decode(&r.payload).ok_or_else(|| {
                    SinkError::Permanent(format!(
                        "spooled record {} is not a forwarded batch",
                        r.seq
                    ))
                })?;
                self.forwarder.post(&ct, body).await?;
            }
            Ok(())
        })
    }
}

/// The spooled form of a forwarded batch: its content type, a newline, then the body as received.
pub fn encode(batch: &InboxRecord) -> bytes::Bytes {
    let mut b = Vec::with_capacity(batch.content_type.len() + 1 + batch.body.len());
    b.extend_from_slice(batch.content_type.as_bytes());
    b.push(b'\n');
    b.extend_from_slice(&batch.body);
    bytes::Bytes::from(b)
}

/// Reads back [`encode`]: `(content type, body)`.
pub fn decode(payload: &bytes::Bytes) -> Option<(String, bytes::Bytes)> {
    let nl = payload.iter().position(|b| *b == b'\n')?;
    let ct = std::str::from_utf8(&payload[..nl]).ok()?.to_string();
    Some((ct, payload.slice(nl + 1..)))
}

/// The forwarder's durable lane as a tap on detection: every accepted batch is spooled for Falco
/// before it is evaluated.
pub struct ForwardTap(pub Arc<Lane>);

impl BatchTap for ForwardTap {
    fn take<'a>(&'a self, batch: &'a InboxRecord, hold: Hold) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .enqueue(encode(batch), Some(hold))
                .await
                .map_err(|e| format!("cannot queue the batch for Falco: {e}"))
        })
    }
}

/// Name of the forwarder's lane: its spool directory, dead-letter file and metric label. It has
/// a `.`, which sink names cannot, so it never collides with a sink.
pub const LANE: &str = "falco.forward";
