//! Borrowed JSON: what lazy extraction builds of an event ([`Doc`]) and the one read-only view
//! the field extractors read through ([`JsonRef`]), over it or over a `serde_json::Value`.
//!
//! Why: building the members rules read as `serde_json::Value`s allocated every string and
//! every object (its keys hashed into an `IndexMap`), then freed them all, for each event; that
//! was half of what evaluating an event cost. A [`Doc`] keeps plain strings as slices of the
//! event's text and the objects on the rules' paths as short lists (a handful of members each,
//! found by comparing keys). Whatever else a path takes whole (arrays, numbers, escaped strings)
//! is still built by serde_json, so it reads exactly as before.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde_json::{Map, Value};

/// A member of an event as lazy extraction builds it, borrowing from the event's text.
#[derive(Clone, Debug)]
pub enum Doc<'a> {
    /// A string without escapes: its text between the quotes.
    Str(&'a str),
    /// An object on a path: only its members on the path, in the order they first appeared;
    /// a repeated key holds its last value (as a full parse keeps them).
    Object(Vec<(Cow<'a, str>, Doc<'a>)>),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// Anything else taken whole (an array, a number, an object below a path's end, a string
    /// with escapes): its text, built by serde_json the first time it is read, so a member no
    /// evaluated condition reads is never built. Whoever makes one vouches that serde_json
    /// builds the text (the scanner builds the doubtful ones at once: [`Doc::built`]).
    Raw(&'a str, OnceCell<Box<Value>>),
}

/// The values the literals read as.
static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);
static NULL: Value = Value::Null;

impl<'a> Doc<'a> {
    /// A member taken whole whose text serde_json built already.
    pub fn built(text: &'a str, v: Value) -> Doc<'a> {
        Doc::Raw(text, OnceCell::from(Box::new(v)))
    }

    /// Sets member `key` of an object's members: replaces the value of an existing key in
    /// place (a full parse keeps the first position and the last value), else appends.
    /// `room` is how many members the object can hold at most (its keys on the paths): the
    /// list is sized once, at its first member.
    pub fn insert(
        members: &mut Vec<(Cow<'a, str>, Doc<'a>)>,
        room: usize,
        key: Cow<'a, str>,
        v: Doc<'a>,
    ) {
        match members.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = v,
            None => {
                if members.capacity() == 0 {
                    members.reserve_exact(room.max(1));
                }
                members.push((key, v))
            }
        }
    }

    /// The view of this member.
    pub fn view(&self) -> JsonRef<'_> {
        match self {
            Doc::Str(s) => JsonRef::Str(s),
            Doc::Object(m) => JsonRef::Object(m),
            Doc::Bool(true) => JsonRef::Value(&TRUE),
            Doc::Bool(false) => JsonRef::Value(&FALSE),
            Doc::Null => JsonRef::Value(&NULL),
            Doc::Raw(text, v) => match v.get() {
                Some(built) => JsonRef::Value(built),
                None => JsonRef::Raw(text, v),
            },
        }
    }

    /// The same member as serde_json builds it.
    pub fn into_value(self) -> Value {
        match self {
            Doc::Str(s) => Value::String(s.to_string()),
            Doc::Object(m) => {
                let mut out = Map::with_capacity(m.len());
                for (k, v) in m {
                    out.insert(k.into_owned(), v.into_value());
                }
                Value::Object(out)
            }
            Doc::Bool(b) => Value::Bool(b),
            Doc::Null => Value::Null,
            Doc::Raw(text, v) => v.into_inner().map_or_else(|| build(text), |v| *v),
        }
    }
}

/// Builds a [`Doc::Raw`]'s text. Its maker vouched that serde_json builds it; `null` would
/// only stand in for a text that broke that promise.
fn build(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The strings of an array of strings without escapes (`[ "a" , "b" ]`, any JSON whitespace),
/// borrowed from `text`; `None` when it is anything else.
fn plain_strings(text: &str) -> Option<Vec<Cow<'_, str>>> {
    fn ws(b: &[u8], mut i: usize) -> usize {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = b.get(i) {
            i += 1;
        }
        i
    }
    let b = text.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b']') {
        return (ws(b, i + 1) == b.len()).then_some(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let from = i + 1;
        let len = b
            .get(from..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        let end = from + len;
        if b[end] != b'"' {
            return None;
        }
        // Both ends are ASCII quotes, so they are character boundaries.
        out.push(Cow::Borrowed(text.get(from..end)?));
        i = ws(b, end + 1);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b']') => return (ws(b, i + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

/// A read-only view of a JSON value: a `serde_json::Value`, or a member of a [`Doc`].
#[derive(Clone, Copy, Debug)]
pub enum JsonRef<'e> {
    /// A value serde_json built.
    Value(&'e Value),
    /// A string without escapes, borrowed from the text.
    Str(&'e str),
    /// An object's members on the paths read.
    Object(&'e [(Cow<'e, str>, Doc<'e>)]),
    /// A member taken whole and not built yet ([`Doc::Raw`]): built the first time it is read
    /// as a value, while [`JsonRef::strings`] reads an array of plain strings from its text.
    Raw(&'e str, &'e OnceCell<Box<Value>>),
}

impl<'e> JsonRef<'e> {
    /// The same member, built if it was [`JsonRef::Raw`].
    pub fn forced(self) -> JsonRef<'e> {
        match self {
            JsonRef::Raw(text, v) => JsonRef::Value(v.get_or_init(|| Box::new(build(text)))),
            other => other,
        }
    }

    /// The elements of an array as the k8saudit plugin stringifies them (see
    /// [`JsonRef::stringify`]); `None` for anything else. An array of strings without escapes
    /// not built yet (`user.groups`, `sourceIPs`) is read from its text, borrowing each string,
    /// without building it.
    pub fn strings(self) -> Option<Vec<Cow<'e, str>>> {
        if let JsonRef::Raw(text, _) = self
            && let Some(items) = plain_strings(text)
        {
            return Some(items);
        }
        let items = self.forced().as_array()?;
        Some(
            items
                .iter()
                .map(|v| JsonRef::Value(v).stringify())
                .collect(),
        )
    }

    /// Member `key` of an object (`None` for anything else).
    pub fn get(self, key: &str) -> Option<JsonRef<'e>> {
        match self.forced() {
            JsonRef::Value(v) => v.as_object()?.get(key).map(JsonRef::Value),
            JsonRef::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v.view()),
            JsonRef::Str(_) | JsonRef::Raw(..) => None,
        }
    }

    /// Element `i` of an array (`None` for anything else).
    pub fn at(self, i: usize) -> Option<JsonRef<'e>> {
        match self.forced() {
            JsonRef::Value(Value::Array(a)) => a.get(i).map(JsonRef::Value),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(self) -> Option<&'e str> {
        match self.forced() {
            JsonRef::Value(v) => v.as_str(),
            JsonRef::Str(s) => Some(s),
            JsonRef::Object(_) | JsonRef::Raw(..) => None,
        }
    }

    /// The array, if this is one (arrays are always built by serde_json).
    pub fn as_array(self) -> Option<&'e Vec<Value>> {
        match self.forced() {
            JsonRef::Value(v) => v.as_array(),
            _ => None,
        }
    }

    /// True for `null`.
    pub fn is_null(self) -> bool {
        matches!(self.forced(), JsonRef::Value(Value::Null))
    }

    /// The value as the k8saudit plugin stringifies it: strings raw, anything else compact
    /// JSON.
    pub fn stringify(self) -> Cow<'e, str> {
        match self.forced() {
            JsonRef::Str(s) => Cow::Borrowed(s),
            JsonRef::Value(Value::String(s)) => Cow::Borrowed(s.as_str()),
            JsonRef::Value(v) => Cow::Owned(v.to_string()),
            JsonRef::Object(_) | JsonRef::Raw(..) => {
                Cow::Owned(self.to_value().into_owned().to_string())
            }
        }
    }

    /// The value as serde_json builds it (borrowed when it is one already).
    pub fn to_value(self) -> Cow<'e, Value> {
        match self.forced() {
            JsonRef::Value(v) => Cow::Borrowed(v),
            JsonRef::Raw(text, _) => Cow::Owned(build(text)),
            JsonRef::Str(s) => Cow::Owned(Value::String(s.to_string())),
            JsonRef::Object(m) => {
                let mut out = Map::with_capacity(m.len());
                for (k, v) in m {
                    out.insert(k.to_string(), v.view().to_value().into_owned());
                }
                Cow::Owned(Value::Object(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_read_from_the_text_match_the_built_array() {
        for text in [
            r#"["system:masters","system:authenticated"]"#,
            " [ \"a\" ,\n\t\"b c\" ] ",
            "[]",
            "[ ]",
            r#"["é", ""]"#,
            // Not plain: read from the built value instead.
            r#"["a\"b", "c"]"#,
            r#"["a", 1, null, {"x": [true]}]"#,
            r#"["a"] x"#,
            r#"{"a": "b"}"#,
            "1.5e3",
            r#""plain""#,
        ] {
            let built: Option<Value> = serde_json::from_str(text.trim()).ok();
            let cell = OnceCell::new();
            let lazy = JsonRef::Raw(text, &cell).strings();
            let want = built.as_ref().and_then(|v| JsonRef::Value(v).strings());
            if built.is_some() {
                assert_eq!(lazy, want, "{text}");
            }
        }
        // A plain array is read without building it, and borrowed.
        let cell = OnceCell::new();
        let got = JsonRef::Raw(r#"["x", "y"]"#, &cell).strings().unwrap();
        assert!(cell.get().is_none(), "built although plain");
        assert!(got.iter().all(|s| matches!(s, Cow::Borrowed(_))));
        assert_eq!(got, ["x", "y"]);
        assert_eq!(plain_strings(r#"["a" "b"]"#), None);
        assert_eq!(plain_strings(r#"["a",]"#), None);
        assert_eq!(plain_strings(r#"["a"#), None);
    }

    #[test]
    fn a_doc_reads_and_converts_as_the_value_it_stands_for() {
        let mut m = Vec::new();
        Doc::insert(&mut m, 2, "verb".into(), Doc::Str("a"));
        Doc::insert(
            &mut m,
            2,
            "n".into(),
            Doc::Raw(r#"[1, {"x": "y"}]"#, OnceCell::new()),
        );
        Doc::insert(&mut m, 2, "verb".into(), Doc::Str("b"));
        let doc = Doc::Object(m);
        let value = serde_json::json!({"verb": "b", "n": [1, {"x": "y"}]});
        assert_eq!(doc.view().to_value().into_owned(), value);
        assert_eq!(doc.view().stringify(), value.to_string());
        assert_eq!(doc.clone().into_value(), value);
        let built = Doc::built("[1]", serde_json::json!([1]));
        assert_eq!(built.view().to_value().into_owned(), serde_json::json!([1]));
        for (d, v) in [(Doc::Bool(true), true.into()), (Doc::Null, Value::Null)] {
            assert_eq!(d.view().to_value().into_owned(), v);
            assert_eq!(d.into_value(), v);
        }
        for v in [doc.view(), JsonRef::Value(&value)] {
            assert_eq!(v.get("verb").and_then(JsonRef::as_str), Some("b"));
            assert_eq!(
                v.get("n").and_then(|n| n.at(1)).map(|x| x.stringify()),
                Some(r#"{"x":"y"}"#.into())
            );
            assert!(v.get("missing").is_none());
            assert!(v.get("verb").and_then(|s| s.get("x")).is_none());
            assert_eq!(
                v.get("n").and_then(JsonRef::as_array).map(Vec::len),
                Some(2)
            );
        }
    }
}
