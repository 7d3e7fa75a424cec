//! `redis`: appends each alert to a Redis stream with `XADD <stream> MAXLEN ~ <n> * ...`, a
//! batch per pipeline, over one connection that reconnects by itself.
//!
//! Entry fields: `uuid`, `rule`, `priority`, `source` (for consumers that filter without
//! parsing) and `alert`, the alert's Falco JSON. A batch counts as delivered once Redis answered
//! every XADD with the entry's id. Consumers read with `XREAD`/`XREADGROUP`; the uuid lets them
//! drop the duplicates a retry after a lost answer can make. TLS with `rediss://`.

mod config;
mod sink;

pub use config::RedisConfig;
pub use sink::{RedisSink, classify};

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `redis` sink type.
pub struct Redis;

impl SinkType for Redis {
    const NAME: &'static str = "redis";
    type Config = RedisConfig;

    fn validate(config: &RedisConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(config: &RedisConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(RedisSink::new(config.clone())?))
    }
}
