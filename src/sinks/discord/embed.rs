//! The Discord message: one embed, cut at Discord's documented limits.

use serde_json::{Value, json};

use super::DiscordConfig;
use crate::alert::{Alert, format_time};
use crate::sinks::shape::{colour, key_fields, truncate_chars};

/// An embed's title.
pub const TITLE_MAX: usize = 256;
/// An embed's description.
pub const DESCRIPTION_MAX: usize = 4_096;
/// Fields of one embed.
pub const FIELDS_MAX: usize = 25;
/// A field's name.
pub const FIELD_NAME_MAX: usize = 256;
/// A field's value.
pub const FIELD_VALUE_MAX: usize = 1_024;
/// A footer's text.
pub const FOOTER_MAX: usize = 2_048;
/// All the text of a message's embeds together (titles, descriptions, field names and values,
/// footers).
pub const EMBED_TOTAL_MAX: usize = 6_000;
/// Embeds in one message: alerts per batch.
pub const EMBEDS_MAX: usize = 10;

/// The message of a batch (at most [`EMBEDS_MAX`] alerts), one embed each, sharing the
/// [`EMBED_TOTAL_MAX`] characters equally.
pub fn message(cfg: &DiscordConfig, alerts: &[Alert]) -> Value {
    let n = alerts.len().clamp(1, EMBEDS_MAX);
    let embeds: Vec<Value> = alerts
        .iter()
        .take(EMBEDS_MAX)
        .map(|a| embed(cfg, a, EMBED_TOTAL_MAX / n))
        .collect();
    let mut m = json!({"embeds": embeds, "allowed_mentions": {"parse": []}});
    if let Some(u) = &cfg.own.username {
        m["username"] = Value::String(truncate_chars(u, 80).into_owned());
    }
    if let Some(u) = &cfg.own.avatar_url {
        m["avatar_url"] = Value::String(u.clone());
    }
    m
}

/// The embed of one alert, its text within `budget` characters (at least 600: ten embeds share
/// 6,000). Texts are cut shorter and shorter until they fit; if the key fields still do not,
/// the last ones give way to a field saying how many more there are.
fn embed(cfg: &DiscordConfig, a: &Alert, budget: usize) -> Value {
    let main = cfg.common.text(a, || a.output.clone());
    let fields = key_fields(a, &cfg.own.fields);
    let footer = format!(
        "{} · {} · {}",
        a.source,
        a.hostname,
        if a.tags.is_empty() {
            a.uuid.to_string()
        } else {
            format!("{} · tags: {}", a.uuid, a.tags.join(", "))
        }
    );
    // More fields than an embed takes: the last one says how many more.
    let mut keep = if fields.len() > FIELDS_MAX {
        FIELDS_MAX - 1
    } else {
        fields.len()
    };
    let more = |keep: usize| {
        (keep < fields.len()).then(|| {
            (
                "…".to_string(),
                format!("{} more fields", fields.len() - keep),
            )
        })
    };
    let chars = |items: &[(String, String)]| {
        items
            .iter()
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum::<usize>()
    };
    let mut shift = 0;
    let (title, description, mut items, footer) = loop {
        let div = |n: usize| (n >> shift).max(16);
        let title = truncate_chars(&format!("{}: {}", a.priority, a.rule), TITLE_MAX).into_owned();
        let description = truncate_chars(&main, div(DESCRIPTION_MAX)).into_owned();
        let items: Vec<(String, String)> = fields[..keep]
            .iter()
            .map(|(k, v)| {
                (
                    truncate_chars(k, div(FIELD_NAME_MAX)).into_owned(),
                    truncate_chars(v, div(FIELD_VALUE_MAX)).into_owned(),
                )
            })
            .collect();
        let foot = truncate_chars(&footer, FOOTER_MAX.min(div(FOOTER_MAX).max(120))).into_owned();
        let total = [&title, &description, &foot]
            .iter()
            .map(|s| s.chars().count())
            .sum::<usize>()
            + chars(&items)
            + more(keep).map_or(0, |m| chars(&[m]));
        if total <= budget || shift >= 8 {
            break (title, description, items, foot);
        }
        shift += 1;
    };
    // At the shortest cut, fields give way from the end until the embed fits its share (the
    // title, 256, the description, 16, and the footer, 120, leave room below 600).
    let fixed = [&title, &description, &footer]
        .iter()
        .map(|s| s.chars().count())
        .sum::<usize>();
    while keep > 0 && fixed + chars(&items[..keep]) + more(keep).map_or(0, |m| chars(&[m])) > budget
    {
        keep -= 1;
    }
    items.truncate(keep);
    items.extend(more(keep));
    let mut embed = json!({
        "title": title,
        "description": description,
        "color": colour(a.priority),
        "timestamp": format_time(&a.time),
        "fields": items
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v, "inline": v.chars().count() <= 40}))
            .collect::<Vec<_>>(),
        "footer": {"text": footer},
    });
    if let Some(link) = cfg.common.link(a) {
        embed["url"] = Value::String(link);
    }
    embed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embed_within_limits() {
        let cfg: DiscordConfig = serde_json::from_value(json!({
            "webhook_url": "https://discord.example/api/webhooks/1/t",
            "console_url": "https://k.example",
        }))
        .unwrap();
        let mut a = crate::sinks::test_alert::test_alert("h");
        a.output = "o".repeat(9000);
        for i in 0..40 {
            a.output_fields
                .insert(format!("f{i}"), Value::String("v".repeat(2000)));
        }
        let m = message(&cfg, std::slice::from_ref(&a));
        let e = &m["embeds"][0];
        let fields = e["fields"].as_array().unwrap();
        assert_eq!(fields.len(), FIELDS_MAX);
        assert_eq!(fields[24]["value"], "23 more fields");
        let count = |v: &Value| v.as_str().unwrap().chars().count();
        let total = count(&e["title"])
            + count(&e["description"])
            + count(&e["footer"]["text"])
            + fields
                .iter()
                .map(|f| count(&f["name"]) + count(&f["value"]))
                .sum::<usize>();
        assert!(total <= EMBED_TOTAL_MAX, "{total}");
        assert_eq!(e["color"], 0x90a4ae);
        assert_eq!(m["allowed_mentions"]["parse"], json!([]));
        assert!(e["url"].as_str().unwrap().ends_with(&a.uuid.to_string()));
        // A batch shares the message's budget.
        let batch = vec![a.clone(); 12];
        let m = message(&cfg, &batch);
        let embeds = m["embeds"].as_array().unwrap();
        assert_eq!(embeds.len(), EMBEDS_MAX);
        let total = total_chars(embeds);
        assert!(total <= EMBED_TOTAL_MAX, "{total}");
        // The worst case: a long rule name and many long-named fields, ten to a message.
        a.rule = "r".repeat(300);
        a.output_fields.clear();
        for i in 0..30 {
            a.output_fields.insert(
                format!("{i:02}{}", "n".repeat(300)),
                Value::String("v".repeat(2000)),
            );
        }
        let m = message(&cfg, &vec![a.clone(); EMBEDS_MAX]);
        let embeds = m["embeds"].as_array().unwrap();
        let total = total_chars(embeds);
        assert!(total <= EMBED_TOTAL_MAX, "{total}");
        let fields = embeds[9]["fields"].as_array().unwrap();
        let shown = fields.len() - 1;
        assert!(shown < FIELDS_MAX - 1, "fields gave way: {shown}");
        assert_eq!(
            fields[shown]["value"],
            format!("{} more fields", 30 - shown)
        );
    }

    fn total_chars(embeds: &[Value]) -> usize {
        let count = |v: &Value| v.as_str().unwrap().chars().count();
        embeds
            .iter()
            .map(|e| {
                count(&e["title"])
                    + count(&e["description"])
                    + count(&e["footer"]["text"])
                    + e["fields"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| count(&f["name"]) + count(&f["value"]))
                        .sum::<usize>()
            })
            .sum()
    }
}
