//! `gcscc`: Google Cloud Security Command Center, in one of two modes.
//!
//! * `connector`: compatible with the Falco chart's `integrations.gcscc` and the
//!   sysdig-gcscc-connector: the alert's Falco JSON is POSTed to `webhook_url` with the header
//!   `Authorization: <token>` (the raw token, no `Bearer`).
//! * `api`: SCC v2 `createFinding`, `POST {endpoint}/v2/organizations/{org}/sources/{source}/
//!   locations/{location}/findings?findingId={uuid without dashes}`. A retry of a finding
//!   already created gets 409 and counts as delivered. OAuth tokens come from a service-account
//!   key (JWT bearer grant, RS256, to the key's `token_uri`) or from the metadata server, and are
//!   cached until a minute before they expire.
//!
//! Finding fields: `category` = rule; `severity` = Emergency/Alert/Critical → CRITICAL,
//! Error → HIGH, Warning → MEDIUM, Notice/Informational/Debug → LOW; `eventTime` = alert time;
//! `state` ACTIVE; `findingClass` THREAT; `description` = output; `resourceName` = the
//! Kubernetes object (see [`resource_name`]); `sourceProperties` = output fields (keys made
//! SCC-safe: non-alphanumerics → `_`, e.g. `ka_target_name`) plus `rule`, `priority`, `source`,
//! `hostname`, `tags`, `uuid`.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::google::GoogleAuth;
use crate::alert::{Alert, Priority, format_time};
use crate::delivery::{Sink, SinkError};
use crate::secret::{Secret, resolve_secret};
use crate::transport::{self, ClientTls, RetryPolicy, TransportError};
use futures_util::future::BoxFuture;

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
    #[serde(default = "super::google::default_metadata_url")]
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
    #[serde(default = "default_timeout_ms")]
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
fn default_timeout_ms() -> u64 {
    10_000
}

impl GcsccConfig {
    /// Checks that the keys of the chosen mode are set.
    pub fn validate(&self) -> Result<(), String> {
        let url_ok = |key: &str, u: &str| {
            reqwest::Url::parse(u)
                .map(|_| ())
                .map_err(|e| format!("`{key}` {u:?}: {e}"))
        };
        match self.mode {
            GcsccMode::Connector => {
                let u = self
                    .webhook_url
                    .as_deref()
                    .ok_or("mode connector needs `webhook_url`")?;
                url_ok("webhook_url", u)?;
                if self.webhook_auth_token.is_some() && self.webhook_auth_token_file.is_some() {
                    return Err(
                        "set either `webhook_auth_token` or `webhook_auth_token_file`, not both"
                            .into(),
                    );
                }
                if let Some(p) = &self.webhook_auth_token_file
                    && !p.exists()
                {
                    return Err(format!(
                        "`webhook_auth_token_file`: {} does not exist",
                        p.display()
                    ));
                }
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
                        return Err(format!("mode api needs `{key}`"));
                    }
                }
                url_ok("endpoint", &self.endpoint)?;
                url_ok("metadata_url", &self.metadata_url)?;
                if let Some(p) = &self.credentials_file
                    && !p.exists()
                {
                    return Err(format!(
                        "`credentials_file`: {} does not exist",
                        p.display()
                    ));
                }
            }
        }
        if let Some(t) = &self.tls {
            t.validate().map_err(|e| e.under("tls").to_string())?;
        }
        Ok(())
    }
}

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

/// Creates alerts in SCC or hands them to a connector.
pub struct GcsccSink {
    cfg: GcsccConfig,
    client: reqwest::Client,
    connector_token: Option<String>,
    auth: Option<GoogleAuth>,
}

impl GcsccSink {
    /// Builds the client and reads the token or the key file.
    pub fn new(cfg: GcsccConfig) -> Result<GcsccSink, SinkError> {
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        let perm = |e: String| SinkError::Permanent(e);
        let connector_token = resolve_secret(
            cfg.webhook_auth_token.as_ref(),
            cfg.webhook_auth_token_file.as_deref(),
            "webhook_auth_token",
        )
        .map_err(|e| perm(e.to_string()))?
        .map(|s| s.expose().to_string());
        let auth = match (cfg.mode, &cfg.credentials_file) {
            (GcsccMode::Connector, _) => None,
            (GcsccMode::Api, Some(path)) => Some(GoogleAuth::from_key_file(path, "gcscc")?),
            (GcsccMode::Api, None) => Some(GoogleAuth::metadata(&cfg.metadata_url, "gcscc")),
        };
        Ok(GcsccSink {
            cfg,
            client,
            connector_token,
            auth,
        })
    }

    async fn token(&self) -> Result<String, SinkError> {
        match &self.auth {
            Some(auth) => auth.token(&self.client).await,
            None => Err(SinkError::Permanent("gcscc: no token source".into())),
        }
    }

    async fn send_one(&self, a: &Alert) -> Result<(), SinkError> {
        match self.cfg.mode {
            GcsccMode::Connector => {
                let url = self.cfg.webhook_url.as_deref().unwrap_or_default();
                let mut req = self
                    .client
                    .post(url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(a.to_json());
                if let Some(t) = &self.connector_token {
                    req = req.header(AUTHORIZATION, t);
                }
                RetryPolicy::STANDARD.send("gcscc connector", req).await?;
                Ok(())
            }
            GcsccMode::Api => {
                let token = self.token().await?;
                let url = format!(
                    "{}/v2/organizations/{}/sources/{}/locations/{}/findings?findingId={}",
                    self.cfg.endpoint.trim_end_matches('/'),
                    self.cfg.organization.as_deref().unwrap_or_default(),
                    self.cfg.source.as_deref().unwrap_or_default(),
                    self.cfg.location,
                    a.uuid.simple()
                );
                let resp = self
                    .client
                    .post(url)
                    .bearer_auth(token)
                    .json(&finding(&self.cfg, a))
                    .send()
                    .await
                    .map_err(|e| TransportError::request("gcscc api", e))?;
                match resp.status().as_u16() {
                    // Created by an earlier attempt whose answer was lost.
                    409 => Ok(()),
                    401 => {
                        if let Some(auth) = &self.auth {
                            auth.invalidate().await;
                        }
                        Err(SinkError::retryable("gcscc api: HTTP 401: token refused"))
                    }
                    _ => {
                        RetryPolicy::STANDARD.check("gcscc api", resp).await?;
                        Ok(())
                    }
                }
            }
        }
    }
}

impl Sink for GcsccSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            for a in alerts {
                self.send_one(a).await?;
            }
            Ok(())
        })
    }
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
