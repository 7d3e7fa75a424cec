//! Evaluation of compiled conditions with a per-event cache: each slot (field + argument) is
//! extracted at most once per event, however many rules read it.

use std::borrow::Cow;

use serde_json::Value;

use super::compiler::{AlertField, Node, Slot, Test};
use super::fields::{self, Values};
use crate::alert::Alert;
use crate::audit::EventRef;

/// What values are extracted from.
#[derive(Clone, Copy)]
pub enum Source<'e> {
    /// An audit event.
    Event(EventRef<'e>),
    /// An alert (router filters).
    Alert(&'e Alert),
}

/// One evaluation context: the source and the values extracted so far.
///
/// It costs what the event reads, not what the ruleset could read: values live in a small
/// list in the order they were first asked for, found through a slot-indexed table of
/// positions that is borrowed from a per-thread pool and put back cleared (only the touched
/// entries) when the context is dropped. A ruleset with 20,000 field slots therefore adds
/// nothing per event for the slots an event never reaches.
pub struct Ctx<'e> {
    src: Source<'e>,
    slots: &'e [Slot],
    /// Slot -> 1 + position in `vals`; 0 when not extracted yet.
    index: Vec<u32>,
    vals: Vec<(usize, Values<'e>)>,
}

thread_local! {
    /// The position tables of dropped contexts, reused by the next one on this thread.
    static POSITIONS: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

impl<'e> Ctx<'e> {
    /// A fresh context for `src` over the slot table.
    pub fn new(src: Source<'e>, slots: &'e [Slot]) -> Ctx<'e> {
        let mut index = POSITIONS.try_with(|c| c.take()).unwrap_or_default();
        if index.len() < slots.len() {
            index.resize(slots.len(), 0);
        }
        Ctx {
            src,
            slots,
            index,
            vals: Vec::with_capacity(16),
        }
    }

    /// The values of a slot, extracted on first use.
    pub fn values(&mut self, slot: usize) -> &[Cow<'e, str>] {
        let Some(&pos) = self.index.get(slot) else {
            return &[];
        };
        let pos = if pos == 0 {
            let v = match (&self.slots[slot], self.src) {
                (Slot::Event(f), Source::Event(ev)) => fields::extract(f, ev),
                (Slot::Alert(f), Source::Alert(a)) => alert_values(f, a),
                _ => Values::None,
            };
            self.vals.push((slot, v));
            let pos = self.vals.len();
            // A context never holds more values than there are slots (< u32::MAX).
            self.index[slot] = u32::try_from(pos).unwrap_or(u32::MAX);
            pos
        } else {
            pos as usize
        };
        self.vals
            .get(pos - 1)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }
}

impl Drop for Ctx<'_> {
    fn drop(&mut self) {
        let mut index = std::mem::take(&mut self.index);
        for (slot, _) in &self.vals {
            if let Some(p) = index.get_mut(*slot) {
                *p = 0;
            }
        }
        let _ = POSITIONS.try_with(|c| c.set(index));
    }
}

fn alert_values<'e>(f: &AlertField, a: &'e Alert) -> Values<'e> {
    match f {
        AlertField::Rule => Values::One(Cow::Borrowed(a.rule.as_str())),
        AlertField::Priority => Values::One(Cow::Borrowed(a.priority.as_str())),
        AlertField::Source => Values::One(Cow::Borrowed(a.source.as_str())),
        AlertField::Hostname => Values::One(Cow::Borrowed(a.hostname.as_str())),
        AlertField::Uuid => Values::One(Cow::Owned(a.uuid.to_string())),
        AlertField::Tags => {
            Values::Many(a.tags.iter().map(|t| Cow::Borrowed(t.as_str())).collect())
        }
        AlertField::Output(name) => match a.output_fields.get(name) {
            None | Some(Value::Null) => Values::None,
            Some(Value::Array(items)) => Values::Many(
                items
                    .iter()
                    .filter(|v| !v.is_null())
                    .map(fields::stringify)
                    .collect(),
            ),
            Some(v) => Values::One(fields::stringify(v)),
        },
    }
}

/// Evaluates a compiled condition.
pub fn eval(n: &Node, ctx: &mut Ctx<'_>) -> bool {
    match n {
        Node::And(k) => k.iter().all(|x| eval(x, ctx)),
        Node::Or(k) => k.iter().any(|x| eval(x, ctx)),
        Node::Not(x) => !eval(x, ctx),
        Node::Check { slot, test } => test_values(test, ctx.values(*slot)),
    }
}

/// Applies a test to a field's values. No value makes every test false; a list passes `in`
/// when every value is in the set, and any other test when one value passes.
pub fn test_values(t: &Test, vals: &[Cow<'_, str>]) -> bool {
    if vals.is_empty() {
        return false;
    }
    match t {
        Test::Exists => true,
        Test::In(set) => vals.iter().all(|v| set.contains(v)),
        Test::Intersects(set) => vals.iter().any(|v| set.contains(v)),
        Test::Single(inner) => vals.len() == 1 && test_values(inner, vals),
        _ => vals.iter().any(|v| test_one(t, v)),
    }
}

fn test_one(t: &Test, v: &str) -> bool {
    match t {
        Test::Exists => true,
        Test::Eq(x) => v == x,
        Test::Ne(x) => v != x,
        Test::Lt(x) => v.as_bytes() < x.as_bytes(),
        Test::Le(x) => v.as_bytes() <= x.as_bytes(),
        Test::Gt(x) => v.as_bytes() > x.as_bytes(),
        Test::Ge(x) => v.as_bytes() >= x.as_bytes(),
        Test::Contains(x) => v.contains(x.as_str()),
        Test::IContains(x) => icontains(v.as_bytes(), x.as_bytes()),
        Test::StartsWith(x) => v.starts_with(x.as_str()),
        Test::EndsWith(x) => v.ends_with(x.as_str()),
        Test::Glob(p) => glob(p.as_bytes(), v.as_bytes(), false),
        Test::IGlob(p) => glob(p.as_bytes(), v.as_bytes(), true),
        Test::Regex(re) => re.is_match(v),
        Test::In(s) | Test::Intersects(s) => s.contains(v),
        Test::PMatch(items) => items.iter().any(|i| pmatch(i, v)),
        Test::Single(inner) => test_one(inner, v),
    }
}

/// ASCII case-insensitive substring; `needle` is already lower-case.
pub fn icontains(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.len() > hay.len() {
        return false;
    }
    hay.windows(needle.len()).any(|w| {
        w.iter()
            .zip(needle)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

fn fold(c: u8, ci: bool) -> u8 {
    if ci { c.to_ascii_lowercase() } else { c }
}

/// Matches a bracket expression starting after `[`; returns (matched, index after `]`),
/// or None when the bracket is not closed (then `[` is literal).
fn bracket(p: &[u8], mut i: usize, c: u8, ci: bool) -> Option<(bool, usize)> {
    let negate = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if lo == b'\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&x| x != b']') {
            hi = *p.get(i + 1)?;
            if hi == b'\\' {
                hi = *p.get(i + 2)?;
                i += 1;
            }
            i += 2;
        }
        let c = fold(c, ci);
        if (fold(lo, ci)..=fold(hi, ci)).contains(&c) {
            matched = true;
        }
    }
}

/// `fnmatch(3)` without flags (`*` also matches `/`), optionally ASCII case-insensitive.
pub fn glob(p: &[u8], s: &[u8], ci: bool) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => match bracket(p, pi + 1, s[si], ci) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                None => (s[si] == b'[').then_some(pi + 1),
            },
            Some(b'\\') if pi + 1 < p.len() => {
                (fold(p[pi + 1], ci) == fold(s[si], ci)).then_some(pi + 2)
            }
            Some(&c) => (fold(c, ci) == fold(s[si], ci)).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                si += 1;
            }
            None => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    while p.get(pi) == Some(&b'*') {
        pi += 1;
    }
    pi == p.len()
}

/// Path-prefix match: `/a/b` matches `/a` and `/a/b`, not `/a_b`. Items may hold wildcards,
/// matched per path component.
pub fn pmatch(item: &str, v: &str) -> bool {
    if item.is_empty() {
        return false;
    }
    if !item.bytes().any(|c| matches!(c, b'*' | b'?' | b'[')) {
        return v == item
            || (v.starts_with(item)
                && (item.ends_with('/') || v.as_bytes().get(item.len()) == Some(&b'/')));
    }
    let ip: Vec<&str> = item.trim_end_matches('/').split('/').collect();
    let vp: Vec<&str> = v.split('/').collect();
    ip.len() <= vp.len()
        && ip
            .iter()
            .zip(&vp)
            .all(|(a, b)| glob(a.as_bytes(), b.as_bytes(), false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_fnmatch() {
        let g = |p: &str, s: &str| glob(p.as_bytes(), s.as_bytes(), false);
        assert!(g("*", ""));
        assert!(g("a*c", "abbbc"));
        assert!(g("/etc/*", "/etc/a/b"));
        assert!(!g("a*c", "abd"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("[a-c]x", "bx"));
        assert!(!g("[!a-c]x", "bx"));
        assert!(g("[!a-c]x", "dx"));
        assert!(g("\\*", "*"));
        assert!(!g("\\*", "a"));
        assert!(g("a[", "a["));
        assert!(g("*.yaml", "x.yaml"));
        assert!(!g("*.yaml", "x.yml"));
        assert!(glob(b"NG*", b"nginx", true));
        assert!(!glob(b"NG*", b"nginx", false));
    }

    #[test]
    fn pmatch_is_a_path_prefix() {
        assert!(pmatch("/a", "/a"));
        assert!(pmatch("/a", "/a/b"));
        assert!(!pmatch("/a", "/a_b"));
        assert!(pmatch("/a/", "/a/b"));
        assert!(pmatch("/a/*/c", "/a/x/c/d"));
        assert!(!pmatch("/a/*/c", "/a/x/d"));
        assert!(!pmatch("", "/a"));
    }

    #[test]
    fn icontains_is_ascii_case_insensitive() {
        assert!(icontains(b"Hello World", b"world"));
        assert!(!icontains(b"Hello", b"xyz"));
        assert!(icontains(b"abc", b""));
        assert!(!icontains(b"ab", b"abc"));
    }
}
