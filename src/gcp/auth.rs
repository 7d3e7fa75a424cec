//! Google OAuth 2.0 access tokens for whatever calls Google APIs (the `gcscc` and `pubsub` sinks).
//!
//! Two sources: a service-account key file (JWT bearer grant, RS256, posted to the key's
//! `token_uri`) or the metadata server (Application Default Credentials on GKE/GCE, Workload
//! Identity included). Tokens are cached until a minute before they expire; an API answer of
//! HTTP 401 to [`GoogleAuth::send`] drops the cached token and is retried.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::json;

use crate::transport::{RetryPolicy, TransportError};

/// A token service refusing a grant is usually passing (a key being rotated): retry rather than
/// give up on data that did nothing wrong.
const TOKEN_ENDPOINT: RetryPolicy = RetryPolicy::STANDARD.retry_refusals();

/// A service-account key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("credentials_file {path}: {message}")]
pub struct KeyFileError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// The OAuth scope asked for: every Google Cloud API the service account may use.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

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

/// Fetches and caches access tokens from one source.
pub struct GoogleAuth {
    what: String,
    source: TokenSource,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl GoogleAuth {
    /// Tokens from the key file when one is given, else from the metadata server at
    /// `metadata_url` (kaudit's ambient identity: refused when the sink being built may not use
    /// it, see `transport::access`); `what` prefixes error messages (`gcscc`).
    pub fn new(
        key_file: Option<&Path>,
        metadata_url: &str,
        what: &str,
    ) -> Result<GoogleAuth, KeyFileError> {
        match key_file {
            Some(path) => GoogleAuth::from_key_file(path, what),
            None => {
                let access = crate::transport::access::current();
                if !access.ambient_credentials {
                    return Err(KeyFileError {
                        path: "(not set)".into(),
                        message: access.no_ambient(
                            "give it a service-account key (credentials_file, from secretRefs)",
                        ),
                    });
                }
                Ok(GoogleAuth::metadata(metadata_url, what))
            }
        }
    }

    /// Tokens from a service-account key file; `what` prefixes error messages (`gcscc`).
    pub fn from_key_file(path: &Path, what: &str) -> Result<GoogleAuth, KeyFileError> {
        let err = |message: String| KeyFileError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let key: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        use rustls_pki_types::PrivatePkcs8KeyDer;
        use rustls_pki_types::pem::PemObject;
        let der = PrivatePkcs8KeyDer::from_pem_slice(key.private_key.as_bytes())
            .map_err(|e| err(format!("private_key: {e}")))?;
        let signer = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| err(format!("private_key: {e}")))?;
        Ok(GoogleAuth {
            what: what.to_string(),
            source: TokenSource::Key {
                key,
                signer: Box::new(signer),
            },
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// Tokens from the metadata server at `metadata_url` (`http://metadata.google.internal`).
    pub fn metadata(metadata_url: &str, what: &str) -> GoogleAuth {
        GoogleAuth {
            what: what.to_string(),
            source: TokenSource::Metadata(format!(
                "{}/computeMetadata/v1/instance/service-accounts/default/token",
                metadata_url.trim_end_matches('/')
            )),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid access token, fetched with `client` when the cached one is missing or stale.
    pub async fn token(&self, client: &reqwest::Client) -> Result<String, TransportError> {
        let mut cached = self.cached.lock().await;
        if let Some((t, until)) = &*cached
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let what = format!("{} token", self.what);
        let req = match &self.source {
            TokenSource::Metadata(url) => client.get(url).header("Metadata-Flavor", "Google"),
            TokenSource::Key { key, signer } => {
                let assertion = jwt(key, signer, &self.what)?;
                let body = format!(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
                );
                client
                    .post(&key.token_uri)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
        };
        let t: TokenResponse = TOKEN_ENDPOINT
            .send(&what, req)
            .await?
            .json()
            .await
            .map_err(|e| TransportError::retryable(format!("{what}: {e}")))?;
        let life = Duration::from_secs(t.expires_in.saturating_sub(60).max(1));
        *cached = Some((t.access_token.clone(), Instant::now() + life));
        Ok(t.access_token)
    }

    /// Forgets the cached token (after the API refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// Sends `req` to a Google API with a bearer token, judged by `policy`; a 401 (the token
    /// refused) drops the cached token and is retried.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        what: &str,
        policy: RetryPolicy,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, TransportError> {
        let token = self.token(client).await?;
        match policy.send(what, req.bearer_auth(token)).await {
            Err(mut e) if e.status == Some(401) => {
                self.invalidate().await;
                e.retry = true;
                e.message.push_str(" (token refused; a new one is fetched)");
                Err(e)
            }
            result => result,
        }
    }
}

/// A signed JWT for the OAuth 2.0 JWT bearer grant.
fn jwt(
    key: &ServiceAccountKey,
    signer: &ring::signature::RsaKeyPair,
    what: &str,
) -> Result<String, TransportError> {
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
        .map_err(|e| {
            TransportError::refused(format!("{what}: cannot sign the token request: {e}"))
        })?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// The GCE/GKE metadata server, the default source of Application Default Credentials.
pub fn default_metadata_url() -> String {
    "http://metadata.google.internal".into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use axum::routing::{get, post};

    use super::*;

    /// A 401 from the API drops the cached token: the next call fetches a new one.
    #[tokio::test]
    async fn a_refused_token_is_fetched_again() {
        let issued = Arc::new(AtomicUsize::new(0));
        let n = issued.clone();
        let app = axum::Router::new()
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(move || async move {
                    let i = n.fetch_add(1, Ordering::SeqCst);
                    format!(r#"{{"access_token":"t{i}","expires_in":3600}}"#)
                }),
            )
            .route(
                "/api",
                post(|h: axum::http::HeaderMap| async move {
                    match h.get("authorization") {
                        Some(v) if v == "Bearer t1" => StatusCode::OK,
                        _ => StatusCode::UNAUTHORIZED,
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = crate::transport::client(Duration::from_secs(2), None).unwrap();
        let auth = GoogleAuth::new(None, &base, "test").unwrap();
        let call = || {
            auth.send(
                &client,
                "test api",
                RetryPolicy::STANDARD,
                client.post(format!("{base}/api")),
            )
        };
        let e = call().await.unwrap_err();
        assert!(e.retry && e.status == Some(401), "{e:?}");
        assert!(e.message.contains("token refused"), "{e}");
        assert!(call().await.is_ok());
        assert_eq!(issued.load(Ordering::SeqCst), 2);
    }
}
