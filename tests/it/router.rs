//! Routing: min_priority and filters, enrichment, isolation of a slow sink, reload, examples.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use kaudit::alert::Priority;
use kaudit::config::{Config, Overrides};
use kaudit::metrics::Metrics;
use kaudit::router;

use crate::support::{
    Recorder, alert, config, config_from_yaml, free_port, json_lines, try_config, wait_until,
};

fn uuids(path: &std::path::Path) -> Vec<String> {
    json_lines(path)
        .iter()
        .map(|v| v["uuid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn priority_and_filter_route_each_alert_only_where_it_belongs() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(format!("{n}.jsonl"));
    let home = std::env::var("HOME").unwrap_or_default();
    let cfg = config_from_yaml(&format!(
        r#"data_dir: {d}
router:
  custom_fields:
    cluster: "prod-${{HOME}}"
    ka.user.name: "not-overridden"
  custom_tags: [kaudit, k8s]
sinks:
  - name: all
    type: file
    path: {all}
  - name: critical
    type: file
    min_priority: critical
    path: {crit}
  - name: privileged
    type: file
    filter: 'rule = "Create Privileged Pod" and ka.target.namespace = kube-system'
    path: {priv}
  - name: priv-errors
    type: file
    min_priority: error
    filter: 'rule = "Create Privileged Pod"'
    path: {perr}
"#,
        d = dir.path().display(),
        all = out("all").display(),
        crit = out("critical").display(),
        priv = out("privileged").display(),
        perr = out("perr").display(),
    ));
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a_warn_priv = alert("Create Privileged Pod", Priority::Warning);
    let b_crit = alert("Delete Namespace", Priority::Critical);
    let c_debug = alert("Debug Thing", Priority::Debug);
    let d_emerg_priv = alert("Create Privileged Pod", Priority::Emergency);
    let mut e_other_ns = alert("Create Privileged Pod", Priority::Error);
    e_other_ns
        .output_fields
        .insert("ka.target.namespace".into(), "default".into());
    let all = [&a_warn_priv, &b_crit, &c_debug, &d_emerg_priv, &e_other_ns];
    for a in all {
        r.sender().send(a.clone()).await.unwrap();
    }
    r.shutdown().await;
    let id = |a: &kaudit::alert::Alert| a.uuid.to_string();
    assert_eq!(
        uuids(&out("all")),
        all.iter().map(|a| id(a)).collect::<Vec<_>>()
    );
    assert_eq!(
        uuids(&out("critical")),
        vec![id(&b_crit), id(&d_emerg_priv)]
    );
    assert_eq!(
        uuids(&out("privileged")),
        vec![id(&a_warn_priv), id(&d_emerg_priv)]
    );
    assert_eq!(
        uuids(&out("perr")),
        vec![id(&d_emerg_priv), id(&e_other_ns)]
    );
    // Enrichment: custom fields (env expanded, the alert's own field wins) and tags.
    let first = &json_lines(&out("all"))[0];
    assert_eq!(first["output_fields"]["cluster"], format!("prod-{home}"));
    assert_eq!(first["output_fields"]["ka.user.name"], "alice");
    assert_eq!(first["tags"], serde_json::json!(["k8s", "kaudit"]));
}

#[tokio::test]
async fn a_slow_sink_does_not_delay_another() {
    let release = Arc::new(AtomicBool::new(false));
    let rel = release.clone();
    // The slow receiver answers 503 until released: its sink keeps retrying.
    let slow = Recorder::start(Arc::new(move |_, _| {
        if rel.load(Ordering::SeqCst) {
            StatusCode::OK.into_response()
        } else {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }))
    .await;
    let fast = Recorder::ok().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: slow\n    type: http\n    url: {}\n  - name: fast\n    type: http\n    url: {}\n",
            slow.url("/"),
            fast.url("/")
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let alerts: Vec<_> = (0..20)
        .map(|i| alert(&format!("R{i}"), Priority::Warning))
        .collect();
    for a in &alerts {
        r.sender().send(a.clone()).await.unwrap();
    }
    // The fast sink gets everything while the slow one has confirmed nothing.
    wait_until("the fast sink to get all 20", || fast.count() >= 20).await;
    wait_until("the slow sink's 20 in its spool", || {
        r.spooled("slow") == Some(20)
    })
    .await;
    assert!(slow.count() >= 1, "the slow sink was tried");
    release.store(true, Ordering::SeqCst);
    wait_until("the slow sink to drain", || r.spooled("slow") == Some(0)).await;
    r.shutdown().await;
    let want: HashSet<String> = alerts.iter().map(|a| a.uuid.to_string()).collect();
    assert_eq!(fast.uuids().into_iter().collect::<HashSet<_>>(), want);
    let slow_ok: HashSet<String> = slow.uuids().into_iter().collect();
    assert_eq!(slow_ok, want);
}

#[tokio::test]
async fn reload_adds_changes_and_removes_sinks_keeping_spools() {
    let dir = tempfile::tempdir().unwrap();
    let dead_url = format!("http://127.0.0.1:{}/", free_port());
    let file = dir.path().join("b.jsonl");
    let cfg1 = config(
        dir.path(),
        &format!("  - name: a\n    type: http\n    url: {dead_url}\n"),
    );
    let r = router::start(cfg1.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let first: Vec<_> = (0..5)
        .map(|i| alert(&format!("first {i}"), Priority::Error))
        .collect();
    for a in &first {
        r.sender().send(a.clone()).await.unwrap();
    }
    wait_until("5 alerts spooled for a", || r.spooled("a") == Some(5)).await;

    // Remove a, add b: a's spool stays on disk.
    let cfg2 = config(
        dir.path(),
        &format!(
            "  - name: b\n    type: file\n    path: {}\n",
            file.display()
        ),
    );
    r.reload(cfg2.router_setup()).await.unwrap();
    assert_eq!(r.spooled("a"), None);
    assert!(dir.path().join("spool/a/spool.redb").exists());
    let second = alert("second", Priority::Error);
    r.sender().send(second.clone()).await.unwrap();
    wait_until("b to get the second alert", || uuids(&file).len() == 1).await;
    assert_eq!(uuids(&file), vec![second.uuid.to_string()]);

    // Bring a back, pointing at a live receiver, and change b (min_priority): a delivers its spool.
    let server = Recorder::ok().await;
    let cfg3 = config(
        dir.path(),
        &format!(
            "  - name: a\n    type: http\n    url: {}\n  - name: b\n    type: file\n    min_priority: critical\n    path: {}\n",
            server.url("/"),
            file.display()
        ),
    );
    r.reload(cfg3.router_setup()).await.unwrap();
    let third = alert("third", Priority::Error);
    r.sender().send(third.clone()).await.unwrap();
    wait_until("a to deliver 6", || server.count() >= 6).await;
    r.shutdown().await;
    let got = server.uuids();
    let mut want: Vec<String> = first.iter().map(|a| a.uuid.to_string()).collect();
    want.push(third.uuid.to_string());
    assert_eq!(
        got, want,
        "spooled alerts first, in order, then the new one"
    );
    assert_eq!(
        uuids(&file).len(),
        1,
        "b's new min_priority keeps the Error alert out"
    );
}

#[tokio::test]
async fn an_invalid_reload_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.jsonl");
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: x\n    type: file\n    path: {}\n",
            file.display()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let mut bad = cfg.clone();
    bad.spool.retry_initial_ms = 0;
    assert!(r.reload(bad.router_setup()).await.is_err());
    let a = alert("still routed", Priority::Error);
    r.sender().send(a.clone()).await.unwrap();
    r.shutdown().await;
    assert_eq!(uuids(&file), vec![a.uuid.to_string()]);
}

#[test]
fn an_invalid_filter_is_a_config_error_naming_the_sink() {
    let err = try_config("sinks:\n  - name: picky\n    type: stdout\n    filter: 'rule in (x'\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("sinks[0].filter"), "{err}");
    assert!(err.contains("picky"), "{err}");
}

#[test]
fn sink_type_settings_are_checked() {
    let err = try_config("sinks:\n  - name: n\n    type: nats\n    subject: 'falco.{prio}'\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown placeholder"), "{err}");
    let err = try_config("sinks:\n  - name: h\n    type: http\n    url: x\n    timeout: 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("timeout"), "{err}");
    let err = try_config("sinks:\n  - name: g\n    type: gcscc\n    mode: api\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("organization"), "{err}");
}

#[test]
fn every_example_config_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let cfg = Config::load(Some(&p), &Overrides::default())
            .unwrap_or_else(|err| panic!("{}: {err}", p.display()));
        assert!(!cfg.sinks.is_empty(), "{}", p.display());
        n += 1;
    }
    assert!(n >= 6, "expected the six example configs, found {n}");
}
