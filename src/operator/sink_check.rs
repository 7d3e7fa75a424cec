//! The dry run of every sink with its real credential bytes, before anything is rendered: the
//! operator leaves out every sink kaudit would refuse, so that one bad `AlertSink` (a header value
//! with a newline, a key that is not a key) fails alone, in its own status, and never makes
//! kaudit refuse its config.
//!
//! The credential files are written to a private temporary directory in the places the config
//! Secret would put them, each sink is validated and built exactly as `kaudit serve` builds it
//! ([`sinks::validate_one`], [`sinks::dry_run`]: nothing is connected), and the directory is
//! removed. The reasons go to [`Inputs::sink_refusals`], which rendering reads.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::config::TenancyConfig;
use crate::operator::inputs::Inputs;
use crate::operator::render::CONFIG_DIR;
use crate::operator::render::sinks::render_all;
use crate::sinks::{self, SinkConfig, SinkRules};

/// Every string of `v` naming a file of the config Secret, moved under `dir`.
fn relocate(v: &mut Value, dir: &str) {
    match v {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix(CONFIG_DIR).filter(|r| r.starts_with('/')) {
                *s = format!("{dir}{rest}");
            }
        }
        Value::Object(m) => m.values_mut().for_each(|v| relocate(v, dir)),
        Value::Array(a) => a.iter_mut().for_each(|v| relocate(v, dir)),
        _ => {}
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(bytes)
}

/// The sinks of `inputs` that kaudit would refuse under `tenancy`, by config sink name, with
/// kaudit's reason. A sink that cannot be checked (no temporary directory) is not refused here:
/// kaudit itself still refuses it, and the config reload says so.
pub async fn dry_runs(inputs: &Inputs, tenancy: &TenancyConfig) -> BTreeMap<String, String> {
    let mut refusals = BTreeMap::new();
    let rendered = render_all(inputs, &tenancy.sink_rules(), &mut Vec::new());
    let dir = match tempfile::Builder::new().prefix("kaudit-sinks").tempdir() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "no temporary directory: sinks are not dry-run");
            return refusals;
        }
    };
    let dir_str = dir.path().display().to_string();
    for (key, bytes) in &rendered.files {
        if let Err(e) = write_private(&dir.path().join(key), bytes) {
            tracing::warn!(error = %e, "writing a credential for the dry run failed");
            return refusals;
        }
    }
    let rules = SinkRules::new(
        Some(dir.path().to_path_buf()),
        &tenancy.egress,
        tenancy.file_max_bytes,
    );
    for entry in rendered.entries {
        let name = entry.config.name.clone();
        let mut v = Value::Object(entry.entry);
        relocate(&mut v, &dir_str);
        let checked = match serde_json::from_value::<SinkConfig>(v) {
            Err(e) => Err(e.to_string()),
            Ok(cfg) => match sinks::validate_one(&cfg, &rules) {
                Err(e) => Err(format!("{}: {}", e.key, e.message)),
                Ok(()) => sinks::dry_run(&cfg, &rules)
                    .await
                    .map_err(|e| e.to_string()),
            },
        };
        if let Err(reason) = checked {
            refusals.insert(name, reason.replace(&dir_str, CONFIG_DIR));
        }
    }
    refusals
}
