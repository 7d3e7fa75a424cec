//! AWS plumbing below every AWS-speaking part (the `sns` sink, the `eks` source): the one place
//! that loads the AWS SDK's shared config ([`load`]).
//!
//! Credentials come from the chain AWS maintains in `aws-config`: environment, shared profile
//! files (static keys, SSO, `credential_process`, role chaining), web identity (IRSA), EKS Pod
//! Identity and ECS container credentials, then IMDSv2; or static keys from the config (files
//! mounted from a Secret). Requests go over the SDK's hyper client with rustls on `ring` (the
//! crypto kaudit already uses), trusting the system roots plus an optional CA bundle. Every
//! service client is built from the [`aws_config::SdkConfig`] this returns.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};

use crate::invalid::Invalid;
use crate::secret::{SecretError, SecretSetting};

/// What a part of kaudit sets on the shared AWS config; everything unset is the SDK's default.
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    /// Region; unset = the SDK's chain (`AWS_REGION`, the profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override (a VPC endpoint, moto in tests).
    pub endpoint: Option<String>,
    /// Static keys from the config; unset = the SDK's credential chain.
    pub credentials: Option<StaticCredentials>,
    /// Time allowed for each attempt of a call.
    pub timeout: Option<Duration>,
    /// PEM CA bundle trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
}

/// Static AWS keys.
#[derive(Clone)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary keys.
    pub session_token: Option<String>,
}

/// Checks the static-key settings of an AWS client: the access key id and the secret access key
/// both or neither (inline or from files), a session token only with them, each setting alone.
pub fn check_static_keys(
    access_key_id: SecretSetting<'_>,
    secret_access_key: SecretSetting<'_>,
    session_token: Option<SecretSetting<'_>>,
) -> Result<(), Invalid> {
    if access_key_id.is_set() != secret_access_key.is_set() {
        return Err(Invalid::new(
            "",
            "set both `access_key_id` and `secret_access_key` (or their `_file` forms), or neither",
        ));
    }
    if session_token.is_some_and(|t| t.is_set()) && !access_key_id.is_set() {
        return Err(Invalid::new(
            "session_token",
            "needs `access_key_id` and `secret_access_key`",
        ));
    }
    access_key_id.check()?;
    secret_access_key.check()?;
    session_token.map_or(Ok(()), |t| t.check())
}

/// Reads the static keys [`check_static_keys`] accepted; `None` when they are unset (the SDK's
/// chain then). Each value is trimmed: AWS keys hold no whitespace, and a stray space or newline
/// in a mounted Secret must not break request signing.
pub fn read_static_keys(
    access_key_id: SecretSetting<'_>,
    secret_access_key: SecretSetting<'_>,
    session_token: Option<SecretSetting<'_>>,
) -> Result<Option<StaticCredentials>, SecretError> {
    let read = |s: SecretSetting<'_>| s.read().map(|v| v.map(|v| v.trim().to_string()));
    let (Some(id), Some(key)) = (read(access_key_id)?, read(secret_access_key)?) else {
        return Ok(None);
    };
    Ok(Some(StaticCredentials {
        access_key_id: id,
        secret_access_key: key,
        session_token: match session_token {
            Some(t) => read(t)?,
            None => None,
        },
    }))
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticCredentials({}, <redacted>)", self.access_key_id)
    }
}

/// An AWS client that cannot be set up: a CA bundle that cannot be used, or what a sink
/// without ambient credentials or with restricted egress may not do.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct AwsConfigError {
    /// The setting at fault (`ca_file <path>`, `endpoint`, `credentials`, `region`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What the destination being built may do (`transport::access`): without ambient
/// credentials it must bring static keys and a region (the chain would ask the environment,
/// the profile, IRSA or IMDS); with restricted egress an endpoint override must pass the egress
/// policy, by name and, unless this is a dry run, by every address it resolves to (the SDK's
/// HTTP client does not pass through `transport`'s connection checks).
async fn check_access(opts: &AwsOptions) -> Result<(), AwsConfigError> {
    let access = crate::transport::access::current();
    let refuse = |path: &str, message: String| AwsConfigError {
        path: path.into(),
        message,
    };
    if !access.ambient_credentials {
        if opts.credentials.is_none() {
            return Err(refuse(
                "credentials",
                access.no_ambient("give it static keys (access_key_id_file and secret_access_key_file, from secretRefs)"),
            ));
        }
        if opts.region.is_none() {
            return Err(refuse(
                "region",
                access.no_ambient("set its region (it may not look it up)"),
            ));
        }
    }
    if let (Some(policy), Some(e)) = (&access.egress, &opts.endpoint) {
        let url = reqwest::Url::parse(e).map_err(|err| refuse("endpoint", err.to_string()))?;
        let host = url
            .host_str()
            .ok_or_else(|| refuse("endpoint", format!("{e:?} has no host")))?;
        policy
            .check_host(host)
            .map_err(|d| refuse("endpoint", d.to_string()))?;
        if !access.dry_run {
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs = tokio::net::lookup_host((host, port))
                .await
                .map_err(|err| refuse("endpoint", format!("{host}: {err}")))?;
            for a in addrs {
                policy
                    .check_ip(a.ip())
                    .map_err(|d| refuse("endpoint", d.to_string()))?;
            }
        }
    }
    Ok(())
}

/// Loads the shared SDK config for `opts` (the credential chain is resolved lazily, on the
/// first call, and cached by the SDK until shortly before expiry).
pub async fn load(opts: &AwsOptions) -> Result<SdkConfig, AwsConfigError> {
    check_access(opts).await?;
    let mut trust = TrustStore::default();
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca).map_err(|e| AwsConfigError {
            path: format!("ca_file {}", ca.display()),
            message: e.to_string(),
        })?;
        trust = trust.with_pem_certificate(pem);
    }
    let ctx = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| AwsConfigError {
            path: opts
                .ca_file
                .as_ref()
                .map(|p| format!("ca_file {}", p.display()))
                .unwrap_or_else(|| "tls".into()),
            message: e.to_string(),
        })?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(ctx)
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &opts.endpoint {
        loader = loader.endpoint_url(e);
    }
    if let Some(c) = &opts.credentials {
        loader = loader.credentials_provider(Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "kaudit-config",
        ));
    }
    if let Some(t) = opts.timeout {
        loader = loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(t)
                .connect_timeout(t.min(Duration::from_secs(10)))
                .build(),
        );
    }
    Ok(loader.load().await)
}

/// The message of an SDK error with its service error code when there is one
/// (`ThrottlingException: Rate exceeded`), else the error chain.
pub fn error_text<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> String
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("error"),
                err.message().unwrap_or("no message")
            )
        }
        other => {
            let mut text = other.to_string();
            let mut cur = std::error::Error::source(other);
            while let Some(c) = cur {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cur = c.source();
            }
            text
        }
    }
}

/// The service error code of an SDK error (`ThrottlingException`), if it is a service error.
pub fn error_code<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Option<&str>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    match e {
        aws_smithy_runtime_api::client::result::SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn static_keys_pair_up_and_read_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "s3cret \n").unwrap();
        let (id, none, file) = (Some(Secret::new("AKID")), None, Some(f));
        let id_s = SecretSetting::new("access_key_id", &id, &none);
        let secret_s = SecretSetting::new("secret_access_key", &None, &file);
        let unset = SecretSetting::new("secret_access_key", &None, &None);
        assert!(check_static_keys(id_s, secret_s, None).is_ok());
        assert!(check_static_keys(id_s, unset, None).is_err());
        let token = Some(Secret::new("t"));
        let lone_token = SecretSetting::new("session_token", &token, &None);
        let no_id = SecretSetting::new("access_key_id", &None, &None);
        assert_eq!(
            check_static_keys(no_id, unset, Some(lone_token))
                .unwrap_err()
                .key,
            "session_token"
        );
        let keys = read_static_keys(id_s, secret_s, None).unwrap().unwrap();
        assert_eq!(keys.secret_access_key, "s3cret");
        assert!(read_static_keys(no_id, unset, None).unwrap().is_none());
    }
}
