//! Microsoft Teams (Workflows webhook, Adaptive Card), Google Chat (cardsV2) and Discord
//! (embeds) webhooks, each checked against its documented payload and limits.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::api::{Api, arr, delivers, json_answer, json_post, keys, obj, secret_file, text};
use crate::support::Req;

// ---- Teams ----

const TEAMS_PATH: &str = "/workflows/8e1f/triggers/manual/paths/invoke";
const TEAMS_QUERY: &str =
    "api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=s1gnature";

fn check_card_element(e: &Value, at: &str) -> Result<(), String> {
    let o = obj(e, at)?;
    match o.get("type").and_then(Value::as_str) {
        Some("TextBlock") => {
            keys(
                o,
                at,
                &[
                    "type",
                    "text",
                    "wrap",
                    "weight",
                    "size",
                    "color",
                    "isSubtle",
                    "spacing",
                    "separator",
                ],
            )?;
            text(&o["text"], &format!("{at}.text"), 1, usize::MAX)?;
            if let Some(c) = o.get("color") {
                let c = text(c, &format!("{at}.color"), 1, 20)?;
                let known = [
                    "Default",
                    "Dark",
                    "Light",
                    "Accent",
                    "Good",
                    "Warning",
                    "Attention",
                ];
                if !known.contains(&c) {
                    return Err(format!("{at}.color: {c:?}"));
                }
            }
        }
        Some("Container") => {
            keys(o, at, &["type", "items", "style", "bleed", "spacing"])?;
            if let Some(s) = o.get("style") {
                let s = text(s, &format!("{at}.style"), 1, 20)?;
                let known = [
                    "default",
                    "emphasis",
                    "good",
                    "attention",
                    "warning",
                    "accent",
                ];
                if !known.contains(&s) {
                    return Err(format!("{at}.style: {s:?}"));
                }
            }
            for (i, x) in arr(&o["items"], &format!("{at}.items"), usize::MAX)?
                .iter()
                .enumerate()
            {
                check_card_element(x, &format!("{at}.items[{i}]"))?;
            }
        }
        Some("FactSet") => {
            keys(o, at, &["type", "facts"])?;
            for (i, f) in arr(&o["facts"], &format!("{at}.facts"), usize::MAX)?
                .iter()
                .enumerate()
            {
                let at = format!("{at}.facts[{i}]");
                let fo = obj(f, &at)?;
                keys(fo, &at, &["title", "value"])?;
                text(&fo["title"], &format!("{at}.title"), 1, usize::MAX)?;
                text(&fo["value"], &format!("{at}.value"), 0, usize::MAX)?;
            }
        }
        t => {
            return Err(format!(
                "{at}.type: {t:?} is not an element kaudit should send"
            ));
        }
    }
    Ok(())
}

fn check_teams(r: &Req) -> Result<(), String> {
    if r.uri.path() != TEAMS_PATH || r.uri.query() != Some(TEAMS_QUERY) {
        return Err(format!("URL {}", r.uri));
    }
    if r.body.len() > 28 * 1024 {
        return Err(format!("{} bytes, Teams takes 28 KB", r.body.len()));
    }
    let v = json_post(r, "application/json")?;
    let m = obj(&v, "body")?;
    keys(m, "body", &["type", "attachments"])?;
    if m["type"] != "message" {
        return Err("type is not \"message\"".into());
    }
    let atts = arr(&m["attachments"], "attachments", 10)?;
    if atts.is_empty() {
        return Err("no attachment".into());
    }
    for (i, a) in atts.iter().enumerate() {
        let at = format!("attachments[{i}]");
        let o = obj(a, &at)?;
        keys(o, &at, &["contentType", "contentUrl", "content"])?;
        if o["contentType"] != "application/vnd.microsoft.card.adaptive" {
            return Err(format!("{at}.contentType: {}", o["contentType"]));
        }
        let card = obj(&o["content"], &format!("{at}.content"))?;
        keys(
            card,
            "card",
            &["$schema", "type", "version", "body", "actions", "msteams"],
        )?;
        if card["type"] != "AdaptiveCard" {
            return Err("card.type".into());
        }
        let version = text(&card["version"], "card.version", 3, 3)?;
        if !["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"].contains(&version) {
            return Err(format!("card.version {version}"));
        }
        for (j, e) in arr(&card["body"], "card.body", usize::MAX)?
            .iter()
            .enumerate()
        {
            check_card_element(e, &format!("card.body[{j}]"))?;
        }
        if let Some(actions) = card.get("actions") {
            for (j, x) in arr(actions, "card.actions", 6)?.iter().enumerate() {
                let at = format!("card.actions[{j}]");
                let ao = obj(x, &at)?;
                keys(ao, &at, &["type", "title", "url"])?;
                if ao["type"] != "Action.OpenUrl" {
                    return Err(format!("{at}.type"));
                }
                let u = text(&ao["url"], &format!("{at}.url"), 1, usize::MAX)?;
                if !u.starts_with("https://") && !u.starts_with("http://") {
                    return Err(format!("{at}.url {u}"));
                }
            }
        }
    }
    Ok(())
}

fn azure_error(status: StatusCode, code: &str, message: &str) -> axum::response::Response {
    json_answer(status, json!({"error": {"code": code, "message": message}}))
}

/// A Workflows trigger's answers: 202; 400 `InvalidRequestContent`; 401; 429 with `Retry-After`.
pub static TEAMS: Api = Api {
    sink_type: "teams",
    check: check_teams,
    ok: |_| StatusCode::ACCEPTED.into_response(),
    bad: |why| azure_error(StatusCode::BAD_REQUEST, "InvalidRequestContent", why),
    rate_limited: || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(json!({"error": {"code": "WorkflowRequestsThrottled", "message": "Rate limit is exceeded."}})),
        )
            .into_response()
    },
    retry_after: Some(1),
    unauthorized: || {
        azure_error(
            StatusCode::UNAUTHORIZED,
            "DirectApiInvalidAuthorizationSignature",
            "The provided authorization signature is invalid.",
        )
    },
    sink: |name, base, dir| {
        let url = secret_file(
            dir,
            &format!("{name}-url"),
            &format!("{base}{TEAMS_PATH}?{TEAMS_QUERY}"),
        );
        format!(
            "  - name: {name}\n    type: teams\n    webhook_url_file: {url}\n    console_url: https://kaudit.example.com\n"
        )
    },
};

mod teams_api {
    use super::*;

    super::super::api::api_tests!(&TEAMS);

    #[tokio::test]
    async fn adaptive_card_carries_the_alert() {
        let (a, q) = delivers(&TEAMS).await;
        let v = q.json();
        let card = &v["attachments"][0]["content"];
        assert_eq!(card["body"][0]["style"], "attention");
        assert_eq!(
            card["body"][0]["items"][0]["text"],
            "Critical: Attach/Exec Pod"
        );
        assert_eq!(card["body"][1]["text"], a.output.as_str());
        let facts = card["body"][2]["facts"].as_array().unwrap();
        assert!(facts.contains(&json!({"title": "ka.user.name", "value": "alice"})));
        assert_eq!(
            card["actions"][0]["url"],
            format!("https://kaudit.example.com/ui/alerts/{}", a.uuid)
        );
    }
}

// ---- Google Chat ----

const CHAT_PATH: &str = "/v1/spaces/AAAAkaudit/messages";

fn check_widget(w: &Value, at: &str) -> Result<(), String> {
    let o = obj(w, at)?;
    if o.len() != 1 {
        return Err(format!("{at}: a widget has exactly one kind"));
    }
    if let Some(p) = o.get("textParagraph") {
        let p = obj(p, at)?;
        keys(p, at, &["text", "maxLines"])?;
        text(
            &p["text"],
            &format!("{at}.textParagraph.text"),
            1,
            usize::MAX,
        )?;
    } else if let Some(d) = o.get("decoratedText") {
        let d = obj(d, at)?;
        keys(
            d,
            at,
            &["topLabel", "text", "bottomLabel", "wrapText", "startIcon"],
        )?;
        text(
            &d["text"],
            &format!("{at}.decoratedText.text"),
            1,
            usize::MAX,
        )?;
    } else if let Some(b) = o.get("buttonList") {
        let b = obj(b, at)?;
        for (i, x) in arr(&b["buttons"], &format!("{at}.buttons"), usize::MAX)?
            .iter()
            .enumerate()
        {
            let at = format!("{at}.buttons[{i}]");
            text(&x["text"], &format!("{at}.text"), 1, usize::MAX)?;
            text(
                &x["onClick"]["openLink"]["url"],
                &format!("{at}.onClick.openLink.url"),
                1,
                usize::MAX,
            )?;
        }
    } else {
        return Err(format!("{at}: unexpected widget {w}"));
    }
    Ok(())
}

fn check_googlechat(r: &Req) -> Result<(), String> {
    if r.uri.path() != CHAT_PATH {
        return Err(format!("path {}", r.uri.path()));
    }
    let q = r.uri.query().unwrap_or_default();
    if !q.starts_with("key=AIzaKEY&token=T0KEN") {
        return Err(format!("query {q:?}: the webhook's key and token are kept"));
    }
    if r.body.len() > 32_000 {
        return Err(format!("{} bytes, Chat takes 32,000", r.body.len()));
    }
    let v = json_post(r, "application/json; charset=UTF-8")?;
    let m = obj(&v, "body")?;
    keys(
        m,
        "body",
        &["text", "cardsV2", "thread", "accessoryWidgets"],
    )?;
    text(&m["text"], "text", 1, usize::MAX)?;
    for (i, c) in arr(&m["cardsV2"], "cardsV2", 100)?.iter().enumerate() {
        let at = format!("cardsV2[{i}]");
        let co = obj(c, &at)?;
        keys(co, &at, &["cardId", "card"])?;
        text(&co["cardId"], &format!("{at}.cardId"), 1, 255)?;
        let card = obj(&co["card"], &format!("{at}.card"))?;
        keys(card, &at, &["header", "sections", "name"])?;
        text(
            &card["header"]["title"],
            &format!("{at}.header.title"),
            1,
            usize::MAX,
        )?;
        for (j, s) in arr(&card["sections"], &format!("{at}.sections"), 100)?
            .iter()
            .enumerate()
        {
            let at = format!("{at}.sections[{j}]");
            let so = obj(s, &at)?;
            keys(
                so,
                &at,
                &[
                    "header",
                    "widgets",
                    "collapsible",
                    "uncollapsibleWidgetsCount",
                ],
            )?;
            for (k, w) in arr(&so["widgets"], &format!("{at}.widgets"), usize::MAX)?
                .iter()
                .enumerate()
            {
                check_widget(w, &format!("{at}.widgets[{k}]"))?;
            }
        }
    }
    Ok(())
}

fn google_error(status: StatusCode, state: &str, message: &str) -> axum::response::Response {
    json_answer(
        status,
        json!({"error": {"code": status.as_u16(), "message": message, "status": state}}),
    )
}

/// Google Chat's answers: 200 with the created message; Google's error JSON for 400
/// (`INVALID_ARGUMENT`), 401 (`UNAUTHENTICATED`) and 429 (`RESOURCE_EXHAUSTED`, no `Retry-After`).
pub static GOOGLECHAT: Api = Api {
    sink_type: "googlechat",
    check: check_googlechat,
    ok: |r| {
        let thread = r
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("threadKey=")))
            .unwrap_or("t1")
            .to_string();
        json_answer(
            StatusCode::OK,
            json!({"name": "spaces/AAAAkaudit/messages/m1", "thread": {"name": format!("spaces/AAAAkaudit/threads/{thread}")}}),
        )
    },
    bad: |why| google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", why),
    rate_limited: || {
        google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
        )
    },
    retry_after: None,
    unauthorized: || {
        google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        )
    },
    sink: |name, base, dir| {
        let url = secret_file(
            dir,
            &format!("{name}-url"),
            &format!("{base}{CHAT_PATH}?key=AIzaKEY&token=T0KEN"),
        );
        format!(
            "  - name: {name}\n    type: googlechat\n    webhook_url_file: {url}\n    thread_key: '{{{{ rule }}}}'\n    console_url: https://kaudit.example.com\n"
        )
    },
};

mod googlechat_api {
    use super::*;

    super::super::api::api_tests!(&GOOGLECHAT);

    #[tokio::test]
    async fn card_carries_the_alert_in_its_thread() {
        let (a, q) = delivers(&GOOGLECHAT).await;
        assert!(
            q.uri
                .query()
                .unwrap()
                .ends_with("&threadKey=Attach%2FExec+Pod&messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"),
            "{}",
            q.uri
        );
        let v = q.json();
        assert_eq!(v["text"], "*Critical* · Attach/Exec Pod");
        let card = &v["cardsV2"][0];
        assert_eq!(card["cardId"], a.uuid.to_string());
        let p = card["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"]
            .as_str()
            .unwrap();
        assert!(p.contains("&lt;b&gt;&amp;amp;"), "HTML escaped: {p}");
    }
}

// ---- Discord ----

const DISCORD_PATH: &str = "/api/webhooks/1234567890/s3cret-t0ken";

fn check_discord(r: &Req) -> Result<(), String> {
    if r.uri.path() != DISCORD_PATH || r.uri.query() != Some("wait=true") {
        return Err(format!("URL {}", r.uri));
    }
    let v = json_post(r, "application/json")?;
    let m = obj(&v, "body")?;
    keys(
        m,
        "body",
        &[
            "content",
            "username",
            "avatar_url",
            "tts",
            "embeds",
            "allowed_mentions",
            "flags",
            "thread_name",
        ],
    )?;
    if let Some(c) = m.get("content") {
        text(c, "content", 0, 2000)?;
    }
    if let Some(u) = m.get("username") {
        text(u, "username", 1, 80)?;
    }
    let embeds = arr(&m["embeds"], "embeds", 10)?;
    if embeds.is_empty() && m.get("content").is_none() {
        return Err("an empty message (Discord code 50006)".into());
    }
    let mut total = 0;
    for (i, e) in embeds.iter().enumerate() {
        let at = format!("embeds[{i}]");
        let o = obj(e, &at)?;
        keys(
            o,
            &at,
            &[
                "title",
                "type",
                "description",
                "url",
                "timestamp",
                "color",
                "footer",
                "image",
                "thumbnail",
                "author",
                "fields",
            ],
        )?;
        total += text(&o["title"], &format!("{at}.title"), 1, 256)?
            .chars()
            .count();
        total += text(&o["description"], &format!("{at}.description"), 0, 4096)?
            .chars()
            .count();
        match o["color"].as_u64() {
            Some(c) if c <= 0xffffff => {}
            _ => return Err(format!("{at}.color: {}", o["color"])),
        }
        let ts = text(&o["timestamp"], &format!("{at}.timestamp"), 1, 64)?;
        chrono::DateTime::parse_from_rfc3339(ts).map_err(|e| format!("{at}.timestamp: {e}"))?;
        total += text(&o["footer"]["text"], &format!("{at}.footer.text"), 1, 2048)?
            .chars()
            .count();
        for (j, f) in arr(&o["fields"], &format!("{at}.fields"), 25)?
            .iter()
            .enumerate()
        {
            let at = format!("{at}.fields[{j}]");
            let fo = obj(f, &at)?;
            keys(fo, &at, &["name", "value", "inline"])?;
            total += text(&fo["name"], &format!("{at}.name"), 1, 256)?
                .chars()
                .count();
            total += text(&fo["value"], &format!("{at}.value"), 1, 1024)?
                .chars()
                .count();
        }
    }
    if total > 6000 {
        return Err(format!("embeds hold {total} characters, at most 6000"));
    }
    Ok(())
}

fn discord_error(status: StatusCode, code: u32, message: &str) -> axum::response::Response {
    json_answer(status, json!({"message": message, "code": code}))
}

/// Discord's answers: 200 with the message (`wait=true`); 400 `Invalid Form Body` (50035);
/// 401 `401: Unauthorized`; 429 with `Retry-After` and `retry_after` in the body.
pub static DISCORD: Api = Api {
    sink_type: "discord",
    check: check_discord,
    ok: |r| {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        json_answer(
            StatusCode::OK,
            json!({"id": "1100", "type": 0, "channel_id": "99", "webhook_id": "1234567890", "content": "", "embeds": v["embeds"]}),
        )
    },
    bad: |why| {
        discord_error(
            StatusCode::BAD_REQUEST,
            50035,
            &format!("Invalid Form Body: {why}"),
        )
    },
    rate_limited: || {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1"), ("x-ratelimit-scope", "user")],
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": 0.8, "global": false})),
        )
            .into_response()
    },
    retry_after: Some(1),
    unauthorized: || discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized"),
    sink: |name, base, dir| {
        let url = secret_file(
            dir,
            &format!("{name}-url"),
            &format!("{base}{DISCORD_PATH}"),
        );
        format!(
            "  - name: {name}\n    type: discord\n    webhook_url_file: {url}\n    username: kaudit\n    console_url: https://kaudit.example.com\n"
        )
    },
};

mod discord_api {
    use super::*;
    use crate::support::{alert, config, free_port, wait_until};
    use kaudit::alert::Priority;
    use kaudit::metrics::Metrics;
    use kaudit::router;

    super::super::api::api_tests!(&DISCORD);

    /// Twelve alerts spooled during an outage go out as two messages (10 embeds, then 2), each
    /// within the limits, every alert once.
    #[tokio::test]
    async fn a_backlog_goes_ten_embeds_per_message() {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let sink = (DISCORD.sink)("s", &format!("http://127.0.0.1:{port}"), dir.path());
        let cfg = config(dir.path(), &sink);
        let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
            .await
            .unwrap();
        let alerts: Vec<_> = (0..12)
            .map(|i| alert(&format!("Backlog {i}"), Priority::Error))
            .collect();
        for a in &alerts {
            r.sender().send(a.clone()).await.unwrap();
        }
        wait_until("the backlog spooled", || r.spooled("s") == Some(12)).await;
        r.shutdown().await;
        let fake = super::super::api::Fake::start_on(&DISCORD, port, vec![]).await;
        let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
            .await
            .unwrap();
        wait_until("the spool drained", || r.spooled("s") == Some(0)).await;
        r.shutdown().await;
        fake.assert_valid();
        let sizes: Vec<usize> = fake
            .rec
            .requests()
            .iter()
            .map(|q| q.json()["embeds"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [10, 2]);
        let footers: Vec<String> = fake
            .rec
            .requests()
            .iter()
            .flat_map(|q| q.json()["embeds"].as_array().cloned().unwrap_or_default())
            .map(|e| e["footer"]["text"].as_str().unwrap_or_default().to_string())
            .collect();
        for a in &alerts {
            let id = a.uuid.to_string();
            let n = footers.iter().filter(|f| f.contains(&id)).count();
            assert_eq!(n, 1, "{}: one embed", a.rule);
        }
    }

    #[tokio::test]
    async fn embed_carries_the_alert_without_pinging() {
        let (a, q) = delivers(&DISCORD).await;
        let v = q.json();
        assert_eq!(v["allowed_mentions"], json!({"parse": []}));
        let e = &v["embeds"][0];
        assert_eq!(e["title"], "Critical: Attach/Exec Pod");
        assert_eq!(e["description"], a.output.as_str());
        assert_eq!(e["color"], 0xe53935);
        assert_eq!(
            e["url"],
            format!("https://kaudit.example.com/ui/alerts/{}", a.uuid)
        );
        assert!(
            e["fields"]
                .as_array()
                .unwrap()
                .contains(&json!({"name": "ka.user.name", "value": "alice", "inline": true}))
        );
    }
}
