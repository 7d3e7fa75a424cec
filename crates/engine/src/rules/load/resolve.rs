//! Stage 5, macro resolution: macro references in a parsed condition are replaced by the
//! macros' own (resolved) conditions. A macro sees only macros defined before it, a rule sees
//! every macro's final definition; cycles are errors. Each macro is resolved once.

use std::collections::HashMap;

use super::items::MacroDef;
use crate::rules::parser::Expr;

/// Resolves macro references, remembering each macro's result and whether a rule used it.
pub(super) struct Resolver<'a> {
    macros: &'a [MacroDef],
    idx: &'a HashMap<String, usize>,
    parsed: Vec<Option<Expr>>,
    resolved: Vec<Option<Expr>>,
    in_progress: Vec<bool>,
    /// Macros some resolved condition used, by index.
    pub(super) used: Vec<bool>,
}

impl<'a> Resolver<'a> {
    /// A resolver over the macros and their parsed conditions.
    pub(super) fn new(
        macros: &'a [MacroDef],
        idx: &'a HashMap<String, usize>,
        parsed: Vec<Option<Expr>>,
    ) -> Self {
        let n = macros.len();
        Resolver {
            macros,
            idx,
            parsed,
            resolved: vec![None; n],
            in_progress: vec![false; n],
            used: vec![false; n],
        }
    }

    /// Inlines macro references; `vis` limits which macros are visible (None = all).
    pub(super) fn resolve(
        &mut self,
        e: &Expr,
        vis: Option<usize>,
    ) -> Result<Expr, (usize, String)> {
        Ok(match e {
            Expr::And(k) => Expr::And(
                k.iter()
                    .map(|x| self.resolve(x, vis))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(k) => Expr::Or(
                k.iter()
                    .map(|x| self.resolve(x, vis))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(x) => Expr::Not(Box::new(self.resolve(x, vis)?)),
            Expr::Check { .. } => e.clone(),
            Expr::Ident { name, at } => {
                let undefined = || (*at, format!("Undefined macro '{name}' used in filter."));
                let Some(&i) = self.idx.get(name) else {
                    return Err(undefined());
                };
                if vis.is_some_and(|v| self.macros[i].index >= v) {
                    return Err(undefined());
                }
                self.macro_expr(i).map_err(|m| (*at, m))?
            }
        })
    }

    fn macro_expr(&mut self, i: usize) -> Result<Expr, String> {
        if let Some(r) = &self.resolved[i] {
            return Ok(r.clone());
        }
        if self.in_progress[i] {
            return Err(format!(
                "macro '{}' references itself (a cycle)",
                self.macros[i].name
            ));
        }
        let Some(parsed) = self.parsed[i].clone() else {
            return Err(format!("macro '{}' has errors", self.macros[i].name));
        };
        self.in_progress[i] = true;
        let vis = self.macros[i].visibility;
        let r = self.resolve(&parsed, Some(vis));
        self.in_progress[i] = false;
        let r = r.map_err(|(_, m)| format!("in macro '{}': {m}", self.macros[i].name))?;
        self.used[i] = true;
        self.resolved[i] = Some(r.clone());
        Ok(r)
    }
}

/// The macro references of a condition, with their offsets.
pub(super) fn idents(e: &Expr, out: &mut Vec<(String, usize)>) {
    match e {
        Expr::And(k) | Expr::Or(k) => k.iter().for_each(|x| idents(x, out)),
        Expr::Not(x) => idents(x, out),
        Expr::Ident { name, at } => out.push((name.clone(), *at)),
        Expr::Check { .. } => {}
    }
}

/// True when a check at `at` is written in the rule's own text (not inside a macro).
pub(super) fn uses_offset(e: &Expr, at: usize) -> bool {
    match e {
        Expr::And(k) | Expr::Or(k) => k.iter().any(|x| uses_offset(x, at)),
        Expr::Not(x) => uses_offset(x, at),
        Expr::Check { at: a, .. } => *a == at,
        Expr::Ident { .. } => false,
    }
}
