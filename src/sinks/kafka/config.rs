//! The `kafka` sink's settings, and the librdkafka configuration they make.

use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::event_streams::{EventStreams, event_streams_settings};
use crate::alert::Alert;
use crate::delivery::SinkError;
use crate::invalid::{Invalid, existing_file, positive};
use crate::secret::Secret;
use crate::sinks::util::SecretSetting;
use crate::transport::ClientTls;

/// Which part of the alert becomes the Kafka message key (and so picks the partition).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum KafkaKey {
    /// No key: messages are spread over partitions.
    #[default]
    None,
    /// The rule name.
    Rule,
    /// `ka.target.namespace`: one namespace's alerts stay in order.
    Namespace,
    /// Any alert field (`rule`, `priority`, `hostname`, or an output field such as
    /// `ka.target.name`); written `{field: NAME}`.
    Field(String),
}

impl KafkaKey {
    /// The key of an alert, if any.
    pub fn of(&self, a: &Alert) -> Option<String> {
        match self {
            KafkaKey::None => None,
            KafkaKey::Rule => Some(a.rule.clone()),
            KafkaKey::Namespace => a.field_text("ka.target.namespace"),
            KafkaKey::Field(f) => a.field_text(f),
        }
    }
}

impl Serialize for KafkaKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KafkaKey::None => s.serialize_str("none"),
            KafkaKey::Rule => s.serialize_str("rule"),
            KafkaKey::Namespace => s.serialize_str("namespace"),
            KafkaKey::Field(f) => {
                let mut m = serde_json::Map::new();
                m.insert("field".into(), Value::String(f.clone()));
                m.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for KafkaKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        let bad = || {
            D::Error::custom(
                "`key` must be `none`, `rule`, `namespace` or `{field: NAME}` (e.g. {field: ka.target.name})",
            )
        };
        match v {
            Value::Null => Ok(KafkaKey::None),
            Value::String(s) => match s.as_str() {
                "none" => Ok(KafkaKey::None),
                "rule" => Ok(KafkaKey::Rule),
                "namespace" => Ok(KafkaKey::Namespace),
                _ => Err(bad()),
            },
            Value::Object(m) if m.len() == 1 => match m.get("field") {
                Some(Value::String(f)) if !f.is_empty() => Ok(KafkaKey::Field(f.clone())),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Compression codec of produced batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// None.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// How many replicas must have the message before the broker acknowledges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Acks {
    /// Every in-sync replica (`acks=all`), with the idempotent producer: no loss, no
    /// duplicates from librdkafka's own retries.
    #[default]
    All,
    /// The partition leader only (`acks=1`).
    Leader,
    /// No acknowledgement (`acks=0`): delivery cannot be confirmed; falcosidekick's default.
    None,
}

/// `security.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    Plaintext,
    /// TLS (with optional client certificate).
    Ssl,
    /// SASL without TLS (test setups only: the password crosses in clear with PLAIN).
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// SASL mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// `PLAIN`.
    #[serde(rename = "PLAIN")]
    Plain,
    /// `SCRAM-SHA-256`.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password (prefer `password_file`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl KafkaSasl {
    /// The password setting.
    fn password(&self) -> SecretSetting<'_> {
        SecretSetting::new("password", &self.password, &self.password_file)
    }
}

/// Settings of a `kafka` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` (not with `event_streams`).
    #[serde(default)]
    pub brokers: Vec<String>,
    /// Topic to produce to. It must exist (see the module doc).
    pub topic: String,
    /// `client.id`, shown in broker logs and quotas.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// `all` (default, with idempotence), `leader` or `none`.
    #[serde(default)]
    pub acks: Acks,
    /// Message key: `none`, `rule`, `namespace` or `{field: NAME}`.
    #[serde(default)]
    pub key: KafkaKey,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// SASL mechanism and credentials (with `SASL_*` protocols).
    #[serde(default)]
    pub sasl: Option<KafkaSasl>,
    /// CA bundle and client certificate (with `SSL`/`SASL_SSL`); without `ca_file` the system
    /// roots are trusted.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// IBM Event Streams credentials; replaces `brokers`, `security_protocol` and `sasl`.
    #[serde(default)]
    pub event_streams: Option<EventStreams>,
    /// How long a message may wait for its acknowledgement, in milliseconds
    /// (`message.timeout.ms`); then the batch fails, retryably.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most alerts per confirmed batch.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

fn default_client_id() -> String {
    "kaudit".into()
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_batch_max() -> usize {
    256
}

impl KafkaConfig {
    /// Checks that the connection settings fit together and that files exist.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.topic.is_empty() {
            return Err(Invalid::new("topic", "must not be empty"));
        }
        positive("timeout_ms", self.timeout_ms)?;
        positive("batch_max", self.batch_max as u64)?;
        if let Some(es) = &self.event_streams {
            if !self.brokers.is_empty()
                || self.sasl.is_some()
                || self.security_protocol != SecurityProtocol::Plaintext
            {
                return Err(Invalid::new(
                    "event_streams",
                    "sets brokers, security_protocol and sasl itself; remove them",
                ));
            }
            existing_file("event_streams.credentials_file", &es.credentials_file)?;
        } else {
            if self.brokers.is_empty() {
                return Err(Invalid::new("brokers", "must list at least one host:port"));
            }
            match (&self.sasl, self.security_protocol.sasl()) {
                (Some(_), false) => {
                    return Err(Invalid::new(
                        "sasl",
                        "needs security_protocol SASL_SSL or SASL_PLAINTEXT",
                    ));
                }
                (None, true) => {
                    return Err(Invalid::new(
                        "security_protocol",
                        "SASL_* security_protocol needs `sasl`",
                    ));
                }
                _ => {}
            }
        }
        if let Some(s) = &self.sasl {
            let password = s.password();
            if !password.is_set() {
                return Err(Invalid::new(
                    "sasl",
                    "set exactly one of `password` and `password_file`",
                ));
            }
            password.check().map_err(|e| e.under("sasl"))?;
        }
        if let Some(t) = &self.tls {
            if matches!(
                self.security_protocol,
                SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext
            ) && self.event_streams.is_none()
            {
                return Err(Invalid::new(
                    "tls",
                    "needs security_protocol SSL or SASL_SSL",
                ));
            }
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }

    /// The librdkafka producer configuration.
    pub fn client_config(&self) -> Result<ClientConfig, SinkError> {
        let mut c = ClientConfig::new();
        c.set("client.id", &self.client_id)
            .set("compression.codec", self.compression.as_str())
            .set("message.timeout.ms", self.timeout_ms.to_string())
            .set("allow.auto.create.topics", "false")
            .set("linger.ms", "5");
        match self.acks {
            Acks::All => c.set("acks", "all").set("enable.idempotence", "true"),
            Acks::Leader => c.set("acks", "1").set("enable.idempotence", "false"),
            Acks::None => c.set("acks", "0").set("enable.idempotence", "false"),
        };
        if let Some(es) = &self.event_streams {
            let unusable = |e: &dyn std::fmt::Display| {
                SinkError::Permanent(format!(
                    "event_streams.credentials_file {}: {e}",
                    es.credentials_file.display()
                ))
            };
            let text = std::fs::read_to_string(&es.credentials_file).map_err(|e| unusable(&e))?;
            let (brokers, user, password) =
                event_streams_settings(&text).map_err(|e| unusable(&e))?;
            c.set("bootstrap.servers", brokers)
                .set("security.protocol", "sasl_ssl")
                .set("sasl.mechanisms", "PLAIN")
                .set("sasl.username", user)
                .set("sasl.password", password);
        } else {
            c.set("bootstrap.servers", self.brokers.join(","))
                .set("security.protocol", self.security_protocol.as_str());
            if let Some(s) = &self.sasl {
                let password = s.password().read()?.unwrap_or_default();
                c.set("sasl.mechanisms", s.mechanism.as_str())
                    .set("sasl.username", &s.username)
                    .set("sasl.password", password);
            }
        }
        if let Some(t) = &self.tls {
            let path = |p: &Path| p.display().to_string();
            if let Some(ca) = &t.ca_file {
                c.set("ssl.ca.location", path(ca));
            }
            if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
                c.set("ssl.certificate.location", path(cert))
                    .set("ssl.key.location", path(key));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_config_sets_sasl_ssl_plain() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("binding");
        std::fs::write(&f, r#"{"kafka_brokers_sasl": ["b:9093"], "api_key": "K"}"#).unwrap();
        let cfg: KafkaConfig = yaml_serde::from_str(&format!(
            "topic: falco\nevent_streams:\n  credentials_file: {}\n",
            f.display()
        ))
        .unwrap();
        cfg.validate().unwrap();
        let c = cfg.client_config().unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("b:9093"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanisms"), Some("PLAIN"));
        assert_eq!(c.get("sasl.username"), Some("token"));
        assert_eq!(c.get("sasl.password"), Some("K"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("allow.auto.create.topics"), Some("false"));
    }

    /// librdkafka was built with what the settings need: TLS, SASL PLAIN and SCRAM, and every
    /// codec (creating a producer fails on an unsupported value).

    #[test]
    fn keys_parse() {
        let k = |y: &str| yaml_serde::from_str::<KafkaKey>(y);
        assert_eq!(k("none").unwrap(), KafkaKey::None);
        assert_eq!(k("namespace").unwrap(), KafkaKey::Namespace);
        assert_eq!(
            k("{field: ka.target.name}").unwrap(),
            KafkaKey::Field("ka.target.name".into())
        );
        assert!(k("nope").is_err());
        assert!(k("{field: x, other: y}").is_err());
    }

    #[test]
    fn validation() {
        let v = |y: &str| {
            yaml_serde::from_str::<KafkaConfig>(y)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.to_string()))
        };
        assert!(v("brokers: [a:9092]\ntopic: t\n").is_ok());
        assert!(v("topic: t\n").is_err());
        assert!(v("brokers: [a:9092]\ntopic: t\nsecurity_protocol: SASL_SSL\n").is_err());
        assert!(
            v("brokers: [a:9092]\ntopic: t\nsecurity_protocol: SASL_SSL\nsasl: {mechanism: SCRAM-SHA-512, username: u, password: p}\n")
                .is_ok()
        );
        assert!(v("brokers: [a:9092]\ntopic: t\ncompression: brotli\n").is_err());
    }
}
