//! The alert console: a read-only JSON API under `/api/v1/` (described by `docs/openapi.yaml`)
//! over the alert store, and a web UI under `/ui/` built on it, both served by kaudit's own
//! server. Nothing here changes kaudit's config; tokens are the console's own
//! ([`auth`]), and a token bound to namespaces sees only those namespaces' alerts.
//!
//! - [`api`]: `alerts`, `alerts/{uuid}`, `stats`, `stream` (Server-Sent Events).
//! - [`info`]: `sinks`, `rules`, `sources`.
//! - [`ui`]: the static files of the UI, compiled into the binary.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::delivery::DeliveryMetrics;
use crate::detect::Detector;
use crate::invalid::Invalid;
use crate::sinks::{SinkConfig, SinkRules};
use crate::sources::SourcesView;
use crate::store::observer::Activity;
use crate::store::{AlertStore, Scope};

pub mod api;
pub mod auth;
pub mod info;
pub mod params;
pub mod ui;

pub use auth::{ConsoleToken, ConsoleTokens};

/// `console:` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console and open the alert store (`store:`).
    pub enabled: bool,
    /// Read-only tokens given inline (prefer `token_file`); none and no file: the console is
    /// open to whoever reaches the server.
    pub tokens: Vec<ConsoleToken>,
    /// A file with one token per line, optionally followed by the namespaces it may see.
    pub token_file: Option<PathBuf>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            tokens: Vec::new(),
            token_file: None,
        }
    }
}

impl ConsoleConfig {
    /// Checks the token file and namespaces; keys are relative to `console`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(f) = &self.token_file
            && !f.exists()
        {
            return Err(Invalid::new(
                "token_file",
                format!("{} does not exist", f.display()),
            ));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if t.token.expose().trim().is_empty() || t.token.expose().contains(char::is_whitespace)
            {
                return Err(Invalid::new(
                    format!("tokens[{i}].token"),
                    "must be non-empty, without spaces",
                ));
            }
            if t.namespaces.iter().any(|n| n.trim().is_empty()) {
                return Err(Invalid::new(
                    format!("tokens[{i}].namespaces"),
                    "empty namespace name",
                ));
            }
        }
        Ok(())
    }
}

/// What the console's routes read.
#[derive(Clone)]
pub struct ConsoleState {
    /// The alerts.
    pub store: Arc<dyn AlertStore>,
    /// Who may read what.
    pub tokens: ConsoleTokens,
    /// The sinks in force (replaced on reload).
    pub sinks: watch::Receiver<(Vec<SinkConfig>, SinkRules)>,
    /// Delivery counters and gauges, per sink.
    pub delivery: DeliveryMetrics,
    /// Each sink's latest success and error.
    pub activity: Activity,
    /// The rules in force.
    pub detector: Detector,
    /// What each source has read.
    pub sources: SourcesView,
    /// Turns true when kaudit shuts down: live feeds end so the server can drain.
    pub closing: watch::Receiver<bool>,
}

impl ConsoleState {
    /// The scope of the request's token, or the 401 to answer (boxed: it is large).
    pub fn scope(&self, headers: &HeaderMap) -> Result<Scope, Box<Response>> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        self.tokens.scope(presented).ok_or_else(|| {
            let mut r = crate::server::error(
                axum::http::StatusCode::UNAUTHORIZED,
                "missing or invalid console token (Authorization: Bearer <token>)",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Box::new(r)
        })
    }

    /// The request's token scope and its query's filter (`extra`: the route's own keys besides
    /// the filters), or the 401 or 400 to answer.
    pub fn request(
        &self,
        headers: &HeaderMap,
        query: &std::collections::BTreeMap<String, String>,
        extra: &[&str],
    ) -> Result<(Scope, params::Params), Box<Response>> {
        let scope = self.scope(headers)?;
        let p = params::parse(query, extra)
            .map_err(|m| Box::new(crate::server::error(axum::http::StatusCode::BAD_REQUEST, m)))?;
        Ok((scope, p))
    }
}

/// The console's routes: the API under `/api/v1/` and the UI under `/ui/`.
pub fn routes(state: ConsoleState) -> Router {
    Router::new()
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/alerts/{uuid}", get(api::alert))
        .route("/api/v1/stats", get(api::stats))
        .route("/api/v1/stream", get(api::stream))
        .route("/api/v1/sinks", get(info::sinks))
        .route("/api/v1/rules", get(info::rules))
        .route("/api/v1/sources", get(info::sources))
        .with_state(state)
        .merge(ui::routes())
}
