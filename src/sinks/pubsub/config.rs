//! The `pubsub` sink's settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, existing_file, positive};
use crate::sinks::template::Template;
use crate::sinks::util::parse_url;
use crate::transport::ClientTls;

/// The attributes every message carries; custom `attributes` may not reuse these names.
pub const STANDARD_ATTRIBUTES: [&str; 4] = ["uuid", "rule", "priority", "source"];

/// Settings of a `pubsub` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubConfig {
    /// The Google Cloud project id that owns the topic.
    pub project: String,
    /// The topic id (the last part of `projects/P/topics/T`). It must exist: a missing topic is
    /// a permanent error (HTTP 404) and the alerts are dead-lettered.
    pub topic: String,
    /// Extra attributes set on every message (`cluster: prod`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Ordering key template (see `sinks::template`, values slugged), e.g.
    /// `{field:ka.target.namespace}`; unset = no ordering key. Subscribers only get ordered
    /// delivery when their subscription enables message ordering.
    #[serde(default)]
    pub ordering_key: Option<String>,
    /// API base URL (default `https://pubsub.googleapis.com`; a regional endpoint such as
    /// `https://europe-west1-pubsub.googleapis.com` keeps ordered messages in one region).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `host:port` of a Pub/Sub emulator: plain HTTP, no authentication. Defaults to the
    /// `PUBSUB_EMULATOR_HOST` environment variable when that is set.
    #[serde(default)]
    pub emulator_host: Option<String>,
    /// A service-account key file (JSON); without it the metadata server is asked.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Base URL of the metadata server (default `http://metadata.google.internal`).
    #[serde(default = "crate::gcp::default_metadata_url")]
    pub metadata_url: String,
    /// Most alerts per publish request (Pub/Sub allows 1000 messages and 10 MB).
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Request timeout, in milliseconds.
    #[serde(default = "crate::transport::default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate for the endpoints.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_endpoint() -> String {
    "https://pubsub.googleapis.com".into()
}
fn default_batch_max() -> usize {
    100
}

impl PubsubConfig {
    /// Checks names, the template, URLs and files.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (key, id) in [("project", &self.project), ("topic", &self.topic)] {
            if id.is_empty() {
                return Err(Invalid::new(key, "must not be empty"));
            }
            if id.contains('/') {
                return Err(Invalid::new(key, "is an id, not a path (no `/`)"));
            }
        }
        if let Some(t) = &self.ordering_key {
            Template::parse(t).map_err(|e| Invalid::new("ordering_key", e))?;
        }
        for k in self.attributes.keys() {
            let key = format!("attributes.{k}");
            if STANDARD_ATTRIBUTES.contains(&k.as_str()) {
                return Err(Invalid::new(
                    key,
                    "set by kaudit on every message; choose another name",
                ));
            }
            if k.is_empty() || k.starts_with("goog") {
                return Err(Invalid::new(
                    key,
                    format!("{k:?} is not a valid attribute name (empty or `goog` prefix)"),
                ));
            }
        }
        if !(1..=1000).contains(&self.batch_max) {
            return Err(Invalid::new("batch_max", "must be 1..=1000"));
        }
        positive("timeout_ms", self.timeout_ms)?;
        parse_url("endpoint", &self.endpoint)?;
        parse_url("metadata_url", &self.metadata_url)?;
        if let Some(p) = &self.credentials_file {
            existing_file("credentials_file", p)?;
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<PubsubConfig, String> {
        let c: PubsubConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates() {
        assert!(cfg("project: p\ntopic: t\n").is_ok());
        assert!(cfg("project: p\ntopic: t\nattributes: {rule: x}\n").is_err());
        assert!(cfg("project: p\ntopic: projects/p/topics/t\n").is_err());
        assert!(cfg("project: p\ntopic: t\nordering_key: \"{nope}\"\n").is_err());
        assert!(cfg("project: p\ntopic: t\nbogus: 1\n").is_err());
    }
}
