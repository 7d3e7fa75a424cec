//! `pubsub`: Google Cloud Pub/Sub, through the REST API
//! (`POST {endpoint}/v1/projects/{project}/topics/{topic}:publish`) over the shared reqwest
//! client, which keeps the build free of gRPC.
//!
//! Each alert is one message: `data` = the alert's Falco JSON, attributes `uuid`, `rule`,
//! `priority`, `source` plus the configured `attributes`, and an optional `orderingKey` rendered
//! from a template. A batch is one publish request; Pub/Sub answers with the message ids once it
//! has stored every message, so a 200 is the delivery confirmation.
//!
//! Authentication: a service-account key file (JWT bearer grant) or the metadata server
//! (Application Default Credentials on GKE, Workload Identity included). With an emulator
//! (`emulator_host`, or the `PUBSUB_EMULATOR_HOST` environment variable as Google's client
//! libraries honour it) requests go over plain HTTP without authentication.

mod config;
mod message;
mod sink;

pub use config::{PubsubConfig, STANDARD_ATTRIBUTES};
pub use message::publish_body;
pub use sink::PubsubSink;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::SinkRules;
use crate::sinks::registry::SinkType;

/// The `pubsub` sink type.
pub struct Pubsub;

impl SinkType for Pubsub {
    const NAME: &'static str = "pubsub";
    type Config = PubsubConfig;

    fn validate(config: &PubsubConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn validate_restricted(config: &PubsubConfig, rules: &SinkRules) -> Result<(), Invalid> {
        use crate::sinks::util::check_server;
        match &config.emulator_host {
            Some(h) => check_server("emulator_host", h, rules),
            None => crate::sinks::util::check_google_api(
                &config.endpoint,
                config.credentials_file.as_deref(),
                rules,
            ),
        }
    }

    async fn build(config: &PubsubConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(PubsubSink::new(config.clone())?))
    }
}
