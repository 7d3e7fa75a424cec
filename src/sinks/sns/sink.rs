//! Publishing: one signed `Publish` request per alert, and the classification of SNS's answer.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use futures_util::future::BoxFuture;
use reqwest::header::CONTENT_TYPE;

use crate::alert::Alert;
use crate::aws::sigv4::{SignInput, authorization};
use crate::aws::{Credentials, CredentialsProvider, xml_text};
use crate::delivery::sink::one_by_one;
use crate::delivery::{Sink, SinkError};
use crate::transport::encode::sha256_hex;
use crate::transport::{self, RetryPolicy, TransportError, Verdict};

use super::SnsConfig;
use super::config::arn_region;
use super::message::publish_form;

/// SNS error codes of passing conditions, retried whatever their HTTP status.
const PASSING: [&str; 9] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "KMSThrottling",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "RequestExpired",
];

/// Publishes alerts to an SNS topic.
pub struct SnsSink {
    cfg: SnsConfig,
    client: reqwest::Client,
    url: reqwest::Url,
    host: String,
    region: String,
    credentials: CredentialsProvider,
}

impl SnsSink {
    /// Builds the client and reads static credentials.
    pub fn new(cfg: SnsConfig) -> Result<SnsSink, SinkError> {
        let perm = SinkError::Permanent;
        let region = match (&cfg.region, arn_region(&cfg.topic_arn)) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r.to_string(),
            (None, None) => return Err(perm(format!("bad topic_arn {:?}", cfg.topic_arn))),
        };
        let endpoint = match &cfg.endpoint {
            Some(e) => e.clone(),
            None => crate::aws::endpoint("sns", &region),
        };
        let mut url = reqwest::Url::parse(&endpoint).map_err(|e| perm(format!("endpoint: {e}")))?;
        if url.path().is_empty() {
            url.set_path("/");
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(perm(format!("endpoint {endpoint:?} has no host"))),
        };
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        // AWS keys never hold whitespace: a stray space or newline in a file is dropped.
        let [id, secret, token] = cfg
            .secrets()
            .map(|s| s.read().map(|v| v.map(|v| v.trim().to_string())));
        let static_creds = match (id?, secret?) {
            (Some(id), Some(key)) => Some(Credentials {
                access_key_id: id,
                secret_access_key: key,
                session_token: token?,
                expires: None,
            }),
            _ => None,
        };
        let credentials = CredentialsProvider::new(static_creds, &region, client.clone())?;
        Ok(SnsSink {
            cfg,
            client,
            url,
            host,
            region,
            credentials,
        })
    }

    async fn publish(&self, a: &Alert) -> Result<(), SinkError> {
        let creds = self
            .credentials
            .get()
            .await
            .map_err(|e| SinkError::retryable(format!("sns credentials: {e}")))?;
        let body = publish_form(&self.cfg.topic_arn, a, self.cfg.raw_json);
        let amz_date = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut headers = BTreeMap::new();
        headers.insert("content-type".to_string(), content_type.to_string());
        headers.insert("host".to_string(), self.host.clone());
        headers.insert("x-amz-date".to_string(), amz_date.clone());
        if let Some(t) = &creds.session_token {
            headers.insert("x-amz-security-token".to_string(), t.clone());
        }
        let payload_hash = sha256_hex(body.as_bytes());
        let auth = authorization(
            &SignInput {
                method: "POST",
                path: self.url.path(),
                query: "",
                headers: &headers,
                payload_hash: &payload_hash,
                region: &self.region,
                service: "sns",
                amz_date: &amz_date,
            },
            &creds.access_key_id,
            &creds.secret_access_key,
        );
        let mut req = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, content_type)
            .header("x-amz-date", amz_date)
            .header(reqwest::header::AUTHORIZATION, auth)
            .body(body);
        if let Some(t) = &creds.session_token {
            req = req.header("x-amz-security-token", t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| TransportError::request("sns", e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        // SNS says why in its XML error document; its code decides before the status does.
        let xml = resp.text().await.unwrap_or_default();
        let code = xml_text(&xml, "Code").unwrap_or_default();
        let message = xml_text(&xml, "Message").unwrap_or_else(|| transport::retry::snippet(&xml));
        let text = format!("sns: HTTP {status} {code}: {message}");
        if code == "ExpiredToken" {
            self.credentials.invalidate().await;
            return Err(SinkError::retryable(text));
        }
        if PASSING.contains(&code.as_str())
            || RetryPolicy::STANDARD.verdict(status.as_u16()) == Verdict::Retry
        {
            Err(SinkError::retryable(text))
        } else {
            Err(SinkError::Permanent(text))
        }
    }
}

impl Sink for SnsSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(one_by_one(alerts, |a| self.publish(a)))
    }
}
