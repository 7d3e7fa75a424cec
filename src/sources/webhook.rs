//! `webhook`: kube-apiserver posts its audit batches to `POST /k8s-audit` ([`crate::ingest`]).
//! The entry only says that the route is served; its limits are the `ingest` section's.

use serde::{Deserialize, Serialize};

use super::{Source, SourceEnv, SourceError, SourceType};

/// Settings of the `webhook` source: none of its own (see `ingest`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {}

/// The `webhook` source type.
pub struct Webhook;

impl SourceType for Webhook {
    const NAME: &'static str = "webhook";
    type Config = WebhookConfig;

    async fn build(
        _name: &str,
        _config: &WebhookConfig,
        _env: &SourceEnv,
    ) -> Result<Option<Box<dyn Source>>, SourceError> {
        Ok(None)
    }
}
