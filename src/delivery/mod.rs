//! Durable delivery: the ONE queue mechanism every sink (and the Falco forwarder) goes through,
//! and the inbox in front of detection.
//!
//! A [`Lane`] is one destination's path: a bounded in-memory queue → a durable on-disk
//! [`spool::Spool`] → a worker that delivers in order with exponential backoff and jitter,
//! removing a record only after the destination confirmed it (at-least-once across outages,
//! restarts and `SIGKILL`). Refused records go to a dead-letter file. Lanes carry opaque byte
//! records; [`alerts`] is the Alert layer the router uses on top. The [`inbox`] keeps accepted
//! audit batches on disk until every alert they raised is spooled, which [`Hold`]s track.
//! See `docs/delivery.md`.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub mod alerts;
mod append;
mod backoff;
pub mod deadletter;
mod direct;
pub mod hold;
pub mod inbox;
mod lane;
mod metrics;
pub mod observe;
pub mod sink;
pub mod spool;
mod worker;

pub use backoff::Backoff;
pub use deadletter::DeadLetters;
pub use hold::Hold;
pub use lane::{Lane, LaneError, LanePaths, quarantine_orphans};
pub use metrics::{DeliveryMetrics, SinkLabels};
pub use observe::{DeliveryObserver, Outcome};
pub use sink::{Sink, SinkError, json_lines};
pub use spool::{Record, Spool, SpoolError};

/// Settings of the per-sink durable spool and its delivery worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Largest size of one sink's spool in bytes; past it the oldest alerts are dead-lettered.
    pub max_bytes: u64,
    /// Records waiting in memory between the router and one sink's spool writer.
    pub queue_capacity: usize,
    /// Most records written to the spool in one transaction (one fsync).
    pub write_batch: usize,
    /// How long a held batch reaching an idle sink with an empty spool may wait on the sink
    /// before it is spooled, in milliseconds: a sink that confirms sooner gets it without the
    /// spool's two fsyncs (its producer, the inbox, keeps it on disk meanwhile). 0 spools every
    /// batch first.
    pub direct_delivery_ms: u64,
    /// First retry delay after a retryable failure, in milliseconds (doubles each time).
    pub retry_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// On shutdown, how long the workers may keep delivering what is spooled, in milliseconds.
    pub shutdown_flush_ms: u64,
    /// Size at which a sink's dead-letter file is rotated.
    pub dead_letter_max_bytes: u64,
    /// Rotated dead-letter files kept per sink; older ones are deleted (and counted).
    pub dead_letter_keep: usize,
    /// How long a batch denied with HTTP 401/403/404 is retried before it is dead-lettered, in
    /// seconds (credential rotation and ingress blips pass; 0 dead-letters at once).
    pub denied_retry_secs: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 256 * 1024 * 1024,
            queue_capacity: 4096,
            write_batch: 1024,
            direct_delivery_ms: 100,
            retry_initial_ms: 200,
            retry_max_ms: 60_000,
            shutdown_flush_ms: 3_000,
            dead_letter_max_bytes: 64 * 1024 * 1024,
            dead_letter_keep: 3,
            denied_retry_secs: 300,
        }
    }
}

impl SpoolConfig {
    /// How much dead-letter data each destination keeps under these settings.
    pub fn dead_letter_limits(&self) -> deadletter::Limits {
        deadletter::Limits {
            max_bytes: self.dead_letter_max_bytes,
            keep: self.dead_letter_keep,
        }
    }

    /// Checks values types alone cannot; keys are relative to `spool`.
    pub fn validate(&self) -> Result<(), crate::invalid::Invalid> {
        use crate::invalid::{Invalid, positive};
        positive("max_bytes", self.max_bytes)?;
        positive("queue_capacity", self.queue_capacity as u64)?;
        positive("write_batch", self.write_batch as u64)?;
        positive("retry_initial_ms", self.retry_initial_ms)?;
        positive("dead_letter_max_bytes", self.dead_letter_max_bytes)?;
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(Invalid::new(
                "retry_max_ms",
                "must be at least spool.retry_initial_ms",
            ));
        }
        Ok(())
    }
}

/// How a destination wants its records grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Most records per `deliver` call.
    pub max: usize,
    /// How long to wait for a batch to fill; zero sends whatever is there at once.
    pub max_wait: Duration,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max: 1,
            max_wait: Duration::ZERO,
        }
    }
}

/// A destination of spooled records: confirms a batch or classifies the failure.
pub trait Deliver: Send + Sync + 'static {
    /// Delivers every record of the batch; on error none is taken as delivered.
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>>;
    /// How records are grouped into batches.
    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_settings_are_checked() {
        assert!(SpoolConfig::default().validate().is_ok());
        let bad = SpoolConfig {
            retry_max_ms: 1,
            ..SpoolConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().under("spool").key,
            "spool.retry_max_ms"
        );
    }
}
