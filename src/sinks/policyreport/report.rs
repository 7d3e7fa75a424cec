//! The results of alerts in a PolicyReport (wgpolicyk8s.io/v1alpha2), and merging them into a
//! report: newest last, one per alert uuid, the oldest dropped past `max_results`, the summary
//! counted again.

use serde_json::{Map, Value, json};

use crate::alert::{Alert, Priority};

/// The property that holds an alert's uuid in its result.
pub const UUID: &str = "uuid";

/// The report severity of a Falco priority.
pub fn severity(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert | Priority::Critical => "critical",
        Priority::Error => "high",
        Priority::Warning => "medium",
        Priority::Notice => "low",
        Priority::Informational | Priority::Debug => "info",
    }
}

/// `fail` for Warning and above, `warn` below.
pub fn result(p: Priority) -> &'static str {
    if p.at_least(Priority::Warning) {
        "fail"
    } else {
        "warn"
    }
}

/// The most characters of one property value.
const MAX_PROPERTY: usize = 1024;

/// The report result of an alert: the rule as `policy`, the output as `message`, the uuid,
/// priority and every output field with a value as string `properties`, and the target as the
/// resource.
pub fn alert_result(a: &Alert) -> Value {
    let mut props = Map::new();
    props.insert(UUID.into(), a.uuid.to_string().into());
    props.insert("priority".into(), a.priority.as_str().into());
    for k in a.output_fields.keys() {
        if let Some(v) = a.field_text(k).filter(|v| !v.is_empty()) {
            props.insert(
                k.clone(),
                v.chars().take(MAX_PROPERTY).collect::<String>().into(),
            );
        }
    }
    let mut r = json!({
        "policy": a.rule,
        "source": "kaudit",
        "category": a.source,
        "severity": severity(a.priority),
        "result": result(a.priority),
        "scored": true,
        "timestamp": {"seconds": a.time.timestamp(), "nanos": a.time.timestamp_subsec_nanos()},
        "message": a.output,
        "properties": props,
    });
    let name = a.field_text("ka.target.name").filter(|n| !n.is_empty());
    if let Some(name) = name {
        let mut res = json!({ "name": name });
        if let Some(ns) = a
            .field_text("ka.target.namespace")
            .filter(|n| !n.is_empty())
        {
            res["namespace"] = ns.into();
        }
        r["resources"] = json!([res]);
    }
    r
}

/// Merges `alerts` into the `results` of a report's data, keeping the newest `max` (by
/// timestamp), one per uuid, and sets `summary`.
pub fn merge(data: &mut Value, alerts: &[&Alert], max: usize) {
    let mut results: Vec<Value> = data["results"].as_array().cloned().unwrap_or_default();
    let known: std::collections::HashSet<String> = results
        .iter()
        .filter_map(|r| r["properties"][UUID].as_str().map(str::to_string))
        .collect();
    for a in alerts {
        if !known.contains(&a.uuid.to_string()) {
            results.push(alert_result(a));
        }
    }
    let ts = |r: &Value| {
        (
            r["timestamp"]["seconds"].as_i64().unwrap_or(0),
            r["timestamp"]["nanos"].as_i64().unwrap_or(0),
        )
    };
    results.sort_by_key(ts);
    if results.len() > max {
        results.drain(..results.len() - max);
    }
    let mut summary = json!({"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0});
    for r in &results {
        if let Some(k) = r["result"].as_str()
            && let Some(n) = summary[k].as_u64()
        {
            summary[k] = (n + 1).into();
        }
    }
    data["results"] = Value::Array(results);
    data["summary"] = summary;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(p: Priority, secs: i64) -> Alert {
        Alert {
            uuid: uuid::Uuid::new_v4(),
            time: chrono::DateTime::from_timestamp(secs, 5).unwrap(),
            rule: "R".into(),
            priority: p,
            source: "k8s_audit".into(),
            hostname: String::new(),
            output: "out".into(),
            output_fields: serde_json::from_str(
                r#"{"ka.target.namespace":"team-a","ka.target.name":"web","ka.user.groups":["a"],"x":null}"#,
            )
            .unwrap(),
            tags: vec![],
        }
    }

    #[test]
    fn results_merge_trim_and_count() {
        let a = alert(Priority::Critical, 100);
        let r = alert_result(&a);
        assert_eq!(r["severity"], "critical");
        assert_eq!(r["result"], "fail");
        assert_eq!(r["timestamp"], json!({"seconds": 100, "nanos": 5}));
        assert_eq!(r["properties"]["ka.user.groups"], r#"["a"]"#);
        assert!(r["properties"].get("x").is_none());
        assert_eq!(
            r["resources"],
            json!([{"name": "web", "namespace": "team-a"}])
        );
        let mut data = json!({});
        let b = alert(Priority::Notice, 50);
        let c = alert(Priority::Warning, 200);
        merge(&mut data, &[&a, &b], 10);
        merge(&mut data, &[&a, &c], 2);
        let res = data["results"].as_array().unwrap();
        assert_eq!(res.len(), 2, "oldest dropped, a kept once");
        assert_eq!(res[0]["properties"][UUID], a.uuid.to_string());
        assert_eq!(res[1]["properties"][UUID], c.uuid.to_string());
        assert_eq!(data["summary"]["fail"], 2);
        assert_eq!(data["summary"]["warn"], 0);
        assert_eq!(severity(Priority::Notice), "low");
        assert_eq!(result(Priority::Notice), "warn");
    }
}
