//! `splunk`: Splunk's HTTP Event Collector (`/services/collector/event`), a batch per request,
//! authenticated by a HEC token (`Authorization: Splunk <token>`).
//!
//! Each alert is one event: `event` = the alert's Falco JSON, `time` = its time, `host`,
//! `source`, `sourcetype`, an optional `index`, and indexed `fields` `uuid`, `rule`,
//! `priority`, `namespace` for fast searches. With `ack: true` a batch counts as delivered only
//! once the indexers acknowledged it. HEC's error codes are classified in [`sink`].

mod config;
pub mod sink;

pub use config::SplunkConfig;
pub use sink::{SplunkSink, event};

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `splunk` sink type.
pub struct Splunk;

impl SinkType for Splunk {
    const NAME: &'static str = "splunk";
    type Config = SplunkConfig;

    fn validate(config: &SplunkConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(config: &SplunkConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(SplunkSink::new(config.clone())?))
    }
}
