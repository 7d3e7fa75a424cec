//! The Workflows message: `{"type": "message", "attachments": [<Adaptive Card 1.4>]}`.

use serde_json::{Value, json};

use super::TeamsConfig;
use crate::alert::{Alert, Priority, format_time};
use crate::sinks::shape::{fit_json, key_fields, truncate_chars};

/// The largest message Teams takes, in bytes.
pub const MAX_BYTES: usize = 28 * 1024;
/// The Adaptive Card schema version sent (the highest Workflows renders everywhere).
pub const VERSION: &str = "1.4";
/// Longest main text before the whole card is fitted to [`MAX_BYTES`].
const TEXT_START: usize = 20_000;
/// Longest fact value before fitting.
const VALUE_START: usize = 2_000;

/// The container style (a coloured band) and text colour of a priority.
pub fn style(p: Priority) -> (&'static str, &'static str) {
    match p {
        Priority::Emergency | Priority::Alert | Priority::Critical | Priority::Error => {
            ("attention", "Attention")
        }
        Priority::Warning => ("warning", "Warning"),
        Priority::Notice => ("good", "Good"),
        Priority::Informational | Priority::Debug => ("accent", "Accent"),
    }
}

/// The message carrying one alert's card, fitted to [`MAX_BYTES`].
pub fn message(cfg: &TeamsConfig, a: &Alert) -> Value {
    let main = cfg.common.text(a, || a.output.clone());
    let facts = key_fields(a, &cfg.own.fields);
    let link = cfg.common.link(a);
    fit_json(MAX_BYTES, |shift| {
        let text_max = TEXT_START >> shift;
        let value_max = (VALUE_START >> shift).max(16);
        let facts: Vec<Value> = facts
            .iter()
            .map(|(k, v)| json!({"title": truncate_chars(k, value_max), "value": truncate_chars(v, value_max)}))
            .collect();
        let (band, colour) = style(a.priority);
        let mut body = vec![
            json!({
                "type": "Container",
                "style": band,
                "bleed": true,
                "items": [{
                    "type": "TextBlock",
                    "text": truncate_chars(&format!("{}: {}", a.priority, a.rule), text_max),
                    "weight": "Bolder",
                    "size": "Medium",
                    "color": colour,
                    "wrap": true,
                }],
            }),
            json!({"type": "TextBlock", "text": truncate_chars(&main, text_max), "wrap": true}),
        ];
        if !facts.is_empty() {
            body.push(json!({"type": "FactSet", "facts": facts}));
        }
        let mut context = format!(
            "{} · {} · {} · {}",
            a.source,
            a.hostname,
            format_time(&a.time),
            a.uuid
        );
        if !a.tags.is_empty() {
            context.push_str(&format!(" · tags: {}", a.tags.join(", ")));
        }
        body.push(json!({
            "type": "TextBlock",
            "text": truncate_chars(&context, value_max.max(200)),
            "isSubtle": true,
            "size": "Small",
            "wrap": true,
        }));
        let mut card = json!({
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": VERSION,
            "msteams": {"width": "Full"},
            "body": body,
        });
        if let Some(url) = &link {
            card["actions"] =
                json!([{"type": "Action.OpenUrl", "title": "Open in kaudit", "url": url}]);
        }
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": card,
            }],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_fits_and_carries_the_alert() {
        let cfg: TeamsConfig = serde_json::from_value(json!({
            "webhook_url": "https://x.example/workflows/1",
            "console_url": "https://k.example",
        }))
        .unwrap();
        let mut a = crate::sinks::test_alert::test_alert("h");
        a.priority = Priority::Critical;
        a.output = "o".repeat(40_000);
        for i in 0..100 {
            a.output_fields
                .insert(format!("f{i}"), Value::String("v".repeat(1500)));
        }
        let m = message(&cfg, &a);
        assert!(serde_json::to_vec(&m).unwrap().len() <= MAX_BYTES);
        let card = &m["attachments"][0]["content"];
        assert_eq!(card["version"], VERSION);
        assert_eq!(card["body"][0]["style"], "attention");
        assert_eq!(card["body"][2]["facts"].as_array().unwrap().len(), 107);
        assert!(
            card["actions"][0]["url"]
                .as_str()
                .unwrap()
                .ends_with(&a.uuid.to_string())
        );
    }
}
