//! The audit event model and payload decoding, shared by ingest, the rules engine and the CLI.
//!
//! A payload is what kube-apiserver's webhook backend sends (an `audit.k8s.io` `EventList`), or
//! what Falco's k8saudit plugin also accepts: a single `Event`, or a JSON array of either,
//! nested to any depth. Each event keeps its parsed JSON; its time is its `stageTimestamp`.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::json::JsonRef;

/// The message Falco's plugin logs for a document that is not an audit event (its tests grep it).
pub const NOT_AN_AUDIT_EVENT: &str = "data not recognized as a k8s audit event";

/// One audit event: its JSON and its time.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// The event as sent.
    pub json: Value,
    /// `stageTimestamp`, the event time Falco uses.
    pub time: DateTime<Utc>,
}

impl AuditEvent {
    /// Builds an event from its JSON, reading `stageTimestamp`.
    pub fn from_json(json: Value) -> Result<AuditEvent, Rejection> {
        if !json.is_object() {
            return Err(Rejection::NotAnObject);
        }
        let time = event_time(JsonRef::Value(&json))?;
        Ok(AuditEvent { json, time })
    }

    /// The `auditID`, for logs.
    pub fn audit_id(&self) -> &str {
        self.view().audit_id()
    }

    /// The event as the field extractors read it.
    pub fn view(&self) -> EventRef<'_> {
        EventRef::new(JsonRef::Value(&self.json), self.time)
    }
}

/// A read-only view of an event: a parsed [`AuditEvent`] or one lazy extraction built
/// (`crate::lazy::Extracted`), read by the same extractors either way.
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'e> {
    /// The event's JSON (as much of it as was built).
    pub json: JsonRef<'e>,
    /// `stageTimestamp`, the event time Falco uses.
    pub time: DateTime<Utc>,
    /// The event has an `auditID` member (every `ka.*` field needs one): looked up once, not
    /// by every field read.
    pub has_audit_id: bool,
}

impl<'e> EventRef<'e> {
    /// The view of an event's JSON at `time`.
    pub fn new(json: JsonRef<'e>, time: DateTime<Utc>) -> EventRef<'e> {
        EventRef {
            json,
            time,
            has_audit_id: json.get("auditID").is_some(),
        }
    }

    /// The `auditID` (empty when there is none).
    pub fn audit_id(&self) -> &'e str {
        self.str_at("auditID").unwrap_or("")
    }

    /// The string at top-level key `key`, if it is one.
    pub fn str_at(&self, key: &str) -> Option<&'e str> {
        self.json.get(key)?.as_str()
    }
}

/// The time of an event's JSON, checked as [`AuditEvent::from_json`] checks it: its
/// `stageTimestamp`, an RFC 3339 string.
pub fn event_time(json: JsonRef<'_>) -> Result<DateTime<Utc>, Rejection> {
    let ts = match json.get("stageTimestamp") {
        Some(v) => v.as_str().ok_or(Rejection::BadStageTimestamp)?,
        None => return Err(Rejection::MissingStageTimestamp),
    };
    Ok(DateTime::parse_from_rfc3339(ts)
        .map_err(|_| Rejection::BadStageTimestamp)?
        .with_timezone(&Utc))
}

/// Why one event of an otherwise valid payload was dropped. A bounded set: it labels metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The item is not a JSON object.
    NotAnObject,
    /// No `stageTimestamp`, so no event time (the plugin drops these too).
    MissingStageTimestamp,
    /// `stageTimestamp` is not an RFC 3339 time.
    BadStageTimestamp,
    /// Larger than `ingest.max_event_bytes`.
    TooLarge,
    /// Not JSON at all (only in line-oriented files).
    Malformed,
}

impl Rejection {
    /// Metric label and log text.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::NotAnObject => "not_an_object",
            Rejection::MissingStageTimestamp => "missing_stage_timestamp",
            Rejection::BadStageTimestamp => "bad_stage_timestamp",
            Rejection::TooLarge => "too_large",
            Rejection::Malformed => "malformed",
        }
    }

    /// Every reason, for pre-registering metric label values.
    pub const ALL: [Rejection; 5] = [
        Rejection::NotAnObject,
        Rejection::MissingStageTimestamp,
        Rejection::BadStageTimestamp,
        Rejection::TooLarge,
        Rejection::Malformed,
    ];
}

/// A payload that cannot be taken at all: the request gets 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON.
    #[error("malformed JSON at line {line} column {column}: {message}")]
    Malformed {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// JSON, but not an audit `Event`, `EventList` or array of them.
    #[error("{NOT_AN_AUDIT_EVENT}: {0}")]
    NotAuditEvent(String),
}

/// The events of one payload, and what was dropped from it (index into the flattened items).
#[derive(Debug, Default)]
pub struct Decoded {
    /// Events that can be evaluated.
    pub events: Vec<AuditEvent>,
    /// Items dropped, with their position among all items and the reason.
    pub rejected: Vec<(usize, Rejection)>,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(default)]
    kind: Option<Value>,
    #[serde(default, rename = "apiVersion")]
    api_version: Option<Value>,
    #[serde(default, borrow)]
    items: Option<Vec<&'a RawValue>>,
}

/// Decodes a payload. Items larger than `max_event_bytes` are dropped, not parsed.
pub fn decode(body: &[u8], max_event_bytes: usize) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    for_each_event(body, max_event_bytes, |i, item| match item {
        Ok(ev) => out.events.push(ev),
        Err(r) => out.rejected.push((i, r)),
    })?;
    Ok(out)
}

/// Decodes a payload one event at a time: `visit` gets each item's index and its event (or why
/// it was dropped), and the event is dropped before the next is parsed, so memory holds one
/// event's JSON, not the whole payload's.
pub fn for_each_event(
    body: &[u8],
    max_event_bytes: usize,
    mut visit: impl FnMut(usize, Result<AuditEvent, Rejection>),
) -> Result<(), DecodeError> {
    for_each_item(body, max_event_bytes, |i, raw| {
        visit(
            i,
            raw.and_then(|raw| {
                serde_json::from_str::<Value>(raw.get())
                    .map_err(|_| Rejection::Malformed)
                    .and_then(AuditEvent::from_json)
            }),
        )
    })
}

/// What [`validate`] found in a payload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Validated {
    /// Items that are events.
    pub accepted: usize,
    /// Items dropped, with their position among all items and the reason.
    pub rejected: Vec<(usize, Rejection)>,
}

/// Checks a payload exactly as [`decode`] would take it (the same events accepted, the same
/// rejected with the same reasons) without building any event's JSON, walking it with
/// serde_json: the reference `lazy::validate` (what ingest calls) agrees with and falls back to.
pub fn validate(body: &[u8], max_event_bytes: usize) -> Result<Validated, DecodeError> {
    let mut out = Validated::default();
    for_each_item(body, max_event_bytes, |i, raw| {
        match raw.and_then(check_event) {
            Ok(()) => out.accepted += 1,
            Err(r) => out.rejected.push((i, r)),
        }
    })?;
    Ok(out)
}

/// The checks of [`AuditEvent::from_json`] on the raw text of one item.
fn check_event(raw: &RawValue) -> Result<(), Rejection> {
    #[derive(Deserialize)]
    struct Stamp<'a> {
        // Present-but-null must stay distinguishable from absent, as `Value::get` sees it.
        #[serde(
            default,
            borrow,
            rename = "stageTimestamp",
            deserialize_with = "present"
        )]
        ts: Option<&'a RawValue>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(d).map(Some)
    }
    if !raw.get().starts_with('{') {
        return Err(Rejection::NotAnObject);
    }
    let Ok(stamp) = serde_json::from_str::<Stamp>(raw.get()) else {
        // Rare shapes (a duplicated key): decide exactly as `decode` does.
        let v = serde_json::from_str::<Value>(raw.get()).map_err(|_| Rejection::Malformed)?;
        return AuditEvent::from_json(v).map(drop);
    };
    let ts = stamp.ts.ok_or(Rejection::MissingStageTimestamp)?;
    let ts: std::borrow::Cow<'_, str> =
        serde_json::from_str(ts.get()).map_err(|_| Rejection::BadStageTimestamp)?;
    DateTime::parse_from_rfc3339(&ts).map_err(|_| Rejection::BadStageTimestamp)?;
    Ok(())
}

/// Walks a payload's items (an `EventList`'s, an `Event`, arrays of them): `visit` gets each
/// item's index and raw text, or [`Rejection::TooLarge`].
pub(crate) fn for_each_item<'a>(
    body: &'a [u8],
    max_event_bytes: usize,
    mut visit: impl FnMut(usize, Result<&'a RawValue, Rejection>),
) -> Result<(), DecodeError> {
    let raw: &'a RawValue = serde_json::from_slice(body).map_err(malformed)?;
    let mut index = 0usize;
    let mut add = |item: &'a RawValue| {
        let i = index;
        index += 1;
        if item.get().len() > max_event_bytes {
            visit(i, Err(Rejection::TooLarge));
        } else {
            visit(i, Ok(item));
        }
    };
    decode_value(raw, 0, &mut add)
}

const MAX_NESTING: usize = 32;

fn malformed(e: serde_json::Error) -> DecodeError {
    DecodeError::Malformed {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

fn decode_value<'a>(
    raw: &'a RawValue,
    depth: usize,
    add: &mut dyn FnMut(&'a RawValue),
) -> Result<(), DecodeError> {
    if depth > MAX_NESTING {
        return Err(DecodeError::NotAuditEvent(format!(
            "arrays nested deeper than {MAX_NESTING}"
        )));
    }
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&'a RawValue> = serde_json::from_str(text).map_err(malformed)?;
            for item in items {
                decode_value(item, depth + 1, add)?;
            }
            Ok(())
        }
        Some(b'{') => {
            let probe: Probe<'a> = serde_json::from_str(text).map_err(malformed)?;
            if let Some(Value::String(v)) = &probe.api_version
                && !v.starts_with("audit.k8s.io/")
            {
                return Err(DecodeError::NotAuditEvent(format!(
                    "apiVersion {v:?} is not audit.k8s.io/v1 or v1beta1"
                )));
            }
            match probe.kind.as_ref() {
                Some(Value::String(k)) if k == "EventList" => {
                    for item in probe.items.unwrap_or_default() {
                        add(item);
                    }
                    Ok(())
                }
                Some(Value::String(k)) if k == "Event" => {
                    add(raw);
                    Ok(())
                }
                Some(other) => Err(DecodeError::NotAuditEvent(format!(
                    "`kind` is {other}, expected \"Event\" or \"EventList\""
                ))),
                None => Err(DecodeError::NotAuditEvent(
                    "object has no `kind` (expected \"Event\" or \"EventList\")".into(),
                )),
            }
        }
        _ => Err(DecodeError::NotAuditEvent(format!(
            "expected an object or an array, got {}",
            truncate(text, 40)
        ))),
    }
}

fn truncate(s: &str, n: usize) -> String {
    let mut t: String = s.chars().take(n).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

/// An accepted request: its events, and the body exactly as it arrived (for forwarding to Falco).
#[derive(Clone, Debug)]
pub struct AuditBatch {
    /// Request id, for tracing across stages.
    pub id: u64,
    /// The decoded events.
    pub events: Arc<Vec<AuditEvent>>,
    /// The request body, byte for byte.
    pub body: Bytes,
    /// The request's `Content-Type`.
    pub content_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stageTimestamp":"2026-01-01T00:00:00.123456Z","verb":"get"}"#;

    #[test]
    fn event_list_event_and_nested_arrays() {
        let list =
            format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{EV},{EV}]}}"#);
        assert_eq!(decode(list.as_bytes(), 1 << 20).unwrap().events.len(), 2);
        assert_eq!(decode(EV.as_bytes(), 1 << 20).unwrap().events.len(), 1);
        let arr = format!("[{EV},[{EV},{list}]]");
        assert_eq!(decode(arr.as_bytes(), 1 << 20).unwrap().events.len(), 4);
    }

    #[test]
    fn v1beta1_is_accepted() {
        let ev = EV.replace("audit.k8s.io/v1", "audit.k8s.io/v1beta1");
        assert_eq!(decode(ev.as_bytes(), 1 << 20).unwrap().events.len(), 1);
    }

    #[test]
    fn not_an_event_is_an_error() {
        for bad in [r#"{"kind":0}"#, r#"{"a":1}"#, "42", r#"{"kind":"Pod"}"#] {
            let e = decode(bad.as_bytes(), 1 << 20).unwrap_err();
            assert!(matches!(e, DecodeError::NotAuditEvent(_)), "{bad}: {e}");
        }
        let e = decode(b"{\"kind\":", 1 << 20).unwrap_err();
        assert!(matches!(e, DecodeError::Malformed { .. }), "{e}");
    }

    #[test]
    fn bad_items_are_dropped_and_counted() {
        let big = EV.replace("\"get\"", &format!("\"{}\"", "x".repeat(500)));
        let list = format!(
            r#"{{"kind":"EventList","items":[{EV},3,{{"kind":"Event"}},{big},{{"stageTimestamp":"yesterday"}}]}}"#
        );
        let d = decode(list.as_bytes(), 300).unwrap();
        assert_eq!(d.events.len(), 1);
        assert_eq!(
            d.rejected,
            vec![
                (1, Rejection::NotAnObject),
                (2, Rejection::MissingStageTimestamp),
                (3, Rejection::TooLarge),
                (4, Rejection::BadStageTimestamp)
            ]
        );
    }

    #[test]
    fn validate_agrees_with_decode() {
        let big = EV.replace("\"get\"", &format!("\"{}\"", "x".repeat(500)));
        let list = format!(
            r#"[{{"kind":"EventList","items":[{EV},3,{{"kind":"Event"}},{big},{{"stageTimestamp":"yesterday"}},{{"stageTimestamp":5}},{{"stageTimestamp":null}},{{"stageTimestamp":"2026-01-01T00:00:00Z"}},{{"stageTimestamp":1,"stageTimestamp":"2026-01-01T00:00:00Z"}}]}},[{EV}]]"#
        );
        let d = decode(list.as_bytes(), 300).unwrap();
        let v = validate(list.as_bytes(), 300).unwrap();
        assert_eq!(v.accepted, d.events.len());
        assert_eq!(v.rejected, d.rejected);
        for bad in [r#"{"kind":0}"#, "42", "{\"kind\":"] {
            assert_eq!(
                validate(bad.as_bytes(), 300).unwrap_err(),
                decode(bad.as_bytes(), 300).unwrap_err()
            );
        }
    }

    #[test]
    fn event_time_is_stage_timestamp() {
        let d = decode(EV.as_bytes(), 1 << 20).unwrap();
        assert_eq!(d.events[0].time.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(d.events[0].audit_id(), "a1");
    }
}
