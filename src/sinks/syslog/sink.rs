//! Sending: one connection kept open (TCP or TLS) or one UDP socket, written in batches.
//!
//! Plain syslog has no acknowledgement: a batch counts as delivered once written and flushed to
//! the connection. Before each batch the connection is checked for a close by the receiver (a
//! syslog receiver never sends anything, so a readable connection is a closed one) and opened
//! again; a failed write drops the connection and the batch is retried.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;

use super::config::{MsgFormat, Protocol, SyslogConfig};
use super::message::{Shape, frame};
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::transport::TlsConnector;

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

/// True when the receiver closed the stream (or sent something, which a syslog receiver never
/// does): polled once, without waiting.
fn closed<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 64];
    s.read(&mut buf).now_or_never().is_some()
}

async fn write<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> std::io::Result<()> {
    s.write_all(data).await?;
    s.flush().await
}

/// Writes alerts to a syslog receiver.
pub struct SyslogSink {
    cfg: SyslogConfig,
    shape: Shape,
    tls: Option<TlsConnector>,
    timeout: Duration,
    conn: Mutex<Option<Conn>>,
}

impl SyslogSink {
    /// Prepares the sink (reads TLS files now); connects on the first batch.
    pub fn new(cfg: SyslogConfig) -> Result<SyslogSink, SinkError> {
        let tls = match cfg.protocol {
            Protocol::Tls => Some(TlsConnector::new(
                cfg.tls.as_ref(),
                cfg.server_name.as_deref().unwrap_or(cfg.host()),
            )?),
            _ => None,
        };
        let shape = Shape {
            facility: cfg.facility_code().unwrap_or(16),
            app_name: cfg.app_name.clone(),
            hostname: cfg.hostname.clone(),
            sd_id: cfg.structured_data_id.clone(),
            text: cfg.format == MsgFormat::Text,
        };
        Ok(SyslogSink {
            timeout: Duration::from_millis(cfg.timeout_ms),
            cfg,
            shape,
            tls,
            conn: Mutex::new(None),
        })
    }

    fn what(&self) -> String {
        format!("syslog {}", self.cfg.address)
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let fail = |e: std::io::Error| SinkError::retryable(format!("{}: {e}", self.what()));
        if self.cfg.protocol == Protocol::Udp {
            let addr = tokio::net::lookup_host(&self.cfg.address)
                .await
                .map_err(fail)?
                .next()
                .ok_or_else(|| SinkError::retryable(format!("{}: no address", self.what())))?;
            let local = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let s = UdpSocket::bind(local).await.map_err(fail)?;
            s.connect(addr).await.map_err(fail)?;
            return Ok(Conn::Udp(s));
        }
        let tcp = TcpStream::connect(&self.cfg.address).await.map_err(fail)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(t) => Ok(Conn::Tls(Box::new(t.connect(tcp).await.map_err(fail)?))),
            None => Ok(Conn::Tcp(tcp)),
        }
    }

    async fn send_batch(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let mut guard = self.conn.lock().await;
        let stale = match guard.as_mut() {
            Some(Conn::Tcp(s)) => closed(s),
            Some(Conn::Tls(s)) => closed(s),
            Some(Conn::Udp(_)) | None => false,
        };
        if stale {
            *guard = None;
        }
        let conn = match guard.take() {
            Some(c) => c,
            None => tokio::time::timeout(self.timeout, self.connect())
                .await
                .map_err(|_| {
                    SinkError::retryable(format!("{}: connect timed out", self.what()))
                })??,
        };
        let messages: Vec<String> = alerts.iter().map(|a| self.shape.message(a)).collect();
        match conn {
            Conn::Udp(s) => {
                let r = self.send_udp(&s, &messages).await;
                *guard = Some(Conn::Udp(s));
                r
            }
            mut stream => {
                let mut buf = Vec::new();
                for m in &messages {
                    frame(m, &mut buf);
                }
                let io = async {
                    match &mut stream {
                        Conn::Tcp(s) => write(s, &buf).await,
                        Conn::Tls(s) => write(s, &buf).await,
                        Conn::Udp(_) => Ok(()),
                    }
                };
                match tokio::time::timeout(self.timeout, io).await {
                    Ok(Ok(())) => {
                        *guard = Some(stream);
                        Ok(())
                    }
                    Ok(Err(e)) => Err(SinkError::retryable(format!("{}: {e}", self.what()))),
                    Err(_) => Err(SinkError::retryable(format!(
                        "{}: write timed out",
                        self.what()
                    ))),
                }
            }
        }
    }

    async fn send_udp(&self, s: &UdpSocket, messages: &[String]) -> Result<(), SinkError> {
        for m in messages {
            if m.len() > self.cfg.udp_max_bytes {
                return Err(SinkError::Permanent(format!(
                    "{}: a message of {} bytes exceeds udp_max_bytes {} (use protocol tcp or tls)",
                    self.what(),
                    m.len(),
                    self.cfg.udp_max_bytes
                )));
            }
        }
        for m in messages {
            // A receiver that is down shows as a refused send (ICMP port unreachable) on a
            // connected socket, at best: UDP confirms nothing.
            s.send(m.as_bytes())
                .await
                .map_err(|e| SinkError::retryable(format!("{}: {e}", self.what())))?;
        }
        Ok(())
    }
}

impl Sink for SyslogSink {
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
