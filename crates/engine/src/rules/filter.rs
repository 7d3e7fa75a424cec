//! Router filters: a Falco-syntax condition over an alert. `rule`, `priority`, `source`,
//! `hostname`, `uuid` and `tags` (a list) are bare-identifier fields; every output field is
//! addressed by its own name (`ka.target.namespace`, `ka.uri.param[command]`) and read from
//! `output_fields`, where arrays are lists and `null` is missing.

use super::compiler::{self, ALERT_BARE_FIELDS, Catalog, Node, Slots};
use super::eval::{self, Ctx, Source};
use super::parser;
use crate::alert::Alert;

/// A filter expression that does not compile; the message quotes it and says what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("filter '{expr}': {message}")]
pub struct FilterError {
    /// The expression as given.
    pub expr: String,
    /// What is wrong with it (with a byte offset where one is known).
    pub message: String,
}

/// A compiled alert filter.
#[derive(Clone, Debug)]
pub struct AlertFilter {
    node: Node,
    slots: Slots,
}

impl AlertFilter {
    /// Compiles a filter expression. Macros do not exist here: any other bare identifier is
    /// an error.
    pub fn compile(expr: &str) -> Result<AlertFilter, FilterError> {
        super::with_big_stack(|| Self::compile_here(expr))
    }

    fn compile_here(expr: &str) -> Result<AlertFilter, FilterError> {
        let fail = |message: String| FilterError {
            expr: expr.to_string(),
            message,
        };
        let ast = parser::parse(expr, ALERT_BARE_FIELDS).map_err(|e| fail(e.to_string()))?;
        let mut slots = Slots::default();
        let node = compiler::compile(&ast, Catalog::Alert, &mut slots).map_err(|e| {
            fail(if e.message.starts_with("Undefined macro") {
                format!(
                    "unknown identifier at offset {} (alert fields are {} and output field names)",
                    e.at,
                    ALERT_BARE_FIELDS.join(", ")
                )
            } else {
                format!("{} at offset {}", e.message, e.at)
            })
        })?;
        Ok(AlertFilter { node, slots })
    }

    /// True when the alert passes the filter.
    pub fn matches(&self, a: &Alert) -> bool {
        let mut ctx = Ctx::new(Source::Alert(a), &self.slots.list);
        eval::eval(&self.node, &mut ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Priority;

    fn compile(expr: &str) -> Result<AlertFilter, FilterError> {
        AlertFilter::compile(expr)
    }

    fn alert(rule: &str, ns: &str, p: Priority) -> Alert {
        let mut fields = serde_json::Map::new();
        fields.insert("ka.target.namespace".into(), ns.into());
        fields.insert(
            "ka.user.groups".into(),
            serde_json::json!(["dev", "system:authenticated"]),
        );
        Alert {
            uuid: uuid::Uuid::new_v4(),
            time: chrono::Utc::now(),
            rule: rule.into(),
            priority: p,
            source: "k8s_audit".into(),
            hostname: "h".into(),
            output: "o".into(),
            output_fields: fields,
            tags: vec!["k8s".into(), "mitre_execution".into()],
        }
    }

    #[test]
    fn the_issue_example_routes_by_rule_and_namespace() {
        let f =
            compile(r#"rule in ("Attach/Exec Pod") and ka.target.namespace startswith "prod-""#)
                .unwrap();
        assert!(f.matches(&alert("Attach/Exec Pod", "prod-payments", Priority::Notice)));
        assert!(!f.matches(&alert("Attach/Exec Pod", "dev", Priority::Notice)));
        assert!(!f.matches(&alert("Other", "prod-payments", Priority::Notice)));
    }

    #[test]
    fn tags_lists_priority_and_negation() {
        let f = compile(r#"tags intersects (mitre_execution) and not priority = Debug"#).unwrap();
        assert!(f.matches(&alert("R", "x", Priority::Warning)));
        assert!(!f.matches(&alert("R", "x", Priority::Debug)));
        let f = compile(r#"ka.user.groups intersects (dev) and hostname = h"#).unwrap();
        assert!(f.matches(&alert("R", "x", Priority::Warning)));
        // A field the alert lacks makes the check false.
        let f = compile(r#"ka.target.name = x"#).unwrap();
        assert!(!f.matches(&alert("R", "x", Priority::Warning)));
    }

    #[test]
    fn bad_filters_say_why() {
        for bad in ["rule = ", "rule in (a", "nosuchmacro", "rule contains"] {
            let e = compile(bad).unwrap_err();
            assert!(e.to_string().contains(bad.trim()), "{bad}: {e}");
        }
    }
}
