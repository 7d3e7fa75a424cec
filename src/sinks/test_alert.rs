//! The test alert (falcosidekick's `POST /test` convention): one alert sent straight through a
//! sink, bypassing its filter, queue and spool, so that whoever set it up learns at once whether
//! it is delivered, or the error, without waiting for a real event.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::SinkConfig;
use crate::alert::{Alert, Priority};

/// The rule name of the test alert (falcosidekick's).
pub const TEST_RULE: &str = "Test rule";

/// How long one sink may take to take the test alert (building it included).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A test alert from `hostname`, with a fresh uuid and the usual Kubernetes audit fields, so
/// that templates and key-field lists render as they will for real alerts.
pub fn test_alert(hostname: &str) -> Alert {
    let now = Utc::now();
    let mut f = Map::new();
    for (k, v) in [
        ("ka.verb", "create"),
        ("ka.user.name", "kaudit-test"),
        ("ka.target.namespace", "default"),
        ("ka.target.resource", "pods"),
        ("ka.target.name", "kaudit-test"),
        ("ka.uri", "/api/v1/namespaces/default/pods"),
    ] {
        f.insert(k.into(), Value::String(v.into()));
    }
    f.insert("ka.resp.code".into(), Value::from(201));
    Alert {
        uuid: Uuid::new_v4(),
        time: now,
        rule: TEST_RULE.into(),
        priority: Priority::Debug,
        source: "k8s_audit".into(),
        hostname: hostname.into(),
        output: format!(
            "{}: Debug This is a test alert from kaudit (user=kaudit-test verb=create resource=pods ns=default name=kaudit-test)",
            now.format("%H:%M:%S%.9f")
        ),
        output_fields: f,
        tags: vec!["test".into(), "kaudit".into()],
    }
}

/// What happened to the test alert at one sink.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestOutcome {
    /// The sink's name.
    pub sink: String,
    /// Its type.
    #[serde(rename = "type")]
    pub sink_type: &'static str,
    /// The sink confirmed the alert.
    pub delivered: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// No sink has the name asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no sink named {name:?}; sinks: {known}")]
pub struct UnknownSink {
    /// The name asked for.
    pub name: String,
    /// The configured names, comma-separated.
    pub known: String,
}

/// Sends one test alert (from `hostname`) through the sink `only`, or through every sink, all at
/// once; each sink is built from its config, gets at most `timeout`, and is reported.
pub async fn send_test(
    sinks: &[SinkConfig],
    only: Option<&str>,
    hostname: &str,
    timeout: Duration,
) -> Result<Vec<TestOutcome>, UnknownSink> {
    let chosen: Vec<&SinkConfig> = match only {
        Some(n) => {
            let s = sinks
                .iter()
                .find(|s| s.name == n)
                .ok_or_else(|| UnknownSink {
                    name: n.to_string(),
                    known: sinks
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            vec![s]
        }
        None => sinks.iter().collect(),
    };
    let alert = test_alert(hostname);
    let runs = chosen.into_iter().map(|cfg| {
        let alert = alert.clone();
        async move {
            let attempt = async {
                let sink = super::build(cfg).await?;
                sink.send(std::slice::from_ref(&alert)).await
            };
            let error = match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {} s", timeout.as_secs_f32())),
            };
            TestOutcome {
                sink: cfg.name.clone(),
                sink_type: cfg.settings.type_name(),
                delivered: error.is_none(),
                error,
            }
        }
    });
    Ok(futures_util::future::join_all(runs).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_each_sink_and_refuses_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        let file: SinkConfig = serde_json::from_value(serde_json::json!({
            "name": "f", "type": "file", "path": dir.path().join("a.json"),
            "min_priority": "critical",
        }))
        .unwrap();
        let bad: SinkConfig = serde_json::from_value(serde_json::json!({
            "name": "down", "type": "http", "url": "http://127.0.0.1:9/x", "timeout_ms": 2000,
        }))
        .unwrap();
        let sinks = vec![file, bad];
        let got = send_test(&sinks, None, "h", TEST_TIMEOUT).await.unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].delivered, "{got:?}");
        assert!(!got[1].delivered && got[1].error.is_some(), "{got:?}");
        let line = std::fs::read_to_string(dir.path().join("a.json")).unwrap();
        assert!(
            line.contains(TEST_RULE),
            "min_priority does not apply: {line}"
        );
        let e = send_test(&sinks, Some("nope"), "h", TEST_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(e.known, "f, down");
        let one = send_test(&sinks, Some("f"), "h", TEST_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
    }
}
