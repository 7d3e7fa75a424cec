//! `sns`: AWS Simple Notification Service through `aws-sdk-sns`, on the shared SDK config
//! (`crate::aws`: the credential chain AWS maintains, or static keys from files). One `Publish`
//! per alert; the message and its attributes are described in [`message`].
//!
//! Classification: throttling, internal errors, an expired token, 429, 5xx and no answer at all
//! are retried; any other answer (a missing topic, no permission) is permanent and the alert is
//! dead-lettered.

mod config;
pub mod message;
mod sink;

pub use config::SnsConfig;
pub use message::{MAX_ATTRIBUTES, attribute_name, attributes};
pub use sink::SnsSink;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::SinkRules;
use crate::sinks::registry::SinkType;

/// The `sns` sink type.
pub struct Sns;

impl SinkType for Sns {
    const NAME: &'static str = "sns";
    type Config = SnsConfig;

    fn validate(config: &SnsConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn validate_restricted(config: &SnsConfig, rules: &SinkRules) -> Result<(), Invalid> {
        match &config.endpoint {
            Some(e) => crate::sinks::util::check_url_host("endpoint", e, rules),
            None => Ok(()),
        }
    }

    async fn build(config: &SnsConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(SnsSink::new(config.clone()).await?))
    }
}
