//! Stage 7, usage: which macros and lists the compiled `k8s_audit` rules use (directly, through
//! used macros, or inside used lists); the rest are counted and, in files without rules of
//! other sources, warned about.

use std::collections::HashSet;

use super::items::Items;
use super::lists::Lists;
use super::report::{Diags, LoadReport};

/// Counts macros and lists, and warns about unused ones.
pub(super) fn tally(
    items: &Items,
    lists: &Lists<'_>,
    macro_lists: &[Vec<usize>],
    macros_used: &[bool],
    mut lists_used: HashSet<usize>,
    report: &mut LoadReport,
    diags: &mut Diags,
) {
    for (i, u) in macros_used.iter().enumerate() {
        if *u {
            lists_used.extend(macro_lists[i].iter().copied());
        }
    }
    let mut stack: Vec<usize> = lists_used.iter().copied().collect();
    while let Some(i) = stack.pop() {
        for &j in &lists.refs[i] {
            if lists_used.insert(j) {
                stack.push(j);
            }
        }
    }
    report.macros_loaded = items.macros.len();
    report.lists_loaded = items.lists.len();
    for (i, m) in items.macros.iter().enumerate() {
        if !macros_used[i] {
            report.macros_skipped += 1;
            if !items.foreign_rule_files.contains(&m.file) {
                diags.warn(
                    m.loc.clone(),
                    &format!("macro '{}'", m.name),
                    "defined but not used by any k8s_audit rule".into(),
                );
            }
        }
    }
    for (i, l) in items.lists.iter().enumerate() {
        if !lists_used.contains(&i) {
            report.lists_skipped += 1;
            if !items.foreign_rule_files.contains(&l.file) {
                diags.warn(
                    l.loc.clone(),
                    &format!("list '{}'", l.name),
                    "defined but not used by any k8s_audit rule".into(),
                );
            }
        }
    }
}
