//! What a fresh batch carries to detection in memory, beside its place on disk, when its source
//! evaluated it while checking it: the alerts its events raised, and the record itself (so
//! detection does not read back what was just written), so that an accepted batch is read once.
//!
//! Memory is bounded by `inbox.memory_bytes`: past it a batch goes to detection by its place on
//! disk alone and is read back and evaluated there, exactly as a batch replayed after a restart
//! (or offered again after a failed spool) always is.

use crate::alert::Alert;
use crate::audit::{DecodeError, Validated};

use super::InboxRecord;
use crate::memory::{Budget, Reserved};

/// The alerts a batch's events raised, worked out while the batch was checked.
#[derive(Debug, Default)]
pub struct Evaluated {
    /// Every alert, in event order, uuids set.
    pub alerts: Vec<Alert>,
    /// Events evaluated.
    pub events: u64,
    /// Seconds the evaluation took.
    pub seconds: f64,
}

impl Evaluated {
    /// About the memory the alerts hold, for the budget.
    fn weight(&self) -> usize {
        self.alerts
            .iter()
            .map(|a| {
                std::mem::size_of::<Alert>()
                    + a.output.len()
                    + a.rule.len()
                    + a.output_fields
                        .iter()
                        .map(|(k, v)| k.len() + 64 + v.as_str().map_or(0, str::len))
                        .sum::<usize>()
            })
            .sum()
    }
}

/// A checked batch: what it holds, and its alerts when the check evaluated them too.
#[derive(Debug, Default)]
pub struct Screened {
    /// Events accepted and rejected, as [`crate::lazy::validate`] counts them.
    pub checked: Validated,
    /// The alerts, when the check evaluated the events (the rules in force then).
    pub evaluated: Option<Evaluated>,
}

/// How a source checks a batch before appending it: at least ingest's validation; detection's
/// check also evaluates the events in the same pass (see `detect::Screener`).
pub trait Screen: Send + Sync {
    /// Checks `body` (items over `max_event_bytes` are rejected), or says why the whole payload
    /// is refused.
    fn screen(&self, body: &[u8], max_event_bytes: usize) -> Result<Screened, DecodeError>;
}

/// Validation only: the batch is evaluated when detection reads it.
pub struct ValidateOnly;

impl Screen for ValidateOnly {
    fn screen(&self, body: &[u8], max_event_bytes: usize) -> Result<Screened, DecodeError> {
        Ok(Screened {
            checked: crate::lazy::validate(body, max_event_bytes)?,
            evaluated: None,
        })
    }
}

/// A fresh batch's alerts admitted within `inbox.memory_bytes`, on their way to the writer,
/// which joins them with the batch's record once it has its seq ([`Admitted::with_record`]).
#[derive(Debug)]
pub(super) struct Admitted {
    evaluated: Evaluated,
    reserved: Reserved,
}

impl Admitted {
    /// The alerts of a batch whose record takes `record_bytes`, or `None` (read back from disk)
    /// when the two would take `budget` over its limit.
    pub(super) fn within(
        budget: &Budget,
        record_bytes: usize,
        evaluated: Evaluated,
    ) -> Option<Admitted> {
        let reserved = budget.try_reserve(record_bytes + evaluated.weight())?;
        Some(Admitted {
            evaluated,
            reserved,
        })
    }

    /// The alerts with their batch's record, carried to detection.
    pub(super) fn with_record(self, record: InboxRecord) -> Carried {
        Carried {
            record,
            evaluated: self.evaluated,
            _reserved: self.reserved,
        }
    }
}

/// A fresh batch's record and alerts, holding their share of `inbox.memory_bytes` until taken.
#[derive(Debug)]
pub(super) struct Carried {
    record: InboxRecord,
    evaluated: Evaluated,
    _reserved: Reserved,
}

impl Carried {
    /// The record and alerts, the budget given back.
    pub(super) fn take(self) -> (InboxRecord, Evaluated) {
        (self.record, self.evaluated)
    }
}
