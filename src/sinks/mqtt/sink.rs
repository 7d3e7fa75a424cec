//! Publishing at QoS 1 and waiting for each PUBACK.
//!
//! rumqttc's event loop runs in a task per connection. Publishes leave in the order they were
//! requested, so the n-th `Outgoing::Publish(pkid)` event is the n-th waiting publish; its
//! PUBACK completes it. When the connection fails, every waiting publish fails (retryably) and
//! the connection is dropped: the next batch opens a fresh one, so rumqttc never re-sends on its
//! own what delivery will send again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::oneshot;

use super::MqttConfig;
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::sinks::template::Template;

type Ack = oneshot::Sender<Result<(), String>>;

/// Publishes waiting for their packet id, then for their PUBACK.
#[derive(Default)]
struct Inflight {
    unassigned: VecDeque<Ack>,
    by_pkid: HashMap<u16, Ack>,
}

impl Inflight {
    fn fail_all(&mut self, why: &str) {
        for a in self
            .unassigned
            .drain(..)
            .chain(self.by_pkid.drain().map(|(_, a)| a))
        {
            let _ = a.send(Err(why.to_string()));
        }
    }
}

struct Conn {
    client: AsyncClient,
    inflight: Arc<Mutex<Inflight>>,
    dead: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<Inflight>) -> std::sync::MutexGuard<'_, Inflight> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Publishes alerts to an MQTT broker.
pub struct MqttSink {
    cfg: MqttConfig,
    topic: Template,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    password: Option<String>,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

impl MqttSink {
    /// Prepares the sink (reads the password and TLS files now); connects on the first batch.
    pub fn new(cfg: MqttConfig) -> Result<MqttSink, SinkError> {
        let refuse = |e: String| SinkError::Permanent(format!("mqtt: {e}"));
        let topic = Template::parse(&cfg.topic).map_err(refuse)?;
        let (host, port, tls) = cfg.endpoint().map_err(|e| refuse(e.to_string()))?;
        let tls = if tls {
            crate::transport::tls::install_crypto_provider();
            let c = cfg.tls.clone().unwrap_or_default().rustls_config()?;
            Some(Arc::new(c))
        } else {
            None
        };
        let password = cfg.password().read()?;
        Ok(MqttSink {
            timeout: Duration::from_millis(cfg.timeout_ms),
            cfg,
            topic,
            host,
            port,
            tls,
            password,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    fn connect(&self) -> Conn {
        let id = self.cfg.client_id.clone().unwrap_or_else(|| {
            format!(
                "kaudit-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
        });
        let mut opts = MqttOptions::new(id, self.host.clone(), self.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(self.cfg.max_packet_bytes, self.cfg.max_packet_bytes)
            .set_inflight(self.cfg.batch_max.min(u16::MAX as usize) as u16);
        if let Some(u) = &self.cfg.username {
            opts.set_credentials(u.clone(), self.password.clone().unwrap_or_default());
        }
        if let Some(t) = &self.tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                t.clone(),
            )));
        }
        let (client, mut events) = AsyncClient::new(opts, self.cfg.batch_max.max(10));
        let inflight = Arc::new(Mutex::new(Inflight::default()));
        let dead = Arc::new(AtomicBool::new(false));
        let (inf, d) = (inflight.clone(), dead.clone());
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let mut i = lock(&inf);
                        if let Some(a) = i.unassigned.pop_front() {
                            i.by_pkid.insert(pkid, a);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if let Some(a) = lock(&inf).by_pkid.remove(&ack.pkid) {
                            let _ = a.send(Ok(()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        d.store(true, Ordering::SeqCst);
                        lock(&inf).fail_all(&e.to_string());
                        tracing::info!(error = %e, "mqtt connection lost");
                        return;
                    }
                }
            }
        });
        Conn {
            client,
            inflight,
            dead,
            task,
        }
    }

    async fn publish(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let mut guard = self.conn.lock().await;
        if guard
            .as_ref()
            .is_some_and(|c| c.dead.load(Ordering::SeqCst))
        {
            *guard = None;
        }
        let conn = guard.get_or_insert_with(|| self.connect());
        let mut acks = Vec::with_capacity(alerts.len());
        for a in alerts {
            let (tx, rx) = oneshot::channel();
            lock(&conn.inflight).unassigned.push_back(tx);
            let r = conn
                .client
                .publish(
                    self.topic.render_slugged(a),
                    QoS::AtLeastOnce,
                    self.cfg.retain,
                    a.to_json(),
                )
                .await;
            if let Err(e) = r {
                *guard = None;
                return Err(SinkError::retryable(format!("mqtt: {e}")));
            }
            acks.push(rx);
        }
        let all = async {
            for rx in acks {
                match rx.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err("connection closed".to_string()),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.timeout, all).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                *guard = None;
                Err(SinkError::retryable(format!(
                    "mqtt {}:{}: {e}",
                    self.host, self.port
                )))
            }
            Err(_) => {
                *guard = None;
                Err(SinkError::retryable(format!(
                    "mqtt {}:{}: no PUBACK within {} ms",
                    self.host, self.port, self.cfg.timeout_ms
                )))
            }
        }
    }
}

impl Sink for MqttSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.publish(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.batch_max,
            max_wait: Duration::ZERO,
        }
    }
}
