//! The SNS `Publish` message of an alert (falcosidekick's convention): the alert's `output` as
//! the message, with String message attributes `priority`, `rule`, `source`, `tags`
//! (comma-joined, when any), `hostname` (when set), `uuid`, then one per output field (name =
//! field name, characters SNS does not allow replaced by `_`; null and empty values skipped).
//! SNS takes at most 10 attributes: the core ones come first, then output fields in the rule's
//! order until 10; the rest are left out (the full alert is in the message with
//! `raw_json: true`). With `raw_json: true` the message is the alert's Falco JSON and carries no
//! attributes.

use crate::alert::Alert;

/// SNS's limit of message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

/// An SNS-valid attribute name: `[A-Za-z0-9_.-]`, no leading/trailing or doubled `.`, not
/// starting with `AWS.`/`Amazon.`, at most 256 characters.
pub fn attribute_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
            c
        } else {
            '_'
        };
        if c == '.' && (out.is_empty() || out.ends_with('.')) {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    if out.ends_with('.') {
        out.pop();
        out.push('_');
    }
    let lower = out.to_ascii_lowercase();
    if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        out.insert(0, '_');
    }
    out.chars().take(256).collect()
}

/// The message attributes of an alert, in order, at most [`MAX_ATTRIBUTES`].
pub fn attributes(a: &Alert) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![
        ("priority".into(), a.priority.as_str().into()),
        ("rule".into(), a.rule.clone()),
        ("source".into(), a.source.clone()),
    ];
    if !a.tags.is_empty() {
        out.push(("tags".into(), a.tags.join(",")));
    }
    if !a.hostname.is_empty() {
        out.push(("hostname".into(), a.hostname.clone()));
    }
    out.push(("uuid".into(), a.uuid.to_string()));
    out.retain(|(_, v)| !v.is_empty());
    for name in a.output_fields.keys() {
        if out.len() >= MAX_ATTRIBUTES {
            break;
        }
        let Some(v) = a.field_text(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        let n = attribute_name(name);
        if n.is_empty() || out.iter().any(|(k, _)| *k == n) {
            continue;
        }
        out.push((n, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_are_sns_safe() {
        assert_eq!(attribute_name("ka.target.name"), "ka.target.name");
        assert_eq!(attribute_name("jevt.value[/x]"), "jevt.value__x_");
        assert_eq!(attribute_name(".a..b."), "_a._b_");
        assert_eq!(attribute_name("AWS.x"), "_AWS.x");
    }

    #[test]
    fn at_most_ten_attributes_core_first() {
        let mut a: Alert = serde_json::from_str(
            r#"{"time":"2026-01-01T00:00:00Z","rule":"R","priority":"Notice","output":"o","source":"k8s_audit","hostname":"h","tags":["a","b"]}"#,
        )
        .unwrap();
        for i in 0..12 {
            a.output_fields.insert(
                format!("f{i:02}"),
                serde_json::Value::String(format!("v{i}")),
            );
        }
        a.output_fields
            .insert("f00".into(), serde_json::Value::Null);
        let attrs = attributes(&a);
        assert_eq!(attrs.len(), MAX_ATTRIBUTES);
        let names: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "priority", "rule", "source", "tags", "hostname", "uuid", "f01", "f02", "f03",
                "f04"
            ]
        );
        assert_eq!(attrs[3].1, "a,b");
    }
}
