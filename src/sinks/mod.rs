//! Alert sinks: one module per destination type. A sink only knows how to talk to its system and
//! how to classify a failure; queues, retries, spooling and dead letters are `delivery`'s, and the
//! HTTP client, TLS and cloud auth are plumbing below (`transport`, `aws`, `gcp`).
//!
//! Adding a sink: write `sinks/<name>/` (settings with `validate()`, a [`Sink`], and a unit struct
//! implementing [`SinkType`]), declare the module below and add its line to the table. Every
//! sink also obeys the tenant rules of [`tenancy`] (`tenant`, `ambient_credentials`, `egress`):
//! read its "For sink authors" paragraph.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::alert::Priority;
use crate::invalid::Invalid;

pub mod alertmanager;
pub mod archive;
pub mod console;
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
pub mod tenancy;
pub mod test_alert;
pub mod util;
pub mod webhook;

use registry::sink_types;

pub use crate::delivery::{Sink, SinkError};
pub use registry::SinkType;
pub use tenancy::{Egress, SinkRules};

use crate::transport::access::{self, Access};

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
    /// The namespace of the tenant that owns the sink (see [`tenancy`]).
    pub tenant: Option<String>,
    /// May use kaudit's ambient credentials (false for every tenant sink).
    pub ambient_credentials: bool,
    /// Whether connections obey the egress policy (restricted for every tenant sink).
    pub egress: Egress,
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
    Console => console::Console,
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
            tenant: None,
            ambient_credentials: true,
            egress: Egress::Open,
            settings: SinkSettings::Stdout(stdout::StdoutConfig::default()),
        }
    }

    /// True when the sink's connections obey the egress policy.
    pub fn restricted(&self) -> bool {
        self.egress == Egress::Restricted
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
        let tenant = match map.remove("tenant") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "sink {name:?}: `tenant` must be a namespace name, got {other}"
                )));
            }
        };
        // A tenant's sink never has ambient credentials nor open egress: saying otherwise is
        // a mistake (or an attack on the renderer), refused rather than ignored.
        let ambient_credentials = match map.remove("ambient_credentials") {
            None | Some(Value::Null) => tenant.is_none(),
            Some(Value::Bool(true)) if tenant.is_some() => {
                return Err(D::Error::custom(format!(
                    "sink {name:?}: a tenant's sink cannot have `ambient_credentials: true`"
                )));
            }
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "sink {name:?}: `ambient_credentials` must be true or false, got {other}"
                )));
            }
        };
        let egress = match map.remove("egress") {
            None | Some(Value::Null) if tenant.is_some() => Egress::Restricted,
            None | Some(Value::Null) => Egress::Open,
            Some(v) => match serde_json::from_value::<Egress>(v.clone()) {
                Ok(Egress::Open) if tenant.is_some() => {
                    return Err(D::Error::custom(format!(
                        "sink {name:?}: a tenant's sink cannot have `egress: open`"
                    )));
                }
                Ok(e) => e,
                Err(_) => {
                    return Err(D::Error::custom(format!(
                        "sink {name:?}: `egress` must be `open` or `restricted`, got {v}"
                    )));
                }
            },
        };
        let settings = SinkSettings::parse(&type_name, Value::Object(map))
            .map_err(|e| D::Error::custom(format!("sink {name:?} (type {type_name}): {e}")))?;
        Ok(SinkConfig {
            name,
            min_priority,
            filter,
            shape,
            tenant,
            ambient_credentials,
            egress,
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
        if let Some(t) = &self.tenant {
            map.insert("tenant".into(), Value::String(t.clone()));
        }
        if !self.ambient_credentials {
            map.insert("ambient_credentials".into(), Value::Bool(false));
        }
        if self.restricted() {
            map.insert("egress".into(), Value::String("restricted".into()));
        }
        if let Ok(Value::Object(rest)) = serde_json::to_value(&self.settings) {
            map.extend(rest);
        }
        map.serialize(s)
    }
}

/// Checks the sink list as a whole: unique names, and each sink's own rules, restricted sinks
/// against `rules`. The key path of the error starts at `sinks[i]`.
pub fn validate_all(sinks: &[SinkConfig], rules: &SinkRules) -> Result<(), Invalid> {
    let mut seen = std::collections::HashSet::new();
    for (i, s) in sinks.iter().enumerate() {
        s.validate(&mut seen, rules).map_err(|e| e.at("sinks", i))?;
    }
    Ok(())
}

/// Checks one sink on its own as [`validate_all`] does (the operator checks each input alone).
pub fn validate_one(sink: &SinkConfig, rules: &SinkRules) -> Result<(), Invalid> {
    sink.validate(&mut std::collections::HashSet::new(), rules)
}

impl SinkConfig {
    /// Checks one entry; `seen` holds the names of the entries before it.
    fn validate<'a>(
        &'a self,
        seen: &mut std::collections::HashSet<&'a str>,
        rules: &SinkRules,
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
        let named = |e: Invalid| Invalid {
            message: format!(
                "sink {:?} (type {}): {}",
                self.name,
                self.settings.type_name(),
                e.message
            ),
            ..e
        };
        self.settings.validate().map_err(named)?;
        if !self.ambient_credentials {
            let v = serde_json::to_value(&self.settings).unwrap_or(Value::Null);
            tenancy::check_files(&v, rules.credentials_dir.as_deref()).map_err(named)?;
        }
        if self.restricted() {
            self.settings.validate_restricted(rules).map_err(named)?;
        }
        Ok(())
    }

    /// The restrictions in force while this sink is built.
    fn access(&self, rules: &SinkRules, dry_run: bool) -> Access {
        Access {
            sink: self.name.clone(),
            ambient_credentials: self.ambient_credentials,
            egress: self.restricted().then(|| rules.egress.clone()),
            dry_run,
        }
    }
}

/// Connects a sink from its config, under its restrictions ([`tenancy`]) and behind its shape.
/// Only a config that cannot work fails here (unreadable secret files, bad certificates,
/// credentials it may not use); an unreachable destination does not: delivery retries.
pub async fn build(cfg: &SinkConfig, rules: &SinkRules) -> Result<Box<dyn Sink>, SinkError> {
    let sink = access::scope(cfg.access(rules, false), cfg.settings.build()).await?;
    let shaped = shape::Shaped::wrap(sink, &cfg.shape);
    Ok(Box::new(tenancy::Redacting(shaped)))
}

/// Builds a sink as [`build`] does, with its real files, but connects nothing: what `kaudit
/// config check` and the operator run, so that they refuse every sink `serve` would refuse.
pub async fn dry_run(cfg: &SinkConfig, rules: &SinkRules) -> Result<(), SinkError> {
    access::scope(cfg.access(rules, true), cfg.settings.build())
        .await
        .map(drop)
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
