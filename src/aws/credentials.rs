//! AWS credentials: static ones from the config, or the standard chain for the sources that
//! matter in Kubernetes, in the SDK's order: environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the shared credentials file (`AWS_PROFILE`,
//! static keys only), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`: IRSA),
//! container credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`/`_RELATIVE_URI`: EKS Pod Identity
//! and ECS), then the EC2 instance metadata service (IMDSv2; off with
//! `AWS_EC2_METADATA_DISABLED=true`). Not covered: SSO and `credential_process` profiles, and
//! `role_arn` chaining inside profiles. Credentials from the chain are cached until 5 minutes
//! before they expire.
//!
//! The chain is kaudit's ambient identity: a provider built for a sink without ambient
//! credentials (`transport::access`) takes static credentials only and never asks the chain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;

use super::sigv4::uri_encode;
use super::xml_text;
use crate::transport::{self, RetryPolicy, TransportError};

/// Every answer of a credential endpoint that is not a 2xx is worth another try later.
const ENDPOINTS: RetryPolicy = RetryPolicy::STANDARD.retry_refusals();

/// The timeout of the metadata endpoints (container credentials, IMDS).
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// AWS credentials.
#[derive(Clone)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// When temporary credentials expire.
    pub expires: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.access_key_id)
    }
}

/// No source of the chain gave credentials; always worth another try (a token file being
/// mounted, a metadata endpoint coming up).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(String);

/// Parses the static keys of `profile` from a shared credentials file's text.
pub fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            in_profile = name == profile || name == format!("profile {profile}");
            continue;
        }
        if in_profile && let Some((k, v)) = line.split_once('=') {
            values.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Credentials {
        access_key_id: values.get("aws_access_key_id")?.clone(),
        secret_access_key: values.get("aws_secret_access_key")?.clone(),
        session_token: values.get("aws_session_token").cloned(),
        expires: None,
    })
}

/// Credentials as the container and instance metadata endpoints answer them.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonCredentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

impl From<JsonCredentials> for Credentials {
    fn from(j: JsonCredentials) -> Credentials {
        Credentials {
            access_key_id: j.access_key_id,
            secret_access_key: j.secret_access_key,
            session_token: j.token,
            expires: j
                .expiration
                .and_then(|e| DateTime::parse_from_rfc3339(&e).ok())
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn fail(m: impl Into<String>) -> CredentialsError {
    CredentialsError(m.into())
}

/// Hands out credentials: the static ones when configured, otherwise the chain's, cached.
pub struct CredentialsProvider {
    static_creds: Option<Credentials>,
    region: String,
    /// The caller's client (its TLS settings), for STS.
    client: reqwest::Client,
    /// Short-timeout client for the metadata endpoints.
    meta_client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(Credentials, Instant)>>,
}

impl CredentialsProvider {
    /// A provider for `region`; `client` talks to STS, the metadata endpoints get their own.
    /// Refused without static credentials when the sink may not use ambient ones.
    pub fn new(
        static_creds: Option<Credentials>,
        region: &str,
        client: reqwest::Client,
    ) -> Result<CredentialsProvider, TransportError> {
        let access = transport::access::current();
        if static_creds.is_none() && !access.ambient_credentials {
            return Err(TransportError::refused(access.no_ambient(
                "give it static keys (access_key_id_file and secret_access_key_file, from secretRefs)",
            )));
        }
        Ok(CredentialsProvider {
            static_creds,
            region: region.to_string(),
            client,
            meta_client: transport::client(METADATA_TIMEOUT, None)?,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// Credentials: static ones, or the chain's (cached until 5 minutes before they expire).
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        if let Some(c) = &self.static_creds {
            return Ok(c.clone());
        }
        let mut cached = self.cached.lock().await;
        if let Some((c, until)) = &*cached
            && Instant::now() < *until
        {
            return Ok(c.clone());
        }
        let c = self.chain().await?;
        let life = match c.expires {
            Some(t) => (t - Utc::now() - chrono::Duration::minutes(5))
                .to_std()
                .unwrap_or(Duration::from_secs(30))
                .max(Duration::from_secs(30)),
            None => Duration::from_secs(3600),
        };
        *cached = Some((c.clone(), Instant::now() + life));
        Ok(c)
    }

    /// Forgets the cached credentials (after AWS said they expired).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn chain(&self) -> Result<Credentials, CredentialsError> {
        // 1. Environment.
        if let (Some(id), Some(key)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials {
                access_key_id: id,
                secret_access_key: key,
                session_token: env("AWS_SESSION_TOKEN"),
                expires: None,
            });
        }
        // 2. Shared credentials file, static keys.
        let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")));
        if let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok())
            && let Some(c) = profile_credentials(&text, &profile)
        {
            return Ok(c);
        }
        // 3. Web identity (IRSA).
        if let (Some(token_file), Some(role)) =
            (env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN"))
        {
            return self.web_identity(&token_file, &role).await;
        }
        // 4. Container credentials (EKS Pod Identity, ECS).
        let container_url = env("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
            env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                .map(|p| format!("http://169.254.170.2{p}"))
        });
        if let Some(url) = container_url {
            return self.container(&url).await;
        }
        // 5. EC2 instance metadata (IMDSv2).
        if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(fail(
                "none found (environment, shared credentials file, web identity, container; IMDS disabled)",
            ));
        }
        let base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|| "http://169.254.169.254".into());
        self.imds(base.trim_end_matches('/')).await
    }

    async fn web_identity(
        &self,
        token_file: &str,
        role: &str,
    ) -> Result<Credentials, CredentialsError> {
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| fail(format!("AWS_WEB_IDENTITY_TOKEN_FILE {token_file}: {e}")))?;
        let session = env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "kaudit".into());
        let body = format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
            uri_encode(role),
            uri_encode(&session),
            uri_encode(token.trim())
        );
        let req = self
            .client
            .post(format!("{}/", super::endpoint("sts", &self.region)))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        let xml = ENDPOINTS
            .send("sts AssumeRoleWithWebIdentity", req)
            .await
            .map_err(|e| fail(e.message))?
            .text()
            .await
            .map_err(|e| fail(format!("sts: {e}")))?;
        let field =
            |t: &str| xml_text(&xml, t).ok_or_else(|| fail(format!("sts answer without <{t}>")));
        Ok(Credentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: Some(field("SessionToken")?),
            expires: xml_text(&xml, "Expiration")
                .and_then(|e| DateTime::parse_from_rfc3339(&e).ok())
                .map(|t| t.with_timezone(&Utc)),
        })
    }

    async fn container(&self, url: &str) -> Result<Credentials, CredentialsError> {
        let mut req = self.meta_client.get(url);
        let token = match env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(f) => Some(
                std::fs::read_to_string(&f)
                    .map_err(|e| fail(format!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {f}: {e}")))?
                    .trim()
                    .to_string(),
            ),
            None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        };
        if let Some(t) = token {
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        let what = format!("container credentials {url}");
        let j: JsonCredentials = ENDPOINTS
            .send(&what, req)
            .await
            .map_err(|e| fail(e.message))?
            .json()
            .await
            .map_err(|e| fail(format!("{what}: {e}")))?;
        Ok(j.into())
    }

    async fn imds(&self, base: &str) -> Result<Credentials, CredentialsError> {
        let imds = |e: String| {
            fail(format!(
                "none found in the environment, shared credentials file, web identity or container, and IMDS failed: {e}"
            ))
        };
        let get = |req: reqwest::RequestBuilder| async {
            let resp = ENDPOINTS
                .send("imds", req)
                .await
                .map_err(|e| imds(e.message))?;
            resp.bytes().await.map_err(|e| imds(e.to_string()))
        };
        let token = get(self
            .meta_client
            .put(format!("{base}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "21600"))
        .await?;
        let token = String::from_utf8_lossy(&token).into_owned();
        let path = format!("{base}/latest/meta-data/iam/security-credentials/");
        let role = get(self
            .meta_client
            .get(&path)
            .header("X-aws-ec2-metadata-token", &token))
        .await?;
        let role = String::from_utf8_lossy(&role);
        let role = role.lines().next().unwrap_or_default().trim();
        let body = get(self
            .meta_client
            .get(format!("{path}{role}"))
            .header("X-aws-ec2-metadata-token", &token))
        .await?;
        let j: JsonCredentials = serde_json::from_slice(&body).map_err(|e| imds(e.to_string()))?;
        Ok(j.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n[other]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n";
        let c = profile_credentials(text, "other").unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("C", Some("E"))
        );
        assert!(profile_credentials(text, "missing").is_none());
    }

    /// The container endpoint and IMDSv2 (token, role name, then the role's credentials), served
    /// by a local stand-in.
    #[tokio::test]
    async fn container_and_instance_metadata() {
        use axum::routing::{get, put};
        let creds = r#"{"AccessKeyId":"AK","SecretAccessKey":"SK","Token":"T","Expiration":"2099-01-01T00:00:00Z"}"#;
        let app = axum::Router::new()
            .route("/creds", get(move || async move { creds }))
            .route("/latest/api/token", put(|| async { "tok" }))
            .route(
                "/latest/meta-data/iam/security-credentials/",
                get(|| async { "role-a\n" }),
            )
            .route(
                "/latest/meta-data/iam/security-credentials/role-a",
                get(move |h: axum::http::HeaderMap| async move {
                    match h.get("X-aws-ec2-metadata-token") {
                        Some(t) if t == "tok" => (axum::http::StatusCode::OK, creds),
                        _ => (axum::http::StatusCode::UNAUTHORIZED, ""),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = transport::client(Duration::from_secs(2), None).unwrap();
        let p = CredentialsProvider::new(None, "eu-west-1", client).unwrap();
        let c = p.container(&format!("{base}/creds")).await.unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("AK", Some("T"))
        );
        assert!(c.expires.is_some());
        let c = p.imds(&base).await.unwrap();
        assert_eq!(c.secret_access_key, "SK");
        let e = p.container(&format!("{base}/nope")).await.unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
    }
}
