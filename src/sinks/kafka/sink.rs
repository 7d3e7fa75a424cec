//! Producing: one confirmed batch at a time, and the classification of delivery reports.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{KafkaConfig, KafkaKey};
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};

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
        let config = cfg.client_config()?;
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
