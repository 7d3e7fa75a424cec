//! The console's read-only tokens (`console.tokens`, `console.token_file`), separate from the
//! webhook's. A token may be bound to namespaces: it then sees only alerts about them, as a
//! team sees its own namespace under the operator's tenancy. With no token configured the
//! console is open to whoever reaches it (fine on a laptop; the operator always sets one).
//!
//! The file holds one token per line, optionally followed by a space and a comma-separated list
//! of namespaces; blank lines and `#` comments are ignored. It is re-read when it changes.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::secret::Secret;
use crate::store::Scope;

/// One inline token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleToken {
    /// The token.
    pub token: Secret,
    /// The namespaces it may see; empty: every alert.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// A console token file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("console.token_file {path}: {message}")]
pub struct TokenFileError {
    path: String,
    message: String,
}

#[derive(Clone)]
struct Entry {
    token: Vec<u8>,
    scope: Scope,
}

/// The accepted tokens and what each may see.
#[derive(Clone, Default)]
pub struct ConsoleTokens {
    inline: Vec<Entry>,
    from_file: Arc<RwLock<Vec<Entry>>>,
    file: Option<PathBuf>,
}

fn scope_of(namespaces: &[String]) -> Scope {
    if namespaces.is_empty() {
        Scope::All
    } else {
        Scope::Namespaces(namespaces.to_vec())
    }
}

/// Parses a token file's text.
fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (token, ns) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let ns: Vec<String> = ns
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
            Entry {
                token: token.as_bytes().to_vec(),
                scope: scope_of(&ns),
            }
        })
        .collect()
}

impl ConsoleTokens {
    /// The tokens of `tokens` and `file`.
    pub fn new(tokens: &[ConsoleToken], file: Option<PathBuf>) -> Result<Self, TokenFileError> {
        let t = ConsoleTokens {
            inline: tokens
                .iter()
                .map(|t| Entry {
                    token: t.token.expose().as_bytes().to_vec(),
                    scope: scope_of(&t.namespaces),
                })
                .collect(),
            from_file: Arc::default(),
            file,
        };
        t.reload()?;
        Ok(t)
    }

    /// Reads the token file again.
    pub fn reload(&self) -> Result<(), TokenFileError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path).map_err(|e| TokenFileError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        *self.from_file.write().unwrap_or_else(|p| p.into_inner()) = parse(&text);
        Ok(())
    }

    /// Re-reads the token file when it changes.
    pub fn spawn_watch(&self, every: Duration) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let this = self.clone();
        crate::watch::spawn_on_change(vec![path], every, None, move || {
            if let Err(e) = this.reload() {
                tracing::error!(error = %e, "console token file reload failed; keeping the old tokens");
            }
        });
    }

    /// What the bearer of `header` (an `Authorization` value) may see; `None`: nothing (401).
    pub fn scope(&self, header: Option<&[u8]>) -> Option<Scope> {
        let file = self.from_file.read().unwrap_or_else(|p| p.into_inner());
        if self.inline.is_empty() && self.file.is_none() {
            return Some(Scope::All);
        }
        let presented = header.and_then(|h| h.strip_prefix(b"Bearer "))?;
        // Every token is compared, without stopping early, so timing says nothing.
        let mut found = None;
        for e in self.inline.iter().chain(file.iter()) {
            if bool::from(e.token.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(e.scope.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_bind_tokens_to_namespaces() {
        let e = parse("# c\nabc team-a, team-b\n\nxyz\n");
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].scope,
            Scope::Namespaces(vec!["team-a".into(), "team-b".into()])
        );
        assert_eq!(e[1].scope, Scope::All);
        let t = ConsoleTokens {
            inline: e,
            ..Default::default()
        };
        assert!(t.scope(Some(b"Bearer abc")).is_some());
        assert!(t.scope(Some(b"Bearer ab")).is_none());
        assert!(t.scope(None).is_none());
    }
}
