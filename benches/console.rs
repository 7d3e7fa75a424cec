//! Console store benchmark: write throughput of the store (one console sink's lane delivers
//! batches of up to 1000, one after another) beside a baseline in the same run (the same rows
//! into a bare SQLite table with only a key: the floor of the cost), a paced run at 5,000
//! alerts/s, and query latencies (first page, filters, full text, stats) on the loaded store,
//! for SQLite and, when `KAUDIT_BENCH_PG_URL` is set, PostgreSQL.
//!
//! Run with `scripts/bench-console` (which also starts PostgreSQL and compares ingest with the
//! console on and off). `KAUDIT_BENCH_ALERTS` sets the store size (default 1,000,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kaudit::alert::{Alert, Priority};
use kaudit::secret::Secret;
use kaudit::store::{AlertStore, Filter, Scope, StoreConfig};
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
        uuid: uuid::Uuid::new_v4(),
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

/// Loads `n` alerts in batches of 1000, one after another; returns alerts/s.
async fn load(store: &dyn AlertStore, n: usize) -> f64 {
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<Alert> = (i..(i + 1000).min(n)).map(|j| alert(j, n)).collect();
        i += batch.len();
        store.insert(batch).await.expect("insert");
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

/// 5,000 alerts/s for `secs`, in batches every 50 ms: the rate kept and the commit latency.
async fn paced(store: &dyn AlertStore, secs: u64) -> (f64, Duration, Duration) {
    let per_tick = 250;
    let ticks = secs * 20;
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut next = tokio::time::Instant::now();
    for t in 0..ticks as usize {
        next += Duration::from_millis(50);
        let batch: Vec<Alert> = (0..per_tick)
            .map(|j| Alert {
                time: Utc::now(),
                ..alert(t * per_tick + j, 1)
            })
            .collect();
        let s = Instant::now();
        store.insert(batch).await.expect("insert");
        lat.push(s.elapsed());
        tokio::time::sleep_until(next).await;
    }
    let rate = (ticks as usize * per_tick) as f64 / start.elapsed().as_secs_f64();
    (rate, pct(lat.clone(), 0.5), pct(lat, 0.99))
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

async fn run(name: &str, store: Arc<dyn AlertStore>, n: usize) {
    println!("{name}: loading {n} alerts");
    let rate = load(store.as_ref(), n).await;
    println!("  write, batches of 1000 one after another   {rate:>10.0} alerts/s");
    let (kept, p50, p99) = paced(store.as_ref(), 10).await;
    println!(
        "  paced 5000 alerts/s for 10 s: kept {kept:>6.0}/s   commit p50 {:.1} ms   p99 {:.1} ms",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0
    );
    println!(
        "  stored: {}   bench process RSS {:.0} MiB",
        store.count().await.expect("count"),
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
        let sqlite = kaudit::store::open(&cfg, dir.path(), Default::default())
            .await
            .expect("sqlite");
        run("sqlite", sqlite, n).await;
        let db = dir.path().join("console/alerts.db");
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        println!("  file size {:.0} MiB", size as f64 / 1048576.0);
        if let Ok(url) = std::env::var("KAUDIT_BENCH_PG_URL") {
            let pg_cfg = StoreConfig {
                url: Some(Secret::new(url)),
                ..cfg.clone()
            };
            let pg = kaudit::store::open(&pg_cfg, dir.path(), Default::default())
                .await
                .expect("postgres");
            run("postgresql", pg, n).await;
        } else {
            println!(
                "postgresql: skipped (KAUDIT_BENCH_PG_URL unset; scripts/bench-console sets it)"
            );
        }
    });
}
