//! Connection limits of the server: how many connections at once, how long one may sit without
//! a request, and HTTP/2's own limits. A connection that sends nothing, half an HTTP/2 preface
//! or headers a byte at a time is closed once it has gone `read_timeout` without starting a
//! request (the first) or `idle_timeout` without one in flight (later ones): hyper's own header
//! timeout covers HTTP/1 only once a byte arrived, and nothing covers the protocol detection or
//! HTTP/2 until now.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, positive};

/// Connection settings (the `connections` key of kaudit's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Most connections open at once; past it kaudit stops accepting until one closes (new
    /// clients wait in the listen backlog).
    pub max: usize,
    /// A connection with no request in flight for this long is closed, in seconds.
    pub idle_timeout_secs: u64,
    /// Most concurrent HTTP/2 streams per connection.
    pub http2_max_streams: u32,
    /// HTTP/2 keep-alive pings after this long without frames, in seconds; a peer that does
    /// not answer within 20 s is dropped.
    pub http2_keepalive_secs: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max: 1024,
            idle_timeout_secs: 90,
            http2_max_streams: 100,
            http2_keepalive_secs: 30,
        }
    }
}

impl ConnectionsConfig {
    /// Checks values; keys are relative to `connections`.
    pub fn validate(&self) -> Result<(), Invalid> {
        positive("max", self.max as u64)?;
        positive("idle_timeout_secs", self.idle_timeout_secs)?;
        positive("http2_max_streams", u64::from(self.http2_max_streams))?;
        positive("http2_keepalive_secs", self.http2_keepalive_secs)
    }

    /// The limits of a server whose requests must arrive within `read_timeout`.
    pub fn limits(&self, read_timeout: Duration) -> Limits {
        Limits {
            read_timeout,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            max_connections: self.max,
            http2_max_streams: self.http2_max_streams,
            http2_keepalive: Duration::from_secs(self.http2_keepalive_secs),
        }
    }
}

/// What [`serve_with`](super::serve_with) enforces on each connection.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Headers (and the first request of a connection) must arrive within it.
    pub read_timeout: Duration,
    /// Longest time without a request in flight.
    pub idle_timeout: Duration,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub http2_max_streams: u32,
    /// HTTP/2 keep-alive interval.
    pub http2_keepalive: Duration,
}

impl Limits {
    /// The defaults of [`ConnectionsConfig`] with `read_timeout`.
    pub fn new(read_timeout: Duration) -> Limits {
        ConnectionsConfig::default().limits(read_timeout)
    }
}

/// Why a connection was closed by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// No request started within the read timeout.
    NoRequest,
    /// No request in flight for the idle timeout.
    Idle,
}

impl Closed {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::NoRequest => "no_request",
            Closed::Idle => "idle",
        }
    }
}

#[derive(Debug)]
struct State {
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection was accepted), and whether one ever
    /// started.
    last: Mutex<(Instant, bool)>,
}

/// The requests of one connection, as its watchdog sees them.
#[derive(Clone, Debug)]
pub struct Activity(Arc<State>);

impl Default for Activity {
    fn default() -> Self {
        Activity(Arc::new(State {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new((Instant::now(), false)),
        }))
    }
}

/// A request in flight; dropping it ends the request.
pub struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut last = self.0.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = (Instant::now(), true);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    /// Marks a request as started.
    pub fn begin(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        self.0.last.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        InFlight(self.0.clone())
    }

    /// Resolves once the connection has gone `first` without starting a request, or later
    /// `idle` with none in flight.
    pub async fn expired(&self, first: Duration, idle: Duration) -> Closed {
        loop {
            let (since, started) = *self.0.last.lock().unwrap_or_else(|p| p.into_inner());
            let limit = if started { idle } else { first };
            let busy = self.0.in_flight.load(Ordering::Acquire) > 0;
            let left = limit.saturating_sub(since.elapsed());
            if !busy && left.is_zero() {
                return if started {
                    Closed::Idle
                } else {
                    Closed::NoRequest
                };
            }
            // A request in flight has its own timeouts; look again after one limit.
            let wait = if busy { limit } else { left };
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
    }
}

/// A service that tells the connection's [`Activity`] when each request starts and ends.
#[derive(Clone)]
pub struct Tracked<S> {
    /// The service.
    pub inner: S,
    /// Its connection's activity.
    pub activity: Activity,
}

impl<S, R> tower::Service<R> for Tracked<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let guard = self.activity.begin();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(guard);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn first_request_then_idle_deadlines() {
        let a = Activity::default();
        let t = Instant::now();
        assert_eq!(
            a.expired(Duration::from_secs(2), Duration::from_secs(9))
                .await,
            Closed::NoRequest
        );
        assert!(t.elapsed() >= Duration::from_secs(2));
        let g = a.begin();
        let waiting = a.expired(Duration::from_secs(2), Duration::from_secs(9));
        tokio::pin!(waiting);
        // In flight: never expires.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), &mut waiting)
                .await
                .is_err()
        );
        drop(g);
        let t = Instant::now();
        assert_eq!(waiting.await, Closed::Idle);
        assert!(t.elapsed() >= Duration::from_secs(9));
    }

    #[test]
    fn config_checks() {
        assert!(ConnectionsConfig::default().validate().is_ok());
        let bad = ConnectionsConfig {
            max: 0,
            ..ConnectionsConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "max");
    }
}
