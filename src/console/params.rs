//! The query string of the console's API: filters, paging and buckets. Unknown keys and bad
//! values are refused with a message naming the parameter, as config keys are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::alert::Priority;
use crate::store::Filter;

/// Parameters every alert query takes.
pub const FILTER_KEYS: [&str; 12] = [
    "since",
    "until",
    "priority",
    "rule",
    "source",
    "origin",
    "tags",
    "namespace",
    "user",
    "resource",
    "verb",
    "q",
];

/// A parsed query string.
#[derive(Clone, Debug, Default)]
pub struct Params {
    /// The filter.
    pub filter: Filter,
    /// `cursor`.
    pub cursor: Option<String>,
    /// `limit` (default 50).
    pub limit: usize,
    /// `bucket`: seconds per stats bucket (default: about 60 buckets over the range).
    pub bucket: Option<i64>,
}

fn time(key: &str, v: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{key}`: not an RFC 3339 time ({e})"))
}

/// Parses `q`, accepting the filter keys and `extra` ones (`cursor`, `limit`, `bucket`).
pub fn parse(q: &BTreeMap<String, String>, extra: &[&str]) -> Result<Params, String> {
    let mut p = Params {
        limit: 50,
        ..Params::default()
    };
    for (k, v) in q {
        let text = || (!v.is_empty()).then(|| v.clone());
        let f = &mut p.filter;
        match k.as_str() {
            "since" if !v.is_empty() => f.since = Some(time(k, v)?),
            "until" if !v.is_empty() => f.until = Some(time(k, v)?),
            "priority" if !v.is_empty() => {
                f.priority = Some(
                    v.parse::<Priority>()
                        .map_err(|e| format!("`priority`: {e}"))?,
                )
            }
            "rule" => f.rule = text(),
            "source" => f.source = text(),
            "origin" => f.origin = text(),
            "namespace" => f.namespace = text(),
            "user" => f.user = text(),
            "resource" => f.resource = text(),
            "verb" => f.verb = text(),
            "q" => f.text = text(),
            "tags" => {
                f.tags = v
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "since" | "until" | "priority" => {}
            "cursor" if extra.contains(&"cursor") => p.cursor = text(),
            "limit" if extra.contains(&"limit") => {
                p.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or("`limit`: a number from 1 to 1000")?
            }
            "bucket" if extra.contains(&"bucket") => {
                p.bucket = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or("`bucket`: a number of seconds, at least 1")?,
                )
            }
            other => {
                return Err(format!(
                    "unknown parameter `{other}`; known: {}, {}",
                    FILTER_KEYS.join(", "),
                    extra.join(", ")
                ));
            }
        }
    }
    Ok(p)
}

/// A bucket width giving about 60 buckets over the filter's range (the last 24 hours when
/// it has no start), rounded to a readable width.
pub fn default_bucket(f: &Filter) -> i64 {
    let until = f.until.unwrap_or_else(Utc::now);
    let since = f.since.unwrap_or(until - chrono::Duration::hours(24));
    let span = (until - since).num_seconds().max(60);
    let raw = span / 60;
    [
        1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 86400,
    ]
    .into_iter()
    .find(|w| *w >= raw)
    .unwrap_or(86400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_parse_and_junk_names_its_parameter() {
        let p = parse(
            &q(&[("priority", "warning"), ("tags", "a, b"), ("limit", "5")]),
            &["cursor", "limit"],
        )
        .unwrap();
        assert_eq!(p.filter.priority, Some(Priority::Warning));
        assert_eq!(p.filter.tags, vec!["a", "b"]);
        assert_eq!(p.limit, 5);
        assert!(
            parse(&q(&[("limit", "0")]), &["limit"])
                .unwrap_err()
                .contains("limit")
        );
        assert!(
            parse(&q(&[("bucket", "5")]), &[])
                .unwrap_err()
                .contains("unknown")
        );
        assert!(
            parse(&q(&[("since", "yesterday")]), &[])
                .unwrap_err()
                .contains("since")
        );
    }
}
