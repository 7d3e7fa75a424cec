//! The Alert layer over lanes: alerts are spooled as their JSON, and a [`Sink`] is adapted into
//! a [`Deliver`] that decodes them back.

use bytes::Bytes;
use tracing::Instrument;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::{BatchPolicy, Deliver, Hold, Record, Sink, SinkError};
use crate::alert::Alert;

/// An alert on its way to the router, with the hold of the work that raised it (released once
/// the alert is in every matching sink's spool).
#[derive(Debug)]
pub struct Routed {
    /// The alert.
    pub alert: Alert,
    /// The producer's hold, if it tracks durability.
    pub hold: Option<Hold>,
}

/// The router has stopped; the alert was not taken.
#[derive(Debug, thiserror::Error)]
#[error("the router has stopped")]
pub struct RouterGone;

/// Where producers (detection, the Falco intake and tailer) send alerts to be routed.
#[derive(Clone, Debug)]
pub struct AlertSender(mpsc::Sender<Routed>);

impl AlertSender {
    /// Wraps the router's input channel.
    pub fn new(tx: mpsc::Sender<Routed>) -> AlertSender {
        AlertSender(tx)
    }

    /// Routes an alert nobody waits on.
    pub async fn send(&self, alert: Alert) -> Result<(), RouterGone> {
        self.route(Routed { alert, hold: None }).await
    }

    /// Routes an alert carrying a share of `hold`.
    pub async fn send_held(&self, alert: Alert, hold: Hold) -> Result<(), RouterGone> {
        self.route(Routed {
            alert,
            hold: Some(hold),
        })
        .await
    }

    /// Routes `r`, waiting while the router is behind.
    pub async fn route(&self, r: Routed) -> Result<(), RouterGone> {
        self.0.send(r).await.map_err(|_| RouterGone)
    }
}

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
            let encoded: Vec<&[u8]> = records.iter().map(|r| &r.payload[..]).collect();
            if let Some(sent) = self.sink.send_encoded(&encoded) {
                let (first, last) = (records.first(), records.last());
                let span = tracing::debug_span!("send", sink = %self.name, first = first.map(|r| r.seq), last = last.map(|r| r.seq), alerts = records.len());
                let r = sent.instrument(span).await;
                if let Err(e) = &r {
                    tracing::debug!(sink = %self.name, records = records.len(), error = %e, "alerts not delivered");
                }
                return r;
            }
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
