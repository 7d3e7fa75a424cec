//! The rules files' text: names, line starts, and mapping a place inside a condition back to
//! the file's line and column.

use std::sync::Arc;

use super::report::{Diagnostic, Loc};
use crate::rules::yaml::Pos;

/// The place of a YAML node in a file.
pub(super) fn loc(file: &Arc<str>, p: Pos) -> Loc {
    Loc {
        file: file.clone(),
        line: p.line,
        col: p.col,
    }
}

/// One rules file.
pub(super) struct Source<'a> {
    /// The name it is reported under.
    pub(super) name: Arc<str>,
    /// Its text.
    pub(super) text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(super) fn new(name: &str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            name: Arc::from(name),
            text,
            line_starts,
        }
    }

    /// Best effort: the file position of the text at `offset` in a condition that starts at
    /// `start`. Finds the token at the offset in the file after the condition's start.
    pub(super) fn locate(&self, start: &Loc, cond: &str, offset: usize) -> Loc {
        let tok: String = cond
            .get(offset..)
            .unwrap_or("")
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(40)
            .collect();
        if tok.is_empty() {
            return start.clone();
        }
        let Some(&ls) = self.line_starts.get(start.line.saturating_sub(1)) else {
            return start.clone();
        };
        let from = self.text[ls..]
            .char_indices()
            .nth(start.col.saturating_sub(1))
            .map(|(i, _)| ls + i)
            .unwrap_or(ls);
        // Occurrences of the token before `offset` in the condition are skipped in the file too.
        let skip = cond
            .get(..offset)
            .map(|p| p.matches(tok.as_str()).count())
            .unwrap_or(0);
        let window = self.text.get(from..).unwrap_or("");
        let window = &window[..window.len().min(cond.len() * 2 + 200)];
        let Some((pos, _)) = window.match_indices(tok.as_str()).nth(skip) else {
            return start.clone();
        };
        let abs = from + pos;
        let line = self.line_starts.partition_point(|&s| s <= abs);
        let lstart = self.line_starts[line - 1];
        Loc {
            file: start.file.clone(),
            line,
            col: self.text[lstart..abs].chars().count() + 1,
        }
    }
}

/// Every file of one load, in load order.
pub(super) struct Sources<'a>(Vec<Source<'a>>);

impl<'a> Sources<'a> {
    /// The sources `(name, text)`, in order.
    pub(super) fn new(sources: &'a [(String, String)]) -> Self {
        Sources(sources.iter().map(|(n, t)| Source::new(n, t)).collect())
    }

    /// The files with their index.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Source<'a>)> {
        self.0.iter().enumerate()
    }

    /// The file position of offset `at` in `cond`, a condition written at `start`
    /// (`start` itself when the text cannot be found).
    pub(super) fn locate(&self, start: &Loc, cond: &str, at: usize) -> Loc {
        self.0
            .iter()
            .find(|s| s.name == start.file)
            .map(|s| s.locate(start, cond, at))
            .unwrap_or_else(|| start.clone())
    }

    /// Sort key of a diagnostic: file in load order, then line and column.
    pub(super) fn order(&self, d: &Diagnostic) -> (usize, usize, usize) {
        let f = self
            .0
            .iter()
            .position(|s| s.name == d.loc.file)
            .unwrap_or(usize::MAX);
        (f, d.loc.line, d.loc.col)
    }
}
