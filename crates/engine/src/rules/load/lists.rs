//! Lists: reading `list` items (replace, `append`, `override: {items: ...}`), then stage 2,
//! expansion (an item naming an earlier list stands for its items; an item with a space is
//! quoted), and substitution into condition text, exactly as Falco does it (GRAMMAR §5).

use std::collections::HashMap;
use std::sync::Arc;

use super::items::ListDef;
use super::keys::Reader;
use super::source::loc;
use crate::rules::exception::Quoting;
use crate::rules::yaml::Node as Y;

const LIST_KEYS: &[&str] = &["list", "items", "append", "override"];

pub(super) fn read(r: &mut Reader<'_>, fidx: usize, file: &Arc<str>, item: &Y) {
    let Some(name) = r.name_of(item, "list", file) else {
        return;
    };
    let what = format!("list '{name}'");
    r.unknown_keys(item, LIST_KEYS, file, &what);
    let here = loc(file, item.pos);
    let Some(items_node) = item.get("items") else {
        r.diags.error(here, &what, "list has no 'items'".into());
        return;
    };
    let Some(items) = r.scalars(items_node, "items", file, &what) else {
        return;
    };
    let Some((mode_append, overridden)) =
        r.single_key_mode(item, file, &what, &here, "list", "items")
    else {
        return;
    };
    match r.items.list_idx.get(&name).copied() {
        Some(i) => {
            if mode_append {
                r.items.lists[i].items.extend(items);
            } else {
                r.items.lists[i].items = items;
                r.items.lists[i].loc = here;
                r.items.lists[i].file = fidx;
            }
        }
        None if mode_append || overridden => r.diags.error(
            here,
            &what,
            format!(
                "List has '{}' key but no list by that name already exists",
                if overridden { "override" } else { "append" }
            ),
        ),
        None => {
            r.items.list_idx.insert(name.clone(), r.items.lists.len());
            r.items.lists.push(ListDef {
                name,
                loc: here,
                items,
                file: fidx,
            });
        }
    }
}

/// The lists with their items expanded, ready to substitute into conditions.
pub(super) struct Lists<'a> {
    defs: &'a [ListDef],
    items: Vec<Vec<String>>,
    /// For each list, the earlier lists its items named.
    pub(super) refs: Vec<Vec<usize>>,
}

/// Stage 2: expands every list, in definition order.
pub(super) fn expand<'a>(defs: &'a [ListDef], idx: &HashMap<String, usize>) -> Lists<'a> {
    let mut items: Vec<Vec<String>> = Vec::with_capacity(defs.len());
    let mut refs: Vec<Vec<usize>> = vec![Vec::new(); defs.len()];
    for (i, l) in defs.iter().enumerate() {
        let mut out = Vec::new();
        for it in &l.items {
            match idx.get(it) {
                Some(&j) if j < i => {
                    out.extend(items[j].iter().cloned());
                    refs[i].push(j);
                }
                _ => out.push(Quoting::Falco.quote(it)),
            }
        }
        items.push(out);
    }
    Lists { defs, items, refs }
}

impl Lists<'_> {
    /// `text` with every list substituted; the lists used are added to `used`.
    pub(super) fn substitute(&self, text: &str, used: &mut Vec<usize>) -> String {
        let mut s = text.to_string();
        for (i, l) in self.defs.iter().enumerate() {
            if s.contains(l.name.as_str()) && substitute_list(&mut s, &l.name, &self.items[i]) {
                used.push(i);
            }
        }
        s
    }
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_delim(c: u8) -> bool {
    is_blank(c) || matches!(c, b'(' | b')' | b',' | b'=')
}

/// Substitutes one list into a condition, as text (see GRAMMAR §5). Returns true if used.
fn substitute_list(cnd: &mut String, name: &str, items: &[String]) -> bool {
    let mut used = false;
    let mut from = 0;
    while let Some(rel) = cnd.get(from..).and_then(|s| s.find(name)) {
        let mut start = from + rel;
        let mut end = start + name.len();
        let b = cnd.as_bytes();
        let ok_left = start == 0 || is_delim(b[start - 1]);
        let ok_right = end >= b.len() || is_delim(b[end]);
        if !(ok_left && ok_right) {
            from = start + 1;
            while from < cnd.len() && !cnd.is_char_boundary(from) {
                from += 1;
            }
            continue;
        }
        while start > 0 && is_blank(b[start - 1]) {
            start -= 1;
        }
        while end < b.len() && is_blank(b[end]) {
            end += 1;
        }
        let sub = items.join(", ");
        if sub.is_empty() {
            if start > 0 && b[start - 1] == b',' {
                start -= 1;
            } else if end < b.len() && b[end] == b',' {
                end += 1;
            }
        }
        let mut new = String::with_capacity(cnd.len() + sub.len() + 2);
        if start > 0 {
            new.push_str(&cnd[..start]);
            new.push(' ');
        }
        new.push_str(&sub);
        new.push(' ');
        let next = new.len();
        new.push_str(&cnd[end..]);
        *cnd = new;
        from = next;
        used = true;
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(c: &str, name: &str, items: &[&str]) -> String {
        let mut s = c.to_string();
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        substitute_list(&mut s, name, &items);
        s
    }

    #[test]
    fn list_substitution_is_textual_and_delimited() {
        assert_eq!(
            sub("ka.verb in (kverbs)", "kverbs", &["get", "list"]),
            "ka.verb in ( get, list )"
        );
        assert_eq!(sub("x in (a, kv, b)", "kv", &["1"]), "x in (a, 1 , b)");
        assert_eq!(sub("x in (kverbsx)", "kverbs", &["1"]), "x in (kverbsx)");
        assert_eq!(sub("x in (a, e)", "e", &[]), "x in (a  )");
        assert_eq!(sub("x in (e, a)", "e", &[]), "x in (   a)");
        assert_eq!(
            sub("ka.target.resource=pods", "pods", &["p"]),
            "ka.target.resource= p "
        );
        assert_eq!(
            sub("x in (l) or y in (l)", "l", &["v"]),
            "x in ( v ) or y in ( v )"
        );
    }
}
