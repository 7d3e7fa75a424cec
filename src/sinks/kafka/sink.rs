//! Producing: one confirmed batch at a time, and the classification of delivery reports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{KafkaConfig, KafkaKey};
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::transport::egress::{EgressPolicy, ResolveError};

/// Produces alerts to a Kafka topic.
pub struct KafkaSink {
    config: ClientConfig,
    /// `None` until a restricted sink's brokers passed the egress policy.
    producer: Mutex<Option<FutureProducer>>,
    gate: Option<Gate>,
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

/// How long a restricted sink trusts its last check of the brokers' addresses.
const RECHECK: Duration = Duration::from_secs(10);

/// A restricted sink's bootstrap brokers and the policy they must pass before the producer
/// exists (and again every [`RECHECK`]). Brokers the cluster announces in its metadata are
/// connected to by librdkafka itself, unchecked (docs/operator.md says so).
struct Gate {
    policy: Arc<EgressPolicy>,
    brokers: Vec<(String, u16)>,
    checked: tokio::sync::Mutex<Option<Instant>>,
}

impl Gate {
    async fn check(&self) -> Result<(), SinkError> {
        let mut at = self.checked.lock().await;
        if at.is_some_and(|t| t.elapsed() <= RECHECK) {
            return Ok(());
        }
        *at = None;
        for (host, port) in &self.brokers {
            match self.policy.resolve(host, *port).await {
                Ok(_) => {}
                Err(ResolveError::Denied(d)) => {
                    return Err(SinkError::Permanent(format!("kafka: {d}")));
                }
                Err(e) => return Err(SinkError::retryable(format!("kafka: {e}"))),
            }
        }
        *at = Some(Instant::now());
        Ok(())
    }
}

/// The `host:port` pairs of `bootstrap.servers`.
pub fn bootstrap(config: &ClientConfig) -> Vec<(String, u16)> {
    config
        .get("bootstrap.servers")
        .unwrap_or_default()
        .split(',')
        .filter_map(|b| {
            let b = b.trim().rsplit_once("://").map_or(b.trim(), |(_, r)| r);
            let (h, p) = b.rsplit_once(':')?;
            let h = h.trim_start_matches('[').trim_end_matches(']');
            Some((h.to_string(), p.parse().ok()?))
        })
        .collect()
}

impl KafkaSink {
    /// Creates the producer (it connects in the background; nothing is checked over the
    /// network here, so an unreachable cluster does not stop kaudit from starting). A restricted
    /// sink (`transport::access`) creates it only once its brokers passed the egress policy; a
    /// dry run creates it without brokers, so that librdkafka checks the settings and nothing
    /// connects.
    pub fn new(cfg: KafkaConfig) -> Result<KafkaSink, SinkError> {
        let config = cfg.client_config()?;
        let access = crate::transport::access::current();
        let gate = match &access.egress {
            Some(policy) => {
                let brokers = bootstrap(&config);
                for (h, _) in &brokers {
                    policy
                        .check_host(h)
                        .map_err(|d| SinkError::Permanent(format!("kafka: {d}")))?;
                }
                Some(Gate {
                    policy: policy.clone(),
                    brokers,
                    checked: tokio::sync::Mutex::new(None),
                })
            }
            None => None,
        };
        let producer = if access.dry_run {
            let mut offline = config.clone();
            offline.set("bootstrap.servers", "");
            drop(
                offline
                    .create::<FutureProducer>()
                    .map_err(|e| SinkError::Permanent(format!("kafka producer: {e}")))?,
            );
            None
        } else if gate.is_some() {
            None
        } else {
            Some(
                config
                    .create::<FutureProducer>()
                    .map_err(|e| SinkError::Permanent(format!("kafka producer: {e}")))?,
            )
        };
        Ok(KafkaSink {
            config,
            producer: Mutex::new(producer),
            gate,
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
        let fatal = p.as_ref().and_then(|p| p.client().fatal_error());
        let stale = self.stale.swap(false, Ordering::SeqCst);
        if p.is_none() || fatal.is_some() || stale {
            if p.is_some() {
                tracing::info!(?fatal, stale, "recreating the kafka producer");
            }
            *p = Some(
                self.config
                    .create::<FutureProducer>()
                    .map_err(|e| SinkError::Permanent(format!("kafka producer: {e}")))?,
            );
        }
        p.clone()
            .ok_or_else(|| SinkError::retryable("kafka: no producer"))
    }

    /// Drops the producer (a restricted sink whose brokers the policy now refuses).
    fn drop_producer(&self) {
        if let Ok(mut p) = self.producer.lock() {
            *p = None;
        }
    }

    async fn produce(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        if let Some(g) = &self.gate
            && let Err(e) = g.check().await
        {
            self.drop_producer();
            return Err(e);
        }
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
}
