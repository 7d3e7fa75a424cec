//! The durable spool: an ordered queue of opaque byte records in one `redb` file per queue.
//!
//! Records are appended in batches (one ACID transaction, one fsync per batch) and removed only
//! when their consumer confirms them, so a record survives crashes and `SIGKILL` until then.
//! The spool knows nothing of alerts: the forwarder of raw audit batches can use it as is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// Key: sequence number (append order). Value: 8 bytes of enqueue time (ms, big endian), the payload.
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");

/// Size of the metadata stored in front of each payload (counted in [`Spool::bytes`]).
pub const META_LEN: usize = 8;

/// A spool failure: the database file cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool directory cannot be created.
    #[error("spool {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The storage engine refused an operation.
    #[error("spool {path}: {source}")]
    Db {
        /// The database file.
        path: String,
        /// What redb said.
        source: Box<redb::Error>,
    },
    /// The caller's eviction hook failed, so nothing was committed.
    #[error("spool {path}: cannot record evicted records: {message}")]
    Evict {
        /// The database file.
        path: String,
        /// What the hook said.
        message: String,
    },
}

/// One spooled record: its position, when it was enqueued and its opaque payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Sequence number, increasing in append order.
    pub seq: u64,
    /// Time of enqueue, milliseconds since the Unix epoch.
    pub enqueued_ms: u64,
    /// The bytes given to [`Spool::append`].
    pub payload: Bytes,
}

impl Record {
    /// Bytes this record counts against `max_bytes` (payload plus metadata).
    pub fn stored_len(&self) -> u64 {
        stored_len(self.payload.len())
    }
}

/// Bytes a payload of `len` bytes counts against `max_bytes` once spooled.
pub fn stored_len(len: usize) -> u64 {
    (len + META_LEN) as u64
}

/// What an append did.
#[derive(Debug, Default)]
pub struct AppendOutcome {
    /// Records written.
    pub appended: usize,
    /// Records removed to stay under the cap (oldest first), already handed to the hook.
    pub evicted: usize,
    /// The sequence numbers the written records got, in the order given.
    pub seqs: Vec<u64>,
}

/// A durable FIFO of byte records, bounded by a byte cap. Thread-safe; methods block on disk
/// I/O, so call them from `spawn_blocking` in async code.
pub struct Spool {
    /// `None` only while a failed database is being reopened.
    db: RwLock<Option<Database>>,
    /// Set by any storage error: the next operation reopens the database first. redb refuses
    /// every later write after an I/O error ("previous I/O error"), so a full or failing disk
    /// would otherwise wedge the spool for good even once the disk has room again.
    broken: AtomicBool,
    path: PathBuf,
    max_bytes: AtomicU64,
    next_seq: Mutex<u64>,
    bytes: AtomicU64,
    len: AtomicU64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Spool {
    /// Opens (or creates) the spool in directory `dir` (file `spool.redb`), capped at `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("spool.redb");
        let db_err = |e: redb::Error| SpoolError::Db {
            path: path.display().to_string(),
            source: Box::new(e),
        };
        let db = Database::create(&path).map_err(|e| db_err(e.into()))?;
        let (next, bytes, len) = count(&db).map_err(db_err)?;
        Ok(Spool {
            db: RwLock::new(Some(db)),
            broken: AtomicBool::new(false),
            path,
            max_bytes: AtomicU64::new(max_bytes),
            next_seq: Mutex::new(next),
            bytes: AtomicU64::new(bytes),
            len: AtomicU64::new(len),
        })
    }

    /// The database, reopened first if an earlier operation failed.
    fn db(&self) -> Result<RwLockReadGuard<'_, Option<Database>>, SpoolError> {
        if self.broken.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let g = self.db.read().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            return Err(SpoolError::Db {
                path: self.path.display().to_string(),
                source: Box::new(redb::Error::DatabaseAlreadyOpen),
            });
        }
        Ok(g)
    }

    /// Drops the failed database and opens the file again (redb recovers it to its last
    /// committed state), then recounts what it holds.
    fn reopen(&self) -> Result<(), SpoolError> {
        let mut g = self.db.write().unwrap_or_else(|p| p.into_inner());
        if !self.broken.load(Ordering::Acquire) {
            return Ok(());
        }
        *g = None;
        let db = Database::create(&self.path).map_err(|e| self.err(e))?;
        let (next, bytes, len) = count(&db).map_err(|e| self.err(e))?;
        *self.next_seq.lock().unwrap_or_else(|p| p.into_inner()) = next;
        self.bytes.store(bytes, Ordering::Relaxed);
        self.len.store(len, Ordering::Relaxed);
        *g = Some(db);
        self.broken.store(false, Ordering::Release);
        tracing::info!(spool = %self.path.display(), records = len, "spool reopened after a storage error");
        Ok(())
    }

    fn err(&self, e: impl Into<redb::Error>) -> SpoolError {
        self.broken.store(true, Ordering::Release);
        SpoolError::Db {
            path: self.path.display().to_string(),
            source: Box::new(e.into()),
        }
    }

    /// Changes the byte cap; it applies from the next append.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    /// The byte cap in force.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.load(Ordering::Relaxed)
    }

    /// Records waiting.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes waiting (payloads plus metadata; the file itself keeps freed pages for reuse).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Appends `payloads` in one transaction (one fsync). When the cap would be passed, the
    /// oldest records are removed in the same transaction and handed to `evict` first; if
    /// `evict` fails nothing is committed. A single payload larger than the cap is itself
    /// handed to `evict` instead of being stored.
    pub fn append(
        &self,
        payloads: &[Bytes],
        evict: &mut dyn FnMut(&[Record]) -> Result<(), String>,
    ) -> Result<AppendOutcome, SpoolError> {
        // The database before the seq counter: a reopen (inside `db`) resets the counter, and
        // locks are always taken in this order.
        let guard = self.db()?;
        let mut next_seq = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let max_bytes = self.max_bytes.load(Ordering::Relaxed);
        let mut added_bytes = 0u64;
        let mut oversized = Vec::new();
        let mut to_write = Vec::with_capacity(payloads.len());
        for p in payloads {
            let rec = Record {
                seq: 0,
                enqueued_ms: now,
                payload: p.clone(),
            };
            if rec.stored_len() > max_bytes {
                oversized.push(rec);
            } else {
                added_bytes += rec.stored_len();
                to_write.push(rec);
            }
        }
        let current = self.bytes();
        let mut evicted = Vec::new();
        let mut evicted_bytes = 0u64;
        let mut evicted_stored = 0u64;
        let Some(db) = guard.as_ref() else {
            return Err(self.err(redb::Error::DatabaseAlreadyOpen));
        };
        let w = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(RECORDS).map_err(|e| self.err(e))?;
            // Evict the oldest stored records while over the cap.
            if current + added_bytes > max_bytes {
                let mut over = current + added_bytes - max_bytes;
                let mut victims = Vec::new();
                for item in t.iter().map_err(|e| self.err(e))? {
                    if over == 0 {
                        break;
                    }
                    let (k, v) = item.map_err(|e| self.err(e))?;
                    let rec = decode(k.value(), v.value());
                    over = over.saturating_sub(rec.stored_len());
                    victims.push(rec);
                }
                for v in &victims {
                    t.remove(v.seq).map_err(|e| self.err(e))?;
                    evicted_bytes += v.stored_len();
                }
                evicted_stored = victims.len() as u64;
                evicted = victims;
                // Still over (the batch alone is larger than the cap): drop the oldest of the batch.
                let mut remaining = current - evicted_bytes + added_bytes;
                while remaining > max_bytes && !to_write.is_empty() {
                    let r = to_write.remove(0);
                    remaining -= r.stored_len();
                    added_bytes -= r.stored_len();
                    oversized.push(r);
                }
            }
            for rec in &mut to_write {
                rec.seq = *next_seq;
                *next_seq += 1;
                let mut v = Vec::with_capacity(META_LEN + rec.payload.len());
                v.extend_from_slice(&rec.enqueued_ms.to_be_bytes());
                v.extend_from_slice(&rec.payload);
                t.insert(rec.seq, v.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        evicted.extend(oversized);
        if !evicted.is_empty() {
            evict(&evicted).map_err(|message| SpoolError::Evict {
                path: self.path.display().to_string(),
                message,
            })?;
        }
        w.commit().map_err(|e| self.err(e))?;
        self.bytes.fetch_add(added_bytes, Ordering::Relaxed);
        self.bytes.fetch_sub(evicted_bytes, Ordering::Relaxed);
        self.len.fetch_add(to_write.len() as u64, Ordering::Relaxed);
        self.len.fetch_sub(evicted_stored, Ordering::Relaxed);
        Ok(AppendOutcome {
            appended: to_write.len(),
            evicted: evicted.len(),
            seqs: to_write.iter().map(|r| r.seq).collect(),
        })
    }

    /// Up to `max` of the oldest records, oldest first, without removing them.
    pub fn peek(&self, max: usize) -> Result<Vec<Record>, SpoolError> {
        let guard = self.db()?;
        let Some(db) = guard.as_ref() else {
            return Err(self.err(redb::Error::DatabaseAlreadyOpen));
        };
        let r = db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))?.take(max) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push(decode(k.value(), v.value()));
        }
        Ok(out)
    }

    /// Removes the records with these sequence numbers (confirmed or dead-lettered), in one
    /// transaction. Unknown numbers are ignored.
    pub fn remove(&self, seqs: &[u64]) -> Result<(), SpoolError> {
        let guard = self.db()?;
        let Some(db) = guard.as_ref() else {
            return Err(self.err(redb::Error::DatabaseAlreadyOpen));
        };
        let w = db.begin_write().map_err(|e| self.err(e))?;
        let mut freed = 0u64;
        let mut count = 0u64;
        {
            let mut t = w.open_table(RECORDS).map_err(|e| self.err(e))?;
            for s in seqs {
                if let Some(v) = t.remove(*s).map_err(|e| self.err(e))? {
                    freed += v.value().len() as u64;
                    count += 1;
                }
            }
        }
        w.commit().map_err(|e| self.err(e))?;
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        self.len.fetch_sub(count, Ordering::Relaxed);
        Ok(())
    }
}

/// Makes sure the table exists, then counts what it holds: `(next seq, bytes, records)`.
fn count(db: &Database) -> Result<(u64, u64, u64), redb::Error> {
    let w = db.begin_write()?;
    {
        w.open_table(RECORDS)?;
    }
    w.commit()?;
    let r = db.begin_read()?;
    let t = r.open_table(RECORDS)?;
    let mut bytes = 0u64;
    for item in t.iter()? {
        let (_, v) = item?;
        bytes += v.value().len() as u64;
    }
    let next = t.last()?.map(|(k, _)| k.value() + 1).unwrap_or(0);
    Ok((next, bytes, t.len()?))
}

fn decode(seq: u64, v: &[u8]) -> Record {
    let mut ms = [0u8; META_LEN];
    let (meta, payload) = if v.len() >= META_LEN {
        v.split_at(META_LEN)
    } else {
        (&[][..], v)
    };
    if meta.len() == META_LEN {
        ms.copy_from_slice(meta);
    }
    Record {
        seq,
        enqueued_ms: u64::from_be_bytes(ms),
        payload: Bytes::copy_from_slice(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn appends_peeks_removes_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path(), 1 << 20).unwrap();
            s.append(&[b("a"), b("b"), b("c")], &mut |_| Ok(()))
                .unwrap();
            let got = s.peek(2).unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].payload, b("a"));
            s.remove(&[got[0].seq]).unwrap();
            assert_eq!(s.len(), 2);
        }
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.bytes(), 2 * (1 + META_LEN as u64));
        let got = s.peek(10).unwrap();
        assert_eq!(
            got.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            vec![b("b"), b("c")]
        );
        s.append(&[b("d")], &mut |_| Ok(())).unwrap();
        assert!(s.peek(10).unwrap()[2].seq > got[1].seq);
    }

    #[test]
    fn an_append_after_a_storage_error_reopens_and_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Spool::open(dir.path(), 1 << 20).unwrap());
        s.append(&[b("a")], &mut |_| Ok(())).unwrap();
        // What any failed operation leaves behind.
        s.broken.store(true, Ordering::Release);
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = s.clone();
        std::thread::spawn(move || {
            let _ = tx.send(s2.append(&[b("b")], &mut |_| Ok(())).map(|o| o.appended));
        });
        let appended = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the append finished (no lock taken twice during the reopen)");
        assert_eq!(appended.unwrap(), 1);
        let got: Vec<Bytes> = s.peek(10).unwrap().into_iter().map(|r| r.payload).collect();
        assert_eq!(got, vec![b("a"), b("b")]);
    }

    #[test]
    fn cap_evicts_oldest_through_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        // Room for two 10-byte payloads (18 bytes each with metadata).
        let s = Spool::open(dir.path(), 40).unwrap();
        let mut seen = Vec::new();
        for p in ["0000000001", "0000000002", "0000000003"] {
            s.append(&[b(p)], &mut |r| {
                seen.extend(r.iter().map(|r| r.payload.clone()));
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(seen, vec![b("0000000001")]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.bytes(), 36);
        // A failing hook commits nothing.
        let err = s.append(&[b("0000000004")], &mut |_| Err("disk full".into()));
        assert!(err.is_err());
        assert_eq!(s.len(), 2);
        // Larger than the cap on its own: handed to the hook, not stored.
        let mut big = Vec::new();
        s.append(&[Bytes::from(vec![b'x'; 100])], &mut |r| {
            big.extend(r.iter().map(|r| r.payload.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(big, vec![100]);
        assert_eq!(s.len(), 2);
    }
}
