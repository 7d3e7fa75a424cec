//! Lazy extraction: an event is scanned once and only the parts the rules read are built.
//!
//! A ruleset compiles to the set of JSON paths its fields read ([`PathSet`], a trie of object
//! keys). [`RawEvent::extract`] walks the event's text with serde_json's parser, skipping
//! (without building anything) every member whose key is not on a path, and building
//! `serde_json::Value`s only for the members that are: the event it returns has the same
//! [`AuditEvent`] shape as a full parse, restricted to those paths, so every extractor reads
//! exactly what it would read from the full document. A path that meets something other than
//! an object (an array, a scalar) takes that whole value, so indexes into arrays work too.
//!
//! Semantics kept from a full parse: a repeated key's last value wins (and keeps the first
//! one's place), keys are compared after unescaping, numbers become the same `Number`s.
//! Parts no rule reads are only skipped: an event whose unread parts nest deeper than
//! serde_json's recursion limit or hold a number out of `f64` range is evaluated, where a full
//! parse refused it (ingest's validation accepted it already).
//!
//! The raw text stays available ([`RawEvent::text`]) for forwarding, the inbox and storage.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use chrono::{DateTime, Utc};

use crate::audit::{self, AuditEvent, DecodeError, EventRef, Rejection};
use crate::json::Doc;

mod scan;

/// The keys every event's extraction includes: its time and identity (`auditID`, `stage`),
/// which alerts carry and their uuids are derived from.
pub const IDENTITY_KEYS: [&str; 3] = ["stageTimestamp", "auditID", "stage"];

/// A set of paths of object keys into an event: a trie whose nodes are either taken whole or
/// partly (only their children on a path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathSet {
    root: Node,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    /// Take the whole value here (a path ends here).
    whole: bool,
    /// Keys on a path below, in insertion order (few per level: a linear scan is fastest).
    children: Vec<(String, Node)>,
}

impl Node {
    fn child(&self, key: &str) -> Option<&Node> {
        self.children.iter().find(|(k, _)| k == key).map(|(_, n)| n)
    }
}

impl PathSet {
    /// The identity keys only ([`IDENTITY_KEYS`]).
    pub fn new() -> PathSet {
        let mut s = PathSet::default();
        for k in IDENTITY_KEYS {
            s.add(&[k]);
        }
        s
    }

    /// Every path: extraction builds the whole document.
    pub fn whole() -> PathSet {
        PathSet {
            root: Node {
                whole: true,
                children: Vec::new(),
            },
        }
    }

    /// True when the whole document is taken.
    pub fn is_whole(&self) -> bool {
        self.root.whole
    }

    /// Adds a path of object keys (an empty path is the whole document).
    pub fn add<S: AsRef<str>>(&mut self, path: &[S]) {
        let mut node = &mut self.root;
        for seg in path {
            if node.whole {
                return;
            }
            let seg = seg.as_ref();
            let at = match node.children.iter().position(|(k, _)| k == seg) {
                Some(i) => i,
                None => {
                    node.children.push((seg.to_string(), Node::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at].1;
        }
        node.whole = true;
        node.children.clear();
    }

    /// Adds the path of an RFC 6901 pointer, read as the `jevt.value` field reads it: the
    /// leading `/` optional, `~1` and `~0` unescaped, an empty pointer the whole document.
    pub fn add_pointer(&mut self, pointer: &str) {
        let p = pointer.strip_prefix('/').unwrap_or(pointer);
        if p.is_empty() {
            self.add::<&str>(&[]);
            return;
        }
        let segs: Vec<String> = p
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        self.add(&segs);
    }

    /// Adds every path of `other`.
    pub fn merge(&mut self, other: &PathSet) {
        fn walk(n: &Node, prefix: &mut Vec<String>, into: &mut PathSet) {
            if n.whole {
                into.add(prefix);
                return;
            }
            for (k, c) in &n.children {
                prefix.push(k.clone());
                walk(c, prefix, into);
                prefix.pop();
            }
        }
        walk(&other.root, &mut Vec::new(), self);
    }

    /// Number of paths (for diagnostics).
    pub fn len(&self) -> usize {
        fn count(n: &Node) -> usize {
            if n.whole {
                1
            } else {
                n.children.iter().map(|(_, c)| count(c)).sum()
            }
        }
        count(&self.root)
    }

    /// True when no path is in the set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An event as lazy extraction hands it out: scanned in one pass (plain strings borrowed from
/// its text, see [`crate::json`]), or, where the scanner left it to serde_json, built by it.
/// Either way it holds the members on the paths asked for, and reads the same through
/// [`Extracted::view`].
#[derive(Clone, Debug)]
pub enum Extracted<'a> {
    /// Built by the one-pass scanner.
    Scanned {
        /// The event's members on the paths (an object).
        json: Doc<'a>,
        /// `stageTimestamp`.
        time: DateTime<Utc>,
    },
    /// Built by serde_json.
    Built(AuditEvent),
}

impl<'a> Extracted<'a> {
    /// A scanned event's object, its time checked as [`AuditEvent::from_json`] checks it.
    pub(crate) fn scanned(json: Doc<'a>) -> Result<Extracted<'a>, Rejection> {
        if !matches!(json, Doc::Object(_)) {
            return Err(Rejection::NotAnObject);
        }
        let time = audit::event_time(json.view())?;
        Ok(Extracted::Scanned { json, time })
    }

    /// The event as the field extractors read it.
    pub fn view(&self) -> EventRef<'_> {
        match self {
            Extracted::Scanned { json, time } => EventRef::new(json.view(), *time),
            Extracted::Built(ev) => ev.view(),
        }
    }

    /// The same event as an [`AuditEvent`], borrowed when it is one already.
    pub fn to_event(&self) -> Cow<'_, AuditEvent> {
        match self {
            Extracted::Built(ev) => Cow::Borrowed(ev),
            Extracted::Scanned { json, time } => Cow::Owned(AuditEvent {
                json: json.view().to_value().into_owned(),
                time: *time,
            }),
        }
    }

    /// The same event as an [`AuditEvent`] (what serde_json builds over the same paths).
    pub fn into_event(self) -> AuditEvent {
        match self {
            Extracted::Scanned { json, time } => AuditEvent {
                json: json.into_value(),
                time,
            },
            Extracted::Built(ev) => ev,
        }
    }
}

/// One item of a payload before it is parsed: its position among the payload's items and its
/// text, byte for byte as it arrived.
#[derive(Clone, Copy, Debug)]
pub struct RawEvent<'a> {
    /// Position among all items of the payload (rejected ones included).
    pub index: usize,
    /// The item's JSON text.
    pub text: &'a str,
}

impl<'a> RawEvent<'a> {
    /// The event with only the members on `paths` built (plus its time, checked exactly as
    /// [`AuditEvent::from_json`] checks a full parse).
    pub fn extract(&self, paths: &PathSet) -> Result<AuditEvent, Rejection> {
        extract(self.text, paths)
    }

    /// As [`RawEvent::extract`], as the one-pass scanner builds it for evaluation (borrowing
    /// from the text).
    pub fn scan(&self, paths: &PathSet) -> Result<Extracted<'a>, Rejection> {
        scan_event(self.text, paths)
    }
}

/// Parses `text` keeping only the members on `paths`; see [`RawEvent::extract`].
pub fn extract(text: &str, paths: &PathSet) -> Result<AuditEvent, Rejection> {
    scan_event(text, paths).map(Extracted::into_event)
}

/// As [`extract`], the event as the one-pass scanner builds it for evaluation: what the rules
/// read through [`Extracted::view`].
pub fn scan_event<'a>(text: &'a str, paths: &PathSet) -> Result<Extracted<'a>, Rejection> {
    if paths.is_whole() || !text.trim_start().starts_with('{') {
        // The whole event, or not an object: decided (not-an-object or malformed) exactly as
        // a full parse does.
        let v: Value = serde_json::from_str(text).map_err(|_| Rejection::Malformed)?;
        return AuditEvent::from_json(v).map(Extracted::Built);
    }
    match scan::event(text, &paths.root) {
        Ok(ev) => ev,
        // Anything unusual: serde_json decides.
        Err(scan::Unsure) => extract_walked(text, &paths.root).map(Extracted::Built),
    }
}

/// [`extract`] by serde_json alone (an object's text, a partial path set).
fn extract_walked(text: &str, node: &Node) -> Result<AuditEvent, Rejection> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Partial(node)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|_| Rejection::Malformed)?;
    AuditEvent::from_json(v)
}

/// Walks a payload's items as [`audit::decode`] does, handing each one unparsed to `visit`
/// (or why it was dropped before parsing: too large).
pub fn for_each_raw<'a>(
    body: &'a [u8],
    max_event_bytes: usize,
    mut visit: impl FnMut(Result<RawEvent<'a>, (usize, Rejection)>),
) -> Result<(), DecodeError> {
    audit::for_each_item(body, max_event_bytes, |index, item| match item {
        Ok(text) => visit(Ok(RawEvent {
            index,
            text: text.get(),
        })),
        Err(r) => visit(Err((index, r))),
    })
}

/// Payloads up to this size are read in one pass by [`for_each_event`]; larger ones item by
/// item. The one pass builds every event of the payload before visiting the first (65 MB for a
/// 12 MiB `EventList`); the walk holds one at a time.
pub const ONE_PASS_MAX_BYTES: usize = 2 * 1024 * 1024;

/// As [`audit::for_each_event`], building only the members on `paths` of each event; `visit`
/// also gets each event's raw item.
///
/// An `Event` or an `EventList` up to [`ONE_PASS_MAX_BYTES`] is read in one pass ([`scan`]:
/// each item's bytes read once, only the members on `paths` built); a larger payload, a payload
/// of any other shape, or anything unusual in one, is walked as [`audit::decode`] walks it,
/// with the same items, errors and rejections.
pub fn for_each_event<'a>(
    body: &'a [u8],
    max_event_bytes: usize,
    paths: &PathSet,
    mut visit: impl FnMut(usize, Result<(RawEvent<'a>, Extracted<'a>), Rejection>),
) -> Result<(), DecodeError> {
    if !paths.is_whole()
        && body.len() <= ONE_PASS_MAX_BYTES
        && let Ok(text) = std::str::from_utf8(body)
    {
        match scan::payload(text, &paths.root, max_event_bytes) {
            Ok(scan::Payload::Event(raw, ev)) => {
                visit(0, ev.map(|ev| (raw, ev)));
                return Ok(());
            }
            Ok(scan::Payload::List(items)) => {
                for (i, item) in items {
                    visit(i, item);
                }
                return Ok(());
            }
            Err(scan::Unsure) => {}
        }
    }
    if let Some((raw, ev)) = single_event_walked(body, max_event_bytes, paths) {
        visit(0, ev.map(|ev| (raw, ev)));
        return Ok(());
    }
    for_each_raw(body, max_event_bytes, |item| match item {
        Ok(raw) => visit(raw.index, raw.scan(paths).map(|ev| (raw, ev))),
        Err((i, r)) => visit(i, Err(r)),
    })
}

/// The common payload of a JSON-lines file, one `Event` object, read in one pass (checking,
/// probing its `kind` and building the paths at once) instead of three. `None` when the payload
/// is anything else, or anything unusual (`items` present, a repeated `kind` or `apiVersion`,
/// a syntax error, over the size limit): the general walk then decides exactly as
/// [`audit::decode`] does.
pub fn single_event<'a>(
    body: &'a [u8],
    max_event_bytes: usize,
    paths: &PathSet,
) -> Option<(RawEvent<'a>, Result<Extracted<'a>, Rejection>)> {
    if paths.is_whole() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    match scan::payload(text, &paths.root, max_event_bytes) {
        Ok(scan::Payload::Event(raw, ev)) => Some((raw, ev)),
        Ok(scan::Payload::List(_)) => None,
        Err(scan::Unsure) => single_event_walked(body, max_event_bytes, paths),
    }
}

/// [`audit::validate`]'s answer with each item of an `Event` or `EventList` read once (only its
/// `stageTimestamp` built); anything else or unusual is walked by [`audit::validate`] itself.
/// What ingest and the sources check a payload with before they take it.
pub fn validate(body: &[u8], max_event_bytes: usize) -> Result<audit::Validated, DecodeError> {
    match validated(body, max_event_bytes) {
        Some(v) => Ok(v),
        None => audit::validate(body, max_event_bytes),
    }
}

/// [`audit::validate`] in one pass: each item read once, only its `stageTimestamp` built.
/// `None` when the scanner leaves the payload to serde_json (see [`scan`]).
pub(crate) fn validated(body: &[u8], max_event_bytes: usize) -> Option<audit::Validated> {
    static TIME: std::sync::LazyLock<PathSet> = std::sync::LazyLock::new(|| {
        let mut s = PathSet::default();
        s.add(&["stageTimestamp"]);
        s
    });
    let text = std::str::from_utf8(body).ok()?;
    let mut out = audit::Validated::default();
    let mut take = |i, r: Result<(), Rejection>| match r {
        Ok(()) => out.accepted += 1,
        Err(r) => out.rejected.push((i, r)),
    };
    match scan::payload(text, &TIME.root, max_event_bytes).ok()? {
        scan::Payload::Event(_, ev) => take(0, ev.map(drop)),
        scan::Payload::List(items) => {
            for (i, item) in items {
                take(i, item.map(drop));
            }
        }
    }
    Some(out)
}

/// [`single_event`] read by serde_json, for what the scanner leaves to it.
fn single_event_walked<'a>(
    body: &'a [u8],
    max_event_bytes: usize,
    paths: &PathSet,
) -> Option<(RawEvent<'a>, Result<Extracted<'a>, Rejection>)> {
    if paths.is_whole() {
        return None;
    }
    let text = std::str::from_utf8(body)
        .ok()?
        .trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    if !text.starts_with('{') || text.len() > max_event_bytes {
        return None;
    }
    let mut probe = Probe::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Root {
        node: &paths.root,
        probe: &mut probe,
    }
    .deserialize(&mut de)
    .ok()?;
    de.end().ok()?;
    let is_event = matches!(&probe.kind, Some(Value::String(k)) if k == "Event");
    let audit_version = match &probe.api_version {
        Some(Value::String(v)) => v.starts_with("audit.k8s.io/"),
        _ => true,
    };
    if probe.unusual || !is_event || !audit_version {
        return None;
    }
    Some((
        RawEvent { index: 0, text },
        AuditEvent::from_json(v).map(Extracted::Built),
    ))
}

/// What the root of a payload says about itself, read while it is scanned.
#[derive(Default)]
struct Probe {
    kind: Option<Value>,
    api_version: Option<Value>,
    /// `items` present, or `kind`/`apiVersion` repeated: left to the general walk.
    unusual: bool,
}

/// The root object of a payload: [`Partial`] at the root, also reading the probe's keys.
struct Root<'p, 'q> {
    node: &'p Node,
    probe: &'q mut Probe,
}

impl<'de> DeserializeSeed<'de> for Root<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Root<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an audit event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let probed = match key.as_ref() {
                "kind" => Some(&mut self.probe.kind),
                "apiVersion" => Some(&mut self.probe.api_version),
                "items" => {
                    self.probe.unusual = true;
                    None
                }
                _ => None,
            };
            if let Some(slot) = probed {
                let v: Value = map.next_value()?;
                if slot.is_some() {
                    self.probe.unusual = true;
                }
                *slot = Some(v.clone());
                if self.node.child(&key).is_some() {
                    out.insert(key.into_owned(), v);
                }
                continue;
            }
            member(&mut map, self.node, key, &mut out)?;
        }
        Ok(Value::Object(out))
    }
}

/// Reads the value of member `key` into `out` when `key` is on the trie below `node` (built as
/// far as the trie goes), skips it unbuilt otherwise.
fn member<'de, A: MapAccess<'de>>(
    map: &mut A,
    node: &Node,
    key: Cow<'de, str>,
    out: &mut Map<String, Value>,
) -> Result<(), A::Error> {
    match node.child(&key) {
        Some(child) => {
            let v = map.next_value_seed(Partial(child))?;
            out.insert(key.into_owned(), v);
        }
        None => {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(())
}

/// Builds a value keeping only the members of objects that are on the trie below `.0`.
struct Partial<'p>(&'p Node);

impl<'de> DeserializeSeed<'de> for Partial<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.whole {
            return <Value as serde::Deserialize>::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Partial<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    // Anything but an object on a path is taken whole, as serde_json's own visitor builds it.
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            member(&mut map, self.0, key, &mut out)?;
        }
        Ok(Value::Object(out))
    }
}

/// An object key, borrowed from the text unless it holds escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(text: &str, paths: &[&str]) -> Value {
        let mut set = PathSet::new();
        for p in paths {
            set.add_pointer(p);
        }
        extract(text, &set).map(|e| e.json).unwrap_or(Value::Null)
    }

    const TS: &str = r#""stageTimestamp":"2026-01-01T00:00:00Z""#;

    const EV: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stageTimestamp":"2026-01-01T00:00:00.123456Z","verb":"get"}"#;

    #[test]
    fn validate_reads_an_event_list_in_one_pass_as_decode_takes_it() {
        let big = EV.replace("\"get\"", &format!("\"{}\"", "x".repeat(500)));
        let items = format!(
            r#"{EV},3,1e400,{{"kind":"Event"}},{big},{{"stageTimestamp":"yesterday"}},{{"stageTimestamp":5}},{{"stageTimestamp":null}},{{"stageTimestamp":"2026-01-01T00:00:00Z"}},{{"stageTimestamp":1,"stageTimestamp":"2026-01-01T00:00:00Z"}},{{"stageTim\u0065stamp":"2026-01-01T00:00:00Z"}},[]"#
        );
        for (body, one_pass) in [
            (
                format!(
                    r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{items}]}}"#
                ),
                true,
            ),
            (r#"{"kind":"EventList","items":[]}"#.to_string(), true),
            (EV.to_string(), true),
            (EV.replace("2026", "20x6"), true),
            // Too large: left to the walk.
            (big.clone(), false),
        ] {
            let once = validated(body.as_bytes(), 300).is_some();
            assert_eq!(once, one_pass, "{body}");
            let d = audit::decode(body.as_bytes(), 300).unwrap();
            let v = validate(body.as_bytes(), 300).unwrap();
            assert_eq!(v.accepted, d.events.len(), "{body}");
            assert_eq!(v.rejected, d.rejected, "{body}");
        }
    }

    #[test]
    fn only_the_paths_are_built() {
        let ev = format!(
            r#"{{{TS},"verb":"get","user":{{"username":"u","groups":["a"]}},"big":[1,2,{{"x":3}}]}}"#
        );
        let v = keep(&ev, &["/user/username"]);
        assert_eq!(
            v,
            serde_json::json!({"stageTimestamp":"2026-01-01T00:00:00Z","user":{"username":"u"}})
        );
        let v = keep(&ev, &["/big/2/x", "/verb"]);
        assert_eq!(v["big"], serde_json::json!([1, 2, {"x": 3}]));
        assert_eq!(v["verb"], "get");
    }

    #[test]
    fn duplicates_escapes_and_prefixes_follow_a_full_parse() {
        let ev =
            format!(r#"{{{TS},"v\u0065rb":"a","verb":{{"x":1}},"verb":"b","o":{{"p":1,"q":2}}}}"#);
        let v = keep(&ev, &["/verb", "/o/p", "/o"]);
        assert_eq!(v["verb"], "b");
        assert_eq!(v["o"], serde_json::json!({"p":1,"q":2}));
        let mut set = PathSet::new();
        set.add_pointer("/a~1b/~0c");
        let v = extract(&format!(r#"{{{TS},"a/b":{{"~c":5,"d":6}}}}"#), &set).unwrap();
        assert_eq!(v.json["a/b"], serde_json::json!({"~c":5}));
    }

    #[test]
    fn rejections_match_a_full_parse() {
        let set = PathSet::new();
        assert_eq!(extract("[1]", &set).unwrap_err(), Rejection::NotAnObject);
        assert_eq!(
            extract(r#"{"verb":"x"}"#, &set).unwrap_err(),
            Rejection::MissingStageTimestamp
        );
        assert_eq!(
            extract(r#"{"stageTimestamp":3}"#, &set).unwrap_err(),
            Rejection::BadStageTimestamp
        );
        assert_eq!(extract(r#"{"a":"#, &set).unwrap_err(), Rejection::Malformed);
    }

    #[test]
    fn a_lone_event_is_read_in_one_pass_and_anything_else_is_left_to_the_walk() {
        let mut set = PathSet::new();
        set.add_pointer("/verb");
        let ev = format!(r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1",{TS},"verb":"get"}}"#);
        let padded = format!(" \n{ev}\r\n");
        let (raw, got) = single_event(padded.as_bytes(), 1 << 20, &set).expect("one pass");
        assert_eq!(raw.text, ev);
        assert_eq!(got.unwrap().view().str_at("verb"), Some("get"));
        for other in [
            format!(r#"{{"kind":"EventList","items":[{ev}]}}"#),
            format!(r#"{{"kind":"Event","items":3,{TS}}}"#),
            format!(r#"{{"kind":"Event","kind":"Event",{TS}}}"#),
            format!(r#"{{"kind":"Event","apiVersion":"v1",{TS}}}"#),
            format!(r#"{{{TS}}}"#),
            format!(r#"{{"kind":"Event",{TS}"#),
            format!("[{ev}]"),
        ] {
            assert!(
                single_event(other.as_bytes(), 1 << 20, &set).is_none(),
                "{other}"
            );
        }
        assert!(single_event(ev.as_bytes(), 10, &set).is_none());
        // Every way in agrees with the general walk.
        let mut seen = Vec::new();
        for_each_event(padded.as_bytes(), 1 << 20, &set, |i, r| {
            seen.push((i, r.map(|(_, e)| e.into_event().json)))
        })
        .unwrap();
        let mut walked = Vec::new();
        for_each_raw(padded.as_bytes(), 1 << 20, |r| {
            walked.push(r.map(|raw| (raw.index, raw.extract(&set).map(|e| e.json))))
        })
        .unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(walked.len(), 1);
        let Ok((i, w)) = walked.remove(0) else {
            panic!("walked")
        };
        assert_eq!((i, w), seen.remove(0));
    }

    #[test]
    fn merge_and_whole() {
        let mut a = PathSet::new();
        a.add(&["x", "y"]);
        let mut b = PathSet::new();
        b.add(&["x"]);
        a.merge(&b);
        assert_eq!(a.len(), 4);
        a.add::<&str>(&[]);
        assert!(a.is_whole());
    }
}
