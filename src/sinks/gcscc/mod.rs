//! `gcscc`: Google Cloud Security Command Center, in one of two modes.
//!
//! * `connector`: compatible with the Falco chart's `integrations.gcscc` and the
//!   sysdig-gcscc-connector: the alert's Falco JSON is POSTed to `webhook_url` with the header
//!   `Authorization: <token>` (the raw token, no `Bearer`).
//! * `api`: SCC v2 `createFinding`, `POST {endpoint}/v2/organizations/{org}/sources/{source}/
//!   locations/{location}/findings?findingId={uuid without dashes}`. A retry of a finding
//!   already created gets 409 and counts as delivered. OAuth tokens come from a service-account
//!   key (JWT bearer grant, RS256, to the key's `token_uri`) or from the metadata server, and are
//!   cached until a minute before they expire.
//!
//! Finding fields: `category` = rule; `severity` = Emergency/Alert/Critical → CRITICAL,
//! Error → HIGH, Warning → MEDIUM, Notice/Informational/Debug → LOW; `eventTime` = alert time;
//! `state` ACTIVE; `findingClass` THREAT; `description` = output; `resourceName` = the
//! Kubernetes object (see [`resource_name`]); `sourceProperties` = output fields (keys made
//! SCC-safe: non-alphanumerics → `_`, e.g. `ka_target_name`) plus `rule`, `priority`, `source`,
//! `hostname`, `tags`, `uuid`.

mod config;
mod finding;
mod sink;

pub use config::{GcsccConfig, GcsccMode};
pub use finding::{finding, resource_name, severity};
pub use sink::GcsccSink;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::SinkRules;
use crate::sinks::registry::SinkType;

/// The `gcscc` sink type.
pub struct Gcscc;

impl SinkType for Gcscc {
    const NAME: &'static str = "gcscc";
    type Config = GcsccConfig;

    fn validate(config: &GcsccConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn validate_restricted(config: &GcsccConfig, rules: &SinkRules) -> Result<(), Invalid> {
        use crate::sinks::util::check_url_host;
        match config.mode {
            GcsccMode::Connector => match &config.webhook_url {
                Some(u) => check_url_host("webhook_url", u, rules),
                None => Ok(()),
            },
            GcsccMode::Api => crate::sinks::util::check_google_api(
                &config.endpoint,
                config.credentials_file.as_deref(),
                rules,
            ),
        }
    }

    async fn build(config: &GcsccConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(GcsccSink::new(config.clone())?))
    }
}
