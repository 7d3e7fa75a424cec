//! Jinja-style text templates over an alert, with minijinja (builtins, `tojson`, fuel).
//!
//! A template sees these variables ([`VARIABLES`]): `uuid`, `time` (RFC 3339, as in Falco's
//! JSON), `rule`, `priority` (Falco's name, `Warning`), `source`, `hostname`, `output`,
//! `output_fields` (a map in the rule's order; `output_fields["ka.user.name"]`; a null field is
//! undefined, so `| default("n/a")` works), `tags` (a list) and `link` (the alert's page in the
//! console when the sink has a `console_url`, else empty). Undefined values print as nothing.
//!
//! Checked when the config loads: syntax, unknown variable names (a typo such as `{{ rul }}`),
//! and a trial render against the test alert (unknown filters, type errors); every error names
//! the template's line. Rendering is bounded: each render has [`FUEL`] instructions and its
//! result is cut at [`MAX_RENDERED_BYTES`], so a template from a tenant cannot stall or bloat a
//! sink. No autoescaping: a template that builds JSON uses `| tojson`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::alert::{Alert, format_time};

/// The variables a template may use.
pub const VARIABLES: &[&str] = &[
    "uuid",
    "time",
    "rule",
    "priority",
    "source",
    "hostname",
    "output",
    "output_fields",
    "tags",
    "link",
];

/// Instructions one render may run (a loop over every output field takes a few hundred).
pub const FUEL: u64 = 100_000;

/// The longest rendered text, in bytes; longer results are cut at a character boundary.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// The name templates carry inside minijinja (it shows in nothing we print).
const NAME: &str = "template";

/// Why a template was refused or failed to render: the line and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TemplateError {
    /// The template's line at fault (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl TemplateError {
    fn from_jinja(e: &minijinja::Error) -> Self {
        let message = match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        };
        TemplateError {
            line: e.line().unwrap_or(1),
            message,
        }
    }
}

/// A compiled template. Compares, prints and serializes as its source text.
#[derive(Clone)]
pub struct AlertTemplate {
    source: String,
    env: Arc<Environment<'static>>,
}

impl AlertTemplate {
    /// Compiles and checks `source` (see the module doc).
    pub fn parse(source: &str) -> Result<AlertTemplate, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| TemplateError::from_jinja(&e))?;
        let globals: HashSet<String> = env.globals().map(|(k, _)| k.to_string()).collect();
        let tmpl = env
            .get_template(NAME)
            .map_err(|e| TemplateError::from_jinja(&e))?;
        let mut unknown: Vec<String> = tmpl
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !VARIABLES.contains(&v.as_str()) && !globals.contains(v))
            .collect();
        unknown.sort();
        if let Some(v) = unknown.first() {
            return Err(TemplateError {
                line: line_of(source, v),
                message: format!(
                    "unknown variable `{v}`; a template knows {}",
                    VARIABLES.join(", ")
                ),
            });
        }
        let t = AlertTemplate {
            source: source.to_string(),
            env: Arc::new(env),
        };
        let sample = crate::sinks::test_alert::test_alert("kaudit");
        t.render(&sample, Some("https://kaudit.example/ui/alerts/x"))?;
        t.render(&sample, None)?;
        Ok(t)
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the template for `alert`; `link` is the alert's console page, if any.
    pub fn render(&self, alert: &Alert, link: Option<&str>) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| TemplateError::from_jinja(&e))?;
        let mut out = tmpl
            .render(context(alert, link))
            .map_err(|e| TemplateError::from_jinja(&e))?;
        if out.len() > MAX_RENDERED_BYTES {
            let mut end = MAX_RENDERED_BYTES;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
        }
        Ok(out)
    }

    /// Renders, or logs why not and returns `fallback()`: an alert is never held back by its
    /// template (a render that fails on one alert's data sends the sink's default text).
    pub fn render_or(
        &self,
        alert: &Alert,
        link: Option<&str>,
        fallback: impl FnOnce() -> String,
    ) -> String {
        match self.render(alert, link) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(uuid = %alert.uuid, rule = %alert.rule, error = %e, "template failed on this alert; sending the default text");
                fallback()
            }
        }
    }
}

/// The first line of `source` mentioning `name` (1 when none does).
fn line_of(source: &str, name: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(name))
        .map_or(1, |i| i + 1)
}

/// The template context of an alert.
fn context(a: &Alert, link: Option<&str>) -> Value {
    let mut m: BTreeMap<&str, Value> = BTreeMap::new();
    m.insert("uuid", Value::from(a.uuid.to_string()));
    m.insert("time", Value::from(format_time(&a.time)));
    m.insert("rule", Value::from(a.rule.as_str()));
    m.insert("priority", Value::from(a.priority.as_str()));
    m.insert("source", Value::from(a.source.as_str()));
    m.insert("hostname", Value::from(a.hostname.as_str()));
    m.insert("output", Value::from(a.output.as_str()));
    m.insert(
        "output_fields",
        Value::from_object(Fields(a.output_fields.clone())),
    );
    m.insert(
        "tags",
        Value::from(
            a.tags
                .iter()
                .map(|t| Value::from(t.as_str()))
                .collect::<Vec<_>>(),
        ),
    );
    m.insert("link", Value::from(link.unwrap_or("")));
    Value::from(m)
}

/// Output fields as a template map, in the rule's order, converted only when looked up.
#[derive(Debug)]
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Object for Fields {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_str()?).and_then(json)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.keys().map(|k| Value::from(k.as_str())).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// A JSON value as a template value; `null` is undefined.
fn json(v: &serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (None, Some(u), _) => Value::from(u),
            (None, None, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::from(
            items
                .iter()
                .map(|i| json(i).unwrap_or(Value::UNDEFINED))
                .collect::<Vec<_>>(),
        ),
        J::Object(o) => Value::from_object(Fields(o.clone())),
    })
}

impl PartialEq for AlertTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for AlertTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlertTemplate({:?})", self.source)
    }
}

impl Serialize for AlertTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for AlertTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AlertTemplate::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Priority;

    fn alert() -> Alert {
        let mut a = crate::sinks::test_alert::test_alert("h");
        a.priority = Priority::Critical;
        a.output_fields = serde_json::from_str(
            r#"{"ka.user.name":"alice","ka.target.namespace":"prod","ka.resp.code":403,"ka.target.name":null,"ka.user.groups":["a","b"]}"#,
        )
        .unwrap();
        a
    }

    #[test]
    fn renders_alert_variables_and_fields_in_order() {
        let t = AlertTemplate::parse(
            "{{ priority|upper }} {{ rule }} by {{ output_fields['ka.user.name'] }} ({{ output_fields['ka.resp.code'] + 1 }})\n{% for k, v in output_fields|items %}{{ k }}={{ v }};{% endfor %}\n[{{ output_fields['ka.target.name'] | default('n/a') }}]{{ link }}",
        )
        .unwrap();
        let out = t.render(&alert(), Some("L")).unwrap();
        assert_eq!(
            out,
            "CRITICAL Test rule by alice (404)\nka.user.name=alice;ka.target.namespace=prod;ka.resp.code=403;ka.target.name=;ka.user.groups=['a', 'b'];\n[n/a]L"
        );
    }

    #[test]
    fn tojson_builds_valid_json() {
        let t =
            AlertTemplate::parse(r#"{"o": {{ output|tojson }}, "f": {{ output_fields|tojson }}}"#)
                .unwrap();
        let mut a = alert();
        a.output = "quote \" and \n newline".into();
        let v: serde_json::Value = serde_json::from_str(&t.render(&a, None).unwrap()).unwrap();
        assert_eq!(v["o"], a.output.as_str());
        assert_eq!(v["f"]["ka.resp.code"], 403);
    }

    #[test]
    fn errors_name_the_line() {
        let e = AlertTemplate::parse("ok\n{{ rule ").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("syntax error"), "{e}");
        let e = AlertTemplate::parse("a\nb\n{{ rul }}").unwrap_err();
        assert_eq!((e.line, e.message.contains("`rul`")), (3, true), "{e}");
        let e = AlertTemplate::parse("x\n{{ rule | nosuchfilter }}").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("nosuchfilter"), "{e}");
        // Globals of the engine are not unknown variables.
        assert!(AlertTemplate::parse("{% for i in range(3) %}{{ i }}{% endfor %}").is_ok());
    }

    #[test]
    fn bounded_by_fuel_and_size() {
        let e = AlertTemplate::parse(
            "{% for i in range(5000) %}{% for j in range(5000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert!(e.message.contains("fuel"), "{e}");
        let t = AlertTemplate::parse("{{ 'é' * 600000 }}").unwrap();
        let out = t.render(&alert(), None).unwrap();
        assert!(out.len() <= MAX_RENDERED_BYTES && out.len() > MAX_RENDERED_BYTES - 2);
    }

    #[test]
    fn deserializes_from_a_string_and_falls_back() {
        let t: AlertTemplate = serde_json::from_str(r#""{{ rule }}""#).unwrap();
        assert_eq!(t.source(), "{{ rule }}");
        assert_eq!(serde_json::to_string(&t).unwrap(), r#""{{ rule }}""#);
        let e = serde_json::from_str::<AlertTemplate>(r#""{% if %}""#).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        // Fails only on some data: falls back.
        let t = AlertTemplate::parse("{{ output_fields['ka.resp.code'] + 1 }}").unwrap();
        let mut a = alert();
        a.output_fields
            .insert("ka.resp.code".into(), serde_json::Value::String("x".into()));
        assert_eq!(t.render_or(&a, None, || "default".into()), "default");
    }
}
