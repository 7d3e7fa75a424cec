//! `POST /test` (falcosidekick's convention), behind the webhook's auth: a test alert sent
//! straight through every sink, or the one named by `?sink=NAME`, answered per sink with
//! delivered or the error (see `sinks::test_alert`). 200 when every sink took it, 502 when one
//! did not, 404 for an unknown sink name, 429 while another test is running. The body of the
//! request is ignored.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Mutex, watch};

use crate::server::{self, auth::TokenAuth};
use crate::sinks::SinkConfig;
use crate::sinks::test_alert::{TEST_TIMEOUT, send_test};

/// What the route needs: the sinks in force (they change on reload) and the alert's host name.
#[derive(Clone)]
pub struct TestState {
    sinks: watch::Receiver<Vec<SinkConfig>>,
    hostname: String,
    running: Arc<Mutex<()>>,
}

#[derive(Deserialize)]
struct TestQuery {
    sink: Option<String>,
}

/// The `POST /test` route over the sinks `sinks` carries, behind `auth`.
pub fn routes(
    sinks: watch::Receiver<Vec<SinkConfig>>,
    hostname: String,
    auth: TokenAuth,
) -> Router {
    let state = TestState {
        sinks,
        hostname,
        running: Arc::default(),
    };
    Router::new()
        .route("/test", post(post_test))
        .with_state(state)
        .route_layer(middleware::from_fn_with_state(auth, TokenAuth::require))
}

async fn post_test(State(st): State<TestState>, Query(q): Query<TestQuery>) -> Response {
    let Ok(_one) = st.running.try_lock() else {
        return server::error(
            StatusCode::TOO_MANY_REQUESTS,
            "a test alert is being sent; retry when it is done",
        );
    };
    let sinks = st.sinks.borrow().clone();
    match send_test(&sinks, q.sink.as_deref(), &st.hostname, TEST_TIMEOUT).await {
        Ok(outcomes) => {
            for o in &outcomes {
                match &o.error {
                    None => tracing::info!(sink = %o.sink, "test alert delivered"),
                    Some(e) => {
                        tracing::warn!(sink = %o.sink, error = %e, "test alert not delivered")
                    }
                }
            }
            let status = if outcomes.iter().all(|o| o.delivered) {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, axum::Json(json!({ "sinks": outcomes }))).into_response()
        }
        Err(e) => server::error(StatusCode::NOT_FOUND, e.to_string()),
    }
}
