//! The rule index: which rules an event can reach, found from its cheapest fields before any
//! condition runs, so that the cost of an event grows with the rules it can reach, not with
//! all the rules loaded.
//!
//! A rule whose condition requires `ka.target.namespace` to be one of some literals (a
//! conjunct `field = x` or `field in (...)`, or an `or` of such; every tenant rule does) is
//! filed under those namespaces; one that does not, but requires `ka.target.resource` so, under
//! those resources; else under its `ka.verb` literals; the rest are always candidates. All three
//! are single values at fixed paths, the cheapest fields to read. An event's candidates are the
//! rules filed under its namespace, its resource and its verb, and the unfiled ones, in
//! definition order: a rule left out could only have failed.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::compiler::{Node, Slot, Slots, Test};
use super::eval::Ctx;
use super::fields;

/// The fields the index files rules under, most selective first.
const INDEXED: [&str; 3] = ["ka.target.namespace", "ka.target.resource", "ka.verb"];

/// The lists an event's candidates are merged from, at most: one per indexed field and the
/// unfiled rules.
const MAX_LISTS: usize = INDEXED.len() + 1;

/// FNV-1a, for the index's tables: their keys are literals of the rules, each looked up once
/// per event with one of its values. SipHash's resistance to chosen collisions protects
/// tables that grow from input; these never do, and it cost more than the lookup itself.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Rules filed under the values of one field.
#[derive(Debug, Default)]
struct ByField {
    slot: usize,
    /// Value -> positions (into the active list), increasing.
    rules: HashMap<String, Vec<usize>, BuildHasherDefault<Fnv>>,
}

/// The index over a ruleset's active rules (positions into its active list).
#[derive(Debug, Default)]
pub struct RuleIndex {
    fields: Vec<ByField>,
    /// Rules filed under no field: candidates for every event.
    always: Vec<usize>,
}

impl RuleIndex {
    /// Files each active rule (`conds[i]` is the condition of active rule `i`).
    pub fn build(conds: &[&Node], slots: &Slots) -> RuleIndex {
        let mut idx = RuleIndex::default();
        let field_slots: Vec<Option<usize>> = INDEXED
            .iter()
            .map(|name| {
                let f = fields::lookup(name, None).ok()?;
                slots.find(&Slot::Event(f))
            })
            .collect();
        for (pos, cond) in conds.iter().enumerate() {
            let filed = field_slots.iter().enumerate().find_map(|(k, s)| {
                let s = (*s)?;
                required(cond, s).map(|vals| (k, s, vals))
            });
            match filed {
                Some((k, slot, vals)) => {
                    while idx.fields.len() <= k {
                        idx.fields.push(ByField::default());
                    }
                    let by = &mut idx.fields[k];
                    by.slot = slot;
                    for v in vals {
                        let list = by.rules.entry(v).or_default();
                        if list.last() != Some(&pos) {
                            list.push(pos);
                        }
                    }
                }
                None => idx.always.push(pos),
            }
        }
        idx.fields.retain(|f| !f.rules.is_empty());
        idx
    }

    /// The positions of the rules `ctx`'s event can reach, in increasing order.
    pub fn candidates(&self, ctx: &mut Ctx<'_>, out: &mut Vec<usize>) {
        out.clear();
        if self.fields.is_empty() {
            out.extend_from_slice(&self.always);
            return;
        }
        let mut lists: [&[usize]; MAX_LISTS] = [&[]; MAX_LISTS];
        lists[0] = &self.always;
        let mut n = 1;
        // `build` keeps at most one `ByField` per indexed field.
        for f in self.fields.iter().take(MAX_LISTS - 1) {
            // Fields read by the index are single-valued; no value reaches no filed rule.
            if let [v] = ctx.values(f.slot)
                && let Some(l) = f.rules.get(v.as_ref())
            {
                lists[n] = l;
                n += 1;
            }
        }
        merge(&lists[..n], out);
    }
}

/// Merges increasing lists (at most [`MAX_LISTS`]) into `out`, increasing (a rule is filed in
/// one list only).
fn merge(lists: &[&[usize]], out: &mut Vec<usize>) {
    let lists = &lists[..lists.len().min(MAX_LISTS)];
    let mut at = [0usize; MAX_LISTS];
    loop {
        let mut best: Option<(usize, usize)> = None;
        for (k, l) in lists.iter().enumerate() {
            if let Some(&v) = l.get(at[k])
                && best.is_none_or(|(_, b)| v < b)
            {
                best = Some((k, v));
            }
        }
        let Some((k, v)) = best else { return };
        at[k] += 1;
        out.push(v);
    }
}

/// The literals a condition requires `slot`'s (single) value to be one of, if it does.
fn required(n: &Node, slot: usize) -> Option<Vec<String>> {
    match n {
        Node::Check { slot: s, test } if *s == slot => match test {
            Test::Eq(x) => Some(vec![x.clone()]),
            Test::In(set) => Some(set.items().map(str::to_string).collect()),
            _ => None,
        },
        Node::And(k) => k.iter().find_map(|c| required(c, slot)),
        Node::Or(k) if !k.is_empty() => {
            let mut all = Vec::new();
            for c in k {
                all.extend(required(c, slot)?);
            }
            Some(all)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_order() {
        let mut out = Vec::new();
        merge(&[&[0, 4, 9], &[1, 2], &[], &[3, 10]], &mut out);
        assert_eq!(out, vec![0, 1, 2, 3, 4, 9, 10]);
    }
}
