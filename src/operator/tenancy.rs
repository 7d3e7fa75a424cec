//! Tenancy: turning a namespace's [`FalcoRule`](super::crd::FalcoRule) into a Falco rule that
//! can only ever match that namespace's events, and an [`AlertSink`](super::crd::AlertSink)'s
//! filter into one that only ever passes that namespace's alerts.
//!
//! The scope is the outermost conjunct of the final condition, after exceptions are compiled in:
//! `ka.target.namespace = "<ns>" and ((<condition>) and not (<exception>) ...)`. The user's
//! condition must parse completely on its own (so its text cannot close the parenthesis early),
//! exception values are always quoted and escaped (so they cannot inject operators), and the
//! rendered condition is parsed again and its shape checked before it is used.

use crate::alert::Priority;
use crate::rules::AlertFilter;
use crate::rules::compiler::{self, ALERT_BARE_FIELDS, Catalog};
use crate::rules::exception::{Exception, Fields, Quoting, Value, split_field};
use crate::rules::parser::{self, Expr, Op, Rhs};

use super::crd::{FalcoRuleSpec, RuleException};

/// The field every tenant condition and filter is scoped on.
pub const NAMESPACE_FIELD: &str = "ka.target.namespace";

/// Why a rule or a sink filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenancyError {
    /// The namespace is not a DNS label (cannot happen for a real namespace).
    #[error("invalid namespace {0:?}")]
    Namespace(String),
    /// The condition does not parse as a complete standalone condition.
    #[error("condition does not parse on its own: {0}")]
    Condition(String),
    /// An exception is malformed.
    #[error("exception {name:?}: {message}")]
    Exception {
        /// The exception's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A field of the spec is invalid.
    #[error("{field}: {message}")]
    Field {
        /// The spec field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The filter does not compile on its own.
    #[error("filter does not compile on its own: {0}")]
    Filter(String),
    /// The rendered text lost its namespace scope (a defect if it ever happens).
    #[error("internal: the rendered condition is not scoped to the namespace")]
    Unscoped,
}

/// True for a Kubernetes namespace name (an RFC 1123 label).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Quotes a value for a Falco condition: double quotes, `\` and `"` escaped (the shared
/// renderer's [`Quoting::Escaped`]).
pub fn quote(v: &str) -> String {
    Quoting::Escaped.quote(v)
}

fn valid_field_syntax(f: &str) -> bool {
    let (name, arg) = match f.find('[') {
        Some(i) => (&f[..i], Some(&f[i..])),
        None => (f, None),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
    let arg_ok = match arg {
        None => true,
        Some(a) => {
            a.len() >= 2
                && a.ends_with(']')
                && a[1..a.len() - 1].bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'*')
                })
        }
    };
    name_ok && arg_ok
}

/// Compiles one exception into condition text (`(f1 c1 "v" and f2 c2 ("v")) or (...)`),
/// or `None` when it has no values.
fn exception_text(e: &RuleException) -> Result<Option<String>, TenancyError> {
    let err = |message: String| TenancyError::Exception {
        name: e.name.clone(),
        message,
    };
    if e.name.trim().is_empty() {
        return Err(err("an exception needs a name".into()));
    }
    if e.fields.is_empty() {
        return Err(err("`fields` is empty".into()));
    }
    let comps: Vec<String> = if e.comps.is_empty() {
        vec!["=".into(); e.fields.len()]
    } else if e.comps.len() == e.fields.len() {
        e.comps.clone()
    } else {
        return Err(err(format!(
            "{} comps for {} fields",
            e.comps.len(),
            e.fields.len()
        )));
    };
    let mut ops = Vec::new();
    for (f, c) in e.fields.iter().zip(&comps) {
        if !valid_field_syntax(f) {
            return Err(err(format!("invalid field {f:?}")));
        }
        let (name, arg) = split_field(f);
        compiler::resolve_field(Catalog::Event, name, arg).map_err(|e| err(e.to_string()))?;
        let op = Op::from_name(c).ok_or_else(|| err(format!("unknown operator {c:?}")))?;
        if op == Op::Exists {
            return Err(err("`exists` takes no value".into()));
        }
        ops.push(op);
    }
    if e.values.is_empty() {
        return Ok(None);
    }
    if let Some(row) = e.values.iter().find(|row| row.len() != e.fields.len()) {
        return Err(err(format!(
            "a row has {} values for {} fields",
            row.len(),
            e.fields.len()
        )));
    }
    // Rendered by the rules engine's one exception renderer, every value quoted and escaped.
    let spec = Exception {
        fields: Fields::Many(e.fields.clone()),
        comps: ops.iter().map(|op| op.as_str().to_string()).collect(),
        values: e
            .values
            .iter()
            .map(|row| row.iter().map(|v| Value::Scalar(v.clone())).collect())
            .collect(),
    };
    Ok(spec.render(Quoting::Escaped))
}

/// True when `e` is `field = "<value>"` for the namespace field.
fn is_scope_check(e: &Expr, ns: &str) -> bool {
    matches!(e, Expr::Check { field, arg: None, op: Op::Eq, rhs: Rhs::Value(v), .. }
        if field == NAMESPACE_FIELD && v == ns)
}

/// Checks that a parsed condition is a conjunction with the namespace check among its direct
/// children: whatever the rest is, it can only match events of `ns`.
pub fn is_scoped(e: &Expr, ns: &str) -> bool {
    match e {
        Expr::And(children) => children.iter().any(|c| is_scope_check(c, ns)),
        other => is_scope_check(other, ns),
    }
}

/// The scoped condition of a tenant rule: user condition and exceptions, wrapped.
pub fn scoped_condition(ns: &str, spec: &FalcoRuleSpec) -> Result<String, TenancyError> {
    if !is_dns_label(ns) {
        return Err(TenancyError::Namespace(ns.into()));
    }
    let cond = spec.condition.trim();
    if cond.is_empty() {
        return Err(TenancyError::Condition("the condition is empty".into()));
    }
    parser::parse(cond, &[]).map_err(|e| TenancyError::Condition(e.to_string()))?;
    let mut inner = format!("({cond})");
    for e in &spec.exceptions {
        if let Some(t) = exception_text(e)? {
            inner.push_str(" and not (");
            inner.push_str(&t);
            inner.push(')');
        }
    }
    let text = format!("{NAMESPACE_FIELD} = {} and ({inner})", quote(ns));
    let ast = parser::parse(&text, &[]).map_err(|e| TenancyError::Condition(e.to_string()))?;
    if !is_scoped(&ast, ns) {
        return Err(TenancyError::Unscoped);
    }
    Ok(text)
}

/// The name a tenant rule gets: `<namespace>/<name>: <rule>`, unique per resource.
pub fn scoped_rule_name(ns: &str, name: &str, rule: &str) -> String {
    format!("{ns}/{name}: {rule}")
}

/// The output of a tenant rule: the user's, plus the namespace field when it lacks one, so that
/// every alert carries `ka.target.namespace` for namespaced sinks to route on.
pub fn scoped_output(output: &str) -> String {
    if output.contains("%ka.target.namespace") {
        output.trim_end().to_string()
    } else {
        format!("{} k8s.ns=%ka.target.namespace", output.trim_end())
    }
}

/// Checks the simple fields of a rule spec; returns the parsed priority.
pub fn check_rule_fields(spec: &FalcoRuleSpec) -> Result<Priority, TenancyError> {
    if spec.rule.trim().is_empty() {
        return Err(TenancyError::Field {
            field: "rule",
            message: "must not be empty".into(),
        });
    }
    if spec.rule.chars().any(char::is_control) {
        return Err(TenancyError::Field {
            field: "rule",
            message: "must not contain control characters".into(),
        });
    }
    if spec.output.trim().is_empty() {
        return Err(TenancyError::Field {
            field: "output",
            message: "must not be empty".into(),
        });
    }
    spec.priority
        .parse::<Priority>()
        .map_err(|e| TenancyError::Field {
            field: "priority",
            message: e.to_string(),
        })
}

/// The filter of a namespaced sink: the namespace check AND-ed with the user's filter, which
/// must compile on its own first.
pub fn scoped_filter(ns: &str, user: Option<&str>) -> Result<String, TenancyError> {
    if !is_dns_label(ns) {
        return Err(TenancyError::Namespace(ns.into()));
    }
    let scope = format!("{NAMESPACE_FIELD} = {}", quote(ns));
    let text = match user.map(str::trim).filter(|u| !u.is_empty()) {
        None => scope,
        Some(u) => {
            AlertFilter::compile(u).map_err(|e| TenancyError::Filter(e.to_string()))?;
            format!("{scope} and ({u})")
        }
    };
    let ast =
        parser::parse(&text, ALERT_BARE_FIELDS).map_err(|e| TenancyError::Filter(e.to_string()))?;
    if !is_scoped(&ast, ns) {
        return Err(TenancyError::Unscoped);
    }
    AlertFilter::compile(&text).map_err(|e| TenancyError::Filter(e.to_string()))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cond: &str) -> FalcoRuleSpec {
        FalcoRuleSpec {
            rule: "r".into(),
            desc: String::new(),
            condition: cond.into(),
            output: "o".into(),
            priority: "warning".into(),
            tags: vec![],
            enabled: true,
            exceptions: vec![],
        }
    }

    #[test]
    fn unbalanced_user_text_is_refused() {
        for c in [
            r#"ka.verb = get) or (ka.verb = create"#,
            r#"ka.verb = get)"#,
            r#"(ka.verb = get"#,
            "",
            "ka.verb = get # comment",
        ] {
            assert!(scoped_condition("team-a", &spec(c)).is_err(), "{c}");
        }
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        let e = parser::parse(
            &format!("ka.user.name = {}", quote("x\") or (ka.verb = \"get")),
            &[],
        )
        .unwrap();
        assert!(matches!(e, Expr::Check { .. }), "{e:?}");
    }

    #[test]
    fn scope_shape() {
        let t = scoped_condition("team-a", &spec("ka.verb = get or not ka.verb = list")).unwrap();
        assert!(
            t.starts_with("ka.target.namespace = \"team-a\" and ("),
            "{t}"
        );
        assert!(scoped_condition("Team_A", &spec("ka.verb = get")).is_err());
    }
}
