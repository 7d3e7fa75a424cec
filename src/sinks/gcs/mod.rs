//! `gcs`: archives alerts to Google Cloud Storage through the JSON API: each batch is one
//! gzip'd NDJSON object under a time-partitioned name (see `sinks::archive`), uploaded in one
//! multipart request (`contentEncoding: gzip`, so readers may get it decompressed), created
//! only if absent (`ifGenerationMatch=0`): an object is whole or absent, and a batch sent again
//! after a lost answer finds its object there (412), which counts as delivered. Authentication
//! is the shared `gcp::GoogleAuth`: a service-account key or the metadata server (Workload
//! Identity).

mod config;
pub mod sink;

pub use config::GcsConfig;
pub use sink::{GcsSink, multipart};

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `gcs` sink type.
pub struct Gcs;

impl SinkType for Gcs {
    const NAME: &'static str = "gcs";
    type Config = GcsConfig;

    fn validate(config: &GcsConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(config: &GcsConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(GcsSink::new(config.clone())?))
    }
}
