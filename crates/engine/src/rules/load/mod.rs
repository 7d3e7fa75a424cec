//! Loading rules files, staged like a compiler; each stage is one file:
//!
//! 1. `documents`: YAML → items with positions, combined across files in order (the per-kind
//!    readers are in `lists`, `macros`, `rules` and `exceptions`; the reader and its key access
//!    in `keys`; the definitions they produce in `items`);
//! 2. `lists`: list expansion;
//! 3. `macros`: macro conditions parsed, references checked against definition order;
//! 4. `exceptions`: exception fields checked and rendered into each rule's condition;
//! 5. `resolve`: macro references inlined;
//! 6. `compile`: conditions and outputs compiled over one slot table;
//! 7. `usage`: unused macros and lists counted and reported.
//!
//! Every problem is a [`Diagnostic`] (`file:line:col: item: message`); an item with an error
//! is left out and the stages go on, so one load reports every error it can, and any error
//! fails the whole load.

mod compile;
mod documents;
mod exceptions;
mod items;
mod keys;
mod lists;
mod macros;
mod report;
mod resolve;
mod rules;
mod source;
mod usage;

pub use compile::{Compiled, CompiledRule};
pub use items::{ENGINE_VERSION, K8S_SOURCE};
pub use report::{Diagnostic, LoadError, LoadReport, Loc};

use report::Diags;
use source::Sources;

use super::compiler::Catalog;
use super::config::RuleLimits;

/// Loads sources `(name, text)` in order and compiles the `k8s_audit` rules.
pub fn load(sources: &[(String, String)], catalog: Catalog) -> Result<Compiled, LoadError> {
    load_limited(sources, catalog, None)
}

/// As [`load`], refusing rules over `limits` (in the files the limits apply to).
pub fn load_limited(
    sources: &[(String, String)],
    catalog: Catalog,
    limits: Option<&RuleLimits>,
) -> Result<Compiled, LoadError> {
    let srcs = Sources::new(sources);
    let mut diags = Diags::default();
    let items = documents::read(&srcs, &mut diags);
    let lists = lists::expand(&items.lists, &items.list_idx);
    let macros = macros::parse(&items, &lists, &srcs, &mut diags);
    // Exceptions, macro resolution and compilation run per rule, in `compile`.
    let mut resolver = resolve::Resolver::new(&items.macros, &items.macro_idx, macros.exprs);
    let (mut out, lists_used) = compile::rules(
        &items,
        &lists,
        &mut resolver,
        catalog,
        limits,
        &srcs,
        &mut diags,
    );
    // Items with errors were left out and the rest compiled, so that one load reports every
    // error it can; any error fails the load.
    if !diags.errors.is_empty() {
        let mut errors = diags.errors;
        errors.sort_by_key(|d| srcs.order(d));
        return Err(LoadError::Invalid(errors));
    }
    usage::tally(
        &items,
        &lists,
        &macros.lists,
        &resolver.used,
        lists_used,
        &mut out.report,
        &mut diags,
    );
    out.report.files = sources.len();
    out.report.warnings = diags.warnings.iter().map(|d| d.to_string()).collect();
    Ok(out)
}
