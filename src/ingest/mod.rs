//! The webhook server: `POST /k8s-audit` from kube-apiserver, health, readiness and metrics.
//!
//! A request is authenticated, its content type and size checked (413 while streaming, never
//! after buffering a too-large body), decoded, and the batch is put on a bounded queue: 200 at
//! once, or 429 with `Retry-After` when detection is behind, which the apiserver's webhook
//! backend retries. Nothing grows without bound.

pub mod auth;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::audit::{self, AuditBatch, Rejection};
use crate::config::IngestConfig;
use crate::metrics::Metrics;
use auth::TokenAuth;
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

/// Label of rejected events: why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A bounded reason such as `missing_stage_timestamp`.
    pub reason: &'static str,
}

/// Metric families of the webhook server.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Requests by route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route, in seconds.
    pub request_duration: Family<PathLabel, Histogram>,
    /// Events found in accepted payloads.
    pub events_received: Counter,
    /// Events queued for detection.
    pub events_accepted: Counter,
    /// Events dropped, by reason (including whole batches refused with 429).
    pub events_rejected: Family<ReasonLabel, Counter>,
    /// Events per accepted batch.
    pub batch_events: Histogram,
    /// Batches waiting for detection.
    pub queue_depth: Gauge,
}

impl IngestMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = IngestMetrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.5, 14))
            }),
            events_received: Counter::default(),
            events_accepted: Counter::default(),
            events_rejected: Family::default(),
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            queue_depth: Gauge::default(),
        };
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
        r.register(
            "events_received",
            "Audit events received in payloads",
            m.events_received.clone(),
        );
        r.register(
            "events_accepted",
            "Audit events queued for detection",
            m.events_accepted.clone(),
        );
        r.register(
            "events_rejected",
            "Audit events dropped, by reason",
            m.events_rejected.clone(),
        );
        r.register(
            "batch_events",
            "Events per accepted batch",
            m.batch_events.clone(),
        );
        r.register(
            "ingest_queue_depth",
            "Batches waiting for detection",
            m.queue_depth.clone(),
        );
        for reason in Rejection::ALL
            .map(Rejection::as_str)
            .into_iter()
            .chain(["queue_full"])
        {
            let _ = m.events_rejected.get_or_create(&ReasonLabel { reason });
        }
        m
    }
}

/// Shared state of the request handlers.
#[derive(Clone)]
pub struct IngestState {
    queue: mpsc::Sender<AuditBatch>,
    auth: TokenAuth,
    metrics: Metrics,
    cfg: IngestConfig,
    ready: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    falco: Option<crate::falco::forward::FalcoHealth>,
}

impl IngestState {
    /// State for a server feeding `queue`.
    pub fn new(
        queue: mpsc::Sender<AuditBatch>,
        auth: TokenAuth,
        metrics: Metrics,
        cfg: IngestConfig,
        ready: Arc<AtomicBool>,
    ) -> Self {
        IngestState {
            queue,
            auth,
            metrics,
            cfg,
            ready,
            next_id: Arc::new(AtomicU64::new(1)),
            falco: None,
        }
    }

    /// Reports Falco's health on `/readyz` (informational: kaudit stays ready and buffers while
    /// Falco is down).
    pub fn with_falco_health(mut self, h: crate::falco::forward::FalcoHealth) -> Self {
        self.falco = Some(h);
        self
    }

    /// The token checker, for other intake routes that share `/k8s-audit`'s auth.
    pub fn auth(&self) -> &TokenAuth {
        &self.auth
    }
}

/// The HTTP routes. `extra` adds routes of other stages (e.g. Falco's `http_output` intake).
pub fn app(state: IngestState, extra: Router) -> Router {
    let audit = Router::new()
        .route("/k8s-audit", post(post_audit))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(audit)
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(extra)
        .layer(middleware::from_fn_with_state(state, observe))
}

/// Answers 401 unless the request carries an accepted bearer token.
pub async fn require_token(State(st): State<IngestState>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if st.auth.check(header) {
        next.run(req).await
    } else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid token (Bearer, or Basic with the token as password)",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

async fn observe(State(st): State<IngestState>, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &st.metrics.ingest;
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

async fn readyz(State(st): State<IngestState>) -> Response {
    if st.ready.load(Ordering::Relaxed) && !st.queue.is_closed() {
        match &st.falco {
            Some(h) => (StatusCode::OK, format!("ready\nfalco: {}\n", h.as_str())).into_response(),
            None => (StatusCode::OK, "ready\n").into_response(),
        }
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(st): State<IngestState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
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

async fn post_audit(State(st): State<IngestState>, req: Request) -> Response {
    let id = st.next_id.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    if !is_json(&parts.headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let limit = st.cfg.max_body_bytes;
    let timeout = Duration::from_secs(st.cfg.read_timeout_secs);
    let body = match read_body(&parts.headers, body, limit, timeout).await {
        Ok(b) => b,
        Err(e) => return e.into_response(limit),
    };
    let max_event = st.cfg.max_event_bytes;
    let decoded = if body.len() > 256 * 1024 {
        let b = body.clone();
        match tokio::task::spawn_blocking(move || audit::decode(&b, max_event)).await {
            Ok(d) => d,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("decoder failed: {e}"),
                );
            }
        }
    } else {
        audit::decode(&body, max_event)
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(request_id = id, error = %e, "rejected audit payload");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let m = &st.metrics.ingest;
    let total = decoded.events.len() + decoded.rejected.len();
    m.events_received.inc_by(total as u64);
    for (index, reason) in &decoded.rejected {
        m.events_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
        tracing::warn!(
            request_id = id,
            item = index,
            reason = reason.as_str(),
            "dropped audit event"
        );
    }
    let accepted = decoded.events.len();
    let rejected = decoded.rejected.len();
    if accepted > 0 {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_string();
        let batch = AuditBatch {
            id,
            events: Arc::new(decoded.events),
            body,
            content_type,
        };
        match st.queue.try_send(batch) {
            Ok(()) => {
                m.queue_depth.inc();
                m.events_accepted.inc_by(accepted as u64);
                m.batch_events.observe(accepted as f64);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                m.events_rejected
                    .get_or_create(&ReasonLabel {
                        reason: "queue_full",
                    })
                    .inc_by(accepted as u64);
                let mut r = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ingest queue is full; retry later",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
            }
        }
    }
    tracing::debug!(request_id = id, accepted, rejected, "audit batch accepted");
    (
        StatusCode::OK,
        axum::Json(json!({ "accepted": accepted, "rejected": rejected })),
    )
        .into_response()
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

/// Binds `addr` and serves `app` on it, with TLS when `tls` is set.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    tls: Option<ReloadingTls>,
    read_timeout: Duration,
) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        loop {
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
            let svc = app
                .clone()
                .map_request(|r: Request<hyper::body::Incoming>| r.map(Body::new));
            let svc = TowerToHyperService::new(svc);
            let watcher = graceful.watcher();
            let builder = builder.clone();
            let tls = tls.as_ref().map(ReloadingTls::current);
            tokio::spawn(async move {
                match tls {
                    None => {
                        let conn = builder
                            .serve_connection(TokioIo::new(stream), svc)
                            .into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(%peer, error = %e, "connection ended with error");
                        }
                    }
                    Some(cfg) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
                        let tls_stream =
                            match tokio::time::timeout(read_timeout, acceptor.accept(stream)).await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                                    return;
                                }
                                Err(_) => {
                                    tracing::info!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let conn = builder
                            .serve_connection(TokioIo::new(tls_stream), svc)
                            .into_owned();
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(%peer, error = %e, "connection ended with error");
                        }
                    }
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
