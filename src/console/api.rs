//! The alert routes: `alerts` (filters, newest first, cursor paging), `alerts/{uuid}` (one
//! alert with its deliveries and its rule's description), `stats` (buckets and top values),
//! and `stream` (Server-Sent Events of new alerts matching a filter: the live feed).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::ConsoleState;
use super::params;
use crate::server::error;
use crate::store::{StoreError, StoredAlert, query};

/// The answer to a store error: 400 for a bad request, 503 (logged) for the rest.
fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        e => {
            tracing::error!(error = %e, "console: store query failed");
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

/// `GET /api/v1/alerts`.
pub async fn alerts(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (scope, p) = match st.request(&headers, &q, &["cursor", "limit"]) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    match st.store.page(p.filter, scope, p.cursor, p.limit).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => store_error(e),
    }
}

/// One alert as `alerts/{uuid}` shows it: the stored alert and its rule's description.
#[derive(Serialize)]
struct Detail {
    #[serde(flatten)]
    stored: StoredAlert,
    /// The rule's description, when the rule is loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_description: Option<String>,
}

/// `GET /api/v1/alerts/{uuid}`.
pub async fn alert(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let scope = match st.scope(&headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Ok(uuid) = id.parse::<uuid::Uuid>() else {
        return error(StatusCode::BAD_REQUEST, format!("{id:?} is not a UUID"));
    };
    match st.store.get(uuid, scope).await {
        Ok(Some(stored)) => {
            let rule_description = st
                .detector
                .catalog()
                .rules
                .into_iter()
                .find(|r| r.name == stored.alert.rule)
                .map(|r| r.desc);
            Json(Detail {
                stored,
                rule_description,
            })
            .into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no alert {uuid}")),
        Err(e) => store_error(e),
    }
}

/// `GET /api/v1/stats`.
pub async fn stats(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (scope, p) = match st.request(&headers, &q, &["bucket"]) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let bucket = p
        .bucket
        .unwrap_or_else(|| params::default_bucket(&p.filter));
    match st.store.stats(p.filter, scope, bucket).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => store_error(e),
    }
}

/// `GET /api/v1/stream`: a `ready` event once subscribed, then one `alert` event per new
/// matching alert (its id is the alert's `seq`), and `lagged` when this reader fell behind and
/// missed some (reload the list then).
pub async fn stream(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (scope, p) = match st.request(&headers, &q, &[]) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let rx = st.store.subscribe();
    let filter = p.filter;
    let ready = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("ready").data("subscribed"))
    });
    let alerts = futures_util::stream::unfold(rx, move |mut rx| {
        let (filter, scope) = (filter.clone(), scope.clone());
        async move {
            loop {
                match rx.recv().await {
                    Ok(a) if query::matches(&filter, &scope, &a) => {
                        let ev = Event::default()
                            .event("alert")
                            .id(a.seq.to_string())
                            .json_data(&*a)
                            .unwrap_or_else(|_| Event::default().comment("unencodable"));
                        return Some((Ok::<_, Infallible>(ev), rx));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        let ev = Event::default().event("lagged").data(n.to_string());
                        return Some((Ok(ev), rx));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    use futures_util::StreamExt;
    let mut closing = st.closing.clone();
    let closed = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    Sse::new(ready.chain(alerts).take_until(closed))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
