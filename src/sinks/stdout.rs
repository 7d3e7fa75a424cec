//! `stdout`: one Falco JSON alert per line, for `kubectl logs` and log shippers.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError, json_lines};
use crate::sinks::registry::SinkType;
use futures_util::future::BoxFuture;

/// Settings of a `stdout` sink (none yet; kept as a struct so that keys are checked).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

/// Writes alerts to the process's standard output.
pub struct StdoutSink {
    _config: StdoutConfig,
}

impl StdoutSink {
    /// A sink writing to stdout.
    pub fn new(config: StdoutConfig) -> Self {
        StdoutSink { _config: config }
    }
}

impl StdoutSink {
    fn write(buf: &[u8]) -> Result<(), SinkError> {
        let mut out = std::io::stdout().lock();
        out.write_all(buf)
            .and_then(|_| out.flush())
            .map_err(|e| SinkError::retryable(format!("stdout: {e}")))
    }
}

impl Sink for StdoutSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        let buf = json_lines(alerts.iter().map(Alert::to_json));
        Box::pin(async move { Self::write(&buf) })
    }

    fn send_encoded<'a>(
        &'a self,
        alerts: &'a [&'a [u8]],
    ) -> Option<BoxFuture<'a, Result<(), SinkError>>> {
        let buf = json_lines(alerts.iter().copied());
        Some(Box::pin(async move { Self::write(&buf) }))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: 256,
            max_wait: std::time::Duration::ZERO,
        }
    }
}

/// The `stdout` sink type.
pub struct Stdout;

impl SinkType for Stdout {
    const NAME: &'static str = "stdout";
    type Config = StdoutConfig;

    async fn build(config: &StdoutConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(StdoutSink::new(config.clone())))
    }
}
