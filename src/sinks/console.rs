//! `console`: writes alerts to the alert store the console reads (see `crate::store`). To the
//! router it is a sink like any other (`filter`, `min_priority`, its own spool), so what the
//! console shows is chosen the usual way; the embedded defaults include one, `console-store`.

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::sinks::registry::SinkType;
use crate::store::AlertStore;
use futures_util::future::BoxFuture;

/// Settings of a `console` sink: none (the store is `store:`, shared by the process).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {}

/// The name of the console's sink in the embedded defaults.
pub const DEFAULT_NAME: &str = "console-store";

/// Writes alerts to its pipeline's store.
pub struct ConsoleSink {
    store: std::sync::Arc<dyn AlertStore>,
}

impl Sink for ConsoleSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.store
                .insert(alerts.to_vec())
                .await
                .map_err(|e| SinkError::retryable(e.to_string()))
        })
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: 1000,
            max_wait: std::time::Duration::ZERO,
        }
    }
}

/// A sink that refuses everything: what a dry run builds (it opens no store).
struct Unopened;

impl Sink for Unopened {
    fn send<'a>(&'a self, _: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Err(SinkError::retryable("the alert store is not open")) })
    }
}

/// The `console` sink type.
pub struct Console;

impl SinkType for Console {
    const NAME: &'static str = "console";
    type Config = ConsoleSinkConfig;

    async fn build(_: &ConsoleSinkConfig) -> Result<Box<dyn Sink>, SinkError> {
        if crate::transport::access::current().dry_run {
            return Ok(Box::new(Unopened));
        }
        match crate::store::current() {
            Some(store) => Ok(Box::new(ConsoleSink { store })),
            None => Err(SinkError::Permanent(
                "no alert store is open: set `console.enabled: true`".into(),
            )),
        }
    }
}

impl crate::sinks::SinkConfig {
    /// The console's sink with default settings (the embedded default `console-store`).
    pub fn console() -> Self {
        crate::sinks::SinkConfig {
            name: DEFAULT_NAME.into(),
            settings: crate::sinks::SinkSettings::Console(ConsoleSinkConfig::default()),
            ..crate::sinks::SinkConfig::stdout(DEFAULT_NAME)
        }
    }
}
