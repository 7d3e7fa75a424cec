//! `opsgenie`: Opsgenie's Alert API (`POST /v2/alerts`, `Authorization: GenieKey <key>`), one
//! alert per request. The alias (Opsgenie's de-duplication key) is a template, by default the
//! alert's uuid; priority P1..P5 comes from the Falco priority ([`alert::priority`],
//! overridable with `priority_map`); `responders` route it to teams, users, escalations or
//! schedules.
//!
//! Classification (Opsgenie's documented answers): 202 is delivered (Opsgenie processes the
//! request asynchronously); 429 (rate limited) and 5xx are retried, after `Retry-After` when
//! sent; 422 (a field Opsgenie refuses), 400, 401/403 (a bad or disabled key) dead-letter the
//! alert with Opsgenie's message.

pub mod alert;

use std::path::PathBuf;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::secret::Secret;
use crate::sinks::registry::SinkType;
use crate::sinks::shape::{PriorityMap, check_priority_map};
use crate::sinks::template::AlertTemplate;
use crate::sinks::util::SecretSetting;
use crate::sinks::webhook::{JsonSink, WithCommon, check_plain_url};
use crate::transport::{RetryPolicy, Verdict};

/// Opsgenie's API (`https://api.eu.opsgenie.com` in the EU region).
pub const DEFAULT_URL: &str = "https://api.opsgenie.com";

/// How kaudit judges Opsgenie's answers.
pub const POLICY: RetryPolicy = RetryPolicy::STANDARD.on_with(
    422,
    Verdict::Refuse,
    "Opsgenie refused a field of the alert",
);

/// A team, user, escalation or schedule an alert is routed to (by `id`, `name`, or for a user
/// `username`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Responder {
    /// `team`, `user`, `escalation` or `schedule`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its name (teams, escalations, schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A user's username (e-mail address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// The Opsgenie settings of a sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsgenieOwn {
    /// The API integration's key (prefer `api_key_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// File holding the key (a mounted Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// The API's base URL.
    #[serde(default = "default_url")]
    pub url: String,
    /// The alert's alias; unset = the alert's uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<AlertTemplate>,
    /// Who the alert is routed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responders: Vec<Responder>,
    /// Tags added to the rule's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Overrides of the priority per Falco priority (`P1`..`P5`).
    #[serde(default, skip_serializing_if = "PriorityMap::is_empty")]
    pub priority_map: PriorityMap,
}

fn default_url() -> String {
    DEFAULT_URL.into()
}

/// Settings of an `opsgenie` sink.
pub type OpsgenieConfig = WithCommon<OpsgenieOwn>;

fn key(c: &OpsgenieConfig) -> SecretSetting<'_> {
    SecretSetting::new("api_key", &c.own.api_key, &c.own.api_key_file)
}

/// The `opsgenie` sink type.
pub struct Opsgenie;

impl SinkType for Opsgenie {
    const NAME: &'static str = "opsgenie";
    type Config = OpsgenieConfig;
    const SECRETS: &'static [&'static str] = &["api_key"];

    fn validate(c: &OpsgenieConfig) -> Result<(), Invalid> {
        c.common.validate()?;
        let k = key(c);
        k.check()?;
        if !k.is_set() {
            return Err(Invalid::new(
                "api_key",
                "set `api_key_file` (a mounted Secret) or `api_key`",
            ));
        }
        check_plain_url("url", &c.own.url)?;
        for (i, r) in c.own.responders.iter().enumerate() {
            let at = |e: Invalid| e.at("responders", i);
            if !["team", "user", "escalation", "schedule"].contains(&r.kind.as_str()) {
                return Err(at(Invalid::new(
                    "type",
                    format!("{:?}: use team, user, escalation or schedule", r.kind),
                )));
            }
            if r.id.is_none() && r.name.is_none() && r.username.is_none() {
                return Err(at(Invalid::new("", "set `id`, `name` or `username`")));
            }
        }
        check_priority_map("priority_map", &c.own.priority_map, &alert::PRIORITIES)
    }

    async fn build(c: &OpsgenieConfig) -> Result<Box<dyn Sink>, SinkError> {
        let api_key = key(c)
            .read()?
            .map(|k| k.trim().to_string())
            .ok_or_else(|| SinkError::Permanent("`api_key` is not set".into()))?;
        let auth = HeaderValue::from_str(&format!("GenieKey {api_key}"))
            .map_err(|_| SinkError::Permanent("api_key: not a valid header value".into()))?;
        let url = reqwest::Url::parse(&format!("{}/v2/alerts", c.own.url.trim_end_matches('/')))
            .map_err(|e| SinkError::Permanent(format!("url: {e}")))?;
        let cfg = c.clone();
        let body = Box::new(move |alerts: &[crate::alert::Alert]| {
            let a = alerts
                .first()
                .ok_or_else(|| SinkError::Permanent("empty batch".into()))?;
            Ok(alert::create(&cfg, a))
        });
        Ok(Box::new(
            JsonSink::new("opsgenie", c.common.client()?, url, POLICY, body)
                .header(AUTHORIZATION, auth),
        ))
    }
}
