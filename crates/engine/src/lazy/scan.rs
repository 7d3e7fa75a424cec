//! The one-pass reader: a strict JSON scanner over a payload's text that skips every member
//! off the [`PathSet`](super::PathSet)'s paths (checking its syntax, building nothing) and
//! builds the members on them, and that reads an `EventList`'s items, each one once, noting
//! where each begins and ends so its raw text stays at hand.
//!
//! The scanner is the fast path only: it never decides that a text is wrong. Whatever it does
//! not take as plainly valid (a syntax error, an escaped key, a key repeated where it matters,
//! nesting near serde_json's recursion limit, a number serde_json refuses to build) makes it
//! give up ([`Unsure`]), and the caller reads the text again with serde_json, which decides
//! exactly as before. What it accepts, serde_json accepts too, and builds the same values:
//! members it builds whole are handed to serde_json (strings without escapes and literals
//! excepted, built here the way serde_json builds them).

use std::borrow::Cow;
use std::cell::OnceCell;

use super::{Extracted, Node, RawEvent};
use crate::audit::Rejection;
use crate::json::Doc;

/// The scanner gave up: serde_json decides instead.
#[derive(Debug)]
pub(crate) struct Unsure;

type Scan<T> = Result<T, Unsure>;

/// Nesting the scanner builds at most (serde_json refuses 128 levels); deeper, it gives up.
const MAX_BUILT_DEPTH: usize = 100;

/// What the root of a payload is, as far as the one-pass reader can tell.
pub(crate) enum Payload<'a> {
    /// One `Event`: its text, and it with only the members on the paths built.
    Event(RawEvent<'a>, Result<Extracted<'a>, Rejection>),
    /// An `EventList`: its items.
    List(Items<'a>),
}

/// Reads a payload whose root is an object, `Event` or `EventList`, in one pass; see the
/// module's doc. Items longer than `max_event_bytes` are dropped as too large.
pub(crate) fn payload<'a>(text: &'a str, node: &Node, max_event_bytes: usize) -> Scan<Payload<'a>> {
    let text = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    let mut s = Scanner::new(text);
    let mut root = Root::default();
    let v = s.object(node, 0, Some(&mut root), max_event_bytes)?;
    s.ws();
    if s.pos != s.b.len() {
        return Err(Unsure);
    }
    if let Some(v) = root.api_version
        && !v.starts_with("audit.k8s.io/")
    {
        return Err(Unsure);
    }
    match (root.kind, root.items) {
        (Some("Event"), None) if text.len() <= max_event_bytes => Ok(Payload::Event(
            RawEvent { index: 0, text },
            Extracted::scanned(v),
        )),
        (Some("EventList"), Some(items)) => Ok(Payload::List(items)),
        _ => Err(Unsure),
    }
}

/// One event's text, the members on the paths built: what `serde_json` with
/// [`super::extract`]'s visitor builds, or [`Unsure`].
pub(crate) fn event<'a>(text: &'a str, node: &Node) -> Scan<Result<Extracted<'a>, Rejection>> {
    let mut s = Scanner::new(text);
    s.ws();
    let v = s.object(node, 0, None, 0)?;
    s.ws();
    if s.pos != s.b.len() {
        return Err(Unsure);
    }
    Ok(Extracted::scanned(v))
}

/// The payload's own members, read at the root.
#[derive(Default)]
struct Root<'a> {
    kind: Option<&'a str>,
    api_version: Option<&'a str>,
    items: Option<Items<'a>>,
}

/// An `EventList`'s items: each one's position, and its raw text and event or why it was
/// dropped.
pub(crate) type Items<'a> = Vec<(usize, Result<(RawEvent<'a>, Extracted<'a>), Rejection>)>;

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    /// Set by a `\u` escape (a lone surrogate is refused by serde_json), and by a number with
    /// an exponent or over 300 digits (it may not fit an `f64`): a value skipped with any of
    /// them is built at once (and given up on if serde_json refuses it), never lazily.
    doubtful: bool,
    /// [`Scanner::skip`]'s stack of open containers, kept between skips.
    open: Vec<bool>,
}

/// Digits a number may have and still fit an `f64` whatever they are (`f64::MAX` is about
/// 1.8e308).
const SAFE_DIGITS: usize = 300;

/// True for the bytes that end a run of plain string bytes: `"`, `\` and control characters.
const fn stops() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
}
static STOP: [bool; 256] = stops();

/// The end of the run of plain string bytes from `pos`: the position of the first `"`, `\\` or
/// control character (or the end of `b`). Strings are most of an event's bytes.
fn plain_run(b: &[u8], mut pos: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of x86_64, so every CPU this code runs on has it.
        pos = unsafe { plain_run_sse2(b, pos) };
        // It stops at a stop byte, or with fewer than sixteen bytes left.
        if pos + 16 <= b.len() {
            return pos;
        }
    }
    // Eight bytes at a time while none of them stops the run.
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(pos..pos + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        let quote = x ^ (ONES * u64::from(b'"'));
        let slash = x ^ (ONES * u64::from(b'\\'));
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (slash.wrapping_sub(ONES) & !slash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        let found = found & HIGH;
        if found != 0 {
            return pos + (found.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while let Some(&c) = b.get(pos) {
        if STOP[c as usize] {
            break;
        }
        pos += 1;
    }
    pos
}

/// [`plain_run`] sixteen bytes at a time, up to the last sixteen (the caller finishes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn plain_run_sse2(b: &[u8], mut pos: usize) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let quote = _mm_set1_epi8(b'"' as i8);
    let slash = _mm_set1_epi8(b'\\' as i8);
    let ctrl = _mm_set1_epi8(0x1f);
    while let Some(chunk) = b.get(pos..pos + 16) {
        // SAFETY: `chunk` is 16 readable bytes, and an unaligned load needs no more.
        let x = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
        // A byte at most 0x1f is its own maximum with 0x1f.
        let stop = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, slash)),
            _mm_cmpeq_epi8(_mm_max_epu8(x, ctrl), ctrl),
        );
        let mask = _mm_movemask_epi8(stop) as u32;
        if mask != 0 {
            return pos + mask.trailing_zeros() as usize;
        }
        pos += 16;
    }
    pos
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            b: text.as_bytes(),
            pos: 0,
            doubtful: false,
            open: Vec::new(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Scan<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// Skips the rest of a string whose opening quote was read; true when it held an escape.
    fn string(&mut self) -> Scan<bool> {
        let mut escaped = false;
        loop {
            self.pos = plain_run(self.b, self.pos);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.pos += 1
                        }
                        Some(b'u') => {
                            self.doubtful = true;
                            let hex = self.b.get(self.pos + 1..self.pos + 5).ok_or(Unsure)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Unsure);
                            }
                            self.pos += 5;
                        }
                        _ => return Err(Unsure),
                    }
                }
                // A control character or the end of the text.
                _ => return Err(Unsure),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - from
    }

    /// Skips a number, with serde_json's grammar.
    fn number(&mut self) -> Scan<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(Unsure);
                }
            }
            Some(b'1'..=b'9') => {
                if self.digits() > SAFE_DIGITS {
                    self.doubtful = true;
                }
            }
            _ => return Err(Unsure),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            match self.digits() {
                0 => return Err(Unsure),
                n if n > SAFE_DIGITS => self.doubtful = true,
                _ => {}
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.doubtful = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Unsure);
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Unsure)
        }
    }

    /// Skips one value (leading whitespace read), checking its syntax; returns how deeply it
    /// nests (0 for a scalar).
    fn skip(&mut self) -> Scan<usize> {
        // The stack of open containers (true for an object) is the scanner's own, so that it is
        // allocated once per payload, not once per skipped container. Iterative: any depth.
        let mut open = std::mem::take(&mut self.open);
        open.clear();
        let skipped = self.skip_with(&mut open);
        self.open = open;
        skipped
    }

    fn skip_with(&mut self, open: &mut Vec<bool>) -> Scan<usize> {
        let mut deepest = 0;
        loop {
            // A value.
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    self.string()?;
                }
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        open.push(true);
                        deepest = deepest.max(open.len());
                        self.key_colon()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        open.push(false);
                        deepest = deepest.max(open.len());
                        continue;
                    }
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => self.number()?,
            }
            // After a value: the next member or element, or the end of containers.
            loop {
                let Some(&object) = open.last() else {
                    return Ok(deepest);
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.ws();
                        if object {
                            self.key_colon()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        open.pop();
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return Err(Unsure),
                }
            }
        }
    }

    /// Skips `"key" :` and the whitespace after it.
    fn key_colon(&mut self) -> Scan<()> {
        self.eat(b'"')?;
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Ok(())
    }

    /// Builds one whole value (leading whitespace read) at nesting `depth`.
    /// Strings without escapes and literals are built here; anything else is left for
    /// serde_json to build when it is first read ([`Doc::Raw`]), or built at once when its
    /// text holds anything serde_json might refuse (`doubtful`).
    fn whole(&mut self, depth: usize) -> Scan<Doc<'a>> {
        let from = self.pos;
        self.doubtful = false;
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                if !self.string()? {
                    return Ok(Doc::Str(&self.text[from + 1..self.pos - 1]));
                }
            }
            Some(b't') => return self.literal(b"true").map(|()| Doc::Bool(true)),
            Some(b'f') => return self.literal(b"false").map(|()| Doc::Bool(false)),
            Some(b'n') => return self.literal(b"null").map(|()| Doc::Null),
            _ => {
                if depth + self.skip()? > MAX_BUILT_DEPTH {
                    return Err(Unsure);
                }
            }
        }
        let text = &self.text[from..self.pos];
        if !self.doubtful {
            return Ok(Doc::Raw(text, OnceCell::new()));
        }
        serde_json::from_str(text)
            .map(|v| Doc::built(text, v))
            .map_err(|_| Unsure)
    }

    /// Reads an object key (its opening quote next), unescaped.
    fn key(&mut self) -> Scan<Cow<'a, str>> {
        let from = self.pos;
        self.eat(b'"')?;
        if self.string()? {
            let k: String = serde_json::from_str(&self.text[from..self.pos]).map_err(|_| Unsure)?;
            Ok(k.into())
        } else {
            Ok(self.text[from + 1..self.pos - 1].into())
        }
    }

    /// Builds an object (its `{` next) keeping only the members on the trie below `node`,
    /// as [`super::extract`]'s visitor does. At a payload's root, `root` also notes `kind` and
    /// `apiVersion`, and reads an `EventList`'s `items` (each item over `node` again).
    fn object(
        &mut self,
        node: &Node,
        depth: usize,
        mut root: Option<&mut Root<'a>>,
        max_event_bytes: usize,
    ) -> Scan<Doc<'a>> {
        if depth > MAX_BUILT_DEPTH {
            return Err(Unsure);
        }
        self.eat(b'{')?;
        // At most one member per key on a path (a repeated key replaces its value).
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Doc::Object(out));
        }
        loop {
            let key = self.key()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let mut read = false;
            if let Some(root) = root.as_deref_mut() {
                read = self.root_member(root, &key, node, max_event_bytes)?;
            }
            if !read {
                match node.child(&key) {
                    Some(child) => {
                        let v = if !child.whole && self.peek() == Some(b'{') {
                            self.object(child, depth + 1, None, 0)?
                        } else {
                            self.whole(depth + 1)?
                        };
                        Doc::insert(&mut out, node.children.len(), key, v);
                    }
                    None => {
                        self.skip()?;
                    }
                }
            }
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Doc::Object(out));
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// At a payload's root: notes `kind` and `apiVersion` (plain strings only; the value is
    /// then read as any other member), or reads an `EventList`'s items whole (true: the value
    /// was consumed).
    fn root_member(
        &mut self,
        root: &mut Root<'a>,
        key: &str,
        node: &Node,
        max_event_bytes: usize,
    ) -> Scan<bool> {
        let slot = match key {
            "kind" => &mut root.kind,
            "apiVersion" => &mut root.api_version,
            "items" => {
                if root.items.is_some() || root.kind != Some("EventList") {
                    return Err(Unsure);
                }
                root.items = Some(self.items(node, max_event_bytes)?);
                return Ok(true);
            }
            _ => return Ok(false),
        };
        if slot.is_some() || self.peek() != Some(b'"') {
            return Err(Unsure);
        }
        let from = self.pos;
        self.pos += 1;
        if self.string()? {
            return Err(Unsure);
        }
        *slot = Some(&self.text[from + 1..self.pos - 1]);
        self.pos = from;
        Ok(false)
    }

    /// Reads an `EventList`'s items (the array next), each object built over `node` as
    /// [`super::extract`] builds it; anything else is decided by a full parse, as there.
    fn items(&mut self, node: &Node, max_event_bytes: usize) -> Scan<Items<'a>> {
        self.eat(b'[')?;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            let index = out.len();
            let from = self.pos;
            let object = self.peek() == Some(b'{');
            let built = if object {
                // An item the scanner is unsure of is skipped (its syntax checked), and built
                // by serde_json below: the others keep the one pass.
                self.object(node, 0, None, 0).ok()
            } else {
                None
            };
            if built.is_none() {
                self.pos = from;
                self.skip()?;
            }
            let text = &self.text[from..self.pos];
            let item = if text.len() > max_event_bytes {
                Err(Rejection::TooLarge)
            } else {
                let ev = match built {
                    Some(v) => Extracted::scanned(v),
                    None if object => super::extract_walked(text, node).map(Extracted::Built),
                    None => serde_json::from_str(text)
                        .map_err(|_| Rejection::Malformed)
                        .and_then(crate::audit::AuditEvent::from_json)
                        .map(Extracted::Built),
                };
                ev.map(|ev| (RawEvent { index, text }, ev))
            };
            out.push((index, item));
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(out);
                }
                _ => return Err(Unsure),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PathSet, extract_walked, for_each_raw};
    use super::*;

    fn paths(list: &[&str]) -> PathSet {
        let mut set = PathSet::new();
        for p in list {
            set.add_pointer(p);
        }
        set
    }

    const TS: &str = r#""stageTimestamp":"2026-01-01T00:00:00Z""#;

    /// Texts the scanner must build exactly as serde_json does, or leave to it.
    fn events() -> Vec<String> {
        let mut out: Vec<String> = [
            r#"{"verb":"get","user":{"username":"u","groups":["a","b"]},"o":{"p":1,"q":[{"x":2}]}}"#,
            r#"{"verb":"g\u0065t","v\u0065rb":"x","user":{},"o":null}"#,
            r#"{"verb":"a","verb":{"x":1},"verb":"b","o":{"p":1,"p":2.5e3}}"#,
            r#"{ "verb" : "esc \" \\ \/ \n \t \u00e9 \ud83d\ude00" , "o" : { "p" : [ ] , "q" : { } } }"#,
            r#"{"verb":-0.5E+2,"o":{"p":123456789012345678901234567890,"q":1e400}}"#,
            r#"{"verb":"\ud800","o":{"p":true,"q":false,"r":null}}"#,
            r#"{"unread":[[[[{"a":[1,-2,3.5,"\u0041"]}]]]],"verb":"é 漢 😀"}"#,
            r#"{"verb":"a",}"#,
            r#"{"verb":01}"#,
            r#"{"verb":"a" "o":1}"#,
            r#"{"verb":"tab	inside"}"#,
            r#"{"verb":"a"} x"#,
            r#"{"verb":tru}"#,
            r#"{"verb":"\x"}"#,
            r#"{"unread":[1.],"verb":"a"}"#,
            r#"{"unread":{"a" 1},"verb":"a"}"#,
            r#"{"verb":"a""#,
            r#"{"verb":"#,
        ]
        .iter()
        .map(|e| e.replacen('{', &format!("{{{TS},"), 1).replace(",}", "}"))
        .collect();
        out.push(r#"{"verb":"get"}"#.into());
        out.push(format!(
            r#"{{{TS},"o":{{"p":{}1{}}}}}"#,
            "[".repeat(120),
            "]".repeat(120)
        ));
        out.push(format!(
            r#"{{{TS},"u":{}1{},"verb":"v"}}"#,
            "[".repeat(300),
            "]".repeat(300)
        ));
        out.push(format!(r#"{{{TS},"verb":"a\"b"}}"#));
        out
    }

    #[test]
    fn builds_what_serde_json_builds_or_leaves_it_to_it() {
        for set in [
            paths(&["/verb", "/user/username", "/o/p", "/o/q/0/x"]),
            paths(&["/verb", "/o"]),
            paths(&["/user", "/unread/0"]),
        ] {
            for text in events() {
                let walked = extract_walked(&text, &set.root);
                if let Ok(got) = event(&text, &set.root) {
                    assert_eq!(got.map(Extracted::into_event), walked, "{text}");
                }
                assert_eq!(super::super::extract(&text, &set), walked, "{text}");
            }
        }
    }

    #[test]
    fn plain_runs_stop_where_a_byte_by_byte_scan_stops() {
        let naive = |b: &[u8], from: usize| {
            (from..b.len())
                .find(|&i| STOP[b[i] as usize])
                .unwrap_or(b.len())
        };
        for len in 0..70 {
            for at in 0..=len {
                for stop in [b'"', b'\\', 0x00, 0x1f, 0x20, 0x7f, 0x80, 0xff] {
                    let mut b = vec![b'x'; len];
                    if at < len {
                        b[at] = stop;
                    }
                    for from in [0, 1, 7, 17] {
                        let from = from.min(len);
                        assert_eq!(
                            plain_run(&b, from),
                            naive(&b, from),
                            "len {len} stop {stop:#x} at {at} from {from}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn strings_of_every_length_stop_at_the_right_byte() {
        let set = paths(&["/verb"]);
        for n in 0..40 {
            for tail in ["", "\\\"", "\\u0041", "é"] {
                let v = format!("{}{tail}{}", "x".repeat(n), "y".repeat(n % 9));
                let text = format!(r#"{{{TS},"verb":"{v}","a":"{v}"}}"#);
                let got = event(&text, &set.root)
                    .expect("plain JSON")
                    .expect("an event");
                assert!(matches!(got, Extracted::Scanned { .. }), "{text}");
                assert_eq!(
                    Ok(got.into_event()),
                    extract_walked(&text, &set.root),
                    "{text}"
                );
            }
        }
    }

    /// A list read in one pass gives each item as the general walk does.
    fn agrees(body: &str, set: &PathSet, max: usize) {
        let mut one = Vec::new();
        let r = super::super::for_each_event(body.as_bytes(), max, set, |i, it| {
            one.push((
                i,
                it.map(|(raw, ev)| (raw.index, raw.text, ev.into_event())),
            ))
        });
        let mut walked = Vec::new();
        let w = for_each_raw(body.as_bytes(), max, |it| match it {
            Ok(raw) => walked.push((
                raw.index,
                extract_walked(raw.text, &set.root)
                    .or_else(|r| match r {
                        // Not an object: decided by a full parse either way.
                        Rejection::Malformed | Rejection::NotAnObject => {
                            super::super::extract(raw.text, &PathSet::whole())
                        }
                        r => Err(r),
                    })
                    .map(|ev| (raw.index, raw.text, ev)),
            )),
            Err((i, r)) => walked.push((i, Err(r))),
        });
        assert_eq!(r, w, "{body}");
        assert_eq!(one, walked, "{body}");
    }

    #[test]
    fn event_lists_are_read_once_with_the_same_items_and_rejections() {
        let set = paths(&["/verb", "/user/username", "/o/p"]);
        let items = events();
        let list = |items: &[String]| {
            format!(
                r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{"x":[1,{{}}]}},"items":[{}]}}"#,
                items.join(",\n ")
            )
        };
        // Only the well-formed texts: one bad item makes the whole body malformed.
        let good: Vec<String> = items
            .into_iter()
            .filter(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok())
            .chain([
                "3".into(),
                "[1]".into(),
                "1e400".into(),
                r#"{"kind":"Event"}"#.into(),
                format!(r#"{{{TS},"verb":"{}"}}"#, "x".repeat(300)),
                r#"{"stageTimestamp":"yesterday"}"#.into(),
            ])
            .collect();
        let body = list(&good);
        let mut n = 0;
        super::super::for_each_event(body.as_bytes(), 200, &set, |_, _| n += 1).expect("a payload");
        assert_eq!(n, good.len());
        assert!(matches!(
            payload(&body, &set.root, 200),
            Ok(Payload::List(_))
        ));
        agrees(&body, &set, 200);
        agrees(&list(&[]), &set, 200);
        // Other shapes and anything unusual: the walk decides, with the same result.
        for other in [
            body.replacen("audit.k8s.io/v1", "v1", 1),
            body.replacen(r#""kind":"EventList","#, "", 1) + "",
            body.replacen(
                r#""kind":"EventList","#,
                r#""kind":"EventList","kind":"EventList","#,
                1,
            ),
            body.replacen(r#""kind":"EventList","#, "", 1).replacen(
                '{',
                r#"{"kind":"EventList","#,
                2,
            ),
            body.replacen(r#""items":["#, r#""items":[],"items":["#, 1),
            body.replacen(r#""kind":"EventList""#, r#""kind":"Event""#, 1),
            body.replacen(r#""items":["#, r#""items":[,"#, 1),
            format!("[{body}]"),
            format!("{body}x"),
            r#"{"kind":"EventList","items":null}"#.into(),
            r#"{"kind":"EventList"}"#.into(),
        ] {
            agrees(&other, &set, 200);
        }
    }
}
