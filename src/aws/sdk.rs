//! The AWS SDK's shared config for SDK-based clients (the `s3` sink): [`load`].
//!
//! A minimal copy of the sources branch's `aws` module (commit ea21515, which moves all of AWS
//! onto the SDK): the same `AwsOptions`, `load` and `error_text`, so that at merge this file is
//! deleted and `aws::sdk::` becomes `aws::`. Credentials come from `aws-config`'s chain
//! (environment, profile, web identity/IRSA, EKS Pod Identity, ECS, IMDSv2) or static keys;
//! requests go over the SDK's hyper client with rustls on `ring`, trusting the system roots
//! plus an optional CA bundle.

use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};

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

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticCredentials({}, <redacted>)", self.access_key_id)
    }
}

/// A CA bundle that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("ca_file {path}: {message}")]
pub struct AwsConfigError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Loads the shared SDK config for `opts` (the credential chain is resolved lazily, on the
/// first call, and cached by the SDK until shortly before expiry).
pub async fn load(opts: &AwsOptions) -> Result<SdkConfig, AwsConfigError> {
    let mut trust = TrustStore::default();
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca).map_err(|e| AwsConfigError {
            path: ca.display().to_string(),
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
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
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
