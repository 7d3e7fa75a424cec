//! Shaping shared by every sink.
//!
//! - [`Shape`]: per-sink keys of every `sinks:` entry, applied to each alert after the router's
//!   filter and before the sink formats it: `custom_fields` (static output fields, as the
//!   router's, but for this sink only), `templated_fields` (output fields computed by a template
//!   from the alert's fields, falcosidekick's `templatedfields`) and `output_format` (a template
//!   that rewrites the alert's `output` line). An alert's own field always wins over an added one
//!   of the same name, so shaping never hides what happened.
//! - Helpers the formatting sinks share: [`truncate_chars`] / [`truncate_bytes`] (cut a field at
//!   an API's documented limit, never drop it), [`colour`] (a colour per priority),
//!   [`key_fields`] (the fields a message shows) and [`console_link`] (the alert's console page).

use std::borrow::Cow;
use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::template::AlertTemplate;
use crate::alert::{Alert, Priority};
use crate::delivery::{BatchPolicy, Sink, SinkError};

/// The per-sink shaping keys (every sink has them; see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shape {
    /// Output fields added to every alert this sink sends.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_fields: BTreeMap<String, String>,
    /// Output fields computed per alert by a template (after `custom_fields`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub templated_fields: BTreeMap<String, AlertTemplate>,
    /// A template whose result replaces the alert's `output` line (after the fields above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_format: Option<AlertTemplate>,
}

impl Shape {
    /// The keys of a `sinks:` entry that belong to the shape.
    pub const KEYS: [&'static str; 3] = ["custom_fields", "templated_fields", "output_format"];

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.custom_fields.is_empty()
            && self.templated_fields.is_empty()
            && self.output_format.is_none()
    }

    /// Shapes one alert in place.
    pub fn apply(&self, a: &mut Alert) {
        for (k, v) in &self.custom_fields {
            a.output_fields
                .entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        if !self.templated_fields.is_empty() {
            // Every templated field sees the same alert: none depends on another's order.
            let computed: Vec<(String, String)> = self
                .templated_fields
                .iter()
                .filter(|(k, _)| !a.output_fields.contains_key(*k))
                .map(|(k, t)| (k.clone(), t.render_or(a, None, String::new)))
                .collect();
            for (k, v) in computed {
                a.output_fields.insert(k, Value::String(v));
            }
        }
        if let Some(t) = &self.output_format {
            let out = t.render_or(a, None, || a.output.clone());
            a.output = out;
        }
    }
}

/// A sink whose alerts are shaped before it sees them.
pub struct Shaped {
    inner: Box<dyn Sink>,
    shape: Shape,
}

impl Shaped {
    /// `inner` itself when `shape` is empty, else `inner` behind the shape.
    pub fn wrap(inner: Box<dyn Sink>, shape: &Shape) -> Box<dyn Sink> {
        if shape.is_empty() {
            return inner;
        }
        Box::new(Shaped {
            inner,
            shape: shape.clone(),
        })
    }
}

impl Sink for Shaped {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        let shaped: Vec<Alert> = alerts
            .iter()
            .map(|a| {
                let mut a = a.clone();
                self.shape.apply(&mut a);
                a
            })
            .collect();
        Box::pin(async move { self.inner.send(&shaped).await })
    }

    fn batch_policy(&self) -> BatchPolicy {
        self.inner.batch_policy()
    }
}

/// The marker that ends a cut text.
pub const ELLIPSIS: char = '…';

/// `s` cut to at most `max` characters (Unicode scalar values), ending with [`ELLIPSIS`] when
/// cut (the marker counts towards `max`).
pub fn truncate_chars(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some(_) if max == 0 => Cow::Borrowed(""),
        Some(_) => {
            let end = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
            let mut out = String::with_capacity(end + ELLIPSIS.len_utf8());
            out.push_str(&s[..end]);
            out.push(ELLIPSIS);
            Cow::Owned(out)
        }
    }
}

/// `s` cut to at most `max` UTF-8 bytes at a character boundary, ending with [`ELLIPSIS`] when
/// cut (the marker counts towards `max`).
pub fn truncate_bytes(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let room = max.saturating_sub(ELLIPSIS.len_utf8());
    let mut end = room.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + ELLIPSIS.len_utf8());
    out.push_str(&s[..end]);
    if max >= ELLIPSIS.len_utf8() {
        out.push(ELLIPSIS);
    }
    Cow::Owned(out)
}

/// The body `build(shift)` makes for the largest `shift` (0, 1, 2... up to 6) whose JSON fits
/// in `max_bytes`: `build` divides its per-field limits by `2^shift`, so a message too large for
/// an API's total limit loses length in its longest texts, never whole fields. The last attempt
/// is returned even when it does not fit.
pub fn fit_json(max_bytes: usize, build: impl Fn(u32) -> Value) -> Value {
    let mut shift = 0;
    loop {
        let v = build(shift);
        let len = serde_json::to_vec(&v).map_or(0, |b| b.len());
        if len <= max_bytes || shift >= 6 {
            return v;
        }
        shift += 1;
    }
}

/// A colour per priority as `0xRRGGBB`: red for the most severe, through orange and yellow, to
/// blue and grey for the informative ones.
pub fn colour(p: Priority) -> u32 {
    match p {
        Priority::Emergency => 0x8b0000,
        Priority::Alert => 0xd50000,
        Priority::Critical => 0xe53935,
        Priority::Error => 0xfb8c00,
        Priority::Warning => 0xfdd835,
        Priority::Notice => 0x43a047,
        Priority::Informational => 0x1e88e5,
        Priority::Debug => 0x90a4ae,
    }
}

/// [`colour`] as `#rrggbb`.
pub fn colour_hex(p: Priority) -> String {
    format!("#{:06x}", colour(p))
}

/// The fields a message shows, as (name, text): the `names` asked for (any output field, or
/// `rule`, `priority`, `source`, `hostname`, `tags`), or when none are asked for every output
/// field in the rule's order; empty and null values are skipped.
pub fn key_fields(a: &Alert, names: &[String]) -> Vec<(String, String)> {
    let pick = |n: &String| {
        a.field_text(n)
            .filter(|v| !v.is_empty())
            .map(|v| (n.clone(), v))
    };
    if names.is_empty() {
        a.output_fields.keys().filter_map(pick).collect()
    } else {
        names.iter().filter_map(pick).collect()
    }
}

/// Per-priority overrides of a sink's own mapping of Falco priorities to its API's levels
/// (`severity_map: {notice: warning}`); priorities not named keep the sink's default.
pub type PriorityMap = BTreeMap<Priority, String>;

/// The level of `p`: the override in `map`, else `default(p)`.
pub fn mapped(map: &PriorityMap, p: Priority, default: fn(Priority) -> &'static str) -> String {
    map.get(&p)
        .cloned()
        .unwrap_or_else(|| default(p).to_string())
}

/// Refuses a level its API does not know.
pub fn check_priority_map(
    key: &str,
    map: &PriorityMap,
    allowed: &[&str],
) -> Result<(), crate::invalid::Invalid> {
    for (p, v) in map {
        if !allowed.contains(&v.as_str()) {
            return Err(crate::invalid::Invalid::new(
                format!("{key}.{}", p.as_lower()),
                format!("{v:?}: use one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Where the console shows one alert, under its base URL.
pub const CONSOLE_ALERT_PATH: &str = "ui/alerts/";

/// The alert's page in the console at `base` (`https://kaudit.example.com` →
/// `https://kaudit.example.com/ui/alerts/<uuid>`).
pub fn console_link(base: &str, a: &Alert) -> String {
    format!(
        "{}/{CONSOLE_ALERT_PATH}{}",
        base.trim_end_matches('/'),
        a.uuid
    )
}

/// Checks a `console_url` setting: an absolute http(s) URL.
pub fn check_console_url(key: &str, url: &Option<String>) -> Result<(), crate::invalid::Invalid> {
    if let Some(u) = url {
        let parsed = super::util::parse_url(key, u)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(crate::invalid::Invalid::new(
                key,
                format!("{u:?}: use http:// or https://"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_never_exceeds_and_marks_the_cut() {
        assert_eq!(truncate_chars("hello", 5), "hello");
        assert_eq!(truncate_chars("hello!", 5), "hell…");
        assert_eq!(truncate_chars("ééééé", 3), "éé…");
        assert_eq!(truncate_bytes("hello", 5), "hello");
        let cut = truncate_bytes("ééééé", 7);
        assert!(cut.len() <= 7 && cut.ends_with('…'), "{cut}");
        assert_eq!(cut, "éé…");
    }

    #[test]
    fn shape_adds_fields_and_rewrites_output_without_overriding() {
        let shape: Shape = serde_json::from_value(serde_json::json!({
            "custom_fields": {"cluster": "prod", "ka.user.name": "spoofed"},
            "templated_fields": {"who": "{{ output_fields['ka.user.name'] }}@{{ output_fields.cluster }}"},
            "output_format": "{{ rule }} by {{ output_fields.who }}",
        }))
        .unwrap();
        let mut a = crate::sinks::test_alert::test_alert("h");
        shape.apply(&mut a);
        assert_eq!(a.output_fields["cluster"], "prod");
        assert_eq!(a.output_fields["ka.user.name"], "kaudit-test");
        assert_eq!(a.output_fields["who"], "kaudit-test@prod");
        assert_eq!(a.output, "Test rule by kaudit-test@prod");
        let bad = serde_json::from_value::<Shape>(serde_json::json!({"output_format": "{{"}));
        assert!(bad.is_err());
    }

    #[test]
    fn key_fields_and_links() {
        let a = crate::sinks::test_alert::test_alert("h");
        let all = key_fields(&a, &[]);
        assert_eq!(all[0], ("ka.verb".to_string(), "create".to_string()));
        let some = key_fields(&a, &["rule".into(), "nope".into(), "ka.resp.code".into()]);
        assert_eq!(
            some,
            [
                ("rule".to_string(), "Test rule".to_string()),
                ("ka.resp.code".to_string(), "201".to_string())
            ]
        );
        assert_eq!(
            console_link("https://k.example/", &a),
            format!("https://k.example/ui/alerts/{}", a.uuid)
        );
        assert_eq!(colour_hex(Priority::Critical), "#e53935");
    }
}
