//! [`Invalid`]: a config value that types alone could not rule out, with the key path that holds
//! it. Every stage's `validate()` returns it, relative to the stage's own config; whoever nests
//! that config prefixes the path ([`Invalid::under`], [`Invalid::at`]), so the message that reaches
//! the user says exactly where the value is (`sinks[2].tls.ca_file`).

use std::fmt;

/// A config value that is wrong, where it is, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    /// Dotted key path relative to the config being validated; empty for the config itself.
    pub key: String,
    /// What is wrong with the value.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "key `{}`: {}", self.key, self.message)
        }
    }
}

impl Invalid {
    /// The value at `key` is wrong because of `message`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Places the key under a parent field: `tls` + `ca_file` = `tls.ca_file`.
    pub fn under(mut self, parent: &str) -> Self {
        self.key = match (parent.is_empty(), self.key.is_empty()) {
            (true, _) => self.key,
            (false, true) => parent.to_string(),
            (false, false) if self.key.starts_with('[') => format!("{parent}{}", self.key),
            (false, false) => format!("{parent}.{}", self.key),
        };
        self
    }

    /// Places the key under element `index` of the list `list`: `sinks` + 2 + `url` = `sinks[2].url`.
    pub fn at(self, list: &str, index: usize) -> Self {
        self.under(&format!("{list}[{index}]"))
    }
}

/// Fails with `message` at `key` when `value` is zero; the common "must be greater than 0" check.
pub fn positive(key: &str, value: u64) -> Result<(), Invalid> {
    if value == 0 {
        Err(Invalid::new(key, "must be greater than 0"))
    } else {
        Ok(())
    }
}

/// Fails at `key` when `path` does not exist; the common check of a configured file.
pub fn existing_file(key: &str, path: &std::path::Path) -> Result<(), Invalid> {
    if path.exists() {
        Ok(())
    } else {
        Err(Invalid::new(
            key,
            format!("{} does not exist", path.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compose() {
        let e = Invalid::new("ca_file", "missing")
            .under("tls")
            .at("sinks", 2);
        assert_eq!(e.key, "sinks[2].tls.ca_file");
        assert_eq!(e.to_string(), "key `sinks[2].tls.ca_file`: missing");
        assert_eq!(Invalid::new("", "bad").under("spool").key, "spool");
        assert_eq!(positive("x", 0).unwrap_err().key, "x");
        assert!(positive("x", 1).is_ok());
        let e = existing_file("f", std::path::Path::new("/nonexistent/x")).unwrap_err();
        assert_eq!(e.to_string(), "key `f`: /nonexistent/x does not exist");
    }
}
