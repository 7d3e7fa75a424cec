//! `kafka`: produces each alert to a Kafka topic with librdkafka (crate `rdkafka`, librdkafka
//! built from source and linked statically against the system's OpenSSL and zlib).
//!
//! Message: value = the alert's Falco JSON; key as configured (`none`, `rule`, `namespace` =
//! `ka.target.namespace`, or `{field: NAME}` for any output field; a missing field gives no
//! key); headers `uuid`, `rule`, `priority`, `source`.
//!
//! Delivery is confirmed by the broker: `acks=all` with the idempotent producer by default, and
//! a batch counts as sent only when every message's delivery report came back without error.
//! Unreachable brokers make the reports fail with a timeout after `timeout_ms`: retryable, the
//! alerts wait in the spool. Topics are never created on the fly
//! (`allow.auto.create.topics=false`): producing to a topic that does not exist fails with a
//! permanent error naming the topic, once librdkafka has given up waiting for it to appear
//! (`topic.metadata.propagation.max.ms`, 30 s by default), and the alerts are dead-lettered.
//!
//! Security: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL` with `PLAIN`, `SCRAM-SHA-256` or
//! `SCRAM-SHA-512`; CA and client certificate files. IBM Event Streams: `event_streams:
//! {credentials_file: ...}` reads the service-credentials JSON as IBM Cloud hands it out and
//! configures `SASL_SSL`/`PLAIN` from it.

mod config;
mod event_streams;
mod sink;

pub use config::{
    Acks, Compression, KafkaConfig, KafkaKey, KafkaSasl, SaslMechanism, SecurityProtocol,
};
pub use event_streams::{
    EventStreams, EventStreamsCredentials, EventStreamsError, event_streams_settings,
};
pub use sink::{KafkaSink, bootstrap, classify};

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::SinkRules;
use crate::sinks::registry::SinkType;

/// The `kafka` sink type.
pub struct Kafka;

impl SinkType for Kafka {
    const NAME: &'static str = "kafka";
    type Config = KafkaConfig;

    fn validate(config: &KafkaConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn validate_restricted(config: &KafkaConfig, rules: &SinkRules) -> Result<(), Invalid> {
        for (i, b) in config.brokers.iter().enumerate() {
            crate::sinks::util::check_server(&format!("brokers[{i}]"), b, rules)?;
        }
        Ok(())
    }

    async fn build(config: &KafkaConfig) -> Result<Box<dyn Sink>, SinkError> {
        let sink = KafkaSink::new(config.clone())?;
        if crate::transport::access::current().dry_run {
            return Ok(Box::new(crate::sinks::tenancy::DryRun));
        }
        Ok(Box::new(sink))
    }
}
