//! Rule exceptions: reading `exceptions:` entries (shape checks: fields, comps, values), merging
//! appended ones, then stage 4, checking their fields against the catalog and rendering each
//! as condition text for `(<condition>) and not (<exception>) ...` with the shared renderer
//! ([`crate::rules::exception`]) in Falco's quoting.

use std::sync::Arc;

use super::items::{Exception, RuleDef};
use super::keys::Reader;
use super::report::Diags;
use super::source::loc;
use crate::rules::compiler::{self, Catalog};
use crate::rules::exception::{Exception as Spec, Fields, Quoting, Value, split_field};
use crate::rules::parser::Op;
use crate::rules::yaml::{Kind, Node as Y};

pub(super) fn read(
    r: &mut Reader<'_>,
    v: &Y,
    file: &Arc<str>,
    what: &str,
) -> Option<Vec<Exception>> {
    let Kind::Seq(entries) = &v.kind else {
        if v.is_null() {
            return Some(Vec::new());
        }
        r.diags.error(
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
            r.diags.error(el, what, "exception has no 'name'".into());
            return None;
        };
        let ewhat = format!("{what} exception '{name}'");
        if out.iter().any(|x: &Exception| x.name == name) {
            r.diags.error(
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
                    r.diags
                        .warn(loc(file, k.pos), &ewhat, format!("unknown key '{kn}'"));
                }
            }
        }
        let fields = match e.get("fields") {
            None => Fields::Unspecified,
            Some(f) => match &f.kind {
                Kind::Scalar { text, .. } => Fields::One(text.clone()),
                _ => Fields::Many(r.scalars(f, "fields", file, &ewhat)?),
            },
        };
        let comps = match e.get("comps") {
            None => match &fields {
                Fields::One(_) => vec!["in".to_string()],
                Fields::Many(f) => vec!["=".to_string(); f.len()],
                Fields::Unspecified => Vec::new(),
            },
            Some(c) => match &c.kind {
                Kind::Scalar { text, .. } => vec![text.clone()],
                _ => r.scalars(c, "comps", file, &ewhat)?,
            },
        };
        let mut values = Vec::new();
        if let Some(vs) = e.get("values") {
            match &vs.kind {
                Kind::Null => {}
                Kind::Seq(rows) => {
                    for row in rows {
                        match (&fields, &row.kind) {
                            (Fields::One(_), Kind::Scalar { text, .. }) => {
                                values.push(vec![Value::Scalar(text.clone())])
                            }
                            (Fields::One(_), Kind::Seq(_)) => {
                                let l = r.scalars(row, "values", file, &ewhat)?;
                                values.push(vec![Value::List(l)]);
                            }
                            (Fields::Unspecified, Kind::Scalar { text, .. }) => {
                                values.push(vec![Value::Scalar(text.clone())])
                            }
                            (Fields::Many(_) | Fields::Unspecified, Kind::Seq(cells)) => {
                                let mut tuple = Vec::new();
                                for c in cells {
                                    match &c.kind {
                                        Kind::Scalar { text, .. } => {
                                            tuple.push(Value::Scalar(text.clone()))
                                        }
                                        Kind::Seq(_) => tuple.push(Value::List(
                                            r.scalars(c, "values", file, &ewhat)?,
                                        )),
                                        _ => {
                                            r.diags.error(
                                                loc(file, c.pos),
                                                &ewhat,
                                                "exception values must be scalars or lists".into(),
                                            );
                                            return None;
                                        }
                                    }
                                }
                                values.push(tuple);
                            }
                            _ => {
                                r.diags.error(
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
                    r.diags.error(
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
            Fields::Unspecified => {}
            Fields::One(_) => {
                if comps.len() != 1 || !["in", "pmatch", "intersects"].contains(&comps[0].as_str())
                {
                    r.diags.error(el, &ewhat, format!("with a single field, comps must be one of in, pmatch, intersects, found '{}'", comps.join(",")));
                    return None;
                }
            }
            Fields::Many(f) => {
                if comps.len() != f.len() {
                    r.diags.error(
                        el,
                        &ewhat,
                        format!("{} fields but {} comps", f.len(), comps.len()),
                    );
                    return None;
                }
                for c in &comps {
                    if Op::from_name(c).is_none() || c == "exists" {
                        r.diags.error(
                            el.clone(),
                            &ewhat,
                            format!("invalid comparison operator '{c}'"),
                        );
                        return None;
                    }
                }
                if let Some(bad) = values.iter().find(|t| t.len() != f.len()) {
                    r.diags.error(
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
            spec: Spec {
                fields,
                comps,
                values,
            },
        });
    }
    Some(out)
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
                for row in e.spec.values {
                    // With a single field, a row of several scalars is one list value.
                    if matches!(x.spec.fields, Fields::One(_)) && row.len() > 1 {
                        let items = row
                            .into_iter()
                            .flat_map(|v| match v {
                                Value::Scalar(s) => vec![s],
                                Value::List(l) => l,
                            })
                            .collect();
                        x.spec.values.push(vec![Value::List(items)]);
                    } else {
                        x.spec.values.push(row);
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
        let fields: Vec<&String> = match &e.spec.fields {
            Fields::One(f) => vec![f],
            Fields::Many(f) => f.iter().collect(),
            Fields::Unspecified => {
                if !e.spec.values.is_empty() {
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
                diags.error(e.loc.clone(), &ewhat, m.to_string());
            }
        }
        texts.extend(e.spec.render(Quoting::Falco));
    }
    texts
}
