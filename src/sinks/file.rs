//! `file`: one Falco JSON alert per line, appended; follows log rotation.
//!
//! Before each batch the path is checked: when the file was renamed away or deleted (a different
//! inode, or none) it is reopened, so `logrotate` with `create` works; with `copytruncate` the
//! append-mode handle keeps writing at the new end. Each batch is fsynced before it is confirmed.
//!
//! With `max_bytes`, a batch that would take the file past it first renames the file to
//! `<path>.1` (replacing the previous one): the sink never keeps more than about twice
//! `max_bytes`. A tenant's file sink must set it, at most `tenancy.file_max_bytes`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError, json_lines};
use crate::invalid::Invalid;
use crate::sinks::registry::SinkType;
use futures_util::future::BoxFuture;

/// Settings of a `file` sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to (created with its directory if missing).
    pub path: PathBuf,
    /// fsync each batch before confirming it (default true; false trades durability for speed).
    #[serde(default = "yes")]
    pub fsync: bool,
    /// Rotate to `<path>.1` before the file would grow past this size; unset: never.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

fn yes() -> bool {
    true
}

impl FileConfig {
    /// Checks the path.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(Invalid::new("path", "must not be empty"));
        }
        if let Some(m) = self.max_bytes {
            crate::invalid::positive("max_bytes", m)?;
        }
        Ok(())
    }

    /// A restricted (tenant) file sink is capped: `max_bytes` set, at most `limit`.
    pub fn validate_restricted(&self, limit: u64) -> Result<(), Invalid> {
        match self.max_bytes {
            Some(m) if m <= limit => Ok(()),
            _ => Err(Invalid::new(
                "max_bytes",
                format!(
                    "a restricted file sink must set max_bytes, at most {limit} (tenancy.file_max_bytes)"
                ),
            )),
        }
    }
}

/// `<path>.1`, where a full file goes.
fn rotated(path: &std::path::Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

struct Open {
    file: std::fs::File,
    ino: u64,
    /// A regular file: only those are synced (a device or a FIFO, `/dev/null` or
    /// `/dev/stdout`, refuses `fsync` with EINVAL and holds nothing to make durable).
    regular: bool,
}

/// Appends alerts to a file.
pub struct FileSink {
    config: FileConfig,
    state: Arc<Mutex<Option<Open>>>,
}

impl FileSink {
    /// A sink appending to `config.path` (opened at first use).
    pub fn new(config: FileConfig) -> Self {
        FileSink {
            config,
            state: Arc::new(Mutex::new(None)),
        }
    }
}

fn inode(m: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = m;
        0
    }
}

fn write_batch(cfg: &FileConfig, state: &Mutex<Option<Open>>, buf: &[u8]) -> std::io::Result<()> {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    // Only a regular file rotates (renaming a device away would take it from everyone).
    if let Some(max) = cfg.max_bytes
        && let Ok(m) = std::fs::metadata(&cfg.path)
        && m.is_file()
        && m.len() > 0
        && m.len() + buf.len() as u64 > max
    {
        std::fs::rename(&cfg.path, rotated(&cfg.path))?;
        *st = None;
    }
    let current = std::fs::metadata(&cfg.path).ok().map(|m| inode(&m));
    let stale = match (&*st, current) {
        (Some(o), Some(ino)) => o.ino != ino,
        _ => true,
    };
    if stale {
        if let Some(dir) = cfg.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.path)?;
        let m = file.metadata()?;
        *st = Some(Open {
            file,
            ino: inode(&m),
            regular: m.is_file(),
        });
    }
    let Some(open) = st.as_mut() else {
        return Err(std::io::Error::other("file not open"));
    };
    let r = open.file.write_all(buf).and_then(|_| {
        if cfg.fsync && open.regular {
            open.file.sync_data()
        } else {
            Ok(())
        }
    });
    if r.is_err() {
        *st = None;
    }
    r
}

impl FileSink {
    fn write(&self, buf: Vec<u8>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let cfg = self.config.clone();
            let state = self.state.clone();
            tokio::task::spawn_blocking(move || write_batch(&cfg, &state, &buf))
                .await
                .map_err(|e| SinkError::retryable(format!("file: {e}")))?
                .map_err(|e| {
                    SinkError::retryable(format!("file {}: {e}", self.config.path.display()))
                })
        })
    }
}

impl Sink for FileSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        self.write(json_lines(alerts.iter().map(Alert::to_json)))
    }

    fn send_encoded<'a>(
        &'a self,
        alerts: &'a [&'a [u8]],
    ) -> Option<BoxFuture<'a, Result<(), SinkError>>> {
        Some(self.write(json_lines(alerts.iter().copied())))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: 256,
            max_wait: std::time::Duration::ZERO,
        }
    }
}

/// The `file` sink type.
pub struct File;

impl SinkType for File {
    const NAME: &'static str = "file";
    type Config = FileConfig;

    fn validate(config: &FileConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn validate_restricted(
        config: &FileConfig,
        rules: &crate::sinks::SinkRules,
    ) -> Result<(), Invalid> {
        config.validate_restricted(rules.file_max_bytes)
    }

    async fn build(config: &FileConfig) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(FileSink::new(config.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str) -> Alert {
        serde_json::from_str(&format!(
            r#"{{"time":"2026-01-01T00:00:00Z","rule":"{rule}","priority":"Warning","output":"o"}}"#
        ))
        .unwrap()
    }

    /// A file sink as the router builds it (with its wrappers), and `shape` set when given.
    async fn built(path: &std::path::Path, shape: crate::sinks::shape::Shape) -> Box<dyn Sink> {
        let mut cfg = crate::sinks::SinkConfig::stdout("f");
        cfg.settings = crate::sinks::SinkSettings::File(FileConfig {
            path: path.to_path_buf(),
            fsync: true,
            max_bytes: None,
        });
        cfg.shape = shape;
        crate::sinks::build(&cfg, &crate::sinks::SinkRules::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn spooled_alerts_are_written_as_they_are_and_as_send_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let (decoded, encoded) = (dir.path().join("a"), dir.path().join("b"));
        let alerts = [alert("x"), alert(r#"y \"quoted\" é"#)];
        built(&decoded, Default::default())
            .await
            .send(&alerts)
            .await
            .unwrap();
        let spooled: Vec<bytes::Bytes> =
            alerts.iter().map(crate::delivery::alerts::encode).collect();
        let records: Vec<&[u8]> = spooled.iter().map(|b| &b[..]).collect();
        built(&encoded, Default::default())
            .await
            .send_encoded(&records)
            .expect("a plain file sink takes spooled alerts as they are")
            .await
            .unwrap();
        let (a, b) = (
            std::fs::read(&decoded).unwrap(),
            std::fs::read(&encoded).unwrap(),
        );
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        // A shaped sink changes each alert, so it needs them decoded.
        let shape = crate::sinks::shape::Shape {
            custom_fields: [("team".to_string(), "x".to_string())].into(),
            ..Default::default()
        };
        assert!(
            built(&encoded, shape)
                .await
                .send_encoded(&records)
                .is_none()
        );
    }

    fn rules(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["rule"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn follows_rename_and_truncate_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/alerts.jsonl");
        let sink = FileSink::new(FileConfig {
            path: path.clone(),
            fsync: true,
            max_bytes: None,
        });
        sink.send(&[alert("a"), alert("b")]).await.unwrap();
        assert_eq!(rules(&path), ["a", "b"]);
        // logrotate `create`: renamed away, the next batch goes to a new file.
        let rotated = dir.path().join("sub/alerts.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.send(&[alert("c")]).await.unwrap();
        assert_eq!(rules(&rotated), ["a", "b"]);
        assert_eq!(rules(&path), ["c"]);
        // logrotate `copytruncate`: the append handle writes at the new end.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        sink.send(&[alert("d")]).await.unwrap();
        assert_eq!(rules(&path), ["d"]);
        // Deleted: recreated.
        std::fs::remove_file(&path).unwrap();
        sink.send(&[alert("e")]).await.unwrap();
        assert_eq!(rules(&path), ["e"]);
    }

    /// A device is written without a sync (it refuses one), whatever the settings. (Its size
    /// reads 0, so the cap never rotates it even without the regular-file guard: the last
    /// assertion only checks that nothing renamed it.)
    #[tokio::test]
    async fn a_device_takes_alerts_without_sync() {
        let sink = FileSink::new(FileConfig {
            path: PathBuf::from("/dev/null"),
            fsync: true,
            max_bytes: Some(1),
        });
        for _ in 0..3 {
            sink.send(&[alert("a"), alert("b")]).await.unwrap();
        }
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    /// A capped file never grows past its cap plus one rotated file, whatever arrives.
    #[tokio::test]
    async fn a_capped_file_rotates_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let one = alert("x").to_json().len() as u64 + 1;
        let cfg = FileConfig {
            path: path.clone(),
            fsync: false,
            max_bytes: Some(3 * one),
        };
        assert!(cfg.validate_restricted(3 * one).is_ok());
        assert!(cfg.validate_restricted(2 * one).is_err());
        let sink = FileSink::new(cfg);
        for _ in 0..10 {
            sink.send(&[alert("x")]).await.unwrap();
        }
        let len = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
        assert!(len(&path) <= 3 * one, "{}", len(&path));
        assert_eq!(len(&rotated(&path)), 3 * one);
    }
}
