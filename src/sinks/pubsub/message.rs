//! The publish request of a batch: one message per alert.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::alert::Alert;
use crate::sinks::template::Template;

/// The publish request body for a batch of alerts.
pub fn publish_body(
    alerts: &[Alert],
    extra: &BTreeMap<String, String>,
    ordering_key: Option<&Template>,
) -> Value {
    let messages: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let mut attrs = serde_json::Map::new();
            for (k, v) in extra {
                attrs.insert(k.clone(), v.clone().into());
            }
            attrs.insert("uuid".into(), a.uuid.to_string().into());
            attrs.insert("rule".into(), a.rule.clone().into());
            attrs.insert("priority".into(), a.priority.as_str().into());
            attrs.insert("source".into(), a.source.clone().into());
            let mut m = json!({
                "data": STANDARD.encode(a.to_json()),
                "attributes": attrs,
            });
            if let Some(t) = ordering_key {
                m["orderingKey"] = t.render_slugged(a).into();
            }
            m
        })
        .collect();
    json!({ "messages": messages })
}
