//! The postable alerts of a batch (Alertmanager's `PostableAlerts`).

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use super::AlertmanagerConfig;
use crate::alert::{Alert, Priority, format_time};
use crate::sinks::shape::mapped;

/// Labels kaudit sets from the alert.
pub const CORE_LABELS: [&str; 6] = [
    "alertname",
    "rule",
    "priority",
    "severity",
    "source",
    "namespace",
];

/// The default `severity` label of a Falco priority.
pub fn severity(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert | Priority::Critical | Priority::Error => "critical",
        Priority::Warning => "warning",
        Priority::Notice | Priority::Informational | Priority::Debug => "info",
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// The alerts of `batch` as Alertmanager takes them, `now` being the time of sending.
pub fn postable(cfg: &AlertmanagerConfig, batch: &[Alert], now: DateTime<Utc>) -> Value {
    let resolve = Duration::seconds(i64::try_from(cfg.own.resolve_after_secs).unwrap_or(300));
    let items: Vec<Value> = batch
        .iter()
        .map(|a| {
            let mut labels = Map::new();
            for (k, v) in &cfg.own.labels {
                labels.insert(k.clone(), Value::String(v.clone()));
            }
            let sev = mapped(&cfg.own.severity_map, a.priority, severity);
            for (k, v) in [
                ("alertname", a.rule.clone()),
                ("rule", a.rule.clone()),
                ("priority", a.priority.as_str().to_string()),
                ("severity", sev),
                ("source", a.source.clone()),
            ] {
                if !v.is_empty() {
                    labels.insert(k.into(), Value::String(v));
                }
            }
            if let Some(ns) = a
                .field_text("ka.target.namespace")
                .filter(|v| !v.is_empty())
            {
                labels.insert("namespace".into(), Value::String(ns));
            }
            let link = cfg.common.link(a);
            let summary = cfg.common.text(a, || a.output.clone());
            let mut annotations = Map::new();
            for (k, v) in [
                ("summary", summary),
                ("description", a.output.clone()),
                ("uuid", a.uuid.to_string()),
                ("hostname", a.hostname.clone()),
                ("tags", a.tags.join(",")),
                (
                    "output_fields",
                    Value::Object(a.output_fields.clone()).to_string(),
                ),
            ] {
                if !v.is_empty() {
                    annotations.insert(k.into(), Value::String(v));
                }
            }
            let ends = a.time.max(now) + resolve;
            let mut item = json!({
                "labels": labels,
                "annotations": annotations,
                "startsAt": format_time(&a.time),
                "endsAt": format_time(&ends),
            });
            if let Some(l) = link {
                item["generatorURL"] = Value::String(l);
            }
            item
        })
        .collect();
    Value::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_alerts_resolve() {
        let cfg: AlertmanagerConfig = serde_json::from_value(json!({
            "urls": ["http://am:9093"],
            "labels": {"cluster": "prod"},
            "severity_map": {"debug": "none"},
        }))
        .unwrap();
        let mut a = crate::sinks::test_alert::test_alert("h");
        let now = a.time + Duration::hours(2);
        a.output_fields.insert("x.y".into(), json!(1));
        let v = postable(&cfg, std::slice::from_ref(&a), now);
        let item = &v[0];
        let labels = item["labels"].as_object().unwrap();
        let mut names: Vec<&str> = labels.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "alertname",
                "cluster",
                "namespace",
                "priority",
                "rule",
                "severity",
                "source"
            ]
        );
        assert_eq!(labels["severity"], "none");
        assert_eq!(item["endsAt"], format_time(&(now + Duration::seconds(300))));
        assert_eq!(item["annotations"]["uuid"], a.uuid.to_string());
        assert!(item.get("generatorURL").is_none());
        assert!(is_label_name("_a1") && !is_label_name("1a") && !is_label_name("a.b"));
    }
}
