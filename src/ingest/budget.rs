//! The memory budget of request bodies in flight: a body's bytes are reserved (from its
//! `Content-Length`, or the body limit when it has none) before any of it is read, and given
//! back when the request ends. Memory then stays bounded however many clients send at once.

use axum::http::{HeaderMap, header};

use crate::memory;

/// Bytes that request bodies may hold at once.
#[derive(Clone)]
pub struct Budget(memory::Budget);

/// Reserved bytes; given back on drop.
pub type Reserved = memory::Reserved;

impl Budget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: usize) -> Budget {
        Budget(memory::Budget::new(bytes.max(1024)))
    }

    /// Reserves room for the body the headers announce (at most `limit`), or `None` when the
    /// budget is taken.
    pub fn reserve(&self, headers: &HeaderMap, limit: usize) -> Option<Reserved> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(limit)
            .min(limit);
        self.0.try_reserve(declared.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_until_the_budget_is_taken() {
        let b = Budget::new(10 * 1024);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "6000".parse().unwrap());
        let first = b.reserve(&h, 1 << 20).unwrap();
        assert!(b.reserve(&h, 1 << 20).is_none());
        drop(first);
        assert!(b.reserve(&h, 1 << 20).is_some());
        // No Content-Length: the limit is reserved.
        assert!(b.reserve(&HeaderMap::new(), 20 * 1024).is_none());
    }
}
