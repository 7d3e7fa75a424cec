//! `aks`: AKS audit logs that a diagnostic setting streams to an Event Hub, read through Event
//! Hubs' Kafka endpoint (`<namespace>:9093`, SASL_SSL PLAIN with the user `$ConnectionString`
//! and the connection string as password) by a librdkafka consumer group.
//!
//! Each event body is `{"records": [...]}`; a record of category `kube-audit` or
//! `kube-audit-admin` carries one Event as a JSON string in `properties.log`. Other categories,
//! cut-off or non-JSON `log`s and bodies that are not JSON are skipped and counted, and the
//! partition reads on. Offsets are committed (synchronously) only after the inbox has the
//! batch's events, so a restart resumes at the first message not yet in the inbox.

mod source;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Source, SourceEnv, SourceError, SourceType};
use crate::follow::StartAt;
use crate::invalid::{Invalid, existing_file, positive};
use crate::secret::{Secret, resolve_secret};

pub use source::AksSource;

/// The categories whose records are audit events.
pub const AUDIT_CATEGORIES: [&str; 2] = ["kube-audit", "kube-audit-admin"];

/// Settings of an `aks` source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AksConfig {
    /// The Event Hubs namespace host (`myhub.servicebus.windows.net`); defaults to the
    /// connection string's `Endpoint`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The event hub (the Kafka topic), e.g. `insights-logs-kube-audit`.
    pub event_hub: String,
    /// The consumer group (Event Hubs' default is `$Default`).
    #[serde(default = "default_group")]
    pub consumer_group: String,
    /// The namespace's (or hub's) connection string; prefer `connection_string_file`.
    #[serde(default)]
    pub connection_string: Option<Secret>,
    /// File holding the connection string (a mounted Secret).
    #[serde(default)]
    pub connection_string_file: Option<PathBuf>,
    /// Categories read; records of others are skipped (`kube-audit-admin` is a subset of
    /// `kube-audit`: reading both repeats events, which detection de-duplicates by auditID).
    #[serde(default = "default_categories")]
    pub categories: Vec<String>,
    /// Where a consumer group without committed offsets starts: `beginning` (the hub's
    /// retention) or `end`.
    #[serde(default = "default_start_at")]
    pub start_at: StartAt,
    /// Most messages per inbox batch.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Plain Kafka brokers instead of the namespace (a Kafka cluster in front of the hub,
    /// tests); without a connection string they are spoken to in PLAINTEXT.
    #[serde(default)]
    pub brokers: Vec<String>,
    /// PEM CA bundle trusted instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_group() -> String {
    "$Default".into()
}
fn default_categories() -> Vec<String> {
    AUDIT_CATEGORIES.iter().map(|s| s.to_string()).collect()
}
fn default_start_at() -> StartAt {
    StartAt::End
}
fn default_batch_max() -> usize {
    500
}

/// The host of a connection string's `Endpoint=sb://<host>/`.
pub fn endpoint_host(conn: &str) -> Option<String> {
    conn.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("endpoint") {
            return None;
        }
        let host = v.trim().trim_start_matches("sb://").trim_end_matches('/');
        (!host.is_empty()).then(|| host.to_string())
    })
}

impl AksConfig {
    /// Checks names, numbers and files.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.event_hub.is_empty() {
            return Err(Invalid::new("event_hub", "must not be empty"));
        }
        if self.consumer_group.is_empty() {
            return Err(Invalid::new("consumer_group", "must not be empty"));
        }
        positive("batch_max", self.batch_max as u64)?;
        if self.connection_string.is_some() && self.connection_string_file.is_some() {
            return Err(Invalid::new(
                "connection_string",
                "set either `connection_string` or `connection_string_file`, not both",
            ));
        }
        if let Some(f) = &self.connection_string_file {
            existing_file("connection_string_file", f)?;
        }
        let has_conn = self.connection_string.is_some() || self.connection_string_file.is_some();
        if !has_conn && self.brokers.is_empty() {
            return Err(Invalid::new(
                "connection_string_file",
                "Event Hubs needs a connection string (or set `brokers` for a plain Kafka endpoint)",
            ));
        }
        if self.categories.is_empty() {
            return Err(Invalid::new(
                "categories",
                "must list at least one category",
            ));
        }
        if let Some(f) = &self.ca_file {
            existing_file("ca_file", f)?;
        }
        Ok(())
    }

    /// The librdkafka consumer configuration (reads the connection string).
    pub fn client_config(&self) -> Result<rdkafka::ClientConfig, SourceError> {
        let conn = resolve_secret(
            self.connection_string.as_ref(),
            self.connection_string_file.as_deref(),
            "connection_string",
        )
        .map_err(|e| SourceError::Config(e.to_string()))?
        .map(|s| s.expose().trim().to_string());
        let mut c = rdkafka::ClientConfig::new();
        c.set("group.id", &self.consumer_group)
            .set("client.id", "kaudit")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match self.start_at {
                    StartAt::Beginning => "earliest",
                    StartAt::End => "latest",
                },
            );
        let brokers = if !self.brokers.is_empty() {
            self.brokers.join(",")
        } else {
            let host = self
                .namespace
                .clone()
                .or_else(|| conn.as_deref().and_then(endpoint_host))
                .ok_or_else(|| {
                    SourceError::Config(
                        "no `namespace`, and the connection string has no Endpoint".into(),
                    )
                })?;
            format!("{host}:9093")
        };
        c.set("bootstrap.servers", brokers);
        match conn {
            Some(conn) => {
                // Event Hubs' recommended client settings for Kafka consumers.
                c.set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanisms", "PLAIN")
                    .set("sasl.username", "$ConnectionString")
                    .set("sasl.password", conn)
                    .set("request.timeout.ms", "60000")
                    .set("session.timeout.ms", "30000")
                    .set("metadata.max.age.ms", "180000")
                    .set("socket.keepalive.enable", "true");
            }
            None => {
                c.set("security.protocol", "plaintext");
            }
        }
        if let Some(ca) = &self.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        Ok(c)
    }
}

/// The `aks` source type.
pub struct Aks;

impl SourceType for Aks {
    const NAME: &'static str = "aks";
    type Config = AksConfig;

    fn validate(config: &AksConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(
        _name: &str,
        config: &AksConfig,
        _env: &SourceEnv,
    ) -> Result<Option<Box<dyn Source>>, SourceError> {
        Ok(Some(Box::new(AksSource::new(config.clone())?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hubs_settings() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("conn");
        let conn = "Endpoint=sb://myhub.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=abc=";
        std::fs::write(&f, format!("{conn}\n")).unwrap();
        let cfg: AksConfig = yaml_serde::from_str(&format!(
            "event_hub: insights-logs-kube-audit\nconnection_string_file: {}\n",
            f.display()
        ))
        .unwrap();
        cfg.validate().unwrap();
        let c = cfg.client_config().unwrap();
        assert_eq!(
            c.get("bootstrap.servers"),
            Some("myhub.servicebus.windows.net:9093")
        );
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanisms"), Some("PLAIN"));
        assert_eq!(c.get("sasl.username"), Some("$ConnectionString"));
        assert_eq!(c.get("sasl.password"), Some(conn));
        assert_eq!(c.get("group.id"), Some("$Default"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        let bare: Result<AksConfig, _> = yaml_serde::from_str("event_hub: x\n");
        assert!(
            bare.unwrap().validate().is_err(),
            "no connection string, no brokers"
        );
    }
}
