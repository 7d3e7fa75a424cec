//! Compiles a parsed, macro-free condition into a [`Node`] tree over field *slots* and
//! precomputed operands. The compiler is shared by the event rules and the alert filter: a
//! [`Catalog`] says which fields exist and which of them are lists.

use std::collections::{HashMap, HashSet};

use super::fields::{self, FieldError};
use super::parser::{Expr, Op, Rhs};

/// The field namespaces a condition can be compiled against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Catalog {
    /// Audit events: `ka.*`, `jevt.*`, `json.*`, `evt.*`.
    Event,
    /// Alerts: `rule`, `priority`, `source`, `hostname`, `tags` and any output field.
    Alert,
}

/// A field of an alert.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AlertField {
    /// The rule name.
    Rule,
    /// The priority's name (`Warning`).
    Priority,
    /// The source.
    Source,
    /// The host name.
    Hostname,
    /// The tags (a list field).
    Tags,
    /// The alert's uuid.
    Uuid,
    /// An entry of `output_fields`, by its full name (`ka.uri.param[command]`).
    Output(String),
}

/// The bare identifiers that are fields in alert filters.
pub const ALERT_BARE_FIELDS: &[&str] = &["rule", "priority", "source", "hostname", "tags", "uuid"];

/// What one slot extracts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// An event field.
    Event(fields::Field),
    /// An alert field.
    Alert(AlertField),
}

/// The distinct fields of a compiled ruleset; each is extracted at most once per event.
#[derive(Clone, Debug, Default)]
pub struct Slots {
    /// Slot table, indexed by [`Node::Check::slot`].
    pub list: Vec<Slot>,
    index: HashMap<Slot, usize>,
}

impl Slots {
    /// The slot of `s`, if interned.
    pub fn find(&self, s: &Slot) -> Option<usize> {
        self.index.get(s).copied()
    }

    /// The slot of `s`, added if new.
    pub fn intern(&mut self, s: Slot) -> usize {
        if let Some(&i) = self.index.get(&s) {
            return i;
        }
        let i = self.list.len();
        self.list.push(s.clone());
        self.index.insert(s, i);
        i
    }
}

/// A set of strings for `in`/`intersects`: linear for small sets, hashed for larger ones.
#[derive(Clone, Debug)]
pub enum Set {
    /// Up to 8 items.
    Small(Vec<String>),
    /// More.
    Hash(HashSet<String>),
}

impl Set {
    fn new(items: Vec<String>) -> Set {
        if items.len() <= 8 {
            Set::Small(items)
        } else {
            Set::Hash(items.into_iter().collect())
        }
    }

    /// The items, in no particular order.
    pub fn items(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Set::Small(items) => Box::new(items.iter().map(String::as_str)),
            Set::Hash(h) => Box::new(h.iter().map(String::as_str)),
        }
    }

    /// Membership.
    pub fn contains(&self, v: &str) -> bool {
        match self {
            Set::Small(items) => items.iter().any(|i| i == v),
            Set::Hash(h) => h.contains(v),
        }
    }
}

/// A check's operator with its precomputed operand.
#[derive(Clone, Debug)]
pub enum Test {
    /// `exists`.
    Exists,
    /// `=`.
    Eq(String),
    /// `!=`.
    Ne(String),
    /// `<`.
    Lt(String),
    /// `<=`.
    Le(String),
    /// `>`.
    Gt(String),
    /// `>=`.
    Ge(String),
    /// `contains`.
    Contains(String),
    /// `icontains` (needle lower-cased).
    IContains(String),
    /// `startswith`.
    StartsWith(String),
    /// `endswith`.
    EndsWith(String),
    /// `glob`.
    Glob(String),
    /// `iglob` (pattern lower-cased).
    IGlob(String),
    /// `regex`, anchored.
    Regex(regex::Regex),
    /// `in`.
    In(Set),
    /// `intersects`.
    Intersects(Set),
    /// `pmatch`.
    PMatch(Vec<String>),
    /// Legacy engine semantics: exactly one value, and it passes the inner test.
    Single(Box<Test>),
}

/// A compiled condition.
#[derive(Clone, Debug)]
pub enum Node {
    /// All hold.
    And(Vec<Node>),
    /// Any holds.
    Or(Vec<Node>),
    /// Negation.
    Not(Box<Node>),
    /// One field test.
    Check {
        /// Index into [`Slots::list`].
        slot: usize,
        /// The test.
        test: Test,
    },
}

/// A compile error, with the byte offset of the offending check in the condition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    /// Byte offset of the check.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

/// Resolves a field name for `catalog`; returns the slot and whether it is a list field.
pub fn resolve_field(
    catalog: Catalog,
    name: &str,
    arg: Option<&str>,
) -> Result<(Slot, bool), FieldError> {
    match catalog {
        Catalog::Event => {
            let f = fields::lookup(name, arg)?;
            let list = f.list;
            Ok((Slot::Event(f), list))
        }
        Catalog::Alert => {
            let f = match (name, arg) {
                ("rule", None) => AlertField::Rule,
                ("priority", None) => AlertField::Priority,
                ("source", None) => AlertField::Source,
                ("hostname", None) => AlertField::Hostname,
                ("tags", None) => AlertField::Tags,
                ("uuid", None) => AlertField::Uuid,
                (n, _) if ALERT_BARE_FIELDS.contains(&n) => {
                    return Err(FieldError::AlertFieldArgument(n.to_string()));
                }
                (n, None) => AlertField::Output(n.to_string()),
                (n, Some(a)) => AlertField::Output(format!("{n}[{a}]")),
            };
            let list = f == AlertField::Tags;
            Ok((Slot::Alert(f), list))
        }
    }
}

/// Compiles `e` (which must contain no macro references) against `catalog`, adding its
/// fields to `slots`.
pub fn compile(e: &Expr, catalog: Catalog, slots: &mut Slots) -> Result<Node, CompileError> {
    compile_with(e, catalog, slots, &mut None)
}

/// As [`compile`]. With `legacy` set (rules files written for the pre-plugin engine), a
/// scalar operator on a list field is accepted with that engine's meaning (true only when the
/// field has exactly one value and it passes) and reported in `legacy` instead of failing.
pub fn compile_with(
    e: &Expr,
    catalog: Catalog,
    slots: &mut Slots,
    legacy: &mut Option<Vec<CompileError>>,
) -> Result<Node, CompileError> {
    Ok(match e {
        Expr::And(k) => Node::And(
            k.iter()
                .map(|x| compile_with(x, catalog, slots, legacy))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(k) => Node::Or(
            k.iter()
                .map(|x| compile_with(x, catalog, slots, legacy))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Not(x) => Node::Not(Box::new(compile_with(x, catalog, slots, legacy)?)),
        Expr::Ident { name, at } => {
            return Err(CompileError {
                at: *at,
                message: format!("Undefined macro '{name}' used in filter."),
            });
        }
        Expr::Check {
            field,
            arg,
            op,
            rhs,
            at,
        } => {
            let err = |message: String| CompileError { at: *at, message };
            let (slot, list) =
                resolve_field(catalog, field, arg.as_deref()).map_err(|e| err(e.to_string()))?;
            let shown = match arg {
                Some(a) => format!("{field}[{a}]"),
                None => field.clone(),
            };
            let test = match (make_test(*op, rhs, list), legacy.as_mut()) {
                (Ok(t), _) => t,
                (Err(m @ CheckError::ListOperator(_)), Some(hits)) if list => {
                    let t = make_test(*op, rhs, false)
                        .map_err(|m| err(format!("{m} (in check on '{shown}')")))?;
                    hits.push(err(format!(
                        "{m} (in check on '{shown}'); accepted for this legacy ruleset: true only when the field has exactly one value"
                    )));
                    Test::Single(Box::new(t))
                }
                (Err(m), _) => return Err(err(format!("{m} (in check on '{shown}')"))),
            };
            Node::Check {
                slot: slots.intern(slot),
                test,
            }
        }
    })
}

/// An operator that does not fit its field or operand.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// `bcontains` / `bstartswith`: every field here is a string.
    #[error("'{0}' operator not supported for string filters")]
    ByteOperator(Op),
    /// A scalar operator on a list field.
    #[error("'{0}' operator not supported for list filters")]
    ListOperator(Op),
    /// A list where one value is expected.
    #[error("operator '{0}' needs a single value")]
    NeedsValue(Op),
    /// No operand where a list is expected.
    #[error("operator '{0}' needs a list")]
    NeedsList(Op),
    /// A `regex` operand that is not a regular expression.
    #[error("invalid regex '{pattern}': {message}")]
    Regex {
        /// The operand.
        pattern: String,
        /// What the regex compiler said.
        message: String,
    },
}

/// The most memory one compiled `regex` operand may take (program and lazy DFA each).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How deeply a `regex` operand may nest groups and repetitions.
pub const REGEX_NEST_LIMIT: u32 = 64;

/// Checks an operator against a field's type and precomputes its operand.
pub fn make_test(op: Op, rhs: &Rhs, list: bool) -> Result<Test, CheckError> {
    if matches!(op, Op::BContains | Op::BStartsWith) {
        return Err(CheckError::ByteOperator(op));
    }
    if list && !matches!(op, Op::Exists | Op::In | Op::Intersects) {
        return Err(CheckError::ListOperator(op));
    }
    let value = || match rhs {
        Rhs::Value(v) => Ok(v.clone()),
        _ => Err(CheckError::NeedsValue(op)),
    };
    let items = || match rhs {
        Rhs::List(v) => Ok(v.clone()),
        Rhs::Value(v) => Ok(vec![v.clone()]),
        Rhs::None => Err(CheckError::NeedsList(op)),
    };
    Ok(match op {
        Op::Exists => Test::Exists,
        Op::Eq => Test::Eq(value()?),
        Op::Ne => Test::Ne(value()?),
        Op::Lt => Test::Lt(value()?),
        Op::Le => Test::Le(value()?),
        Op::Gt => Test::Gt(value()?),
        Op::Ge => Test::Ge(value()?),
        Op::Contains => Test::Contains(value()?),
        Op::IContains => Test::IContains(value()?.to_ascii_lowercase()),
        Op::StartsWith => Test::StartsWith(value()?),
        Op::EndsWith => Test::EndsWith(value()?),
        Op::Glob => Test::Glob(value()?),
        Op::IGlob => Test::IGlob(value()?.to_ascii_lowercase()),
        Op::Regex => {
            let v = value()?;
            // The regex crate matches in linear time; the size limits bound its memory (a
            // `(a{1000}){1000}` is refused at load, not built).
            let re = regex::RegexBuilder::new(&format!("^(?:{v})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .nest_limit(REGEX_NEST_LIMIT)
                .build()
                .map_err(|e| CheckError::Regex {
                    message: e.to_string(),
                    pattern: v,
                })?;
            Test::Regex(re)
        }
        Op::In => Test::In(Set::new(items()?)),
        Op::Intersects => Test::Intersects(Set::new(items()?)),
        Op::PMatch => Test::PMatch(items()?),
        Op::BContains | Op::BStartsWith => return Err(CheckError::ByteOperator(op)),
    })
}

/// Adds the slots a condition reads to `out`.
pub fn node_slots(n: &Node, out: &mut HashSet<usize>) {
    match n {
        Node::And(k) | Node::Or(k) => k.iter().for_each(|x| node_slots(x, out)),
        Node::Not(x) => node_slots(x, out),
        Node::Check { slot, .. } => {
            out.insert(*slot);
        }
    }
}
