//! Publishing a batch in one request; Pub/Sub's 200 means every message is stored.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{PubsubConfig, publish_body};
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::gcp::GoogleAuth;
use crate::sinks::template::Template;
use crate::transport::{self, RetryPolicy, Verdict};

/// A missing topic is not created by kaudit: its alerts are dead-lettered.
const PUBLISH: RetryPolicy = RetryPolicy::STANDARD.on_with(404, Verdict::Refuse, "topic not found");

/// Publishes alerts to a Pub/Sub topic.
pub struct PubsubSink {
    client: reqwest::Client,
    url: String,
    auth: Option<GoogleAuth>,
    attributes: BTreeMap<String, String>,
    ordering_key: Option<Template>,
    batch_max: usize,
}

impl PubsubSink {
    /// Builds the client and reads the key file.
    pub fn new(cfg: PubsubConfig) -> Result<PubsubSink, SinkError> {
        let client = transport::client(Duration::from_millis(cfg.timeout_ms), cfg.tls.as_ref())?;
        // The environment's emulator is kaudit's own setting: not for sinks without ambient
        // credentials.
        let ambient = transport::access::current().ambient_credentials;
        let emulator = cfg
            .emulator_host
            .clone()
            .or_else(|| {
                ambient
                    .then(|| std::env::var("PUBSUB_EMULATOR_HOST").ok())
                    .flatten()
            })
            .filter(|h| !h.is_empty());
        let (base, auth) = match emulator {
            Some(host) => (format!("http://{host}"), None),
            None => {
                let auth =
                    GoogleAuth::new(cfg.credentials_file.as_deref(), &cfg.metadata_url, "pubsub")
                        .map_err(|e| SinkError::Permanent(e.to_string()))?;
                (cfg.endpoint.trim_end_matches('/').to_string(), Some(auth))
            }
        };
        let ordering_key = cfg
            .ordering_key
            .as_deref()
            .map(Template::parse)
            .transpose()
            .map_err(SinkError::Permanent)?;
        Ok(PubsubSink {
            client,
            url: format!(
                "{base}/v1/projects/{}/topics/{}:publish",
                cfg.project, cfg.topic
            ),
            auth,
            attributes: cfg.attributes,
            ordering_key,
            batch_max: cfg.batch_max,
        })
    }

    async fn publish(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let body = publish_body(alerts, &self.attributes, self.ordering_key.as_ref());
        let req = self.client.post(&self.url).json(&body);
        let what = format!("pubsub: {}", self.url);
        match &self.auth {
            Some(auth) => auth.send(&self.client, &what, PUBLISH, req).await?,
            None => PUBLISH.send(&what, req).await?,
        };
        Ok(())
    }
}

impl Sink for PubsubSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.publish(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.batch_max,
            max_wait: Duration::ZERO,
        }
    }
}
