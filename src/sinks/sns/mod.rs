//! `sns`: AWS Simple Notification Service, through SNS's Query API (`Action=Publish`) over the
//! shared HTTP client, signed with SigV4 and authenticated by the standard credential chain
//! (both in `crate::aws`). One request per alert; the message and its attributes are described
//! in [`message`].
//!
//! Classification: throttling, internal errors, 429 and 5xx are retried (an expired token also
//! drops the cached credentials first); any other answer (a missing topic, no permission) is
//! permanent and the alert is dead-lettered.

mod config;
pub mod message;
mod sink;

pub use crate::aws::sigv4::uri_encode;
pub use config::SnsConfig;
pub use message::{MAX_ATTRIBUTES, attribute_name, attributes, publish_form};
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
        Ok(Box::new(SnsSink::new(config.clone())?))
    }
}
