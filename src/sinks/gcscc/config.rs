//! The `gcscc` sink's settings, per mode.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, existing_file, positive};
use crate::secret::Secret;
use crate::sinks::util::{SecretSetting, parse_url};
use crate::transport::ClientTls;

/// The integration mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GcsccMode {
    /// POST to a gcscc connector webhook.
    Connector,
    /// Create findings through the SCC v2 API.
    Api,
}

/// Settings of a `gcscc` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsccConfig {
    /// `connector` or `api`.
    pub mode: GcsccMode,
    /// connector: the connector's URL.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// connector: token sent as `Authorization: <token>` (prefer the `_file` form).
    #[serde(default)]
    pub webhook_auth_token: Option<Secret>,
    /// connector: file holding the token.
    #[serde(default)]
    pub webhook_auth_token_file: Option<PathBuf>,
    /// api: the organization id (digits).
    #[serde(default)]
    pub organization: Option<String>,
    /// api: the SCC source id findings are created under.
    #[serde(default)]
    pub source: Option<String>,
    /// api: the SCC location (default `global`).
    #[serde(default = "default_location")]
    pub location: String,
    /// api: the SCC endpoint (default `https://securitycenter.googleapis.com`).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// api: a service-account key file (JSON); without it the metadata server is asked.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// api: base URL of the metadata server (default `http://metadata.google.internal`).
    #[serde(default = "crate::gcp::default_metadata_url")]
    pub metadata_url: String,
    /// api: project of the GKE cluster, for `resourceName`.
    #[serde(default)]
    pub project: Option<String>,
    /// api: location (region or zone) of the GKE cluster, for `resourceName`.
    #[serde(default)]
    pub cluster_location: Option<String>,
    /// api: name of the GKE cluster, for `resourceName`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Request timeout, in milliseconds.
    #[serde(default = "crate::transport::default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate for the endpoints.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_location() -> String {
    "global".into()
}
fn default_endpoint() -> String {
    "https://securitycenter.googleapis.com".into()
}

impl GcsccConfig {
    /// Checks that the keys of the chosen mode are set.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self.mode {
            GcsccMode::Connector => {
                let u = self.webhook_url.as_deref().ok_or_else(|| {
                    Invalid::new("webhook_url", "mode connector needs `webhook_url`")
                })?;
                parse_url("webhook_url", u)?;
                self.webhook_auth_token().check()?;
            }
            GcsccMode::Api => {
                for (key, v) in [
                    ("organization", &self.organization),
                    ("source", &self.source),
                    ("project", &self.project),
                    ("cluster_location", &self.cluster_location),
                    ("cluster", &self.cluster),
                ] {
                    if v.as_deref().is_none_or(str::is_empty) {
                        return Err(Invalid::new(key, format!("mode api needs `{key}`")));
                    }
                }
                parse_url("endpoint", &self.endpoint)?;
                parse_url("metadata_url", &self.metadata_url)?;
                if let Some(p) = &self.credentials_file {
                    existing_file("credentials_file", p)?;
                }
            }
        }
        positive("timeout_ms", self.timeout_ms)?;
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }

    /// The connector's token setting.
    pub(super) fn webhook_auth_token(&self) -> SecretSetting<'_> {
        SecretSetting::new(
            "webhook_auth_token",
            &self.webhook_auth_token,
            &self.webhook_auth_token_file,
        )
    }
}
