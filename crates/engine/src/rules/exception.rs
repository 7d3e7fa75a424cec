//! Rule exceptions as condition text: the one renderer used by the rules loader (Falco's
//! `exceptions:`) and by the operator's tenant rules, each with its explicit [`Quoting`].
//!
//! An exception with fields `f1, f2`, comparisons `c1, c2` and rows of values renders as
//! `(f1 c1 v1 and f2 c2 v2) or (...)`; with a single field (`fields: f`), every value goes into
//! one list: `(f c (v1, v2, ...))`. A rule's condition then becomes
//! `(<condition>) and not (<exception>) ...`.

/// How values are written into condition text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quoting {
    /// Falco's: a value containing a space is put in double quotes (unless it already starts
    /// with a quote); any other value is written as is, so the condition parser reads it as the
    /// rules file's author wrote it. For rules files: what Falco does, byte for byte.
    Falco,
    /// Every value in double quotes, with `\`, `"`, newline, carriage return and tab escaped,
    /// so that a value is always exactly one operand whatever it contains. For text from
    /// tenants, whose values must never become operators or parentheses.
    Escaped,
}

impl Quoting {
    /// `v` as one value in condition text.
    pub fn quote(self, v: &str) -> String {
        match self {
            Quoting::Falco => {
                if v.contains(' ') && !v.starts_with('"') && !v.starts_with('\'') {
                    format!("\"{v}\"")
                } else {
                    v.to_string()
                }
            }
            Quoting::Escaped => {
                let mut out = String::with_capacity(v.len() + 2);
                out.push('"');
                for c in v.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c => out.push(c),
                    }
                }
                out.push('"');
                out
            }
        }
    }

    fn list<'a>(self, items: impl IntoIterator<Item = &'a String>) -> String {
        let quoted: Vec<String> = items.into_iter().map(|i| self.quote(i)).collect();
        format!("({})", quoted.join(", "))
    }
}

/// The fields an exception compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fields {
    /// One field (`fields: f`): all values form one list, compared with `in`, `pmatch` or
    /// `intersects`.
    One(String),
    /// Several fields (`fields: [f1, f2]`): each row of values is a tuple, one comparison per
    /// field.
    Many(Vec<String>),
    /// No `fields` key: only valid when adding values to an exception defined earlier.
    Unspecified,
}

/// One value of an exception row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A scalar.
    Scalar(String),
    /// A list of scalars, written `(a, b)`.
    List(Vec<String>),
}

/// What an exception compares, and its values: everything that is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// The fields, as written (`name` or `name[arg]`).
    pub fields: Fields,
    /// One comparison operator per field, as written (`=`, `in`, `startswith`, ...).
    pub comps: Vec<String>,
    /// Rows of values.
    pub values: Vec<Vec<Value>>,
}

impl Exception {
    /// The condition text that matches the excepted events, or `None` when the exception has
    /// no values (or no fields): then it excepts nothing.
    pub fn render(&self, quoting: Quoting) -> Option<String> {
        if self.values.is_empty() {
            return None;
        }
        match &self.fields {
            Fields::Unspecified => None,
            Fields::One(f) => {
                let comp = self.comps.first().map(String::as_str).unwrap_or("in");
                let items = self.values.iter().flatten().flat_map(|v| match v {
                    Value::Scalar(s) => std::slice::from_ref(s),
                    Value::List(l) => l.as_slice(),
                });
                Some(format!("({f} {comp} {})", quoting.list(items)))
            }
            Fields::Many(fields) => {
                let rows: Vec<String> = self
                    .values
                    .iter()
                    .map(|row| {
                        let parts: Vec<String> = fields
                            .iter()
                            .zip(&self.comps)
                            .zip(row)
                            .map(|((f, c), v)| format!("{f} {c} {}", value(v, c, quoting)))
                            .collect();
                        format!("({})", parts.join(" and "))
                    })
                    .collect();
                Some(rows.join(" or "))
            }
        }
    }
}

/// One value after its comparison: lists in parentheses, and a scalar too when the operator
/// takes a list.
fn value(v: &Value, comp: &str, quoting: Quoting) -> String {
    match v {
        Value::List(items) => quoting.list(items),
        Value::Scalar(s) if super::parser::Op::from_name(comp).is_some_and(|o| o.takes_list()) => {
            quoting.list([s])
        }
        Value::Scalar(s) => quoting.quote(s),
    }
}

/// Splits a field as written in an exception, `name[arg]`, into its parts.
pub fn split_field(f: &str) -> (&str, Option<&str>) {
    match f.find('[') {
        Some(i) if f.ends_with(']') => (&f[..i], Some(&f[i + 1..f.len() - 1])),
        _ => (f, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parser::{self, Expr};

    fn s(v: &str) -> Value {
        Value::Scalar(v.into())
    }

    fn tuples(fields: &[&str], comps: &[&str], rows: Vec<Vec<Value>>) -> Exception {
        Exception {
            fields: Fields::Many(fields.iter().map(|f| f.to_string()).collect()),
            comps: comps.iter().map(|c| c.to_string()).collect(),
            values: rows,
        }
    }

    #[test]
    fn falco_quoting_quotes_only_values_with_spaces() {
        let e = tuples(
            &["ka.user.name", "ka.target.namespace"],
            &["=", "in"],
            vec![
                vec![s("alice"), s("kube system")],
                vec![s("bob"), Value::List(vec!["a".into(), "b c".into()])],
            ],
        );
        assert_eq!(
            e.render(Quoting::Falco).as_deref(),
            Some(
                r#"(ka.user.name = alice and ka.target.namespace in ("kube system")) or (ka.user.name = bob and ka.target.namespace in (a, "b c"))"#
            )
        );
        let one = Exception {
            fields: Fields::One("ka.verb".into()),
            comps: vec![],
            values: vec![vec![s("get")], vec![Value::List(vec!["list".into()])]],
        };
        assert_eq!(
            one.render(Quoting::Falco).as_deref(),
            Some("(ka.verb in (get, list))")
        );
        assert_eq!(
            Quoting::Falco.quote("\"already quoted\""),
            "\"already quoted\""
        );
    }

    #[test]
    fn escaped_quoting_keeps_every_value_one_operand() {
        let hostile = "x\") or (ka.verb = \"get";
        let e = tuples(
            &["ka.user.name", "ka.verb"],
            &["=", "in"],
            vec![vec![s(hostile), s("a\\b")]],
        );
        let text = e.render(Quoting::Escaped).unwrap_or_default();
        assert_eq!(
            text,
            r#"(ka.user.name = "x\") or (ka.verb = \"get" and ka.verb in ("a\\b"))"#
        );
        // The whole row parses as one conjunction of two checks: nothing was injected.
        match parser::parse(&text, &[]) {
            Ok(Expr::And(k)) => assert_eq!(k.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_values_render_nothing() {
        assert_eq!(
            tuples(&["ka.verb"], &["="], vec![]).render(Quoting::Falco),
            None
        );
        let unspecified = Exception {
            fields: Fields::Unspecified,
            comps: vec![],
            values: vec![vec![s("x")]],
        };
        assert_eq!(unspecified.render(Quoting::Escaped), None);
    }

    #[test]
    fn fields_split_at_their_argument() {
        assert_eq!(split_field("ka.uri.param[x]"), ("ka.uri.param", Some("x")));
        assert_eq!(split_field("ka.verb"), ("ka.verb", None));
        assert_eq!(split_field("a[b"), ("a[b", None));
    }
}
