//! Console store benchmark: write throughput of the store (one console sink's lane delivers
//! batches of up to 1000, one after another; each batch's alerts also get the two delivery rows
//! the default `stdout` sink's lane records, spooled then delivered) beside a baseline in the
//! same run (the same rows into a bare SQLite table with only a key: the floor of the cost), a
//! run fed at 5,000 alerts/s the way the console sink's lane feeds the store (whatever queued
//! while the previous write was in flight, up to 1000, one write at a time), and query
//! latencies (first page, filters, full text, stats) on the loaded store, for SQLite and, when
//! `KAUDIT_BENCH_PG_URL` is set, PostgreSQL. Alert ids are time-ordered, as kaudit makes them.
//!
//! Run with `scripts/bench-console` (which also starts PostgreSQL and compares ingest with the
//! console on and off). `KAUDIT_BENCH_ALERTS` sets the store size (default 1,000,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kaudit::alert::{Alert, Priority};
use kaudit::secret::Secret;
use kaudit::store::{
    AlertStore, DeliveryState, Filter, OutcomeBatch, Scope, StoreConfig, StoreMetrics,
};
use serde_json::Map;

const RULES: [&str; 12] = [
    "Exec Or Attach Into Pod",
    "Secret Read By Unexpected User",
    "Create Privileged Pod",
    "Anonymous Request",
    "Binding To Cluster Admin",
    "Port Forward To Pod",
    "Create Pod With Host Namespaces",
    "Role With Wildcard Permissions",
    "ConfigMap With Credentials",
    "Impersonated Request",
    "Forbidden Or Unauthorized Request",
    "Ephemeral Container Added",
];

/// Alert `i` of `n`, raised over the last 7 days in order.
fn alert(i: usize, n: usize) -> Alert {
    let span = 7 * 24 * 3600 * 1000i64;
    let t = Utc::now() - chrono::Duration::milliseconds(span - span * i as i64 / n.max(1) as i64);
    let rule = RULES[i % RULES.len()];
    let ns = format!("team-{}", i % 40);
    let user = format!("user-{}", (i * 7) % 500);
    let mut f = Map::new();
    f.insert("ka.target.namespace".into(), ns.clone().into());
    f.insert("ka.user.name".into(), user.clone().into());
    f.insert("ka.verb".into(), ["get", "create", "delete"][i % 3].into());
    f.insert(
        "ka.target.resource".into(),
        ["pods", "secrets", "configmaps", "rolebindings"][i % 4].into(),
    );
    f.insert("ka.target.name".into(), format!("obj-{}", i % 1000).into());
    f.insert("kaudit.origin".into(), "embedded".into());
    let priority = Priority::ALL[i % 6 + 1];
    Alert {
        uuid: kaudit::alert::time_ordered(uuid::Uuid::new_v4(), &t),
        time: t,
        rule: rule.into(),
        priority,
        source: "k8s_audit".into(),
        hostname: "kaudit-0".into(),
        output: format!(
            "{}: {priority} {rule} (user={user} verb=get resource=pods name=obj-{} ns={ns} source_ips=[10.0.{}.{}])",
            t.format("%H:%M:%S%.9f"),
            i % 1000,
            i % 250,
            i % 200
        ),
        output_fields: f,
        tags: vec!["k8s".into(), "mitre_execution".into()],
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Writes `batch` the way kaudit does with its default sinks: the console sink's insert, and the
/// `stdout` lane's two outcomes (spooled, delivered) for the same alerts.
async fn write(store: &dyn AlertStore, batch: Vec<Alert>) {
    let uuids: Vec<uuid::Uuid> = batch.iter().map(|a| a.uuid).collect();
    for state in [DeliveryState::Spooled, DeliveryState::Delivered] {
        store.record(OutcomeBatch {
            uuids: uuids.clone(),
            sink: "stdout".into(),
            sink_type: "stdout".into(),
            state,
            reason: None,
            at: Utc::now(),
        });
    }
    store.insert(batch).await.expect("insert");
}

/// Loads `n` alerts in batches of 1000, one after another; returns alerts/s.
async fn load(store: &dyn AlertStore, n: usize) -> f64 {
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<Alert> = (i..(i + 1000).min(n)).map(|j| alert(j, n)).collect();
        i += batch.len();
        write(store, batch).await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The same rows into a table with only a key, in transactions of 1000: the floor.
fn baseline(n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut c = rusqlite::Connection::open(dir.path().join("bare.db")).expect("open");
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         CREATE TABLE a (seq INTEGER PRIMARY KEY, uuid TEXT, body TEXT)",
    )
    .expect("schema");
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let tx = c.transaction().expect("tx");
        {
            let mut st = tx
                .prepare_cached("INSERT INTO a (uuid, body) VALUES (?1, ?2)")
                .expect("prepare");
            for j in i..(i + 1000).min(n) {
                let a = alert(j, n);
                st.execute(rusqlite::params![a.uuid.to_string(), a.to_json()])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
        i += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// What a run fed at a steady rate showed.
struct Paced {
    /// Alerts written per second, over the run and until the backlog was written.
    kept: f64,
    /// Most alerts waiting for the store at once.
    max_backlog: usize,
    /// Write latencies.
    p50: Duration,
    p99: Duration,
}

/// 5,000 alerts/s for `secs` (250 every 50 ms) into a queue that one writer drains the way the
/// console sink's lane does: whatever is queued, up to 1000, one write at a time. A store that
/// keeps up writes 5,000/s with a backlog of a few hundred; one that does not falls behind.
async fn paced(store: &dyn AlertStore, secs: u64) -> Paced {
    let per_tick = 250;
    let ticks = secs * 20;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Alert>();
    let backlog = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fed = backlog.clone();
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        let mut next = tokio::time::Instant::now();
        for t in 0..ticks as usize {
            for j in 0..per_tick {
                let a = alert(t * per_tick + j, 1);
                let now = Utc::now();
                fed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = tx.send(Alert {
                    time: now,
                    uuid: kaudit::alert::time_ordered(uuid::Uuid::new_v4(), &now),
                    ..a
                });
            }
            next += Duration::from_millis(50);
            tokio::time::sleep_until(next).await;
        }
    });
    let (mut lat, mut written, mut max_backlog) = (Vec::new(), 0, 0);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        max_backlog = max_backlog.max(backlog.load(std::sync::atomic::Ordering::Relaxed));
        let n = batch.len();
        let s = Instant::now();
        write(store, batch).await;
        lat.push(s.elapsed());
        backlog.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        written += n;
    }
    producer.await.expect("producer");
    Paced {
        kept: written as f64 / start.elapsed().as_secs_f64(),
        max_backlog,
        p50: pct(lat.clone(), 0.5),
        p99: pct(lat, 0.99),
    }
}

async fn time<F, Fut, T>(what: &str, runs: usize, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut v = Vec::new();
    for _ in 0..runs {
        let s = Instant::now();
        f().await;
        v.push(s.elapsed());
    }
    println!(
        "  {what:<44} p50 {:>8.1} ms   p99 {:>8.1} ms",
        pct(v.clone(), 0.5).as_secs_f64() * 1000.0,
        pct(v, 0.99).as_secs_f64() * 1000.0
    );
}

async fn queries(store: &Arc<dyn AlertStore>) {
    let s = store.clone();
    let page = |f: Filter| {
        let s = s.clone();
        async move { s.page(f, Scope::All, None, 50).await.expect("page") }
    };
    time("first page (50, no filter)", 20, || page(Filter::default())).await;
    time("page, rule =", 20, || {
        page(Filter {
            rule: Some("Create Privileged Pod".into()),
            ..Filter::default()
        })
    })
    .await;
    time("page, namespace = and priority >= warning", 20, || {
        page(Filter {
            namespace: Some("team-7".into()),
            priority: Some(Priority::Warning),
            ..Filter::default()
        })
    })
    .await;
    time("page, full text \"user-123\"", 20, || {
        page(Filter {
            text: Some("user-123".into()),
            ..Filter::default()
        })
    })
    .await;
    time("page, tenant token (3 namespaces)", 20, || {
        let s = s.clone();
        async move {
            s.page(
                Filter::default(),
                Scope::Namespaces(vec!["team-1".into(), "team-2".into(), "team-3".into()]),
                None,
                50,
            )
            .await
            .expect("page")
        }
    })
    .await;
    let day = Filter {
        since: Some(Utc::now() - chrono::Duration::hours(24)),
        ..Filter::default()
    };
    time("stats, last 24 h (buckets + 4 top lists)", 5, || {
        let (s, f) = (s.clone(), day.clone());
        async move { s.stats(f, Scope::All, 1800).await.expect("stats") }
    })
    .await;
    time("stats, last hour", 5, || {
        let s = s.clone();
        let f = Filter {
            since: Some(Utc::now() - chrono::Duration::hours(1)),
            ..Filter::default()
        };
        async move { s.stats(f, Scope::All, 60).await.expect("stats") }
    })
    .await;
    time("stats, all 7 days", 3, || {
        let s = s.clone();
        async move {
            s.stats(Filter::default(), Scope::All, 10800)
                .await
                .expect("stats")
        }
    })
    .await;
}

async fn run(name: &str, store: Arc<dyn AlertStore>, metrics: StoreMetrics, n: usize) {
    println!("{name}: loading {n} alerts");
    let rate = load(store.as_ref(), n).await;
    println!("  write, batches of 1000 one after another   {rate:>10.0} alerts/s");
    let p = paced(store.as_ref(), 20).await;
    println!(
        "  fed 5000 alerts/s for 20 s: wrote {:>6.0}/s, most waiting {}, write p50 {:.1} ms p99 {:.1} ms",
        p.kept,
        p.max_backlog,
        p.p50.as_secs_f64() * 1000.0,
        p.p99.as_secs_f64() * 1000.0
    );
    println!(
        "  stored: {}   delivery outcomes dropped: {}   bench process RSS {:.0} MiB",
        store.count().await.expect("count"),
        metrics.outcomes_dropped.get(),
        rss_mib()
    );
    queries(&store).await;
}

fn main() {
    let n: usize = std::env::var("KAUDIT_BENCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        println!(
            "machine: {} cores; store size {n}",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let base = baseline(n.min(200_000));
        println!("baseline: bare SQLite table (key only), batches of 1000: {base:>10.0} rows/s");
        let cfg = StoreConfig {
            write_batch: 2000,
            ..StoreConfig::default()
        };
        // Retention stays out of the way: a week of alerts, 1 GiB... raised to hold the load.
        let mut cfg = cfg;
        cfg.retention.max_age_secs = 8 * 24 * 3600;
        cfg.retention.max_bytes = 64 * 1024 * 1024 * 1024;
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics = StoreMetrics::default();
        let sqlite = kaudit::store::open(&cfg, dir.path(), metrics.clone())
            .await
            .expect("sqlite");
        run("sqlite", sqlite, metrics, n).await;
        let db = dir.path().join("console/alerts.db");
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        println!("  file size {:.0} MiB", size as f64 / 1048576.0);
        if let Ok(url) = std::env::var("KAUDIT_BENCH_PG_URL") {
            let pg_cfg = StoreConfig {
                url: Some(Secret::new(url)),
                ..cfg.clone()
            };
            let metrics = StoreMetrics::default();
            let pg = kaudit::store::open(&pg_cfg, dir.path(), metrics.clone())
                .await
                .expect("postgres");
            run("postgresql", pg, metrics, n).await;
        } else {
            println!(
                "postgresql: skipped (KAUDIT_BENCH_PG_URL unset; scripts/bench-console sets it)"
            );
        }
    });
}
