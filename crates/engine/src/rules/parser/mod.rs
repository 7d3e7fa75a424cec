//! The condition language: a recursive-descent parser for Falco's filter grammar
//! (`and`/`or`/`not`, parentheses, field checks, macro references), producing an [`Expr`] tree.

use std::fmt;

mod grammar;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=` or `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<` (byte-wise string order).
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// Substring.
    Contains,
    /// ASCII case-insensitive substring.
    IContains,
    /// Byte substring (hex operand); only for byte-buffer fields, so always refused here.
    BContains,
    /// Prefix.
    StartsWith,
    /// Byte prefix; refused like `bcontains`.
    BStartsWith,
    /// Suffix.
    EndsWith,
    /// `fnmatch` glob.
    Glob,
    /// Case-insensitive glob.
    IGlob,
    /// Full-match regular expression.
    Regex,
    /// Member of (list fields: every value is a member).
    In,
    /// Any value is a member.
    Intersects,
    /// Path-prefix match against a set.
    PMatch,
    /// Has a value.
    Exists,
}

impl Op {
    /// The operator as written in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::PMatch => "pmatch",
            Op::Exists => "exists",
        }
    }

    /// Operators whose right-hand side is a list.
    pub fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::PMatch)
    }

    /// Parses an operator name as used in exception `comps`.
    pub fn from_name(s: &str) -> Option<Op> {
        OPERATORS
            .iter()
            .find(|(name, _, _)| name.trim_end() == s)
            .map(|(_, op, _)| *op)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The right-hand side of a check.
#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    /// `exists` has none.
    None,
    /// One quoted or bare value (or a number for `<` and friends).
    Value(String),
    /// A parenthesised list, or a bare identifier after a list operator.
    List(Vec<String>),
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// All children hold.
    And(Vec<Expr>),
    /// Any child holds.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A bare identifier: a macro reference.
    Ident {
        /// Macro name.
        name: String,
        /// Byte offset in the condition text.
        at: usize,
    },
    /// `field[arg] op rhs`.
    Check {
        /// Field name, e.g. `ka.verb`.
        field: String,
        /// The `[arg]`, if any.
        arg: Option<String>,
        /// The operator.
        op: Op,
        /// The operand.
        rhs: Rhs,
        /// Byte offset of the field in the condition text.
        at: usize,
    },
}

/// A condition that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at offset {at}")]
pub struct ParseError {
    /// Byte offset in the condition text.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

/// Maximum nesting of parentheses and `not`s, as Falco allows for rules.
pub const MAX_DEPTH: usize = 1000;

pub(super) const BLANKS: &[u8] = b" \t\x08\r\n";

/// Operator spellings in matching order (longest first where one is a prefix of another);
/// the bool says whether a blank must follow.
pub(super) const OPERATORS: &[(&str, Op, bool)] = &[
    ("exists", Op::Exists, false),
    ("<=", Op::Le, false),
    ("<", Op::Lt, false),
    (">=", Op::Ge, false),
    (">", Op::Gt, false),
    ("==", Op::Eq, false),
    ("=", Op::Eq, false),
    ("!=", Op::Ne, false),
    ("bcontains", Op::BContains, true),
    ("bstartswith", Op::BStartsWith, true),
    ("contains", Op::Contains, true),
    ("endswith", Op::EndsWith, true),
    ("glob", Op::Glob, true),
    ("icontains", Op::IContains, true),
    ("iglob", Op::IGlob, true),
    ("startswith", Op::StartsWith, true),
    ("regex", Op::Regex, true),
    ("intersects", Op::Intersects, false),
    ("in", Op::In, false),
    ("pmatch", Op::PMatch, false),
];

pub(super) const TRANSFORMERS: &[&str] = &[
    "tolower", "toupper", "b64", "basename", "len", "join", "concat", "getopt", "val",
];

/// Parses a condition. Identifiers listed in `bare_fields` are fields, not macro references
/// (the alert filter's `rule`, `priority`, ...).
pub fn parse(text: &str, bare_fields: &[&str]) -> Result<Expr, ParseError> {
    let (depth, at) = max_nesting(text);
    if depth > MAX_DEPTH {
        return Err(ParseError {
            at,
            message: format!("condition nested deeper than {MAX_DEPTH}"),
        });
    }
    if depth <= SMALL_DEPTH {
        return grammar::parse_inner(text, bare_fields);
    }
    // Deep nesting recurses deeply: give it a stack of its own rather than risk the caller's.
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .stack_size((depth + 1) * 16 * 1024 + (1 << 20))
            .spawn_scoped(s, || grammar::parse_inner(text, bare_fields));
        match worker {
            Ok(h) => h.join().unwrap_or_else(|_| {
                Err(ParseError {
                    at: 0,
                    message: "internal error while parsing".into(),
                })
            }),
            Err(e) => Err(ParseError {
                at: 0,
                message: format!("cannot parse a condition this deep: {e}"),
            }),
        }
    })
}

/// Nesting the caller's stack handles without help.
const SMALL_DEPTH: usize = 48;

/// The deepest parenthesis nesting outside quoted strings, and where it is first exceeded
/// beyond [`MAX_DEPTH`].
fn max_nesting(text: &str) -> (usize, usize) {
    let b = text.as_bytes();
    let (mut depth, mut max, mut at) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' => {
                depth += 1;
                if depth > max {
                    max = depth;
                    if depth == MAX_DEPTH + 1 {
                        at = i;
                    }
                }
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    (max, at)
}

#[cfg(test)]
mod tests;
