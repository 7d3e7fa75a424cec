//! Stage 1, documents: each file's YAML becomes items (`list`, `macro`, `rule`,
//! `required_engine_version`, `required_plugin_versions`) with their positions, and items
//! combine across files in load order (replace, `append`, `override`, enable-only).
//! An item with an error is reported and left out; reading goes on.

use std::sync::Arc;

use super::items::{ENGINE_VERSION, Items};
use super::keys::Reader;
use super::report::{Diags, Loc};
use super::source::{Source, Sources, loc};
use super::{lists, macros, rules};
use crate::rules::yaml::{self, Kind, Node as Y};

/// Reads every file in order.
pub(super) fn read(srcs: &Sources<'_>, diags: &mut Diags) -> Items {
    let mut r = Reader {
        items: Items::default(),
        diags,
    };
    for (i, s) in srcs.iter() {
        r.read_file(i, s);
    }
    r.items
}

/// Files requiring an engine version below this are legacy (pre-plugin) rulesets.
const LEGACY_BELOW: (u64, u64, u64) = (0, 15, 0);

fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some((0, n, 0));
    }
    let mut it = s.split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    let c = it.next()?.split(['-', '+']).next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((a, b, c))
}

impl Reader<'_> {
    fn read_file(&mut self, fidx: usize, src: &Source<'_>) {
        let docs = match yaml::parse(src.text) {
            Ok(d) => d,
            Err(e) => {
                self.diags.error(
                    Loc {
                        file: src.name.clone(),
                        line: e.pos_line,
                        col: e.pos_col,
                    },
                    "",
                    format!("YAML syntax error: {}", e.message),
                );
                return;
            }
        };
        for doc in docs {
            match &doc.kind {
                Kind::Null => {}
                Kind::Seq(items) => {
                    for item in items {
                        self.read_item(fidx, &src.name, item);
                    }
                }
                _ => self.diags.error(
                    loc(&src.name, doc.pos),
                    "",
                    format!(
                        "a rules file must be a sequence of items, found {}",
                        doc.type_name()
                    ),
                ),
            }
        }
    }

    fn read_item(&mut self, fidx: usize, file: &Arc<str>, item: &Y) {
        let here = loc(file, item.pos);
        match &item.kind {
            Kind::Null => return,
            Kind::Map(_) => {}
            _ => {
                self.diags.error(
                    here,
                    "",
                    format!(
                        "unexpected item: expected a mapping, found {}",
                        item.type_name()
                    ),
                );
                return;
            }
        }
        if let Some(v) = item.get("required_engine_version") {
            let text = v.as_str().unwrap_or("");
            match parse_version(text) {
                Some(req) if req > ENGINE_VERSION => {
                    let (a, b, c) = ENGINE_VERSION;
                    self.diags.error(
                        loc(file, v.pos),
                        "required_engine_version",
                        format!("rules require engine version '{text}', kaudit supports up to {a}.{b}.{c}"),
                    )
                }
                Some(req) => {
                    if req < LEGACY_BELOW {
                        self.items.legacy_files.insert(fidx);
                    }
                }
                None => self.diags.error(
                    loc(file, v.pos),
                    "required_engine_version",
                    format!("invalid engine version '{text}'"),
                ),
            }
        } else if let Some(v) = item.get("required_plugin_versions") {
            let ok = match &v.kind {
                Kind::Seq(entries) => entries.iter().all(|e| {
                    e.get("name").and_then(Y::as_str).is_some()
                        && e.get("version").and_then(Y::as_str).is_some()
                }),
                _ => false,
            };
            if !ok {
                self.diags.error(
                    loc(file, v.pos),
                    "required_plugin_versions",
                    "expected a sequence of {name, version} entries".into(),
                );
            }
        } else if item.get("list").is_some() {
            lists::read(self, fidx, file, item);
        } else if item.get("macro").is_some() {
            macros::read(self, fidx, file, item);
        } else if item.get("rule").is_some() {
            rules::read(self, fidx, file, item);
        } else {
            let first = match &item.kind {
                Kind::Map(e) => e
                    .first()
                    .and_then(|(k, _)| k.as_str())
                    .unwrap_or("")
                    .to_string(),
                _ => String::new(),
            };
            self.diags
                .warn(here, "", format!("Unknown top level item '{first}'"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("15"), Some((0, 15, 0)));
        assert_eq!(parse_version("0.26.0"), Some((0, 26, 0)));
        assert_eq!(parse_version("x"), None);
    }
}
