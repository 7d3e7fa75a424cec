//! The `loki` sink's settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::sinks::util::{SecretSetting, parse_url};
use crate::transport::ClientTls;

/// The labels kaudit sets from each alert; `labels` may not reuse these names.
pub const ALERT_LABELS: [&str; 4] = ["rule", "priority", "source", "namespace"];

/// What each log line holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// The alert's Falco JSON (query it with LogQL's `| json`).
    #[default]
    Json,
    /// The alert's `output` line.
    Text,
}

/// Settings of a `loki` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Base URL of Loki (`http://loki:3100`); `/loki/api/v1/push` is appended.
    pub url: String,
    /// Tenant of a multi-tenant Loki (`X-Scope-OrgID`).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// User for basic authentication (Grafana Cloud: the instance id).
    #[serde(default)]
    pub username: Option<String>,
    /// Password of `username` (prefer `password_file`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Bearer token (prefer `token_file`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// File holding the bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Constant labels added to every stream (`cluster: prod`); keep them few and fixed.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `json` (the alert's Falco JSON, default) or `text` (its `output` line).
    #[serde(default)]
    pub format: LineFormat,
    /// Most alerts per push request.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Longest time the first alert of a batch waits for others, in milliseconds.
    #[serde(default = "default_batch_wait_ms")]
    pub batch_wait_ms: u64,
    /// Request timeout, in milliseconds.
    #[serde(default = "crate::transport::default_timeout_ms")]
    pub timeout_ms: u64,
    /// CA bundle and client certificate.
    #[serde(default)]
    pub tls: Option<ClientTls>,
}

fn default_batch_max() -> usize {
    500
}
fn default_batch_wait_ms() -> u64 {
    1000
}

/// A Prometheus/Loki label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
pub fn label_name_ok(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !n.starts_with("__")
}

impl LokiConfig {
    /// The secret settings: password, token.
    pub(super) fn secrets(&self) -> [SecretSetting<'_>; 2] {
        [
            SecretSetting::new("password", &self.password, &self.password_file),
            SecretSetting::new("token", &self.token, &self.token_file),
        ]
    }

    /// Checks the URL, the labels, one way to authenticate, and the limits.
    pub fn validate(&self) -> Result<(), Invalid> {
        let url = parse_url("url", &self.url)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new("url", "use http:// or https://"));
        }
        for k in self.labels.keys() {
            let key = format!("labels.{k}");
            if ALERT_LABELS.contains(&k.as_str()) {
                return Err(Invalid::new(key, "set by kaudit from each alert"));
            }
            if !label_name_ok(k) {
                return Err(Invalid::new(
                    key,
                    "a label name is [a-zA-Z_][a-zA-Z0-9_]* and does not start with __",
                ));
            }
        }
        let [password, token] = self.secrets();
        password.check()?;
        token.check()?;
        password.paired_with_username(self.username.as_deref())?;
        if token.is_set() && self.username.is_some() {
            return Err(Invalid::new(
                "token",
                "choose one authentication: username/password or token",
            ));
        }
        positive("batch_max", self.batch_max as u64)?;
        positive("timeout_ms", self.timeout_ms)?;
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<LokiConfig, String> {
        let c: LokiConfig = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map(|_| c).map_err(|e| e.to_string())
    }

    #[test]
    fn validates() {
        assert!(cfg("url: http://loki:3100\nlabels: {cluster: prod}\n").is_ok());
        assert!(cfg("url: http://loki:3100\nlabels: {rule: x}\n").is_err());
        assert!(cfg("url: http://loki:3100\nlabels: {1x: y}\n").is_err());
        assert!(cfg("url: http://loki:3100\nusername: u\n").is_err());
        assert!(cfg("url: http://loki:3100\ntoken: t\nusername: u\npassword: p\n").is_err());
        assert!(label_name_ok("k8s_cluster") && !label_name_ok("__name"));
    }
}
