//! `loki`: Grafana Loki's push API (`POST /loki/api/v1/push`, JSON), a batch per request.
//!
//! Labels are bounded, so that streams stay few: `rule`, `priority`, `source`, `namespace`
//! (`ka.target.namespace`, when the alert has one) and the constant `labels` of the config;
//! everything else is in the line (the alert's Falco JSON, or its output). The entry time is the
//! alert's time. 429 (rate limited) and 5xx are retried, honouring `Retry-After`; 400 (an entry
//! too old, a line too long) dead-letters; 401/403 are denials, retried for `spool.denied_retry_secs`, then
//! dead-lettered. Basic authentication (Grafana Cloud), a bearer token, and `X-Scope-OrgID`.

mod config;
mod sink;

pub use config::{ALERT_LABELS, LineFormat, LokiConfig, label_name_ok};
pub use sink::{LokiSink, MAX_LABEL_VALUE, labels, push_body};

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `loki` sink type.
pub struct Loki;

impl SinkType for Loki {
    const NAME: &'static str = "loki";
    type Config = LokiConfig;

    fn validate(config: &LokiConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(config: &LokiConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(LokiSink::new(config.clone())?))
    }
}
