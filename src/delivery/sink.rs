//! The contract between delivery and a destination: [`Sink`] sends alerts, [`SinkError`] says
//! whether a failure is worth retrying. Defined here, below `sinks`, so that every sink depends on
//! delivery and never the other way round.

use std::future::Future;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::BatchPolicy;
use crate::alert::Alert;
use crate::transport::TransportError;

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// A passing failure (connection refused, timeout, 5xx, 429): retry with backoff.
    #[error("{message}")]
    Retryable {
        /// What failed.
        message: String,
        /// A delay the receiver asked for (HTTP `Retry-After`), if any.
        retry_after: Option<Duration>,
    },
    /// The receiver refused the alert for good (e.g. HTTP 400): dead-letter it.
    #[error("{0}")]
    Permanent(String),
    /// The receiver denied access or does not know the target (HTTP 401, 403, 404). Usually a
    /// refusal, but often a passing one (a credential being rotated, an ingress being
    /// redeployed): retried for `spool.denied_retry_secs` after the batch first failed, then
    /// dead-lettered.
    #[error("{0}")]
    Denied(String),
}

impl SinkError {
    /// A retryable failure without a requested delay.
    pub fn retryable(message: impl Into<String>) -> Self {
        SinkError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// HTTP statuses that mean [`SinkError::Denied`] unless a sink's policy says otherwise.
pub const DENIED_STATUSES: [u16; 3] = [401, 403, 404];

impl From<crate::secret::SecretError> for SinkError {
    /// A secret that cannot be read (a missing or unreadable file) is a config that cannot work.
    fn from(e: crate::secret::SecretError) -> Self {
        SinkError::Permanent(e.to_string())
    }
}

impl From<TransportError> for SinkError {
    fn from(e: TransportError) -> Self {
        if !e.retry && e.status.is_some_and(|s| DENIED_STATUSES.contains(&s)) {
            SinkError::Denied(e.message)
        } else if e.retry {
            SinkError::Retryable {
                message: e.message,
                retry_after: e.retry_after,
            }
        } else {
            SinkError::Permanent(e.message)
        }
    }
}

/// Sends `alerts` one at a time with `send`, in order, stopping at the first failure: the shape
/// of `Sink::send` for a destination that takes one alert per request.
pub async fn one_by_one<'a, F, Fut>(alerts: &'a [Alert], mut send: F) -> Result<(), SinkError>
where
    F: FnMut(&'a Alert) -> Fut,
    Fut: Future<Output = Result<(), SinkError>>,
{
    for a in alerts {
        send(a).await?;
    }
    Ok(())
}

/// A connected destination. `send` delivers a batch (often of one) or says why it could not.
pub trait Sink: Send + Sync {
    /// Delivers every alert of `alerts`; on error none of them is taken as delivered.
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Delivers alerts as they were spooled, each its JSON ([`Alert::to_json`]), when that is
    /// the sink's wire form (one per line: `file`, `stdout`): decoding them only to encode
    /// them again cost more than the write. `None` (the default): decode them for
    /// [`Sink::send`]. On error none of them is taken as delivered.
    fn send_encoded<'a>(
        &'a self,
        alerts: &'a [&'a [u8]],
    ) -> Option<BoxFuture<'a, Result<(), SinkError>>> {
        let _ = alerts;
        None
    }

    /// How many alerts one `send` may carry, and how long to wait for a batch to fill.
    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy::default()
    }
}

/// Alerts as JSON lines, each ending with a newline: what `send_encoded` writes.
pub fn json_lines<T: AsRef<[u8]>>(alerts: impl IntoIterator<Item = T>) -> Vec<u8> {
    let mut buf = Vec::new();
    for a in alerts {
        buf.extend_from_slice(a.as_ref());
        buf.push(b'\n');
    }
    buf
}
