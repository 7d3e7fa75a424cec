//! `googlechat`: a Google Chat space's incoming webhook, one message per alert: a short `text`
//! line (priority and rule, or the `template`'s text) and a card (cardsV2) with the output, the
//! key fields, a context line and a button to the alert in the console. With `thread_key` (a
//! template, e.g. `{{ rule }}`), alerts with the same key reply in one thread.
//!
//! Limits: a message is at most 32,000 bytes; a larger one is shrunk (the longest texts lose
//! length; see `shape::fit_json`). Classification (the standard rules): 200 is delivered; 429
//! (`RESOURCE_EXHAUSTED`: a space takes about one message per second from webhooks) and 5xx are
//! retried; 400 (`INVALID_ARGUMENT`), 401/403 (a bad key or token) and 404 (the space is gone)
//! dead-letter the alert with Google's message.

pub mod message;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::secret::Secret;
use crate::sinks::registry::SinkType;
use crate::sinks::template::AlertTemplate;
use crate::sinks::util::SecretSetting;
use crate::sinks::webhook::{self, WithCommon, post_json};
use crate::transport::RetryPolicy;

/// The Google Chat settings of a sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleChatOwn {
    /// The space's webhook URL (it carries its key and token: prefer `webhook_url_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Secret>,
    /// File holding the webhook URL (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_file: Option<PathBuf>,
    /// Fields shown (as in `slack`); empty = every output field with a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Alerts with the same rendered key go to one thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_key: Option<AlertTemplate>,
}

/// Settings of a `googlechat` sink.
pub type GoogleChatConfig = WithCommon<GoogleChatOwn>;

fn url(c: &GoogleChatConfig) -> SecretSetting<'_> {
    SecretSetting::new("webhook_url", &c.own.webhook_url, &c.own.webhook_url_file)
}

/// The `googlechat` sink type.
pub struct GoogleChat;

impl SinkType for GoogleChat {
    const NAME: &'static str = "googlechat";
    type Config = GoogleChatConfig;
    const SECRETS: &'static [&'static str] = &["webhook_url"];

    fn validate(c: &GoogleChatConfig) -> Result<(), Invalid> {
        c.common.validate()?;
        webhook::check_url(&url(c), &c.own.webhook_url)
    }

    async fn build(c: &GoogleChatConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(GoogleChatSink {
            url: webhook::read_url(&url(c))?,
            client: c.common.client()?,
            cfg: c.clone(),
        }))
    }
}

/// Posts alerts to a Google Chat space.
pub struct GoogleChatSink {
    cfg: GoogleChatConfig,
    client: reqwest::Client,
    url: reqwest::Url,
}

impl GoogleChatSink {
    async fn post(&self, a: &Alert) -> Result<(), SinkError> {
        let mut url = self.url.clone();
        if let Some(t) = &self.cfg.own.thread_key {
            let key = t.render_or(a, None, || a.rule.clone());
            url.query_pairs_mut()
                .append_pair("threadKey", &key)
                .append_pair("messageReplyOption", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD");
        }
        let body = serde_json::to_vec(&message::message(&self.cfg, a))
            .map_err(|e| SinkError::Permanent(format!("googlechat: {e}")))?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        post_json(
            "googlechat",
            &self.client,
            url,
            &headers,
            &RetryPolicy::STANDARD,
            body,
        )
        .await?;
        Ok(())
    }
}

impl Sink for GoogleChatSink {
    fn send<'a>(
        &'a self,
        alerts: &'a [Alert],
    ) -> futures_util::future::BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(crate::delivery::sink::one_by_one(alerts, |a| self.post(a)))
    }
}
