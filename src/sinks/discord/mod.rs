//! `discord`: a Discord channel webhook. Each alert is one embed: the priority and rule as title
//! (linking to the alert in the console when configured), the output (or the `template`'s text)
//! as description, the priority's colour, the key fields, and a footer with source, host and
//! uuid. Mentions are disabled (`allowed_mentions: {parse: []}`): text from an audit event cannot
//! ping `@everyone`. The URL gets `wait=true`, so Discord answers only once the message exists.
//!
//! Alerts queued together go in one message, up to 10 embeds (Discord allows five messages per
//! two seconds per webhook, so a burst waits less in the spool).
//!
//! Limits ([`embed`]): title 256, description 4,096, at most 25 fields (name 256, value 1,024),
//! footer 2,048 characters, and 6,000 characters for all the embeds of a message, shared equally
//! between them. Classification (the standard rules): 2xx is delivered; 429 is retried after
//! `Retry-After` (fractional seconds honoured) and 5xx too; 400 (`50006` and other codes), 401
//! and 404 (`Unknown Webhook`) dead-letter the batch with Discord's message.

pub mod embed;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::invalid::Invalid;
use crate::secret::Secret;
use crate::sinks::registry::SinkType;
use crate::sinks::util::SecretSetting;
use crate::sinks::webhook::{self, JsonSink, WithCommon, check_plain_url};
use crate::transport::RetryPolicy;

/// The Discord settings of a sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordOwn {
    /// The webhook URL (it carries its token: prefer `webhook_url_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Secret>,
    /// File holding the webhook URL (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_file: Option<PathBuf>,
    /// Display name of the poster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Avatar image of the poster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// Fields shown (as in `slack`); empty = every output field with a value (25 at most).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Settings of a `discord` sink.
pub type DiscordConfig = WithCommon<DiscordOwn>;

fn url(c: &DiscordConfig) -> SecretSetting<'_> {
    SecretSetting::new("webhook_url", &c.own.webhook_url, &c.own.webhook_url_file)
}

/// The `discord` sink type.
pub struct Discord;

impl SinkType for Discord {
    const NAME: &'static str = "discord";
    type Config = DiscordConfig;
    const SECRETS: &'static [&'static str] = &["webhook_url"];

    fn validate(c: &DiscordConfig) -> Result<(), Invalid> {
        c.common.validate()?;
        webhook::check_url(&url(c), &c.own.webhook_url)?;
        if let Some(u) = &c.own.avatar_url {
            check_plain_url("avatar_url", u)?;
        }
        Ok(())
    }

    async fn build(c: &DiscordConfig) -> Result<Box<dyn Sink>, SinkError> {
        let mut target = webhook::read_url(&url(c))?;
        target.query_pairs_mut().append_pair("wait", "true");
        let cfg = c.clone();
        let body = Box::new(move |alerts: &[Alert]| Ok(embed::message(&cfg, alerts)));
        Ok(Box::new(
            JsonSink::new(
                "discord",
                c.common.client()?,
                target,
                RetryPolicy::STANDARD,
                body,
            )
            .batched(BatchPolicy {
                max: embed::EMBEDS_MAX,
                max_wait: std::time::Duration::ZERO,
            }),
        ))
    }
}
