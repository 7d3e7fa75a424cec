//! Slack's incoming webhooks (Block Kit in an attachment), and Mattermost's and Rocket.Chat's
//! Slack-compatible ones (attachments), each checked against its documented payload.

use std::path::Path;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::api::{Api, arr, delivers, json_answer, json_post, keys, obj, secret_file, text};
use crate::support::Req;

const WEBHOOK_PATH: &str = "/services/T0001/B0001/s3cretT0ken";

fn check_text_object(v: &Value, at: &str, max: usize) -> Result<(), String> {
    let o = obj(v, at)?;
    keys(o, at, &["type", "text", "emoji", "verbatim"])?;
    match o.get("type").and_then(Value::as_str) {
        Some("mrkdwn" | "plain_text") => {}
        t => return Err(format!("{at}.type: {t:?}")),
    }
    text(&o["text"], &format!("{at}.text"), 1, max).map(|_| ())
}

fn check_block(b: &Value, at: &str) -> Result<(), String> {
    let o = obj(b, at)?;
    match o.get("type").and_then(Value::as_str) {
        Some("section") => {
            keys(o, at, &["type", "text", "fields", "block_id", "accessory"])?;
            if o.get("text").is_none() && o.get("fields").is_none() {
                return Err(format!("{at}: a section needs text or fields"));
            }
            if let Some(t) = o.get("text") {
                check_text_object(t, &format!("{at}.text"), 3000)?;
            }
            if let Some(f) = o.get("fields") {
                let f = arr(f, &format!("{at}.fields"), 10)?;
                for (i, x) in f.iter().enumerate() {
                    check_text_object(x, &format!("{at}.fields[{i}]"), 2000)?;
                }
            }
        }
        Some("context") => {
            keys(o, at, &["type", "elements", "block_id"])?;
            let e = arr(&o["elements"], &format!("{at}.elements"), 10)?;
            for (i, x) in e.iter().enumerate() {
                check_text_object(x, &format!("{at}.elements[{i}]"), 3000)?;
            }
        }
        Some("actions") => {
            keys(o, at, &["type", "elements", "block_id"])?;
            let e = arr(&o["elements"], &format!("{at}.elements"), 25)?;
            for (i, x) in e.iter().enumerate() {
                let at = format!("{at}.elements[{i}]");
                let b = obj(x, &at)?;
                keys(
                    b,
                    &at,
                    &["type", "text", "url", "action_id", "value", "style"],
                )?;
                if b.get("type").and_then(Value::as_str) != Some("button") {
                    return Err(format!("{at}: not a button"));
                }
                check_text_object(&b["text"], &format!("{at}.text"), 75)?;
                text(&b["url"], &format!("{at}.url"), 1, 3000)?;
            }
        }
        t => return Err(format!("{at}.type: {t:?}")),
    }
    Ok(())
}

fn check_colour(v: &Value, at: &str) -> Result<(), String> {
    let c = text(v, at, 4, 7)?;
    let hex = c.strip_prefix('#').unwrap_or("");
    if hex.len() == 6 && hex.chars().all(|x| x.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("{at}: {c:?} is not #rrggbb"))
    }
}

fn check_slack(r: &Req) -> Result<(), String> {
    if r.uri.path() != WEBHOOK_PATH {
        return Err(format!("path {}", r.uri.path()));
    }
    let v = json_post(r, "application/json")?;
    let m = obj(&v, "body")?;
    keys(
        m,
        "body",
        &[
            "text",
            "attachments",
            "blocks",
            "username",
            "icon_emoji",
            "icon_url",
            "channel",
            "thread_ts",
            "mrkdwn",
            "unfurl_links",
            "unfurl_media",
        ],
    )?;
    text(&m["text"], "text", 1, 40_000)?;
    let atts = arr(&m["attachments"], "attachments", 100)?;
    for (i, a) in atts.iter().enumerate() {
        let at = format!("attachments[{i}]");
        let o = obj(a, &at)?;
        keys(o, &at, &["color", "blocks", "fallback", "text"])?;
        check_colour(&o["color"], &format!("{at}.color"))?;
        let blocks = arr(&o["blocks"], &format!("{at}.blocks"), 50)?;
        for (j, b) in blocks.iter().enumerate() {
            check_block(b, &format!("{at}.blocks[{j}]"))?;
        }
    }
    Ok(())
}

fn slack_sink(name: &str, base: &str, dir: &Path) -> String {
    let url = secret_file(
        dir,
        &format!("{name}-url"),
        &format!("{base}{WEBHOOK_PATH}"),
    );
    format!(
        "  - name: {name}\n    type: slack\n    webhook_url_file: {url}\n    username: kaudit\n    console_url: https://kaudit.example.com\n"
    )
}

/// Slack's answers: `ok`; 400 `invalid_blocks`; 403 `invalid_token`; 429 with `Retry-After`.
pub static SLACK: Api = Api {
    sink_type: "slack",
    check: check_slack,
    ok: |_| (StatusCode::OK, "ok").into_response(),
    bad: |_| (StatusCode::BAD_REQUEST, "invalid_blocks").into_response(),
    rate_limited: || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "rate_limited",
        )
            .into_response()
    },
    retry_after: Some(1),
    unauthorized: || (StatusCode::FORBIDDEN, "invalid_token").into_response(),
    sink: slack_sink,
};

fn check_attachments(m: &serde_json::Map<String, Value>, text_max: usize) -> Result<(), String> {
    let atts = arr(&m["attachments"], "attachments", 100)?;
    for (i, a) in atts.iter().enumerate() {
        let at = format!("attachments[{i}]");
        let o = obj(a, &at)?;
        keys(
            o,
            &at,
            &[
                "fallback",
                "color",
                "pretext",
                "text",
                "author_name",
                "author_link",
                "author_icon",
                "title",
                "title_link",
                "fields",
                "image_url",
                "thumb_url",
                "footer",
                "footer_icon",
                "ts",
            ],
        )?;
        check_colour(&o["color"], &format!("{at}.color"))?;
        text(&o["text"], &format!("{at}.text"), 1, text_max)?;
        if !o["ts"].is_i64() {
            return Err(format!("{at}.ts: not an integer"));
        }
        for (j, f) in arr(&o["fields"], &format!("{at}.fields"), usize::MAX)?
            .iter()
            .enumerate()
        {
            let at = format!("{at}.fields[{j}]");
            let fo = obj(f, &at)?;
            keys(fo, &at, &["title", "value", "short"])?;
            text(&fo["title"], &format!("{at}.title"), 1, text_max)?;
            text(&fo["value"], &format!("{at}.value"), 1, text_max)?;
            if !fo["short"].is_boolean() {
                return Err(format!("{at}.short: not a boolean"));
            }
        }
    }
    Ok(())
}

fn check_mattermost(r: &Req) -> Result<(), String> {
    if r.uri.path() != "/hooks/xn7kqbm3p9" {
        return Err(format!("path {}", r.uri.path()));
    }
    let v = json_post(r, "application/json")?;
    let m = obj(&v, "body")?;
    keys(
        m,
        "body",
        &[
            "text",
            "channel",
            "username",
            "icon_url",
            "icon_emoji",
            "attachments",
            "props",
            "type",
            "priority",
        ],
    )?;
    text(&m["text"], "text", 1, 16_383)?;
    check_attachments(m, 16_383)
}

fn mattermost_error(status: StatusCode, id: &str, message: &str) -> Response {
    json_answer(
        status,
        serde_json::json!({"id": id, "message": message, "detailed_error": "", "request_id": "r1", "status_code": status.as_u16()}),
    )
}

/// Mattermost's answers: `ok`; 400 with its error JSON for a bad payload or an unknown hook.
pub static MATTERMOST: Api = Api {
    sink_type: "mattermost",
    check: check_mattermost,
    ok: |_| (StatusCode::OK, "ok").into_response(),
    bad: |why| {
        mattermost_error(
            StatusCode::BAD_REQUEST,
            "web.incoming_webhook.parse.app_error",
            why,
        )
    },
    rate_limited: || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1"), ("x-ratelimit-remaining", "0")],
            "limit exceeded",
        )
            .into_response()
    },
    retry_after: Some(1),
    unauthorized: || {
        mattermost_error(
            StatusCode::UNAUTHORIZED,
            "web.incoming_webhook.invalid.app_error",
            "Invalid webhook.",
        )
    },
    sink: |name, base, dir| {
        let url = secret_file(
            dir,
            &format!("{name}-url"),
            &format!("{base}/hooks/xn7kqbm3p9"),
        );
        format!(
            "  - name: {name}\n    type: mattermost\n    webhook_url_file: {url}\n    username: kaudit\n    icon_url: https://kaudit.example.com/i.png\n"
        )
    },
};

fn check_rocketchat(r: &Req) -> Result<(), String> {
    if r.uri.path() != "/hooks/ID1/T0KEN" {
        return Err(format!("path {}", r.uri.path()));
    }
    let v = json_post(r, "application/json")?;
    let m = obj(&v, "body")?;
    keys(
        m,
        "body",
        &[
            "text",
            "alias",
            "avatar",
            "emoji",
            "channel",
            "roomId",
            "attachments",
        ],
    )?;
    text(&m["text"], "text", 1, 5_000)?;
    check_attachments(m, 5_000)
}

/// Rocket.Chat's answers: `{"success": true}`; 400 `{"success": false, "error": ...}`.
pub static ROCKETCHAT: Api = Api {
    sink_type: "rocketchat",
    check: check_rocketchat,
    ok: |_| json_answer(StatusCode::OK, serde_json::json!({"success": true})),
    bad: |why| {
        json_answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"success": false, "error": why}),
        )
    },
    rate_limited: || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(serde_json::json!({"success": false, "error": "Error, too many requests. Please slow down."})),
        )
            .into_response()
    },
    retry_after: Some(1),
    unauthorized: || {
        json_answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"success": false, "error": "Invalid integration id or token provided."}),
        )
    },
    sink: |name, base, dir| {
        let url = secret_file(
            dir,
            &format!("{name}-url"),
            &format!("{base}/hooks/ID1/T0KEN"),
        );
        format!(
            "  - name: {name}\n    type: rocketchat\n    webhook_url_file: {url}\n    username: kaudit\n    icon_emoji: \":warning:\"\n"
        )
    },
};

mod slack_api {
    use super::*;

    super::super::api::api_tests!(&SLACK);

    #[tokio::test]
    async fn block_kit_message_carries_the_alert() {
        let (a, q) = delivers(&SLACK).await;
        let v = q.json();
        assert_eq!(v["text"], "*Critical* · Attach/Exec Pod");
        assert_eq!(v["username"], "kaudit");
        let att = &v["attachments"][0];
        assert_eq!(att["color"], "#e53935");
        let blocks = att["blocks"].as_array().unwrap();
        let main = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(
            main.ends_with("&lt;b&gt;&amp;amp; @everyone"),
            "mrkdwn escaped: {main}"
        );
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&"*ka.user.name*\nalice"), "{fields:?}");
        let button = &blocks.last().unwrap()["elements"][0];
        assert_eq!(
            button["url"],
            format!("https://kaudit.example.com/ui/alerts/{}", a.uuid)
        );
    }
}

mod mattermost_api {
    use super::*;

    super::super::api::api_tests!(&MATTERMOST);

    #[tokio::test]
    async fn attachment_message_carries_the_alert() {
        let (a, q) = delivers(&MATTERMOST).await;
        let v = q.json();
        assert_eq!(v["text"], "**Critical** · Attach/Exec Pod");
        assert_eq!(v["icon_url"], "https://kaudit.example.com/i.png");
        let att = &v["attachments"][0];
        assert_eq!(att["title"], "Attach/Exec Pod");
        assert_eq!(att["text"], a.output.as_str());
        assert_eq!(att["ts"], a.time.timestamp());
    }
}

mod rocketchat_api {
    use super::*;

    super::super::api::api_tests!(&ROCKETCHAT);

    #[tokio::test]
    async fn attachment_message_with_rocketchat_poster_keys() {
        let (_, q) = delivers(&ROCKETCHAT).await;
        let v = q.json();
        assert_eq!(v["alias"], "kaudit");
        assert_eq!(v["emoji"], ":warning:");
        assert!(v.get("username").is_none());
    }
}
