//! `elasticsearch` and `opensearch`: alerts indexed with the `_bulk` API, one batch per
//! request, into an index named after the alert's date (`falco-%Y.%m.%d`) or a data stream.
//!
//! Documents are `create`d with the alert's uuid as `_id`, so a document sent twice is a
//! version conflict, counted as delivered. The answer is read item by item ([`bulk`]): items
//! rejected for a passing reason (429 `es_rejected_execution_exception`, 5xx) are sent again,
//! and only they; items refused for good (a mapping conflict) are dead-lettered with the
//! reason. 401 and 403 are denials, retried for `spool.denied_retry_secs`, then dead-lettered. Basic
//! authentication, or an Elasticsearch API key (`Authorization: ApiKey`); OpenSearch takes the
//! same requests, with basic authentication.

pub mod bulk;
mod config;
mod sink;

pub use config::{ElasticsearchConfig, index_name_error};
pub use sink::ElasticsearchSink;

use crate::delivery::{Sink, SinkError};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;

/// The `elasticsearch` sink type.
pub struct Elasticsearch;

impl SinkType for Elasticsearch {
    const NAME: &'static str = "elasticsearch";
    type Config = ElasticsearchConfig;

    fn validate(config: &ElasticsearchConfig) -> Result<(), Invalid> {
        config.validate(true)
    }

    async fn build(config: &ElasticsearchConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(ElasticsearchSink::new(
            config.clone(),
            "elasticsearch",
        )?))
    }
}

/// The `opensearch` sink type: the same API, without API keys.
pub struct Opensearch;

impl SinkType for Opensearch {
    const NAME: &'static str = "opensearch";
    type Config = ElasticsearchConfig;

    fn validate(config: &ElasticsearchConfig) -> Result<(), Invalid> {
        config.validate(false)
    }

    async fn build(config: &ElasticsearchConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(ElasticsearchSink::new(
            config.clone(),
            "opensearch",
        )?))
    }
}
