//! Secret values: never printed, given inline or read from a file (a mounted Kubernetes Secret).
//!
//! Plumbing below every stage: sinks, the Falco forwarder and ingest auth all take secrets the
//! same way, so they share one type and one resolver.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

use crate::invalid::{Invalid, existing_file};

/// A value that must never be printed: shown as `<redacted>` by `config check` and in logs.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Why a secret could not be resolved; names the key (and the file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both the inline value and the file were set.
    #[error("<config>: key `{key}`: set either `{key}` or `{key}_file`, not both")]
    Ambiguous {
        /// The inline key, e.g. `password`.
        key: String,
    },
    /// The file could not be read.
    #[error("{}: key `{key}_file`: cannot read secret file: {source}", file.display())]
    Unreadable {
        /// The inline key, e.g. `password`.
        key: String,
        /// The file that was named.
        file: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Reads a secret given inline or as a file; both set is refused as ambiguous. Trailing newlines
/// of the file are dropped.
pub fn resolve_secret(
    inline: Option<&Secret>,
    file: Option<&Path>,
    key: &str,
) -> Result<Option<Secret>, SecretError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(SecretError::Ambiguous { key: key.into() }),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
                key: key.into(),
                file: path.to_path_buf(),
                source,
            })?;
            Ok(Some(Secret(
                text.trim_end_matches(['\r', '\n']).to_string(),
            )))
        }
        (None, None) => Ok(None),
    }
}

/// A secret setting: the inline key `key` and its file form `key_file`.
#[derive(Clone, Copy, Debug)]
pub struct SecretSetting<'a> {
    key: &'a str,
    inline: Option<&'a Secret>,
    file: Option<&'a Path>,
}

impl<'a> SecretSetting<'a> {
    /// The setting `key` (e.g. `password`), from its inline and `_file` fields.
    pub fn new(key: &'a str, inline: &'a Option<Secret>, file: &'a Option<PathBuf>) -> Self {
        SecretSetting {
            key,
            inline: inline.as_ref(),
            file: file.as_deref(),
        }
    }

    /// The inline key (`password`).
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// Either form is set.
    pub fn is_set(&self) -> bool {
        self.inline.is_some() || self.file.is_some()
    }

    /// Refuses both forms at once, and a file that does not exist.
    pub fn check(&self) -> Result<(), Invalid> {
        let key = self.key;
        if self.inline.is_some() && self.file.is_some() {
            return Err(Invalid::new(
                key,
                format!("set either `{key}` or `{key}_file`, not both"),
            ));
        }
        match self.file {
            Some(p) => existing_file(&format!("{key}_file"), p),
            None => Ok(()),
        }
    }

    /// Refuses this password set without `username`, or `username` without it (basic auth
    /// comes as a pair).
    pub fn paired_with_username(&self, username: Option<&str>) -> Result<(), Invalid> {
        if self.is_set() != username.is_some() {
            return Err(Invalid::new(
                "username",
                format!(
                    "set `username` and `{0}` (or `{0}_file`) together",
                    self.key
                ),
            ));
        }
        Ok(())
    }

    /// The value (a file's trailing newlines dropped), or `None` when unset.
    pub fn read(&self) -> Result<Option<String>, SecretError> {
        resolve_secret(self.inline, self.file, self.key).map(|s| s.map(|s| s.0))
    }
}

/// `text` with the user information of every URL in it (`scheme://user:password@host`)
/// replaced by `<redacted>`: for messages that quote URLs (logs, dead-letter reasons,
/// `config check`). A NATS token travels as the user name, so the whole part goes.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        // The authority ends at the path, the query, or where the URL stops in prose.
        let end = rest
            .find(|c: char| {
                matches!(
                    c,
                    '/' | '?' | '#' | ' ' | '"' | '\'' | ')' | ']' | ',' | '>'
                ) || c.is_whitespace()
                    || c.is_control()
            })
            .unwrap_or(rest.len());
        match rest[..end].rfind('@') {
            Some(at) => {
                out.push_str("<redacted>");
                rest = &rest[at..];
            }
            None => {
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let inline = Some(Secret::new("x"));
        let file = Some(f);
        let both = SecretSetting::new("password", &inline, &file);
        assert_eq!(both.check().unwrap_err().key, "password");
        let from_file = SecretSetting::new("password", &None, &file);
        assert!(from_file.is_set() && from_file.check().is_ok());
        assert_eq!(from_file.read().unwrap().as_deref(), Some("s3cret"));
        let missing = Some(dir.path().join("nope"));
        let gone = SecretSetting::new("token", &None, &missing);
        assert_eq!(gone.check().unwrap_err().key, "token_file");
        assert!(matches!(gone.read(), Err(SecretError::Unreadable { .. })));
        assert_eq!(SecretSetting::new("t", &None, &None).read().unwrap(), None);
    }

    use std::io::Write;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_text("error sending to http://alice:hunter2@h:8/x?q=1 (retrying)"),
            "error sending to http://<redacted>@h:8/x?q=1 (retrying)"
        );
        assert_eq!(
            redact_text("[\"nats://tok3n@a:4222\", \"tls://b:4222\"]"),
            "[\"nats://<redacted>@a:4222\", \"tls://b:4222\"]"
        );
        assert_eq!(redact_text("https://x/a@b"), "https://x/a@b");
        assert_eq!(redact_text("no url: a@b"), "no url: a@b");
    }

    #[test]
    fn secret_from_file_drops_trailing_newline() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"s3cret\n").unwrap();
        let s = resolve_secret(None, Some(f.path()), "password")
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert!(resolve_secret(Some(&Secret::new("a")), Some(f.path()), "password").is_err());
    }

    #[test]
    fn errors_name_the_key_and_file() {
        let e = resolve_secret(None, Some(Path::new("/nonexistent/x")), "token")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/x") && e.contains("token_file"),
            "{e}"
        );
    }
}
