//! Following a growing file of lines (Falco's JSON output, kube-apiserver's audit log) across
//! rotation by rename, rotation by copytruncate, and restarts.
//!
//! A [`Follower`] hands out complete lines only (a partial last line waits for its newline), in
//! [`Chunk`]s that each end at a [`Position`]: the caller saves that position once the chunk's
//! lines are durable, and a restart resumes exactly there. A renamed-away file is finished
//! before the new one is started, including when the rename happened while kaudit was down.
//!
//! A file is identified by its device, inode and *fingerprint*: a checksum of its first line.
//! Copytruncate keeps the inode but starts a new first line, and a reused inode brings another
//! file's first line, so neither is mistaken for the file the position was saved in; and a line's
//! identity (fingerprint, offset) is the same every time it is read, so ids derived from it
//! repeat exactly when the line is the same line.
//!
//! [`Follower::with_rotated`] also reads the rotated files beside the path (kube-apiserver's
//! `audit-<time>.log`, logrotate's `audit.log.1`), oldest first, before the path itself: all of
//! them on a first start from the beginning ([`StartAt::Beginning`]), or only those after the
//! saved position on a restart, so several rotations while kaudit was down lose nothing.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a follower stands: which file, and the offset after the last line handed on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// Checksum of the file's first line (0: not known yet).
    #[serde(default)]
    pub fingerprint: u64,
    /// Bytes consumed.
    pub offset: u64,
}

impl Position {
    /// Reads a saved position; a missing or unreadable one means "start at the top".
    pub fn load(path: &Path) -> Option<Position> {
        let text = std::fs::read_to_string(path).ok()?;
        match serde_json::from_str(&text) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable position file");
                None
            }
        }
    }

    /// Writes the position atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
        std::fs::rename(tmp, path)
    }
}

/// One complete line and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Offset of its first byte.
    pub offset: u64,
    /// The line, without its newline.
    pub text: Vec<u8>,
}

/// Lines read from one file in one go, and the position after them.
#[derive(Clone, Debug)]
pub struct Chunk {
    /// The lines, in file order.
    pub lines: Vec<Line>,
    /// Save this once the lines are durable.
    pub end: Position,
}

impl Chunk {
    /// The fingerprint of the file these lines come from.
    pub fn fingerprint(&self) -> u64 {
        self.end.fingerprint
    }
}

/// Something a poll noticed besides lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// The file was renamed away and a new one is followed.
    Rotated,
    /// The file shrank (copytruncate): reading starts again from the top.
    Truncated,
    /// A rotated-away file ended without a newline: that many bytes were dropped.
    DroppedPartial(usize),
    /// The file could not be read.
    Error(String),
}

/// Where a follower without a saved position starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// At the top of the file (and of the rotated files beside it, oldest first).
    #[default]
    Beginning,
    /// After the last complete line of the file: only what is written from now on.
    End,
}

/// Longest first line looked at for the fingerprint.
const FINGERPRINT_SPAN: usize = 64 * 1024;

/// The fingerprint of the file's first line, or 0 while it has no complete first line.
fn fingerprint(file: &File) -> u64 {
    let mut buf = vec![0u8; FINGERPRINT_SPAN];
    let n = match file.read_at(&mut buf, 0) {
        Ok(n) => n,
        Err(_) => return 0,
    };
    let head = &buf[..n];
    let line = match head.iter().position(|b| *b == b'\n') {
        Some(nl) => &head[..nl],
        None if n == FINGERPRINT_SPAN => head,
        None => return 0,
    };
    (u64::from(crc32fast::hash(line)) << 32) | (line.len() as u64 & 0xffff_ffff) | 1 << 63
}

/// An open file being followed.
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    fingerprint: u64,
    /// Offset after the last complete line handed on.
    offset: u64,
    /// Bytes read past `offset` that do not end in a newline yet.
    partial: Vec<u8>,
}

impl OpenFile {
    fn open(path: &Path, offset: u64) -> std::io::Result<OpenFile> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let offset = if meta.len() >= offset { offset } else { 0 };
        file.seek(SeekFrom::Start(offset))?;
        let fingerprint = fingerprint(&file);
        Ok(OpenFile {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint,
            offset,
            partial: Vec::new(),
        })
    }

    /// Opens `path` after its last complete line.
    fn open_at_end(path: &Path) -> std::io::Result<OpenFile> {
        let len = std::fs::metadata(path)?.len();
        let file = File::open(path)?;
        let end = last_line_end(&file, len)?;
        drop(file);
        OpenFile::open(path, end)
    }

    fn position(&self) -> Position {
        Position {
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fingerprint,
            offset: self.offset,
        }
    }

    /// Reads up to `max` new bytes and returns the complete lines among them.
    fn read_lines(&mut self, max: usize) -> std::io::Result<Vec<Line>> {
        let mut buf = Vec::new();
        (&mut self.file).take(max as u64).read_to_end(&mut buf)?;
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        let mut start = 0usize;
        while let Some(nl) = self.partial[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl;
            lines.push(Line {
                offset: self.offset + start as u64,
                text: self.partial[start..end].to_vec(),
            });
            start = end + 1;
        }
        self.partial.drain(..start);
        self.offset += start as u64;
        if self.fingerprint == 0 && !lines.is_empty() {
            self.fingerprint = fingerprint(&self.file);
        }
        Ok(lines)
    }

    /// True when `path` no longer names this file (renamed away, or replaced).
    fn rotated_away(&self, path: &Path) -> bool {
        match std::fs::metadata(path) {
            Ok(m) => m.ino() != self.ino || m.dev() != self.dev,
            Err(_) => true,
        }
    }

    /// True when the file shrank below what was consumed, or its first line changed
    /// (copytruncate followed by enough new writes to grow past the old offset).
    fn truncated(&self) -> bool {
        let shrank = self
            .file
            .metadata()
            .map(|m| m.len() < self.offset + self.partial.len() as u64)
            .unwrap_or(false);
        shrank || (self.fingerprint != 0 && fingerprint(&self.file) != self.fingerprint)
    }

    fn restart(&mut self) -> std::io::Result<()> {
        self.offset = 0;
        self.partial.clear();
        self.file.seek(SeekFrom::Start(0))?;
        self.fingerprint = fingerprint(&self.file);
        Ok(())
    }
}

/// The offset just after the last newline below `len` (0 when there is none).
fn last_line_end(file: &File, len: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let n = (end - start) as usize;
        file.read_exact_at(&mut buf[..n], start)?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The rotated files of `path` in its directory, oldest first (by modification time, then
/// name): regular files whose name starts with the file's stem (`audit` for `audit.log`),
/// other than the file itself; compressed ones (`.gz`) are left out.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (Some(name), Some(stem)) = (path.file_name(), path.file_stem()) else {
        return Vec::new();
    };
    let (name, stem) = (name.to_string_lossy(), stem.to_string_lossy());
    let current = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let m = e.metadata().ok()?;
            let wanted = n != *name
                && n.starts_with(&*stem)
                && !n.ends_with(".gz")
                && m.is_file()
                && current != Some((m.dev(), m.ino()));
            if wanted {
                Some((m.modified().ok()?, n, e.path()))
            } else {
                None
            }
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, _, p)| p).collect()
}

/// Finds a file in `path`'s directory with the given identity (a rotated-away file).
fn find_rotated(path: &Path, pos: &Position) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.ino() == pos.ino && m.dev() == pos.dev)
                .unwrap_or(false)
        })
}

/// Follows the file at a path; see the module docs.
pub struct Follower {
    path: PathBuf,
    current: Option<OpenFile>,
    resume: Option<Position>,
    /// Read the rotated files beside the path ([`Follower::with_rotated`]).
    rotated: bool,
    start: StartAt,
    /// Rotated files still to read before the path, oldest first; the head is open.
    backlog: std::collections::VecDeque<PathBuf>,
    backlog_file: Option<OpenFile>,
    planned: bool,
}

impl Follower {
    /// Follows `path`, resuming at `resume` when it still describes the file (or a file renamed
    /// away from the path, which is finished first).
    pub fn new(path: PathBuf, resume: Option<Position>) -> Follower {
        Follower {
            path,
            current: None,
            resume,
            rotated: false,
            start: StartAt::Beginning,
            backlog: Default::default(),
            backlog_file: None,
            planned: false,
        }
    }

    /// Follows `path` and reads its rotated files too (see the module docs). Without a saved
    /// position, `start` says whether everything there is read or only what comes next.
    pub fn with_rotated(path: PathBuf, resume: Option<Position>, start: StartAt) -> Follower {
        Follower {
            rotated: true,
            start,
            ..Follower::new(path, resume)
        }
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what is new, at most about `max_bytes` per file: chunks in order (a renamed-away
    /// file's last lines before the new file's), and what else it noticed. Returns no chunks when
    /// nothing is new or the file does not exist yet.
    pub fn poll(&mut self, max_bytes: usize) -> (Vec<Chunk>, Vec<Note>) {
        let mut chunks = Vec::new();
        let mut notes = Vec::new();
        if self.rotated && !self.planned {
            self.planned = true;
            self.plan_backlog(&mut notes);
        }
        if self.read_backlog(max_bytes, &mut chunks, &mut notes) {
            return (chunks, notes);
        }
        if self.current.is_none() {
            self.open_current(max_bytes, &mut chunks, &mut notes);
        }
        let Some(cur) = self.current.as_mut() else {
            return (chunks, notes);
        };
        if cur.truncated() {
            notes.push(Note::Truncated);
            if let Err(e) = cur.restart() {
                notes.push(Note::Error(e.to_string()));
            }
        }
        read_chunk(cur, max_bytes, &mut chunks, &mut notes);
        let rotated = self
            .current
            .as_ref()
            .is_some_and(|c| c.rotated_away(&self.path));
        if rotated {
            // Finish the old file: the writer may have added lines just before the rename.
            if let Some(mut old) = self.current.take() {
                while read_chunk(&mut old, max_bytes, &mut chunks, &mut notes) {}
                if !old.partial.is_empty() {
                    notes.push(Note::DroppedPartial(old.partial.len()));
                }
            }
            notes.push(Note::Rotated);
            self.open_at(0, &mut notes);
            if let Some(new) = self.current.as_mut() {
                read_chunk(new, max_bytes, &mut chunks, &mut notes);
            }
        }
        (chunks, notes)
    }

    /// Decides which rotated files to read before the path: every one on a first start from
    /// the beginning; after a restart, the saved file (when it was rotated away) and every one
    /// rotated after it.
    fn plan_backlog(&mut self, notes: &mut Vec<Note>) {
        let files = rotated_files(&self.path);
        match self.resume {
            None if self.start == StartAt::Beginning => {
                self.backlog = files.into();
                // Held open now: a rotation while the backlog is read renames it, and the
                // rename is then followed as usual.
                self.open_at(0, notes);
            }
            None => {
                // From the end: only what is written from now on.
                match OpenFile::open_at_end(&self.path) {
                    Ok(o) => self.current = Some(o),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => notes.push(Note::Error(e.to_string())),
                }
            }
            Some(pos) => {
                let same = |p: &PathBuf| {
                    std::fs::metadata(p).is_ok_and(|m| m.ino() == pos.ino && m.dev() == pos.dev)
                };
                if let Some(i) = files.iter().position(same) {
                    match OpenFile::open(&files[i], pos.offset) {
                        Ok(o) if pos.fingerprint == 0 || o.fingerprint == pos.fingerprint => {
                            self.resume = None;
                            self.backlog_file = Some(o);
                            self.backlog = files[i + 1..].to_vec().into();
                            self.open_at(0, notes);
                        }
                        Ok(_) => {}
                        Err(e) => notes.push(Note::Error(e.to_string())),
                    }
                }
            }
        }
    }

    /// Reads one chunk of the rotated files waiting; true when it found lines (the path is not
    /// read before the backlog is done).
    fn read_backlog(
        &mut self,
        max_bytes: usize,
        chunks: &mut Vec<Chunk>,
        notes: &mut Vec<Note>,
    ) -> bool {
        loop {
            if self.backlog_file.is_none() {
                let Some(next) = self.backlog.pop_front() else {
                    return false;
                };
                match OpenFile::open(&next, 0) {
                    Ok(o) => self.backlog_file = Some(o),
                    Err(e) => {
                        notes.push(Note::Error(format!("{}: {e}", next.display())));
                        continue;
                    }
                }
            }
            let Some(f) = self.backlog_file.as_mut() else {
                return false;
            };
            if read_chunk(f, max_bytes, chunks, notes) {
                return true;
            }
            // Done with this file; the next one (or the path) starts at its top.
            if let Some(done) = self.backlog_file.take() {
                if !done.partial.is_empty() {
                    notes.push(Note::DroppedPartial(done.partial.len()));
                }
                notes.push(Note::Rotated);
            }
            if self.backlog.is_empty() {
                return false;
            }
        }
    }

    /// Opens the file the path names, resuming from the saved position when it is the same
    /// file; when the saved file was renamed away meanwhile, finishes it first.
    fn open_current(&mut self, max_bytes: usize, chunks: &mut Vec<Chunk>, notes: &mut Vec<Note>) {
        let resume = self.resume.take();
        let Ok(meta) = std::fs::metadata(&self.path) else {
            self.resume = resume;
            return;
        };
        if let Some(pos) = resume {
            if meta.ino() == pos.ino && meta.dev() == pos.dev {
                match OpenFile::open(&self.path, pos.offset) {
                    Ok(o) if pos.fingerprint == 0 || o.fingerprint == pos.fingerprint => {
                        self.current = Some(o);
                        return;
                    }
                    // Same inode, another first line: truncated or replaced while we were down.
                    Ok(_) => notes.push(Note::Truncated),
                    Err(e) => notes.push(Note::Error(e.to_string())),
                }
            } else if let Some(old) = find_rotated(&self.path, &pos) {
                match OpenFile::open(&old, pos.offset) {
                    Ok(mut o) if pos.fingerprint == 0 || o.fingerprint == pos.fingerprint => {
                        while read_chunk(&mut o, max_bytes, chunks, notes) {}
                        notes.push(Note::Rotated);
                    }
                    Ok(_) => {}
                    Err(e) => notes.push(Note::Error(e.to_string())),
                }
            }
        }
        self.open_at(0, notes);
    }

    fn open_at(&mut self, offset: u64, notes: &mut Vec<Note>) {
        match OpenFile::open(&self.path, offset) {
            Ok(o) => self.current = Some(o),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => notes.push(Note::Error(e.to_string())),
        }
    }
}

/// Reads one chunk from `f`; true when it found lines (there may be more).
fn read_chunk(
    f: &mut OpenFile,
    max: usize,
    chunks: &mut Vec<Chunk>,
    notes: &mut Vec<Note>,
) -> bool {
    match f.read_lines(max) {
        Ok(lines) if lines.is_empty() => false,
        Ok(lines) => {
            chunks.push(Chunk {
                lines,
                end: f.position(),
            });
            true
        }
        Err(e) => {
            notes.push(Note::Error(e.to_string()));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(p: &Path, s: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    fn texts(chunks: &[Chunk]) -> Vec<String> {
        chunks
            .iter()
            .flat_map(|c| c.lines.iter())
            .map(|l| String::from_utf8(l.text.clone()).unwrap())
            .collect()
    }

    #[test]
    fn lines_rotation_truncation_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut f = Follower::new(p.clone(), None);
        assert!(f.poll(1 << 20).0.is_empty(), "no file yet");
        append(&p, "a\nb\npart");
        let (c, _) = f.poll(1 << 20);
        assert_eq!(texts(&c), ["a", "b"]);
        let first_fp = c[0].fingerprint();
        assert_ne!(first_fp, 0);
        append(&p, "ial\n");
        let (c, _) = f.poll(1 << 20);
        assert_eq!(texts(&c), ["partial"]);
        let saved = c.last().unwrap().end;
        // copytruncate: same inode, new first line, new fingerprint.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        append(&p, "c\n");
        let (c, notes) = f.poll(1 << 20);
        assert!(notes.contains(&Note::Truncated), "{notes:?}");
        assert_eq!(texts(&c), ["c"]);
        assert_ne!(c[0].fingerprint(), first_fp);
        assert_eq!(c[0].lines[0].offset, 0);
        // A restart from the pre-truncation position sees the new first line and starts over.
        let mut g = Follower::new(p.clone(), Some(saved));
        assert_eq!(texts(&g.poll(1 << 20).0), ["c"]);
        // Rename rotation: the old file's last line comes first.
        append(&p, "d\n");
        std::fs::rename(&p, dir.path().join("log.1")).unwrap();
        append(&p, "e\n");
        let (c, notes) = f.poll(1 << 20);
        assert!(notes.contains(&Note::Rotated), "{notes:?}");
        assert_eq!(texts(&c), ["d", "e"]);
    }

    #[test]
    fn a_reread_file_keeps_its_fingerprint_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        append(&p, "x\ny\n");
        let a = Follower::new(p.clone(), None).poll(1 << 20).0;
        let b = Follower::new(p.clone(), None).poll(1 << 20).0;
        assert_eq!(a[0].fingerprint(), b[0].fingerprint());
        assert_eq!(a[0].lines, b[0].lines);
    }

    #[test]
    fn rotated_files_first_then_the_path_and_resume_inside_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        let old1 = dir.path().join("audit-2026-01-01T00-00-00.000.log");
        let old2 = dir.path().join("audit-2026-01-01T00-00-01.000.log");
        append(&old1, "1\n2\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        append(&old2, "3\n");
        std::thread::sleep(std::time::Duration::from_millis(20));
        append(&p, "4\n5");
        append(&dir.path().join("audit-old.log.gz"), "zz\n");
        append(&dir.path().join("other.log"), "x\n");
        assert_eq!(rotated_files(&p), [old1.clone(), old2.clone()]);
        let mut f = Follower::with_rotated(p.clone(), None, StartAt::Beginning);
        let mut all = Vec::new();
        let mut first = None;
        loop {
            let (c, _) = f.poll(2);
            if c.is_empty() {
                break;
            }
            first.get_or_insert(c[0].end);
            all.extend(texts(&c));
        }
        assert_eq!(all, ["1", "2", "3", "4"]);
        // A restart saved after "1" resumes inside the first rotated file.
        let mut g = Follower::with_rotated(p.clone(), first, StartAt::Beginning);
        let mut again = Vec::new();
        loop {
            let (c, _) = g.poll(1 << 20);
            if c.is_empty() {
                break;
            }
            again.extend(texts(&c));
        }
        assert_eq!(again, ["2", "3", "4"]);
        // From the end: only lines completed from now on (the partial "5" included).
        let mut h = Follower::with_rotated(p.clone(), None, StartAt::End);
        assert!(h.poll(1 << 20).0.is_empty());
        append(&p, "\n6\n");
        assert_eq!(texts(&h.poll(1 << 20).0), ["5", "6"]);
    }
}
