//! The seam between sink filters and the rules engine.
//!
//! MERGE SEAM: the rules engine (another branch) provides `crate::rules::AlertFilter` with
//! `compile(expr) -> Result<AlertFilter, String>` and `matches(&Alert) -> bool`, which speaks
//! Falco's full condition syntax. At merge, make [`Filter`] wrap `rules::AlertFilter` and
//! delete the stand-in below; callers (`router`, `sinks::validate_all`) do not change.
//!
//! Until then a tiny stand-in understands only equalities joined by `and`:
//! `rule = "Create Privileged Pod" and priority = Warning and ka.target.namespace = kube-system`.
//! Fields are `rule`, `priority` (compared case-insensitively by name), `source`, `hostname`,
//! `tags` (true when the value is one of the tags) and any output field by name.

use crate::alert::{Alert, Priority};

#[derive(Clone, Debug, PartialEq)]
struct Eq {
    field: String,
    value: String,
}

/// A compiled sink filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    all: Vec<Eq>,
}

/// Compiles a filter expression; the error says what is wrong with it.
pub fn compile(expr: &str) -> Result<Filter, String> {
    let mut all = Vec::new();
    let mut rest = expr.trim();
    if rest.is_empty() {
        return Err("empty filter".into());
    }
    loop {
        let (field, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected `field = value` in {rest:?}"))?;
        let field = field.trim().trim_end_matches('=').trim();
        let after = after.trim_start_matches('=').trim_start();
        if field.is_empty() || field.contains(char::is_whitespace) {
            return Err(format!("bad field name {field:?}"));
        }
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').ok_or("unclosed quote")?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        if value.is_empty() {
            return Err(format!("missing value for {field:?}"));
        }
        if field == "priority" {
            value.parse::<Priority>().map_err(|e| e.to_string())?;
        }
        all.push(Eq {
            field: field.to_string(),
            value,
        });
        let tail = tail.trim();
        if tail.is_empty() {
            break;
        }
        rest = tail
            .strip_prefix("and ")
            .ok_or_else(|| {
                format!(
                    "unsupported syntax {tail:?} (the stand-in filter knows only `a = b and c = d`)"
                )
            })?
            .trim();
    }
    Ok(Filter { all })
}

impl Filter {
    /// True when the alert passes.
    pub fn matches(&self, a: &Alert) -> bool {
        self.all.iter().all(|e| match e.field.as_str() {
            "priority" => e.value.parse::<Priority>().is_ok_and(|p| p == a.priority),
            "tags" => a.tags.contains(&e.value),
            f => a.field_text(f).is_some_and(|v| v == e.value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        serde_json::from_str(
            r#"{"time":"2026-01-01T00:00:00Z","rule":"Create Privileged Pod","priority":"Warning","output":"o","output_fields":{"ka.target.namespace":"kube-system"},"tags":["k8s"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn equalities() {
        let a = alert();
        assert!(
            compile(r#"rule = "Create Privileged Pod""#)
                .unwrap()
                .matches(&a)
        );
        assert!(
            compile("priority = warning and ka.target.namespace = kube-system")
                .unwrap()
                .matches(&a)
        );
        assert!(compile("tags = k8s").unwrap().matches(&a));
        assert!(!compile("priority = Error").unwrap().matches(&a));
        assert!(!compile("ka.target.name = x").unwrap().matches(&a));
    }

    #[test]
    fn errors() {
        assert!(compile("").is_err());
        assert!(compile("rule").is_err());
        assert!(compile("priority = loud").is_err());
        assert!(compile("rule = a or rule = b").is_err());
        assert!(compile(r#"rule = "a"#).is_err());
    }
}
