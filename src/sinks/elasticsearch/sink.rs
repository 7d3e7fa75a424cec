//! Sending a batch as one `_bulk` request, and sending again only the items that failed.
//!
//! Delivery retries a failed batch as a whole; the sink remembers which of its alerts the
//! cluster already confirmed, and leaves them out of the next request. A batch succeeds once
//! every item is indexed; it is refused (dead-lettered) only when every item left is refused for
//! good, with each refused uuid and its reason in the dead letter's reason.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use uuid::Uuid;

use super::ElasticsearchConfig;
use super::bulk::{ItemOutcome, body, outcomes};
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::transport::{self, RetryPolicy};

/// The standard rules: 401 and 403 are denials (a key being rotated, a role being fixed), retried
/// for `spool.denied_retry_secs` and then dead-lettered like every other sink's.
const BULK: RetryPolicy = RetryPolicy::STANDARD;

/// The most uuids remembered as confirmed: a few batches' worth.
const REMEMBER: usize = 100_000;

/// Indexes alerts with `_bulk`.
pub struct ElasticsearchSink {
    cfg: ElasticsearchConfig,
    what: &'static str,
    client: reqwest::Client,
    url: String,
    auth: Option<HeaderValue>,
    confirmed: Mutex<HashSet<Uuid>>,
}

impl ElasticsearchSink {
    /// Builds the client and reads the credentials; `what` names the flavour in messages.
    pub fn new(cfg: ElasticsearchConfig, what: &'static str) -> Result<Self, SinkError> {
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        let [password, api_key] = cfg.secrets();
        let auth = match (&cfg.username, password.read()?, api_key.read()?) {
            (_, _, Some(key)) => Some(format!("ApiKey {key}")),
            (Some(user), Some(pw), None) => {
                use base64::Engine;
                let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
                Some(format!("Basic {b}"))
            }
            _ => None,
        };
        let auth = auth
            .map(|v| {
                let mut v = HeaderValue::from_str(&v).map_err(|_| {
                    SinkError::Permanent(format!("{what}: the credentials are not a valid header"))
                })?;
                v.set_sensitive(true);
                Ok::<_, SinkError>(v)
            })
            .transpose()?;
        let mut url = format!("{}/_bulk", cfg.url.trim_end_matches('/'));
        if let Some(p) = &cfg.pipeline {
            let mut u = crate::sinks::util::parse_url("url", &url)
                .map_err(|e| SinkError::Permanent(e.to_string()))?;
            u.query_pairs_mut().append_pair("pipeline", p);
            url = u.to_string();
        }
        Ok(ElasticsearchSink {
            cfg,
            what,
            client,
            url,
            auth,
            confirmed: Mutex::new(HashSet::new()),
        })
    }

    fn confirmed(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.confirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the alerts of a batch that is finished (delivered or dead-lettered).
    fn done(&self, alerts: &[Alert]) {
        let mut c = self.confirmed();
        for a in alerts {
            c.remove(&a.uuid);
        }
    }

    async fn bulk(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let pending: Vec<&Alert> = {
            let c = self.confirmed();
            alerts.iter().filter(|a| !c.contains(&a.uuid)).collect()
        };
        if pending.is_empty() {
            self.done(alerts);
            return Ok(());
        }
        let mut req = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body(&pending, |a| self.cfg.index_at(&a.time)));
        if let Some(v) = &self.auth {
            req = req.header(AUTHORIZATION, v.clone());
        }
        let what = format!("{} {}", self.what, self.url);
        let resp = BULK.send(&what, req).await?;
        let answer = resp
            .bytes()
            .await
            .map_err(|e| SinkError::retryable(format!("{what}: {e}")))?;
        let results = outcomes(&answer, pending.len())
            .map_err(|e| SinkError::retryable(format!("{what}: {e}")))?;
        let (mut retry, mut refused) = (Vec::new(), Vec::new());
        {
            let mut c = self.confirmed();
            if c.len() > REMEMBER {
                c.clear();
            }
            for (a, o) in pending.iter().zip(results) {
                match o {
                    ItemOutcome::Indexed => {
                        c.insert(a.uuid);
                    }
                    ItemOutcome::Retry(r) => retry.push(format!("{}: {r}", a.uuid)),
                    ItemOutcome::Refused(r) => refused.push(format!("{}: {r}", a.uuid)),
                }
            }
        }
        if !retry.is_empty() {
            return Err(SinkError::retryable(format!(
                "{what}: {} of {} documents failed and will be sent again ({} refused): {}",
                retry.len(),
                pending.len(),
                refused.len(),
                retry[0]
            )));
        }
        self.done(alerts);
        if refused.is_empty() {
            return Ok(());
        }
        Err(SinkError::Permanent(format!(
            "{what}: {} of {} documents refused, the others are indexed: {}",
            refused.len(),
            alerts.len(),
            refused.join("; ")
        )))
    }
}

impl Sink for ElasticsearchSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.bulk(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.batch_max,
            max_wait: Duration::from_millis(self.cfg.batch_wait_ms),
        }
    }
}
