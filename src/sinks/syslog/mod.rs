//! `syslog`: RFC 5424 messages over TCP or TLS with octet-counted framing (RFC 6587, RFC 5425),
//! or over UDP (RFC 5426), to rsyslog, syslog-ng or a SIEM's syslog intake.
//!
//! Each alert is one message (see [`message`]): the Falco priority is the syslog severity, the
//! alert's uuid, rule, priority, source and namespace travel as structured data, and MSG is the
//! alert's Falco JSON (or its output line). Syslog has no acknowledgement: over TCP and TLS a
//! batch counts as delivered once written and flushed, a broken connection fails the batch
//! (retried, from the spool); over UDP nothing is confirmed.

mod config;
pub mod message;
mod sink;

pub use config::{FACILITIES, MsgFormat, Protocol, SyslogConfig};
pub use sink::SyslogSink;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `syslog` sink type.
pub struct Syslog;

impl SinkType for Syslog {
    const NAME: &'static str = "syslog";
    type Config = SyslogConfig;

    fn validate(config: &SyslogConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(config: &SyslogConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(SyslogSink::new(config.clone())?))
    }
}
