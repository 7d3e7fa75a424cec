//! What a load says: positions, diagnostics, the error that fails a load and the report of
//! one that succeeds.

use std::fmt;
use std::sync::Arc;

/// A place in a rules file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loc {
    /// File name as given.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One error or warning: where, which item, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub loc: Loc,
    /// The item, e.g. `rule 'Create Privileged Pod'` (empty for file-level problems).
    pub item: String,
    /// What is wrong, quoting the offending text.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.item.is_empty() {
            write!(f, "{}: {}", self.loc, self.message)
        } else {
            write!(f, "{}: {}: {}", self.loc, self.item, self.message)
        }
    }
}

/// Rules that did not load; lists every error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read rules file {file}: {message}")]
    Io {
        /// The file.
        file: String,
        /// The OS error.
        message: String,
    },
    /// One or more errors in the rules.
    #[error("{}", fmt_errors(.0))]
    Invalid(Vec<Diagnostic>),
}

fn fmt_errors(v: &[Diagnostic]) -> String {
    let mut s = format!("{} error(s) in rules:", v.len());
    for d in v {
        s.push_str("\n  ");
        s.push_str(&d.to_string());
    }
    s
}

impl LoadError {
    /// Every diagnostic (one for an I/O error).
    pub fn diagnostics(&self) -> Vec<String> {
        match self {
            LoadError::Io { .. } => vec![self.to_string()],
            LoadError::Invalid(v) => v.iter().map(|d| d.to_string()).collect(),
        }
    }
}

/// What a load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Files (or in-memory sources) read.
    pub files: usize,
    /// `k8s_audit` rules compiled.
    pub rules_loaded: usize,
    /// Of those, enabled and at or above `min_priority`: the rules evaluated.
    pub rules_active: usize,
    /// Loaded rules that are disabled.
    pub rules_disabled: usize,
    /// Loaded rules below `min_priority`.
    pub rules_below_min_priority: usize,
    /// Rules of other sources (e.g. `syscall`), skipped.
    pub rules_skipped: usize,
    /// Macros parsed.
    pub macros_loaded: usize,
    /// Macros used by no `k8s_audit` rule.
    pub macros_skipped: usize,
    /// Lists read.
    pub lists_loaded: usize,
    /// Lists used by no `k8s_audit` rule.
    pub lists_skipped: usize,
    /// Warnings, each with `file:line:col` and the item.
    pub warnings: Vec<String>,
}

/// The errors and warnings of one load, in the order the stages found them.
#[derive(Debug, Default)]
pub(super) struct Diags {
    /// Errors: any one fails the load.
    pub(super) errors: Vec<Diagnostic>,
    /// Warnings: reported, the load goes on.
    pub(super) warnings: Vec<Diagnostic>,
}

impl Diags {
    /// Records an error at `loc` about `item`.
    pub(super) fn error(&mut self, loc: Loc, item: &str, message: String) {
        self.errors.push(Diagnostic {
            loc,
            item: item.to_string(),
            message,
        });
    }

    /// Records a warning at `loc` about `item`.
    pub(super) fn warn(&mut self, loc: Loc, item: &str, message: String) {
        self.warnings.push(Diagnostic {
            loc,
            item: item.to_string(),
            message,
        });
    }
}
