//! The `rabbitmq` sink's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::sinks::template::Template;
use crate::sinks::util::{SecretSetting, broker_url};
use crate::transport::ClientTls;

/// Settings of a `rabbitmq` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitmqConfig {
    /// The broker and virtual host: `amqp://host:5672/%2f` (vhost `/`), or `amqps://` for TLS.
    /// Credentials go in `username`/`password`, not in the URL.
    pub url: String,
    /// Exchange to publish to; `""` (default) is the default exchange, which routes by queue
    /// name. It must exist: kaudit declares nothing.
    #[serde(default)]
    pub exchange: String,
    /// Routing key template (see `sinks::template`, values slugged); default `falco`, the queue
    /// name with the default exchange. `falco.{priority}.{rule}` suits a topic exchange.
    #[serde(default = "default_routing_key")]
    pub routing_key: String,
    /// User name (default: the broker's `guest`, which only connects from localhost).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (prefer `password_file`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA bundle and client certificate (`amqps://`).
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// How long to wait for the connection and for the confirms of a batch, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most alerts published per confirmed batch.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

fn default_routing_key() -> String {
    "falco".into()
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_batch_max() -> usize {
    100
}

impl RabbitmqConfig {
    /// The password setting.
    pub(super) fn password(&self) -> SecretSetting<'_> {
        SecretSetting::new("password", &self.password, &self.password_file)
    }

    /// Checks the URL, the routing key and the credentials.
    pub fn validate(&self) -> Result<(), Invalid> {
        broker_url(&self.url, "amqp", "amqps", self.tls.is_some())?;
        Template::parse(&self.routing_key).map_err(|e| Invalid::new("routing_key", e))?;
        if self.exchange.len() > 255 {
            return Err(Invalid::new("exchange", "at most 255 bytes"));
        }
        let pw = self.password();
        pw.check()?;
        pw.paired_with_username(self.username.as_deref())?;
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

    fn cfg(yaml: &str) -> Result<RabbitmqConfig, String> {
        let c: RabbitmqConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates() {
        assert!(cfg("url: amqp://r:5672/%2f\n").is_ok());
        assert!(cfg("url: amqp://u:p@r\n").is_err());
        assert!(cfg("url: amqp://r\ntls: {}\n").is_err());
        assert!(cfg("url: amqp://r\nusername: u\n").is_err());
        assert!(cfg("url: nats://r\n").is_err());
    }
}
