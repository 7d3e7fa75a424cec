//! A multipart upload (metadata + media) of one gzip'd NDJSON object per batch, with
//! `ifGenerationMatch=0` (create only).

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use super::GcsConfig;
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::gcp::GoogleAuth;
use crate::sinks::archive::{ndjson_gz, object_name};
use crate::transport::{self, RetryPolicy, Verdict};

/// GCS's answers: 412 `conditionNotMet` (the object exists: an earlier try stored this batch) is
/// delivered; 403 (no permission on the bucket) and 404 (no such bucket) are denials, retried for
/// `spool.denied_retry_secs` and then dead-lettered; 401 is the token's (fetched again); 429 and
/// 5xx are retried.
const UPLOAD: RetryPolicy = RetryPolicy::STANDARD
    .on(412, Verdict::Delivered)
    .on_with(
        403,
        Verdict::Refuse,
        "forbidden: may the service account create objects in the bucket?",
    )
    .on_with(404, Verdict::Refuse, "bucket not found");

/// The multipart boundary; it cannot occur in the metadata, and the media part is gzip data
/// whose length is given by the closing delimiter being searched only after it.
const BOUNDARY: &str = "kaudit-7d1f0c8e4a2b4e6f9b3d5a1c8e2f4b6d";

/// The `multipart/related` body of an upload.
pub fn multipart(name: &str, media: &[u8]) -> Vec<u8> {
    let meta = json!({
        "name": name,
        "contentType": "application/x-ndjson",
        "contentEncoding": "gzip",
    });
    let mut body = Vec::with_capacity(media.len() + 512);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{BOUNDARY}\r\nContent-Type: application/x-ndjson\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(media);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Archives batches of alerts to Google Cloud Storage.
pub struct GcsSink {
    cfg: GcsConfig,
    client: reqwest::Client,
    auth: GoogleAuth,
    url: String,
}

impl GcsSink {
    /// Builds the client and reads the key file.
    pub fn new(cfg: GcsConfig) -> Result<GcsSink, SinkError> {
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        let auth = GoogleAuth::new(cfg.credentials_file.as_deref(), &cfg.metadata_url, "gcs")
            .map_err(|e| SinkError::Permanent(e.to_string()))?;
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch=0",
            cfg.endpoint.trim_end_matches('/'),
            cfg.bucket
        );
        Ok(GcsSink {
            cfg,
            client,
            auth,
            url,
        })
    }

    async fn upload(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let Some(name) = object_name(&self.cfg.prefix, &self.cfg.partition, alerts) else {
            return Ok(());
        };
        let what = format!("gcs gs://{}/{name}", self.cfg.bucket);
        let media = ndjson_gz(alerts).map_err(|e| SinkError::retryable(format!("{what}: {e}")))?;
        let req = self
            .client
            .post(&self.url)
            .header(
                CONTENT_TYPE,
                format!("multipart/related; boundary={BOUNDARY}"),
            )
            .body(multipart(&name, &media));
        self.auth.send(&self.client, &what, UPLOAD, req).await?;
        Ok(())
    }
}

impl Sink for GcsSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.upload(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.batch_max,
            max_wait: Duration::from_millis(self.cfg.batch_wait_ms),
        }
    }
}
