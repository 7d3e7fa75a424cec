//! Which sequence numbers are done: the highest `w` such that every seq up to `w` is done, plus
//! the done ones above it. Work completes out of order; only the contiguous part lets files go.

use std::collections::BTreeSet;

/// Contiguous completion of sequence numbers starting after `done_through`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watermark {
    done_through: u64,
    above: BTreeSet<u64>,
}

impl Watermark {
    /// Every seq up to and including `done_through` is done.
    pub fn new(done_through: u64) -> Watermark {
        Watermark {
            done_through,
            above: BTreeSet::new(),
        }
    }

    /// Marks `seq` done; returns true when the contiguous mark moved.
    pub fn complete(&mut self, seq: u64) -> bool {
        if seq <= self.done_through {
            return false;
        }
        self.above.insert(seq);
        let before = self.done_through;
        while self.above.remove(&(self.done_through + 1)) {
            self.done_through += 1;
        }
        self.done_through != before
    }

    /// The highest seq such that it and every seq below it are done.
    pub fn done_through(&self) -> u64 {
        self.done_through
    }

    /// True when `seq` is done.
    pub fn is_done(&self, seq: u64) -> bool {
        seq <= self.done_through || self.above.contains(&seq)
    }

    /// Done seqs above the contiguous mark (work that finished ahead of older work).
    pub fn ahead(&self) -> usize {
        self.above.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_only_over_contiguous_runs() {
        let mut w = Watermark::new(10);
        assert!(!w.complete(12));
        assert!(!w.complete(5));
        assert_eq!(w.done_through(), 10);
        assert!(w.is_done(12) && !w.is_done(11));
        assert!(w.complete(11));
        assert_eq!(w.done_through(), 12);
        assert_eq!(w.ahead(), 0);
    }
}
