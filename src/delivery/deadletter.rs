//! Per-destination dead-letter files: one JSON object per line with the record, the reason and
//! the time, appended and fsynced before the record leaves the spool.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;

use super::Record;

/// Appends refused records to `<data_dir>/dead-letter/<name>.jsonl`.
pub struct DeadLetters {
    path: PathBuf,
    sink: String,
    field: &'static str,
    lock: Mutex<()>,
}

impl DeadLetters {
    /// Dead letters of `sink` in `path`; each record's payload goes under key `field`
    /// (as JSON when it is JSON, else as a string).
    pub fn new(path: PathBuf, sink: &str, field: &'static str) -> Self {
        DeadLetters {
            path,
            sink: sink.to_string(),
            field,
            lock: Mutex::new(()),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line per record, then fsyncs. Blocking.
    pub fn write(&self, records: &[Record], reason: &str) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
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
        f.sync_data()
    }
}
