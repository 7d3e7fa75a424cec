//! Per-destination dead-letter files: one JSON object per line with the record, the reason and
//! the time, appended and fsynced before the record leaves the spool.
//!
//! A file is capped: past `max_bytes` it is rotated (`<name>.jsonl` → `.1` → `.2` ...), and the
//! oldest rotation beyond `keep` is deleted, its records counted as discarded. `kaudit
//! deadletter list|replay` reads every rotation, oldest first.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use prometheus_client::metrics::counter::Counter;

use super::Record;

/// Appends refused records to `<data_dir>/dead-letter/<name>.jsonl`.
pub struct DeadLetters {
    path: PathBuf,
    sink: String,
    field: &'static str,
    limits: Limits,
    discarded: Counter,
    lock: Mutex<()>,
}

/// How much dead-letter data one destination keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Size at which the file is rotated.
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024 * 1024,
            keep: 3,
        }
    }
}

/// What one write did besides appending.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Records deleted with the oldest rotation to stay under the cap.
    pub discarded: u64,
}

/// The files of a dead-letter path, oldest first: `.N`, ..., `.1`, then the current one (only
/// those that exist).
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(usize, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        && let Ok(rd) = std::fs::read_dir(dir)
    {
        for e in rd.flatten() {
            let p = e.path();
            let Some(n) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(i) = n
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|i| i.parse::<usize>().ok())
            {
                rotated.push((i, p));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

fn count_lines(path: &Path) -> u64 {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
        .unwrap_or(0)
}

impl DeadLetters {
    /// Dead letters of `sink` in `path`; each record's payload goes under key `field`
    /// (as JSON when it is JSON, else as a string).
    pub fn new(path: PathBuf, sink: &str, field: &'static str) -> Self {
        Self::with_limits(path, sink, field, Limits::default())
    }

    /// As [`DeadLetters::new`], with its own cap.
    pub fn with_limits(path: PathBuf, sink: &str, field: &'static str, limits: Limits) -> Self {
        DeadLetters {
            path,
            sink: sink.to_string(),
            field,
            limits,
            discarded: Counter::default(),
            lock: Mutex::new(()),
        }
    }

    /// Counts records deleted with the oldest rotation in `counter`.
    pub fn counting_discards(mut self, counter: Counter) -> Self {
        self.discarded = counter;
        self
    }

    /// Rotates the file when it has reached the cap; returns the records deleted with the
    /// oldest rotation.
    fn rotate_if_full(&self) -> std::io::Result<u64> {
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if size < self.limits.max_bytes {
            return Ok(0);
        }
        let mut discarded = 0;
        let oldest = rotated(&self.path, self.limits.keep.max(1));
        if self.limits.keep == 0 {
            discarded += count_lines(&self.path);
            std::fs::remove_file(&self.path)?;
            return Ok(discarded);
        }
        if oldest.exists() {
            discarded += count_lines(&oldest);
            std::fs::remove_file(&oldest)?;
        }
        for i in (1..self.limits.keep).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        Ok(discarded)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line per record, then fsyncs (rotating first when the file is full).
    /// Blocking.
    pub fn write(&self, records: &[Record], reason: &str) -> std::io::Result<Written> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let discarded = self.rotate_if_full()?;
        if discarded > 0 {
            self.discarded.inc_by(discarded);
            tracing::warn!(file = %self.path.display(), records = discarded, "dead-letter files over their cap: the oldest rotation was deleted");
        }
        let time = crate::alert::format_time(&Utc::now());
        let mut buf = Vec::new();
        for r in records {
            let mut line = serde_json::Map::new();
            line.insert("time".into(), time.clone().into());
            line.insert("sink".into(), self.sink.clone().into());
            line.insert("reason".into(), reason.into());
            let payload =
                serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&r.payload).into_owned())
                });
            line.insert(self.field.into(), payload);
            serde_json::to_writer(&mut buf, &line).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&buf)?;
        f.sync_data()?;
        Ok(Written { discarded })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_counts_what_it_discards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("soc.jsonl");
        let d = DeadLetters::with_limits(
            path.clone(),
            "soc",
            "alert",
            Limits {
                max_bytes: 100,
                keep: 2,
            },
        );
        let rec = |n: u64| Record {
            seq: n,
            enqueued_ms: 0,
            payload: bytes::Bytes::from(format!("{{\"n\":{n}}}")),
        };
        let mut discarded = 0;
        for n in 0..10 {
            discarded += d.write(&[rec(n)], "refused").unwrap().discarded;
        }
        let fs = files(&path);
        assert_eq!(fs.len(), 3, "{fs:?}");
        assert!(fs[0].ends_with("soc.jsonl.2") && fs[2].ends_with("soc.jsonl"));
        let kept: u64 = fs.iter().map(|f| count_lines(f)).sum();
        assert_eq!(kept + discarded, 10);
        assert!(discarded > 0);
    }
}
