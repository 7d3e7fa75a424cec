//! The shared store: the same tables on PostgreSQL (`store.url`), so that every replica writes
//! to and every console reads one history. Inserts are batched by one writer task per replica;
//! each batch's commit sends `NOTIFY kaudit_alerts` with the new rows' `seq`s, and every
//! replica's listener (its own included) reads those rows for its live feed, so an alert taken
//! by one replica appears in the consoles served by all of them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{Mutex, broadcast, mpsc, oneshot};
use tokio_postgres::types::ToSql;

mod conn;
mod tls;

use conn::{Lazy, Owned, Server, connect, pg};
pub use tls::PgTls;

use super::query::{self, Dialect, Param};
use super::{
    AlertStore, Count, Delivery, DeliveryState, Derived, Filter, OutcomeBatch, Page, Scope, Stats,
    StoreConfig, StoreError, StoreMetrics, StoredAlert, TOP, priority_rank, tags_text,
};
use crate::alert::Alert;
use crate::secret::Secret;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
  seq BIGSERIAL PRIMARY KEY,
  uuid TEXT NOT NULL UNIQUE,
  time_ms BIGINT NOT NULL,
  received_ms BIGINT NOT NULL,
  rule TEXT NOT NULL,
  priority BIGINT NOT NULL,
  source TEXT NOT NULL,
  origin TEXT NOT NULL,
  hostname TEXT NOT NULL,
  namespace TEXT,
  username TEXT,
  resource TEXT,
  verb TEXT,
  tags TEXT NOT NULL,
  output TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts(time_ms);
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts(rule, seq);
CREATE INDEX IF NOT EXISTS alerts_priority ON alerts(priority, seq);
CREATE INDEX IF NOT EXISTS alerts_namespace ON alerts(namespace, seq);
CREATE INDEX IF NOT EXISTS alerts_user ON alerts(username, seq);
CREATE INDEX IF NOT EXISTS alerts_resource ON alerts(resource, seq);
CREATE INDEX IF NOT EXISTS alerts_verb ON alerts(verb, seq);
CREATE INDEX IF NOT EXISTS alerts_origin ON alerts(origin, seq);
CREATE INDEX IF NOT EXISTS alerts_source ON alerts(source, seq);
-- The words of `output`, computed once at insert: a search that walks the newest rows (ORDER BY
-- seq DESC LIMIT n, the planner's usual choice) tests each row without tokenizing it again (a
-- rare word at 1M alerts: 297 ms before, 17 ms with the column), and the GIN index serves
-- searches the planner starts from the words. Added to a table from before (its expression index
-- dropped).
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS output_tsv tsvector
  GENERATED ALWAYS AS (to_tsvector('simple', output)) STORED;
DROP INDEX IF EXISTS alerts_fts;
CREATE INDEX IF NOT EXISTS alerts_tsv ON alerts USING gin (output_tsv);
CREATE TABLE IF NOT EXISTS deliveries (
  uuid TEXT NOT NULL,
  sink TEXT NOT NULL,
  sink_type TEXT NOT NULL,
  state TEXT NOT NULL,
  rank BIGINT NOT NULL,
  reason TEXT,
  at_ms BIGINT NOT NULL,
  PRIMARY KEY (uuid, sink)
);
CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries(at_ms);
";

/// The channel of the live feed.
const CHANNEL: &str = "kaudit_alerts";

enum Cmd {
    Insert(Vec<Alert>, oneshot::Sender<Result<(), StoreError>>),
    Outcome(OutcomeBatch),
}

/// The PostgreSQL store.
pub struct PgStore {
    tx: mpsc::Sender<Cmd>,
    reader: Arc<Lazy>,
    feed: broadcast::Sender<Arc<StoredAlert>>,
    metrics: StoreMetrics,
}

fn to_sql(params: &[Param]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    params
        .iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match p {
                Param::Int(i) => Box::new(*i),
                Param::Text(s) => Box::new(s.clone()),
            }
        })
        .collect()
}

fn refs(b: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    b.iter()
        .map(|x| x.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn stored(row: &tokio_postgres::Row) -> Result<StoredAlert, StoreError> {
    let body: String = row.get(1);
    let alert: Alert = serde_json::from_str(&body).map_err(|e| StoreError::Postgres {
        what: "decoding a stored alert",
        message: e.to_string(),
    })?;
    Ok(StoredAlert {
        seq: row.get(0),
        alert,
        origin: row.get(2),
        namespace: row.get(3),
        deliveries: Vec::new(),
    })
}

fn and(w: &str, cond: &str) -> String {
    if w.is_empty() {
        format!(" WHERE {cond}")
    } else {
        format!("{w} AND {cond}")
    }
}

impl PgStore {
    /// Connects, creates the tables if needed, and starts the writer, the retention task and
    /// the live feed's listener.
    pub async fn open(
        url: &Secret,
        cfg: &StoreConfig,
        metrics: StoreMetrics,
    ) -> Result<PgStore, StoreError> {
        let url = &Server {
            url: url.clone(),
            tls: PgTls::new(&cfg.tls).map_err(|message| StoreError::Postgres {
                what: "reading store.tls",
                message,
            })?,
        };
        let mut setup = connect(url).await?;
        let t = setup
            .transaction()
            .await
            .map_err(pg("creating the schema"))?;
        // Replicas starting together create the schema one at a time.
        t.execute("SELECT pg_advisory_xact_lock(7215)", &[])
            .await
            .map_err(pg("creating the schema"))?;
        t.batch_execute(SCHEMA)
            .await
            .map_err(pg("creating the schema"))?;
        t.commit().await.map_err(pg("creating the schema"))?;
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let (feed, _) = broadcast::channel(4096);
        let reader = Arc::new(Lazy {
            url: url.clone(),
            client: Mutex::new(Some(Arc::new(setup))),
        });
        let writer = Owned {
            url: url.clone(),
            client: None,
        };
        tokio::spawn(write_loop(writer, rx, cfg.clone(), metrics.clone()));
        tokio::spawn(listen_loop(url.clone(), reader.clone(), feed.clone()));
        Ok(PgStore {
            tx,
            reader,
            feed,
            metrics,
        })
    }
}

async fn write_loop(
    mut db: Owned,
    mut rx: mpsc::Receiver<Cmd>,
    cfg: StoreConfig,
    metrics: StoreMetrics,
) {
    let interval = Duration::from_millis(cfg.retention.check_interval_ms.max(10));
    let mut last_retention = tokio::time::Instant::now() - interval;
    loop {
        let first = tokio::select! {
            c = rx.recv() => match c { Some(c) => Some(c), None => return },
            _ = tokio::time::sleep(interval) => None,
        };
        if let Some(first) = first {
            let mut cmds = vec![first];
            let mut n = 0;
            while n < cfg.write_batch {
                match rx.try_recv() {
                    Ok(c) => {
                        if let Cmd::Insert(a, _) = &c {
                            n += a.len();
                        }
                        cmds.push(c);
                    }
                    Err(_) => break,
                }
            }
            let mut waiters = Vec::new();
            let mut alerts = Vec::new();
            let mut outcomes = Vec::new();
            for c in cmds {
                match c {
                    Cmd::Insert(a, w) => {
                        alerts.extend(a);
                        waiters.push(w);
                    }
                    Cmd::Outcome(o) => outcomes.push(o),
                }
            }
            let r = write(&mut db, &alerts, &outcomes).await;
            match &r {
                Ok(n) => {
                    metrics.written.inc_by(*n);
                }
                Err(e) => {
                    metrics.write_failures.inc();
                    tracing::error!(error = %e, alerts = alerts.len(), "alert store write failed");
                }
            }
            for w in waiters {
                let _ = w.send(
                    r.as_ref()
                        .map(drop)
                        .map_err(|e| StoreError::Write(e.to_string())),
                );
            }
        }
        if last_retention.elapsed() >= interval {
            last_retention = tokio::time::Instant::now();
            if let Err(e) = retention(&mut db, &cfg, &metrics).await {
                tracing::error!(error = %e, "alert store retention failed; retrying later");
            }
        }
    }
}

/// A batch of alerts as columns (one array parameter each).
#[derive(Default)]
struct Columns {
    uuid: Vec<String>,
    time: Vec<i64>,
    rule: Vec<String>,
    priority: Vec<i64>,
    source: Vec<String>,
    origin: Vec<String>,
    hostname: Vec<String>,
    namespace: Vec<Option<String>>,
    user: Vec<Option<String>>,
    resource: Vec<Option<String>>,
    verb: Vec<Option<String>>,
    tags: Vec<String>,
    output: Vec<String>,
    body: Vec<String>,
}

/// Delivery outcomes as columns.
#[derive(Default)]
struct DeliveryColumns {
    uuid: Vec<String>,
    sink: Vec<String>,
    sink_type: Vec<String>,
    state: Vec<String>,
    rank: Vec<i64>,
    reason: Vec<Option<String>>,
    at: Vec<i64>,
}

async fn write(
    db: &mut Owned,
    alerts: &[Alert],
    outcomes: &[OutcomeBatch],
) -> Result<u64, StoreError> {
    let client = db.get().await?;
    let t = client
        .transaction()
        .await
        .map_err(pg("starting a transaction"))?;
    // One statement per batch (arrays of columns), not one round trip per alert.
    let mut seqs: Vec<i64> = Vec::new();
    if !alerts.is_empty() {
        let now = Utc::now().timestamp_millis();
        let mut c = Columns::default();
        for a in alerts {
            let d = Derived::of(a);
            c.uuid.push(a.uuid.to_string());
            c.time.push(a.time.timestamp_millis());
            c.rule.push(a.rule.clone());
            c.priority.push(priority_rank(a.priority));
            c.source.push(a.source.clone());
            c.origin.push(d.origin);
            c.hostname.push(a.hostname.clone());
            c.namespace.push(d.namespace);
            c.user.push(d.user);
            c.resource.push(d.resource);
            c.verb.push(d.verb);
            c.tags.push(tags_text(&a.tags));
            c.output.push(a.output.clone());
            c.body.push(a.to_json());
        }
        let rows = t
            .query(
                "INSERT INTO alerts (uuid, time_ms, received_ms, rule, priority, source, origin, \
                 hostname, namespace, username, resource, verb, tags, output, body) \
                 SELECT u, tm, $3::bigint, r, p, s, o, h, n, us, rs, v, tg, out, b FROM UNNEST(\
                 $1::text[], $2::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[], \
                 $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
                 $14::text[], $15::text[]) AS x(u, tm, r, p, s, o, h, n, us, rs, v, tg, out, b) \
                 ON CONFLICT (uuid) DO NOTHING RETURNING seq",
                &[
                    &c.uuid,
                    &c.time,
                    &now,
                    &c.rule,
                    &c.priority,
                    &c.source,
                    &c.origin,
                    &c.hostname,
                    &c.namespace,
                    &c.user,
                    &c.resource,
                    &c.verb,
                    &c.tags,
                    &c.output,
                    &c.body,
                ],
            )
            .await
            .map_err(pg("inserting alerts"))?;
        seqs = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
        seqs.sort_unstable();
    }
    if !outcomes.is_empty() {
        // One row per (alert, sink), the furthest state; an upsert may not touch a row twice.
        let mut latest: std::collections::HashMap<(String, &str), (&OutcomeBatch, i64)> =
            std::collections::HashMap::new();
        for o in outcomes {
            for u in &o.uuids {
                let e = latest
                    .entry((u.to_string(), o.sink.as_str()))
                    .or_insert((o, o.state.rank()));
                if o.state.rank() >= e.1 {
                    *e = (o, o.state.rank());
                }
            }
        }
        let mut d = DeliveryColumns::default();
        for ((uuid, sink), (o, rank)) in latest {
            d.uuid.push(uuid);
            d.sink.push(sink.to_string());
            d.sink_type.push(o.sink_type.clone());
            d.state.push(o.state.as_str().to_string());
            d.rank.push(rank);
            d.reason.push(o.reason.clone());
            d.at.push(o.at.timestamp_millis());
        }
        t.execute(
            "INSERT INTO deliveries (uuid, sink, sink_type, state, rank, reason, at_ms) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
             $6::text[], $7::bigint[]) ON CONFLICT (uuid, sink) DO UPDATE SET \
             sink_type = excluded.sink_type, state = excluded.state, rank = excluded.rank, \
             reason = excluded.reason, at_ms = excluded.at_ms \
             WHERE excluded.rank >= deliveries.rank",
            &[
                &d.uuid,
                &d.sink,
                &d.sink_type,
                &d.state,
                &d.rank,
                &d.reason,
                &d.at,
            ],
        )
        .await
        .map_err(pg("recording deliveries"))?;
    }
    // Sent at commit, to every replica's listener; a payload stays under PostgreSQL's 8000 bytes.
    for chunk in seqs.chunks(400) {
        let payload = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        t.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .map_err(pg("notifying the live feed"))?;
    }
    t.commit().await.map_err(pg("committing"))?;
    Ok(seqs.len() as u64)
}

/// Deletes by age, then the oldest rows while the estimated live data exceeds `max_bytes`.
async fn retention(
    db: &mut Owned,
    cfg: &StoreConfig,
    metrics: &StoreMetrics,
) -> Result<(), StoreError> {
    let c = db.get().await?;
    let r = &cfg.retention;
    let cutoff = Utc::now().timestamp_millis() - (r.max_age_secs as i64).saturating_mul(1000);
    c.execute(
        "DELETE FROM deliveries WHERE uuid IN (SELECT uuid FROM alerts WHERE time_ms < $1)",
        &[&cutoff],
    )
    .await
    .map_err(pg("deleting old deliveries"))?;
    let aged = c
        .execute("DELETE FROM alerts WHERE time_ms < $1", &[&cutoff])
        .await
        .map_err(pg("deleting old alerts"))?;
    metrics.deleted.inc_by(aged);
    c.execute("DELETE FROM deliveries WHERE at_ms < $1", &[&cutoff])
        .await
        .map_err(pg("deleting old deliveries"))?;
    // PostgreSQL reuses freed space after autovacuum rather than shrinking its files, so the
    // size is estimated from rows: their count times the mean size of recent ones (with their
    // indexes, about twice the body).
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM alerts), \
             coalesce((SELECT avg(octet_length(body))::BIGINT FROM \
               (SELECT body FROM alerts ORDER BY seq DESC LIMIT 1000) s), 0)",
            &[],
        )
        .await
        .map_err(pg("estimating the size"))?;
    let (count, avg): (i64, i64) = (row.get(0), row.get(1));
    let per_row = (avg * 2 + 200).max(1) as u64;
    let live = count.max(0) as u64 * per_row;
    if live > r.max_bytes {
        let keep = (r.max_bytes / per_row) as i64 * 95 / 100;
        let n = (count - keep).max(1);
        c.execute(
            "DELETE FROM deliveries WHERE uuid IN (SELECT uuid FROM alerts ORDER BY seq LIMIT $1)",
            &[&n],
        )
        .await
        .map_err(pg("deleting the oldest deliveries"))?;
        let gone = c
            .execute(
                "DELETE FROM alerts WHERE seq IN (SELECT seq FROM alerts ORDER BY seq LIMIT $1)",
                &[&n],
            )
            .await
            .map_err(pg("deleting the oldest alerts"))?;
        metrics.deleted.inc_by(gone);
        tracing::info!(deleted = n, "alert store retention");
    }
    Ok(())
}

/// Listens for new rows and publishes them on `feed`; reconnects after a lost connection.
async fn listen_loop(url: Server, reader: Arc<Lazy>, feed: broadcast::Sender<Arc<StoredAlert>>) {
    use futures_util::StreamExt;
    loop {
        let conn = url.open().await;
        let (client, mut conn) = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "alert store: cannot listen for new alerts; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let (ntx, mut nrx) = mpsc::unbounded_channel();
        let drive = tokio::spawn(async move {
            let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(m) = stream.next().await {
                match m {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if ntx.send(n.payload().to_string()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "alert store: listener connection failed");
                        return;
                    }
                }
            }
        });
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            tracing::warn!(error = %e, "alert store: LISTEN failed; retrying");
            drive.abort();
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        while let Some(payload) = nrx.recv().await {
            let seqs: Vec<i64> = payload.split(',').filter_map(|s| s.parse().ok()).collect();
            if feed.receiver_count() == 0 || seqs.is_empty() {
                continue;
            }
            let rows = match reader.get().await {
                Ok(c) => c
                    .query(
                        "SELECT seq, body, origin, namespace FROM alerts WHERE seq = ANY($1) ORDER BY seq",
                        &[&seqs],
                    )
                    .await
                    .map_err(pg("reading new alerts")),
                Err(e) => Err(e),
            };
            match rows {
                Ok(rows) => {
                    for r in &rows {
                        if let Ok(s) = stored(r) {
                            let _ = feed.send(Arc::new(s));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "alert store: live feed lost alerts"),
            }
        }
        drive.abort();
        drop(client);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl AlertStore for PgStore {
    fn kind(&self) -> &'static str {
        "postgresql"
    }

    fn insert(&self, alerts: Vec<Alert>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (done, wait) = oneshot::channel();
            self.tx
                .send(Cmd::Insert(alerts, done))
                .await
                .map_err(|_| StoreError::Closed)?;
            wait.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn record(&self, outcome: OutcomeBatch) {
        if self.tx.try_send(Cmd::Outcome(outcome)).is_err() {
            self.metrics.outcomes_dropped.inc();
        }
    }

    fn page(
        &self,
        filter: Filter,
        scope: Scope,
        cursor: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Page, StoreError>> {
        Box::pin(async move {
            let before = cursor.as_deref().map(query::parse_cursor).transpose()?;
            let limit = limit.clamp(1, 1000);
            let w = query::build(&filter, &scope, before, Dialect::Postgres);
            let sql = format!(
                "SELECT seq, body, origin, namespace FROM alerts{} ORDER BY seq DESC LIMIT {}",
                w.sql,
                limit + 1
            );
            let c = self.reader.get().await?;
            let p = to_sql(&w.params);
            let rows = c
                .query(&sql, &refs(&p))
                .await
                .map_err(pg("listing alerts"))?;
            let mut alerts = rows.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
            let next = if alerts.len() > limit {
                alerts.truncate(limit);
                alerts.last().map(|a| query::cursor_after(a.seq))
            } else {
                None
            };
            Ok(Page { alerts, next })
        })
    }

    fn get(
        &self,
        uuid: uuid::Uuid,
        scope: Scope,
    ) -> BoxFuture<'_, Result<Option<StoredAlert>, StoreError>> {
        Box::pin(async move {
            let mut w = query::build(&Filter::default(), &scope, None, Dialect::Postgres);
            let ph = w.next_placeholder(Dialect::Postgres);
            w.params.push(Param::Text(uuid.to_string()));
            let sql = format!(
                "SELECT seq, body, origin, namespace FROM alerts{}",
                and(&w.sql, &format!("uuid = {ph}"))
            );
            let c = self.reader.get().await?;
            let p = to_sql(&w.params);
            let row = c
                .query_opt(&sql, &refs(&p))
                .await
                .map_err(pg("reading an alert"))?;
            let Some(row) = row else { return Ok(None) };
            let mut a = stored(&row)?;
            let rows = c
                .query(
                    "SELECT sink, sink_type, state, reason, at_ms FROM deliveries \
                     WHERE uuid = $1 ORDER BY sink",
                    &[&uuid.to_string()],
                )
                .await
                .map_err(pg("reading deliveries"))?;
            a.deliveries = rows
                .iter()
                .map(|r| Delivery {
                    sink: r.get(0),
                    sink_type: r.get(1),
                    state: DeliveryState::parse(r.get(2)).unwrap_or(DeliveryState::Spooled),
                    reason: r.get(3),
                    at: Utc
                        .timestamp_millis_opt(r.get(4))
                        .single()
                        .unwrap_or_default(),
                })
                .collect();
            Ok(Some(a))
        })
    }

    fn stats(
        &self,
        filter: Filter,
        scope: Scope,
        bucket_secs: i64,
    ) -> BoxFuture<'_, Result<Stats, StoreError>> {
        Box::pin(async move {
            let w = query::build(&filter, &scope, None, Dialect::Postgres);
            let c = self.reader.get().await?;
            let p = to_sql(&w.params);
            let p = refs(&p);
            let total: i64 = c
                .query_one(&format!("SELECT count(*) FROM alerts{}", w.sql), &p)
                .await
                .map_err(pg("counting alerts"))?
                .get(0);
            let b = bucket_secs.max(1) * 1000;
            let rows = c
                .query(
                    &format!(
                        "SELECT (time_ms / {b}) * {b} AS b, priority, count(*) FROM alerts{} \
                         GROUP BY b, priority ORDER BY b",
                        w.sql
                    ),
                    &p,
                )
                .await
                .map_err(pg("counting per bucket"))?;
            let buckets = super::tally::fold_buckets(
                rows.iter()
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)))
                    .collect(),
            );
            let mut tops = Vec::new();
            for col in ["rule", "namespace", "username", "resource"] {
                let rows = c
                    .query(
                        &format!(
                            "SELECT {col}, count(*) AS n FROM alerts{} GROUP BY {col} \
                             ORDER BY n DESC, {col} LIMIT {TOP}",
                            and(&w.sql, &format!("{col} IS NOT NULL"))
                        ),
                        &p,
                    )
                    .await
                    .map_err(pg("counting top values"))?;
                tops.push(
                    rows.iter()
                        .map(|r| Count {
                            value: r.get(0),
                            count: r.get::<_, i64>(1) as u64,
                        })
                        .collect::<Vec<_>>(),
                );
            }
            let mut tops = tops.into_iter();
            Ok(Stats {
                total: total as u64,
                bucket_secs: bucket_secs.max(1),
                buckets,
                top_rules: tops.next().unwrap_or_default(),
                top_namespaces: tops.next().unwrap_or_default(),
                top_users: tops.next().unwrap_or_default(),
                top_resources: tops.next().unwrap_or_default(),
            })
        })
    }

    fn rule_hits(
        &self,
        filter: Filter,
        scope: Scope,
    ) -> BoxFuture<'_, Result<Vec<Count>, StoreError>> {
        Box::pin(async move {
            let w = query::build(&filter, &scope, None, Dialect::Postgres);
            let c = self.reader.get().await?;
            let p = to_sql(&w.params);
            let rows = c
                .query(
                    &format!(
                        "SELECT rule, count(*) FROM alerts{} GROUP BY rule ORDER BY rule",
                        w.sql
                    ),
                    &refs(&p),
                )
                .await
                .map_err(pg("counting rule hits"))?;
            Ok(rows
                .iter()
                .map(|r| Count {
                    value: r.get(0),
                    count: r.get::<_, i64>(1) as u64,
                })
                .collect())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<StoredAlert>> {
        self.feed.subscribe()
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let c = self.reader.get().await?;
            let n: i64 = c
                .query_one("SELECT count(*) FROM alerts", &[])
                .await
                .map_err(pg("counting alerts"))?
                .get(0);
            Ok(n as u64)
        })
    }
}
