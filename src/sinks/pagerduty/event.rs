//! The Events API v2 `trigger` event of an alert, within PagerDuty's documented limits.

use serde_json::{Map, Value, json};

use super::PagerDutyConfig;
use crate::alert::{Alert, Priority, format_time};
use crate::sinks::shape::{fit_json, mapped, truncate_chars};

/// Length of a routing (integration) key.
pub const ROUTING_KEY_LEN: usize = 32;
/// `payload.summary`, in characters.
pub const SUMMARY_MAX: usize = 1_024;
/// `dedup_key`, in characters.
pub const DEDUP_KEY_MAX: usize = 255;
/// A whole event, in bytes.
pub const MAX_BYTES: usize = 512 * 1024;
/// The severities PagerDuty knows.
pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
/// Longest custom-detail value before the event is fitted to [`MAX_BYTES`].
const VALUE_START: usize = 64 * 1024;

/// The default severity of a Falco priority.
pub fn severity(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert | Priority::Critical => "critical",
        Priority::Error => "error",
        Priority::Warning => "warning",
        Priority::Notice | Priority::Informational | Priority::Debug => "info",
    }
}

/// The `trigger` event of `a`.
pub fn trigger(cfg: &PagerDutyConfig, routing_key: &str, a: &Alert) -> Value {
    let link = cfg.common.link(a);
    let summary = cfg.common.text(a, || a.output.clone());
    let dedup = match &cfg.own.dedup_key {
        Some(t) => t.render_or(a, link.as_deref(), || a.uuid.to_string()),
        None => a.uuid.to_string(),
    };
    let dedup = if dedup.trim().is_empty() {
        a.uuid.to_string()
    } else {
        truncate_chars(&dedup, DEDUP_KEY_MAX).into_owned()
    };
    let field = |n: &str| a.field_text(n).filter(|v| !v.is_empty());
    fit_json(MAX_BYTES, |shift| {
        let max = (VALUE_START >> (2 * shift)).max(64);
        let mut fields = Map::new();
        for (k, v) in &a.output_fields {
            let v = match v {
                Value::String(s) => Value::String(truncate_chars(s, max).into_owned()),
                Value::Null => continue,
                other if other.to_string().len() > max => {
                    Value::String(truncate_chars(&other.to_string(), max).into_owned())
                }
                other => other.clone(),
            };
            fields.insert(k.clone(), v);
        }
        let mut payload = json!({
            "summary": truncate_chars(&summary, SUMMARY_MAX),
            "source": if a.hostname.is_empty() { "kaudit" } else { a.hostname.as_str() },
            "severity": mapped(&cfg.own.severity_map, a.priority, severity),
            "timestamp": format_time(&a.time),
            "class": truncate_chars(&a.rule, max),
            "custom_details": {
                "rule": a.rule,
                "priority": a.priority,
                "uuid": a.uuid.to_string(),
                "source": a.source,
                "tags": a.tags,
                "output": truncate_chars(&a.output, max),
                "output_fields": fields,
            },
        });
        if let Some(ns) = field("ka.target.namespace") {
            payload["group"] = Value::String(ns);
        }
        if let Some(r) = field("ka.target.resource") {
            payload["component"] = Value::String(r);
        }
        let mut event = json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup,
            "client": "kaudit",
            "payload": payload,
        });
        if let Some(l) = &link {
            event["links"] = json!([{"href": l, "text": "Open in kaudit"}]);
            if let Some(base) = &cfg.common.console_url {
                event["client_url"] = Value::String(base.clone());
            }
        }
        event
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_and_limits() {
        let cfg: PagerDutyConfig = serde_json::from_value(json!({
            "routing_key": "R".repeat(32),
            "severity_map": {"debug": "warning"},
            "dedup_key": "{{ rule }}/{{ output_fields['ka.target.namespace'] }}",
        }))
        .unwrap();
        let mut a = crate::sinks::test_alert::test_alert("h");
        a.output = "o".repeat(2000);
        a.output_fields
            .insert("big".into(), Value::String("b".repeat(900_000)));
        let e = trigger(&cfg, "k", &a);
        assert!(serde_json::to_vec(&e).unwrap().len() <= MAX_BYTES);
        assert_eq!(e["dedup_key"], "Test rule/default");
        assert_eq!(e["payload"]["severity"], "warning");
        assert_eq!(e["payload"]["group"], "default");
        assert_eq!(
            e["payload"]["summary"].as_str().unwrap().chars().count(),
            SUMMARY_MAX
        );
        assert_eq!(e["payload"]["custom_details"]["uuid"], a.uuid.to_string());
        assert_eq!(severity(Priority::Alert), "critical");
    }
}
