//! `http`: POSTs alerts to a webhook as Falco JSON or as CloudEvents 1.0 structured events,
//! optionally batched (JSON array body) and gzipped.
//!
//! Classification: connection errors, timeouts, 408, 429 and 5xx are retryable (`Retry-After`
//! in seconds or as an HTTP date is honoured); any other non-2xx answer is permanent and the
//! alerts go to the dead-letter file with the status and the start of the response body.

mod config;
mod sink;

pub use config::{BodyFormat, HttpBatch, HttpConfig};
pub use sink::HttpSink;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::SinkRules;
use crate::sinks::registry::SinkType;

/// The `http` sink type.
pub struct Http;

impl SinkType for Http {
    const NAME: &'static str = "http";
    type Config = HttpConfig;

    fn validate(config: &HttpConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn validate_restricted(config: &HttpConfig, rules: &SinkRules) -> Result<(), Invalid> {
        config.validate_restricted(rules)
    }

    async fn build(config: &HttpConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(HttpSink::new(config.clone())?))
    }
}
