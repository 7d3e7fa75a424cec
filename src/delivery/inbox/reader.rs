//! The reading side: batches come back in order (then those offered again), each with the hold
//! that marks it done or offers it again after a backoff.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use super::{Backoff, Entry, Hold, InboxBatch, InboxReader, InboxRecord, Shared, record};

impl InboxReader {
    /// The next batch to handle: batches offered again first, then new ones in order. `None`
    /// once the inbox is closed and every appended batch was read.
    pub async fn next(&mut self) -> Option<InboxBatch> {
        loop {
            let (entry, carried) = tokio::select! {
                biased;
                Some(e) = self.retry_rx.recv() => (e, None),
                e = self.rx.recv() => e?,
            };
            if self.shared.lock().watermark.is_done(entry.seq) {
                continue;
            }
            if let Some(c) = carried {
                let (record, evaluated) = c.take();
                let hold = hold_for(&self.shared, entry);
                return Some(InboxBatch {
                    record,
                    evaluated: Some(evaluated),
                    hold,
                });
            }
            let e = entry.clone();
            let read = tokio::task::spawn_blocking(move || read_entry(&e)).await;
            match read {
                Ok(Ok(record)) => {
                    let hold = hold_for(&self.shared, entry);
                    return Some(InboxBatch {
                        record,
                        evaluated: None,
                        hold,
                    });
                }
                Ok(Err(e)) => {
                    // Unreadable now: corrupted on disk after it was written. It cannot be
                    // handled; count it done so the inbox does not stall, and say so loudly.
                    tracing::error!(seq = entry.seq, file = %entry.path.display(), error = %e, "inbox record unreadable; skipped");
                    self.shared.complete(entry.seq);
                }
                Err(e) => {
                    tracing::error!(seq = entry.seq, error = %e, "inbox read task failed; offering the batch again later");
                    retry_later(&self.shared, entry);
                }
            }
        }
    }
}

fn read_entry(e: &Entry) -> Result<InboxRecord, String> {
    let f = File::open(e.path.as_ref()).map_err(|err| err.to_string())?;
    let mut buf = vec![0u8; e.len];
    f.read_exact_at(&mut buf, e.offset)
        .map_err(|err| err.to_string())?;
    match record::decode(&buf) {
        Some((r, _)) if r.seq == e.seq => Ok(r),
        Some((r, _)) => Err(format!("expected seq {}, found {}", e.seq, r.seq)),
        None => Err("checksum or framing mismatch".into()),
    }
}

fn hold_for(shared: &Arc<Shared>, entry: Entry) -> Hold {
    let shared = shared.clone();
    Hold::new(move |ok| {
        if ok {
            shared.complete(entry.seq);
        } else {
            retry_later(&shared, entry);
        }
    })
}

fn retry_later(shared: &Arc<Shared>, mut entry: Entry) {
    shared.metrics.retried.inc();
    let mut backoff = Backoff::new(
        Duration::from_millis(shared.cfg.retry_initial_ms),
        Duration::from_millis(shared.cfg.retry_max_ms),
    );
    let mut delay = backoff.next_delay();
    for _ in 0..entry.attempt.min(20) {
        delay = backoff.next_delay();
    }
    entry.attempt = entry.attempt.saturating_add(1);
    tracing::warn!(
        seq = entry.seq,
        attempt = entry.attempt,
        retry_in_ms = delay.as_millis() as u64,
        "some alerts of an inbox batch were not spooled; offering it again later"
    );
    let tx = shared.retry_tx.clone();
    // Outside a runtime (process exit) the batch simply stays in the inbox for the next run.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(entry);
        });
    }
}
