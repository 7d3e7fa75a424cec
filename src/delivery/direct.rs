//! Direct delivery: a held batch that reaches a lane whose spool is empty, with no backlog
//! queued behind it, goes straight to the destination through the lane's worker (which takes it
//! once it has nothing older), and is spooled only if the destination fails it or is slower than
//! `spool.direct_delivery_ms`.
//!
//! Why: a healthy destination would otherwise cost every batch two fsynced spool transactions
//! (the append, then the removal once confirmed), about an eighth of kaudit's CPU at full ingest
//! rate, for records that are already durable elsewhere. Only records with a [`Hold`] are sent
//! this way: their producer (the inbox) keeps its own copy on disk until the hold is released,
//! which here happens once the destination confirmed them (or once they are spooled after all),
//! and replays it after a crash. Records without a hold always go through the spool, which is
//! then their only copy.
//!
//! Order is kept: the spool writer hands over one batch and waits for its answer before it
//! takes the next; a batch handed back (failed) is spooled before anything queued after it, and
//! a batch the destination is slow with is spooled by the worker before the spool writer goes
//! on, so the spool's head is always the oldest record not yet confirmed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::Hold;

/// A batch and its holds, as the spool writer hands it over or gets it back.
pub(super) type Batch = (Arc<Vec<Bytes>>, Vec<Hold>);

/// A batch handed to the worker, with where to answer.
pub(super) struct Direct {
    /// The records and their holds.
    pub(super) batch: Batch,
    /// `None`: the batch is taken care of (delivered, or spooled by the worker, holds released);
    /// `Some`: handed back to be spooled. Dropped unanswered (the worker died): the holds were
    /// dropped with it, so the producer offers the work again.
    pub(super) answer: oneshot::Sender<Option<Batch>>,
}

/// The meeting point of a lane's spool writer and its worker (the worker may be replaced; the
/// handoff stays with the lane).
pub(super) struct Handoff {
    /// Most records the worker takes in one direct batch: its batch size while a worker runs
    /// with direct delivery on, 0 otherwise.
    room: AtomicUsize,
    tx: mpsc::Sender<Direct>,
    rx: Mutex<mpsc::Receiver<Direct>>,
}

impl Handoff {
    pub(super) fn new() -> Arc<Handoff> {
        let (tx, rx) = mpsc::channel(1);
        Arc::new(Handoff {
            room: AtomicUsize::new(0),
            tx,
            rx: Mutex::new(rx),
        })
    }

    /// Most records a direct batch may hold now (0: none is taken).
    pub(super) fn room(&self) -> usize {
        self.room.load(Ordering::Acquire)
    }

    /// The receiving end, for the worker's idle wait.
    pub(super) async fn receiver(&self) -> tokio::sync::MutexGuard<'_, mpsc::Receiver<Direct>> {
        self.rx.lock().await
    }

    /// Hands a batch to the worker and waits for the answer. Returns the batch when it must be
    /// spooled after all (a record has no hold, it is larger than the worker takes, or the
    /// destination failed it); `None` when it is taken care of. Call it only while the spool
    /// is empty: the worker takes the batch once it has nothing older to deliver.
    pub(super) async fn offer(
        &self,
        payloads: Arc<Vec<Bytes>>,
        holds: Vec<Option<Hold>>,
    ) -> Option<(Arc<Vec<Bytes>>, Vec<Option<Hold>>)> {
        if payloads.len() > self.room() || holds.iter().any(Option::is_none) {
            return Some((payloads, holds));
        }
        let batch = (payloads, holds.into_iter().flatten().collect());
        let (answer, answered) = oneshot::channel();
        if let Err(e) = self.tx.try_send(Direct { batch, answer }) {
            let Direct { batch, .. } = e.into_inner();
            return Some(unpack(batch));
        }
        match answered.await {
            Ok(Some(batch)) => Some(unpack(batch)),
            Ok(None) | Err(_) => None,
        }
    }
}

/// A running worker's presence at the handoff: opens it with the worker's batch size, and on
/// drop (the worker stopped, or died) closes it and hands back a batch left waiting in it.
pub(super) struct Presence(Arc<Handoff>);

impl Presence {
    pub(super) fn new(handoff: Arc<Handoff>, room: usize) -> Presence {
        handoff.room.store(room, Ordering::Release);
        Presence(handoff)
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.0.room.store(0, Ordering::Release);
        if let Ok(mut rx) = self.0.rx.try_lock() {
            while let Ok(d) = rx.try_recv() {
                let _ = d.answer.send(Some(d.batch));
            }
        }
    }
}

/// A handed-back batch in the spool writer's form.
fn unpack((payloads, holds): Batch) -> (Arc<Vec<Bytes>>, Vec<Option<Hold>>) {
    (payloads, holds.into_iter().map(Some).collect())
}
