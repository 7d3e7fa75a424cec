//! Where an `eks` source stands: per log stream, the newest timestamp handed on and the
//! eventIds at that timestamp. Pure, so that the boundary rules are tested without AWS.
//!
//! A stream is written in time order by one API server, and `FilterLogEvents` returns events
//! by timestamp, so an event of a known stream is new when its timestamp is past the stream's
//! position, or equal to it with an eventId not seen yet (several events share a millisecond,
//! and more of them can arrive after a poll). An event of a stream not in the cursor is new.
//! The next poll starts at the oldest stream position; a stream whose position is more than
//! `lag` behind the newest is dropped from the cursor (it no longer holds the start back: every
//! event of it that a later poll can return is past its position, so nothing is handed twice).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One stream's position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPos {
    /// Newest timestamp handed on (ms since the epoch).
    pub ts: i64,
    /// eventIds handed on at `ts`.
    pub ids: BTreeSet<String>,
}

/// The position of an `eks` source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Events older than this are not asked for (ms): the first start's lookback, then the
    /// newest timestamp minus the lag.
    pub floor: i64,
    /// Per-stream positions.
    pub streams: BTreeMap<String, StreamPos>,
}

impl Cursor {
    /// A cursor for a first start at `floor`.
    pub fn starting_at(floor: i64) -> Cursor {
        Cursor {
            floor,
            streams: BTreeMap::new(),
        }
    }

    /// The `startTime` of the next poll: the oldest stream position, never below the floor.
    pub fn start(&self) -> i64 {
        self.streams
            .values()
            .map(|p| p.ts)
            .min()
            .unwrap_or(self.floor)
            .max(self.floor)
    }

    /// The newest timestamp handed on.
    pub fn newest(&self) -> Option<i64> {
        self.streams.values().map(|p| p.ts).max()
    }

    /// True when the event was not handed on yet.
    pub fn is_new(&self, stream: &str, ts: i64, id: &str) -> bool {
        match self.streams.get(stream) {
            None => ts >= self.floor,
            Some(p) => ts > p.ts || (ts == p.ts && !p.ids.contains(id)),
        }
    }

    /// Records an event as handed on.
    pub fn record(&mut self, stream: &str, ts: i64, id: &str) {
        let p = self
            .streams
            .entry(stream.to_string())
            .or_insert_with(|| StreamPos {
                ts,
                ids: BTreeSet::new(),
            });
        if ts > p.ts {
            p.ts = ts;
            p.ids.clear();
        }
        if ts == p.ts {
            p.ids.insert(id.to_string());
        }
    }

    /// Raises the floor to `newest - lag` and drops the streams below it.
    pub fn settle(&mut self, lag_ms: i64) {
        if let Some(n) = self.newest() {
            self.floor = self.floor.max(n - lag_ms);
        }
        let floor = self.floor;
        self.streams.retain(|_, p| p.ts >= floor);
    }

    /// Reads a saved cursor; a missing or unreadable one is `None` (with a warning).
    pub fn load(path: &Path) -> Option<Cursor> {
        let text = std::fs::read(path).ok()?;
        match serde_json::from_slice(&text) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable eks cursor");
                None
            }
        }
    }

    /// Writes the cursor atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_events_are_handed_on_once() {
        let mut c = Cursor::starting_at(1000);
        assert_eq!(c.start(), 1000);
        assert!(!c.is_new("a", 999, "x"), "before the first start");
        for id in ["1", "2"] {
            assert!(c.is_new("a", 1500, id));
            c.record("a", 1500, id);
        }
        assert_eq!(c.start(), 1500);
        // The next poll returns 1 and 2 again, and 3 that shares their millisecond.
        assert!(!c.is_new("a", 1500, "1") && !c.is_new("a", 1500, "2"));
        assert!(c.is_new("a", 1500, "3"));
        c.record("a", 1500, "3");
        assert!(
            !c.is_new("a", 1400, "0"),
            "older than the stream's position"
        );
        // Another stream, behind: it holds the start back until the lag passes.
        c.record("b", 1200, "9");
        assert_eq!(c.start(), 1200);
        assert!(c.is_new("b", 1300, "10"));
        c.record("a", 2000, "4");
        c.settle(500);
        assert_eq!(c.floor, 1500);
        assert!(!c.streams.contains_key("b"), "more than lag behind");
        assert_eq!(c.start(), 2000);
        assert!(
            c.is_new("b", 2100, "11"),
            "a dropped stream's later events are new"
        );
        assert_eq!(c.streams["a"].ids.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        c.save(&p).unwrap();
        assert_eq!(Cursor::load(&p), Some(c));
    }
}
