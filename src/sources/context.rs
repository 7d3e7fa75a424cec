//! [`SourceContext`]: what a running source is handed: the inbox (with the retry loop every
//! source needs around it), its stats, the stop signal and where to keep its position.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use super::batch::CONTENT_TYPE;
use super::{EventBatch, SourceEnv, SourceStats};
use crate::delivery::Backoff;
use crate::delivery::inbox::{Inbox, InboxError};

/// The source was told to stop (or the inbox closed) before its batch was taken: it must not
/// advance its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped")]
pub struct Stopped;

/// What a running source is handed.
pub struct SourceContext {
    name: String,
    inbox: Inbox,
    /// Its counters.
    pub stats: SourceStats,
    stop: watch::Receiver<bool>,
    env: SourceEnv,
}

impl SourceContext {
    /// The context of source `name`.
    pub fn new(
        name: &str,
        inbox: Inbox,
        stats: SourceStats,
        stop: watch::Receiver<bool>,
        env: SourceEnv,
    ) -> SourceContext {
        SourceContext {
            name: name.to_string(),
            inbox,
            stats,
            stop,
            env,
        }
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An empty batch with the configured event size limit.
    pub fn batch(&self) -> EventBatch {
        EventBatch::new(self.env.max_event_bytes, self.env.screen.clone())
    }

    /// The file where this source keeps its position (`<data_dir>/sources/<name>.<ext>`).
    pub fn state_file(&self, ext: &str) -> PathBuf {
        self.env.state_dir.join(format!("{}.{ext}", self.name))
    }

    /// True once stop was signalled.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d`; `Err(Stopped)` when stop was signalled meanwhile.
    pub async fn sleep(&mut self, d: Duration) -> Result<(), Stopped> {
        if self.stopping() {
            return Err(Stopped);
        }
        tokio::select! {
            _ = self.stop.changed() => Err(Stopped),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Runs `f` unless stop is signalled first.
    pub async fn or_stop<T>(
        &mut self,
        f: impl std::future::Future<Output = T>,
    ) -> Result<T, Stopped> {
        if self.stopping() {
            return Err(Stopped);
        }
        tokio::select! {
            _ = self.stop.changed() => Err(Stopped),
            v = f => Ok(v),
        }
    }

    /// Appends `batch` to the inbox, retrying with backoff while the inbox is full or the disk
    /// refuses; returns once it is on disk, and only then may the caller advance its position.
    /// An empty batch is not appended. Counts the events and the skipped records.
    pub async fn append(&mut self, batch: &mut EventBatch) -> Result<(), Stopped> {
        if batch.events() == 0 {
            batch.count_skipped(&self.stats);
            return Ok(());
        }
        let body = batch.body();
        // The alerts the check raised go with the batch (once: a retry appends it without).
        let mut evaluated = batch.take_evaluated();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match self
                .inbox
                .append_evaluated(&self.name, CONTENT_TYPE, body.clone(), evaluated.take())
                .await
            {
                Ok(_) => break,
                Err(InboxError::Closed) => return Err(Stopped),
                Err(e) => {
                    self.stats.error(format_args!("inbox: {e}"));
                    let wait = backoff.next_delay();
                    tracing::warn!(source = %self.name, error = %e, retry_in_ms = wait.as_millis() as u64, "inbox did not take the batch; retrying");
                    self.sleep(wait).await?;
                }
            }
        }
        self.stats.appended(batch.events() as u64, batch.newest());
        batch.count_skipped(&self.stats);
        Ok(())
    }
}
