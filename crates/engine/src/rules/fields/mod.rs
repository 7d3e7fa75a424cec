//! The `ka.*`, `jevt.*`/`json.*` and `evt.*` fields of an audit event: one table row per field,
//! carrying its name, its shape (list or not, which argument), a description and its
//! extractor.
//!
//! **Adding a field is adding one row**: to [`ka`]'s table for a `ka.*` field (most read one
//! value at a path of the event: [`Row::path`]; others name a function: [`Row::scalar`],
//! [`Row::list`]), to `containers`'s property table for a per-container
//! `ka.req.pod.{containers,initContainers,ephemeralContainers}.*` field, or to `json`'s table
//! for `jevt.*`/`evt.*`. Nothing else changes: the compiler, the evaluator and the output
//! formats find fields through [`lookup`].
//!
//! Every value is a string. A field yields no value ("not available"), one value, or, for list
//! fields, several. An empty result means "not available" to the operators. Every `ka.*`
//! field is unavailable when the event has no `auditID`.

mod containers;
mod json;
pub mod ka;
mod values;

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use crate::audit::EventRef;
use crate::lazy::PathSet;

pub use containers::Group;
pub use json::{evt_time, raw_time};
pub use values::{json_pointer, stringify, uri_param};

/// What argument a field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// No argument.
    None,
    /// An optional numeric index, e.g. `[0]`.
    Index,
    /// A required key, e.g. `[command]`.
    Key,
}

/// Reads a field's values from an event; `None` (or no values) means "not available".
pub type ExtractFn = for<'e> fn(&Field, EventRef<'e>) -> Option<Values<'e>>;

/// One container being read by a per-container field.
#[derive(Clone, Copy, Debug)]
pub struct Container<'e> {
    /// The container's JSON.
    pub json: &'e serde_json::Value,
    /// The pod spec it belongs to (for pod-level defaults).
    pub pod_spec: crate::json::JsonRef<'e>,
    /// The field's `[N]`, if any.
    pub index: Option<usize>,
}

/// Reads one property of one container into `out`; `None` makes the whole field unavailable.
pub type PropFn = for<'e> fn(&Container<'e>, &mut Vec<Cow<'e, str>>) -> Option<()>;

/// How a field is read from an event.
#[derive(Clone, Copy, Debug)]
pub enum Extract {
    /// The scalar at a path of object keys (or array indexes).
    Path(&'static [&'static str]),
    /// A function of the field (with its argument) and the event.
    Fn(ExtractFn),
    /// One property of every container of a pod spec's container list.
    Container(Group, PropFn),
    /// The same values (and the same evaluation slot) as the named field.
    Alias(&'static str),
}

/// What part of an event's JSON a function field reads: lazy extraction builds only that
/// ([`crate::lazy`]). A function row that does not say reads the whole event, which is always
/// right, only slower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Nothing of the JSON (the event time, a constant).
    Nothing,
    /// The values at these RFC 6901 pointers (and everything below them).
    Pointers(&'static [&'static str]),
    /// The pointer given as the field's `[key]` (`jevt.value[/verb]`).
    KeyPointer,
    /// The whole event.
    Whole,
}

/// One row of a field table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// Field name.
    pub name: &'static str,
    /// List field (only `exists`, `in` and `intersects` apply).
    pub list: bool,
    /// Its argument.
    pub arg: ArgKind,
    /// What it is.
    pub desc: &'static str,
    /// How it is read.
    pub extract: Extract,
    /// What a function row reads of the event ([`Extract::Fn`] only; the others say it
    /// themselves).
    pub reads: Reads,
}

impl Row {
    /// A scalar field without argument: the value at `path`.
    pub const fn path(
        name: &'static str,
        path: &'static [&'static str],
        desc: &'static str,
    ) -> Row {
        Row {
            name,
            list: false,
            arg: ArgKind::None,
            desc,
            extract: Extract::Path(path),
            reads: Reads::Nothing,
        }
    }

    /// A scalar field read by a function.
    pub const fn scalar(name: &'static str, arg: ArgKind, desc: &'static str, f: ExtractFn) -> Row {
        Row {
            name,
            list: false,
            arg,
            desc,
            extract: Extract::Fn(f),
            reads: Reads::Whole,
        }
    }

    /// A list field read by a function.
    pub const fn list(name: &'static str, arg: ArgKind, desc: &'static str, f: ExtractFn) -> Row {
        Row {
            name,
            list: true,
            arg,
            desc,
            extract: Extract::Fn(f),
            reads: Reads::Whole,
        }
    }

    /// Another name for the field `of` (defined earlier in the tables).
    pub const fn alias(name: &'static str, of: &'static str) -> Row {
        Row {
            name,
            list: false,
            arg: ArgKind::None,
            desc: "",
            extract: Extract::Alias(of),
            reads: Reads::Whole,
        }
    }

    /// The same row, reading the values at these pointers (and below) only.
    pub const fn reading(self, pointers: &'static [&'static str]) -> Row {
        Row {
            reads: Reads::Pointers(pointers),
            ..self
        }
    }

    /// The same row, reading what `reads` says.
    pub const fn reads(self, reads: Reads) -> Row {
        Row { reads, ..self }
    }
}

/// One catalog entry: a row with its aliases resolved.
#[derive(Clone, Debug)]
pub struct FieldDef {
    /// Field name.
    pub name: String,
    /// List field (only `exists`, `in` and `intersects` apply).
    pub list: bool,
    /// Its argument.
    pub arg: ArgKind,
    /// What it is.
    pub desc: &'static str,
    /// How it is read (never [`Extract::Alias`]).
    pub extract: Extract,
    /// What a function field reads of the event.
    pub reads: Reads,
    /// Unavailable when the event has no `auditID` (every `ka.*` field).
    pub needs_audit_id: bool,
    /// The name whose values it reads: its own, or the aliased field's.
    canonical: String,
}

/// A field with its argument, as used in a compiled rule. Two fields are equal when they read
/// the same values: an alias equals its field, and fields reading the same path are equal.
#[derive(Clone, Debug)]
pub struct Field {
    def: &'static FieldDef,
    /// List field.
    pub list: bool,
    /// `[N]`.
    pub index: Option<usize>,
    /// `[key]`.
    pub key: Option<String>,
}

/// What makes two fields read the same values.
#[derive(PartialEq, Eq, Hash)]
enum Identity<'a> {
    Path(&'static [&'static str]),
    Named(&'a str),
}

impl Field {
    fn identity(&self) -> (Identity<'_>, bool, Option<usize>, Option<&str>) {
        let id = match self.def.extract {
            Extract::Path(p) => Identity::Path(p),
            _ => Identity::Named(&self.def.canonical),
        };
        (id, self.list, self.index, self.key.as_deref())
    }

    /// The catalog entry.
    pub fn def(&self) -> &'static FieldDef {
        self.def
    }

    /// Adds the paths of the event this field reads to `set`, for lazy extraction.
    pub fn add_reads(&self, set: &mut PathSet) {
        if self.def.needs_audit_id {
            set.add(&["auditID"]);
        }
        match self.def.extract {
            Extract::Path(p) => set.add(p),
            Extract::Container(g, _) => {
                set.add(&["requestObject", "spec", g.key()]);
                set.add(&["requestObject", "spec", "securityContext"]);
            }
            Extract::Fn(_) | Extract::Alias(_) => match (self.def.reads, &self.key) {
                (Reads::Nothing, _) => {}
                (Reads::Pointers(ps), _) => ps.iter().for_each(|p| set.add_pointer(p)),
                (Reads::KeyPointer, Some(k)) => set.add_pointer(k),
                (Reads::KeyPointer, None) | (Reads::Whole, _) => set.add::<&str>(&[]),
            },
        }
    }
}

impl PartialEq for Field {
    fn eq(&self, other: &Self) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Field {}

impl Hash for Field {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

/// A field name or argument that does not resolve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// No such field.
    #[error("unknown field '{0}'")]
    Unknown(String),
    /// An argument given to a field that takes none.
    #[error("field '{name}' takes no argument, got '[{arg}]'")]
    UnexpectedArgument {
        /// The field.
        name: String,
        /// The argument given.
        arg: String,
    },
    /// An index that is not a number.
    #[error("field '{name}' takes a numeric index, got '[{arg}]'")]
    BadIndex {
        /// The field.
        name: String,
        /// The argument given.
        arg: String,
    },
    /// A required key missing.
    #[error("field '{name}' requires an argument, e.g. '{name}[x]'")]
    MissingArgument {
        /// The field.
        name: String,
    },
    /// An argument given to one of the alert filter's bare fields (`rule`, `priority`, ...).
    #[error("field '{0}' takes no argument")]
    AlertFieldArgument(String),
}

/// Every field of the catalog, in documentation order.
pub fn catalog() -> Vec<FieldDef> {
    let mut rows: Vec<(Row, bool, String)> = Vec::new();
    rows.extend(ka::FIELDS.iter().map(|r| (*r, true, r.name.to_string())));
    rows.extend(containers::rows().into_iter().map(|(r, n)| (r, true, n)));
    rows.extend(json::FIELDS.iter().map(|r| (*r, false, r.name.to_string())));
    let mut out: Vec<FieldDef> = Vec::with_capacity(rows.len());
    for (row, needs_audit_id, name) in rows {
        let def = match row.extract {
            Extract::Alias(of) => match out.iter().find(|d| d.name == of) {
                Some(target) => FieldDef {
                    name,
                    needs_audit_id,
                    ..target.clone()
                },
                // A table defect (an alias of a later or unknown field): leave the field out.
                None => continue,
            },
            extract => FieldDef {
                canonical: name.clone(),
                name,
                list: row.list,
                arg: row.arg,
                desc: row.desc,
                extract,
                reads: row.reads,
                needs_audit_id,
            },
        };
        out.push(def);
    }
    out
}

fn catalog_cached() -> &'static [FieldDef] {
    static CAT: OnceLock<Vec<FieldDef>> = OnceLock::new();
    CAT.get_or_init(catalog)
}

/// True when `name` is a field of the catalog (argument not checked).
pub fn is_field(name: &str) -> bool {
    catalog_cached().iter().any(|d| d.name == name)
}

/// Resolves a field name and its argument, checking the argument's shape.
pub fn lookup(name: &str, arg: Option<&str>) -> Result<Field, FieldError> {
    let Some(d) = catalog_cached().iter().find(|d| d.name == name) else {
        return Err(FieldError::Unknown(name.to_string()));
    };
    let mut f = Field {
        def: d,
        list: d.list,
        index: None,
        key: None,
    };
    match (d.arg, arg) {
        (ArgKind::None, None) | (ArgKind::Index, None) => {}
        (ArgKind::None, Some(a)) => {
            return Err(FieldError::UnexpectedArgument {
                name: name.to_string(),
                arg: a.to_string(),
            });
        }
        (ArgKind::Index, Some(a)) => {
            let ok = !a.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && (a == "0" || !a.starts_with('0'));
            match a.parse::<usize>() {
                Ok(i) if ok => f.index = Some(i),
                _ => {
                    return Err(FieldError::BadIndex {
                        name: name.to_string(),
                        arg: a.to_string(),
                    });
                }
            }
        }
        (ArgKind::Key, Some(a)) => f.key = Some(a.to_string()),
        (ArgKind::Key, None) => {
            return Err(FieldError::MissingArgument {
                name: name.to_string(),
            });
        }
    }
    Ok(f)
}

/// Extracted values of one field for one event (none or an empty list = not available).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Values<'e> {
    /// Not available.
    #[default]
    None,
    /// One value (most fields): no list allocated.
    One(Cow<'e, str>),
    /// Several values (list fields).
    Many(Vec<Cow<'e, str>>),
}

impl<'e> Values<'e> {
    /// The values as a slice (empty when not available).
    pub fn as_slice(&self) -> &[Cow<'e, str>] {
        match self {
            Values::None => &[],
            Values::One(v) => std::slice::from_ref(v),
            Values::Many(v) => v,
        }
    }

    /// The values as owned strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.as_slice().iter().map(|c| c.to_string()).collect()
    }
}

/// Extracts `f` from `ev`.
pub fn extract<'e>(f: &Field, ev: EventRef<'e>) -> Values<'e> {
    let j = ev.json;
    if f.def.needs_audit_id && !ev.has_audit_id {
        return Values::None;
    }
    match f.def.extract {
        Extract::Path(path) => values::walk(j, path)
            .map(|v| Values::One(v.stringify()))
            .unwrap_or_default(),
        Extract::Fn(read) => read(f, ev).unwrap_or_default(),
        Extract::Container(group, prop) => containers::values(j, group, prop, f.index)
            .map(Values::Many)
            .unwrap_or_default(),
        // Resolved when the catalog is built.
        Extract::Alias(_) => Values::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_the_plugins_100_fields_once_each() {
        let cat = catalog();
        let ka: Vec<&str> = cat
            .iter()
            .map(|d| d.name.as_str())
            .filter(|n| n.starts_with("ka."))
            .collect();
        assert_eq!(ka.len(), 100);
        let mut names: Vec<&str> = cat.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate field names");
        for f in [
            "jevt.value",
            "json.value",
            "jevt.obj",
            "json.obj",
            "jevt.rawtime",
            "json.rawtime",
        ] {
            assert!(is_field(f), "{f}");
        }
    }

    #[test]
    fn every_row_resolves_and_describes_itself() {
        let rows = ka::FIELDS.len() + containers::rows().len() + json::FIELDS.len();
        let cat = catalog();
        assert_eq!(cat.len(), rows, "an alias names a missing or later field");
        for d in &cat {
            assert!(!d.desc.is_empty(), "{} has no description", d.name);
            assert!(!matches!(d.extract, Extract::Alias(_)), "{}", d.name);
        }
    }

    #[test]
    fn aliases_and_same_paths_share_a_slot() {
        let f = |n: &str, a: Option<&str>| lookup(n, a).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f("json.value", Some("/a")), f("jevt.value", Some("/a")));
        assert_ne!(f("json.value", Some("/a")), f("jevt.value", Some("/b")));
        assert_eq!(f("evt.rawtime", None), f("jevt.rawtime", None));
        assert_eq!(f("ka.req.configmap.name", None), f("ka.target.name", None));
        assert_ne!(f("ka.target.name", None), f("ka.target.namespace", None));
        assert_ne!(
            f("ka.req.pod.containers.image", None),
            f("ka.req.pod.initContainers.image", None)
        );
    }
}
