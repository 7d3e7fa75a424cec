//! `store:` settings: where alerts are kept and for how long.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::invalid::{Invalid, positive};
use crate::secret::Secret;
use crate::transport::ClientTls;

/// Where the console's alerts are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The SQLite file; default `<data_dir>/console/alerts.db`.
    pub path: Option<PathBuf>,
    /// A PostgreSQL URL (`postgres://user:pass@host/db`): every replica shares one history.
    pub url: Option<Secret>,
    /// A file holding the PostgreSQL URL (a mounted Secret); wins over `url`.
    pub url_file: Option<PathBuf>,
    /// TLS to PostgreSQL, used when the URL says `sslmode=require`: the server is verified
    /// against the system's roots plus `ca_file`; `cert_file`/`key_file` are a client identity.
    pub tls: ClientTls,
    /// How long and how much is kept.
    pub retention: RetentionConfig,
    /// Most alerts written in one transaction.
    pub write_batch: usize,
    /// Write requests waiting for the writer; delivery outcomes beyond it are dropped.
    pub queue_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: None,
            url: None,
            url_file: None,
            tls: ClientTls::default(),
            retention: RetentionConfig::default(),
            write_batch: 2000,
            queue_capacity: 8192,
        }
    }
}

/// How long and how much the store keeps; both limits are enforced continuously, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Alerts older than this (by their time) are deleted, in seconds.
    pub max_age_secs: u64,
    /// Past this size of live data the oldest alerts are deleted, in bytes.
    pub max_bytes: u64,
    /// How often the limits are checked, in milliseconds.
    pub check_interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age_secs: 7 * 24 * 3600,
            max_bytes: 1024 * 1024 * 1024,
            check_interval_ms: 5_000,
        }
    }
}

/// The least `retention.max_bytes` accepted: below it the schema alone would not fit.
pub const MIN_MAX_BYTES: u64 = 256 * 1024;

impl StoreConfig {
    /// Checks values types alone cannot; keys are relative to `store`.
    pub fn validate(&self) -> Result<(), Invalid> {
        positive("write_batch", self.write_batch as u64)?;
        positive("queue_capacity", self.queue_capacity as u64)?;
        positive("retention.max_age_secs", self.retention.max_age_secs)?;
        positive(
            "retention.check_interval_ms",
            self.retention.check_interval_ms,
        )?;
        if self.retention.max_bytes < MIN_MAX_BYTES {
            return Err(Invalid::new(
                "retention.max_bytes",
                format!("must be at least {MIN_MAX_BYTES}"),
            ));
        }
        if let Some(u) = &self.url {
            super::check_url("url", u)?;
        }
        if let Some(f) = &self.url_file
            && !f.exists()
        {
            return Err(Invalid::new(
                "url_file",
                format!("{} does not exist", f.display()),
            ));
        }
        if self.path.is_some() && (self.url.is_some() || self.url_file.is_some()) {
            return Err(Invalid::new(
                "path",
                "give either `path` (SQLite) or `url`/`url_file` (PostgreSQL), not both",
            ));
        }
        Ok(())
    }

    /// The PostgreSQL URL, read from `url_file` when given; `None` for the embedded store.
    pub fn url(&self) -> Result<Option<Secret>, StoreError> {
        if let Some(f) = &self.url_file {
            let text = std::fs::read_to_string(f).map_err(|e| StoreError::Postgres {
                what: "reading store.url_file",
                message: format!("{}: {e}", f.display()),
            })?;
            let url = Secret::new(text.trim());
            super::check_url("store.url_file", &url).map_err(|e| StoreError::Postgres {
                what: "reading store.url_file",
                message: e.to_string(),
            })?;
            return Ok(Some(url));
        }
        Ok(self.url.clone())
    }
}
