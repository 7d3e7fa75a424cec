//! The on-disk form of one inbox record, and reading a segment back.
//!
//! ```text
//! magic "KAI1" | len: u32 LE (bytes after this 12-byte header) | crc32 of those bytes
//! seq: u64 LE | received_ms: u64 LE | source: u8 len + bytes | content type: u8 len + bytes | body
//! ```
//! A torn write (power loss, SIGKILL mid-write) leaves a record whose length or checksum does not
//! match: reading stops there, and everything before it is intact.

use bytes::Bytes;

/// The marker in front of every record.
pub const MAGIC: &[u8; 4] = b"KAI1";
/// Bytes in front of a record's checked part.
pub const HEADER: usize = 12;
/// A record can never be larger than this (well above any request body kaudit accepts).
pub const MAX_LEN: usize = 1 << 30;

/// One accepted batch as the inbox keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxRecord {
    /// Position in the inbox, increasing in append order.
    pub seq: u64,
    /// When the batch was accepted, milliseconds since the Unix epoch.
    pub received_ms: u64,
    /// The source that accepted it (`webhook`, or a source's name).
    pub source: String,
    /// The batch's content type, as it arrived.
    pub content_type: String,
    /// The batch, byte for byte.
    pub body: Bytes,
}

/// Appends the encoded record but its body to `out` (the body follows it on disk): the writer
/// sends each body from where it already is, without a copy. `body` is read for its length and
/// checksum only.
pub fn encode_head(
    seq: u64,
    received_ms: u64,
    source: &str,
    content_type: &str,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    let source = clip(source);
    let content_type = clip(content_type);
    let len = 8 + 8 + 1 + source.len() + 1 + content_type.len() + body.len();
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&received_ms.to_le_bytes());
    out.push(source.len() as u8);
    out.extend_from_slice(source);
    out.push(content_type.len() as u8);
    out.extend_from_slice(content_type);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start + HEADER..]);
    crc.update(body);
    out[start + 8..start + 12].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// At most 255 bytes, cut at a character boundary.
fn clip(s: &str) -> &[u8] {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

/// Decodes the record at the start of `buf`; `None` when `buf` does not start with a whole,
/// intact record. Returns the record and its encoded length.
pub fn decode(buf: &[u8]) -> Option<(InboxRecord, usize)> {
    let rest = checked(buf)?;
    let len = rest.len();
    let seq = u64::from_le_bytes(rest[0..8].try_into().ok()?);
    let received_ms = u64::from_le_bytes(rest[8..16].try_into().ok()?);
    let mut at = 16;
    let text = |at: &mut usize| -> Option<String> {
        let n = *rest.get(*at)? as usize;
        let s = rest.get(*at + 1..*at + 1 + n)?;
        *at += 1 + n;
        Some(String::from_utf8_lossy(s).into_owned())
    };
    let source = text(&mut at)?;
    let content_type = text(&mut at)?;
    let body = Bytes::copy_from_slice(rest.get(at..)?);
    Some((
        InboxRecord {
            seq,
            received_ms,
            source,
            content_type,
            body,
        },
        HEADER + len,
    ))
}

/// True when `buf` starts with a whole, intact record (of any seq), without building it.
pub fn starts_intact(buf: &[u8]) -> bool {
    checked(buf).is_some()
}

/// The checked part of the record at the start of `buf`, when it is whole and its checksum
/// matches.
fn checked(buf: &[u8]) -> Option<&[u8]> {
    if buf.len() < HEADER || &buf[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(buf[4..8].try_into().ok()?) as usize;
    if len > MAX_LEN || buf.len() < HEADER + len || len < 18 {
        return None;
    }
    let crc = u32::from_le_bytes(buf[8..12].try_into().ok()?);
    let rest = &buf[HEADER..HEADER + len];
    (crc32fast::hash(rest) == crc).then_some(rest)
}

/// Reads the intact records of the segment whose first seq is `first` in order:
/// `(record, offset, encoded length)`, and the offset where they end. Records must carry
/// consecutive seqs from `first`: a reused segment file ([`super`]'s spare) still holds an
/// earlier run's records past the newest ones, intact but with older seqs, and reading stops
/// at them as it stops at a torn tail.
pub fn scan(buf: &[u8], first: u64) -> (Vec<(InboxRecord, u64, usize)>, u64) {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut expected = first;
    while let Some((r, n)) = decode(&buf[at..]) {
        if r.seq != expected {
            break;
        }
        expected += 1;
        out.push((r, at as u64, n));
        at += n;
    }
    (out, at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole record.
    fn encode(
        seq: u64,
        received_ms: u64,
        source: &str,
        content_type: &str,
        body: &[u8],
        out: &mut Vec<u8>,
    ) {
        encode_head(seq, received_ms, source, content_type, body, out);
        out.extend_from_slice(body);
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let mut buf = Vec::new();
        encode(7, 99, "webhook", "application/json", b"{\"a\":1}", &mut buf);
        encode(8, 100, "file", "", b"[]", &mut buf);
        let whole = buf.len();
        encode(9, 101, "x", "y", b"torn", &mut buf);
        buf.truncate(buf.len() - 2);
        let (recs, end) = scan(&buf, 7);
        assert_eq!(recs.len(), 2);
        assert_eq!(end as usize, whole);
        assert_eq!(recs[0].0.seq, 7);
        assert_eq!(recs[0].0.source, "webhook");
        assert_eq!(&recs[1].0.body[..], b"[]");
        // A flipped bit is caught by the checksum.
        let mut bad = buf.clone();
        bad[HEADER + 20] ^= 1;
        assert_eq!(scan(&bad, 7).0.len(), 0);
    }

    #[test]
    fn an_earlier_runs_records_past_the_newest_are_not_read() {
        // A reused file: seqs 3-5 of before, overwritten from the start by 10 and 11.
        let mut old = Vec::new();
        for seq in 3..6 {
            encode(seq, 0, "w", "", b"old", &mut old);
        }
        let mut buf = Vec::new();
        encode(10, 0, "w", "", b"new", &mut buf);
        encode(11, 0, "w", "", b"new", &mut buf);
        let end = buf.len();
        buf.extend_from_slice(&old[end..]);
        let (recs, at) = scan(&buf, 10);
        assert_eq!(recs.iter().map(|r| r.0.seq).collect::<Vec<_>>(), [10, 11]);
        assert_eq!(at as usize, end);
        // Not a byte of it is this segment's when its first record is an old one.
        assert!(scan(&old, 10).0.is_empty());
    }

    #[test]
    fn long_names_are_clipped_at_a_char_boundary() {
        let mut buf = Vec::new();
        let name = "é".repeat(200);
        encode(1, 0, &name, "", b"", &mut buf);
        let (r, _) = decode(&buf).unwrap();
        assert!(r.source.len() <= 255 && name.starts_with(&r.source));
    }
}
