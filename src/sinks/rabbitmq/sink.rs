//! Publishing with publisher confirms over one connection and channel, opened again after a
//! failure.

use std::time::Duration;

use futures_util::future::BoxFuture;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use super::RabbitmqConfig;
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::sinks::template::Template;

/// A lapin failure: a missing exchange (404 NOT_FOUND) or a refused permission (403
/// ACCESS_REFUSED) on the channel is for good; the rest (the connection, the broker restarting,
/// a refused login) is passing.
fn classify(e: &lapin::Error) -> SinkError {
    let message = format!("rabbitmq: {e}");
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) if matches!(p.get_id(), 404 | 403) => {
            SinkError::Permanent(message)
        }
        _ => SinkError::retryable(message),
    }
}

struct Open {
    conn: Connection,
    channel: Channel,
}

/// Publishes alerts to a RabbitMQ exchange.
pub struct RabbitmqSink {
    cfg: RabbitmqConfig,
    uri: String,
    routing_key: Template,
    tls: lapin::tcp::OwnedTLSConfig,
    timeout: Duration,
    open: Mutex<Option<Open>>,
}

impl RabbitmqSink {
    /// Prepares the sink (reads the password and TLS files now); connects on the first batch.
    pub fn new(cfg: RabbitmqConfig) -> Result<RabbitmqSink, SinkError> {
        let refuse = |e: String| SinkError::Permanent(format!("rabbitmq: {e}"));
        let routing_key = Template::parse(&cfg.routing_key).map_err(refuse)?;
        let mut url =
            crate::sinks::util::parse_url("url", &cfg.url).map_err(|e| refuse(e.to_string()))?;
        if let Some(u) = &cfg.username {
            let pw = cfg.password().read()?.unwrap_or_default();
            url.set_username(u)
                .and_then(|_| url.set_password(Some(&pw)))
                .map_err(|_| refuse("cannot put the credentials in the URL".into()))?;
        }
        let mut tls = lapin::tcp::OwnedTLSConfig::default();
        if let Some(t) = &cfg.tls {
            let read = |key: &str, p: &std::path::Path| {
                std::fs::read(p).map_err(|e| refuse(format!("tls.{key} {}: {e}", p.display())))
            };
            if let Some(ca) = &t.ca_file {
                tls.cert_chain = Some(String::from_utf8_lossy(&read("ca_file", ca)?).into_owned());
            }
            if let (Some(c), Some(k)) = (&t.cert_file, &t.key_file) {
                tls.identity = Some(lapin::tcp::OwnedIdentity::PKCS8 {
                    pem: read("cert_file", c)?,
                    key: read("key_file", k)?,
                });
            }
        }
        Ok(RabbitmqSink {
            timeout: Duration::from_millis(cfg.timeout_ms),
            uri: url.to_string(),
            cfg,
            routing_key,
            tls,
            open: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Open, SinkError> {
        crate::transport::tls::install_crypto_provider();
        let props =
            ConnectionProperties::default().with_connection_name(LongString::from("kaudit"));
        let runtime = lapin::runtime::default_runtime().map_err(|e| classify(&e))?;
        let conn = Connection::connect_with_config(&self.uri, props, self.tls.clone(), runtime)
            .await
            .map_err(|e| classify(&e))?;
        let channel = conn.create_channel().await.map_err(|e| classify(&e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| classify(&e))?;
        Ok(Open { conn, channel })
    }

    fn properties(a: &Alert) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (k, v) in [
            ("uuid", a.uuid.to_string()),
            ("rule", a.rule.clone()),
            ("priority", a.priority.as_str().to_string()),
            ("source", a.source.clone()),
        ] {
            headers.insert(
                ShortString::from(k),
                AMQPValue::LongString(LongString::from(v)),
            );
        }
        BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(a.uuid.to_string()))
            .with_timestamp(a.time.timestamp().max(0) as u64)
            .with_app_id(ShortString::from("kaudit"))
            .with_headers(headers)
    }

    async fn publish(&self, open: &Open, alerts: &[Alert]) -> Result<(), SinkError> {
        let mut confirms = Vec::with_capacity(alerts.len());
        for a in alerts {
            let key = self.routing_key.render_slugged(a);
            let c = open
                .channel
                .basic_publish(
                    ShortString::from(self.cfg.exchange.as_str()),
                    ShortString::from(key.as_str()),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    a.to_json().as_bytes(),
                    Self::properties(a),
                )
                .await
                .map_err(|e| classify(&e))?;
            confirms.push((key, c));
        }
        for (key, c) in confirms {
            match c.await.map_err(|e| classify(&e))? {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(r)) => {
                    return Err(SinkError::Permanent(format!(
                        "rabbitmq: unroutable: exchange {:?} has no queue bound for routing key {key:?} ({} {})",
                        self.cfg.exchange, r.reply_code, r.reply_text
                    )));
                }
                Confirmation::Nack(_) => {
                    return Err(SinkError::retryable(
                        "rabbitmq: the broker refused a message (nack)",
                    ));
                }
                Confirmation::NotRequested => {
                    return Err(SinkError::retryable(
                        "rabbitmq: publisher confirms are off on the channel",
                    ));
                }
            }
        }
        Ok(())
    }

    async fn send_batch(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let mut guard = self.open.lock().await;
        if guard
            .as_ref()
            .is_some_and(|o| !o.conn.status().connected() || !o.channel.status().connected())
        {
            *guard = None;
        }
        if guard.is_none() {
            let open = tokio::time::timeout(self.timeout, self.connect())
                .await
                .map_err(|_| SinkError::retryable("rabbitmq: connect timed out"))??;
            *guard = Some(open);
        }
        let Some(open) = guard.as_ref() else {
            return Err(SinkError::retryable("rabbitmq: not connected"));
        };
        let r = match tokio::time::timeout(self.timeout, self.publish(open, alerts)).await {
            Ok(r) => r,
            Err(_) => Err(SinkError::retryable(format!(
                "rabbitmq: no confirm within {} ms",
                self.cfg.timeout_ms
            ))),
        };
        if matches!(r, Err(SinkError::Retryable { .. })) || r.is_err() {
            // A channel that saw an error is closed by the broker: start afresh.
            *guard = None;
        }
        r
    }
}

impl Sink for RabbitmqSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.send_batch(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.batch_max,
            max_wait: Duration::ZERO,
        }
    }
}
