//! `kafka`: produces each alert to a Kafka topic with librdkafka (crate `rdkafka`, librdkafka
//! built from source and linked statically against the system's OpenSSL and zlib).
//!
//! Message: value = the alert's Falco JSON; key as configured (`none`, `rule`, `namespace` =
//! `ka.target.namespace`, or `{field: NAME}` for any output field; a missing field gives no
//! key); headers `uuid`, `rule`, `priority`, `source`.
//!
//! Delivery is confirmed by the broker: `acks=all` with the idempotent producer by default, and
//! a batch counts as sent only when every message's delivery report came back without error.
//! Unreachable brokers make the reports fail with a timeout after `timeout_ms`: retryable, the
//! alerts wait in the spool. Topics are never created on the fly
//! (`allow.auto.create.topics=false`): producing to a topic that does not exist fails with a
//! permanent error naming the topic, once librdkafka has given up waiting for it to appear
//! (`topic.metadata.propagation.max.ms`, 30 s by default), and the alerts are dead-lettered.
//!
//! Security: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL` with `PLAIN`, `SCRAM-SHA-256` or
//! `SCRAM-SHA-512`; CA and client certificate files. IBM Event Streams: `event_streams:
//! {credentials_file: ...}` reads the service-credentials JSON as IBM Cloud hands it out and
//! configures `SASL_SSL`/`PLAIN` from it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::secret::{Secret, resolve_secret};
use crate::transport::ClientTls;
use futures_util::future::BoxFuture;

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

/// IBM Event Streams: where its service credentials are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventStreams {
    /// The service-credentials JSON as IBM Cloud gives it (e.g. the `binding` key of the Secret
    /// made by a service binding, mounted as a file).
    pub credentials_file: PathBuf,
}

/// The fields of Event Streams service credentials that we use (others are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct EventStreamsCredentials {
    /// Bootstrap brokers, `host:9093`.
    pub kafka_brokers_sasl: Vec<String>,
    /// SASL user (`token`).
    #[serde(default)]
    pub user: Option<String>,
    /// SASL password (the API key).
    #[serde(default)]
    pub password: Option<String>,
    /// The API key.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The API key again, as newer credentials spell it.
    #[serde(default)]
    pub apikey: Option<String>,
}

/// SASL_SSL/PLAIN settings from Event Streams credentials: `(brokers, user, password)`.
pub fn event_streams_settings(json: &str) -> Result<(String, String, String), String> {
    let c: EventStreamsCredentials = serde_json::from_str(json)
        .map_err(|e| format!("not Event Streams service credentials: {e}"))?;
    if c.kafka_brokers_sasl.is_empty() {
        return Err("`kafka_brokers_sasl` is empty".into());
    }
    let password = c
        .password
        .or(c.api_key)
        .or(c.apikey)
        .filter(|p| !p.is_empty())
        .ok_or("neither `password` nor `api_key` is set")?;
    let user = c
        .user
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "token".into());
    Ok((c.kafka_brokers_sasl.join(","), user, password))
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
    pub fn validate(&self) -> Result<(), String> {
        if self.topic.is_empty() {
            return Err("`topic` must not be empty".into());
        }
        if self.timeout_ms == 0 || self.batch_max == 0 {
            return Err("`timeout_ms` and `batch_max` must be greater than 0".into());
        }
        if let Some(es) = &self.event_streams {
            if !self.brokers.is_empty()
                || self.sasl.is_some()
                || self.security_protocol != SecurityProtocol::Plaintext
            {
                return Err(
                    "`event_streams` sets brokers, security_protocol and sasl itself; remove them"
                        .into(),
                );
            }
            if !es.credentials_file.exists() {
                return Err(format!(
                    "`event_streams.credentials_file`: {} does not exist",
                    es.credentials_file.display()
                ));
            }
        } else {
            if self.brokers.is_empty() {
                return Err("`brokers` must list at least one host:port".into());
            }
            match (&self.sasl, self.security_protocol.sasl()) {
                (Some(_), false) => {
                    return Err("`sasl` needs security_protocol SASL_SSL or SASL_PLAINTEXT".into());
                }
                (None, true) => return Err("SASL_* security_protocol needs `sasl`".into()),
                _ => {}
            }
        }
        if let Some(s) = &self.sasl {
            if s.password.is_some() == s.password_file.is_some() {
                return Err("`sasl`: set exactly one of `password` and `password_file`".into());
            }
            if let Some(p) = &s.password_file
                && !p.exists()
            {
                return Err(format!(
                    "`sasl.password_file`: {} does not exist",
                    p.display()
                ));
            }
        }
        if let Some(t) = &self.tls {
            if matches!(
                self.security_protocol,
                SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext
            ) && self.event_streams.is_none()
            {
                return Err("`tls` needs security_protocol SSL or SASL_SSL".into());
            }
            t.validate().map_err(|e| e.under("tls").to_string())?;
        }
        Ok(())
    }

    /// The librdkafka producer configuration.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
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
            let text = std::fs::read_to_string(&es.credentials_file).map_err(|e| {
                format!(
                    "event_streams.credentials_file {}: {e}",
                    es.credentials_file.display()
                )
            })?;
            let (brokers, user, password) = event_streams_settings(&text).map_err(|e| {
                format!(
                    "event_streams.credentials_file {}: {e}",
                    es.credentials_file.display()
                )
            })?;
            c.set("bootstrap.servers", brokers)
                .set("security.protocol", "sasl_ssl")
                .set("sasl.mechanisms", "PLAIN")
                .set("sasl.username", user)
                .set("sasl.password", password);
        } else {
            c.set("bootstrap.servers", self.brokers.join(","))
                .set("security.protocol", self.security_protocol.as_str());
            if let Some(s) = &self.sasl {
                let password =
                    resolve_secret(s.password.as_ref(), s.password_file.as_deref(), "password")
                        .map_err(|e| format!("sasl: {e}"))?
                        .map(|p| p.expose().to_string())
                        .unwrap_or_default();
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

/// Produces alerts to a Kafka topic.
pub struct KafkaSink {
    config: ClientConfig,
    producer: Mutex<FutureProducer>,
    /// Set when messages timed out: the next attempt starts a new producer.
    stale: AtomicBool,
    topic: String,
    key: KafkaKey,
    timeout: Duration,
    batch_max: usize,
}

/// Classifies a failed delivery report.
pub fn classify(topic: &str, e: &KafkaError) -> SinkError {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::UnknownTopic | C::UnknownTopicOrPartition) => SinkError::Permanent(format!(
            "kafka: topic {topic:?} does not exist (kaudit never creates topics): {e}"
        )),
        Some(C::TopicAuthorizationFailed) => SinkError::Permanent(format!(
            "kafka: not allowed to write to topic {topic:?}: {e}"
        )),
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::InvalidTopic,
        ) => SinkError::Permanent(format!("kafka: topic {topic:?}: {e}")),
        _ => SinkError::retryable(format!("kafka: topic {topic:?}: {e}")),
    }
}

impl KafkaSink {
    /// Creates the producer (it connects in the background; nothing is checked over the
    /// network here, so an unreachable cluster does not stop kaudit from starting).
    pub fn new(cfg: KafkaConfig) -> Result<KafkaSink, SinkError> {
        let config = cfg.client_config().map_err(SinkError::Permanent)?;
        let producer = config
            .create::<FutureProducer>()
            .map_err(|e| SinkError::Permanent(format!("kafka producer: {e}")))?;
        Ok(KafkaSink {
            config,
            producer: Mutex::new(producer),
            stale: AtomicBool::new(false),
            topic: cfg.topic,
            key: cfg.key,
            timeout: Duration::from_millis(cfg.timeout_ms),
            batch_max: cfg.batch_max,
        })
    }

    fn producer(&self) -> Result<FutureProducer, SinkError> {
        let mut p = self
            .producer
            .lock()
            .map_err(|_| SinkError::retryable("kafka: producer lock poisoned"))?;
        // An idempotent producer that hit a fatal error refuses everything, and one whose
        // messages timed out may be wedged on state the cluster no longer has (a broker that
        // came back without its data forgot the producer id and sequence numbers): start a
        // new one. Messages of the old one that still get through are duplicates, which the
        // uuid header lets consumers drop.
        let fatal = p.client().fatal_error();
        let stale = self.stale.swap(false, Ordering::SeqCst);
        if fatal.is_some() || stale {
            tracing::info!(?fatal, stale, "recreating the kafka producer");
            *p = self
                .config
                .create::<FutureProducer>()
                .map_err(|e| SinkError::Permanent(format!("kafka producer: {e}")))?;
        }
        Ok(p.clone())
    }

    async fn produce(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let producer = self.producer()?;
        let mut pending = Vec::with_capacity(alerts.len());
        for a in alerts {
            let uuid = a.uuid.to_string();
            let headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: "uuid",
                    value: Some(uuid.as_str()),
                })
                .insert(Header {
                    key: "rule",
                    value: Some(a.rule.as_str()),
                })
                .insert(Header {
                    key: "priority",
                    value: Some(a.priority.as_str()),
                })
                .insert(Header {
                    key: "source",
                    value: Some(a.source.as_str()),
                });
            let body = a.to_json();
            let key = self.key.of(a);
            let mut record = FutureRecord::to(&self.topic)
                .payload(body.as_str())
                .headers(headers);
            if let Some(k) = &key {
                record = record.key(k.as_str());
            }
            let fut = producer
                .send_result(record)
                .map_err(|(e, _)| classify(&self.topic, &e))?;
            pending.push(fut);
        }
        // librdkafka fails each message after message.timeout.ms; the extra margin only guards
        // against a report that never comes.
        let wait = self.timeout + Duration::from_secs(5);
        let mut first_error = None;
        for fut in pending {
            let outcome = match tokio::time::timeout(wait, fut).await {
                Err(_) => Err({
                    self.stale.store(true, Ordering::SeqCst);
                    SinkError::retryable(format!(
                        "kafka: topic {:?}: no delivery report within {wait:?}",
                        self.topic
                    ))
                }),
                Ok(Err(_canceled)) => Err(SinkError::retryable(
                    "kafka: producer dropped the delivery report",
                )),
                Ok(Ok(Err((e, _msg)))) => {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) {
                        self.stale.store(true, Ordering::SeqCst);
                    }
                    Err(classify(&self.topic, &e))
                }
                Ok(Ok(Ok(_delivery))) => Ok(()),
            };
            // Wait for every report so that no message of a failed batch is still in flight
            // when the batch is retried; report the first failure.
            if let Err(e) = outcome
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Sink for KafkaSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.produce(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.batch_max,
            max_wait: Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_credentials_map_to_sasl_plain() {
        // The shape of IBM Cloud service credentials (values made up).
        let full = r#"{
            "api_key": "AbC-123",
            "apikey": "AbC-123",
            "iam_apikey_description": "Auto-generated",
            "iam_apikey_name": "kaudit",
            "iam_role_crn": "crn:v1:bluemix:public:iam::::serviceRole:Writer",
            "iam_serviceid_crn": "crn:v1:bluemix:public:iam-identity::a/1::serviceid:ServiceId-1",
            "instance_id": "0000-1111",
            "kafka_admin_url": "https://es.example.cloud",
            "kafka_brokers_sasl": ["broker-0.es.example.cloud:9093", "broker-1.es.example.cloud:9093"],
            "kafka_http_url": "https://es.example.cloud",
            "password": "AbC-123",
            "user": "token"
        }"#;
        assert_eq!(
            event_streams_settings(full).unwrap(),
            (
                "broker-0.es.example.cloud:9093,broker-1.es.example.cloud:9093".to_string(),
                "token".to_string(),
                "AbC-123".to_string()
            )
        );
        // Only an API key: user `token`, the key as password.
        let key_only = r#"{"kafka_brokers_sasl": ["b:9093"], "api_key": "K"}"#;
        assert_eq!(
            event_streams_settings(key_only).unwrap(),
            ("b:9093".to_string(), "token".to_string(), "K".to_string())
        );
        let apikey = r#"{"kafka_brokers_sasl": ["b:9093"], "apikey": "K2"}"#;
        assert_eq!(event_streams_settings(apikey).unwrap().2, "K2");
        assert!(event_streams_settings(r#"{"kafka_brokers_sasl": ["b:9093"]}"#).is_err());
        assert!(event_streams_settings(r#"{"kafka_brokers_sasl": [], "api_key": "K"}"#).is_err());
        assert!(event_streams_settings("not json").is_err());
    }

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
    fn librdkafka_supports_every_protocol_and_codec() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
                let cfg: KafkaConfig = yaml_serde::from_str(&format!(
                    "brokers: [\"127.0.0.1:1\"]\ntopic: t\ncompression: {codec}\nsecurity_protocol: SASL_SSL\nsasl: {{mechanism: {mechanism}, username: u, password: p}}\ntls: {{ca_file: {}}}\n",
                    ca.display()
                ))
                .unwrap();
                cfg.validate().unwrap();
                if let Err(e) = KafkaSink::new(cfg) {
                    panic!("{mechanism} with {codec}: {e}");
                }
            }
        }
    }

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
                .and_then(|c| c.validate())
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
