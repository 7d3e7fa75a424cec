//! The HTTP(S) server every inbound route shares (the audit webhook, Falco's `http_output`
//! intake, health and metrics): the accept loop with TLS and timeouts, graceful shutdown, token
//! auth, body limits, JSON errors, and the operational routes. Plumbing: it knows no stage.

pub mod auth;
pub mod conn;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::health::Health;
use tls::ReloadingTls;

/// Labels of the per-request counter: a route (bounded: our paths or `other`) and a status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Matched route, or `other` for unknown paths.
    pub path: String,
    /// HTTP status code.
    pub status: u16,
}

/// Label of a per-route histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// Matched route, or `other`.
    pub path: String,
}

/// Label of connections the server closed: why (`no_request`, `idle`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabel {
    /// The reason.
    pub reason: &'static str,
}

/// Metric families of the HTTP server, for every route.
#[derive(Clone)]
pub struct HttpMetrics {
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route, in seconds.
    pub request_duration: Family<PathLabel, Histogram>,
    /// Connections open now.
    pub connections: Gauge,
    /// Connections the server closed for want of requests, by reason.
    pub connections_closed: Family<CloseLabel, Counter>,
}

impl HttpMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = HttpMetrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.5, 14))
            }),
            connections: Gauge::default(),
            connections_closed: Family::default(),
        };
        r.register(
            "http_connections",
            "HTTP connections open",
            m.connections.clone(),
        );
        r.register(
            "http_connections_closed",
            "HTTP connections closed by the server for want of requests, by reason",
            m.connections_closed.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            m.request_duration.clone(),
        );
        m
    }
}

/// Counts and times every request by its matched route: a layer for the whole app, used as
/// `middleware::from_fn_with_state(metrics, observe)`.
pub async fn observe(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    m.request_duration
        .get_or_create(&PathLabel { path: path.clone() })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            path,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// A JSON error body: `{"error": "..."}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// True when a `Content-Type` header names JSON (`application/json`, with or without params).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let mime = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

/// Why a body could not be read.
pub enum BodyError {
    /// Larger than the limit: 413.
    TooLarge,
    /// The client took longer than the read timeout: 408.
    Timeout,
    /// The connection failed mid-body: 400.
    Io(String),
}

impl BodyError {
    /// The response for this error.
    pub fn into_response(self, limit: usize) -> Response {
        match self {
            BodyError::TooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {limit} bytes (ingest.max_body_bytes)"),
            ),
            BodyError::Timeout => error(
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time",
            ),
            BodyError::Io(e) => error(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
            ),
        }
    }
}

/// Reads a body up to `limit` bytes within `timeout`; refuses early on a large Content-Length.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(BodyError::TooLarge)
            } else {
                Err(BodyError::Io(e.to_string()))
            }
        }
    }
}

/// `GET /healthz`, `/readyz` (from `health`) and `/metrics` (the text `metrics` returns): open
/// to probes and scrapers; `/metrics` behind `metrics_auth` when given.
pub fn ops_routes(
    health: Health,
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
    metrics_auth: Option<auth::TokenAuth>,
) -> Router {
    let live = health.clone();
    let metrics_route = Router::new().route(
        "/metrics",
        get(move || {
            let text = metrics();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    let metrics_route = match metrics_auth {
        Some(a) => metrics_route.route_layer(axum::middleware::from_fn_with_state(
            a,
            auth::TokenAuth::require,
        )),
        None => metrics_route,
    };
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let (ok, body) = live.liveness();
                async move { (status_of(ok), body) }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let (ok, body) = health.readiness();
                async move { (status_of(ok), body) }
            }),
        )
        .merge(metrics_route)
}

fn status_of(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// A running HTTP(S) server.
pub struct Server {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// The bound address (useful when listening on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets open requests finish (up to `grace`), then returns.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("connections still open after {grace:?}; closing them");
            abort.abort();
        }
    }
}

/// Binds `addr` and serves `app` on it, with TLS when `tls` is set, and the default
/// connection limits with `read_timeout`.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    tls: Option<ReloadingTls>,
    read_timeout: Duration,
) -> std::io::Result<Server> {
    serve_with(addr, app, tls, conn::Limits::new(read_timeout), None).await
}

/// Binds `addr` and serves `app` on it, with TLS when `tls` is set: at most
/// `limits.max_connections` at once, each closed when it goes too long without a request
/// ([`conn`]); counted in `metrics` when given.
pub async fn serve_with(
    addr: SocketAddr,
    app: Router,
    tls: Option<ReloadingTls>,
    limits: conn::Limits,
    metrics: Option<HttpMetrics>,
) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let read_timeout = limits.read_timeout;
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            .max_header_list_size(64 * 1024)
            .keep_alive_interval(Some(limits.http2_keepalive))
            .keep_alive_timeout(Duration::from_secs(20));
        let builder = Arc::new(builder);
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        loop {
            // At the cap, stop accepting: new clients wait in the backlog until one closes.
            let slot = tokio::select! {
                _ = stopped.changed() => break,
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let activity = conn::Activity::default();
            let svc = conn::Tracked {
                inner: app
                    .clone()
                    .map_request(|r: Request<hyper::body::Incoming>| r.map(Body::new)),
                activity: activity.clone(),
            };
            let svc = TowerToHyperService::new(svc);
            let watcher = graceful.watcher();
            let builder = builder.clone();
            let tls = tls.as_ref().map(ReloadingTls::current);
            let metrics = metrics.clone();
            let limits = limits.clone();
            tokio::spawn(async move {
                let _slot = slot;
                if let Some(m) = &metrics {
                    m.connections.inc();
                }
                let expired = activity.expired(limits.read_timeout, limits.idle_timeout);
                let closed = match tls {
                    None => {
                        let conn = builder
                            .serve_connection(TokioIo::new(stream), svc)
                            .into_owned();
                        tokio::select! {
                            r = watcher.watch(conn) => {
                                if let Err(e) = r {
                                    tracing::debug!(%peer, error = %e, "connection ended with error");
                                }
                                None
                            }
                            why = expired => Some(why),
                        }
                    }
                    Some(cfg) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                        match tokio::time::timeout(read_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => {
                                let conn = builder
                                    .serve_connection(TokioIo::new(tls_stream), svc)
                                    .into_owned();
                                tokio::select! {
                                    r = watcher.watch(conn) => {
                                        if let Err(e) = r {
                                            tracing::debug!(%peer, error = %e, "connection ended with error");
                                        }
                                        None
                                    }
                                    why = expired => Some(why),
                                }
                            }
                            Ok(Err(e)) => {
                                tracing::info!(%peer, error = %e, "TLS handshake refused");
                                None
                            }
                            Err(_) => {
                                tracing::info!(%peer, "TLS handshake timed out");
                                Some(conn::Closed::NoRequest)
                            }
                        }
                    }
                };
                if let Some(m) = &metrics {
                    m.connections.dec();
                    if let Some(why) = closed {
                        m.connections_closed
                            .get_or_create(&CloseLabel {
                                reason: why.as_str(),
                            })
                            .inc();
                    }
                }
                if let Some(why) = closed {
                    tracing::debug!(%peer, reason = why.as_str(), "connection closed: no request");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    });
    Ok(Server {
        local_addr,
        stop,
        task,
    })
}
