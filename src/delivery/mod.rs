//! Durable delivery: the per-sink spool, retries with backoff, dead letters.

use serde::{Deserialize, Serialize};

/// Settings of the per-sink durable spool.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Largest size of one sink's spool in bytes; past it the oldest alerts are dead-lettered.
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 256 * 1024 * 1024,
        }
    }
}
