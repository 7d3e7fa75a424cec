//! `alertmanager`: Prometheus Alertmanager's v2 API (`POST /api/v2/alerts`, a JSON array),
//! batched. Labels are bounded to `alertname` and `rule` (the rule), `priority`, `severity`
//! (mapped from the priority, `severity_map` overrides), `source`, `namespace` (when the alert
//! has one) and the static `labels`, so Alertmanager groups and silences on them; everything
//! else is in annotations ([`alerts`]). `endsAt` is set (`resolve_after_secs` past the alert,
//! or past now for an alert delivered late), so alerts resolve by themselves.
//!
//! High availability the way Alertmanager wants it: `urls` lists every instance and each batch
//! goes to all of them (a cluster de-duplicates notifications, not alerts). A batch is delivered
//! when at least one instance took it; when none did, it is retried if any failure was passing
//! (connection refused, 429, 5xx), else dead-lettered (400: Alertmanager refused the alerts).

pub mod alerts;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::sinks::registry::SinkType;
use crate::sinks::shape::PriorityMap;
use crate::sinks::util::SecretSetting;
use crate::sinks::webhook::{WithCommon, check_plain_url, post_json};
use crate::transport::{RetryPolicy, TransportError};

/// Batching of an `alertmanager` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerBatch {
    /// Most alerts per request.
    pub max_alerts: usize,
    /// Longest time the first alert of a batch waits for others, in milliseconds.
    #[serde(default)]
    pub max_wait_ms: u64,
}

impl Default for AlertmanagerBatch {
    fn default() -> Self {
        AlertmanagerBatch {
            max_alerts: 100,
            max_wait_ms: 0,
        }
    }
}

/// The Alertmanager settings of a sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerOwn {
    /// Every Alertmanager instance (`http://alertmanager-0:9093`); each gets every alert.
    pub urls: Vec<String>,
    /// Static labels added to every alert (`cluster: prod`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Overrides of the `severity` label per Falco priority.
    #[serde(default, skip_serializing_if = "PriorityMap::is_empty")]
    pub severity_map: PriorityMap,
    /// How long after the alert (or after delivery, when later) it resolves, in seconds.
    #[serde(default = "default_resolve")]
    pub resolve_after_secs: u64,
    /// Bearer token of Alertmanager's web config (prefer `bearer_token_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    /// Basic-auth user of Alertmanager's web config (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic-auth password (prefer `password_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// File holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Alerts per request (default 100, sent as soon as queued).
    #[serde(default)]
    pub batch: AlertmanagerBatch,
}

fn default_resolve() -> u64 {
    300
}

/// Settings of an `alertmanager` sink.
pub type AlertmanagerConfig = WithCommon<AlertmanagerOwn>;

impl AlertmanagerOwn {
    fn secrets(&self) -> [SecretSetting<'_>; 2] {
        [
            SecretSetting::new("bearer_token", &self.bearer_token, &self.bearer_token_file),
            SecretSetting::new("password", &self.password, &self.password_file),
        ]
    }
}

/// The `alertmanager` sink type.
pub struct Alertmanager;

impl SinkType for Alertmanager {
    const NAME: &'static str = "alertmanager";
    type Config = AlertmanagerConfig;

    fn validate(c: &AlertmanagerConfig) -> Result<(), Invalid> {
        c.common.validate()?;
        let o = &c.own;
        if o.urls.is_empty() {
            return Err(Invalid::new("urls", "list at least one Alertmanager"));
        }
        for (i, u) in o.urls.iter().enumerate() {
            check_plain_url("", u).map_err(|e| e.at("urls", i))?;
        }
        for (k, v) in &o.labels {
            if !alerts::is_label_name(k) {
                return Err(Invalid::new(
                    format!("labels.{k}"),
                    "a label name is [a-zA-Z_][a-zA-Z0-9_]*",
                ));
            }
            if alerts::CORE_LABELS.contains(&k.as_str()) {
                return Err(Invalid::new(
                    format!("labels.{k}"),
                    "set by kaudit from the alert; choose another name",
                ));
            }
            if v.is_empty() {
                return Err(Invalid::new(format!("labels.{k}"), "empty value"));
            }
        }
        for (p, v) in &o.severity_map {
            if v.is_empty() {
                return Err(Invalid::new(
                    format!("severity_map.{}", p.as_lower()),
                    "empty severity",
                ));
            }
        }
        positive("resolve_after_secs", o.resolve_after_secs)?;
        positive("batch.max_alerts", o.batch.max_alerts as u64)?;
        let [token, password] = o.secrets();
        token.check()?;
        password.check()?;
        password.paired_with_username(o.username.as_deref())?;
        if token.is_set() && password.is_set() {
            return Err(Invalid::new(
                "bearer_token",
                "set a bearer token or basic auth, not both",
            ));
        }
        Ok(())
    }

    async fn build(c: &AlertmanagerConfig) -> Result<Box<dyn Sink>, SinkError> {
        let mut urls = Vec::new();
        for u in &c.own.urls {
            let base = reqwest::Url::parse(u)
                .map_err(|e| SinkError::Permanent(format!("urls: {u:?}: {e}")))?;
            let url = base
                .join(&format!(
                    "{}/api/v2/alerts",
                    base.path().trim_end_matches('/')
                ))
                .map_err(|e| SinkError::Permanent(format!("urls: {u:?}: {e}")))?;
            urls.push(url);
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let [token, password] = c.own.secrets();
        let auth = match (token.read()?, password.read()?, &c.own.username) {
            (Some(t), _, _) => Some(format!("Bearer {}", t.trim())),
            (None, Some(p), Some(u)) => {
                use base64::Engine;
                let pair = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                Some(format!("Basic {pair}"))
            }
            _ => None,
        };
        if let Some(a) = auth {
            let mut v = HeaderValue::from_str(&a)
                .map_err(|_| SinkError::Permanent("credentials: not a valid header".into()))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        Ok(Box::new(AlertmanagerSink {
            cfg: c.clone(),
            client: c.common.client()?,
            urls,
            headers,
        }))
    }
}

/// Posts alert batches to every Alertmanager of a cluster.
pub struct AlertmanagerSink {
    cfg: AlertmanagerConfig,
    client: reqwest::Client,
    urls: Vec<reqwest::Url>,
    headers: HeaderMap,
}

impl Sink for AlertmanagerSink {
    fn send<'a>(&'a self, batch: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&alerts::postable(&self.cfg, batch, chrono::Utc::now()))
                .map_err(|e| SinkError::Permanent(format!("alertmanager: {e}")))?;
            let posts = self.urls.iter().map(|u| {
                post_json(
                    "alertmanager",
                    &self.client,
                    u.clone(),
                    &self.headers,
                    &RetryPolicy::STANDARD,
                    body.clone(),
                )
            });
            let results = futures_util::future::join_all(posts).await;
            let mut failures: Vec<TransportError> = Vec::new();
            for (u, r) in self.urls.iter().zip(results) {
                match r {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(instance = %u.host_str().unwrap_or(""), error = %e, "alertmanager instance did not take the alerts");
                        failures.push(e);
                    }
                }
            }
            if failures.len() < self.urls.len() {
                return Ok(());
            }
            let message = failures
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            if failures.iter().any(|e| e.retry) {
                Err(SinkError::Retryable {
                    message,
                    retry_after: failures.iter().filter_map(|e| e.retry_after).max(),
                })
            } else {
                Err(SinkError::Permanent(message))
            }
        })
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.own.batch.max_alerts,
            max_wait: Duration::from_millis(self.cfg.own.batch.max_wait_ms),
        }
    }
}
