//! The `gcs` sink's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, existing_file, positive};
use crate::sinks::archive::{check_partition, check_prefix, default_partition};
use crate::sinks::util::parse_url;
use crate::transport::ClientTls;

/// Settings of a `gcs` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    /// The bucket; it must exist.
    pub bucket: String,
    /// Object name prefix (`falco/`), before the time partition.
    #[serde(default)]
    pub prefix: String,
    /// strftime pattern of the time partition over the batch's first alert, in UTC.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// API base URL (default `https://storage.googleapis.com`).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// A service-account key file (JSON); without it the metadata server is asked.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Base URL of the metadata server (default `http://metadata.google.internal`).
    #[serde(default = "crate::gcp::default_metadata_url")]
    pub metadata_url: String,
    /// Most alerts per object.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Longest time the first alert of an object waits for others, in milliseconds.
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// Request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_endpoint() -> String {
    "https://storage.googleapis.com".into()
}
fn default_batch_max() -> usize {
    1000
}
fn default_batch_wait_ms() -> u64 {
    30_000
}
fn default_timeout_ms() -> u64 {
    30_000
}

impl GcsConfig {
    /// Checks the bucket, the names, the URLs and the key file.
    pub fn validate(&self) -> Result<(), Invalid> {
        let b = &self.bucket;
        let bucket_ok = (3..=222).contains(&b.len())
            && b.bytes().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_')
            })
            && b.starts_with(|c: char| c.is_ascii_alphanumeric())
            && b.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(Invalid::new(
                "bucket",
                format!(
                    "{b:?}: lower-case letters, digits, '.', '-' and '_', starting and ending with a letter or digit"
                ),
            ));
        }
        check_prefix("prefix", &self.prefix)?;
        check_partition("partition", &self.partition)?;
        parse_url("endpoint", &self.endpoint)?;
        parse_url("metadata_url", &self.metadata_url)?;
        if let Some(p) = &self.credentials_file {
            existing_file("credentials_file", p)?;
        }
        positive("batch_max", self.batch_max as u64)?;
        positive("timeout_ms", self.timeout_ms)?;
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<GcsConfig, String> {
        let c: GcsConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates() {
        assert!(cfg("bucket: falco_archive\n").is_ok());
        assert!(cfg("bucket: -x\n").is_err());
        assert!(cfg("bucket: falco\ncredentials_file: /nonexistent\n").is_err());
        assert!(cfg("bucket: falco\npartition: '%Q'\n").is_err());
    }
}
