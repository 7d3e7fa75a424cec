//! The `redis` sink's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::sinks::template::Template;
use crate::sinks::util::{SecretSetting, broker_url};
use crate::transport::ClientTls;

/// Settings of a `redis` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// The server: `redis://host:6379/0`, or `rediss://` for TLS. Credentials go in
    /// `username`/`password`, not in the URL.
    pub url: String,
    /// Stream key template (see `sinks::template`, values slugged): `falco` by default;
    /// `falco:{priority}` makes one stream per priority.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Trim each stream to about this many entries (`XADD ... MAXLEN ~ N`); 0 = no trim.
    #[serde(default = "default_maxlen")]
    pub maxlen: u64,
    /// Trim to exactly `maxlen` (`MAXLEN =`, slower) instead of about it (`~`).
    #[serde(default)]
    pub exact_maxlen: bool,
    /// ACL user (Redis 6+); without it, `password` authenticates the default user.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (prefer `password_file`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA bundle and client certificate (`rediss://`).
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Connect and command timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most alerts per pipelined batch.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

fn default_stream() -> String {
    "falco".into()
}
fn default_maxlen() -> u64 {
    100_000
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_batch_max() -> usize {
    100
}

impl RedisConfig {
    /// The password setting.
    pub(super) fn password(&self) -> SecretSetting<'_> {
        SecretSetting::new("password", &self.password, &self.password_file)
    }

    /// Checks the URL, the stream template and the credentials.
    pub fn validate(&self) -> Result<(), Invalid> {
        broker_url(&self.url, "redis", "rediss", self.tls.is_some())?;
        Template::parse(&self.stream).map_err(|e| Invalid::new("stream", e))?;
        let pw = self.password();
        pw.check()?;
        if self.username.is_some() && !pw.is_set() {
            return Err(Invalid::new(
                "username",
                "needs `password` or `password_file`",
            ));
        }
        positive("timeout_ms", self.timeout_ms)?;
        positive("batch_max", self.batch_max as u64)?;
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<RedisConfig, String> {
        let c: RedisConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates() {
        assert!(cfg("url: redis://r:6379/0\nstream: 'falco:{priority}'\n").is_ok());
        assert!(cfg("url: http://r\n").is_err());
        assert!(
            cfg("url: redis://u:p@r\n")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(cfg("url: redis://r\ntls: {}\n").is_err());
        assert!(cfg("url: redis://r\nusername: u\n").is_err());
        assert!(cfg("url: redis://r\nstream: '{nope}'\n").is_err());
    }
}
