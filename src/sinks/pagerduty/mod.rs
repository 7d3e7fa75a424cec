//! `pagerduty`: PagerDuty Events API v2 (`POST /v2/enqueue`), one `trigger` event per alert.
//! The routing key (an integration key of 32 characters) comes inline or, better, from a file
//! (a mounted Secret). The event's `dedup_key` is a template, by default the alert's uuid, so a
//! retried or re-delivered alert updates the same incident instead of opening another; severity
//! comes from the Falco priority ([`event::severity`], overridable with `severity_map`).
//!
//! Classification (PagerDuty's documented answers): 202 is delivered; 429 (rate limited) and
//! 5xx are retried with backoff (after `Retry-After` when sent); 400 (`invalid event`: a bad
//! routing key or field) dead-letters the alert with PagerDuty's errors. No batching: the API
//! takes one event per request.

pub mod event;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::secret::Secret;
use crate::sinks::registry::SinkType;
use crate::sinks::shape::{PriorityMap, check_priority_map};
use crate::sinks::template::AlertTemplate;
use crate::sinks::util::SecretSetting;
use crate::sinks::webhook::{JsonSink, WithCommon, check_plain_url};
use crate::transport::RetryPolicy;

/// PagerDuty's Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The PagerDuty settings of a sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyOwn {
    /// The integration's routing key (prefer `routing_key_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<Secret>,
    /// File holding the routing key (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key_file: Option<PathBuf>,
    /// The endpoint (`https://events.eu.pagerduty.com/v2/enqueue` for the EU service region).
    #[serde(default = "default_url")]
    pub url: String,
    /// The event's `dedup_key`; unset = the alert's uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<AlertTemplate>,
    /// Overrides of the severity per Falco priority (`critical`, `error`, `warning`, `info`).
    #[serde(default, skip_serializing_if = "PriorityMap::is_empty")]
    pub severity_map: PriorityMap,
}

fn default_url() -> String {
    DEFAULT_URL.into()
}

/// Settings of a `pagerduty` sink.
pub type PagerDutyConfig = WithCommon<PagerDutyOwn>;

fn key(c: &PagerDutyConfig) -> SecretSetting<'_> {
    SecretSetting::new("routing_key", &c.own.routing_key, &c.own.routing_key_file)
}

/// The `pagerduty` sink type.
pub struct PagerDuty;

impl SinkType for PagerDuty {
    const NAME: &'static str = "pagerduty";
    type Config = PagerDutyConfig;
    const SECRETS: &'static [&'static str] = &["routing_key"];

    fn validate(c: &PagerDutyConfig) -> Result<(), Invalid> {
        c.common.validate()?;
        let k = key(c);
        k.check()?;
        match &c.own.routing_key {
            Some(v) if v.expose().trim().len() != event::ROUTING_KEY_LEN => {
                return Err(Invalid::new(
                    "routing_key",
                    format!("a routing key has {} characters", event::ROUTING_KEY_LEN),
                ));
            }
            None if !k.is_set() => {
                return Err(Invalid::new(
                    "routing_key",
                    "set `routing_key_file` (a mounted Secret) or `routing_key`",
                ));
            }
            _ => {}
        }
        check_plain_url("url", &c.own.url)?;
        check_priority_map("severity_map", &c.own.severity_map, &event::SEVERITIES)
    }

    async fn build(c: &PagerDutyConfig) -> Result<Box<dyn Sink>, SinkError> {
        let routing_key = key(c)
            .read()?
            .map(|k| k.trim().to_string())
            .ok_or_else(|| SinkError::Permanent("`routing_key` is not set".into()))?;
        if routing_key.len() != event::ROUTING_KEY_LEN {
            tracing::warn!(
                "pagerduty: the routing key has {} characters, not {}; PagerDuty will refuse the events",
                routing_key.len(),
                event::ROUTING_KEY_LEN
            );
        }
        let url = reqwest::Url::parse(&c.own.url)
            .map_err(|e| SinkError::Permanent(format!("url: {e}")))?;
        let cfg = c.clone();
        let body = Box::new(move |alerts: &[Alert]| {
            let a = alerts
                .first()
                .ok_or_else(|| SinkError::Permanent("empty batch".into()))?;
            Ok(event::trigger(&cfg, &routing_key, a))
        });
        Ok(Box::new(JsonSink::new(
            "pagerduty",
            c.common.client()?,
            url,
            RetryPolicy::STANDARD,
            body,
        )))
    }
}
