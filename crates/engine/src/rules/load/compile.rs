//! Stages 4 to 6, per rule in definition order: exceptions appended to the condition, lists
//! substituted, the text parsed, macros resolved, the tree compiled over the shared slot table
//! (legacy rulesets may use scalar operators on list fields, with a warning) and the output
//! format compiled. Rules of other sources are kept, uncompiled, for listing.

use std::collections::HashSet;

use super::exceptions;
use super::items::{Items, K8S_SOURCE};
use super::lists::Lists;
use super::report::Diags;
use super::report::LoadReport;
use super::resolve::{Resolver, uses_offset};
use super::source::Sources;
use crate::alert::Priority;
use crate::rules::compiler::node_slots;
use crate::rules::compiler::{self, Catalog, Node, Slots};
use crate::rules::config::RuleLimits;
use crate::rules::output::{self, Format};
use crate::rules::parser;

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// Name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Priority.
    pub priority: Priority,
    /// Tags.
    pub tags: Vec<String>,
    /// Enabled flag after all files.
    pub enabled: bool,
    /// Source.
    pub source: String,
    /// Compiled condition (None for rules of other sources, or skipped unknown-field rules).
    pub cond: Option<Node>,
    /// Compiled output.
    pub output: Format,
}

/// Everything compiled: rules in definition order and the shared slot table.
#[derive(Debug, Default)]
pub struct Compiled {
    /// All rules, including skipped ones.
    pub rules: Vec<CompiledRule>,
    /// Field slots.
    pub slots: Slots,
    /// The report.
    pub report: LoadReport,
}

/// Compiles every rule; returns them with the lists the compiled conditions use.
pub(super) fn rules(
    items: &Items,
    lists: &Lists<'_>,
    res: &mut Resolver<'_>,
    catalog: Catalog,
    limits: Option<&RuleLimits>,
    srcs: &Sources<'_>,
    diags: &mut Diags,
) -> (Compiled, HashSet<usize>) {
    let mut out = Compiled::default();
    let mut lists_used: HashSet<usize> = HashSet::new();
    for r in &items.rules {
        let what = format!("rule '{}'", r.name);
        let mut rule = CompiledRule {
            name: r.name.clone(),
            desc: r.desc.clone(),
            priority: r.priority,
            tags: r.tags.clone(),
            enabled: r.enabled,
            source: r.source.clone(),
            cond: None,
            output: Format::default(),
        };
        if r.source != K8S_SOURCE {
            out.report.rules_skipped += 1;
            out.rules.push(rule);
            continue;
        }
        // Exception fields and operators are validated for k8s_audit rules.
        let ex_texts = exceptions::render_all(r, &what, catalog, diags);
        let mut text = r.cond.clone();
        if !ex_texts.is_empty() {
            text = format!("({text})");
            for t in ex_texts {
                text.push_str(" and not (");
                text.push_str(&t);
                text.push(')');
            }
        }
        let mut used = Vec::new();
        let text = lists.substitute(&text, &mut used);
        let limits = limits.filter(|l| l.applies_to(&r.loc.file));
        if let Some(l) = limits
            && text.len() > l.max_condition_bytes
        {
            diags.error(
                r.cond_loc.clone(),
                &what,
                format!(
                    "condition of {} bytes is over the limit of {} for this file",
                    text.len(),
                    l.max_condition_bytes
                ),
            );
            continue;
        }
        let ast = match parser::parse(&text, &[]) {
            Ok(a) => a,
            Err(e) => {
                diags.error(
                    srcs.locate(&r.cond_loc, &text, e.at),
                    &what,
                    format!(
                        "syntax error in condition: {} (condition: '{}')",
                        e,
                        r.cond.trim()
                    ),
                );
                continue;
            }
        };
        let resolved = match res.resolve(&ast, None) {
            Ok(x) => x,
            Err((at, m)) => {
                diags.error(srcs.locate(&r.cond_loc, &text, at), &what, m);
                continue;
            }
        };
        lists_used.extend(used);
        // Offsets of checks inside macros are not in the rule's text: those report the rule.
        let place = |at: usize| {
            if uses_offset(&ast, at) {
                srcs.locate(&r.cond_loc, &text, at)
            } else {
                r.cond_loc.clone()
            }
        };
        let mut legacy = items.legacy_files.contains(&r.file).then(Vec::new);
        let node = match compiler::compile_with(&resolved, catalog, &mut out.slots, &mut legacy) {
            Ok(n) => {
                for w in legacy.unwrap_or_default() {
                    diags.warn(place(w.at), &what, w.message);
                }
                n
            }
            Err(e) if r.skip_if_unknown && e.message.starts_with("unknown field") => {
                diags.warn(
                    r.loc.clone(),
                    &what,
                    format!("{}; rule skipped (skip-if-unknown-filter)", e.message),
                );
                out.report.rules_skipped += 1;
                out.rules.push(rule);
                continue;
            }
            Err(e) => {
                diags.error(place(e.at), &what, e.message);
                continue;
            }
        };
        match output::compile_format(&r.output, catalog, &mut out.slots) {
            Ok(f) => rule.output = f,
            Err(m) => {
                diags.error(r.output_loc.clone(), &what, format!("invalid output: {m}"));
                continue;
            }
        }
        if let Some(l) = limits {
            let mut read = HashSet::new();
            node_slots(&node, &mut read);
            read.extend(rule.output.slots());
            if read.len() > l.max_fields {
                diags.error(
                    r.cond_loc.clone(),
                    &what,
                    format!(
                        "reads {} distinct fields, over the limit of {} for this file",
                        read.len(),
                        l.max_fields
                    ),
                );
                continue;
            }
        }
        rule.cond = Some(node);
        out.report.rules_loaded += 1;
        out.rules.push(rule);
    }
    (out, lists_used)
}
