//! Size limits that keep every rendered object under the apiserver's limit (a ConfigMap or
//! Secret holds at most 1 MiB), so that no input, however large, can make an apply fail for
//! everyone: an input over its own limit is refused alone, and when the inputs together would
//! pass an object's limit, the namespace holding the most loses its largest inputs first, until
//! the rest fits. Each refusal is in the input's status.

use std::collections::BTreeMap;

/// The most the rules ConfigMap may hold (files' bytes), leaving room for metadata.
pub const MAX_RULES_BYTES: usize = 900 * 1024;
/// The most one rendered namespace rule may take.
pub const MAX_RULE_BYTES: usize = 32 * 1024;
/// The most the config Secret may hold (config and credential files, decoded), leaving room
/// for metadata.
pub const MAX_SECRET_BYTES: usize = 900 * 1024;
/// The most one sink may add to the config Secret (its entry and credential files).
pub const MAX_SINK_BYTES: usize = 64 * 1024;

/// Which of `items` (group, bytes) must go so that the rest fits in `cap`: while over, the
/// largest item of the group (namespace) holding the most bytes. `None` groups (the cluster's
/// own inputs) are never chosen. Returns one flag per item, true for the evicted.
pub fn evict(items: &[(Option<&str>, usize)], cap: usize) -> Vec<bool> {
    let mut out = vec![false; items.len()];
    let mut total: usize = items.iter().map(|(_, b)| b).sum();
    while total > cap {
        let mut per_group: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, (g, b)) in items.iter().enumerate() {
            if let (Some(g), false) = (g, out[i]) {
                *per_group.entry(g).or_default() += b;
            }
        }
        let Some((&group, _)) = per_group
            .iter()
            .max_by_key(|(g, b)| (**b, std::cmp::Reverse(**g)))
        else {
            break;
        };
        let Some(i) = (0..items.len())
            .filter(|&i| !out[i] && items[i].0 == Some(group))
            .max_by_key(|&i| (items[i].1, std::cmp::Reverse(i)))
        else {
            break;
        };
        out[i] = true;
        total -= items[i].1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_holding_the_most_loses_its_largest_first() {
        let items = [
            (None, 50),
            (Some("flood"), 40),
            (Some("flood"), 30),
            (Some("team"), 20),
            (Some("flood"), 30),
        ];
        assert_eq!(evict(&items, 200), [false; 5]);
        // 170 -> drop flood's 40 -> 130.
        assert_eq!(evict(&items, 130), [false, true, false, false, false]);
        // Then flood (60) still holds more than team (20): its first 30 goes.
        assert_eq!(evict(&items, 100), [false, true, true, false, false]);
        // The cluster's own item is never chosen.
        assert_eq!(evict(&items, 10), [false, true, true, true, true]);
    }
}
