//! The delivery worker of a lane: reads the spool in order, delivers batches, retries with
//! backoff, dead-letters what the destination refuses for good, removes what it confirmed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::{
    Backoff, DeadLetters, Deliver, DeliveryMetrics, Record, SinkError, SinkLabels, Spool, spool,
};

pub(super) struct Worker {
    pub(super) spool: Arc<Spool>,
    pub(super) dead: Arc<DeadLetters>,
    pub(super) notify: Arc<Notify>,
    pub(super) metrics: DeliveryMetrics,
    pub(super) labels: SinkLabels,
    pub(super) backoff: Backoff,
    pub(super) deliver: Arc<dyn Deliver>,
    pub(super) stop: watch::Receiver<Option<Instant>>,
    /// How long a denied batch (401/403/404) is retried before it is dead-lettered.
    pub(super) denied_grace: Duration,
    /// When the batch at the head of the spool was first denied.
    pub(super) denied_since: Option<(u64, Instant)>,
}

/// What ended a wait of the worker.
enum Wake {
    Go,
    Stop,
}

impl Worker {
    fn deadline(&self) -> Option<Instant> {
        *self.stop.borrow()
    }

    /// Sleeps for `d`, or less when asked to stop and the stop deadline comes first.
    async fn sleep(&mut self, d: Duration) -> Wake {
        let until = Instant::now() + d;
        loop {
            let limit = match self.deadline() {
                Some(dl) if dl <= until => {
                    tokio::time::sleep_until(dl.into()).await;
                    return Wake::Stop;
                }
                _ => until,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(limit.into()) => return Wake::Go,
                r = self.stop.changed() => if r.is_err() { return Wake::Stop },
            }
        }
    }

    async fn peek(&self, max: usize) -> Result<Vec<Record>, String> {
        let s = self.spool.clone();
        tokio::task::spawn_blocking(move || s.peek(max))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    async fn remove(&self, batch: &[Record]) -> Result<(), String> {
        let s = self.spool.clone();
        let seqs: Vec<u64> = batch.iter().map(|r| r.seq).collect();
        tokio::task::spawn_blocking(move || s.remove(&seqs))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn gauges(&self) {
        self.metrics
            .spool_records
            .get_or_create(&self.labels)
            .set(self.spool.len() as i64);
        self.metrics
            .spool_bytes
            .get_or_create(&self.labels)
            .set(self.spool.bytes() as i64);
    }

    pub(super) async fn run(mut self) {
        let policy = self.deliver.batch_policy();
        let max = policy.max.max(1);
        let mut retrying = false;
        loop {
            if let Some(dl) = self.deadline()
                && (self.spool.is_empty() || Instant::now() >= dl)
            {
                return;
            }
            let batch = match self.peek(max).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool");
                    let d = self.backoff.next_delay();
                    if let Wake::Stop = self.sleep(d).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.notify.notified() => {}
                    r = self.stop.changed() => if r.is_err() { return },
                }
                continue;
            }
            // Let a partial batch fill until its oldest record is `max_wait` old.
            if batch.len() < max && !policy.max_wait.is_zero() && self.deadline().is_none() {
                let age =
                    Duration::from_millis(spool::now_ms().saturating_sub(batch[0].enqueued_ms));
                if age < policy.max_wait {
                    tokio::select! {
                        _ = self.notify.notified() => {}
                        _ = tokio::time::sleep(policy.max_wait - age) => {}
                        _ = self.stop.changed() => {}
                    }
                    // Re-read: the batch may be full now, or old enough.
                    continue;
                }
            }
            if let Wake::Stop = self.send(batch, &mut retrying).await {
                return;
            }
        }
    }

    /// Turns a denial into a retry while the head batch is within its grace period, and into a
    /// refusal once the grace is over (the clock starts at the batch's first denial).
    fn judge_denied(&mut self, head: u64, result: Result<(), SinkError>) -> Result<(), SinkError> {
        let Err(SinkError::Denied(message)) = result else {
            return result;
        };
        let since = match self.denied_since {
            Some((seq, t)) if seq == head => t,
            _ => {
                let now = Instant::now();
                self.denied_since = Some((head, now));
                now
            }
        };
        let spent = since.elapsed();
        if spent < self.denied_grace {
            Err(SinkError::Retryable {
                message: format!(
                    "{message} (denied; retried for {} s more before it is dead-lettered)",
                    (self.denied_grace - spent).as_secs()
                ),
                retry_after: None,
            })
        } else {
            Err(SinkError::Permanent(format!(
                "{message} (still denied after {} s)",
                spent.as_secs()
            )))
        }
    }

    /// One delivery attempt of `batch` and what follows from its outcome.
    async fn send(&mut self, batch: Vec<Record>, retrying: &mut bool) -> Wake {
        let n = batch.len() as u64;
        if *retrying {
            self.metrics.retried.get_or_create(&self.labels).inc_by(n);
        }
        let deliver = self.deliver.clone();
        let result = {
            let attempt = deliver.deliver(&batch);
            tokio::pin!(attempt);
            loop {
                let dl = self.deadline();
                tokio::select! {
                    r = &mut attempt => break Some(r),
                    _ = async {
                        match dl {
                            Some(dl) => tokio::time::sleep_until(dl.into()).await,
                            None => std::future::pending::<()>().await,
                        }
                    } => break None,
                    r = self.stop.changed() => if r.is_err() { break None },
                }
            }
        };
        let Some(result) = result else {
            // Stopped mid-send: the batch stays spooled and goes again next run.
            return Wake::Stop;
        };
        let result = self.judge_denied(batch[0].seq, result);
        match result {
            Ok(()) => {
                if let Err(e) = self.remove(&batch).await {
                    tracing::error!(error = %e, "delivered, but cannot remove from the spool (will be sent again)");
                }
                let now = spool::now_ms();
                let hist = self.metrics.latency.get_or_create(&self.labels);
                for r in &batch {
                    hist.observe(now.saturating_sub(r.enqueued_ms) as f64 / 1000.0);
                }
                drop(hist);
                self.metrics.sent.get_or_create(&self.labels).inc_by(n);
                self.metrics.observe(
                    &self.labels,
                    batch.iter().map(|r| &r.payload[..]),
                    super::Outcome::Delivered,
                );
                self.denied_since = None;
                self.backoff.reset();
                *retrying = false;
                self.gauges();
                Wake::Go
            }
            Err(SinkError::Permanent(reason) | SinkError::Denied(reason)) => {
                self.denied_since = None;
                self.metrics.failed.get_or_create(&self.labels).inc_by(n);
                tracing::warn!(records = n, reason = %reason, "refused for good: dead-lettered");
                let dead = self.dead.clone();
                let b = batch.clone();
                let r = reason.clone();
                let written = tokio::task::spawn_blocking(move || dead.write(&b, &r))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map(drop).map_err(|e| e.to_string()));
                match written {
                    Ok(()) => {
                        self.metrics
                            .dead_lettered
                            .get_or_create(&self.labels)
                            .inc_by(n);
                        self.metrics.observe(
                            &self.labels,
                            batch.iter().map(|r| &r.payload[..]),
                            super::Outcome::DeadLettered { reason: &reason },
                        );
                        if let Err(e) = self.remove(&batch).await {
                            tracing::error!(error = %e, "cannot remove dead-lettered records from the spool");
                        }
                        *retrying = false;
                        self.gauges();
                        Wake::Go
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the dead-letter file; keeping the records spooled");
                        let d = self.backoff.next_delay();
                        self.sleep(d).await
                    }
                }
            }
            Err(SinkError::Retryable {
                message,
                retry_after,
            }) => {
                self.metrics.failed.get_or_create(&self.labels).inc_by(n);
                self.metrics.observe(
                    &self.labels,
                    batch.iter().map(|r| &r.payload[..]),
                    super::Outcome::Failed { error: &message },
                );
                let d = match retry_after {
                    Some(ra) => {
                        self.backoff.next_delay();
                        ra
                    }
                    None => self.backoff.next_delay(),
                };
                tracing::warn!(records = n, error = %message, retry_in_ms = d.as_millis() as u64, "delivery failed; will retry");
                *retrying = true;
                self.sleep(d).await
            }
        }
    }
}
