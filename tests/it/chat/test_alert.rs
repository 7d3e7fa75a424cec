//! The test alert from outside: `POST /test` on a running kaudit (behind the webhook's auth,
//! following reloads) and `kaudit sinks test [NAME]`, each reporting per sink.

use std::process::Command;

use serde_json::Value;

use super::api::{Fake, Script};
use super::oncall::PAGERDUTY;
use super::slack::SLACK;
use crate::support::config_from_yaml;

fn yaml(dir: &std::path::Path, sinks: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\nauth:\n  tokens: [t0ken]\nsinks:\n{sinks}",
        dir.join("data").display()
    )
}

#[tokio::test]
async fn post_test_reports_each_sink_behind_auth() {
    crate::support::install_crypto_provider();
    let slack = Fake::start(&SLACK, vec![]).await;
    let pd = Fake::start(&PAGERDUTY, vec![Script::Unauthorized]).await;
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "{}{}",
        (SLACK.sink)("chat", &slack.base(), dir.path()),
        (PAGERDUTY.sink)("pager", &pd.base(), dir.path())
    );
    let cfg = config_from_yaml(&yaml(dir.path(), &sinks));
    let mut running = kaudit::pipeline::start(cfg).await.unwrap();
    let base = format!("http://{}", running.local_addr());
    let c = reqwest::Client::new();
    let post = |q: &str| {
        c.post(format!("{base}/test{q}"))
            .bearer_auth("t0ken")
            .send()
    };

    let anon = c.post(format!("{base}/test")).send().await.unwrap();
    assert_eq!(anon.status(), 401, "behind the webhook's auth");
    assert_eq!(slack.rec.count(), 0);

    let all = post("").await.unwrap();
    assert_eq!(all.status(), 502, "one sink refused");
    let v: Value = all.json().await.unwrap();
    let outcomes = v["sinks"].as_array().unwrap();
    assert_eq!(outcomes[0]["sink"], "chat");
    assert_eq!(outcomes[0]["type"], "slack");
    assert_eq!(outcomes[0]["delivered"], true);
    assert!(outcomes[0].get("error").is_none());
    assert_eq!(outcomes[1]["delivered"], false);
    assert!(
        outcomes[1]["error"].as_str().unwrap().contains("400"),
        "{v}"
    );
    assert!(String::from_utf8_lossy(&slack.rec.requests()[0].body).contains("Test rule"));

    let one = post("?sink=chat").await.unwrap();
    assert_eq!(one.status(), 200);
    let v: Value = one.json().await.unwrap();
    assert_eq!(v["sinks"].as_array().unwrap().len(), 1);
    assert_eq!(post("?sink=nope").await.unwrap().status(), 404);

    // After a reload the test goes to the sinks in force.
    let only_pd = (PAGERDUTY.sink)("pager2", &pd.base(), dir.path());
    running
        .reload(config_from_yaml(&yaml(dir.path(), &only_pd)))
        .await
        .unwrap();
    let after = post("").await.unwrap();
    assert_eq!(after.status(), 200, "the PagerDuty fake answers 202 now");
    let v: Value = after.json().await.unwrap();
    assert_eq!(v["sinks"][0]["sink"], "pager2");
    running.shutdown().await;
    slack.assert_valid();
    pd.assert_valid();
}

#[tokio::test]
async fn sinks_test_command_reports_and_exits_by_outcome() {
    let slack = Fake::start(&SLACK, vec![]).await;
    let pd = Fake::start(&PAGERDUTY, vec![Script::RateLimited]).await;
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "{}{}",
        (SLACK.sink)("chat", &slack.base(), dir.path()),
        (PAGERDUTY.sink)("pager", &pd.base(), dir.path())
    );
    let file = dir.path().join("kaudit.yaml");
    std::fs::write(&file, yaml(dir.path(), &sinks)).unwrap();
    let run = |args: &[&str]| {
        let file = file.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_kaudit"))
                .args(["sinks", "test", "--config"])
                .arg(&file)
                .args(&args)
                .env_remove("KAUDIT_CONFIG")
                .output()
                .unwrap()
        })
    };
    let one = run(&["chat"]).await.unwrap();
    let out = String::from_utf8_lossy(&one.stdout);
    assert_eq!(one.status.code(), Some(0), "{out}");
    assert_eq!(out, "delivered  chat (slack)\n");

    let all = run(&[]).await.unwrap();
    let out = String::from_utf8_lossy(&all.stdout);
    assert_eq!(all.status.code(), Some(1), "{out}");
    assert!(
        out.starts_with(
            "delivered  chat (slack)\nFAILED     pager (pagerduty): pagerduty: HTTP 429"
        ),
        "{out}"
    );

    let json = run(&["pager", "--json"]).await.unwrap();
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["sinks"][0]["delivered"], true,
        "the rate limit has passed"
    );

    let unknown = run(&["nope"]).await.unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no sink named \"nope\"; sinks: chat, pager")
    );
    slack.assert_valid();
    pd.assert_valid();
}
