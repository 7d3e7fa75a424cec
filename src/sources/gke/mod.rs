//! `gke`: GKE's Kubernetes audit logs from a Pub/Sub subscription that a Cloud Logging sink
//! feeds. Each message's data is one `LogEntry` (JSON) whose `protoPayload` is a
//! `google.cloud.audit.AuditLog`; [`convert`] turns it into an `audit.k8s.io/v1` Event.
//!
//! Pull, append, then acknowledge (REST: `subscriptions.pull`, `subscriptions.acknowledge`):
//! a message is acked only once its event is in the inbox, so a crash before the ack gets it
//! redelivered (same `insertId`, so the same auditID and alert uuids). A message that is not a
//! Kubernetes AuditLog entry is counted, logged and acked (redelivering it would not change it).

pub mod convert;
mod source;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Source, SourceEnv, SourceError, SourceType};
use crate::invalid::{Invalid, existing_file, positive};
use crate::transport::ClientTls;

pub use source::GkeSource;

/// Settings of a `gke` source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GkeConfig {
    /// The subscription, `projects/<project>/subscriptions/<id>`.
    pub subscription: String,
    /// Most messages per pull (Pub/Sub allows 1000).
    #[serde(default = "default_max_messages")]
    pub max_messages: u32,
    /// API base URL.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `host:port` of a Pub/Sub emulator (plain HTTP, no authentication); defaults to
    /// `PUBSUB_EMULATOR_HOST` when that is set.
    #[serde(default)]
    pub emulator_host: Option<String>,
    /// A service-account key file (JSON); without it the metadata server is asked (Workload
    /// Identity on GKE).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Base URL of the metadata server.
    #[serde(default = "crate::gcp::default_metadata_url")]
    pub metadata_url: String,
    /// Request timeout, in milliseconds (a pull waits up to this for messages).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate for the endpoints.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_max_messages() -> u32 {
    500
}
fn default_endpoint() -> String {
    "https://pubsub.googleapis.com".into()
}
fn default_timeout_ms() -> u64 {
    60_000
}

impl GkeConfig {
    /// Checks the subscription path, numbers, URLs and files.
    pub fn validate(&self) -> Result<(), Invalid> {
        let parts: Vec<&str> = self.subscription.split('/').collect();
        if !matches!(parts.as_slice(), ["projects", p, "subscriptions", s] if !p.is_empty() && !s.is_empty())
        {
            return Err(Invalid::new(
                "subscription",
                format!(
                    "{:?} is not projects/<project>/subscriptions/<id>",
                    self.subscription
                ),
            ));
        }
        if !(1..=1000).contains(&self.max_messages) {
            return Err(Invalid::new("max_messages", "must be 1..=1000"));
        }
        positive("timeout_ms", self.timeout_ms)?;
        for (k, u) in [
            ("endpoint", &self.endpoint),
            ("metadata_url", &self.metadata_url),
        ] {
            reqwest::Url::parse(u).map_err(|e| Invalid::new(k, format!("{u:?}: {e}")))?;
        }
        if let Some(p) = &self.credentials_file {
            existing_file("credentials_file", p)?;
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }
}

/// The `gke` source type.
pub struct Gke;

impl SourceType for Gke {
    const NAME: &'static str = "gke";
    type Config = GkeConfig;

    fn validate(config: &GkeConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(
        _name: &str,
        config: &GkeConfig,
        _env: &SourceEnv,
    ) -> Result<Option<Box<dyn Source>>, SourceError> {
        Ok(Some(Box::new(GkeSource::new(config.clone())?)))
    }
}
