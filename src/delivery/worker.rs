//! The delivery worker of a lane: reads the spool in order, delivers batches, retries with
//! backoff, dead-letters what the destination refuses for good, removes what it confirmed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::direct::{Direct, Handoff, Presence};
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
    /// Where the spool writer hands batches to deliver directly while this worker is idle.
    pub(super) handoff: Arc<Handoff>,
    /// How long a direct batch may wait on the destination before it is spooled (zero: no
    /// direct delivery).
    pub(super) direct_wait: Duration,
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

    async fn remove(&self, seqs: Vec<u64>) -> Result<(), String> {
        let s = self.spool.clone();
        tokio::task::spawn_blocking(move || s.remove(&seqs))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Removes confirmed records from the spool (if that fails they are sent again).
    async fn remove_delivered(&self, seqs: Vec<u64>) {
        if let Err(e) = self.remove(seqs).await {
            tracing::error!(error = %e, "delivered, but cannot remove from the spool (will be sent again)");
        }
    }

    /// Awaits a delivery attempt, unless the worker is told to stop first (`None`).
    async fn until_stopped<F: std::future::Future>(
        &mut self,
        mut attempt: std::pin::Pin<&mut F>,
    ) -> Option<F::Output> {
        loop {
            let dl = self.deadline();
            tokio::select! {
                r = &mut attempt => return Some(r),
                _ = async {
                    match dl {
                        Some(dl) => tokio::time::sleep_until(dl.into()).await,
                        None => std::future::pending::<()>().await,
                    }
                } => return None,
                r = self.stop.changed() => if r.is_err() { return None },
            }
        }
    }

    /// Counts and reports a confirmed batch.
    fn delivered(&mut self, batch: &[Record], retrying: &mut bool) {
        let now = spool::now_ms();
        let hist = self.metrics.latency.get_or_create(&self.labels);
        for r in batch {
            hist.observe(now.saturating_sub(r.enqueued_ms) as f64 / 1000.0);
        }
        drop(hist);
        self.metrics
            .sent
            .get_or_create(&self.labels)
            .inc_by(batch.len() as u64);
        self.metrics.observe(
            &self.labels,
            batch.iter().map(|r| &r.payload[..]),
            super::Outcome::Delivered,
        );
        self.denied_since = None;
        self.backoff.reset();
        *retrying = false;
        self.gauges();
    }

    /// Counts and reports a failed delivery attempt.
    fn note_failed(&self, batch: &[Record], message: &str) {
        self.metrics
            .failed
            .get_or_create(&self.labels)
            .inc_by(batch.len() as u64);
        self.metrics.observe(
            &self.labels,
            batch.iter().map(|r| &r.payload[..]),
            super::Outcome::Failed { error: message },
        );
    }

    /// Waits after a passing failure: the next backoff delay, or what the destination asked
    /// for (`retry_after`), which still advances the backoff.
    async fn back_off(
        &mut self,
        records: usize,
        message: &str,
        retry_after: Option<Duration>,
        retrying: &mut bool,
    ) -> Wake {
        let d = self.backoff.next_delay();
        let d = retry_after.unwrap_or(d);
        tracing::warn!(records, error = %message, retry_in_ms = d.as_millis() as u64, "delivery failed; will retry");
        *retrying = true;
        self.sleep(d).await
    }

    /// A failed attempt at a direct batch that is (or is about to be) spooled: a passing failure
    /// backs off; one the spool's next attempt must judge (refused, denied) is tried again at
    /// once.
    async fn direct_failed(
        &mut self,
        batch: &[Record],
        error: SinkError,
        retrying: &mut bool,
    ) -> Wake {
        let message = error.to_string();
        self.note_failed(batch, &message);
        match error {
            SinkError::Retryable { retry_after, .. } => {
                self.back_off(batch.len(), &message, retry_after, retrying)
                    .await
            }
            _ => Wake::Go,
        }
    }

    /// Delivers a batch the spool writer handed over (see [`super::direct`]). Confirmed within
    /// `direct_wait`: its holds are released, the spool never sees it. Failed: it goes back to
    /// the spool writer. Slower: this worker spools it at once (so the spool writer goes on)
    /// and keeps waiting; confirmed then, it is removed from the spool again.
    async fn direct(&mut self, d: Direct, retrying: &mut bool) -> Wake {
        let Direct {
            batch: (payloads, holds),
            answer,
        } = d;
        let now = spool::now_ms();
        let records: Vec<Record> = payloads
            .iter()
            .zip(0..)
            .map(|(p, seq)| Record {
                seq,
                enqueued_ms: now,
                payload: p.clone(),
            })
            .collect();
        let deliver = self.deliver.clone();
        let attempt = deliver.deliver(&records);
        tokio::pin!(attempt);
        let quick = tokio::select! {
            r = &mut attempt => Some(r),
            _ = tokio::time::sleep(self.direct_wait) => None,
        };
        let spoolable = payloads.clone();
        let mut answer = Some((answer, payloads, holds));
        // Takes care of the batch (`None`) or hands it back to be spooled.
        let mut settle = |back: bool| {
            if let Some((answer, payloads, holds)) = answer.take() {
                if back {
                    let _ = answer.send(Some((payloads, holds)));
                } else {
                    holds.into_iter().for_each(super::Hold::release);
                    let _ = answer.send(None);
                }
            }
        };
        match quick {
            Some(Ok(())) => {
                settle(false);
                self.delivered(&records, retrying);
                return Wake::Go;
            }
            Some(Err(e)) => {
                settle(true);
                return self.direct_failed(&records, e, retrying).await;
            }
            None => {}
        }
        // Slow: spool it now, so that what is queued behind it need not wait on the destination.
        let spooled = super::append::spool_batch(
            &self.spool,
            &self.dead,
            &self.metrics,
            &self.labels,
            &spoolable,
        )
        .await;
        let seqs = match spooled {
            Ok(outcome) => {
                settle(false);
                Some(outcome.seqs)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot spool a batch its destination is slow with; still waiting on the destination");
                None
            }
        };
        let result = self.until_stopped(attempt).await;
        match (seqs, result) {
            (Some(seqs), Some(Ok(()))) => {
                self.remove_delivered(seqs).await;
                self.delivered(&records, retrying);
                Wake::Go
            }
            // Spooled: the next attempt reads it from the spool.
            (Some(_), Some(Err(e))) => self.direct_failed(&records, e, retrying).await,
            (Some(_), None) => Wake::Stop,
            (None, Some(Ok(()))) => {
                settle(false);
                self.delivered(&records, retrying);
                Wake::Go
            }
            (None, Some(Err(e))) => {
                settle(true);
                self.direct_failed(&records, e, retrying).await
            }
            (None, None) => {
                settle(true);
                Wake::Stop
            }
        }
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
        // Direct batches only for a destination that does not wait for its batches to fill.
        let room = if self.direct_wait.is_zero() || !policy.max_wait.is_zero() {
            0
        } else {
            max
        };
        let _present = Presence::new(self.handoff.clone(), room);
        loop {
            if let Some(dl) = self.deadline()
                && (self.spool.is_empty() || Instant::now() >= dl)
            {
                return;
            }
            // An empty spool is known without reading it (an append notifies).
            let read = if self.spool.is_empty() {
                Ok(Vec::new())
            } else {
                self.peek(max).await
            };
            let batch = match read {
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
                // Idle: a batch may come from the spool, or straight from the spool writer.
                let handoff = self.handoff.clone();
                let mut handed = handoff.receiver().await;
                let direct = tokio::select! {
                    _ = self.notify.notified() => None,
                    d = handed.recv() => d,
                    r = self.stop.changed() => if r.is_err() { return } else { None },
                };
                drop(handed);
                if let Some(d) = direct
                    && let Wake::Stop = self.direct(d, &mut retrying).await
                {
                    return;
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
            self.until_stopped(attempt).await
        };
        let Some(result) = result else {
            // Stopped mid-send: the batch stays spooled and goes again next run.
            return Wake::Stop;
        };
        let result = self.judge_denied(batch[0].seq, result);
        match result {
            Ok(()) => {
                self.remove_delivered(batch.iter().map(|r| r.seq).collect())
                    .await;
                self.delivered(&batch, retrying);
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
                        if let Err(e) = self.remove(batch.iter().map(|r| r.seq).collect()).await {
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
                self.note_failed(&batch, &message);
                self.back_off(batch.len(), &message, retry_after, retrying)
                    .await
            }
        }
    }
}
