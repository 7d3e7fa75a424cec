//! The `splunk` sink's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::sinks::util::{SecretSetting, parse_url};
use crate::transport::ClientTls;

/// Settings of a `splunk` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkConfig {
    /// Base URL of the HTTP Event Collector (`https://splunk.example.com:8088`);
    /// `/services/collector/event` is appended.
    pub url: String,
    /// The HEC token (prefer `token_file`); required.
    #[serde(default)]
    pub token: Option<Secret>,
    /// File holding the HEC token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Index to write to; default: the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    /// Source type of the events.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// Source of the events.
    #[serde(default = "default_source")]
    pub source: String,
    /// Host of the events; default: the alert's `hostname`.
    #[serde(default)]
    pub host: Option<String>,
    /// Wait for indexer acknowledgement (the token must have it enabled): a batch counts as
    /// delivered once Splunk says it is indexed, not once received.
    #[serde(default)]
    pub ack: bool,
    /// The channel (a GUID) of acknowledged requests; default: a new one per start.
    #[serde(default)]
    pub channel: Option<String>,
    /// How long to wait for an acknowledgement before sending the batch again, in milliseconds.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Most alerts per request.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Longest time the first alert of a batch waits for others, in milliseconds.
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// Request timeout, in milliseconds.
    #[serde(default = "crate::transport::default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_sourcetype() -> String {
    "falco".into()
}
fn default_source() -> String {
    "kaudit".into()
}
fn default_ack_timeout_ms() -> u64 {
    60_000
}
fn default_batch_max() -> usize {
    100
}
fn default_batch_wait_ms() -> u64 {
    1000
}

impl SplunkConfig {
    /// The token setting.
    pub(super) fn token(&self) -> SecretSetting<'_> {
        SecretSetting::new("token", &self.token, &self.token_file)
    }

    /// Checks the URL, the token, the channel and the limits.
    pub fn validate(&self) -> Result<(), Invalid> {
        let url = parse_url("url", &self.url)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new("url", "use http:// or https://"));
        }
        let token = self.token();
        token.check()?;
        if !token.is_set() {
            return Err(Invalid::new("token", "required (or `token_file`)"));
        }
        if let Some(c) = &self.channel
            && uuid::Uuid::parse_str(c).is_err()
        {
            return Err(Invalid::new("channel", format!("{c:?} is not a GUID")));
        }
        if self.channel.is_some() && !self.ack {
            return Err(Invalid::new("channel", "only used with `ack: true`"));
        }
        positive("ack_timeout_ms", self.ack_timeout_ms)?;
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

    fn cfg(yaml: &str) -> Result<SplunkConfig, String> {
        let c: SplunkConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates() {
        assert!(cfg("url: https://s:8088\ntoken: t\n").is_ok());
        assert!(cfg("url: https://s:8088\n").unwrap_err().contains("token"));
        assert!(cfg("url: https://s:8088\ntoken: t\nack: true\nchannel: nope\n").is_err());
        assert!(
            cfg("url: https://s:8088\ntoken: t\nchannel: 0aa8b1a4-8a88-4a8f-b1f4-7d4a4f3c9c11\n")
                .is_err()
        );
    }
}
