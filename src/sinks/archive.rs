//! What the archive sinks (`s3`, `gcs`) share: a batch as one gzip'd NDJSON object, and its
//! name under a time-partitioned prefix.
//!
//! The name is `<prefix><partition>/<time>-<digest>.ndjson.gz`, where `partition` is the
//! strftime pattern of the config over the batch's first alert time in UTC (`%Y/%m/%d/%H` by
//! default), `time` that alert's time, and `digest` the start of the SHA-256 of the batch's
//! uuids: the same batch sent again gets the same name, so a retry after a lost answer is
//! refused as existing (a conditional write) instead of stored twice.

use chrono::format::{Item, StrftimeItems};

use crate::alert::Alert;
use crate::invalid::Invalid;
use crate::transport::encode::{gzip, sha256_hex};

/// The default partition pattern: one folder per hour.
pub fn default_partition() -> String {
    "%Y/%m/%d/%H".into()
}

/// Checks a partition pattern (a valid strftime pattern that makes a relative path).
pub fn check_partition(key: &str, pattern: &str) -> Result<(), Invalid> {
    if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
        return Err(Invalid::new(
            key,
            format!("{pattern:?}: not a valid strftime pattern"),
        ));
    }
    if pattern.starts_with('/') || pattern.split('/').any(|s| s == "..") {
        return Err(Invalid::new(
            key,
            format!("{pattern:?}: must be a relative path without `..`"),
        ));
    }
    Ok(())
}

/// Checks a name prefix (relative, no `..`; empty is allowed).
pub fn check_prefix(key: &str, prefix: &str) -> Result<(), Invalid> {
    if prefix.starts_with('/') || prefix.split('/').any(|s| s == "..") {
        return Err(Invalid::new(
            key,
            format!("{prefix:?}: must be relative, without `..`"),
        ));
    }
    Ok(())
}

/// The object name of a batch (see the module doc); `None` for an empty batch.
pub fn object_name(prefix: &str, partition: &str, alerts: &[Alert]) -> Option<String> {
    let first = alerts.first()?;
    let mut ids = String::new();
    for a in alerts {
        ids.push_str(&a.uuid.to_string());
        ids.push('\n');
    }
    let digest = sha256_hex(ids.as_bytes());
    let mut p = prefix.to_string();
    if !p.is_empty() && !p.ends_with('/') {
        p.push('/');
    }
    Some(format!(
        "{p}{}/{}-{}.ndjson.gz",
        first.time.format(partition),
        first.time.format("%Y%m%dT%H%M%S%.3fZ"),
        &digest[..16]
    ))
}

/// The gzip'd NDJSON body of a batch: one alert JSON per line.
pub fn ndjson_gz(alerts: &[Alert]) -> std::io::Result<Vec<u8>> {
    let mut lines = Vec::new();
    for a in alerts {
        lines.extend_from_slice(a.to_json().as_bytes());
        lines.push(b'\n');
    }
    gzip(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_are_partitioned_and_stable() {
        let mut a = Alert {
            uuid: uuid::Uuid::nil(),
            time: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            rule: "r".into(),
            priority: crate::alert::Priority::Notice,
            source: String::new(),
            hostname: String::new(),
            output: String::new(),
            output_fields: Default::default(),
            tags: vec![],
        };
        let n = object_name("falco", "%Y/%m/%d/%H", std::slice::from_ref(&a)).unwrap();
        assert!(
            n.starts_with("falco/2026/01/02/03/20260102T030405.000Z-"),
            "{n}"
        );
        assert!(n.ends_with(".ndjson.gz"));
        assert_eq!(
            object_name("falco/", "%Y/%m/%d/%H", std::slice::from_ref(&a)).unwrap(),
            n
        );
        a.uuid = uuid::Uuid::new_v4();
        assert_ne!(object_name("falco", "%Y/%m/%d/%H", &[a]).unwrap(), n);
        assert!(check_partition("p", "dt=%Y-%m-%d").is_ok());
        assert!(check_partition("p", "%Q").is_err());
        assert!(check_prefix("prefix", "../x").is_err());
        assert_eq!(object_name("", "%Y", &[]), None);
    }
}
