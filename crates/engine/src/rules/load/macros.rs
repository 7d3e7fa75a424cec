//! Macros: reading `macro` items (replace, `append`, `override: {condition: ...}`), then
//! stage 3, parsing every macro's condition with lists substituted and checking that each
//! macro it names was defined before it.

use std::sync::Arc;

use super::items::{Items, MacroDef};
use super::keys::Reader;
use super::lists::Lists;
use super::report::Diags;
use super::resolve::idents;
use super::source::{Sources, loc};
use crate::rules::parser::{self, Expr};
use crate::rules::yaml::Node as Y;

const MACRO_KEYS: &[&str] = &["macro", "condition", "append", "override"];

pub(super) fn read(r: &mut Reader<'_>, fidx: usize, file: &Arc<str>, item: &Y) {
    let Some(name) = r.name_of(item, "macro", file) else {
        return;
    };
    let what = format!("macro '{name}'");
    r.unknown_keys(item, MACRO_KEYS, file, &what);
    let here = loc(file, item.pos);
    let Some((cond, cond_loc)) = r.str_key(item, "condition", file, &what) else {
        if item.get("condition").is_none() {
            r.diags
                .error(here, &what, "macro has no 'condition'".into());
        }
        return;
    };
    let Some((mode_append, overridden)) =
        r.single_key_mode(item, file, &what, &here, "macro", "condition")
    else {
        return;
    };
    r.items.macro_seq += 1;
    let seq = r.items.macro_seq;
    match r.items.macro_idx.get(&name).copied() {
        Some(i) => {
            let m = &mut r.items.macros[i];
            if mode_append {
                m.cond.push(' ');
                m.cond.push_str(&cond);
            } else {
                m.cond = cond;
                m.cond_loc = cond_loc;
                m.loc = here;
                m.file = fidx;
            }
            m.visibility = seq;
        }
        None if mode_append || overridden => r.diags.error(
            here,
            &what,
            format!(
                "Macro has '{}' key but no macro by that name already exists",
                if overridden { "override" } else { "append" }
            ),
        ),
        None => {
            if !name.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
                || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                r.diags.warn(
                    here.clone(),
                    &what,
                    format!("macro name '{name}' is not an identifier; it cannot be referenced"),
                );
            }
            r.items.macro_idx.insert(name.clone(), r.items.macros.len());
            r.items.macros.push(MacroDef {
                name,
                loc: here,
                cond,
                cond_loc,
                index: seq,
                visibility: seq,
                file: fidx,
            });
        }
    }
}

/// Every macro's parsed condition (`None` when it does not parse) and the lists it uses.
pub(super) struct Parsed {
    /// Parsed conditions, by macro index.
    pub(super) exprs: Vec<Option<Expr>>,
    /// Lists substituted into each macro.
    pub(super) lists: Vec<Vec<usize>>,
}

/// Stage 3: parses every macro; references to macros not yet defined are errors.
pub(super) fn parse(
    items: &Items,
    lists: &Lists<'_>,
    srcs: &Sources<'_>,
    diags: &mut Diags,
) -> Parsed {
    let mut out = Parsed {
        exprs: Vec::with_capacity(items.macros.len()),
        lists: Vec::with_capacity(items.macros.len()),
    };
    for m in &items.macros {
        let what = format!("macro '{}'", m.name);
        let mut used = Vec::new();
        let text = lists.substitute(&m.cond, &mut used);
        out.lists.push(used);
        match parser::parse(&text, &[]) {
            Ok(e) => {
                let mut ids = Vec::new();
                idents(&e, &mut ids);
                for (name, at) in ids {
                    let ok = items
                        .macro_idx
                        .get(&name)
                        .is_some_and(|&j| items.macros[j].index < m.visibility);
                    if !ok {
                        diags.error(
                            srcs.locate(&m.cond_loc, &text, at),
                            &what,
                            format!("Undefined macro '{name}' used in filter."),
                        );
                    }
                }
                out.exprs.push(Some(e));
            }
            Err(e) => {
                diags.error(
                    srcs.locate(&m.cond_loc, &text, e.at),
                    &what,
                    format!(
                        "syntax error in condition: {} (condition: '{}')",
                        e,
                        m.cond.trim()
                    ),
                );
                out.exprs.push(None);
            }
        }
    }
    out
}
