//! [`Hold`]: how the producer of some accepted work (an inbox batch, a chunk of Falco's alerts)
//! learns that everything it produced is durable.
//!
//! The producer creates a hold with a callback, and every copy of the work that travels on (an
//! alert on its way to each matching sink's spool) carries a share of it. A share is released
//! when its copy is safely spooled; a share dropped without release (a lane that could not
//! take it, a task that died) marks the whole hold as failed. When the last share is gone the
//! callback runs once with the outcome, so the producer can advance its checkpoint, or keep the
//! work and offer it again. Nothing needs to count or register anything: ownership does it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

type Settle = Box<dyn FnOnce(bool) + Send>;

struct Inner {
    failed: AtomicBool,
    settle: Mutex<Option<Settle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let settle = match self.settle.get_mut() {
            Ok(s) => s.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(f) = settle {
            f(!self.failed.load(Ordering::Acquire));
        }
    }
}

/// One share of a unit of accepted work; see the module docs.
pub struct Hold {
    inner: Arc<Inner>,
    released: bool,
}

impl Hold {
    /// A new unit of work; `settle(true)` runs when every share was released, `settle(false)`
    /// when any was dropped unreleased.
    pub fn new(settle: impl FnOnce(bool) + Send + 'static) -> Hold {
        Hold {
            inner: Arc::new(Inner {
                failed: AtomicBool::new(false),
                settle: Mutex::new(Some(Box::new(settle))),
            }),
            released: false,
        }
    }

    /// Another share of the same work, for another copy.
    pub fn share(&self) -> Hold {
        Hold {
            inner: self.inner.clone(),
            released: false,
        }
    }

    /// This share's copy is durable.
    pub fn release(mut self) {
        self.released = true;
    }

    /// This share's copy could not be made durable: the whole work settles as failed.
    pub fn fail(self) {
        drop(self);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.released {
            self.inner.failed.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hold")
    }
}

/// A hold whose outcome can be awaited: for producers that answer only once the work is durable
/// (Falco's `http_output`, the Falco tailer's checkpoint).
pub fn awaitable() -> (Hold, tokio::sync::oneshot::Receiver<bool>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (
        Hold::new(move |ok| {
            let _ = tx.send(ok);
        }),
        rx,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked() -> (Hold, Arc<Mutex<Vec<bool>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (Hold::new(move |ok| s.lock().unwrap().push(ok)), seen)
    }

    #[test]
    fn settles_once_when_every_share_is_released() {
        let (h, seen) = tracked();
        let a = h.share();
        let b = h.share();
        h.release();
        a.release();
        assert!(seen.lock().unwrap().is_empty());
        b.release();
        assert_eq!(*seen.lock().unwrap(), vec![true]);
    }

    #[test]
    fn one_dropped_share_fails_the_work() {
        let (h, seen) = tracked();
        let a = h.share();
        drop(a);
        h.release();
        assert_eq!(*seen.lock().unwrap(), vec![false]);
    }

    #[tokio::test]
    async fn awaitable_reports_the_outcome() {
        let (h, rx) = awaitable();
        let s = h.share();
        h.release();
        s.fail();
        assert!(!rx.await.unwrap());
    }
}
