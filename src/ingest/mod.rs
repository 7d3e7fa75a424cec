//! The audit webhook: `POST /k8s-audit` from kube-apiserver.
//!
//! A request is authenticated, its content type and size checked (413 while streaming, never
//! after buffering a too-large body), checked, and appended to the inbox: 200 once the batch is
//! on disk, 429 with `Retry-After` when detection is far behind or request bodies in flight are
//! at their memory budget, 503 when the disk refuses the write. Nothing grows without bound.
//! The server itself (TLS, timeouts, auth) is `server`'s.

mod budget;
pub mod test_alert;

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
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::Rejection;
use crate::delivery::inbox::{Inbox, InboxError, Screen, Screened};
use crate::invalid::{Invalid, positive};
use crate::server::{self, auth::TokenAuth};
use budget::Budget;

/// Request limits and the queue between ingest and detection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted request body; larger ones get 413 (default 12 MiB, the k8saudit plugin's).
    pub max_body_bytes: usize,
    /// Accepted batches waiting for detection (durably, in the inbox); when this many wait,
    /// requests get 429.
    pub queue_capacity: usize,
    /// Bytes of request bodies held in memory at once, across all requests; a request that
    /// would go over gets 429 before its body is read.
    pub max_inflight_bytes: usize,
    /// Time allowed to read a request's headers and its body, in seconds.
    pub read_timeout_secs: u64,
    /// Largest single event kept (default 256 KiB, the plugin's `maxEventSize`); larger are dropped.
    pub max_event_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 12 * 1024 * 1024,
            queue_capacity: 4096,
            max_inflight_bytes: 128 * 1024 * 1024,
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
        if self.max_inflight_bytes < self.max_body_bytes {
            return Err(Invalid::new(
                "max_inflight_bytes",
                format!(
                    "must be at least ingest.max_body_bytes ({}), or no large request could ever be read",
                    self.max_body_bytes
                ),
            ));
        }
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
    /// Requests answered 429 before their body was read, by reason (`queue_full`,
    /// `inflight_bytes`): their events were never counted, the client sends them again.
    pub requests_refused: Family<ReasonLabel, Counter>,
}

impl IngestMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = IngestMetrics {
            events_received: Counter::default(),
            events_accepted: Counter::default(),
            events_rejected: Family::default(),
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            requests_refused: Family::default(),
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
            "ingest_requests_refused",
            "Requests answered 429 before their body was read, by reason",
            m.requests_refused.clone(),
        );
        for reason in ["queue_full", "inflight_bytes"] {
            let _ = m.requests_refused.get_or_create(&ReasonLabel { reason });
        }
        for reason in Rejection::ALL
            .map(Rejection::as_str)
            .into_iter()
            .chain(["queue_full", "storage"])
        {
            let _ = m.events_rejected.get_or_create(&ReasonLabel { reason });
        }
        m
    }
}

/// Bodies up to this size are checked on the async worker that read them; larger ones on a
/// blocking thread.
const INLINE_BODY_BYTES: usize = 256 * 1024;

/// Shared state of the webhook handler.
#[derive(Clone)]
pub struct IngestState {
    inbox: Inbox,
    screen: Arc<dyn Screen>,
    /// Turns to check a body over [`INLINE_BODY_BYTES`], one per core.
    large: Arc<tokio::sync::Semaphore>,
    metrics: IngestMetrics,
    budget: Budget,
    cfg: IngestConfig,
    next_id: Arc<AtomicU64>,
}

impl IngestState {
    /// State for a webhook checking each batch with `screen` (detection's [`Screen`], or
    /// [`crate::delivery::inbox::ValidateOnly`]) and appending it to `inbox`.
    pub fn new(
        inbox: Inbox,
        screen: Arc<dyn Screen>,
        metrics: IngestMetrics,
        cfg: IngestConfig,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        IngestState {
            inbox,
            screen,
            large: Arc::new(tokio::sync::Semaphore::new(cores)),
            metrics,
            budget: Budget::new(cfg.max_inflight_bytes),
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
    // Detection far behind: refuse before reading and checking the body, so that overload costs
    // a header, not a parse that would take CPU from detection. (A batch already being read
    // when the queue fills is refused after its check, below.)
    if st.inbox.pending() >= st.cfg.queue_capacity as u64 {
        refused_early(&st.metrics, "queue_full");
        return too_many(format!(
            "{} batches wait for detection (ingest.queue_capacity); retry later",
            st.cfg.queue_capacity
        ));
    }
    let limit = st.cfg.max_body_bytes;
    // Memory for the body is reserved before a byte is read; when requests in flight already
    // hold the budget, the client retries instead of kaudit growing.
    let Some(_budget) = st.budget.reserve(&parts.headers, limit) else {
        refused_early(&st.metrics, "inflight_bytes");
        return too_many(
            "request bodies in flight are at ingest.max_inflight_bytes; retry later".into(),
        );
    };
    let body = match server::read_body(&parts.headers, body, limit, st.cfg.read_timeout()).await {
        Ok(b) => b,
        Err(e) => return e.into_response(limit),
    };
    let max_event = st.cfg.max_event_bytes;
    // The check (and, with rules in force, detection in the same pass): a large body on a
    // blocking thread, so that it does not hold up the requests sharing this worker.
    let screened = if body.len() > INLINE_BODY_BYTES {
        // One large body per core at a time: its events and alerts are built while it is
        // checked, and eight 12 MiB bodies at once held most of a GiB.
        let Ok(_turn) = st.large.clone().acquire_owned().await else {
            return server::error(StatusCode::SERVICE_UNAVAILABLE, "ingest is closing");
        };
        let (b, screen) = (body.clone(), st.screen.clone());
        match tokio::task::spawn_blocking(move || screen.screen(&b, max_event)).await {
            Ok(d) => d,
            Err(e) => {
                return server::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("decoder failed: {e}"),
                );
            }
        }
    } else {
        st.screen.screen(&body, max_event)
    };
    let Screened { checked, evaluated } = match screened {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(request_id = id, error = %e, "rejected audit payload");
            return server::error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let m = &st.metrics;
    let accepted = checked.accepted;
    let rejected = checked.rejected.len();
    m.events_received.inc_by((accepted + rejected) as u64);
    if rejected > 0 {
        log_rejected(id, &checked.rejected, m);
    }
    if accepted > 0 {
        if st.inbox.pending() >= st.cfg.queue_capacity as u64 {
            m.events_rejected
                .get_or_create(&ReasonLabel {
                    reason: "queue_full",
                })
                .inc_by(accepted as u64);
            return too_many(format!(
                "{} batches wait for detection (ingest.queue_capacity); retry later",
                st.cfg.queue_capacity
            ));
        }
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        match st
            .inbox
            .append_evaluated(SOURCE, content_type, body, evaluated)
            .await
        {
            Ok(seq) => {
                m.events_accepted.inc_by(accepted as u64);
                m.batch_events.observe(accepted as f64);
                tracing::debug!(
                    request_id = id,
                    seq,
                    accepted,
                    rejected,
                    "audit batch accepted"
                );
            }
            Err(InboxError::Full { what }) => {
                m.events_rejected
                    .get_or_create(&ReasonLabel {
                        reason: "queue_full",
                    })
                    .inc_by(accepted as u64);
                return too_many(format!("inbox full ({what}); retry later"));
            }
            Err(e) => {
                m.events_rejected
                    .get_or_create(&ReasonLabel { reason: "storage" })
                    .inc_by(accepted as u64);
                tracing::error!(request_id = id, error = %e, "batch not accepted");
                let mut r = server::error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return r;
            }
        }
    }
    (
        StatusCode::OK,
        axum::Json(json!({ "accepted": accepted, "rejected": rejected })),
    )
        .into_response()
}

fn refused_early(m: &IngestMetrics, reason: &'static str) {
    m.requests_refused
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// The inbox's name for batches from this webhook.
pub const SOURCE: &str = "webhook";

/// 429 with `Retry-After: 1`, which kube-apiserver's webhook backend honours.
fn too_many(message: String) -> Response {
    let mut r = server::error(StatusCode::TOO_MANY_REQUESTS, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Counts dropped items by reason and logs one line for the request (never one per item: a
/// hostile payload of millions of bad items must not flood the log).
fn log_rejected(id: u64, rejected: &[(usize, Rejection)], m: &IngestMetrics) {
    let mut by_reason: Vec<(&'static str, usize)> = Vec::new();
    for (_, reason) in rejected {
        let r = reason.as_str();
        match by_reason.iter_mut().find(|(k, _)| *k == r) {
            Some((_, n)) => *n += 1,
            None => by_reason.push((r, 1)),
        }
    }
    for (reason, n) in &by_reason {
        m.events_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc_by(*n as u64);
    }
    let first: Vec<usize> = rejected.iter().take(5).map(|(i, _)| *i).collect();
    tracing::warn!(
        request_id = id,
        dropped = rejected.len(),
        reasons = ?by_reason,
        first_items = ?first,
        "dropped audit events"
    );
}
