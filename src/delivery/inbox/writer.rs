//! The writer thread: takes appends in groups, writes each group to the active segment with one
//! fdatasync, and answers every append of the group once it is on disk.

use std::fs::File;
use std::io::{IoSlice, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{
    Admitted, Carried, Entry, InboxError, InboxRecord, ReasonLabel, Segment, Shared, record,
    segment_path,
};

/// One batch to append, and where to say how it went.
pub(super) struct Append {
    pub(super) source: String,
    pub(super) content_type: String,
    pub(super) body: Bytes,
    pub(super) received_ms: u64,
    /// The alerts detection takes from memory with the record, when the budget had room.
    pub(super) carried: Option<Admitted>,
    pub(super) reply: oneshot::Sender<Result<u64, InboxError>>,
}

/// The segment being written.
struct Active {
    file: File,
    path: Arc<PathBuf>,
    first_seq: u64,
    offset: u64,
}

/// Largest group written at once.
const GROUP_BYTES: usize = 32 * 1024 * 1024;

pub(super) fn writer_loop(
    mut rx: mpsc::UnboundedReceiver<Append>,
    shared: Arc<Shared>,
    mut next_seq: u64,
    entries: mpsc::UnboundedSender<(Entry, Option<Carried>)>,
) {
    let mut active: Option<Active> = None;
    let mut buf = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut size = group[0].body.len();
        while size < GROUP_BYTES {
            match rx.try_recv() {
                Ok(a) => {
                    size += a.body.len();
                    group.push(a);
                }
                Err(_) => break,
            }
        }
        // Room: bytes on disk, counting this group as it goes.
        let mut disk = shared.disk_bytes.load(Ordering::Acquire);
        let mut take = Vec::with_capacity(group.len());
        for a in group {
            let need = a.body.len() as u64 + 600;
            let full = if disk + need > shared.cfg.max_bytes {
                Some(format!(
                    "{disk} of inbox.max_bytes {} bytes in use",
                    shared.cfg.max_bytes
                ))
            } else {
                None
            };
            match full {
                Some(what) => {
                    shared
                        .metrics
                        .refused
                        .get_or_create(&ReasonLabel { reason: "full" })
                        .inc();
                    let _ = a.reply.send(Err(InboxError::Full { what }));
                }
                None => {
                    disk += need;
                    take.push(a);
                }
            }
        }
        if take.is_empty() {
            continue;
        }
        if active.is_none() {
            match open_segment(&shared, next_seq) {
                Ok(a) => active = Some(a),
                Err(e) => {
                    fail_group(&shared, take, &e);
                    continue;
                }
            }
        }
        let Some(seg) = active.as_mut() else { continue };
        buf.clear();
        // Each record's head goes to `buf`; its body is written from where it is.
        let mut heads = Vec::with_capacity(take.len());
        let mut placed = Vec::with_capacity(take.len());
        let mut at = seg.offset;
        for a in &take {
            let seq = next_seq;
            next_seq += 1;
            let from = buf.len();
            record::encode_head(
                seq,
                a.received_ms,
                &a.source,
                &a.content_type,
                &a.body,
                &mut buf,
            );
            heads.push(from..buf.len());
            let len = buf.len() - from + a.body.len();
            placed.push((seq, at, len));
            at += len as u64;
        }
        let group_len = (at - seg.offset) as usize;
        let mut slices: Vec<IoSlice<'_>> = heads
            .iter()
            .zip(&take)
            .flat_map(|(h, a)| [IoSlice::new(&buf[h.clone()]), IoSlice::new(&a.body)])
            .collect();
        let started = Instant::now();
        let written =
            write_all_vectored(&mut seg.file, &mut slices).and_then(|()| seg.file.sync_data());
        drop(slices);
        match written {
            Ok(()) => {
                shared
                    .metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                shared.metrics.group_batches.observe(take.len() as f64);
                seg.offset += group_len as u64;
                let last = next_seq - 1;
                {
                    let mut st = shared.lock();
                    st.pending += take.len() as u64;
                    shared.metrics.pending.set(st.pending as i64);
                    if let Some(s) = st.segments.get_mut(&seg.first_seq) {
                        s.last_seq = last;
                        s.bytes = seg.offset;
                    }
                }
                let disk = shared
                    .disk_bytes
                    .fetch_add(group_len as u64, Ordering::AcqRel)
                    + group_len as u64;
                shared.metrics.disk_bytes.set(disk as i64);
                shared.metrics.appended.inc_by(take.len() as u64);
                shared.metrics.appended_bytes.inc_by(group_len as u64);
                shared.set_faulted(false, "");
                for (a, (seq, offset, len)) in take.into_iter().zip(placed) {
                    let entry = Entry {
                        seq,
                        path: seg.path.clone(),
                        offset,
                        len,
                        attempt: 0,
                    };
                    let carried = a.carried.map(|c| {
                        c.with_record(InboxRecord {
                            seq,
                            received_ms: a.received_ms,
                            source: a.source,
                            content_type: a.content_type,
                            body: a.body,
                        })
                    });
                    let _ = entries.send((entry, carried));
                    let _ = a.reply.send(Ok(seq));
                }
                if seg.offset >= shared.cfg.segment_bytes {
                    seal(&shared, active.take());
                }
            }
            Err(e) => {
                tracing::error!(dir = %shared.dir.display(), error = %e, batches = take.len(), "inbox write failed; refusing these batches and starting a new segment");
                // Whatever part of the group reached the file is cut off; if that fails too,
                // a restart may replay some of it (at-least-once), never lose an accepted one.
                let _ = seg.file.set_len(seg.offset);
                let burned: Vec<u64> = placed.iter().map(|p| p.0).collect();
                fail_group(&shared, take, &shared.storage_error(&e));
                {
                    // Nothing will ever complete the seqs of the refused group.
                    let mut st = shared.lock();
                    for s in burned {
                        st.watermark.complete(s);
                    }
                }
                seal(&shared, active.take());
                shared.janitor.notify_one();
            }
        }
    }
    seal(&shared, active.take());
}

/// Writes every slice whole: `write_vectored` may take part of them (and at most `IOV_MAX`).
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn fail_group(shared: &Shared, group: Vec<Append>, e: &InboxError) {
    let why = e.to_string();
    shared.set_faulted(true, &why);
    for a in group {
        shared
            .metrics
            .refused
            .get_or_create(&ReasonLabel { reason: "storage" })
            .inc();
        let _ = a.reply.send(Err(e.clone()));
    }
}

fn open_segment(shared: &Shared, first_seq: u64) -> Result<Active, InboxError> {
    let path = segment_path(&shared.dir, first_seq);
    // The spare is written over from its start: what lies past the new records is an earlier
    // run's, and reading stops at the first record out of sequence.
    let reused = shared.take_spare(&path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(!reused)
        .open(&path)
        .map_err(|e| shared.storage_error(format!("cannot create {}: {e}", path.display())))?;
    // The new file's directory entry must survive a crash too.
    if let Ok(d) = File::open(&shared.dir) {
        let _ = d.sync_all();
    }
    shared.lock().segments.insert(
        first_seq,
        Segment {
            path: path.clone(),
            last_seq: first_seq - 1,
            bytes: 0,
            active: true,
        },
    );
    Ok(Active {
        file,
        path: Arc::new(path),
        first_seq,
        offset: 0,
    })
}

/// Marks a segment written; an empty one is deleted at once.
fn seal(shared: &Shared, seg: Option<Active>) {
    let Some(seg) = seg else { return };
    let mut st = shared.lock();
    if seg.offset == 0 {
        st.segments.remove(&seg.first_seq);
        drop(st);
        let _ = std::fs::remove_file(seg.path.as_ref());
        return;
    }
    if let Some(s) = st.segments.get_mut(&seg.first_seq) {
        s.active = false;
    }
    drop(st);
    shared.janitor.notify_one();
}
