//! `mqtt`: publishes each alert's Falco JSON at QoS 1 (at least once) to a topic made from a
//! template (`falco/{priority}/{rule}`), over MQTT 3.1.1, plain or TLS, with user/password
//! authentication. A batch counts as delivered once the broker acknowledged every publish
//! (PUBACK); see [`sink`] for how acknowledgements are matched.

mod config;
pub mod sink;

pub use config::MqttConfig;
pub use sink::MqttSink;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `mqtt` sink type.
pub struct Mqtt;

impl SinkType for Mqtt {
    const NAME: &'static str = "mqtt";
    type Config = MqttConfig;

    fn validate(config: &MqttConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(config: &MqttConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(MqttSink::new(config.clone())?))
    }
}
