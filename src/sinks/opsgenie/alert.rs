//! The create-alert request of an alert, within Opsgenie's documented limits: message 130
//! characters, alias 512, description 15,000, at most 20 tags of 50, details 8,000 characters in
//! all (keys and values), entity 512, source 100, user 100. The description holds the whole
//! output line, so fields that do not fit in `details` are still in the alert.

use serde_json::{Map, Value, json};

use super::OpsgenieConfig;
use crate::alert::{Alert, Priority};
use crate::sinks::shape::{mapped, truncate_chars};

/// `message`.
pub const MESSAGE_MAX: usize = 130;
/// `alias`.
pub const ALIAS_MAX: usize = 512;
/// `description`.
pub const DESCRIPTION_MAX: usize = 15_000;
/// Number of tags.
pub const TAGS_MAX: usize = 20;
/// One tag.
pub const TAG_MAX: usize = 50;
/// All `details` keys and values together.
pub const DETAILS_MAX: usize = 8_000;
/// `entity`.
pub const ENTITY_MAX: usize = 512;
/// `source` and `user`.
pub const SOURCE_MAX: usize = 100;
/// Opsgenie's priorities.
pub const PRIORITIES: [&str; 5] = ["P1", "P2", "P3", "P4", "P5"];
/// One detail value, before the `details` budget applies.
const DETAIL_VALUE_MAX: usize = 1_000;

/// The default Opsgenie priority of a Falco priority.
pub fn priority(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert => "P1",
        Priority::Critical => "P2",
        Priority::Error => "P3",
        Priority::Warning => "P4",
        Priority::Notice | Priority::Informational | Priority::Debug => "P5",
    }
}

/// The create-alert request body of `a`.
pub fn create(cfg: &OpsgenieConfig, a: &Alert) -> Value {
    let link = cfg.common.link(a);
    let message = cfg.common.text(a, || format!("{}: {}", a.priority, a.rule));
    let alias = match &cfg.own.alias {
        Some(t) => t.render_or(a, link.as_deref(), || a.uuid.to_string()),
        None => a.uuid.to_string(),
    };
    let alias = if alias.trim().is_empty() {
        a.uuid.to_string()
    } else {
        alias
    };
    let mut description = a.output.clone();
    if let Some(l) = &link {
        description = format!("{description}\n\n{l}");
    }
    let mut tags: Vec<String> = Vec::new();
    for t in a.tags.iter().chain(&cfg.own.tags) {
        let t = truncate_chars(t, TAG_MAX).into_owned();
        if !t.is_empty() && !tags.contains(&t) && tags.len() < TAGS_MAX {
            tags.push(t);
        }
    }
    let mut body = json!({
        "message": truncate_chars(message.trim(), MESSAGE_MAX),
        "alias": truncate_chars(&alias, ALIAS_MAX),
        "description": truncate_chars(&description, DESCRIPTION_MAX),
        "tags": tags,
        "details": details(a, link.as_deref()),
        "source": truncate_chars(if a.hostname.is_empty() { "kaudit" } else { &a.hostname }, SOURCE_MAX),
        "user": "kaudit",
        "priority": mapped(&cfg.own.priority_map, a.priority, priority),
    });
    if let Some(ns) = a
        .field_text("ka.target.namespace")
        .filter(|v| !v.is_empty())
    {
        body["entity"] = Value::String(truncate_chars(&ns, ENTITY_MAX).into_owned());
    }
    if !cfg.own.responders.is_empty() {
        body["responders"] = serde_json::to_value(&cfg.own.responders).unwrap_or(Value::Null);
    }
    body
}

/// `details`: rule, priority, uuid, link, then output fields in order, while the budget lasts.
fn details(a: &Alert, link: Option<&str>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut left = DETAILS_MAX;
    let mut add = |k: &str, v: &str| {
        let k = truncate_chars(k, DETAIL_VALUE_MAX);
        let room = left.saturating_sub(k.chars().count());
        if room == 0 || v.is_empty() {
            return;
        }
        let v = truncate_chars(v, room.min(DETAIL_VALUE_MAX));
        left = room - v.chars().count();
        out.insert(k.into_owned(), Value::String(v.into_owned()));
    };
    add("rule", &a.rule);
    add("priority", a.priority.as_str());
    add("uuid", &a.uuid.to_string());
    add("source", &a.source);
    if let Some(l) = link {
        add("link", l);
    }
    for k in a.output_fields.keys() {
        if let Some(v) = a.field_text(k) {
            add(k, &v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_within_limits() {
        let cfg: OpsgenieConfig = serde_json::from_value(json!({
            "api_key": "k",
            "tags": ["kaudit"],
            "responders": [{"type": "team", "name": "sec"}],
        }))
        .unwrap();
        let mut a = crate::sinks::test_alert::test_alert("h");
        a.rule = "r".repeat(200);
        a.tags = (0..30).map(|i| format!("tag{i}")).collect();
        for i in 0..50 {
            a.output_fields
                .insert(format!("f{i}"), Value::String("v".repeat(900)));
        }
        let b = create(&cfg, &a);
        assert_eq!(b["message"].as_str().unwrap().chars().count(), MESSAGE_MAX);
        assert_eq!(b["alias"], a.uuid.to_string());
        assert_eq!(b["tags"].as_array().unwrap().len(), TAGS_MAX);
        let total: usize = b["details"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| k.chars().count() + v.as_str().unwrap().chars().count())
            .sum();
        assert!(total <= DETAILS_MAX, "{total}");
        assert_eq!(b["priority"], "P5");
        assert_eq!(b["entity"], "default");
        assert_eq!(b["responders"][0]["type"], "team");
    }
}
