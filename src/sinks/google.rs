//! Google OAuth 2.0 access tokens for the sinks that call Google APIs (`gcscc`, `pubsub`).
//!
//! Two sources: a service-account key file (JWT bearer grant, RS256, posted to the key's
//! `token_uri`) or the metadata server (Application Default Credentials on GKE/GCE, Workload
//! Identity included). Tokens are cached until a minute before they expire; a sink that gets
//! HTTP 401 calls [`GoogleAuth::invalidate`] and retries.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use serde_json::json;

use crate::delivery::SinkError;
use crate::transport::TransportError;

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
    /// Tokens from a service-account key file; `what` prefixes error messages (`gcscc`).
    pub fn from_key_file(path: &Path, what: &str) -> Result<GoogleAuth, SinkError> {
        let perm = |e: String| SinkError::Permanent(e);
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
    pub async fn token(&self, client: &reqwest::Client) -> Result<String, SinkError> {
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
        let resp = req
            .send()
            .await
            .map_err(|e| TransportError::request(&what, e))?;
        let status = resp.status();
        if !status.is_success() {
            // A refused grant is usually a passing problem of the token service or a key being
            // rotated: retry rather than dead-letter alerts that did nothing wrong.
            let body = resp.text().await.unwrap_or_default();
            return Err(SinkError::retryable(format!(
                "{what}: HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        let t: TokenResponse = resp
            .json()
            .await
            .map_err(|e| SinkError::retryable(format!("{what}: {e}")))?;
        let life = Duration::from_secs(t.expires_in.saturating_sub(60).max(1));
        *cached = Some((t.access_token.clone(), Instant::now() + life));
        Ok(t.access_token)
    }

    /// Forgets the cached token (after the API refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

/// A signed JWT for the OAuth 2.0 JWT bearer grant.
fn jwt(
    key: &ServiceAccountKey,
    signer: &ring::signature::RsaKeyPair,
    what: &str,
) -> Result<String, SinkError> {
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
        .map_err(|e| SinkError::Permanent(format!("{what}: cannot sign the token request: {e}")))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// The GCE/GKE metadata server, the default source of Application Default Credentials.
pub(crate) fn default_metadata_url() -> String {
    "http://metadata.google.internal".into()
}
