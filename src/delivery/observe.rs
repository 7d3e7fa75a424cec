//! The delivery observer: a hook through which a layer above (the alert store behind the
//! console) learns what became of each record on each lane: spooled, delivered, or
//! dead-lettered with the reason. Delivery knows only the trait; whoever wires the pipeline
//! plugs an implementation into [`DeliveryMetrics::observer`](super::DeliveryMetrics).
//!
//! Observers are called on the lane's own tasks, so they must not block: queue the outcome and
//! return.

use super::SinkLabels;

/// What happened to a batch of records on one lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Written to the lane's durable spool.
    Spooled,
    /// Confirmed by the destination.
    Delivered,
    /// A delivery attempt failed and will be retried (the records stay spooled).
    Failed {
        /// The destination's error.
        error: &'a str,
    },
    /// Refused for good (or dropped at the spool's cap) and written to the dead-letter file.
    DeadLettered {
        /// Why.
        reason: &'a str,
    },
}

/// Told the outcome of every batch on every lane; must return at once.
pub trait DeliveryObserver: Send + Sync {
    /// `payloads` are the records' bytes (for alert lanes, the alerts' JSON).
    fn observe(&self, lane: &SinkLabels, payloads: &[&[u8]], outcome: Outcome<'_>);
}
