//! The `sns` sink's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::sinks::util::{SecretSetting, parse_url};
use crate::transport::ClientTls;

/// Settings of an `sns` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// ARN of the topic, `arn:aws:sns:<region>:<account>:<name>`.
    pub topic_arn: String,
    /// Region; defaults to the one in `topic_arn`.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (`http://127.0.0.1:5000` for moto, a VPC endpoint...); default
    /// `https://sns.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Static access key id (with `secret_access_key`); unset = the standard credential chain.
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
    /// Session token of temporary static credentials (optional).
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// File holding the session token.
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
    /// Send the alert's Falco JSON as the message, without attributes (falcosidekick's
    /// `rawjson`).
    #[serde(default)]
    pub raw_json: bool,
    /// Request timeout, in milliseconds.
    #[serde(default = "crate::transport::default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle for the endpoint (`ca_file` only).
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

/// The region part of a topic ARN.
pub(super) fn arn_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _partition, "sns", region, _account, name]
            if !region.is_empty() && !name.is_empty() =>
        {
            Some(region)
        }
        _ => None,
    }
}

impl SnsConfig {
    /// Checks the ARN, the region, the endpoint and the static credentials.
    pub fn validate(&self) -> Result<(), Invalid> {
        let region = arn_region(&self.topic_arn).ok_or_else(|| {
            Invalid::new(
                "topic_arn",
                format!(
                    "{:?} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)",
                    self.topic_arn
                ),
            )
        })?;
        if self.region.as_deref().is_some_and(|r| r != region) && self.endpoint.is_none() {
            return Err(Invalid::new(
                "region",
                format!("differs from the topic's region {region:?}; drop `region`"),
            ));
        }
        if let Some(e) = &self.endpoint {
            parse_url("endpoint", e)?;
        }
        positive("timeout_ms", self.timeout_ms)?;
        let [id, secret, token] = self.secrets();
        crate::aws::check_static_keys(id, secret, Some(token))?;
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
            if t.cert_file.is_some() || t.key_file.is_some() {
                return Err(Invalid::new(
                    "tls.cert_file",
                    "the AWS SDK's client takes a CA bundle only (`tls.ca_file`), no client certificate",
                ));
            }
        }
        Ok(())
    }

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(
            arn_region("arn:aws:sns:eu-west-1:123456789012:falco"),
            Some("eu-west-1")
        );
        assert_eq!(arn_region("arn:aws:sqs:eu-west-1:1:q"), None);
    }
}
