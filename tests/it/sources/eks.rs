//! The `eks` source against moto's CloudWatch Logs: real log groups and streams written with
//! PutLogEvents, several polls, events sharing a millisecond across polls, truncated
//! messages, another component's stream, and a restart from the saved cursor.

use std::collections::BTreeSet;

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use kaudit::aws::{AwsOptions, StaticCredentials};

use super::{alert_lines, assert_exactly_once, event, start, wait_alerted};

use crate::brokers::{Moto, moto_bin};

const GROUP: &str = "/aws/eks/prod/cluster";
const AUDIT_A: &str = "kube-apiserver-audit-0123456789abcdef0123456789abcdef";
const AUDIT_B: &str = "kube-apiserver-audit-fedcba9876543210fedcba9876543210";
const API: &str = "kube-apiserver-00112233445566778899aabbccddeeff";

async fn client(moto: &Moto) -> aws_sdk_cloudwatchlogs::Client {
    let sdk = kaudit::aws::load(&AwsOptions {
        region: Some("us-east-1".into()),
        endpoint: Some(moto.url()),
        credentials: Some(StaticCredentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "c2VjcmV0".into(),
            session_token: None,
        }),
        ..AwsOptions::default()
    })
    .await
    .expect("sdk config");
    aws_sdk_cloudwatchlogs::Client::new(&sdk)
}

/// Puts `(timestamp, message)`s into `stream`.
async fn put(c: &aws_sdk_cloudwatchlogs::Client, stream: &str, events: &[(i64, String)]) {
    let mut req = c
        .put_log_events()
        .log_group_name(GROUP)
        .log_stream_name(stream);
    for (ts, m) in events {
        req = req.log_events(
            InputLogEvent::builder()
                .timestamp(*ts)
                .message(m)
                .build()
                .unwrap(),
        );
    }
    req.send().await.expect("PutLogEvents");
}

fn audit(ids: &mut BTreeSet<String>, ts: i64, id: &str) -> (i64, String) {
    ids.insert(id.to_string());
    (ts, event(id).to_string())
}

fn source(dir: &std::path::Path, moto: &Moto) -> String {
    std::fs::write(dir.join("id"), "AKIDTEST\n").unwrap();
    std::fs::write(dir.join("secret"), "c2VjcmV0\n").unwrap();
    format!(
        "  - name: eks\n    type: eks\n    cluster: prod\n    region: us-east-1\n    endpoint: {}\n    poll_interval_ms: 100\n    access_key_id_file: {}\n    secret_access_key_file: {}\n",
        moto.url(),
        dir.join("id").display(),
        dir.join("secret").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_boundaries_truncation_and_restart() {
    let Some(bin) = moto_bin() else { return };
    let moto = Moto::start(bin).await;
    let c = client(&moto).await;
    c.create_log_group()
        .log_group_name(GROUP)
        .send()
        .await
        .expect("group");
    for s in [AUDIT_A, AUDIT_B, API] {
        c.create_log_stream()
            .log_group_name(GROUP)
            .log_stream_name(s)
            .send()
            .await
            .expect("stream");
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut ids = BTreeSet::new();
    let mut cut = event("cut").to_string();
    cut.truncate(60);
    cut.push_str("[Truncated...]");
    put(
        &c,
        AUDIT_A,
        &[
            audit(&mut ids, now - 5000, "a1"),
            audit(&mut ids, now - 4000, "a2"),
            (now - 3500, cut),
            audit(&mut ids, now - 3000, "a3"),
        ],
    )
    .await;
    put(&c, AUDIT_B, &[audit(&mut ids, now - 4500, "b1")]).await;
    put(
        &c,
        API,
        &[(
            now - 4200,
            "I0301 10:00:00.000000 1 controller.go:1] not an audit line".into(),
        )],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), &source(dir.path(), &moto)).await;
    wait_alerted(dir.path(), &ids).await;

    // Three events in one millisecond, read by one poll; two more in the same millisecond
    // arrive later and are read by a later poll; the first three are not handed on again.
    let t = now - 1000;
    put(
        &c,
        AUDIT_A,
        &[
            audit(&mut ids, t, "s1"),
            audit(&mut ids, t, "s2"),
            audit(&mut ids, t, "s3"),
        ],
    )
    .await;
    wait_alerted(dir.path(), &ids).await;
    put(
        &c,
        AUDIT_A,
        &[audit(&mut ids, t, "s4"), audit(&mut ids, t, "s5")],
    )
    .await;
    wait_alerted(dir.path(), &ids).await;
    // A later event in the other stream: at least one more poll has seen the boundary again.
    put(&c, AUDIT_B, &[audit(&mut ids, t + 10, "b2")]).await;
    wait_alerted(dir.path(), &ids).await;
    let stats = running.sources_view.get("eks").expect("stats");
    assert_eq!(stats.skipped.get("truncated"), Some(&1), "{stats:?}");
    // `kaudit sources check`: the group answers; another cluster's does not exist.
    let src = source(dir.path(), &moto);
    let v = super::check(dir.path(), &src).await;
    assert!(v[0].result.is_ok(), "{v:?}");
    let v = super::check(dir.path(), &src.replace("cluster: prod", "cluster: nope")).await;
    let e = v[0].result.clone().unwrap_err();
    assert!(
        e.contains("/aws/eks/nope/cluster") && e.contains("ResourceNotFound"),
        "{e}"
    );
    assert!(stats.last_error.is_none(), "{stats:?}");
    running.shutdown().await;
    assert_eq!(
        alert_lines(dir.path()),
        ids.len(),
        "no event handed on twice"
    );

    // Written while kaudit is down, one of them in the boundary millisecond.
    put(
        &c,
        AUDIT_A,
        &[audit(&mut ids, t, "s6"), audit(&mut ids, t + 20, "d1")],
    )
    .await;
    let running = start(dir.path(), &source(dir.path(), &moto)).await;
    wait_alerted(dir.path(), &ids).await;
    let stats = running.sources_view.get("eks").expect("stats");
    running.shutdown().await;
    assert_exactly_once(dir.path(), &ids);
    assert_eq!(
        alert_lines(dir.path()),
        ids.len(),
        "the restart resumed at the cursor"
    );
    assert_eq!(stats.events_read, 2, "{stats:?}");
}
