//! The bounded queue of accepted batches between ingest and detection. It owns its depth gauge,
//! so that whoever sends and whoever receives keep `kaudit_ingest_queue_depth` right without
//! knowing about each other's metrics.

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;

use crate::audit::AuditBatch;

/// Why a batch was not queued.
#[derive(Debug)]
pub enum TrySendError {
    /// The queue is at capacity (answer 429).
    Full(AuditBatch),
    /// Detection has stopped (shutting down).
    Closed(AuditBatch),
}

/// The sending side, held by ingest (and by every other source of batches).
#[derive(Clone)]
pub struct BatchSender {
    tx: mpsc::Sender<AuditBatch>,
    depth: Gauge,
}

/// The receiving side, held by detection.
pub struct BatchReceiver {
    rx: mpsc::Receiver<AuditBatch>,
    depth: Gauge,
}

/// A queue of `capacity` batches whose depth is kept in `depth`.
pub fn channel(capacity: usize, depth: Gauge) -> (BatchSender, BatchReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        BatchSender {
            tx,
            depth: depth.clone(),
        },
        BatchReceiver { rx, depth },
    )
}

impl BatchSender {
    /// Queues `batch` at once, or says why not.
    pub fn try_send(&self, batch: AuditBatch) -> Result<(), TrySendError> {
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.depth.inc();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(b)) => Err(TrySendError::Full(b)),
            Err(mpsc::error::TrySendError::Closed(b)) => Err(TrySendError::Closed(b)),
        }
    }

    /// Queues `batch`, waiting for room; `Err` when detection has stopped.
    pub async fn send(&self, batch: AuditBatch) -> Result<(), AuditBatch> {
        self.tx.send(batch).await.map_err(|e| e.0)?;
        self.depth.inc();
        Ok(())
    }

    /// True once the receiving side is closed or gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl BatchReceiver {
    /// The next batch; `None` when every sender is gone (or the queue was closed) and it is empty.
    pub async fn recv(&mut self) -> Option<AuditBatch> {
        let b = self.rx.recv().await?;
        self.depth.dec();
        Some(b)
    }

    /// Refuses new batches; those already queued can still be received.
    pub fn close(&mut self) {
        self.rx.close();
    }
}
