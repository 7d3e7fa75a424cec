//! The `s3` sink's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, existing_file, positive};
use crate::secret::Secret;
use crate::sinks::archive::{check_partition, check_prefix, default_partition};
use crate::sinks::util::{SecretSetting, parse_url};

/// Settings of an `s3` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket; it must exist.
    pub bucket: String,
    /// Key prefix (`falco/`), before the time partition.
    #[serde(default)]
    pub prefix: String,
    /// strftime pattern of the time partition over the batch's first alert, in UTC.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// Region; unset = the SDK's chain (`AWS_REGION`, the profile, IMDS).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (a VPC endpoint, MinIO, moto); implies path-style addressing.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Static access key id (with `secret_access_key`); unset = the SDK's default chain.
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    /// File holding the access key id.
    #[serde(default)]
    pub access_key_id_file: Option<PathBuf>,
    /// Static secret access key (prefer `secret_access_key_file`).
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// File holding the secret access key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// Session token of temporary static credentials.
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// File holding the session token.
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
    /// Most alerts per object.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Longest time the first alert of an object waits for others, in milliseconds.
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// Request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// PEM CA bundle trusted in addition to the system roots (a private endpoint).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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

impl S3Config {
    /// The static credential settings: access key id, secret access key, session token.
    pub(super) fn secrets(&self) -> [SecretSetting<'_>; 3] {
        [
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
            SecretSetting::new(
                "session_token",
                &self.session_token,
                &self.session_token_file,
            ),
        ]
    }

    /// Checks the bucket, the names, the endpoint and the credentials.
    pub fn validate(&self) -> Result<(), Invalid> {
        let b = &self.bucket;
        let bucket_ok = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
            && !b.starts_with(['.', '-'])
            && !b.ends_with(['.', '-']);
        if !bucket_ok {
            return Err(Invalid::new(
                "bucket",
                format!("{b:?}: 3 to 63 lower-case letters, digits, '.' and '-'"),
            ));
        }
        check_prefix("prefix", &self.prefix)?;
        check_partition("partition", &self.partition)?;
        if let Some(e) = &self.endpoint {
            parse_url("endpoint", e)?;
        }
        let [id, secret, token] = self.secrets();
        crate::aws::check_static_keys(id, secret, Some(token))?;
        positive("batch_max", self.batch_max as u64)?;
        positive("timeout_ms", self.timeout_ms)?;
        if let Some(p) = &self.ca_file {
            existing_file("ca_file", p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<S3Config, String> {
        let c: S3Config = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates() {
        assert!(cfg("bucket: falco-archive\nprefix: k8s/\n").is_ok());
        assert!(cfg("bucket: Falco\n").is_err());
        assert!(cfg("bucket: falco\npartition: '%Q'\n").is_err());
        assert!(cfg("bucket: falco\naccess_key_id: a\n").is_err());
        assert!(cfg("bucket: falco\nprefix: /abs\n").is_err());
    }
}
