//! The SCC finding of an alert (fields in the module doc of `sinks::gcscc`).

use serde_json::{Map, Value, json};

use super::GcsccConfig;
use crate::alert::{Alert, Priority, format_time};

/// SCC severity of a Falco priority.
pub fn severity(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert | Priority::Critical => "CRITICAL",
        Priority::Error => "HIGH",
        Priority::Warning => "MEDIUM",
        Priority::Notice | Priority::Informational | Priority::Debug => "LOW",
    }
}

/// The finding's `resourceName`: the Kubernetes object the alert is about, as
/// `//container.googleapis.com/projects/<p>/locations/<l>/clusters/<c>/k8s/namespaces/<ns>/<resource>/<name>`
/// from `ka.target.namespace`, `ka.target.resource` and `ka.target.name`; cluster-scoped objects
/// drop `namespaces/<ns>/`, a missing name ends at the resource, and without a resource the
/// cluster itself is named.
pub fn resource_name(project: &str, location: &str, cluster: &str, a: &Alert) -> String {
    let mut s = format!(
        "//container.googleapis.com/projects/{project}/locations/{location}/clusters/{cluster}"
    );
    let field = |n: &str| a.field_text(n).filter(|v| !v.is_empty() && v != "<NA>");
    if let Some(resource) = field("ka.target.resource") {
        s.push_str("/k8s");
        if let Some(ns) = field("ka.target.namespace") {
            s.push_str("/namespaces/");
            s.push_str(&ns);
        }
        s.push('/');
        s.push_str(&resource);
        if let Some(name) = field("ka.target.name") {
            s.push('/');
            s.push_str(&name);
        }
    }
    s
}

/// An SCC-safe `sourceProperties` key: letters, digits and `_`, starting with a letter.
fn property_key(k: &str) -> String {
    let mut out: String = k
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(255)
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert(0, 'f');
        out.truncate(255);
    }
    out
}

/// The SCC finding for an alert.
pub fn finding(cfg: &GcsccConfig, a: &Alert) -> Value {
    let mut props = Map::new();
    for (k, v) in &a.output_fields {
        props.insert(property_key(k), v.clone());
    }
    props.insert("rule".into(), a.rule.clone().into());
    props.insert("priority".into(), a.priority.as_str().into());
    props.insert("source".into(), a.source.clone().into());
    props.insert("hostname".into(), a.hostname.clone().into());
    props.insert("tags".into(), json!(a.tags));
    props.insert("uuid".into(), a.uuid.to_string().into());
    let resource = resource_name(
        cfg.project.as_deref().unwrap_or_default(),
        cfg.cluster_location.as_deref().unwrap_or_default(),
        cfg.cluster.as_deref().unwrap_or_default(),
        a,
    );
    json!({
        "state": "ACTIVE",
        "category": a.rule,
        "resourceName": resource,
        "eventTime": format_time(&a.time),
        "severity": severity(a.priority),
        "findingClass": "THREAT",
        "description": a.output,
        "sourceProperties": props,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_keys_are_scc_safe() {
        assert_eq!(property_key("ka.target.name"), "ka_target_name");
        assert_eq!(property_key("9x"), "f9x");
    }

    #[test]
    fn severities() {
        assert_eq!(severity(Priority::Alert), "CRITICAL");
        assert_eq!(severity(Priority::Error), "HIGH");
        assert_eq!(severity(Priority::Warning), "MEDIUM");
        assert_eq!(severity(Priority::Debug), "LOW");
    }
}
