//! Appending a batch to a lane's spool: one transaction, what the cap pushes out written to the
//! dead-letter file first, and the counters and observer told. The spool writer's step, which
//! the worker also takes for a direct batch its destination is slow to confirm.

use std::sync::Arc;

use bytes::Bytes;

use super::spool::AppendOutcome;
use super::{DeadLetters, DeliveryMetrics, SinkLabels, Spool};

/// Why a full spool dropped a record (its dead letter's reason, and the console's).
fn spool_full_reason(max_bytes: u64) -> String {
    format!("spool full (spool.max_bytes {max_bytes}): dropped, oldest first")
}

/// Appends `batch` to the spool in one transaction, dead-lettering what the cap pushes out, and
/// counts and reports what happened: the spool writer's step, which the worker also takes for a
/// direct batch its destination is slow to confirm.
pub(super) async fn spool_batch(
    spool: &Arc<Spool>,
    dead: &Arc<DeadLetters>,
    metrics: &DeliveryMetrics,
    labels: &SinkLabels,
    batch: &Arc<Vec<Bytes>>,
) -> Result<AppendOutcome, String> {
    let (s, d, b) = (spool.clone(), dead.clone(), batch.clone());
    let written = tokio::task::spawn_blocking(move || {
        let max = s.max_bytes();
        // What the cap pushed out, for the observer once the append committed.
        let mut dropped: Vec<Bytes> = Vec::new();
        s.append(&b, &mut |evicted| {
            d.write(evicted, &spool_full_reason(max))
                .map_err(|e| e.to_string())?;
            dropped.extend(evicted.iter().map(|r| r.payload.clone()));
            Ok(())
        })
        .map(|outcome| (outcome, dropped, max))
    })
    .await;
    let (outcome, dropped, max) = match written {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(e) => return Err(format!("the spool writer failed: {e}")),
    };
    metrics
        .spooled
        .get_or_create(labels)
        .inc_by(outcome.appended as u64);
    metrics.observe(
        labels,
        batch.iter().map(|b| &b[..]),
        super::Outcome::Spooled,
    );
    if !dropped.is_empty() {
        metrics.observe(
            labels,
            dropped.iter().map(|b| &b[..]),
            super::Outcome::DeadLettered {
                reason: &spool_full_reason(max),
            },
        );
    }
    if outcome.evicted > 0 {
        let n = outcome.evicted as u64;
        metrics.dropped_at_cap.get_or_create(labels).inc_by(n);
        metrics.dead_lettered.get_or_create(labels).inc_by(n);
        tracing::warn!(
            dropped = n,
            max_bytes = max,
            dead_letter = %dead.path().display(),
            "spool full: oldest records dropped to the dead-letter file"
        );
    }
    Ok(outcome)
}
