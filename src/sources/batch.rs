//! [`EventBatch`]: the events of one read, checked as ingest checks a webhook payload, as the
//! JSON array the inbox takes.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use std::sync::Arc;

use super::{Skip, SourceStats};
use crate::audit::DecodeError;
use crate::delivery::inbox::{Evaluated, Screen};

/// The content type of every batch a source appends.
pub const CONTENT_TYPE: &str = "application/json";

/// The events of one read, as a JSON array of the records' own text (never re-serialised), and
/// what was skipped on the way.
pub struct EventBatch {
    body: Vec<u8>,
    events: usize,
    newest: Option<DateTime<Utc>>,
    max_event_bytes: usize,
    skipped: BTreeMap<Skip, u64>,
    screen: Arc<dyn Screen>,
    /// The alerts of the records so far, while every record's check evaluated it.
    evaluated: Option<Evaluated>,
}

impl std::fmt::Debug for EventBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBatch")
            .field("bytes", &self.body.len())
            .field("events", &self.events)
            .field("newest", &self.newest)
            .field("skipped", &self.skipped)
            .field(
                "evaluated",
                &self.evaluated.as_ref().map(|e| e.alerts.len()),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Stamp<'a> {
    #[serde(default, borrow, rename = "stageTimestamp")]
    ts: Option<&'a str>,
}

impl EventBatch {
    /// An empty batch whose records are checked with `screen`; events over
    /// `max_event_bytes` are skipped.
    pub fn new(max_event_bytes: usize, screen: Arc<dyn Screen>) -> EventBatch {
        EventBatch {
            body: b"[".to_vec(),
            events: 0,
            newest: None,
            max_event_bytes,
            skipped: BTreeMap::new(),
            screen,
            evaluated: Some(Evaluated::default()),
        }
    }

    /// Adds one record: an audit Event (or an EventList, or an array of them) as JSON text.
    /// Returns the events it held; a record that holds none is counted as skipped.
    pub fn push_json(&mut self, raw: &[u8]) -> usize {
        let screened = match self.screen.screen(raw, self.max_event_bytes) {
            Ok(c) => c,
            Err(DecodeError::Malformed { .. }) => {
                self.skip(Skip::Malformed);
                return 0;
            }
            Err(DecodeError::NotAuditEvent(_)) => {
                self.skip(Skip::NotAnEvent);
                return 0;
            }
        };
        let checked = screened.checked;
        for (_, r) in &checked.rejected {
            self.skip(Skip::from(*r));
        }
        if checked.accepted == 0 {
            return 0;
        }
        if self.events > 0 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(raw);
        self.events += checked.accepted;
        // One record the check left to detection (no rules in force, or an event without an
        // `auditID` that alerted) leaves the whole batch to it.
        match (&mut self.evaluated, screened.evaluated) {
            (Some(all), Some(e)) => {
                all.alerts.extend(e.alerts);
                all.events += e.events;
                all.seconds += e.seconds;
            }
            (all, _) => *all = None,
        }
        if let Ok(Stamp { ts: Some(ts) }) = serde_json::from_slice::<Stamp>(raw)
            && let Ok(t) = DateTime::parse_from_rfc3339(ts)
        {
            let t = t.with_timezone(&Utc);
            if self.newest.is_none_or(|n| t > n) {
                self.newest = Some(t);
            }
        }
        checked.accepted
    }

    /// The alerts the records' checks raised, when every record's check evaluated it (taken:
    /// the inbox carries them to detection with the batch).
    pub fn take_evaluated(&mut self) -> Option<Evaluated> {
        self.evaluated.take()
    }

    /// Counts one record skipped for `why`.
    pub fn skip(&mut self, why: Skip) {
        *self.skipped.entry(why).or_default() += 1;
    }

    /// Events in the batch.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Bytes of the body so far.
    pub fn bytes(&self) -> usize {
        self.body.len() + 1
    }

    /// The newest `stageTimestamp` among the events.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.newest
    }

    /// The JSON array to append.
    pub fn body(&self) -> Bytes {
        let mut b = Vec::with_capacity(self.body.len() + 1);
        b.extend_from_slice(&self.body);
        b.push(b']');
        Bytes::from(b)
    }

    /// Adds the skip counts to `stats` (once the batch's fate is settled) and clears them.
    pub fn count_skipped(&mut self, stats: &SourceStats) {
        for (why, n) in std::mem::take(&mut self.skipped) {
            stats.skipped(why, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete","stageTimestamp":"2026-01-01T00:00:00.5Z"}"#;

    #[test]
    fn takes_events_and_skips_the_rest() {
        let mut b = EventBatch::new(1 << 20, Arc::new(crate::delivery::inbox::ValidateOnly));
        assert_eq!(b.push_json(EV.as_bytes()), 1);
        assert_eq!(b.push_json(b"I0101 klog line"), 0);
        assert_eq!(b.push_json(br#"{"kind":0}"#), 0);
        assert_eq!(b.push_json(br#"{"kind":"Event","auditID":"b"}"#), 0);
        assert_eq!(b.push_json(EV.as_bytes()), 1);
        let body = b.body();
        let d = crate::audit::decode(&body, 1 << 20).unwrap();
        assert_eq!(d.events.len(), 2);
        assert_eq!(b.events(), 2);
        assert_eq!(b.skipped[&Skip::Malformed], 1);
        assert_eq!(b.skipped[&Skip::NotAnEvent], 1);
        assert_eq!(b.skipped[&Skip::MissingStageTimestamp], 1);
        assert_eq!(
            b.newest().unwrap().to_rfc3339(),
            "2026-01-01T00:00:00.500+00:00"
        );
        assert!(b.take_evaluated().is_none(), "validation evaluates nothing");
        let empty = EventBatch::new(1, Arc::new(crate::delivery::inbox::ValidateOnly));
        assert_eq!(&*empty.body(), b"[]");
    }
}
