//! Counting in one pass: the embedded store reads the matching rows' few columns once (an
//! index-only scan of `alerts_time`) and counts buckets and top values here, instead of one
//! `GROUP BY` query per list.

use std::collections::{BTreeMap, HashMap};

use chrono::{TimeZone, Utc};

use super::{Bucket, Count, Stats, TOP};
use crate::alert::Priority;

/// Counts of one pass over matching alerts.
#[derive(Default)]
pub struct Tally {
    total: u64,
    bucket_ms: i64,
    buckets: BTreeMap<(i64, i64), u64>,
    tops: [HashMap<String, u64>; 4],
}

impl Tally {
    /// A tally in buckets of `bucket_secs`.
    pub fn new(bucket_secs: i64) -> Tally {
        Tally {
            bucket_ms: bucket_secs.max(1) * 1000,
            ..Tally::default()
        }
    }

    /// Counts one alert: its time, priority rank, and rule, namespace, user, resource.
    pub fn add(&mut self, time_ms: i64, priority: i64, values: [Option<&str>; 4]) {
        self.total += 1;
        let b = time_ms.div_euclid(self.bucket_ms) * self.bucket_ms;
        *self.buckets.entry((b, priority)).or_default() += 1;
        for (map, v) in self.tops.iter_mut().zip(values) {
            let Some(v) = v else { continue };
            match map.get_mut(v) {
                Some(n) => *n += 1,
                None => {
                    map.insert(v.to_string(), 1);
                }
            }
        }
    }

    /// The counts as [`Stats`].
    pub fn finish(self) -> Stats {
        let rows = self
            .buckets
            .into_iter()
            .map(|((b, p), n)| (b, p, n as i64))
            .collect();
        let [rules, namespaces, users, resources] = self.tops.map(top);
        Stats {
            total: self.total,
            bucket_secs: self.bucket_ms / 1000,
            buckets: fold_buckets(rows),
            top_rules: rules,
            top_namespaces: namespaces,
            top_users: users,
            top_resources: resources,
        }
    }
}

/// The [`TOP`] most frequent values, ties by value.
fn top(m: HashMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = m
        .into_iter()
        .map(|(value, count)| Count { value, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    v.truncate(TOP);
    v
}

/// Rows of (bucket start ms, priority rank, count), ordered by bucket, into buckets.
pub fn fold_buckets(rows: Vec<(i64, i64, i64)>) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for (b, p, n) in rows {
        let start = Utc.timestamp_millis_opt(b).single().unwrap_or_default();
        if out.last().is_none_or(|l| l.start != start) {
            out.push(Bucket {
                start,
                counts: Default::default(),
            });
        }
        let name = Priority::ALL
            .get(p.clamp(0, 7) as usize)
            .map(|p| p.as_str())
            .unwrap_or("Debug");
        if let Some(last) = out.last_mut() {
            *last.counts.entry(name.to_string()).or_default() += n as u64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_counts_buckets_and_tops() {
        let mut t = Tally::new(60);
        t.add(1_000, 2, [Some("r1"), Some("a"), Some("u"), None]);
        t.add(59_000, 4, [Some("r2"), Some("a"), None, None]);
        t.add(61_000, 2, [Some("r1"), None, None, None]);
        let s = t.finish();
        assert_eq!(s.total, 3);
        assert_eq!(s.buckets.len(), 2);
        assert_eq!(s.buckets[0].counts["Critical"], 1);
        assert_eq!(s.buckets[0].counts["Warning"], 1);
        assert_eq!(
            s.top_rules[0],
            Count {
                value: "r1".into(),
                count: 2
            }
        );
        assert_eq!(s.top_namespaces[0].count, 2);
        assert!(s.top_resources.is_empty());
    }
}
