//! Alert sinks: one module per destination type. A sink only knows how to talk to its system and
//! how to classify a failure; queues, retries, spooling and dead letters are `delivery`'s, and the
//! HTTP client, TLS and cloud auth are plumbing below (`transport`, `aws`, `gcp`).
//!
//! Adding a sink: write `sinks/<name>/` (settings with `validate()`, a [`Sink`], and a unit struct
//! implementing [`SinkType`]), declare the module below and add its line to the table.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::alert::Priority;
use crate::invalid::Invalid;

pub mod alertmanager;
pub mod archive;
pub mod discord;
pub mod elasticsearch;
pub mod file;
pub mod gcs;
pub mod gcscc;
pub mod googlechat;
pub mod http;
pub mod kafka;
pub mod loki;
pub mod mqtt;
pub mod nats;
pub mod opsgenie;
pub mod pagerduty;
pub mod policyreport;
pub mod pubsub;
pub mod rabbitmq;
pub mod redis;
pub mod registry;
pub mod s3;
pub mod shape;
pub mod slack;
pub mod sns;
pub mod splunk;
pub mod stdout;
pub mod syslog;
pub mod teams;
pub mod template;
pub mod test_alert;
pub mod util;
pub mod webhook;

use registry::sink_types;

pub use crate::delivery::{Sink, SinkError};
pub use registry::SinkType;

/// One entry of the `sinks:` list: the routing settings every sink has, plus its type's own.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkConfig {
    /// Unique name, used in metrics, logs, spool and dead-letter file names.
    pub name: String,
    /// Alerts below this priority skip the sink.
    pub min_priority: Priority,
    /// Optional condition in Falco's syntax over the alert (`rule`, `priority`, output fields...).
    pub filter: Option<String>,
    /// Fields added and the output rewritten for this sink (`custom_fields`,
    /// `templated_fields`, `output_format`).
    pub shape: shape::Shape,
    /// The type and its settings.
    pub settings: SinkSettings,
}

// The table of sink types: one line each, `Variant => module::Type` (see `registry`).
sink_types! {
    Stdout => stdout::Stdout,
    File => file::File,
    Nats => nats::Nats,
    Http => http::Http,
    Gcscc => gcscc::Gcscc,
    Kafka => kafka::Kafka,
    Sns => sns::Sns,
    Pubsub => pubsub::Pubsub,
    Syslog => syslog::Syslog,
    Elasticsearch => elasticsearch::Elasticsearch,
    Opensearch => elasticsearch::Opensearch,
    Loki => loki::Loki,
    Splunk => splunk::Splunk,
    Redis => redis::Redis,
    Mqtt => mqtt::Mqtt,
    Rabbitmq => rabbitmq::Rabbitmq,
    S3 => s3::S3,
    Gcs => gcs::Gcs,
    Policyreport => policyreport::PolicyReport,
    Slack => slack::Slack,
    Mattermost => slack::Mattermost,
    Rocketchat => slack::Rocketchat,
    Teams => teams::Teams,
    Googlechat => googlechat::GoogleChat,
    Discord => discord::Discord,
    Pagerduty => pagerduty::PagerDuty,
    Opsgenie => opsgenie::Opsgenie,
    Alertmanager => alertmanager::Alertmanager,
}

/// Deserializes a type's settings, naming the key at fault.
fn typed<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("key `{path}`: {}", e.into_inner())
        }
    })
}

impl SinkConfig {
    /// A `stdout` sink with default settings (the embedded default).
    pub fn stdout(name: &str) -> Self {
        SinkConfig {
            name: name.to_string(),
            min_priority: Priority::Debug,
            filter: None,
            shape: shape::Shape::default(),
            settings: SinkSettings::Stdout(stdout::StdoutConfig::default()),
        }
    }
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = Map::<String, Value>::deserialize(d)?;
        let name = match map.remove("name") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`name` must be a non-empty string, got {other}"
                )));
            }
            None => return Err(D::Error::custom("missing `name`")),
        };
        let type_name = match map.remove("type") {
            Some(Value::String(s)) => s,
            _ => {
                return Err(D::Error::custom(format!(
                    "sink {name:?}: missing or non-string `type`"
                )));
            }
        };
        let min_priority = match map.remove("min_priority") {
            None | Some(Value::Null) => Priority::Debug,
            Some(Value::String(s)) => s
                .parse()
                .map_err(|e| D::Error::custom(format!("sink {name:?}: `min_priority`: {e}")))?,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "sink {name:?}: `min_priority` must be a string, got {other}"
                )));
            }
        };
        let filter = match map.remove("filter") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "sink {name:?}: `filter` must be a string, got {other}"
                )));
            }
        };
        let mut shape_keys = Map::new();
        for k in shape::Shape::KEYS {
            if let Some(v) = map.remove(k) {
                shape_keys.insert(k.to_string(), v);
            }
        }
        let shape = typed::<shape::Shape>(Value::Object(shape_keys))
            .map_err(|e| D::Error::custom(format!("sink {name:?} (type {type_name}): {e}")))?;
        let settings = SinkSettings::parse(&type_name, Value::Object(map))
            .map_err(|e| D::Error::custom(format!("sink {name:?} (type {type_name}): {e}")))?;
        Ok(SinkConfig {
            name,
            min_priority,
            filter,
            shape,
            settings,
        })
    }
}

impl Serialize for SinkConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = Map::new();
        map.insert("name".into(), Value::String(self.name.clone()));
        map.insert(
            "type".into(),
            Value::String(self.settings.type_name().into()),
        );
        map.insert(
            "min_priority".into(),
            Value::String(self.min_priority.as_lower().into()),
        );
        if let Some(f) = &self.filter {
            map.insert("filter".into(), Value::String(f.clone()));
        }
        if let Ok(Value::Object(shape)) = serde_json::to_value(&self.shape) {
            map.extend(shape);
        }
        if let Ok(Value::Object(rest)) = serde_json::to_value(&self.settings) {
            map.extend(rest);
        }
        map.serialize(s)
    }
}

/// Checks the sink list as a whole: unique names, and each sink's own rules. The key path of the
/// error starts at `sinks[i]`.
pub fn validate_all(sinks: &[SinkConfig]) -> Result<(), Invalid> {
    let mut seen = std::collections::HashSet::new();
    for (i, s) in sinks.iter().enumerate() {
        s.validate(&mut seen).map_err(|e| e.at("sinks", i))?;
    }
    Ok(())
}

impl SinkConfig {
    /// Checks one entry; `seen` holds the names of the entries before it.
    fn validate<'a>(
        &'a self,
        seen: &mut std::collections::HashSet<&'a str>,
    ) -> Result<(), Invalid> {
        if !seen.insert(self.name.as_str()) {
            return Err(Invalid::new(
                "name",
                format!("duplicate sink name {:?}", self.name),
            ));
        }
        if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Invalid::new(
                "name",
                format!(
                    "{:?}: use letters, digits, '-' and '_' only (it names files and metrics)",
                    self.name
                ),
            ));
        }
        if let Some(f) = &self.filter
            && let Err(e) = crate::rules::AlertFilter::compile(f)
        {
            return Err(Invalid::new(
                "filter",
                format!("sink {:?}: invalid filter: {e}", self.name),
            ));
        }
        self.settings.validate().map_err(|e| Invalid {
            message: format!(
                "sink {:?} (type {}): {}",
                self.name,
                self.settings.type_name(),
                e.message
            ),
            ..e
        })
    }
}

/// Connects a sink from its config, behind its shape. Only a config that cannot work fails here
/// (unreadable secret files, bad certificates); an unreachable destination does not: delivery
/// retries.
pub async fn build(cfg: &SinkConfig) -> Result<Box<dyn Sink>, SinkError> {
    Ok(shape::Shaped::wrap(cfg.settings.build().await?, &cfg.shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_type_is_known_and_names_itself() {
        for t in TYPES {
            match SinkSettings::parse(t, serde_json::json!({})) {
                Ok(s) => assert_eq!(s.type_name(), *t),
                Err(e) => assert!(!e.contains("unknown sink type"), "{t}: {e}"),
            }
        }
        let e = SinkSettings::parse("smtp", serde_json::json!({})).unwrap_err();
        assert!(e.contains("known types: stdout,"), "{e}");
    }
}
