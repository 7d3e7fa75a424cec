//! The state routes: `sinks` (health and dead letters at a glance), `rules` (loaded rules with
//! their hits over a range, load warnings and errors) and `sources` (what each has read). A
//! token bound to namespaces sees only its tenants' sinks, hits of its own alerts, and no
//! sources (they are the cluster's).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ConsoleState;
use crate::delivery::SinkLabels;
use crate::server::error;
use crate::store::Scope;
use crate::store::observer::SinkActivity;

/// One sink as the sinks page shows it.
#[derive(Serialize)]
pub struct SinkStatus {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its `min_priority`.
    pub min_priority: String,
    /// Its `filter`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The tenant namespace that owns it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Records in memory in front of its spool.
    pub queue_depth: i64,
    /// Records waiting in its spool.
    pub spool_records: i64,
    /// Bytes waiting in its spool.
    pub spool_bytes: i64,
    /// Records confirmed since start.
    pub sent: u64,
    /// Failed attempts since start, in records.
    pub failed: u64,
    /// Records dead-lettered since start.
    pub dead_lettered: u64,
    /// `ok`, `retrying` (its last attempt failed) or `idle` (nothing delivered yet).
    pub health: &'static str,
    /// Latest success, error and dead letter.
    #[serde(flatten)]
    pub activity: SinkActivity,
}

/// `GET /api/v1/sinks`.
pub async fn sinks(State(st): State<ConsoleState>, headers: HeaderMap) -> Response {
    let scope = match st.scope(&headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let sinks = st.sinks.borrow().0.clone();
    let m = &st.delivery;
    let list: Vec<SinkStatus> = sinks
        .iter()
        .filter(|s| match &scope {
            Scope::All => true,
            Scope::Namespaces(ns) => s.tenant.as_ref().is_some_and(|t| ns.contains(t)),
        })
        .map(|s| {
            let l = SinkLabels {
                sink: s.name.clone(),
                sink_type: s.settings.type_name().to_string(),
            };
            let activity = st.activity.get(&s.name);
            let failing = match (&activity.last_error_at, &activity.last_success) {
                (Some(e), Some(ok)) => e > ok,
                (Some(_), None) => true,
                _ => false,
            };
            SinkStatus {
                name: s.name.clone(),
                type_name: l.sink_type.clone(),
                min_priority: s.min_priority.as_lower().to_string(),
                filter: s.filter.clone(),
                tenant: s.tenant.clone(),
                queue_depth: m.queue_depth.get_or_create(&l).get(),
                spool_records: m.spool_records.get_or_create(&l).get(),
                spool_bytes: m.spool_bytes.get_or_create(&l).get(),
                sent: m.sent.get_or_create(&l).get(),
                failed: m.failed.get_or_create(&l).get(),
                dead_lettered: m.dead_lettered.get_or_create(&l).get(),
                health: if failing {
                    "retrying"
                } else if activity.last_success.is_some() {
                    "ok"
                } else {
                    "idle"
                },
                activity,
            }
        })
        .collect();
    Json(serde_json::json!({ "sinks": list })).into_response()
}

/// One rule as the rules page shows it.
#[derive(Serialize)]
struct RuleStatus {
    name: String,
    description: String,
    priority: String,
    tags: Vec<String>,
    enabled: bool,
    active: bool,
    source: String,
    hits: u64,
}

/// `GET /api/v1/rules`: the rules in force with their hits over `since`/`until` (and the
/// other filters).
pub async fn rules(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (scope, p) = match st.request(&headers, &q, &[]) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let hits: HashMap<String, u64> = match st.store.rule_hits(p.filter, scope).await {
        Ok(h) => h.into_iter().map(|c| (c.value, c.count)).collect(),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let cat = st.detector.catalog();
    let rules: Vec<RuleStatus> = cat
        .rules
        .into_iter()
        .map(|r| RuleStatus {
            hits: hits.get(&r.name).copied().unwrap_or(0),
            name: r.name,
            description: r.desc,
            priority: r.priority.as_str().to_string(),
            tags: r.tags,
            enabled: r.enabled,
            active: r.active,
            source: r.source,
        })
        .collect();
    Json(serde_json::json!({
        "rules": rules,
        "warnings": cat.warnings,
        "error": cat.error,
    }))
    .into_response()
}

/// `GET /api/v1/sources`.
pub async fn sources(State(st): State<ConsoleState>, headers: HeaderMap) -> Response {
    let scope = match st.scope(&headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let list = match scope {
        Scope::All => st.sources.snapshot(),
        Scope::Namespaces(_) => Vec::new(),
    };
    let now: DateTime<Utc> = Utc::now();
    Json(serde_json::json!({ "sources": list, "at": now })).into_response()
}
