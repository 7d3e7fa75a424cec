//! What the loader reads: the definitions of lists, macros, rules and their exceptions, as
//! combined across files. The stages above all work on these.

use std::collections::{HashMap, HashSet};

use super::report::Loc;
use crate::alert::Priority;
use crate::rules::exception::Exception as Spec;

/// The rules engine version kaudit implements (`required_engine_version` up to this loads).
pub const ENGINE_VERSION: (u64, u64, u64) = (0, 26, 0);

/// The only source kaudit evaluates.
pub const K8S_SOURCE: &str = "k8s_audit";

/// Everything the files define, after combining items across files.
#[derive(Debug, Default)]
pub(super) struct Items {
    /// Lists in definition order.
    pub(super) lists: Vec<ListDef>,
    /// List name → index in `lists`.
    pub(super) list_idx: HashMap<String, usize>,
    /// Macros in definition order.
    pub(super) macros: Vec<MacroDef>,
    /// Macro name → index in `macros`.
    pub(super) macro_idx: HashMap<String, usize>,
    /// Sequence number of the last macro item read (a macro sees macros numbered below it).
    pub(super) macro_seq: usize,
    /// Rules in definition order.
    pub(super) rules: Vec<RuleDef>,
    /// Rule name → index in `rules`.
    pub(super) rule_idx: HashMap<String, usize>,
    /// Files that hold rules of other sources (their unused macros and lists are not warned about).
    pub(super) foreign_rule_files: HashSet<usize>,
    /// Files written for the pre-plugin engine (`required_engine_version` below 15).
    pub(super) legacy_files: HashSet<usize>,
}

/// A list as defined after every file.
#[derive(Clone, Debug)]
pub(super) struct ListDef {
    /// Name.
    pub(super) name: String,
    /// Where its (last full) definition is.
    pub(super) loc: Loc,
    /// Items as written.
    pub(super) items: Vec<String>,
    /// The file of its (last full) definition.
    pub(super) file: usize,
}

/// A macro as defined after every file.
#[derive(Clone, Debug)]
pub(super) struct MacroDef {
    /// Name.
    pub(super) name: String,
    /// Where its (last full) definition is.
    pub(super) loc: Loc,
    /// Condition text (appends included).
    pub(super) cond: String,
    /// Where the condition text starts.
    pub(super) cond_loc: Loc,
    /// Sequence number of its first definition.
    pub(super) index: usize,
    /// Macros numbered below this are visible to it (raised by redefinitions and appends).
    pub(super) visibility: usize,
    /// The file of its (last full) definition.
    pub(super) file: usize,
}

/// A rule as defined after every file.
#[derive(Clone, Debug)]
pub(super) struct RuleDef {
    /// Name.
    pub(super) name: String,
    /// The file of its (last full) definition.
    pub(super) file: usize,
    /// Where its (last full) definition is.
    pub(super) loc: Loc,
    /// Condition text (appends included).
    pub(super) cond: String,
    /// Where the condition text starts.
    pub(super) cond_loc: Loc,
    /// Output format.
    pub(super) output: String,
    /// Where the output starts.
    pub(super) output_loc: Loc,
    /// Description.
    pub(super) desc: String,
    /// Priority.
    pub(super) priority: Priority,
    /// Tags.
    pub(super) tags: Vec<String>,
    /// Enabled flag.
    pub(super) enabled: bool,
    /// Source (`syscall` when not given).
    pub(super) source: String,
    /// Exceptions.
    pub(super) exceptions: Vec<Exception>,
    /// `skip-if-unknown-filter`.
    pub(super) skip_if_unknown: bool,
}

/// One exception of a rule, with its name and place.
#[derive(Clone, Debug)]
pub(super) struct Exception {
    /// Name, unique in its rule.
    pub(super) name: String,
    /// Where it is defined.
    pub(super) loc: Loc,
    /// Fields, comparisons and values.
    pub(super) spec: Spec,
}
