//! `teams`: Microsoft Teams through a Workflows webhook ("When a Teams webhook request is
//! received"; the Office 365 connectors are retired), one Adaptive Card per alert: a coloured
//! band with the priority and rule, the output (or the `template`'s text), the key fields as a
//! FactSet, a context line, and a button to the alert in the console.
//!
//! Limits: Teams takes messages up to 28 KB; a card over it is shrunk (the longest texts lose
//! length, halving until it fits; see `shape::fit_json`). Classification (the standard rules):
//! 202 is delivered; 429 and 5xx are retried after `Retry-After`; 400 (the flow refused the
//! body), 401/403 (a bad signature in the URL) and 404 (the flow is gone) dead-letter the alert.

pub mod card;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::secret::Secret;
use crate::sinks::registry::SinkType;
use crate::sinks::util::SecretSetting;
use crate::sinks::webhook::{self, JsonSink, WithCommon};
use crate::transport::RetryPolicy;

/// The Teams settings of a sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsOwn {
    /// The Workflows webhook URL (it carries its signature: prefer `webhook_url_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Secret>,
    /// File holding the webhook URL (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_file: Option<PathBuf>,
    /// Fields shown (as in `slack`); empty = every output field with a value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Settings of a `teams` sink.
pub type TeamsConfig = WithCommon<TeamsOwn>;

fn url(c: &TeamsConfig) -> SecretSetting<'_> {
    SecretSetting::new("webhook_url", &c.own.webhook_url, &c.own.webhook_url_file)
}

/// The `teams` sink type.
pub struct Teams;

impl SinkType for Teams {
    const NAME: &'static str = "teams";
    type Config = TeamsConfig;
    const SECRETS: &'static [&'static str] = &["webhook_url"];

    fn validate(c: &TeamsConfig) -> Result<(), Invalid> {
        c.common.validate()?;
        webhook::check_url(&url(c), &c.own.webhook_url)
    }

    async fn build(c: &TeamsConfig) -> Result<Box<dyn Sink>, SinkError> {
        let target = webhook::read_url(&url(c))?;
        let cfg = c.clone();
        let body = Box::new(move |alerts: &[Alert]| {
            let a = alerts
                .first()
                .ok_or_else(|| SinkError::Permanent("empty batch".into()))?;
            Ok(card::message(&cfg, a))
        });
        Ok(Box::new(JsonSink::new(
            "teams",
            c.common.client()?,
            target,
            RetryPolicy::STANDARD,
            body,
        )))
    }
}
