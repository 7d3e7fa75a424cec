//! The `mqtt` sink's settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::sinks::template::Template;
use crate::sinks::util::{SecretSetting, parse_url};
use crate::transport::ClientTls;

/// Settings of an `mqtt` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker: `mqtt://host:1883`, or `mqtts://host:8883` for TLS.
    pub url: String,
    /// Topic template (see `sinks::template`, values slugged); default `falco/{priority}/{rule}`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Client id; default `kaudit-<random>`, new on each connection (several kaudit replicas
    /// must not share one: the broker would disconnect the older).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Publish with the retain flag.
    #[serde(default)]
    pub retain: bool,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (prefer `password_file`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA bundle and client certificate (`mqtts://`).
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// Largest packet sent or received, in bytes.
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: usize,
    /// How long to wait for the connection and for the PUBACKs of a batch, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most alerts published per confirmed batch (also the in-flight window).
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

fn default_topic() -> String {
    "falco/{priority}/{rule}".into()
}
fn default_max_packet() -> usize {
    256 * 1024
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_batch_max() -> usize {
    50
}

impl MqttConfig {
    /// The password setting.
    pub(super) fn password(&self) -> SecretSetting<'_> {
        SecretSetting::new("password", &self.password, &self.password_file)
    }

    /// Host, port and whether TLS is on, from `url`.
    pub fn endpoint(&self) -> Result<(String, u16, bool), Invalid> {
        let url = parse_url("url", &self.url)?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            s => {
                return Err(Invalid::new(
                    "url",
                    format!("scheme {s:?}: use mqtt:// or mqtts://"),
                ));
            }
        };
        let host = url
            .host_str()
            .ok_or_else(|| Invalid::new("url", "no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok((host, port, tls))
    }

    /// Checks the URL, the topic, the credentials and the limits.
    pub fn validate(&self) -> Result<(), Invalid> {
        let (_, _, tls) = self.endpoint()?;
        if self.tls.is_some() && !tls {
            return Err(Invalid::new("tls", "needs an mqtts:// URL"));
        }
        Template::parse(&self.topic).map_err(|e| Invalid::new("topic", e))?;
        if self.topic.contains(['+', '#']) {
            return Err(Invalid::new(
                "topic",
                "wildcards (+, #) cannot be published to",
            ));
        }
        let pw = self.password();
        pw.check()?;
        if pw.is_set() && self.username.is_none() {
            return Err(Invalid::new("password", "needs `username`"));
        }
        if self.client_id.as_deref().is_some_and(str::is_empty) {
            return Err(Invalid::new("client_id", "must not be empty"));
        }
        positive("timeout_ms", self.timeout_ms)?;
        if !(1..=65_535).contains(&self.batch_max) {
            return Err(Invalid::new("batch_max", "must be 1..=65535"));
        }
        if self.max_packet_bytes < 1024 {
            return Err(Invalid::new("max_packet_bytes", "must be at least 1024"));
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<MqttConfig, String> {
        let c: MqttConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates() {
        let c = cfg("url: mqtts://broker\n").unwrap();
        assert_eq!(c.endpoint().unwrap(), ("broker".into(), 8883, true));
        assert!(cfg("url: mqtt://b\ntls: {}\n").is_err());
        assert!(cfg("url: http://b\n").is_err());
        assert!(cfg("url: mqtt://b\ntopic: 'a/#'\n").is_err());
        assert!(cfg("url: mqtt://b\npassword: p\n").is_err());
    }
}
