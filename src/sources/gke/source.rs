//! The pull-append-ack loop of the `gke` source.

use std::time::Duration;

use base64::Engine;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::GkeConfig;
use super::convert::convert;
use crate::delivery::Backoff;
use crate::gcp::GoogleAuth;
use crate::sources::{Skip, Source, SourceContext, SourceError, Stopped};
use crate::transport::{self, RetryPolicy, TransportError};

/// How much longer than a pull's wait an HTTP request may take.
const PULL_MARGIN: Duration = Duration::from_secs(10);

/// A subscription that does not exist is not worth hammering, but the operator may create it:
/// everything is retried, with backoff.
const CALLS: RetryPolicy = RetryPolicy::STANDARD;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<Received>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Received {
    ack_id: String,
    #[serde(default)]
    message: Message,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Message {
    #[serde(default)]
    data: String,
    #[serde(default)]
    message_id: String,
}

/// Reads one subscription.
pub struct GkeSource {
    cfg: GkeConfig,
    client: reqwest::Client,
    base: String,
    auth: Option<GoogleAuth>,
}

impl GkeSource {
    /// Builds the client and reads the key file.
    pub fn new(cfg: GkeConfig) -> Result<GkeSource, SourceError> {
        // A pull waits up to `timeout_ms` for messages (below); the HTTP timeout is a margin
        // above it.
        let client = transport::client(
            Duration::from_millis(cfg.timeout_ms) + PULL_MARGIN,
            cfg.tls.as_ref(),
        )
        .map_err(|e| SourceError::Config(e.to_string()))?;
        let emulator = cfg
            .emulator_host
            .clone()
            .or_else(|| std::env::var("PUBSUB_EMULATOR_HOST").ok())
            .filter(|h| !h.is_empty());
        let (base, auth) = match emulator {
            Some(host) => (format!("http://{host}"), None),
            None => {
                let auth =
                    GoogleAuth::new(cfg.credentials_file.as_deref(), &cfg.metadata_url, "gke")
                        .map_err(|e| SourceError::Config(e.to_string()))?;
                (cfg.endpoint.trim_end_matches('/').to_string(), Some(auth))
            }
        };
        Ok(GkeSource {
            cfg,
            client,
            base,
            auth,
        })
    }

    fn url(&self, verb: &str) -> String {
        format!("{}/v1/{}{verb}", self.base, self.cfg.subscription)
    }

    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, TransportError> {
        match &self.auth {
            Some(a) => a.send(&self.client, what, CALLS, req).await,
            None => CALLS.send(what, req).await,
        }
    }

    async fn pull(&self) -> Result<Vec<Received>, TransportError> {
        let req = self
            .client
            .post(self.url(":pull"))
            .json(&json!({"maxMessages": self.cfg.max_messages}));
        let what = format!("gke: pull {}", self.cfg.subscription);
        let r: PullResponse = self
            .call(req, &what)
            .await?
            .json()
            .await
            .map_err(|e| TransportError::retryable(format!("{what}: {e}")))?;
        Ok(r.received_messages)
    }

    async fn ack(&self, ids: &[String]) -> Result<(), TransportError> {
        let req = self
            .client
            .post(self.url(":acknowledge"))
            .json(&json!({ "ackIds": ids }));
        self.call(
            req,
            &format!("gke: acknowledge on {}", self.cfg.subscription),
        )
        .await
        .map(|_| ())
    }

    async fn read(self, mut ctx: SourceContext) -> Result<(), Stopped> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut acked: u64 = 0;
        let wait = Duration::from_millis(self.cfg.timeout_ms);
        loop {
            // A long pull: Pub/Sub answers when messages come (or with none after a while). Cut
            // short on our side, it is an empty pull, not an error (messages the server leased
            // to it meanwhile come back after their ack deadline).
            let pulled = match ctx.or_stop(tokio::time::timeout(wait, self.pull())).await? {
                Ok(r) => r,
                Err(_) => Ok(Vec::new()),
            };
            let got = match pulled {
                Ok(m) => {
                    ctx.stats.ok();
                    backoff.reset();
                    m
                }
                Err(e) => {
                    ctx.stats.error(&e);
                    let wait = backoff.next_delay();
                    tracing::warn!(source = ctx.name(), error = %e, retry_in_ms = wait.as_millis() as u64, "pull failed");
                    ctx.sleep(wait).await?;
                    continue;
                }
            };
            if got.is_empty() {
                // The emulator (and a pull cut short) answers at once when nothing waits.
                ctx.sleep(Duration::from_millis(200)).await?;
                continue;
            }
            let mut batch = ctx.batch();
            for r in &got {
                self.take(&ctx, &mut batch, &r.message);
            }
            ctx.append(&mut batch).await?;
            let ids: Vec<String> = got.into_iter().map(|r| r.ack_id).collect();
            // Acked only now: a crash before this line gets them redelivered.
            let mut ack_backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            for attempt in 1..=5 {
                match ctx.or_stop(self.ack(&ids)).await? {
                    Ok(()) => {
                        acked += ids.len() as u64;
                        ctx.stats
                            .position(format!("acked {acked} messages"), acked as f64);
                        break;
                    }
                    Err(e) => {
                        ctx.stats.error(&e);
                        tracing::warn!(source = ctx.name(), error = %e, attempt, "acknowledge failed; the messages will be redelivered if it keeps failing");
                        ctx.sleep(ack_backoff.next_delay()).await?;
                    }
                }
            }
        }
    }

    /// Adds one message's event to the batch, or counts why not.
    fn take(&self, ctx: &SourceContext, batch: &mut crate::sources::EventBatch, m: &Message) {
        let Ok(data) = base64::engine::general_purpose::STANDARD.decode(&m.data) else {
            batch.skip(Skip::Malformed);
            tracing::warn!(source = ctx.name(), message_id = %m.message_id, "message data is not base64");
            return;
        };
        let entry: Value = match serde_json::from_slice(&data) {
            Ok(v) => v,
            Err(e) => {
                batch.skip(Skip::Malformed);
                tracing::warn!(source = ctx.name(), message_id = %m.message_id, error = %e, "message data is not JSON");
                return;
            }
        };
        match convert(&entry) {
            Ok(ev) => {
                let raw = serde_json::to_vec(&ev).unwrap_or_default();
                batch.push_json(&raw);
            }
            Err(why) => {
                batch.skip(why);
                tracing::debug!(source = ctx.name(), message_id = %m.message_id, reason = why.as_str(), "message skipped");
            }
        }
    }
}

impl Source for GkeSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.read(ctx).await;
        })
    }

    fn check(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async move {
            let what = format!("gke: get {}", self.cfg.subscription);
            let r = self
                .call(self.client.get(self.url("")), &what)
                .await
                .map_err(|e| SourceError::Service(e.to_string()))?;
            let v: Value = r
                .json()
                .await
                .map_err(|e| SourceError::Service(format!("{what}: {e}")))?;
            Ok(format!(
                "subscription {} on topic {} (ack deadline {} s)",
                self.cfg.subscription,
                v["topic"].as_str().unwrap_or("?"),
                v["ackDeadlineSeconds"].as_i64().unwrap_or(0)
            ))
        })
    }
}
