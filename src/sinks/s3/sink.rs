//! `PutObject` of one gzip'd NDJSON object per batch, with `If-None-Match: *`.

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use futures_util::future::BoxFuture;

use super::S3Config;
use crate::alert::Alert;
use crate::aws::{AwsOptions, error_text, load};
use crate::delivery::sink::DENIED_STATUSES;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::sinks::archive::{ndjson_gz, object_name};
use crate::transport::{RetryPolicy, Verdict};

/// S3's answers: 412 (the object exists: this batch was stored by an earlier try) is delivered;
/// 409 (a concurrent conditional write) and, as everywhere, 429/5xx (`SlowDown`) are retried;
/// 401/403/404 (`AccessDenied`, `NoSuchBucket`) are denials, retried for
/// `spool.denied_retry_secs` and then dead-lettered; other 4xx dead-letter.
const PUT: RetryPolicy = RetryPolicy::STANDARD
    .on(412, Verdict::Delivered)
    .on(409, Verdict::Retry);

/// Error codes that are passing whatever their status.
const PASSING_CODES: [&str; 4] = [
    "ExpiredToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
    "RequestTimeout",
];

/// Archives batches of alerts to S3.
pub struct S3Sink {
    cfg: S3Config,
    client: aws_sdk_s3::Client,
}

impl S3Sink {
    /// Loads the SDK configuration (reads the credential and TLS files now).
    pub async fn new(cfg: S3Config) -> Result<S3Sink, SinkError> {
        let [id, secret, token] = cfg.secrets();
        let credentials = crate::aws::read_static_keys(id, secret, Some(token))?;
        let sdk = load(&AwsOptions {
            region: cfg.region.clone(),
            endpoint: cfg.endpoint.clone(),
            credentials,
            timeout: Some(Duration::from_millis(cfg.timeout_ms)),
            ca_file: cfg.ca_file.clone(),
        })
        .await
        .map_err(|e| SinkError::Permanent(format!("s3: {e}")))?;
        if sdk.region().is_none() {
            return Err(SinkError::Permanent(
                "s3: no AWS region: set `region`, or AWS_REGION".into(),
            ));
        }
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.endpoint.is_some())
            .build();
        Ok(S3Sink {
            client: aws_sdk_s3::Client::from_conf(s3),
            cfg,
        })
    }

    async fn put(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let Some(key) = object_name(&self.cfg.prefix, &self.cfg.partition, alerts) else {
            return Ok(());
        };
        let what = format!("s3://{}/{key}", self.cfg.bucket);
        let body = ndjson_gz(alerts).map_err(|e| SinkError::retryable(format!("{what}: {e}")))?;
        let r = self
            .client
            .put_object()
            .bucket(&self.cfg.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .content_encoding("gzip")
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => {
                let status = e.raw().status().as_u16();
                let code = e.err().code().unwrap_or("").to_string();
                let message = e.err().message().unwrap_or("").to_string();
                let verdict = if PASSING_CODES.contains(&code.as_str()) {
                    Verdict::Retry
                } else {
                    PUT.verdict(status)
                };
                let text = format!("{what}: HTTP {status} {code}: {message}");
                match verdict {
                    Verdict::Delivered => Ok(()),
                    Verdict::Retry => Err(SinkError::retryable(text)),
                    Verdict::Refuse if DENIED_STATUSES.contains(&status) => {
                        Err(SinkError::Denied(text))
                    }
                    Verdict::Refuse => Err(SinkError::Permanent(text)),
                }
            }
            Err(SdkError::ConstructionFailure(e)) => {
                Err(SinkError::Permanent(format!("{what}: {e:?}")))
            }
            Err(e) => Err(SinkError::retryable(format!("{what}: {}", error_text(&e)))),
        }
    }
}

impl Sink for S3Sink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.put(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.batch_max,
            max_wait: Duration::from_millis(self.cfg.batch_wait_ms),
        }
    }
}
