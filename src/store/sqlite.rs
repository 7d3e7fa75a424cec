//! The embedded store: one SQLite file (WAL, FTS5 over `output`, an index per filter). One
//! writer thread takes inserts and delivery outcomes in batches (one transaction each) and
//! enforces retention between them; reads run on other connections, so readers never wait for
//! the writer nor the writer for readers.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use futures_util::future::BoxFuture;
use rusqlite::types::{ToSql, ToSqlOutput};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use tokio::sync::{broadcast, oneshot};

use super::query::{self, Dialect, Param};
use super::tally::Tally;
use super::{
    AlertStore, Count, Delivery, DeliveryState, Derived, Filter, OutcomeBatch, Page, Scope, Stats,
    StoreConfig, StoreError, StoreMetrics, StoredAlert, priority_rank, tags_text,
};
use crate::alert::Alert;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  uuid TEXT NOT NULL UNIQUE,
  time_ms INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  rule TEXT NOT NULL,
  priority INTEGER NOT NULL,
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
CREATE INDEX IF NOT EXISTS alerts_time ON alerts(time_ms, priority, rule, namespace, username, resource);
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts(rule, seq);
CREATE INDEX IF NOT EXISTS alerts_priority ON alerts(priority, seq);
CREATE INDEX IF NOT EXISTS alerts_namespace ON alerts(namespace, seq);
CREATE INDEX IF NOT EXISTS alerts_user ON alerts(username, seq);
CREATE INDEX IF NOT EXISTS alerts_resource ON alerts(resource, seq);
CREATE INDEX IF NOT EXISTS alerts_verb ON alerts(verb, seq);
CREATE INDEX IF NOT EXISTS alerts_origin ON alerts(origin, seq);
CREATE INDEX IF NOT EXISTS alerts_source ON alerts(source, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS alerts_fts USING fts5(output, content='alerts', content_rowid='seq');
CREATE TRIGGER IF NOT EXISTS alerts_fts_ai AFTER INSERT ON alerts BEGIN
  INSERT INTO alerts_fts(rowid, output) VALUES (new.seq, new.output);
END;
CREATE TRIGGER IF NOT EXISTS alerts_fts_ad AFTER DELETE ON alerts BEGIN
  INSERT INTO alerts_fts(alerts_fts, rowid, output) VALUES ('delete', old.seq, old.output);
END;
CREATE TABLE IF NOT EXISTS deliveries (
  uuid TEXT NOT NULL,
  sink TEXT NOT NULL,
  sink_type TEXT NOT NULL,
  state TEXT NOT NULL,
  rank INTEGER NOT NULL,
  reason TEXT,
  at_ms INTEGER NOT NULL,
  PRIMARY KEY (uuid, sink)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries(at_ms);
";

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Int(i) => i.to_sql(),
            Param::Text(s) => s.to_sql(),
        }
    }
}

enum Cmd {
    Insert(Vec<Alert>, oneshot::Sender<Result<(), StoreError>>),
    Outcome(OutcomeBatch),
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    tx: SyncSender<Cmd>,
    readers: Arc<Mutex<Vec<Connection>>>,
    feed: broadcast::Sender<Arc<StoredAlert>>,
    metrics: StoreMetrics,
}

fn err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        path: path.display().to_string(),
        what,
        source,
    }
}

impl SqliteStore {
    /// Opens (creating) the database at `path` and starts its writer thread.
    pub fn open(
        path: &Path,
        cfg: &StoreConfig,
        metrics: StoreMetrics,
    ) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Sqlite {
                path: path.display().to_string(),
                what: "creating its directory",
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        }
        let conn = Connection::open(path).map_err(err(path, "opening"))?;
        // auto_vacuum only takes effect before the first table is created.
        conn.execute_batch(
            "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(err(path, "setting pragmas"))?;
        conn.execute_batch(SCHEMA)
            .map_err(err(path, "creating the schema"))?;
        // The writer checkpoints every 8,192 pages (32 MiB) instead of SQLite's 1,000: the index
        // tails and FTS segments every batch rewrites are then copied into the database once per
        // several batches, not once per batch (+19% alerts/s at 500k stored, benches/console.rs).
        conn.execute_batch("PRAGMA wal_autocheckpoint = 8192;")
            .map_err(err(path, "setting the checkpoint interval"))?;
        let (tx, rx) = sync_channel(cfg.queue_capacity.max(1));
        let (feed, _) = broadcast::channel(4096);
        let writer = Writer {
            path: path.to_path_buf(),
            conn,
            cfg: cfg.clone(),
            feed: feed.clone(),
            last_retention: Instant::now() - Duration::from_secs(3600),
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("alert-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Sqlite {
                path: path.display().to_string(),
                what: "starting the writer thread",
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            tx,
            readers: Arc::default(),
            feed,
            metrics,
        })
    }

    /// Runs `f` on a read-only connection of the pool, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.lock().unwrap_or_else(|p| p.into_inner()).pop() {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(err(&path, "opening a reader"))?;
                    c.busy_timeout(Duration::from_secs(5))
                        .map_err(err(&path, "setting the busy timeout"))?;
                    c
                }
            };
            let r = f(&conn, &path);
            let mut p = pool.lock().unwrap_or_else(|p| p.into_inner());
            if p.len() < 4 {
                p.push(conn);
            }
            r
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn stored_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAlert> {
    let seq: i64 = row.get(0)?;
    let body: String = row.get(1)?;
    let alert: Alert = serde_json::from_str(&body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(StoredAlert {
        seq,
        alert,
        origin: row.get(2)?,
        namespace: row.get(3)?,
        deliveries: Vec::new(),
    })
}

/// `w` with one more condition.
fn and(w: &str, cond: &str) -> String {
    if w.is_empty() {
        format!(" WHERE {cond}")
    } else {
        format!("{w} AND {cond}")
    }
}

impl AlertStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn insert(&self, alerts: Vec<Alert>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (done, wait) = oneshot::channel();
            match self.tx.try_send(Cmd::Insert(alerts, done)) {
                Ok(()) => {}
                Err(TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
                Err(TrySendError::Full(cmd)) => {
                    let tx = self.tx.clone();
                    tokio::task::spawn_blocking(move || tx.send(cmd))
                        .await
                        .map_err(|_| StoreError::Closed)?
                        .map_err(|_| StoreError::Closed)?;
                }
            }
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
            self.read(move |c, path| {
                let w = query::build(&filter, &scope, before, Dialect::Sqlite);
                let sql = format!(
                    "SELECT seq, body, origin, namespace FROM alerts{} ORDER BY seq DESC LIMIT {}",
                    w.sql,
                    limit + 1
                );
                let mut st = c
                    .prepare_cached(&sql)
                    .map_err(err(path, "listing alerts"))?;
                let mut alerts = st
                    .query_map(params_from_iter(w.params.iter()), stored_from_row)
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(err(path, "listing alerts"))?;
                let next = if alerts.len() > limit {
                    alerts.truncate(limit);
                    alerts.last().map(|a| query::cursor_after(a.seq))
                } else {
                    None
                };
                Ok(Page { alerts, next })
            })
            .await
        })
    }

    fn get(
        &self,
        uuid: uuid::Uuid,
        scope: Scope,
    ) -> BoxFuture<'_, Result<Option<StoredAlert>, StoreError>> {
        Box::pin(async move {
            self.read(move |c, path| {
                let mut w = query::build(&Filter::default(), &scope, None, Dialect::Sqlite);
                let ph = w.next_placeholder(Dialect::Sqlite);
                w.params.push(Param::Text(uuid.to_string()));
                let sql = format!(
                    "SELECT seq, body, origin, namespace FROM alerts{}",
                    and(&w.sql, &format!("uuid = {ph}"))
                );
                let found = c
                    .query_row(&sql, params_from_iter(w.params.iter()), stored_from_row)
                    .optional()
                    .map_err(err(path, "reading an alert"))?;
                let Some(mut a) = found else { return Ok(None) };
                let mut st = c
                    .prepare_cached(
                        "SELECT sink, sink_type, state, reason, at_ms FROM deliveries \
                         WHERE uuid = ?1 ORDER BY sink",
                    )
                    .map_err(err(path, "reading deliveries"))?;
                let rows = st
                    .query_map(params![uuid.to_string()], |r| {
                        let state: String = r.get(2)?;
                        let at: i64 = r.get(4)?;
                        Ok(Delivery {
                            sink: r.get(0)?,
                            sink_type: r.get(1)?,
                            state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Spooled),
                            reason: r.get(3)?,
                            at: Utc.timestamp_millis_opt(at).single().unwrap_or_default(),
                        })
                    })
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(err(path, "reading deliveries"))?;
                a.deliveries = rows;
                Ok(Some(a))
            })
            .await
        })
    }

    fn stats(
        &self,
        filter: Filter,
        scope: Scope,
        bucket_secs: i64,
    ) -> BoxFuture<'_, Result<Stats, StoreError>> {
        Box::pin(async move {
            self.read(move |c, path| {
                let w = query::build(&filter, &scope, None, Dialect::Sqlite);
                let sql = format!(
                    "SELECT time_ms, priority, rule, namespace, username, resource FROM alerts{}",
                    w.sql
                );
                let mut st = c.prepare(&sql).map_err(err(path, "counting alerts"))?;
                let mut rows = st
                    .query(params_from_iter(w.params.iter()))
                    .map_err(err(path, "counting alerts"))?;
                let mut tally = Tally::new(bucket_secs);
                while let Some(r) = rows.next().map_err(err(path, "counting alerts"))? {
                    let text = |i: usize| r.get_ref(i).ok().and_then(|v| v.as_str().ok());
                    tally.add(
                        r.get(0).map_err(err(path, "counting alerts"))?,
                        r.get(1).map_err(err(path, "counting alerts"))?,
                        [text(2), text(3), text(4), text(5)],
                    );
                }
                Ok(tally.finish())
            })
            .await
        })
    }

    fn rule_hits(
        &self,
        filter: Filter,
        scope: Scope,
    ) -> BoxFuture<'_, Result<Vec<Count>, StoreError>> {
        Box::pin(async move {
            self.read(move |c, path| {
                let w = query::build(&filter, &scope, None, Dialect::Sqlite);
                let sql = format!(
                    "SELECT rule, count(*) FROM alerts{} GROUP BY rule ORDER BY rule",
                    w.sql
                );
                let mut st = c.prepare(&sql).map_err(err(path, "counting rule hits"))?;
                st.query_map(params_from_iter(w.params.iter()), |r| {
                    Ok(Count {
                        value: r.get(0)?,
                        count: r.get::<_, i64>(1)? as u64,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(err(path, "counting rule hits"))
            })
            .await
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<StoredAlert>> {
        self.feed.subscribe()
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            self.read(|c, path| {
                c.query_row("SELECT count(*) FROM alerts", [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
                    .map_err(err(path, "counting alerts"))
            })
            .await
        })
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    conn: Connection,
    cfg: StoreConfig,
    feed: broadcast::Sender<Arc<StoredAlert>>,
    last_retention: Instant,
    metrics: StoreMetrics,
}

impl Writer {
    fn run(mut self, rx: Receiver<Cmd>) {
        let interval = Duration::from_millis(self.cfg.retention.check_interval_ms.max(10));
        loop {
            let first = match rx.recv_timeout(interval) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if let Some(first) = first {
                let mut cmds = vec![first];
                let mut n = 0;
                while n < self.cfg.write_batch {
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
                self.write(cmds);
            }
            if self.last_retention.elapsed() >= interval {
                self.last_retention = Instant::now();
                if let Err(e) = self.retention() {
                    tracing::error!(error = %e, "alert store retention failed; retrying later");
                }
            }
        }
    }

    fn write(&mut self, cmds: Vec<Cmd>) {
        let mut waiters = Vec::new();
        let mut alerts = Vec::new();
        let mut outcomes = Vec::new();
        for c in cmds {
            match c {
                Cmd::Insert(a, done) => {
                    alerts.extend(a);
                    waiters.push(done);
                }
                Cmd::Outcome(o) => outcomes.push(o),
            }
        }
        let r = self.transaction(&alerts, &outcomes);
        match r {
            Ok(stored) => {
                self.metrics.written.inc_by(stored.len() as u64);
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
                for s in stored {
                    let _ = self.feed.send(Arc::new(s));
                }
            }
            Err(e) => {
                self.metrics.write_failures.inc();
                tracing::error!(error = %e, alerts = alerts.len(), "alert store write failed");
                for w in waiters {
                    let _ = w.send(Err(StoreError::Write(e.to_string())));
                }
            }
        }
    }

    fn transaction(
        &mut self,
        alerts: &[Alert],
        outcomes: &[OutcomeBatch],
    ) -> Result<Vec<StoredAlert>, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(err(&path, "starting a transaction"))?;
        let mut stored = Vec::new();
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO alerts (uuid, time_ms, received_ms, rule, priority, \
                     source, origin, hostname, namespace, username, resource, verb, tags, output, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )
                .map_err(err(&path, "preparing the insert"))?;
            let now = Utc::now().timestamp_millis();
            for a in alerts {
                let d = Derived::of(a);
                let n = ins
                    .execute(params![
                        a.uuid.to_string(),
                        a.time.timestamp_millis(),
                        now,
                        a.rule,
                        priority_rank(a.priority),
                        a.source,
                        d.origin,
                        a.hostname,
                        d.namespace,
                        d.user,
                        d.resource,
                        d.verb,
                        tags_text(&a.tags),
                        a.output,
                        a.to_json(),
                    ])
                    .map_err(err(&path, "inserting an alert"))?;
                if n == 1 {
                    stored.push(StoredAlert {
                        seq: tx.last_insert_rowid(),
                        alert: a.clone(),
                        origin: d.origin,
                        namespace: d.namespace,
                        deliveries: Vec::new(),
                    });
                }
            }
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO deliveries (uuid, sink, sink_type, state, rank, reason, at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (uuid, sink) DO UPDATE SET \
                     sink_type = excluded.sink_type, state = excluded.state, rank = excluded.rank, \
                     reason = excluded.reason, at_ms = excluded.at_ms \
                     WHERE excluded.rank >= deliveries.rank",
                )
                .map_err(err(&path, "preparing the delivery upsert"))?;
            for o in outcomes {
                for u in &o.uuids {
                    up.execute(params![
                        u.to_string(),
                        o.sink,
                        o.sink_type,
                        o.state.as_str(),
                        o.state.rank(),
                        o.reason,
                        o.at.timestamp_millis(),
                    ])
                    .map_err(err(&path, "recording a delivery"))?;
                }
            }
        }
        tx.commit().map_err(err(&path, "committing"))?;
        Ok(stored)
    }

    /// Deletes alerts older than `max_age_secs`, then the oldest until the live data is under
    /// `max_bytes`, and gives the freed pages back to the file system.
    fn retention(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let r = self.cfg.retention.clone();
        let cutoff = Utc::now().timestamp_millis() - (r.max_age_secs as i64).saturating_mul(1000);
        let mut deleted = self.delete_where("time_ms < ?1", cutoff)?;
        for _ in 0..20 {
            let live = self.live_bytes()?;
            if live <= r.max_bytes {
                break;
            }
            let count: i64 = self
                .conn
                .query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))
                .map_err(err(&path, "counting alerts"))?;
            if count == 0 {
                break;
            }
            // Delete the share that is over, and 5% more so that this does not run every time.
            let share = (live - r.max_bytes) as f64 / live as f64 + 0.05;
            let n = ((count as f64 * share).ceil() as i64).clamp(1, count);
            let upto: i64 = self
                .conn
                .query_row(
                    "SELECT seq FROM alerts ORDER BY seq LIMIT 1 OFFSET ?1",
                    params![n - 1],
                    |r| r.get(0),
                )
                .map_err(err(&path, "finding the oldest alerts"))?;
            deleted += self.delete_where("seq <= ?1", upto)?;
        }
        if deleted > 0 {
            // Outcomes of alerts that are gone (or were never stored) go with them.
            self.conn
                .execute(
                    "DELETE FROM deliveries WHERE at_ms < coalesce((SELECT min(received_ms) FROM alerts), ?1)",
                    params![i64::MAX],
                )
                .map_err(err(&path, "deleting old deliveries"))?;
            self.conn
                .execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(err(&path, "vacuuming"))?;
            self.metrics.deleted.inc_by(deleted);
            tracing::info!(deleted, "alert store retention");
        } else {
            self.conn
                .execute("DELETE FROM deliveries WHERE at_ms < ?1", params![cutoff])
                .map_err(err(&path, "deleting old deliveries"))?;
        }
        Ok(())
    }

    fn delete_where(&mut self, cond: &str, v: i64) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(err(&path, "starting retention"))?;
        tx.execute(
            &format!("DELETE FROM deliveries WHERE uuid IN (SELECT uuid FROM alerts WHERE {cond})"),
            params![v],
        )
        .map_err(err(&path, "deleting deliveries"))?;
        let n = tx
            .execute(&format!("DELETE FROM alerts WHERE {cond}"), params![v])
            .map_err(err(&path, "deleting alerts"))?;
        tx.commit().map_err(err(&path, "committing retention"))?;
        Ok(n as u64)
    }

    /// Bytes of pages in use (the file minus its free list).
    fn live_bytes(&self) -> Result<u64, StoreError> {
        let q = |p: &str| -> Result<i64, StoreError> {
            self.conn
                .query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .map_err(err(&self.path, "reading the size"))
        };
        let used = q("page_count")? - q("freelist_count")?;
        Ok((used.max(0) as u64) * q("page_size")? as u64)
    }
}
