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
}

impl Follower {
    /// Follows `path`, resuming at `resume` when it still describes the file (or a file renamed
    /// away from the path, which is finished first).
    pub fn new(path: PathBuf, resume: Option<Position>) -> Follower {
        Follower {
            path,
            current: None,
            resume,
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
}
