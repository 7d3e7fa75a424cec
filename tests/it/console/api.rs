//! The console's API against a real kaudit: filters, paging, stats, one alert with its
//! deliveries, sinks, tenant-bound tokens, and the live feed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use kaudit::alert::Priority;
use serde_json::Value;

use super::harness::*;
use crate::support::{PATIENCE, Recorder};

/// Posts the fixture: 3 `Secret Read` (Warning, team-a, alice), 2 `Exec Into Pod` (Critical,
/// team-b, bob), 1 `Anonymous Access` (Notice, no namespace), oldest first.
async fn fixture(k: &Kaudit) -> Vec<String> {
    let mut alerts = Vec::new();
    for _ in 0..3 {
        alerts.push(alert("Secret Read", Priority::Warning, "team-a", "alice"));
    }
    for _ in 0..2 {
        alerts.push(alert("Exec Into Pod", Priority::Critical, "team-b", "bob"));
    }
    alerts.push(alert(
        "Anonymous Access",
        Priority::Notice,
        "",
        "system:anonymous",
    ));
    k.post(&alerts).await;
    k.wait_count("", 6).await;
    alerts.iter().map(|a| a.uuid.to_string()).collect()
}

async fn count(k: &Kaudit, token: &str, query: &str) -> usize {
    let (s, v) = k.get(token, &format!("alerts?limit=1000&{query}")).await;
    assert_eq!(s, 200, "{query}: {v}");
    uuids(&v).len()
}

/// On the store `store` (YAML of the `store:` key, empty for the default).
pub async fn filters_pages_and_counts_on(store: &str) {
    let k = Kaudit::start(|d| format!("{store}{}", default_sinks(d))).await;
    let posted = fixture(&k).await;

    for (query, n) in [
        ("rule=Secret%20Read", 3),
        ("priority=critical", 2),
        ("priority=warning", 5),
        ("priority=debug", 6),
        ("namespace=team-b", 2),
        ("user=alice", 3),
        ("verb=get", 6),
        ("resource=secrets", 6),
        ("tags=team:team-a", 3),
        ("tags=k8s,team:team-b", 2),
        ("q=bob", 2),
        ("q=user%3Dalice%20ns%3Dteam-a", 3),
        ("origin=falco", 6),
        ("source=k8s_audit", 6),
        ("rule=Secret%20Read&namespace=team-b", 0),
    ] {
        assert_eq!(count(&k, ADMIN, query).await, n, "{query}");
    }

    // Newest first, in pages of 2 joined by cursors, each alert once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("alerts?limit=2&cursor={c}"),
            None => "alerts?limit=2".to_string(),
        };
        let (s, page) = k.get(ADMIN, &q).await;
        assert_eq!(s, 200, "{page}");
        let ids = uuids(&page);
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let newest_first: Vec<String> = posted.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    // A time range: an alert raised two hours ago is outside the last hour.
    let old = alert_at(
        "Secret Read",
        Priority::Warning,
        "team-a",
        "alice",
        Utc::now() - chrono::Duration::hours(2),
    );
    k.post(std::slice::from_ref(&old)).await;
    k.wait_count("", 7).await;
    let since = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let since = since.replace('+', "%2B");
    assert_eq!(count(&k, ADMIN, &format!("since={since}")).await, 6);
    assert_eq!(count(&k, ADMIN, &format!("until={since}")).await, 1);

    // Stats: totals, buckets by priority, top values.
    let (s, st) = k
        .get(ADMIN, &format!("stats?since={since}&bucket=60"))
        .await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["total"], 6);
    assert_eq!(st["top_rules"][0]["value"], "Secret Read");
    assert_eq!(st["top_rules"][0]["count"], 3);
    assert_eq!(
        values(&st, "top_namespaces", "/value"),
        ["team-a", "team-b"]
    );
    assert_eq!(st["top_users"][0]["value"], "alice");
    let in_buckets: u64 = st["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["counts"].as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(in_buckets, 6);
    let critical: u64 = st["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["counts"]["Critical"].as_u64())
        .sum();
    assert_eq!(critical, 2);

    // One alert: the Falco JSON, its origin, and its delivery at the file sink.
    let id = &posted[3];
    let start = Instant::now();
    let one = loop {
        let (s, v) = k.get(ADMIN, &format!("alerts/{id}")).await;
        assert_eq!(s, 200, "{v}");
        let delivered = v["deliveries"].as_array().is_some_and(|d| {
            d.iter()
                .any(|x| x["sink"] == "archive" && x["state"] == "delivered")
        });
        if delivered {
            break v;
        }
        assert!(start.elapsed() < PATIENCE, "no delivery recorded: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(one["alert"]["rule"], "Exec Into Pod");
    assert_eq!(one["alert"]["output_fields"]["ka.user.name"], "bob");
    assert_eq!(one["origin"], "falco");
    assert_eq!(one["namespace"], "team-b");
    let sinks: Vec<&str> = one["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["sink"].as_str())
        .collect();
    assert_eq!(sinks, ["archive"], "the console's own sink is not listed");

    // The store's metrics.
    let written = k.metric("kaudit_console_store_written_total").await;
    assert!(written >= 7.0, "written {written}");

    // Refusals.
    assert_eq!(k.get(ADMIN, "alerts?colour=red").await.0, 400);
    assert_eq!(k.get(ADMIN, "alerts?priority=urgent").await.0, 400);
    assert_eq!(k.get(ADMIN, "alerts?cursor=zzz").await.0, 400);
    assert_eq!(k.get(ADMIN, "alerts/not-a-uuid").await.0, 400);
    assert_eq!(
        k.get(ADMIN, &format!("alerts/{}", uuid::Uuid::new_v4()))
            .await
            .0,
        404
    );
    assert_eq!(k.get("wrong", "alerts").await.0, 401);
    assert_eq!(
        k.get(WEBHOOK_TOKEN, "stats").await.0,
        401,
        "webhook tokens are not console tokens"
    );
    let anon = k
        .http
        .get(format!("{}/api/v1/alerts", k.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
}

/// On the store `store` (YAML of the `store:` key, empty for the default).
pub async fn tenant_tokens_never_see_another_namespace_on(store: &str) {
    let k = Kaudit::start(|d| {
        format!(
            "{store}{}  - {{name: team-a-file, type: file, tenant: team-a, max_bytes: 1048576, path: {}}}\n",
            default_sinks(d),
            d.join("team-a.jsonl").display()
        )
    })
    .await;
    let posted = fixture(&k).await;
    let (team_a, team_b) = (&posted[0..3], &posted[3..5]);

    let (_, v) = k.get(TEAM_A, "alerts?limit=1000").await;
    let mut got = uuids(&v);
    got.sort();
    let mut want = team_a.to_vec();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(count(&k, TEAM_A, "rule=Exec%20Into%20Pod").await, 0);
    assert_eq!(count(&k, TEAM_A, "q=bob").await, 0);
    assert_eq!(count(&k, TEAM_A, "namespace=team-b").await, 0);
    assert_eq!(count(&k, TEAM_B, "").await, 2);

    // Not even in counts.
    let (_, st) = k.get(TEAM_A, "stats").await;
    assert_eq!(st["total"], 3, "{st}");
    assert_eq!(values(&st, "top_namespaces", "/value"), ["team-a"]);
    assert_eq!(values(&st, "top_rules", "/value"), ["Secret Read"]);
    assert!(!st.to_string().contains("bob"), "{st}");
    let (_, rules) = k.get(TEAM_A, "rules").await;
    for r in rules["rules"].as_array().unwrap() {
        if r["name"] == "Exec Into Pod" {
            assert_eq!(r["hits"], 0);
        }
    }

    // Nor one by one.
    assert_eq!(k.get(TEAM_A, &format!("alerts/{}", team_b[0])).await.0, 404);
    assert_eq!(k.get(TEAM_A, &format!("alerts/{}", posted[5])).await.0, 404);
    assert_eq!(k.get(TEAM_A, &format!("alerts/{}", team_a[0])).await.0, 200);

    // Sinks: only its own; sources: none.
    let (_, s) = k.get(TEAM_A, "sinks").await;
    assert_eq!(values(&s, "sinks", "/name"), ["team-a-file"]);
    let (_, s) = k.get(TEAM_B, "sinks").await;
    assert!(values(&s, "sinks", "/name").is_empty());
    let (_, s) = k.get(TEAM_A, "sources").await;
    assert_eq!(s["sources"], serde_json::json!([]));

    // The live feed: team-b's alert never reaches team-a's stream.
    let mut feed = Feed::open(&k, TEAM_A, "").await;
    let b = alert("Exec Into Pod", Priority::Critical, "team-b", "bob");
    let a = alert("Secret Read", Priority::Warning, "team-a", "alice");
    k.post(&[b.clone(), a.clone()]).await;
    let first = feed.next_alert(PATIENCE).await.expect("team-a's alert");
    assert_eq!(first["alert"]["uuid"], a.uuid.to_string());
}

/// A client of `/api/v1/stream`.
pub struct Feed {
    resp: reqwest::Response,
    buf: String,
}

impl Feed {
    /// Opens the stream and waits for its `ready` event.
    pub async fn open(k: &Kaudit, token: &str, query: &str) -> Feed {
        let resp = k
            .http
            .get(format!("{}/api/v1/stream?{query}", k.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("open stream");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut f = Feed {
            resp,
            buf: String::new(),
        };
        let (ev, _) = f.next_event(PATIENCE).await.expect("ready event");
        assert_eq!(ev, "ready");
        f
    }

    /// The next event (name and data) within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let mut ev = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        ev = e.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if block.lines().all(|l| l.starts_with(':') || l.is_empty()) {
                    continue;
                }
                return Some((ev, data));
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?;
            match chunk {
                Ok(Some(c)) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                _ => return None,
            }
        }
    }

    /// The next `alert` event's JSON within `wait`.
    pub async fn next_alert(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (ev, data) = self.next_event(left).await?;
            if ev == "alert" {
                return serde_json::from_str(&data).ok();
            }
        }
    }
}

/// On the store `store` (YAML of the `store:` key, empty for the default).
pub async fn live_feed_gets_a_new_alert_within_a_second_on(store: &str) {
    let k = Kaudit::start(|d| format!("{store}{}", default_sinks(d))).await;
    let mut feed = Feed::open(&k, ADMIN, "priority=warning").await;
    let low = alert("Secret Read", Priority::Notice, "team-a", "alice");
    let high = alert("Exec Into Pod", Priority::Critical, "team-b", "bob");
    k.post(&[low, high.clone()]).await;
    let got = feed
        .next_alert(Duration::from_secs(1))
        .await
        .expect("the alert within a second");
    assert_eq!(
        got["alert"]["uuid"],
        high.uuid.to_string(),
        "the filter applies"
    );
}

/// On the store `store` (YAML of the `store:` key, empty for the default).
pub async fn sinks_show_health_errors_and_dead_letters_on(store: &str) {
    let refusing = Recorder::start(Arc::new(|_, _| {
        (StatusCode::BAD_REQUEST, "no thanks").into_response()
    }))
    .await;
    let dead_port = crate::support::free_port();
    let k = Kaudit::start(|d| {
        format!(
            "{store}{}  - {{name: refusing, type: http, url: \"{}\"}}\n  - {{name: down, type: http, url: \"http://127.0.0.1:{dead_port}/\"}}\n",
            default_sinks(d),
            refusing.url("/alerts")
        )
    })
    .await;
    let a = alert("Secret Read", Priority::Warning, "team-a", "alice");
    k.post(std::slice::from_ref(&a)).await;
    let start = Instant::now();
    let sinks = loop {
        let (s, v) = k.get(ADMIN, "sinks").await;
        assert_eq!(s, 200);
        let by = |n: &str| {
            v["sinks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == n)
                .cloned()
                .unwrap_or(Value::Null)
        };
        if by("archive")["health"] == "ok"
            && by("refusing")["dead_lettered"] == 1
            && by("down")["health"] == "retrying"
        {
            break v;
        }
        assert!(start.elapsed() < PATIENCE, "sinks never settled: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let list = sinks["sinks"].as_array().unwrap();
    let names: Vec<&str> = list.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["console-store", "archive", "refusing", "down"]);
    let down = &list[3];
    assert_eq!(down["type"], "http");
    assert!(
        down["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down}"
    );
    assert!(down["spool_records"].as_i64().unwrap() >= 1, "{down}");
    assert!(list[2]["last_dead_letter"].is_string(), "{}", list[2]);

    // The alert's page has every sink's outcome, with the dead letter's reason.
    let start = Instant::now();
    loop {
        let (_, v) = k.get(ADMIN, &format!("alerts/{}", a.uuid)).await;
        let d = v["deliveries"].as_array().cloned().unwrap_or_default();
        let state = |n: &str| {
            d.iter()
                .find(|x| x["sink"] == n)
                .map(|x| x["state"].as_str().unwrap_or("").to_string())
        };
        if state("archive").as_deref() == Some("delivered")
            && state("refusing").as_deref() == Some("dead_lettered")
            && state("down").as_deref() == Some("spooled")
        {
            let r = d.iter().find(|x| x["sink"] == "refusing").unwrap();
            assert!(r["reason"].as_str().unwrap().contains("400"), "{r}");
            break;
        }
        assert!(start.elapsed() < PATIENCE, "deliveries never settled: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Rules and sources answer for the admin.
    let (s, r) = k.get(ADMIN, "rules").await;
    assert_eq!(s, 200);
    assert!(r["rules"].as_array().is_some_and(|r| !r.is_empty()), "{r}");
    let (s, src) = k.get(ADMIN, "sources").await;
    assert_eq!(s, 200);
    assert_eq!(src["sources"][0]["type"], "webhook", "{src}");
}

// The same tests on the embedded store; postgres.rs runs them on PostgreSQL.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_api_filters_pages_and_counts() {
    filters_pages_and_counts_on("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_tokens_never_see_another_namespace() {
    tenant_tokens_never_see_another_namespace_on("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_gets_a_new_alert_within_a_second() {
    live_feed_gets_a_new_alert_within_a_second_on("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_show_health_errors_and_dead_letters() {
    sinks_show_health_errors_and_dead_letters_on("").await;
}
