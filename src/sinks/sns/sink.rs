//! Publishing: one `Publish` call per alert through `aws-sdk-sns`, and the classification of
//! SNS's answer.

use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use futures_util::future::BoxFuture;

use crate::alert::Alert;
use crate::aws::{AwsOptions, error_code, error_text};
use crate::delivery::sink::one_by_one;
use crate::delivery::{Sink, SinkError};

use super::SnsConfig;
use super::config::arn_region;
use super::message::attributes;

/// SNS error codes of passing conditions, retried.
const PASSING: [&str; 10] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "KMSThrottling",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "RequestExpired",
    "ExpiredToken",
];

/// Publishes alerts to an SNS topic.
pub struct SnsSink {
    cfg: SnsConfig,
    client: aws_sdk_sns::Client,
}

impl SnsSink {
    /// Loads the shared AWS config (static credentials read now, the chain on first use).
    pub async fn new(cfg: SnsConfig) -> Result<SnsSink, SinkError> {
        let perm = SinkError::Permanent;
        let region = match (&cfg.region, arn_region(&cfg.topic_arn)) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r.to_string(),
            (None, None) => return Err(perm(format!("bad topic_arn {:?}", cfg.topic_arn))),
        };
        let [id, secret, token] = cfg.secrets();
        let credentials = crate::aws::read_static_keys(id, secret, Some(token))?;
        let sdk = crate::aws::load(&AwsOptions {
            region: Some(region),
            endpoint: cfg.endpoint.clone(),
            credentials,
            timeout: Some(Duration::from_millis(cfg.timeout_ms)),
            ca_file: cfg.tls.as_ref().and_then(|t| t.ca_file.clone()),
        })
        .await
        .map_err(|e| perm(format!("sns: {e}")))?;
        Ok(SnsSink {
            client: aws_sdk_sns::Client::new(&sdk),
            cfg,
        })
    }

    async fn publish(&self, a: &Alert) -> Result<(), SinkError> {
        let mut req = self.client.publish().topic_arn(&self.cfg.topic_arn);
        if self.cfg.raw_json {
            req = req.message(a.to_json());
        } else {
            req = req.message(&a.output);
            for (k, v) in attributes(a) {
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(v)
                    .build()
                    .map_err(|e| SinkError::Permanent(format!("sns attribute {k}: {e}")))?;
                req = req.message_attributes(k, value);
            }
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = format!("sns: {}", error_text(&e));
                let passing = match error_code(&e) {
                    Some(code) => {
                        PASSING.contains(&code)
                            || e.raw_response().is_some_and(|r| {
                                r.status().as_u16() == 429 || r.status().is_server_error()
                            })
                    }
                    // No answer from SNS (connection, timeout, credentials not found yet).
                    None => !matches!(e, aws_sdk_sns::error::SdkError::ConstructionFailure(_)),
                };
                if passing {
                    Err(SinkError::retryable(text))
                } else {
                    Err(SinkError::Permanent(text))
                }
            }
        }
    }
}

impl Sink for SnsSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(one_by_one(alerts, |a| self.publish(a)))
    }
}
