//! `file`: kube-apiserver's audit log (`--audit-log-path`, JSON lines), followed across rotation
//! by rename (lumberjack's `audit-<time>.log`) and by copytruncate, with its rotated files read
//! in order on a first start. Following and the checkpoint are [`crate::follow`]'s, shared with
//! the Falco output tailer.
//!
//! Each poll hands the complete lines read (at most `batch_bytes`) to the inbox as one batch;
//! once it is on disk the position (device, inode, first-line fingerprint, offset) is saved in
//! `<data_dir>/sources/<name>.position`. A partial last line waits for its newline. A crash
//! between the read and the save reads those lines again: same auditIDs, same alert uuids.

mod source;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Source, SourceEnv, SourceError, SourceType};
use crate::follow::StartAt;
use crate::invalid::{Invalid, positive};

pub use source::FileSource;

/// Settings of a `file` source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The audit log (`--audit-log-path`).
    pub path: PathBuf,
    /// Without a saved position: `beginning` reads the rotated files and the log from the top,
    /// `end` only what is written from now on.
    #[serde(default)]
    pub start_at: StartAt,
    /// Read the rotated files beside the log (`audit-<time>.log`, `audit.log.1`; not `.gz`):
    /// all of them on a first start from the beginning, and those rotated while kaudit was down.
    #[serde(default = "yes")]
    pub read_rotated: bool,
    /// How often the file is checked for new lines and rotation, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Most bytes of lines per inbox batch.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
}

fn yes() -> bool {
    true
}
fn default_poll_interval_ms() -> u64 {
    250
}
fn default_batch_bytes() -> usize {
    1024 * 1024
}

impl FileConfig {
    /// Checks the path and the numbers.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(Invalid::new("path", "must not be empty"));
        }
        if self.path.file_name().is_none() {
            return Err(Invalid::new("path", "must name a file"));
        }
        positive("poll_interval_ms", self.poll_interval_ms)?;
        positive("batch_bytes", self.batch_bytes as u64)?;
        Ok(())
    }
}

/// The `file` source type.
pub struct File;

impl SourceType for File {
    const NAME: &'static str = "file";
    type Config = FileConfig;

    fn validate(config: &FileConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn build(
        _name: &str,
        config: &FileConfig,
        _env: &SourceEnv,
    ) -> Result<Option<Box<dyn Source>>, SourceError> {
        Ok(Some(Box::new(FileSource::new(config.clone()))))
    }
}
