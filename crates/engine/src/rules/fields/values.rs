//! Reading values out of an event's JSON, shared by the extractors: paths, RFC 6901 pointers,
//! the plugin's stringification, indexes and query parameters.

use std::borrow::Cow;

use serde_json::Value;

use crate::json::JsonRef;

/// A JSON value as the plugin stringifies it ([`JsonRef::stringify`]).
pub fn stringify(v: &Value) -> Cow<'_, str> {
    JsonRef::Value(v).stringify()
}

/// One step down: member `seg` of an object, or element `seg` of an array.
fn step<'e>(cur: JsonRef<'e>, seg: &str) -> Option<JsonRef<'e>> {
    match cur.forced() {
        cur @ JsonRef::Value(Value::Array(_)) => cur.at(seg.parse::<usize>().ok()?),
        other => other.get(seg),
    }
}

/// The value at a path of object keys (or array indexes).
pub(super) fn walk<'e>(j: JsonRef<'e>, path: &[&str]) -> Option<JsonRef<'e>> {
    let mut cur = j;
    for seg in path {
        cur = step(cur, seg)?;
    }
    Some(cur)
}

/// The array at an RFC 6901 pointer.
pub(super) fn array<'e>(j: JsonRef<'e>, p: &str) -> Option<&'e Vec<Value>> {
    json_pointer(j, p)?.as_array()
}

/// Elements of an array, or only element `index` of it.
pub(super) fn indexed(a: &[Value], index: Option<usize>) -> &[Value] {
    match index {
        None => a,
        Some(i) => a.get(i..i + 1).unwrap_or(&[]),
    }
}

/// Walks an RFC 6901 pointer; the leading `/` is optional and an empty pointer is the document.
pub fn json_pointer<'e>(j: JsonRef<'e>, key: &str) -> Option<JsonRef<'e>> {
    let key = key.strip_prefix('/').unwrap_or(key);
    if key.is_empty() {
        return Some(j);
    }
    let mut cur = j;
    for seg in key.split('/') {
        let seg: Cow<'_, str> = if seg.contains('~') {
            Cow::Owned(seg.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(seg)
        };
        cur = step(cur, &seg)?;
    }
    Some(cur)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi * 16 + lo);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// First value of query parameter `key` in `uri` (`+` and `%xx` decoded).
pub fn uri_param(uri: &str, key: &str) -> Option<String> {
    let (_, query) = uri.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if url_decode(k).as_deref() == Some(key) {
            return url_decode(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_params_and_pointers() {
        assert_eq!(uri_param("/x?a=1&b=2+3&a=4", "a").as_deref(), Some("1"));
        assert_eq!(uri_param("/x?a=1&b=2+3", "b").as_deref(), Some("2 3"));
        assert_eq!(uri_param("/x?c=%2Fetc%2F", "c").as_deref(), Some("/etc/"));
        assert_eq!(uri_param("/x?flag&b=1", "flag").as_deref(), Some(""));
        assert_eq!(uri_param("/x", "a"), None);
        assert_eq!(uri_param("/x?a=%zz", "a"), None);
        let j = serde_json::json!({"a/b": {"~c": [10, 20]}});
        let at = |p| json_pointer(JsonRef::Value(&j), p).map(|v| v.to_value().into_owned());
        assert_eq!(at("/a~1b/~0c/1"), Some(serde_json::json!(20)));
        assert_eq!(at("a~1b/~0c/0"), Some(serde_json::json!(10)));
        assert_eq!(at(""), Some(j.clone()));
        assert_eq!(at("/a~1b/~0c/x"), None);
    }
}
