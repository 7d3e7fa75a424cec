//! File watching: how kaudit notices that a mounted file (rules, tokens, certificates, its own
//! config) changed. Polling the modification time works the same on every filesystem, including
//! the symlink swaps Kubernetes does when a ConfigMap or Secret volume is updated.

use std::path::Path;
use std::time::SystemTime;

/// The file's modification time, or `None` when it cannot be read (missing, no permission).
pub fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
