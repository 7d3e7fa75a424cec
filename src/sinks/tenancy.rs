//! The rules every restricted sink obeys, whatever its type: what the per-sink keys `tenant`,
//! `ambient_credentials` and `egress` mean, where a sink without ambient credentials may read
//! files, and the building blocks of builds ([`build`](super::build), dry runs) under them.
//!
//! | key | meaning |
//! | --- | --- |
//! | `tenant: <namespace>` | the sink belongs to a tenant (the operator renders every `AlertSink` so): it implies the two below, refuses their opposites, and its spool is quarantined when it goes away |
//! | `ambient_credentials: false` | no metadata server, no IRSA or node role, nothing from kaudit's environment; every `*_file` setting must lie under `tenancy.credentials_dir` |
//! | `egress: restricted` | every connection obeys `tenancy.egress` (see `transport::egress`); the type's own restricted checks apply (`SinkType::validate_restricted`) |
//!
//! For sink authors: build every client with `transport::client`/`ClientSettings` and every
//! credential source (`aws`, `gcp`) inside `build`, name file settings `*_file`/`*_files`, put
//! URL and host checks and header restrictions in `validate_restricted`, and honour
//! `Access::dry_run` (connect nothing) if the type connects in `build`.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};
use crate::invalid::Invalid;
use crate::transport::egress::{EgressConfig, EgressPolicy};

/// Whether a sink's connections obey the egress policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// Anywhere (admin-owned sinks).
    #[default]
    Open,
    /// Only where `tenancy.egress` allows (tenant sinks).
    Restricted,
}

/// What restricted sinks are checked and built against (from the config's `tenancy` section).
#[derive(Clone, Debug, PartialEq)]
pub struct SinkRules {
    /// The directory every file setting of a sink without ambient credentials must lie under.
    pub credentials_dir: Option<PathBuf>,
    /// The egress policy of restricted sinks.
    pub egress: Arc<EgressPolicy>,
    /// The most a tenant's `file` sink may keep (`max_bytes`).
    pub file_max_bytes: u64,
}

impl Default for SinkRules {
    fn default() -> Self {
        SinkRules::new(None, &EgressConfig::default(), DEFAULT_FILE_MAX_BYTES)
    }
}

/// The default cap of a tenant's `file` sink: 64 MiB (plus one rotated file).
pub const DEFAULT_FILE_MAX_BYTES: u64 = 64 * 1024 * 1024;

impl SinkRules {
    /// Rules from the config's values.
    pub fn new(credentials_dir: Option<PathBuf>, egress: &EgressConfig, file_max: u64) -> Self {
        SinkRules {
            credentials_dir,
            egress: Arc::new(EgressPolicy::new(egress)),
            file_max_bytes: file_max,
        }
    }
}

/// Every `*_file` and `*_files` setting of `settings` (their dotted keys and paths).
pub fn file_settings(settings: &Value) -> Vec<(String, PathBuf)> {
    fn walk(v: &Value, path: &str, out: &mut Vec<(String, PathBuf)>) {
        let Value::Object(m) = v else { return };
        for (k, val) in m {
            let key = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match val {
                Value::String(s) if k.ends_with("_file") => out.push((key, PathBuf::from(s))),
                Value::Object(files) if k.ends_with("_files") => {
                    for (name, f) in files {
                        if let Value::String(s) = f {
                            out.push((format!("{key}.{name}"), PathBuf::from(s)));
                        }
                    }
                }
                Value::Object(_) => walk(val, &key, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(settings, "", &mut out);
    out
}

/// Refuses file settings a sink without ambient credentials may not read: anything outside
/// `dir` (kaudit's own files: its service account token, cloud credentials, other tenants'),
/// and any path with `..`.
pub fn check_files(settings: &Value, dir: Option<&Path>) -> Result<(), Invalid> {
    for (key, p) in file_settings(settings) {
        let inside = dir.is_some_and(|d| p.is_absolute() && p.starts_with(d))
            && !p.components().any(|c| matches!(c, Component::ParentDir));
        if !inside {
            let where_ = match dir {
                Some(d) => format!("files under {} (tenancy.credentials_dir)", d.display()),
                None => "no files (tenancy.credentials_dir is not set)".into(),
            };
            return Err(Invalid::new(
                key,
                format!(
                    "{}: a sink without ambient credentials may read {where_}",
                    p.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The sink a dry run builds: everything was checked, nothing is connected; it sends nothing.
pub struct DryRun;

impl Sink for DryRun {
    fn send<'a>(&'a self, _: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Err(SinkError::Permanent("a dry-run sink sends nothing".into())) })
    }
}

/// A sink whose error messages have credentials in URLs removed (they become dead-letter
/// reasons and log lines); every built sink is wrapped in one.
pub struct Redacting(pub Box<dyn Sink>);

/// The error with every secret-looking part of its message redacted.
fn redacted(e: SinkError) -> SinkError {
    match e {
        SinkError::Permanent(m) => SinkError::Permanent(crate::secret::redact_text(&m)),
        SinkError::Denied(m) => SinkError::Denied(crate::secret::redact_text(&m)),
        SinkError::Retryable {
            message,
            retry_after,
        } => SinkError::Retryable {
            message: crate::secret::redact_text(&message),
            retry_after,
        },
    }
}

impl Sink for Redacting {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move { self.0.send(alerts).await.map_err(redacted) })
    }

    fn send_encoded<'a>(
        &'a self,
        alerts: &'a [&'a [u8]],
    ) -> Option<BoxFuture<'a, Result<(), SinkError>>> {
        let sent = self.0.send_encoded(alerts)?;
        Some(Box::pin(async move { sent.await.map_err(redacted) }))
    }

    fn batch_policy(&self) -> BatchPolicy {
        self.0.batch_policy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_must_stay_in_the_credentials_dir() {
        let s = serde_json::json!({
            "url": "https://x",
            "header_files": {"Authorization": "/etc/kaudit/config/cred.a"},
            "tls": {"ca_file": "/etc/kaudit/config/cred.b"},
        });
        let dir = Path::new("/etc/kaudit/config");
        assert!(check_files(&s, Some(dir)).is_ok());
        assert_eq!(file_settings(&s).len(), 2);
        for bad in [
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "/etc/kaudit/config/../../../root/.aws/credentials",
            "cred.a",
        ] {
            let s = serde_json::json!({"tls": {"key_file": bad}});
            let e = check_files(&s, Some(dir)).unwrap_err();
            assert_eq!(e.key, "tls.key_file", "{bad}");
        }
        let e = check_files(&s, None).unwrap_err();
        assert!(e.message.contains("not set"), "{e}");
    }
}
