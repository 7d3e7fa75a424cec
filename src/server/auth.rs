//! Token authentication: `Bearer <token>`, as a webhook kubeconfig's `token` presents it, or
//! HTTP Basic with the token as the password (any user name), for clients that can only put
//! credentials in a URL: Falco's `http_output` (libcurl turns `https://user:token@host/` into
//! Basic auth).
//!
//! Tokens come inline or from a file (one per line) that is re-read when it changes, so that a
//! rotated Kubernetes Secret takes effect without a restart. Comparison is constant-time.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// Bearer tokens accepted on `/k8s-audit` (and Falco's `http_output` intake).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Tokens given inline (prefer `token_file`).
    pub tokens: Vec<Secret>,
    /// A file with one token per line (blank lines and `#` comments ignored); re-read on change.
    pub token_file: Option<PathBuf>,
    /// Require a token on `/metrics` too (the sink names it lists are every tenant's).
    pub protect_metrics: bool,
}

/// The set of accepted tokens; empty means authentication is off.
#[derive(Clone, Default)]
pub struct TokenAuth {
    inner: Arc<RwLock<Vec<Vec<u8>>>>,
    inline: Vec<Vec<u8>>,
    file: Option<PathBuf>,
    /// The config key of `file`, for errors.
    key: &'static str,
}

/// A token file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{key} {path}: {source}")]
pub struct TokenFileError {
    key: &'static str,
    path: String,
    source: std::io::Error,
}

impl TokenAuth {
    /// Loads the tokens of `cfg`.
    pub fn from_config(cfg: &AuthConfig) -> Result<TokenAuth, TokenFileError> {
        let auth = TokenAuth {
            inner: Arc::default(),
            inline: cfg
                .tokens
                .iter()
                .map(|t| t.expose().as_bytes().to_vec())
                .collect(),
            file: cfg.token_file.clone(),
            key: "auth.token_file",
        };
        auth.reload()?;
        Ok(auth)
    }

    /// Loads the tokens of the file `path` (one per line), set at the config key `key`.
    pub fn from_file(path: PathBuf, key: &'static str) -> Result<TokenAuth, TokenFileError> {
        let auth = TokenAuth {
            file: Some(path),
            key,
            ..TokenAuth::default()
        };
        auth.reload()?;
        Ok(auth)
    }

    /// Re-reads the token file.
    pub fn reload(&self) -> Result<(), TokenFileError> {
        let mut tokens = self.inline.clone();
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|source| TokenFileError {
                key: self.key,
                path: path.display().to_string(),
                source,
            })?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| l.as_bytes().to_vec()),
            );
        }
        if let Ok(mut guard) = self.inner.write() {
            *guard = tokens;
        }
        Ok(())
    }

    /// True when no token is configured (every request is let through).
    pub fn is_disabled(&self) -> bool {
        self.file.is_none() && self.inline.is_empty()
    }

    /// Checks an `Authorization` header value: `Bearer <token>`, or `Basic` whose password is
    /// a token.
    pub fn check(&self, header: Option<&[u8]>) -> bool {
        if self.is_disabled() {
            return true;
        }
        let Some(presented) = header.and_then(presented_token) else {
            return false;
        };
        let Ok(tokens) = self.inner.read() else {
            return false;
        };
        // Compare against every token, without stopping early, so timing says nothing.
        let mut ok = subtle::Choice::from(0u8);
        for t in tokens.iter() {
            ok |= t.as_slice().ct_eq(&presented);
        }
        bool::from(ok)
    }

    /// Polls the token file and reloads it when its modification time changes.
    pub fn spawn_watch(&self, every: Duration) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let this = self.clone();
        crate::watch::spawn_on_change(vec![path.clone()], every, None, move || {
            match this.reload() {
                Ok(()) => tracing::info!(path = %path.display(), "token file reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "token file reload failed; keeping the old tokens")
                }
            }
        });
    }

    /// Answers 401 unless the request carries an accepted token: an axum middleware, used as
    /// `middleware::from_fn_with_state(auth, TokenAuth::require)`.
    pub async fn require(State(auth): State<TokenAuth>, req: Request, next: Next) -> Response {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if auth.check(presented) {
            next.run(req).await
        } else {
            unauthorized()
        }
    }
}

/// The 401 answer, with the challenge clients expect.
pub fn unauthorized() -> Response {
    let mut r = super::error(
        StatusCode::UNAUTHORIZED,
        "missing or invalid token (Bearer, or Basic with the token as password)",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The token an `Authorization` value presents: the bearer token, or a Basic password.
fn presented_token(header: &[u8]) -> Option<Vec<u8>> {
    if let Some(t) = header.strip_prefix(b"Bearer ") {
        return Some(t.to_vec());
    }
    let encoded = header.strip_prefix(b"Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_inline_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(&f, "# ops\nfile-token\n\n").unwrap();
        let cfg = AuthConfig {
            tokens: vec![Secret::new("inline-token")],
            token_file: Some(f.clone()),
            protect_metrics: false,
        };
        let a = TokenAuth::from_config(&cfg).unwrap();
        assert!(a.check(Some(b"Bearer inline-token")));
        assert!(a.check(Some(b"Bearer file-token")));
        assert!(!a.check(Some(b"Bearer # ops")));
        assert!(!a.check(Some(b"Bearer wrong")));
        assert!(!a.check(Some(b"file-token")));
        assert!(!a.check(None));
        std::fs::write(&f, "rotated\n").unwrap();
        a.reload().unwrap();
        assert!(a.check(Some(b"Bearer rotated")));
        assert!(!a.check(Some(b"Bearer file-token")));
    }

    #[test]
    fn basic_auth_password_is_a_token() {
        let cfg = AuthConfig {
            tokens: vec![Secret::new("s3cret")],
            token_file: None,
            protect_metrics: false,
        };
        let a = TokenAuth::from_config(&cfg).unwrap();
        let basic = |creds: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            )
        };
        assert!(a.check(Some(basic("falco:s3cret").as_bytes())));
        assert!(a.check(Some(basic(":s3cret").as_bytes())));
        // The user name is not a token, and a password must follow the colon.
        assert!(!a.check(Some(basic("s3cret:").as_bytes())));
        assert!(!a.check(Some(basic("s3cret").as_bytes())));
        assert!(!a.check(Some(basic("falco:wrong").as_bytes())));
        assert!(!a.check(Some(b"Basic !!not-base64!!")));
        assert!(!a.check(Some(b"Basic ")));
    }

    #[test]
    fn no_tokens_means_open() {
        let a = TokenAuth::from_config(&AuthConfig::default()).unwrap();
        assert!(a.check(None));
    }
}
