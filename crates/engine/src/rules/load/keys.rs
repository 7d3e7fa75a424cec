//! The reader of items and its access to one item's keys: typed values, unknown and repeated
//! keys, `append` / `override`. Every problem becomes a diagnostic naming the item.

use std::sync::Arc;

use super::items::Items;
use super::report::{Diags, Loc};
use super::source::loc;
use crate::rules::yaml::{Kind, Node as Y};

/// Reads items into [`Items`], reporting problems to the load's diagnostics.
pub(super) struct Reader<'d> {
    /// What has been read so far.
    pub(super) items: Items,
    /// Where problems go.
    pub(super) diags: &'d mut Diags,
}

impl Reader<'_> {
    /// Reports keys given twice (an error) and keys not in `known` (a warning).
    pub(super) fn unknown_keys(&mut self, item: &Y, known: &[&str], file: &Arc<str>, what: &str) {
        if let Kind::Map(entries) = &item.kind {
            for (i, (k, _)) in entries.iter().enumerate() {
                let name = k.as_str().unwrap_or("");
                if entries[..i].iter().any(|(p, _)| p.as_str() == Some(name)) {
                    self.diags.error(
                        loc(file, k.pos),
                        what,
                        format!("key '{name}' appears twice in this item"),
                    );
                }
                if !known.contains(&name) {
                    self.diags
                        .warn(loc(file, k.pos), what, format!("unknown key '{name}'"));
                }
            }
        }
    }

    /// The string at `key` with its place; a non-string is an error, null is absent.
    pub(super) fn str_key(
        &mut self,
        item: &Y,
        key: &str,
        file: &Arc<str>,
        what: &str,
    ) -> Option<(String, Loc)> {
        let v = item.get(key)?;
        match v.as_str() {
            Some(s) => Some((s.to_string(), loc(file, v.pos))),
            None if v.is_null() => None,
            None => {
                self.diags.error(
                    loc(file, v.pos),
                    what,
                    format!("'{key}' must be a string, found {}", v.type_name()),
                );
                None
            }
        }
    }

    /// The boolean at `key`; anything else is an error.
    pub(super) fn bool_key(
        &mut self,
        item: &Y,
        key: &str,
        file: &Arc<str>,
        what: &str,
    ) -> Option<bool> {
        let v = item.get(key)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.diags.error(
                    loc(file, v.pos),
                    what,
                    format!(
                        "'{key}' must be true or false, found '{}'",
                        v.as_str().unwrap_or(v.type_name())
                    ),
                );
                None
            }
        }
    }

    /// A sequence of scalars (null is empty); anything else is an error.
    pub(super) fn scalars(
        &mut self,
        v: &Y,
        key: &str,
        file: &Arc<str>,
        what: &str,
    ) -> Option<Vec<String>> {
        match &v.kind {
            Kind::Null => Some(Vec::new()),
            Kind::Seq(items) => {
                let mut out = Vec::new();
                for i in items {
                    match i.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => {
                            self.diags.error(
                                loc(file, i.pos),
                                what,
                                format!("'{key}' items must be scalars, found {}", i.type_name()),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.diags.error(
                    loc(file, v.pos),
                    what,
                    format!("'{key}' must be a sequence, found {}", v.type_name()),
                );
                None
            }
        }
    }

    /// How a list or macro item combines with an earlier one of its name: `(append, overridden)`
    /// from `append: true` or `override: {<key>: append|replace}`, the only key such items may
    /// override. `None` after reporting an error.
    pub(super) fn single_key_mode(
        &mut self,
        item: &Y,
        file: &Arc<str>,
        what: &str,
        here: &Loc,
        kind: &str,
        key: &str,
    ) -> Option<(bool, bool)> {
        let append = self.bool_key(item, "append", file, what).unwrap_or(false);
        let Some(ov) = self.overrides(item, file, what) else {
            return Some((append, false));
        };
        if append {
            self.diags.error(
                here.clone(),
                what,
                "'append' and 'override' cannot be used together".into(),
            );
            return None;
        }
        let mut mode = (false, false);
        for (k, app, l) in ov {
            if k != key {
                self.diags.error(
                    l,
                    what,
                    format!("a {kind} can only override '{key}', not '{k}'"),
                );
                return None;
            }
            mode = (app, true);
        }
        Some(mode)
    }

    /// `override:` as a map of key → append|replace.
    pub(super) fn overrides(
        &mut self,
        item: &Y,
        file: &Arc<str>,
        what: &str,
    ) -> Option<Vec<(String, bool, Loc)>> {
        let v = item.get("override")?;
        let Kind::Map(entries) = &v.kind else {
            self.diags.error(
                loc(file, v.pos),
                what,
                "'override' must be a mapping of key: append|replace".into(),
            );
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        for (k, val) in entries {
            let key = k.as_str().unwrap_or("").to_string();
            match val.as_str() {
                Some("append") => out.push((key, true, loc(file, val.pos))),
                Some("replace") => out.push((key, false, loc(file, val.pos))),
                other => self.diags.error(
                    loc(file, val.pos),
                    what,
                    format!(
                        "override of '{key}' must be 'append' or 'replace', found '{}'",
                        other.unwrap_or("?")
                    ),
                ),
            }
        }
        Some(out)
    }

    /// The item's name at `key` (`list`, `macro`, `rule`): a non-empty string.
    pub(super) fn name_of(&mut self, item: &Y, key: &str, file: &Arc<str>) -> Option<String> {
        let v = item.get(key)?;
        match v.as_str() {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            _ => {
                self.diags.error(
                    loc(file, v.pos),
                    key,
                    format!("'{key}' must be a non-empty name"),
                );
                None
            }
        }
    }
}
