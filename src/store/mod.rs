//! The alert store behind the console: every alert the `console` sink receives, with where it
//! came from and what became of it at each sink (spooled, delivered, dead-lettered with the
//! reason), queryable by the console's API.
//!
//! Two implementations of one [`AlertStore`] trait: [`sqlite`] (embedded, the default: one file
//! under `data_dir`, WAL, FTS5 over `output`, inserts batched on a thread of its own) and
//! [`postgres`] (`store.url`, for several replicas sharing one history; the live feed crosses
//! replicas with LISTEN/NOTIFY). Both build their `WHERE` clauses with [`query`], so a filter
//! means the same thing on either.
//!
//! Layering: the store sits above `delivery` (it implements its
//! [`DeliveryObserver`](crate::delivery::DeliveryObserver)) and below `sinks` (the `console`
//! sink writes to it) and the console's routes (which read it).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::alert::{Alert, Priority};
use crate::invalid::Invalid;
use crate::secret::Secret;

mod config;
mod metrics;
pub mod observer;
pub mod postgres;
pub mod query;
pub mod sqlite;
pub mod tally;

pub use config::{RetentionConfig, StoreConfig};
pub use metrics::StoreMetrics;
pub use query::{Filter, Scope};

/// What went wrong in the store; the message names the database and the statement's purpose.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite database failed.
    #[error("alert store {path}: {what}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        source: rusqlite::Error,
    },
    /// The PostgreSQL server failed or could not be reached.
    #[error("alert store (postgresql): {what}: {message}")]
    Postgres {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        message: String,
    },
    /// A batch could not be written (the writer logged the cause).
    #[error("alert store: {0}")]
    Write(String),
    /// The store's writer has stopped.
    #[error("alert store: the writer has stopped")]
    Closed,
    /// A request the store cannot answer (a bad cursor).
    #[error("{0}")]
    BadRequest(String),
}

/// What became of an alert at one sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// In the sink's durable spool, not confirmed yet.
    Spooled,
    /// Confirmed by the sink's destination.
    Delivered,
    /// Refused for good: in the sink's dead-letter file.
    DeadLettered,
}

impl DeliveryState {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Spooled => "spooled",
            DeliveryState::Delivered => "delivered",
            DeliveryState::DeadLettered => "dead_lettered",
        }
    }

    /// Reads a stored name back.
    pub fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "spooled" => Some(DeliveryState::Spooled),
            "delivered" => Some(DeliveryState::Delivered),
            "dead_lettered" => Some(DeliveryState::DeadLettered),
            _ => None,
        }
    }

    /// Order of the states: a later state never gives way to an earlier one (a `spooled` that
    /// arrives after `delivered`, as observers run on different tasks, is ignored).
    pub fn rank(self) -> i64 {
        match self {
            DeliveryState::Spooled => 0,
            DeliveryState::Delivered | DeliveryState::DeadLettered => 1,
        }
    }
}

/// One alert's outcome at one sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The sink's name.
    pub sink: String,
    /// The sink's type.
    pub sink_type: String,
    /// Its state.
    pub state: DeliveryState,
    /// Why it was dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the state was reached.
    pub at: DateTime<Utc>,
}

/// Outcomes of a batch of alerts at one sink, as the observer reports them.
#[derive(Clone, Debug)]
pub struct OutcomeBatch {
    /// The alerts.
    pub uuids: Vec<uuid::Uuid>,
    /// The sink's name.
    pub sink: String,
    /// The sink's type.
    pub sink_type: String,
    /// The state reached.
    pub state: DeliveryState,
    /// Why, for dead letters.
    pub reason: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// An alert as stored: the Falco JSON and what the store derived from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    /// Position in the store (increasing in insert order); what cursors are made of.
    pub seq: i64,
    /// The alert, as Falco writes it.
    pub alert: Alert,
    /// Where it was raised: `embedded` (kaudit's rules), `falco`, or `unknown`.
    pub origin: String,
    /// The namespace the alert is about (`ka.target.namespace`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its outcome at each sink (filled by [`AlertStore::get`], empty in pages).
    #[serde(default)]
    pub deliveries: Vec<Delivery>,
}

/// One page of alerts, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Page {
    /// The alerts.
    pub alerts: Vec<StoredAlert>,
    /// The cursor of the next (older) page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A value and how many alerts have it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Count {
    /// The value (a rule, a namespace...).
    pub value: String,
    /// Alerts with it.
    pub count: u64,
}

/// Alerts in one time bucket, by priority.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the bucket, RFC 3339.
    pub start: DateTime<Utc>,
    /// Count per priority name (`Critical`...), only those present.
    pub counts: std::collections::BTreeMap<String, u64>,
}

/// Counts over a range and a filter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stats {
    /// Alerts matching.
    pub total: u64,
    /// Width of a bucket in seconds.
    pub bucket_secs: i64,
    /// Counts per time bucket, oldest first (empty buckets left out).
    pub buckets: Vec<Bucket>,
    /// Most frequent rules.
    pub top_rules: Vec<Count>,
    /// Most frequent namespaces.
    pub top_namespaces: Vec<Count>,
    /// Most frequent users.
    pub top_users: Vec<Count>,
    /// Most frequent resources.
    pub top_resources: Vec<Count>,
}

/// How many values each `top_*` list of [`Stats`] holds.
pub const TOP: usize = 10;

/// What every store does. Writes are batched by the implementation; reads are answered from
/// other connections so that a slow query never holds up writes.
pub trait AlertStore: Send + Sync {
    /// `sqlite` or `postgresql`.
    fn kind(&self) -> &'static str;

    /// Stores the alerts; resolves once they are committed (an alert already stored is kept
    /// as it is: deliveries are at-least-once).
    fn insert(&self, alerts: Vec<Alert>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Records delivery outcomes; never waits (dropped and counted when the writer is far
    /// behind).
    fn record(&self, outcome: OutcomeBatch);

    /// A page of alerts matching `filter` within `scope`, newest first, before `cursor`.
    fn page(
        &self,
        filter: Filter,
        scope: Scope,
        cursor: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>>;

    /// One alert with its deliveries, if it exists within `scope`.
    fn get(
        &self,
        uuid: uuid::Uuid,
        scope: Scope,
    ) -> BoxFuture<'_, Result<Option<StoredAlert>, StoreError>>;

    /// Counts over `filter` within `scope`, in buckets of `bucket_secs`.
    fn stats(
        &self,
        filter: Filter,
        scope: Scope,
        bucket_secs: i64,
    ) -> BoxFuture<'_, Result<Stats, StoreError>>;

    /// Alerts per rule over `filter` within `scope` (every rule that has any).
    fn rule_hits(
        &self,
        filter: Filter,
        scope: Scope,
    ) -> BoxFuture<'_, Result<Vec<Count>, StoreError>>;

    /// New alerts as they are stored (by any replica, for a shared store).
    fn subscribe(&self) -> broadcast::Receiver<Arc<StoredAlert>>;

    /// Alerts stored, for `/metrics`-like summaries.
    fn count(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// What is derived from an alert's fields for filtering.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Derived {
    /// `kaudit.origin`, or `unknown`.
    pub origin: String,
    /// `ka.target.namespace`.
    pub namespace: Option<String>,
    /// `ka.user.name`.
    pub user: Option<String>,
    /// `ka.target.resource`.
    pub resource: Option<String>,
    /// `ka.verb`.
    pub verb: Option<String>,
}

impl Derived {
    /// Reads the filterable fields of `a`.
    pub fn of(a: &Alert) -> Derived {
        let text = |k: &str| {
            a.output_fields
                .get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty() && *s != "<NA>")
                .map(str::to_string)
        };
        Derived {
            origin: text(crate::detect::ORIGIN_FIELD).unwrap_or_else(|| "unknown".into()),
            namespace: text("ka.target.namespace"),
            user: text("ka.user.name"),
            resource: text("ka.target.resource"),
            verb: text("ka.verb"),
        }
    }
}

/// Priority as a number, most severe first (`Emergency` = 0), as stored: "at or above `p`"
/// is `priority <= p.rank()`.
pub fn priority_rank(p: Priority) -> i64 {
    Priority::ALL.iter().position(|x| *x == p).unwrap_or(7) as i64
}

/// Tags as stored: `,a,b,` so that one tag matches with `LIKE '%,a,%'`.
pub fn tags_text(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!(",{},", tags.join(","))
    }
}

/// Opens the store `cfg` describes (`data_dir` holds the embedded one).
pub async fn open(
    cfg: &StoreConfig,
    data_dir: &std::path::Path,
    metrics: StoreMetrics,
) -> Result<Arc<dyn AlertStore>, StoreError> {
    match cfg.url()? {
        Some(url) => Ok(Arc::new(postgres::PgStore::open(&url, cfg, metrics).await?)),
        None => {
            let path = cfg
                .path
                .clone()
                .unwrap_or_else(|| data_dir.join("console").join("alerts.db"));
            Ok(Arc::new(sqlite::SqliteStore::open(&path, cfg, metrics)?))
        }
    }
}

tokio::task_local! {
    static OPEN: Option<Arc<dyn AlertStore>>;
}

/// Runs `f` (a sink build) with `store` as the store `console` sinks write to. Scoped to the
/// build, not global: each pipeline (and each test in one process) has its own store, and a
/// pipeline shutting down cannot take away another's.
pub async fn scope<F: std::future::Future>(store: Option<Arc<dyn AlertStore>>, f: F) -> F::Output {
    OPEN.scope(store, f).await
}

/// The store of the build in progress ([`scope`]), if one is open.
pub fn current() -> Option<Arc<dyn AlertStore>> {
    OPEN.try_with(Clone::clone).ok().flatten()
}

/// Checks a PostgreSQL URL setting without printing it.
fn check_url(key: &str, url: &Secret) -> Result<(), Invalid> {
    let u = url.expose();
    if u.starts_with("postgres://") || u.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(Invalid::new(
            key,
            "must be a postgres:// or postgresql:// URL",
        ))
    }
}
