//! File watching: how kaudit notices that a mounted file (rules, tokens, certificates, its own
//! config) changed. Polling the modification time works the same on every filesystem, including
//! the symlink swaps Kubernetes does when a ConfigMap or Secret volume is updated.
//!
//! One mechanism for every watcher: a [`Stamp`] of a set of files, compared at an interval by
//! [`spawn_on_change`] (or by a caller's own loop).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The file's modification time, or `None` when it cannot be read (missing, no permission).
pub fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The modification times of a set of files at one moment; a missing file counts as a state too,
/// so deleting or re-creating a file is a change.
#[derive(Clone, Debug)]
pub struct Stamp {
    paths: Vec<PathBuf>,
    last: Vec<Option<SystemTime>>,
}

impl Stamp {
    /// Takes the first stamp of `paths`.
    pub fn new(paths: Vec<PathBuf>) -> Stamp {
        let last = paths.iter().map(|p| mtime(p)).collect();
        Stamp { paths, last }
    }

    /// Looks again; true (and remembers the new times) when any file changed since the last look.
    pub fn changed(&mut self) -> bool {
        let now: Vec<_> = self.paths.iter().map(|p| mtime(p)).collect();
        if now == self.last {
            false
        } else {
            self.last = now;
            true
        }
    }

    /// The files watched.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

/// Calls `on_change` every time any of `paths` changes, looking every `every`, until `stop`
/// becomes true (or for the life of the process when `stop` is `None`). Nothing is spawned for an
/// empty set of paths.
pub fn spawn_on_change(
    paths: Vec<PathBuf>,
    every: Duration,
    stop: Option<watch::Receiver<bool>>,
    mut on_change: impl FnMut() + Send + 'static,
) -> Option<JoinHandle<()>> {
    if paths.is_empty() {
        return None;
    }
    let every = every.max(Duration::from_millis(10));
    // Stamped now, not when the task first runs: a change in between must count.
    let mut stamp = Stamp::new(paths);
    Some(tokio::spawn(async move {
        let mut stop = stop;
        loop {
            let stopped = match stop.as_mut() {
                Some(s) => tokio::select! {
                    // A dropped sender counts as "never stopped": keep watching.
                    r = s.wait_for(|stopped| *stopped) => Some(r.is_ok()),
                    _ = tokio::time::sleep(every) => None,
                },
                None => {
                    tokio::time::sleep(every).await;
                    None
                }
            };
            match stopped {
                Some(true) => return,
                Some(false) => {
                    stop = None;
                    continue;
                }
                None => {}
            }
            if stamp.changed() {
                on_change();
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_sees_writes_deletes_and_creates() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        let mut s = Stamp::new(vec![f.clone()]);
        assert!(!s.changed());
        std::fs::write(&f, "x").unwrap();
        assert!(s.changed());
        assert!(!s.changed());
        std::fs::remove_file(&f).unwrap();
        assert!(s.changed());
    }

    #[tokio::test]
    async fn on_change_fires_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = spawn_on_change(
            vec![f.clone()],
            Duration::from_millis(10),
            Some(stop_rx),
            move || {
                let _ = tx.send(());
            },
        )
        .unwrap();
        std::fs::write(&f, "x").unwrap();
        rx.recv().await.unwrap();
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(spawn_on_change(vec![], Duration::from_secs(1), None, || {}).is_none());
    }
}
