//! `rabbitmq`: AMQP 0-9-1 (lapin) with publisher confirms: each alert's Falco JSON is published
//! persistent (`delivery_mode` 2), `mandatory`, with `message_id` = the alert's uuid and headers
//! `uuid`, `rule`, `priority`, `source`; a batch counts as delivered once the broker confirmed
//! every message. A message no queue takes (mandatory, returned) or an exchange that does not
//! exist dead-letters; the connection failing or the broker nacking is retried.

mod config;
mod sink;

pub use config::RabbitmqConfig;
pub use sink::RabbitmqSink;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `rabbitmq` sink type.
pub struct Rabbitmq;

impl SinkType for Rabbitmq {
    const NAME: &'static str = "rabbitmq";
    type Config = RabbitmqConfig;

    fn validate(config: &RabbitmqConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(config: &RabbitmqConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(RabbitmqSink::new(config.clone())?))
    }
}
