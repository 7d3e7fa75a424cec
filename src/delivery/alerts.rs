//! The Alert layer over lanes: alerts are spooled as their JSON, and a [`Sink`] is adapted into
//! a [`Deliver`] that decodes them back.

use bytes::Bytes;
use tracing::Instrument;

use futures_util::future::BoxFuture;

use super::{BatchPolicy, Deliver, Record, Sink, SinkError};
use crate::alert::Alert;

/// Key under which a dead-lettered alert is written.
pub const DEAD_LETTER_FIELD: &str = "alert";

/// The spooled form of an alert: its Falco JSON.
pub fn encode(alert: &Alert) -> Bytes {
    Bytes::from(alert.to_json())
}

/// Reads back a spooled alert.
pub fn decode(payload: &[u8]) -> Result<Alert, serde_json::Error> {
    serde_json::from_slice(payload)
}

/// A sink seen as a destination of spooled alert records.
pub struct AlertDeliver {
    sink: Box<dyn Sink>,
    name: String,
}

impl AlertDeliver {
    /// Wraps the sink called `name`.
    pub fn new(name: &str, sink: Box<dyn Sink>) -> Self {
        AlertDeliver {
            sink,
            name: name.to_string(),
        }
    }
}

impl Deliver for AlertDeliver {
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut alerts = Vec::with_capacity(records.len());
            for r in records {
                let a = decode(&r.payload).map_err(|e| {
                    SinkError::Permanent(format!("spooled record {} is not an alert: {e}", r.seq))
                })?;
                alerts.push(a);
            }
            let first = alerts
                .first()
                .map(|a| a.uuid.to_string())
                .unwrap_or_default();
            let span = tracing::debug_span!("send", sink = %self.name, uuid = %first, alerts = alerts.len());
            let r = self.sink.send(&alerts).instrument(span).await;
            if let Err(e) = &r {
                for a in &alerts {
                    tracing::debug!(sink = %self.name, uuid = %a.uuid, rule = %a.rule, error = %e, "alert not delivered");
                }
            }
            r
        })
    }

    fn batch_policy(&self) -> BatchPolicy {
        self.sink.batch_policy()
    }
}
