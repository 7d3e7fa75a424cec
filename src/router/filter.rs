//! Sink filters: a condition in Falco's syntax over the alert, compiled by the rules engine's
//! compiler (`rule`, `priority`, `source`, `hostname`, `uuid`, `tags`, and every output field by
//! its own name). One compiler serves rules and filters, so both speak exactly the same language.

use crate::rules::AlertFilter;

/// A compiled sink filter.
pub type Filter = AlertFilter;

/// Compiles a filter expression; the error says what is wrong with it.
pub fn compile(expr: &str) -> Result<Filter, String> {
    AlertFilter::compile(expr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, Priority};

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
            assert!(e.contains(bad.trim()), "{bad}: {e}");
        }
    }
}
