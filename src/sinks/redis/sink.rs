//! XADD in a pipeline: one command per alert, all answered before the batch counts.

use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

use super::RedisConfig;
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::sinks::template::Template;

/// Classifies a Redis failure: the connection, a timeout, authentication, a read-only replica or
/// an out-of-memory server are passing; anything else the server refuses (a key holding another
/// type, `WRONGTYPE`) is for good.
pub fn classify(e: &redis::RedisError) -> SinkError {
    let message = format!("redis: {e}");
    let passing = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.code(),
            Some(
                "NOAUTH"
                    | "WRONGPASS"
                    | "NOPERM"
                    | "OOM"
                    | "READONLY"
                    | "LOADING"
                    | "BUSY"
                    | "MASTERDOWN"
                    | "TRYAGAIN"
            )
        )
        || e.kind() == redis::ErrorKind::AuthenticationFailed;
    if passing {
        SinkError::retryable(message)
    } else {
        SinkError::Permanent(message)
    }
}

/// Appends alerts to Redis streams.
pub struct RedisSink {
    cfg: RedisConfig,
    client: redis::Client,
    stream: Template,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
}

impl RedisSink {
    /// Prepares the client (reads the password and TLS files now); connects on the first batch.
    pub fn new(cfg: RedisConfig) -> Result<RedisSink, SinkError> {
        crate::transport::tls::install_crypto_provider();
        let refuse = |e: String| SinkError::Permanent(format!("redis: {e}"));
        let stream = Template::parse(&cfg.stream).map_err(refuse)?;
        let mut info: redis::ConnectionInfo = cfg
            .url
            .as_str()
            .parse()
            .map_err(|e: redis::RedisError| refuse(e.to_string()))?;
        let mut redis_settings = info.redis_settings().clone();
        if let Some(pw) = cfg.password().read()? {
            redis_settings = redis_settings.set_password(pw);
        }
        if let Some(u) = &cfg.username {
            redis_settings = redis_settings.set_username(u.clone());
        }
        info = info.set_redis_settings(redis_settings);
        let client = match &cfg.tls {
            Some(t) => {
                let read = |key: &str, p: &std::path::Path| {
                    std::fs::read(p).map_err(|e| refuse(format!("tls.{key} {}: {e}", p.display())))
                };
                let root_cert = t
                    .ca_file
                    .as_deref()
                    .map(|p| read("ca_file", p))
                    .transpose()?;
                let client_tls = match (&t.cert_file, &t.key_file) {
                    (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
                        client_cert: read("cert_file", c)?,
                        client_key: read("key_file", k)?,
                    }),
                    _ => None,
                };
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls,
                        root_cert,
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(|e| refuse(e.to_string()))?;
        Ok(RedisSink {
            timeout: Duration::from_millis(cfg.timeout_ms),
            cfg,
            client,
            stream,
            conn: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, SinkError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let c = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| classify(&e))?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn xadd(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let mut conn = self.connection().await?;
        let mut pipe = redis::pipe();
        for a in alerts {
            let cmd = pipe.cmd("XADD").arg(self.stream.render_slugged(a));
            if self.cfg.maxlen > 0 {
                cmd.arg("MAXLEN")
                    .arg(if self.cfg.exact_maxlen { "=" } else { "~" })
                    .arg(self.cfg.maxlen);
            }
            cmd.arg("*")
                .arg("uuid")
                .arg(a.uuid.to_string())
                .arg("rule")
                .arg(&a.rule)
                .arg("priority")
                .arg(a.priority.as_str())
                .arg("source")
                .arg(&a.source)
                .arg("alert")
                .arg(a.to_json());
        }
        let ids: Vec<String> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| classify(&e))?;
        if ids.len() != alerts.len() {
            return Err(SinkError::retryable(format!(
                "redis: {} entry ids for {} alerts",
                ids.len(),
                alerts.len()
            )));
        }
        Ok(())
    }
}

impl Sink for RedisSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout * 2, self.xadd(alerts)).await {
                Ok(r) => r,
                Err(_) => Err(SinkError::retryable("redis: timed out")),
            }
        })
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.batch_max,
            max_wait: Duration::ZERO,
        }
    }
}
