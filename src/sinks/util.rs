//! Helpers shared by sink settings: URLs, and a secret given inline or as a file (`password` or
//! `password_file`), checked when the config is validated and read when the sink is built.

use std::path::{Path, PathBuf};

use crate::delivery::SinkError;
use crate::invalid::{Invalid, existing_file};
use crate::secret::{Secret, resolve_secret};

/// Parses the URL at `key`.
pub fn parse_url(key: &str, value: &str) -> Result<reqwest::Url, Invalid> {
    reqwest::Url::parse(value).map_err(|e| Invalid::new(key, format!("{value:?}: {e}")))
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

    /// The value (a file's trailing newlines dropped), or `None` when unset; an unreadable file
    /// is a permanent error.
    pub fn read(&self) -> Result<Option<String>, SinkError> {
        resolve_secret(self.inline, self.file, self.key)
            .map(|s| s.map(|s| s.expose().to_string()))
            .map_err(|e| SinkError::Permanent(e.to_string()))
    }
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
        assert!(matches!(gone.read(), Err(SinkError::Permanent(_))));
        assert_eq!(SecretSetting::new("t", &None, &None).read().unwrap(), None);
    }
}
