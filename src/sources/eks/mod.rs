//! `eks`: EKS control-plane audit logs from CloudWatch Logs, read with `FilterLogEvents` on
//! the log group `/aws/eks/<cluster>/cluster`, streams `kube-apiserver-audit*`, through
//! `aws-sdk-cloudwatchlogs` on the shared AWS config (`crate::aws`).
//!
//! Each log event's `message` is one Event's JSON; messages CloudWatch cut (ending in
//! `[Truncated...]`) are skipped and counted. The position ([`cursor`]) is per stream: the
//! newest timestamp handed on and the eventIds at that timestamp, saved in
//! `<data_dir>/sources/<name>.cursor.json` after each page is in the inbox. Each poll starts at
//! the oldest stream position (streams more than `lag_ms` behind the newest no longer hold it
//! back), so events sharing the boundary millisecond are read once, a stream delivered late is
//! caught up, and a restart resumes where it stopped.

pub mod cursor;
mod source;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Source, SourceEnv, SourceError, SourceType};
use crate::aws::AwsOptions;
use crate::invalid::{Invalid, existing_file, positive};
use crate::secret::{Secret, SecretSetting};

pub use source::EksSource;

/// Settings of an `eks` source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EksConfig {
    /// The EKS cluster's name: the log group is `/aws/eks/<cluster>/cluster`.
    pub cluster: String,
    /// Region of the cluster; unset = the SDK's (`AWS_REGION`, profile, instance metadata).
    #[serde(default)]
    pub region: Option<String>,
    /// Log group override (default `/aws/eks/<cluster>/cluster`).
    #[serde(default)]
    pub log_group: Option<String>,
    /// Prefix of the audit streams.
    #[serde(default = "default_stream_prefix")]
    pub stream_prefix: String,
    /// Time between polls, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How far (in milliseconds of event time) a stream may fall behind the newest event read
    /// and still hold the next poll's start back; a stream further behind is taken as finished.
    #[serde(default = "default_lag_ms")]
    pub lag_ms: u64,
    /// Without a saved position, how far back (in milliseconds) the first poll starts.
    #[serde(default = "default_start_lookback_ms")]
    pub start_lookback_ms: u64,
    /// Endpoint override (a VPC endpoint; moto in tests).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Static access key id (with `secret_access_key`); unset = the SDK's credential chain.
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    /// File holding the access key id.
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    /// Static secret access key (prefer the file).
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// File holding the secret access key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM CA bundle trusted in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_stream_prefix() -> String {
    "kube-apiserver-audit".into()
}
fn default_poll_interval_ms() -> u64 {
    5_000
}
fn default_lag_ms() -> u64 {
    120_000
}
fn default_start_lookback_ms() -> u64 {
    60_000
}
fn default_timeout_ms() -> u64 {
    30_000
}

impl EksConfig {
    /// The log group read.
    pub fn log_group(&self) -> String {
        self.log_group
            .clone()
            .unwrap_or_else(|| format!("/aws/eks/{}/cluster", self.cluster))
    }

    /// Checks names, numbers and the credential settings.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.cluster.is_empty() && self.log_group.is_none() {
            return Err(Invalid::new("cluster", "must not be empty"));
        }
        positive("poll_interval_ms", self.poll_interval_ms)?;
        positive("timeout_ms", self.timeout_ms)?;
        if let Some(e) = &self.endpoint {
            reqwest::Url::parse(e)
                .map_err(|err| Invalid::new("endpoint", format!("{e:?}: {err}")))?;
        }
        let (id, secret) = self.keys();
        crate::aws::check_static_keys(id, secret, None)?;
        if let Some(f) = &self.ca_file {
            existing_file("ca_file", f)?;
        }
        Ok(())
    }

    /// The static-key settings: access key id, secret access key.
    fn keys(&self) -> (SecretSetting<'_>, SecretSetting<'_>) {
        (
            SecretSetting::new(
                "access_key_id",
                &self.access_key_id,
                &self.access_key_id_file,
            ),
            SecretSetting::new(
                "secret_access_key",
                &self.secret_access_key,
                &self.secret_access_key_file,
            ),
        )
    }

    /// The shared AWS config's options, static keys read from their files.
    pub fn aws_options(&self) -> Result<AwsOptions, SourceError> {
        let (id, secret) = self.keys();
        let credentials = crate::aws::read_static_keys(id, secret, None)
            .map_err(|e| SourceError::Config(e.to_string()))?;
        Ok(AwsOptions {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            credentials,
            timeout: Some(std::time::Duration::from_millis(self.timeout_ms)),
            ca_file: self.ca_file.clone(),
        })
    }
}

/// The `eks` source type.
pub struct Eks;

impl SourceType for Eks {
    const NAME: &'static str = "eks";
    type Config = EksConfig;

    fn validate(config: &EksConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(
        _name: &str,
        config: &EksConfig,
        _env: &SourceEnv,
    ) -> Result<Option<Box<dyn Source>>, SourceError> {
        Ok(Some(Box::new(EksSource::new(config.clone()).await?)))
    }
}
