//! Reading Falco's own alerts (a JSON output line or an `http_output` body) into [`Alert`]s,
//! validated the way falcosidekick validates them.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::alert::{Alert, Priority};
pub use crate::detect::ORIGIN_FIELD;

/// Why a Falco alert was refused; the text names the missing or bad key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertInError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// A required key is missing or empty.
    #[error("missing or empty `{0}`")]
    Missing(&'static str),
    /// A key has a bad value.
    #[error("bad `{key}`: {message}")]
    Bad {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Parses one Falco alert JSON document. `uuid` is used, time-ordered by the alert's time
/// ([`crate::alert::time_ordered`]), when the document has none: pass a deterministic one (e.g.
/// from the file position) so that a re-read yields the same id.
pub fn parse(bytes: &[u8], uuid: Uuid) -> Result<Alert, AlertInError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| AlertInError::Json(e.to_string()))?;
    let Value::Object(mut m) = v else {
        return Err(AlertInError::NotObject);
    };
    let rule = take_str(&mut m, "rule")?;
    let output = take_str(&mut m, "output")?;
    let priority: Priority =
        take_str(&mut m, "priority")?
            .parse()
            .map_err(|e: crate::alert::UnknownPriority| AlertInError::Bad {
                key: "priority",
                message: e.to_string(),
            })?;
    let time_text = take_str(&mut m, "time")?;
    let time = chrono::DateTime::parse_from_rfc3339(&time_text)
        .map_err(|e| AlertInError::Bad {
            key: "time",
            message: format!("{time_text:?}: {e}"),
        })?
        .with_timezone(&chrono::Utc);
    let source = opt_str(&m, "source").unwrap_or_else(|| "k8s_audit".to_string());
    let hostname = opt_str(&m, "hostname").unwrap_or_default();
    let mut output_fields = match m.remove("output_fields") {
        Some(Value::Object(f)) => f,
        None | Some(Value::Null) => Map::new(),
        Some(_) => {
            return Err(AlertInError::Bad {
                key: "output_fields",
                message: "must be an object".into(),
            });
        }
    };
    output_fields.insert(ORIGIN_FIELD.into(), Value::String("falco".into()));
    let tags = match m.remove("tags") {
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|t| match t {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let uuid = match m.get("uuid").and_then(Value::as_str) {
        Some(s) => s.parse().map_err(|e| AlertInError::Bad {
            key: "uuid",
            message: format!("{s:?}: {e}"),
        })?,
        None => crate::alert::time_ordered(uuid, &time),
    };
    Ok(Alert {
        uuid,
        time,
        rule,
        priority,
        source,
        hostname,
        output,
        output_fields,
        tags,
    })
}

fn take_str(m: &mut Map<String, Value>, key: &'static str) -> Result<String, AlertInError> {
    match m.remove(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        _ => Err(AlertInError::Missing(key)),
    }
}

fn opt_str(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"hostname":"falco-0","output":"10:00:00.000000000: Notice K8s Serviceaccount Created (user=admin)","output_fields":{"ka.user.name":"admin"},"priority":"Notice","rule":"K8s Serviceaccount Created","source":"k8s_audit","tags":["k8s"],"time":"2026-11-22T10:00:00.123456789Z"}"#;

    #[test]
    fn a_falco_line_becomes_an_alert_marked_falco() {
        let id = Uuid::new_v4();
        let a = parse(LINE.as_bytes(), id).unwrap();
        assert_eq!(a.rule, "K8s Serviceaccount Created");
        assert_eq!(a.priority, Priority::Notice);
        assert_eq!(a.uuid, crate::alert::time_ordered(id, &a.time));
        assert_eq!(a.output_fields[ORIGIN_FIELD], "falco");
        assert_eq!(a.tags, vec!["k8s"]);
    }

    #[test]
    fn required_keys_are_named() {
        for (key, doc) in [
            ("rule", LINE.replace(r#""rule":"K8s Serviceaccount Created","#, "")),
            ("output", LINE.replace(r#""output":"10:00:00.000000000: Notice K8s Serviceaccount Created (user=admin)","#, "")),
            ("priority", LINE.replace(r#""priority":"Notice","#, "")),
            ("time", LINE.replace(r#","time":"2026-11-22T10:00:00.123456789Z""#, "")),
        ] {
            let e = parse(doc.as_bytes(), Uuid::nil()).unwrap_err();
            assert_eq!(e, AlertInError::Missing(key), "{doc}");
        }
        let bad = LINE.replace("\"Notice\"", "\"Loud\"");
        assert!(matches!(
            parse(bad.as_bytes(), Uuid::nil()),
            Err(AlertInError::Bad {
                key: "priority",
                ..
            })
        ));
        assert!(matches!(
            parse(b"[1]", Uuid::nil()),
            Err(AlertInError::NotObject)
        ));
        assert!(matches!(
            parse(b"{", Uuid::nil()),
            Err(AlertInError::Json(_))
        ));
    }
}
