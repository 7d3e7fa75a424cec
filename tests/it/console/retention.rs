//! Retention, enforced continuously while kaudit runs: by age (the alert's time) and by size
//! (the oldest go first), with the newest kept.

use std::time::{Duration, Instant};

use chrono::Utc;
use kaudit::alert::Priority;

use super::harness::*;
use crate::support::PATIENCE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_past_max_age_are_deleted() {
    let k = Kaudit::start(|d| {
        format!(
            "store:\n  retention:\n    max_age_secs: 3600\n    check_interval_ms: 100\n{}",
            default_sinks(d)
        )
    })
    .await;
    let old = alert_at(
        "Secret Read",
        Priority::Warning,
        "team-a",
        "alice",
        Utc::now() - chrono::Duration::days(2),
    );
    let fresh = alert("Secret Read", Priority::Warning, "team-a", "alice");
    k.post(&[old.clone(), fresh.clone()]).await;
    // Stored, then deleted by the next check: only the fresh one stays.
    let start = Instant::now();
    loop {
        let (_, page) = k.get(ADMIN, "alerts").await;
        if uuids(&page) == [fresh.uuid.to_string()] {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "old alert never deleted: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(k.get(ADMIN, &format!("alerts/{}", old.uuid)).await.0, 404);
    // The metric counts it.
    assert!(k.metric("kaudit_console_store_deleted_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_alerts_go_when_the_store_is_over_max_bytes() {
    let k = Kaudit::start(|d| {
        format!(
            "store:\n  retention:\n    max_bytes: 262144\n    check_interval_ms: 100\n{}",
            default_sinks(d)
        )
    })
    .await;
    let mut posted = Vec::new();
    for i in 0..600 {
        let mut a = alert("Secret Read", Priority::Warning, "team-a", "alice");
        a.output = format!("{} {i} {}", a.output, "padding ".repeat(60));
        posted.push(a);
    }
    k.post(&posted).await;
    let newest = posted.last().unwrap().uuid.to_string();
    let oldest = posted[0].uuid.to_string();
    let start = Instant::now();
    loop {
        let (_, st) = k.get(ADMIN, "stats").await;
        let total = st["total"].as_u64().unwrap_or(0);
        let (s_new, _) = k.get(ADMIN, &format!("alerts/{newest}")).await;
        let (s_old, _) = k.get(ADMIN, &format!("alerts/{oldest}")).await;
        if s_new == 200 && s_old == 404 && total > 0 && total < 600 {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "retention by size never happened: total {total}, newest {s_new}, oldest {s_old}\n{}",
            k.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
