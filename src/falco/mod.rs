//! Falco integration: forward audit batches to a managed Falco, and route the alerts Falco raises
//! (by tailing its JSON output file, and on a falcosidekick-compatible `POST /` for its
//! `http_output`).

pub mod alert_in;
pub mod forward;
pub mod tail;

use std::path::PathBuf;

use crate::delivery::alerts::AlertSender;
use crate::delivery::hold;
use crate::secret::Secret;
use crate::server::{self, auth::TokenAuth};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use tail::{FalcoInMetrics, ResultLabel};

/// Settings of the managed Falco.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FalcoConfig {
    /// Falco's k8s-audit endpoint that every accepted batch is forwarded to.
    pub forward_url: String,
    /// Bearer token sent to Falco, inline (prefer `forward_token_file`).
    pub forward_token: Option<Secret>,
    /// File holding the bearer token sent to Falco.
    pub forward_token_file: Option<PathBuf>,
    /// CA bundle for an `https` forward URL.
    pub forward_ca_file: Option<PathBuf>,
    /// Timeout of one forward request, in seconds.
    pub forward_timeout_secs: u64,
    /// Falco's health endpoint; feeds `/readyz` and metrics when set.
    pub healthz_url: Option<String>,
    /// How often the health endpoint is checked, in milliseconds.
    pub healthz_interval_ms: u64,
    /// Falco's JSON `file_output`, tailed for alerts when set.
    pub output_file: Option<PathBuf>,
    /// How often the output file is polled, in milliseconds.
    pub tail_poll_ms: u64,
    /// Accept Falco's `http_output` on `POST /` (falcosidekick-compatible).
    pub http_output: bool,
    /// Tokens (one per line, re-read on change) accepted on `POST /` only, besides `auth`'s:
    /// Falco's own credential, which cannot submit audit events. Falco sends it as the password
    /// of its `http_output` URL (`https://falco:<token>@kaudit:8777/`).
    pub intake_token_file: Option<PathBuf>,
}

impl Default for FalcoConfig {
    fn default() -> Self {
        FalcoConfig {
            forward_url: "http://127.0.0.1:8765/k8s-audit".into(),
            forward_token: None,
            forward_token_file: None,
            forward_ca_file: None,
            forward_timeout_secs: 10,
            healthz_url: None,
            healthz_interval_ms: 5000,
            output_file: None,
            tail_poll_ms: 250,
            http_output: true,
            intake_token_file: None,
        }
    }
}

#[derive(Clone)]
struct IntakeState {
    alerts: AlertSender,
    metrics: FalcoInMetrics,
    max_body: usize,
    timeout: std::time::Duration,
}

/// The `POST /` route for Falco's `http_output`, behind `/k8s-audit`'s `auth`, which also
/// accepts the tokens of `intake` (see [`FalcoConfig::intake_token_file`]).
pub fn http_output_routes(
    auth: TokenAuth,
    intake: Option<TokenAuth>,
    alerts: AlertSender,
    metrics: FalcoInMetrics,
    max_body: usize,
    timeout: std::time::Duration,
) -> Router {
    let st = IntakeState {
        alerts,
        metrics,
        max_body,
        timeout,
    };
    Router::new()
        .route("/", post(post_alert))
        .with_state(st)
        .route_layer(middleware::from_fn(move |req: Request, next: Next| {
            let (auth, intake) = (auth.clone(), intake.clone());
            async move {
                let presented = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes);
                if intake.is_some_and(|i| i.check(presented)) {
                    return next.run(req).await;
                }
                TokenAuth::require(State(auth), req, next).await
            }
        }))
}

async fn post_alert(State(st): State<IntakeState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let invalid = |st: &IntakeState| {
        st.metrics
            .http_alerts
            .get_or_create(&ResultLabel { result: "invalid" })
            .inc();
    };
    if !server::is_json(&parts.headers) {
        invalid(&st);
        return server::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let body = match server::read_body(&parts.headers, body, st.max_body, st.timeout).await {
        Ok(b) => b,
        Err(e) => {
            invalid(&st);
            return e.into_response(st.max_body);
        }
    };
    // The same body posted twice (Falco or a proxy retrying) is the same alert, with the same id.
    let id = uuid::Uuid::new_v5(&crate::detect::ALERT_UUID_NAMESPACE, &body);
    match alert_in::parse(&body, id) {
        Ok(alert) => {
            st.metrics.routed(&st.metrics.http_alerts, &alert);
            tracing::debug!(uuid = %alert.uuid, rule = %alert.rule, "alert from Falco http_output");
            // Falco is answered only once the alert is in every matching sink's spool: a 200
            // means it will be delivered, whatever happens to kaudit next.
            let (h, done) = hold::awaitable();
            if st.alerts.send_held(alert, h).await.is_err() {
                return server::error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
            }
            if !done.await.unwrap_or(false) {
                return server::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the alert could not be spooled for every sink; retry",
                );
            }
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain")],
                "OK\n",
            )
                .into_response()
        }
        Err(e) => {
            invalid(&st);
            tracing::warn!(error = %e, bytes = body.len(), "invalid alert on http_output");
            server::error(StatusCode::BAD_REQUEST, format!("invalid Falco alert: {e}"))
        }
    }
}
