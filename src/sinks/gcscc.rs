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
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::http::{classify, client, transport_error};
use super::tls::ClientTls;
use super::{BoxFuture, Sink, SinkError};
use crate::alert::{Alert, Priority, format_time};
use crate::config::{Secret, resolve_secret};

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
    #[serde(default = "default_metadata_url")]
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
fn default_metadata_url() -> String {
    "http://metadata.google.internal".into()
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
            t.validate()?;
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

/// A service-account key file, the fields we use.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default = "default_expires")]
    expires_in: u64,
}

fn default_expires() -> u64 {
    300
}

enum TokenSource {
    Key {
        key: ServiceAccountKey,
        signer: Box<ring::signature::RsaKeyPair>,
    },
    Metadata(String),
}

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Creates alerts in SCC or hands them to a connector.
pub struct GcsccSink {
    cfg: GcsccConfig,
    client: reqwest::Client,
    connector_token: Option<String>,
    tokens: Option<TokenSource>,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl GcsccSink {
    /// Builds the client and reads the token or the key file.
    pub fn new(cfg: GcsccConfig) -> Result<GcsccSink, SinkError> {
        let client = client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        let perm = |e: String| SinkError::Permanent(e);
        let connector_token = resolve_secret(
            cfg.webhook_auth_token.as_ref(),
            cfg.webhook_auth_token_file.as_deref(),
            "webhook_auth_token",
        )
        .map_err(|e| perm(e.to_string()))?
        .map(|s| s.expose().to_string());
        let tokens = match (cfg.mode, &cfg.credentials_file) {
            (GcsccMode::Connector, _) => None,
            (GcsccMode::Api, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| perm(format!("credentials_file {}: {e}", path.display())))?;
                let key: ServiceAccountKey = serde_json::from_str(&text)
                    .map_err(|e| perm(format!("credentials_file {}: {e}", path.display())))?;
                use rustls_pki_types::PrivatePkcs8KeyDer;
                use rustls_pki_types::pem::PemObject;
                let der = PrivatePkcs8KeyDer::from_pem_slice(key.private_key.as_bytes())
                    .map_err(|e| perm(format!("credentials_file: private_key: {e}")))?;
                let signer = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
                    .map_err(|e| perm(format!("credentials_file: private_key: {e}")))?;
                Some(TokenSource::Key {
                    key,
                    signer: Box::new(signer),
                })
            }
            (GcsccMode::Api, None) => Some(TokenSource::Metadata(format!(
                "{}/computeMetadata/v1/instance/service-accounts/default/token",
                cfg.metadata_url.trim_end_matches('/')
            ))),
        };
        Ok(GcsccSink {
            cfg,
            client,
            connector_token,
            tokens,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    async fn token(&self) -> Result<String, SinkError> {
        let mut cached = self.cached.lock().await;
        if let Some((t, until)) = &*cached
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let req = match &self.tokens {
            Some(TokenSource::Metadata(url)) => {
                self.client.get(url).header("Metadata-Flavor", "Google")
            }
            Some(TokenSource::Key { key, signer }) => {
                let assertion = jwt(key, signer)?;
                let body = format!(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
                );
                self.client
                    .post(&key.token_uri)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            None => return Err(SinkError::Permanent("gcscc: no token source".into())),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error("gcscc token", e))?;
        let status = resp.status();
        if !status.is_success() {
            // A refused grant is usually a passing problem of the token service or a key being
            // rotated: retry rather than dead-letter alerts that did nothing wrong.
            let body = resp.text().await.unwrap_or_default();
            return Err(SinkError::retryable(format!(
                "gcscc token: HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| SinkError::retryable(format!("gcscc token: {e}")))?;
        let life = Duration::from_secs(t.expires_in.saturating_sub(60).max(1));
        *cached = Some((t.access_token.clone(), Instant::now() + life));
        Ok(t.access_token)
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
                let resp = req
                    .send()
                    .await
                    .map_err(|e| transport_error("gcscc connector", e))?;
                classify("gcscc connector", resp).await
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
                    .map_err(|e| transport_error("gcscc api", e))?;
                match resp.status().as_u16() {
                    // Created by an earlier attempt whose answer was lost.
                    409 => Ok(()),
                    401 => {
                        *self.cached.lock().await = None;
                        Err(SinkError::retryable("gcscc api: HTTP 401: token refused"))
                    }
                    _ => classify("gcscc api", resp).await,
                }
            }
        }
    }
}

/// A signed JWT for the OAuth 2.0 JWT bearer grant.
fn jwt(key: &ServiceAccountKey, signer: &ring::signature::RsaKeyPair) -> Result<String, SinkError> {
    let now = chrono::Utc::now().timestamp();
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = kid.clone().into();
    }
    let claims = json!({
        "iss": key.client_email,
        "scope": SCOPE,
        "aud": key.token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0u8; signer.public().modulus_len()];
    signer
        .sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut sig,
        )
        .map_err(|e| SinkError::Permanent(format!("gcscc: cannot sign the token request: {e}")))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
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
