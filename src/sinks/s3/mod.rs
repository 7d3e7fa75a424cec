//! `s3`: archives alerts to Amazon S3 (or an S3-compatible store) with the AWS SDK for Rust:
//! each batch is one gzip'd NDJSON object (one alert JSON per line) under a time-partitioned key
//! (see `sinks::archive`), written in one `PutObject`, so an object is whole or absent, never
//! partial. The write is conditional (`If-None-Match: *`): a batch sent again after a lost
//! answer finds its object there (412), which counts as delivered. Credentials are static (from
//! files, as a mounted Secret gives them) or the SDK's default chain (IRSA, EKS Pod Identity,
//! the instance role), loaded by `aws::load`.

mod config;
mod sink;

pub use config::S3Config;
pub use sink::S3Sink;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `s3` sink type.
pub struct S3;

impl SinkType for S3 {
    const NAME: &'static str = "s3";
    type Config = S3Config;

    fn validate(config: &S3Config) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(config: &S3Config) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(S3Sink::new(config.clone()).await?))
    }
}
