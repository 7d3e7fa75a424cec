//! Rule exceptions: reading `exceptions:` entries (shape checks: fields, comps, values), merging
//! appended ones, then stage 4, checking their fields against the catalog and rendering each
//! as condition text for `(<condition>) and not (<exception>) ...`.

use std::sync::Arc;

use super::documents::Reader;
use super::lists::quote_if_spaced;
use super::report::{Diags, Loc};
use super::rules::RuleDef;
use super::source::loc;
use super::split_field;
use crate::rules::compiler::{self, Catalog};
use crate::rules::parser::Op;
use crate::rules::yaml::{Kind, Node as Y};

/// The `fields` of an exception.
#[derive(Clone, Debug)]
pub(super) enum ExFields {
    /// One field: values are one list, compared with one `in`, `pmatch` or `intersects`.
    One(String),
    /// Several fields: values are tuples, one comparison per field.
    Many(Vec<String>),
    /// No `fields` key: only valid when adding values to an existing exception.
    Unspecified,
}

/// One value of an exception row.
#[derive(Clone, Debug)]
pub(super) enum ExValue {
    /// A scalar.
    Scalar(String),
    /// A list of scalars.
    List(Vec<String>),
}

/// One exception of a rule.
#[derive(Clone, Debug)]
pub(super) struct Exception {
    /// Name, unique in its rule.
    pub(super) name: String,
    /// Where it is defined.
    pub(super) loc: Loc,
    /// Its fields.
    pub(super) fields: ExFields,
    /// One comparison operator per field.
    pub(super) comps: Vec<String>,
    /// Rows of values.
    pub(super) values: Vec<Vec<ExValue>>,
}

impl Reader<'_> {
    pub(super) fn read_exceptions(
        &mut self,
        v: &Y,
        file: &Arc<str>,
        what: &str,
    ) -> Option<Vec<Exception>> {
        let Kind::Seq(entries) = &v.kind else {
            if v.is_null() {
                return Some(Vec::new());
            }
            self.diags.error(
                loc(file, v.pos),
                what,
                "'exceptions' must be a sequence".into(),
            );
            return None;
        };
        let mut out = Vec::new();
        for e in entries {
            let el = loc(file, e.pos);
            let Some(name) = e.get("name").and_then(Y::as_str) else {
                self.diags.error(el, what, "exception has no 'name'".into());
                return None;
            };
            let ewhat = format!("{what} exception '{name}'");
            if out.iter().any(|x: &Exception| x.name == name) {
                self.diags.error(
                    el,
                    what,
                    format!("exception '{name}' is defined twice in this item"),
                );
                return None;
            }
            if let Kind::Map(keys) = &e.kind {
                for (k, _) in keys {
                    let kn = k.as_str().unwrap_or("");
                    if !["name", "fields", "comps", "values"].contains(&kn) {
                        self.diags
                            .warn(loc(file, k.pos), &ewhat, format!("unknown key '{kn}'"));
                    }
                }
            }
            let fields = match e.get("fields") {
                None => ExFields::Unspecified,
                Some(f) => match &f.kind {
                    Kind::Scalar { text, .. } => ExFields::One(text.clone()),
                    _ => ExFields::Many(self.scalars(f, "fields", file, &ewhat)?),
                },
            };
            let comps = match e.get("comps") {
                None => match &fields {
                    ExFields::One(_) => vec!["in".to_string()],
                    ExFields::Many(f) => vec!["=".to_string(); f.len()],
                    ExFields::Unspecified => Vec::new(),
                },
                Some(c) => match &c.kind {
                    Kind::Scalar { text, .. } => vec![text.clone()],
                    _ => self.scalars(c, "comps", file, &ewhat)?,
                },
            };
            let mut values = Vec::new();
            if let Some(vs) = e.get("values") {
                match &vs.kind {
                    Kind::Null => {}
                    Kind::Seq(rows) => {
                        for row in rows {
                            match (&fields, &row.kind) {
                                (ExFields::One(_), Kind::Scalar { text, .. }) => {
                                    values.push(vec![ExValue::Scalar(text.clone())])
                                }
                                (ExFields::One(_), Kind::Seq(_)) => {
                                    let l = self.scalars(row, "values", file, &ewhat)?;
                                    values.push(vec![ExValue::List(l)]);
                                }
                                (ExFields::Unspecified, Kind::Scalar { text, .. }) => {
                                    values.push(vec![ExValue::Scalar(text.clone())])
                                }
                                (ExFields::Many(_) | ExFields::Unspecified, Kind::Seq(cells)) => {
                                    let mut tuple = Vec::new();
                                    for c in cells {
                                        match &c.kind {
                                            Kind::Scalar { text, .. } => {
                                                tuple.push(ExValue::Scalar(text.clone()))
                                            }
                                            Kind::Seq(_) => tuple.push(ExValue::List(
                                                self.scalars(c, "values", file, &ewhat)?,
                                            )),
                                            _ => {
                                                self.diags.error(
                                                    loc(file, c.pos),
                                                    &ewhat,
                                                    "exception values must be scalars or lists"
                                                        .into(),
                                                );
                                                return None;
                                            }
                                        }
                                    }
                                    values.push(tuple);
                                }
                                _ => {
                                    self.diags.error(
                                        loc(file, row.pos),
                                        &ewhat,
                                        format!("unexpected exception value: {}", row.type_name()),
                                    );
                                    return None;
                                }
                            }
                        }
                    }
                    _ => {
                        self.diags.error(
                            loc(file, vs.pos),
                            &ewhat,
                            "'values' must be a sequence".into(),
                        );
                        return None;
                    }
                }
            }
            // Shape checks (fields themselves are checked at compile time, per source).
            match &fields {
                ExFields::Unspecified => {}
                ExFields::One(_) => {
                    if comps.len() != 1
                        || !["in", "pmatch", "intersects"].contains(&comps[0].as_str())
                    {
                        self.diags.error(el, &ewhat, format!("with a single field, comps must be one of in, pmatch, intersects, found '{}'", comps.join(",")));
                        return None;
                    }
                }
                ExFields::Many(f) => {
                    if comps.len() != f.len() {
                        self.diags.error(
                            el,
                            &ewhat,
                            format!("{} fields but {} comps", f.len(), comps.len()),
                        );
                        return None;
                    }
                    for c in &comps {
                        if Op::from_name(c).is_none() || c == "exists" {
                            self.diags.error(
                                el.clone(),
                                &ewhat,
                                format!("invalid comparison operator '{c}'"),
                            );
                            return None;
                        }
                    }
                    if let Some(bad) = values.iter().find(|t| t.len() != f.len()) {
                        self.diags.error(
                            el,
                            &ewhat,
                            format!(
                                "a values tuple has {} items but there are {} fields",
                                bad.len(),
                                f.len()
                            ),
                        );
                        return None;
                    }
                }
            }
            out.push(Exception {
                name: name.to_string(),
                loc: el,
                fields,
                comps,
                values,
            });
        }
        Some(out)
    }
}

/// Adds exceptions to a rule's: same-named ones get the new values, others are added.
pub(super) fn merge_exceptions(
    into: &mut Vec<Exception>,
    new: Vec<Exception>,
    append_values: bool,
) {
    for e in new {
        match into.iter_mut().find(|x| x.name == e.name) {
            Some(x) if append_values => {
                for row in e.values {
                    // With a single field, a row of several scalars is one list value.
                    if matches!(x.fields, ExFields::One(_)) && row.len() > 1 {
                        let items = row
                            .into_iter()
                            .flat_map(|v| match v {
                                ExValue::Scalar(s) => vec![s],
                                ExValue::List(l) => l,
                            })
                            .collect();
                        x.values.push(vec![ExValue::List(items)]);
                    } else {
                        x.values.push(row);
                    }
                }
            }
            Some(x) => *x = e,
            None => into.push(e),
        }
    }
}

/// Stage 4: checks the exceptions of a `k8s_audit` rule (their fields must exist in `catalog`)
/// and renders those with values as condition text.
pub(super) fn render_all(
    r: &RuleDef,
    what: &str,
    catalog: Catalog,
    diags: &mut Diags,
) -> Vec<String> {
    let mut texts = Vec::new();
    for e in &r.exceptions {
        let ewhat = format!("{what} exception '{}'", e.name);
        let fields: Vec<&String> = match &e.fields {
            ExFields::One(f) => vec![f],
            ExFields::Many(f) => f.iter().collect(),
            ExFields::Unspecified => {
                if !e.values.is_empty() {
                    diags.error(
                        e.loc.clone(),
                        &ewhat,
                        "exception has values but no 'fields'".into(),
                    );
                }
                Vec::new()
            }
        };
        for f in fields {
            let (name, arg) = split_field(f);
            if let Err(m) = compiler::resolve_field(catalog, name, arg) {
                diags.error(e.loc.clone(), &ewhat, m);
            }
        }
        let t = exception_text(e);
        if !t.is_empty() {
            texts.push(t);
        }
    }
    texts
}

fn ex_value(v: &ExValue, list_op: bool) -> String {
    match v {
        ExValue::List(items) => format!(
            "({})",
            items
                .iter()
                .map(|i| quote_if_spaced(i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ExValue::Scalar(s) if list_op => format!("({})", quote_if_spaced(s)),
        ExValue::Scalar(s) => quote_if_spaced(s),
    }
}

/// The `and not (...)` text for one exception (empty when it has no values).
fn exception_text(e: &Exception) -> String {
    if e.values.is_empty() {
        return String::new();
    }
    match &e.fields {
        ExFields::Unspecified => String::new(),
        ExFields::One(f) => {
            let comp = e.comps.first().map(String::as_str).unwrap_or("in");
            let vals: Vec<String> = e
                .values
                .iter()
                .flat_map(|row| row.iter())
                .flat_map(|v| match v {
                    ExValue::Scalar(s) => vec![quote_if_spaced(s)],
                    ExValue::List(l) => l.iter().map(|x| quote_if_spaced(x)).collect(),
                })
                .collect();
            format!("({f} {comp} ({}))", vals.join(", "))
        }
        ExFields::Many(fields) => {
            let tuples: Vec<String> = e
                .values
                .iter()
                .map(|row| {
                    let parts: Vec<String> = fields
                        .iter()
                        .zip(&e.comps)
                        .zip(row)
                        .map(|((f, c), v)| {
                            let list_op = Op::from_name(c).is_some_and(Op::takes_list);
                            format!("{f} {c} {}", ex_value(v, list_op))
                        })
                        .collect();
                    format!("({})", parts.join(" and "))
                })
                .collect();
            tuples.join(" or ")
        }
    }
}
