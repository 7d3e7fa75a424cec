//! Metric families of delivery: one series per sink (or lane), labelled by name and type.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The bounded label set of every delivery metric: the sink's name and type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// The sink's configured name.
    pub sink: String,
    /// The sink's type (`nats`, `http`, ...), or `forwarder` for non-alert lanes.
    pub sink_type: String,
}

/// Metric families of delivery, one series per sink.
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// Records confirmed by the destination.
    pub sent: Family<SinkLabels, Counter>,
    /// Failed delivery attempts (records × attempts).
    pub failed: Family<SinkLabels, Counter>,
    /// Records sent again after a retryable failure.
    pub retried: Family<SinkLabels, Counter>,
    /// Records written to the durable spool.
    pub spooled: Family<SinkLabels, Counter>,
    /// Records written to the dead-letter file (refused for good, undecodable, or dropped at the cap).
    pub dead_lettered: Family<SinkLabels, Counter>,
    /// Dead letters deleted with the oldest rotation of a full dead-letter file.
    pub dead_letters_discarded: Family<SinkLabels, Counter>,
    /// Records removed from a full spool (also counted in `dead_lettered`).
    pub dropped_at_cap: Family<SinkLabels, Counter>,
    /// Records in the in-memory queue in front of the spool.
    pub queue_depth: Family<SinkLabels, Gauge>,
    /// Records waiting in the spool.
    pub spool_records: Family<SinkLabels, Gauge>,
    /// Bytes waiting in the spool.
    pub spool_bytes: Family<SinkLabels, Gauge>,
    /// Time from enqueue to confirmation, in seconds.
    pub latency: Family<SinkLabels, Histogram>,
    /// Told each batch's outcome besides the counters (the console's store), when set.
    pub observer: Option<std::sync::Arc<dyn super::DeliveryObserver>>,
}

impl DeliveryMetrics {
    /// Creates and registers the families.
    pub fn register(r: &mut Registry) -> Self {
        let m = DeliveryMetrics {
            sent: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            spooled: Family::default(),
            dead_lettered: Family::default(),
            dead_letters_discarded: Family::default(),
            dropped_at_cap: Family::default(),
            queue_depth: Family::default(),
            spool_records: Family::default(),
            spool_bytes: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.5, 16))
            }),
            observer: None,
        };
        r.register("sink_sent", "Records confirmed by the sink", m.sent.clone());
        r.register(
            "sink_failed",
            "Failed delivery attempts, in records",
            m.failed.clone(),
        );
        r.register(
            "sink_retried",
            "Records sent again after a retryable failure",
            m.retried.clone(),
        );
        r.register(
            "sink_spooled",
            "Records written to the durable spool",
            m.spooled.clone(),
        );
        r.register(
            "sink_dead_letters_discarded",
            "Dead letters deleted with the oldest rotation of a full dead-letter file",
            m.dead_letters_discarded.clone(),
        );
        r.register(
            "sink_dead_lettered",
            "Records written to the dead-letter file",
            m.dead_lettered.clone(),
        );
        r.register(
            "sink_dropped_at_cap",
            "Records removed from a full spool (dead-lettered)",
            m.dropped_at_cap.clone(),
        );
        r.register(
            "sink_queue_depth",
            "Records in memory waiting for the spool writer",
            m.queue_depth.clone(),
        );
        r.register(
            "sink_spool_records",
            "Records waiting in the spool",
            m.spool_records.clone(),
        );
        r.register(
            "sink_spool_bytes",
            "Bytes waiting in the spool",
            m.spool_bytes.clone(),
        );
        r.register(
            "sink_delivery_latency_seconds",
            "Time from enqueue to confirmation by the sink",
            m.latency.clone(),
        );
        m
    }

    /// Tells the observer, if any, the outcome of `payloads` on `lane`.
    pub fn observe<'p>(
        &self,
        lane: &SinkLabels,
        payloads: impl IntoIterator<Item = &'p [u8]>,
        outcome: super::Outcome<'_>,
    ) {
        if let Some(o) = &self.observer {
            let p: Vec<&[u8]> = payloads.into_iter().collect();
            o.observe(lane, &p, outcome);
        }
    }
}
