//! `slack`, `mattermost`, `rocketchat`: incoming webhooks that speak Slack's message format.
//!
//! Slack gets a Block Kit message inside an attachment, so the alert has its priority's colour
//! bar: the priority and rule as the message text, the output (or the `template`'s text), the key
//! fields, a context line (source, host, time, uuid) and a button to the alert in the console.
//! Mattermost and Rocket.Chat take Slack's older attachment format (they do not render Block
//! Kit): the same content as a coloured attachment with title, text and short fields.
//! [`message`] builds the bodies and cuts every field at its API's documented limit.
//!
//! Classification (the standard rules): 2xx delivered; 429 (Slack allows about one message per
//! second per webhook) and 5xx retried after `Retry-After`; 400 (`invalid_payload`), 403
//! (`action_prohibited`), 404 (`no_service`, a revoked webhook) and 410 (`channel_is_archived`)
//! dead-letter the alert with Slack's reason.

pub mod message;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::secret::Secret;
use crate::sinks::registry::SinkType;
use crate::sinks::util::SecretSetting;
use crate::sinks::webhook::{self, JsonSink, WithCommon, check_plain_url};
use crate::transport::RetryPolicy;

pub use message::Flavor;

/// The Slack-format settings of a sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackOwn {
    /// The incoming webhook URL (it is the credential: prefer `webhook_url_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Secret>,
    /// File holding the webhook URL (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_file: Option<PathBuf>,
    /// Channel override (`#security`); only legacy webhooks honour it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Display name of the poster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Emoji icon of the poster (`:rotating_light:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_emoji: Option<String>,
    /// Image icon of the poster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    /// Fields shown (output fields by name, or `rule`, `priority`, `source`, `hostname`,
    /// `tags`); empty = every output field with a value, in the rule's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Settings of a `slack`, `mattermost` or `rocketchat` sink.
pub type SlackConfig = WithCommon<SlackOwn>;

impl SlackOwn {
    fn url(&self) -> SecretSetting<'_> {
        SecretSetting::new("webhook_url", &self.webhook_url, &self.webhook_url_file)
    }
}

fn validate(c: &SlackConfig) -> Result<(), Invalid> {
    c.common.validate()?;
    webhook::check_url(&c.own.url(), &c.own.webhook_url)?;
    if let Some(u) = &c.own.icon_url {
        check_plain_url("icon_url", u)?;
    }
    Ok(())
}

async fn build(c: &SlackConfig, flavor: Flavor) -> Result<Box<dyn Sink>, SinkError> {
    let url = webhook::read_url(&c.own.url())?;
    let cfg = c.clone();
    let body = Box::new(move |alerts: &[crate::alert::Alert]| {
        let a = alerts
            .first()
            .ok_or_else(|| SinkError::Permanent("empty batch".into()))?;
        Ok(message::body(&cfg, flavor, a))
    });
    Ok(Box::new(JsonSink::new(
        flavor.name(),
        c.common.client()?,
        url,
        RetryPolicy::STANDARD,
        body,
    )))
}

/// The `slack` sink type.
pub struct Slack;

impl SinkType for Slack {
    const NAME: &'static str = "slack";
    type Config = SlackConfig;
    const SECRETS: &'static [&'static str] = &["webhook_url"];

    fn validate(config: &SlackConfig) -> Result<(), Invalid> {
        validate(config)
    }

    async fn build(config: &SlackConfig) -> Result<Box<dyn Sink>, SinkError> {
        build(config, Flavor::Slack).await
    }
}

/// The `mattermost` sink type (Slack's attachment format).
pub struct Mattermost;

impl SinkType for Mattermost {
    const NAME: &'static str = "mattermost";
    type Config = SlackConfig;
    const SECRETS: &'static [&'static str] = &["webhook_url"];

    fn validate(config: &SlackConfig) -> Result<(), Invalid> {
        validate(config)
    }

    async fn build(config: &SlackConfig) -> Result<Box<dyn Sink>, SinkError> {
        build(config, Flavor::Mattermost).await
    }
}

/// The `rocketchat` sink type (Slack's attachment format).
pub struct Rocketchat;

impl SinkType for Rocketchat {
    const NAME: &'static str = "rocketchat";
    type Config = SlackConfig;
    const SECRETS: &'static [&'static str] = &["webhook_url"];

    fn validate(config: &SlackConfig) -> Result<(), Invalid> {
        validate(config)
    }

    async fn build(config: &SlackConfig) -> Result<Box<dyn Sink>, SinkError> {
        build(config, Flavor::Rocketchat).await
    }
}
