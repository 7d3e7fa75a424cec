//! Sending: a POST to the connector, or `createFinding` with an OAuth token, one alert at a time.

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use super::{GcsccConfig, GcsccMode, finding};
use crate::alert::Alert;
use crate::delivery::sink::one_by_one;
use crate::delivery::{Sink, SinkError};
use crate::gcp::GoogleAuth;
use crate::transport::{self, RetryPolicy, Verdict};

/// A finding that already exists (409) was created by an earlier attempt whose answer was lost.
const CREATE_FINDING: RetryPolicy = RetryPolicy::STANDARD.on(409, Verdict::Delivered);

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
        let connector_token = cfg.webhook_auth_token().read()?;
        let auth = match cfg.mode {
            GcsccMode::Connector => None,
            GcsccMode::Api => Some(
                GoogleAuth::new(cfg.credentials_file.as_deref(), &cfg.metadata_url, "gcscc")
                    .map_err(|e| perm(e.to_string()))?,
            ),
        };
        Ok(GcsccSink {
            cfg,
            client,
            connector_token,
            auth,
        })
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
                let Some(auth) = &self.auth else {
                    return Err(SinkError::Permanent("gcscc: no token source".into()));
                };
                let url = format!(
                    "{}/v2/organizations/{}/sources/{}/locations/{}/findings?findingId={}",
                    self.cfg.endpoint.trim_end_matches('/'),
                    self.cfg.organization.as_deref().unwrap_or_default(),
                    self.cfg.source.as_deref().unwrap_or_default(),
                    self.cfg.location,
                    a.uuid.simple()
                );
                let req = self.client.post(url).json(&finding(&self.cfg, a));
                auth.send(&self.client, "gcscc api", CREATE_FINDING, req)
                    .await?;
                Ok(())
            }
        }
    }
}

impl Sink for GcsccSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(one_by_one(alerts, |a| self.send_one(a)))
    }
}
