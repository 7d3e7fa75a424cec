//! The audit webhook: `POST /k8s-audit` from kube-apiserver.
//!
//! A request is authenticated, its content type and size checked (413 while streaming, never
//! after buffering a too-large body), decoded, and the batch is put on a bounded queue: 200 at
//! once, or 429 with `Retry-After` when detection is behind, which the apiserver's webhook
//! backend retries. Nothing grows without bound. The server itself (TLS, timeouts, auth) is
//! `server`'s.

pub mod queue;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, AuditBatch, Rejection};
use crate::invalid::{Invalid, positive};
use crate::server::{self, auth::TokenAuth};
use queue::{BatchSender, TrySendError};

/// Request limits and the queue between ingest and detection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted request body; larger ones get 413 (default 12 MiB, the k8saudit plugin's).
    pub max_body_bytes: usize,
    /// Accepted batches waiting for detection; when full, requests get 429.
    pub queue_capacity: usize,
    /// Time allowed to read a request's headers and its body, in seconds.
    pub read_timeout_secs: u64,
    /// Largest single event kept (default 256 KiB, the plugin's `maxEventSize`); larger are dropped.
    pub max_event_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 12 * 1024 * 1024,
            queue_capacity: 256,
            read_timeout_secs: 30,
            max_event_bytes: 256 * 1024,
        }
    }
}

impl IngestConfig {
    /// Checks what types alone cannot; keys are relative to `ingest`.
    pub fn validate(&self) -> Result<(), Invalid> {
        positive("max_body_bytes", self.max_body_bytes as u64)?;
        positive("queue_capacity", self.queue_capacity as u64)?;
        positive("read_timeout_secs", self.read_timeout_secs)?;
        Ok(())
    }

    /// The time allowed to read a request.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout_secs)
    }
}

/// Label of rejected events: why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A bounded reason such as `missing_stage_timestamp`.
    pub reason: &'static str,
}

/// Metric families of the audit webhook.
#[derive(Clone)]
pub struct IngestMetrics {
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
            events_received: Counter::default(),
            events_accepted: Counter::default(),
            events_rejected: Family::default(),
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            queue_depth: Gauge::default(),
        };
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

/// Shared state of the webhook handler.
#[derive(Clone)]
pub struct IngestState {
    queue: BatchSender,
    metrics: IngestMetrics,
    cfg: IngestConfig,
    next_id: Arc<AtomicU64>,
}

impl IngestState {
    /// State for a webhook feeding `queue`.
    pub fn new(queue: BatchSender, metrics: IngestMetrics, cfg: IngestConfig) -> Self {
        IngestState {
            queue,
            metrics,
            cfg,
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }
}

/// The `POST /k8s-audit` route, behind `auth`.
pub fn routes(state: IngestState, auth: TokenAuth) -> Router {
    Router::new()
        .route("/k8s-audit", post(post_audit))
        .with_state(state)
        .route_layer(middleware::from_fn_with_state(auth, TokenAuth::require))
}

async fn post_audit(State(st): State<IngestState>, req: Request) -> Response {
    let id = st.next_id.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    if !server::is_json(&parts.headers) {
        return server::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let limit = st.cfg.max_body_bytes;
    let timeout = Duration::from_secs(st.cfg.read_timeout_secs);
    let body = match server::read_body(&parts.headers, body, limit, timeout).await {
        Ok(b) => b,
        Err(e) => return e.into_response(limit),
    };
    let max_event = st.cfg.max_event_bytes;
    let decoded = if body.len() > 256 * 1024 {
        let b = body.clone();
        match tokio::task::spawn_blocking(move || audit::decode(&b, max_event)).await {
            Ok(d) => d,
            Err(e) => {
                return server::error(
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
            return server::error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let m = &st.metrics;
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
                m.events_accepted.inc_by(accepted as u64);
                m.batch_events.observe(accepted as f64);
            }
            Err(TrySendError::Full(_)) => {
                m.events_rejected
                    .get_or_create(&ReasonLabel {
                        reason: "queue_full",
                    })
                    .inc_by(accepted as u64);
                let mut r = server::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ingest queue is full; retry later",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
            Err(TrySendError::Closed(_)) => {
                return server::error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
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
