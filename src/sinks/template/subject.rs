//! Text templates over an alert, for NATS subjects (and any sink that needs a key or a name).
//!
//! Syntax: literal text with placeholders `{priority}`, `{rule}`, `{source}`, `{hostname}`,
//! `{uuid}` and `{field:NAME}` (any output field, e.g. `{field:ka.target.namespace}`); `{{` and
//! `}}` stand for literal braces. When rendered as a subject each value is slugged the way
//! falcosidekick slugs rule names: lower-cased, every run of characters other than `a-z0-9`
//! replaced by one `_`, leading and trailing `_` trimmed; an empty or missing value renders as
//! `unknown` (a NATS subject token cannot be empty).

use crate::alert::Alert;

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Field(String),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// falcosidekick's slug: lower case, runs of non-`[a-z0-9]` → `_`, trimmed of `_`.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending = false;
    for c in s.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending && !out.is_empty() {
                out.push('_');
            }
            pending = false;
            out.push(c);
        } else {
            pending = true;
        }
    }
    out
}

impl Template {
    /// Parses `text`; unknown placeholders and unbalanced braces are errors.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("template {text:?}: unclosed `{{`")),
                        }
                    }
                    let field = match name.as_str() {
                        "priority" | "rule" | "source" | "hostname" | "uuid" => name.clone(),
                        n => match n.strip_prefix("field:") {
                            Some(f) if !f.is_empty() => f.to_string(),
                            _ => {
                                return Err(format!(
                                    "template {text:?}: unknown placeholder {{{name}}}; use {{priority}}, {{rule}}, {{source}}, {{hostname}}, {{uuid}} or {{field:NAME}}"
                                ));
                            }
                        },
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Field(field));
                }
                '}' => return Err(format!("template {text:?}: unmatched `}}`")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Renders with every value slugged (see the module doc).
    pub fn render_slugged(&self, alert: &Alert) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Field(name) => {
                    let v = if name == "priority" {
                        alert.priority.as_lower().to_string()
                    } else {
                        alert.field_text(name).map(|v| slug(&v)).unwrap_or_default()
                    };
                    if v.is_empty() {
                        out.push_str("unknown");
                    } else {
                        out.push_str(&v);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_matches_falcosidekick() {
        assert_eq!(slug("Attach/Exec Pod (K8s)"), "attach_exec_pod_k8s",);
        assert_eq!(slug("__Create  Privileged Pod__"), "create_privileged_pod");
        assert_eq!(slug("ünïcode rule"), "n_code_rule");
    }

    #[test]
    fn parses_and_rejects() {
        assert!(Template::parse("falco.{priority}.{rule}").is_ok());
        assert!(Template::parse("a.{field:ka.target.namespace}.{{x}}").is_ok());
        assert!(Template::parse("falco.{prio}").is_err());
        assert!(Template::parse("falco.{rule").is_err());
        assert!(Template::parse("falco.}").is_err());
    }
}
