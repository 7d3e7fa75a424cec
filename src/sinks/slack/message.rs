//! The Slack-format bodies, and where each API's limits apply.
//!
//! Slack (Block Kit, limits from Slack's block reference): the message `text` is cut at 40,000
//! characters (Slack's own cut-off), a section's text at 3,000, a section field at 2,000 with at
//! most 10 fields per section, a message at 50 blocks, a button's text at 75 and its URL at 3,000.
//! Mattermost: a post's text at 16,383 characters (its server's maximum post size). Rocket.Chat:
//! 5,000 characters (its default `Message_MaxAllowedSize`). Every cut ends with `…`; nothing is
//! dropped but field sections past the 50-block budget (the output line still names them).

use serde_json::{Map, Value, json};

use super::SlackConfig;
use crate::alert::Alert;
use crate::sinks::shape::{colour_hex, key_fields, truncate_chars};

/// Slack's cut-off of a message's `text`.
pub const TEXT_MAX: usize = 40_000;
/// A section block's text.
pub const SECTION_TEXT_MAX: usize = 3_000;
/// One field of a section block.
pub const FIELD_TEXT_MAX: usize = 2_000;
/// Fields in one section block.
pub const FIELDS_PER_SECTION: usize = 10;
/// Blocks in one message.
pub const BLOCKS_MAX: usize = 50;
/// A button's text.
pub const BUTTON_TEXT_MAX: usize = 75;
/// A button's URL.
pub const URL_MAX: usize = 3_000;
/// Mattermost's largest post, in characters.
pub const MATTERMOST_TEXT_MAX: usize = 16_383;
/// Rocket.Chat's default largest message, in characters.
pub const ROCKETCHAT_TEXT_MAX: usize = 5_000;

/// Which server reads the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Slack: Block Kit in a coloured attachment.
    Slack,
    /// Mattermost: Slack's attachment format, Markdown.
    Mattermost,
    /// Rocket.Chat: Slack's attachment format, its own poster keys.
    Rocketchat,
}

impl Flavor {
    /// The sink type's name, which prefixes its messages.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Slack => "slack",
            Flavor::Mattermost => "mattermost",
            Flavor::Rocketchat => "rocketchat",
        }
    }

    fn text_max(self) -> usize {
        match self {
            Flavor::Slack => SECTION_TEXT_MAX,
            Flavor::Mattermost => MATTERMOST_TEXT_MAX,
            Flavor::Rocketchat => ROCKETCHAT_TEXT_MAX,
        }
    }

    fn bold(self, s: &str) -> String {
        match self {
            Flavor::Mattermost => format!("**{s}**"),
            _ => format!("*{s}*"),
        }
    }
}

/// Escapes the three characters Slack's mrkdwn treats as markup (`&`, `<`, `>`).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body of one alert's message.
pub fn body(cfg: &SlackConfig, flavor: Flavor, a: &Alert) -> Value {
    let esc = |s: &str| match flavor {
        Flavor::Slack => escape(s),
        _ => s.to_string(),
    };
    let link = cfg.common.link(a);
    let headline = format!("{} · {}", flavor.bold(a.priority.as_str()), esc(&a.rule));
    let main = cfg.common.text(a, || esc(&a.output));
    let main = truncate_chars(&main, flavor.text_max()).into_owned();
    let fields = key_fields(a, &cfg.own.fields);
    let context = format!(
        "{} · {} · {} · {}",
        esc(&a.source),
        esc(&a.hostname),
        crate::alert::format_time(&a.time),
        a.uuid
    );
    let mut m = Map::new();
    m.insert(
        "text".into(),
        Value::String(truncate_chars(&headline, TEXT_MAX).into_owned()),
    );
    let attachment = match flavor {
        Flavor::Slack => slack_attachment(a, &main, &fields, &context, link.as_deref()),
        _ => legacy_attachment(flavor, a, &main, &fields, &context, link.as_deref()),
    };
    m.insert("attachments".into(), json!([attachment]));
    let own = &cfg.own;
    let poster = match flavor {
        Flavor::Rocketchat => [
            ("alias", &own.username),
            ("avatar", &own.icon_url),
            ("emoji", &own.icon_emoji),
            ("channel", &own.channel),
        ],
        _ => [
            ("username", &own.username),
            ("icon_url", &own.icon_url),
            ("icon_emoji", &own.icon_emoji),
            ("channel", &own.channel),
        ],
    };
    for (k, v) in poster {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.clone()));
        }
    }
    Value::Object(m)
}

fn slack_attachment(
    a: &Alert,
    main: &str,
    fields: &[(String, String)],
    context: &str,
    link: Option<&str>,
) -> Value {
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": main},
    })];
    let reserved = 1 + 1 + usize::from(link.is_some());
    let room = BLOCKS_MAX - reserved;
    for chunk in fields.chunks(FIELDS_PER_SECTION).take(room) {
        let items: Vec<Value> = chunk
            .iter()
            .map(|(k, v)| {
                let name = format!("*{}*\n", escape(k));
                let left = FIELD_TEXT_MAX.saturating_sub(name.chars().count());
                let text = format!("{name}{}", truncate_chars(&escape(v), left));
                json!({"type": "mrkdwn", "text": text})
            })
            .collect();
        blocks.push(json!({"type": "section", "fields": items}));
    }
    let mut ctx = vec![json!({"type": "mrkdwn", "text": truncate_chars(context, FIELD_TEXT_MAX)})];
    if !a.tags.is_empty() {
        let tags = format!("tags: {}", escape(&a.tags.join(", ")));
        ctx.push(json!({"type": "mrkdwn", "text": truncate_chars(&tags, FIELD_TEXT_MAX)}));
    }
    blocks.push(json!({"type": "context", "elements": ctx}));
    if let Some(url) = link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": truncate_chars("Open in kaudit", BUTTON_TEXT_MAX)},
                "url": truncate_chars(url, URL_MAX),
            }],
        }));
    }
    json!({"color": colour_hex(a.priority), "blocks": blocks})
}

fn legacy_attachment(
    flavor: Flavor,
    a: &Alert,
    main: &str,
    fields: &[(String, String)],
    context: &str,
    link: Option<&str>,
) -> Value {
    let max = flavor.text_max();
    let items: Vec<Value> = fields
        .iter()
        .map(
            |(k, v)| json!({"title": k, "value": truncate_chars(v, FIELD_TEXT_MAX), "short": true}),
        )
        .collect();
    let mut att = json!({
        "fallback": truncate_chars(&format!("{}: {}", a.priority, a.rule), max),
        "color": colour_hex(a.priority),
        "title": truncate_chars(&a.rule, max),
        "text": main,
        "fields": items,
        "footer": truncate_chars(&format!("kaudit · {context}"), max),
        "ts": a.time.timestamp(),
    });
    if let Some(url) = link {
        att["title_link"] = Value::String(url.to_string());
    }
    att
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Priority;

    fn cfg(extra: Value) -> SlackConfig {
        let mut v = json!({"webhook_url": "https://hooks.example/x"});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn slack_blocks_respect_the_limits() {
        let mut a = crate::sinks::test_alert::test_alert("h");
        a.priority = Priority::Critical;
        a.output = format!("<script> & {}", "x".repeat(5000));
        for i in 0..600 {
            a.output_fields
                .insert(format!("f{i}"), Value::String("v".repeat(3000)));
        }
        let c = cfg(json!({"console_url": "https://k.example", "username": "kaudit"}));
        let b = body(&c, Flavor::Slack, &a);
        assert_eq!(b["text"], "*Critical* · Test rule");
        assert_eq!(b["username"], "kaudit");
        let att = &b["attachments"][0];
        assert_eq!(att["color"], "#e53935");
        let blocks = att["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), BLOCKS_MAX);
        let main = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(main.starts_with("&lt;script&gt; &amp; "), "{main}");
        assert_eq!(main.chars().count(), SECTION_TEXT_MAX);
        for b in &blocks[1..47] {
            let f = b["fields"].as_array().unwrap();
            assert_eq!(f.len(), FIELDS_PER_SECTION);
            for x in f {
                assert!(x["text"].as_str().unwrap().chars().count() <= FIELD_TEXT_MAX);
            }
        }
        let button = &blocks[49]["elements"][0];
        assert_eq!(
            button["url"],
            format!("https://k.example/ui/alerts/{}", a.uuid)
        );
    }

    #[test]
    fn legacy_flavors_and_templates() {
        let a = crate::sinks::test_alert::test_alert("h");
        let c = cfg(
            json!({"template": "{{ rule }} by {{ output_fields['ka.user.name'] }}", "icon_url": "https://i.example/x.png", "fields": ["ka.user.name", "ka.verb"]}),
        );
        let m = body(&c, Flavor::Mattermost, &a);
        assert_eq!(m["text"], "**Debug** · Test rule");
        assert_eq!(m["icon_url"], "https://i.example/x.png");
        let att = &m["attachments"][0];
        assert_eq!(att["text"], "Test rule by kaudit-test");
        assert_eq!(att["fields"].as_array().unwrap().len(), 2);
        assert_eq!(att["fields"][0]["title"], "ka.user.name");
        assert!(att.get("title_link").is_none());
        let r = body(&c, Flavor::Rocketchat, &a);
        assert_eq!(r["avatar"], "https://i.example/x.png");
        assert!(r.get("icon_url").is_none());
    }
}
