//! The Google Chat message: `text` plus one card (cardsV2). Card text takes Chat's small HTML
//! subset, so alert values are escaped; the priority is coloured with `<font color>`.

use serde_json::{Value, json};

use super::GoogleChatConfig;
use crate::alert::{Alert, format_time};
use crate::sinks::shape::{colour_hex, fit_json, key_fields, truncate_chars};

/// The largest message Google Chat takes (text and cards), in bytes.
pub const MAX_BYTES: usize = 32_000;
/// Longest text of a widget before the message is fitted to [`MAX_BYTES`].
const TEXT_START: usize = 16_000;
/// Longest field value before fitting.
const VALUE_START: usize = 2_000;
/// Field widgets shown before "show more" in the card.
const SHOWN_FIELDS: usize = 6;

/// Escapes `&`, `<` and `>` for card text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message of one alert, fitted to [`MAX_BYTES`].
pub fn message(cfg: &GoogleChatConfig, a: &Alert) -> Value {
    let templated = cfg
        .common
        .template
        .as_ref()
        .map(|_| cfg.common.text(a, || a.output.clone()));
    let fields = key_fields(a, &cfg.own.fields);
    let link = cfg.common.link(a);
    fit_json(MAX_BYTES, |shift| {
        let text_max = TEXT_START >> shift;
        let value_max = (VALUE_START >> shift).max(16);
        let headline = format!("*{}* · {}", a.priority, a.rule);
        let text = templated.clone().unwrap_or(headline);
        let mut sections = vec![json!({"widgets": [{"textParagraph": {"text": format!(
            "<b><font color=\"{}\">{}</font></b><br>{}",
            colour_hex(a.priority),
            a.priority,
            escape(&truncate_chars(&a.output, text_max)),
        )}}]})];
        if !fields.is_empty() {
            let widgets: Vec<Value> = fields
                .iter()
                .map(|(k, v)| {
                    json!({"decoratedText": {
                        "topLabel": escape(&truncate_chars(k, value_max)),
                        "text": escape(&truncate_chars(v, value_max)),
                        "wrapText": true,
                    }})
                })
                .collect();
            let mut s = json!({"header": "Fields", "widgets": widgets});
            if fields.len() > SHOWN_FIELDS {
                s["collapsible"] = json!(true);
                s["uncollapsibleWidgetsCount"] = json!(SHOWN_FIELDS);
            }
            sections.push(s);
        }
        let mut context = format!(
            "{} · {} · {}",
            escape(&a.hostname),
            format_time(&a.time),
            a.uuid
        );
        if !a.tags.is_empty() {
            context.push_str(&format!("<br>tags: {}", escape(&a.tags.join(", "))));
        }
        let mut last = vec![
            json!({"textParagraph": {"text": format!("<font color=\"#757575\">{context}</font>")}}),
        ];
        if let Some(url) = &link {
            last.push(json!({"buttonList": {"buttons": [{
                "text": "Open in kaudit",
                "onClick": {"openLink": {"url": url}},
            }]}}));
        }
        sections.push(json!({"widgets": last}));
        json!({
            "text": truncate_chars(&text, text_max),
            "cardsV2": [{
                "cardId": a.uuid.to_string(),
                "card": {
                    "header": {
                        "title": truncate_chars(&a.rule, value_max.max(200)),
                        "subtitle": format!("{} · {}", a.priority, a.source),
                    },
                    "sections": sections,
                },
            }],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_fits_and_escapes() {
        let cfg: GoogleChatConfig = serde_json::from_value(json!({
            "webhook_url": "https://chat.example/v1/spaces/X/messages?key=k&token=t",
        }))
        .unwrap();
        let mut a = crate::sinks::test_alert::test_alert("h");
        a.output = format!("<b>{}", "o".repeat(50_000));
        let m = message(&cfg, &a);
        assert!(serde_json::to_vec(&m).unwrap().len() <= MAX_BYTES);
        assert_eq!(m["text"], "*Debug* · Test rule");
        let p = m["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"]
            .as_str()
            .unwrap();
        assert!(p.contains("&lt;b&gt;ooo"), "{p}");
        assert_eq!(m["cardsV2"][0]["card"]["sections"][1]["collapsible"], true);
    }
}
