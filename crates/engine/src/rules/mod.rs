//! The Falco-compatible `k8s_audit` rules engine: loader, condition parser and compiler,
//! `ka.*`/`jevt.*` fields, evaluation and output formatting.
//!
//! Rules files load in order ([`Ruleset::load_files`]); conditions compile once into trees of
//! field slots and precomputed operands; [`Ruleset::evaluate`] extracts each field at most once
//! per event and raises [`Alert`]s in Falco's JSON shape. [`AlertFilter`] reuses the same
//! language over alerts, for the router.

pub mod compiler;
pub mod config;
pub mod eval;
pub mod exception;
pub mod fields;
pub mod filter;
pub mod index;
pub mod load;
pub mod output;
pub mod parser;
pub mod yaml;

use std::path::PathBuf;

use serde_json::Value;
use uuid::Uuid;

use crate::alert::{Alert, Priority};
use crate::audit::{AuditEvent, EventRef, Rejection};
use crate::lazy::{Extracted, PathSet, RawEvent};
pub use config::{RuleLimits, RuleMatching, RulesConfig, TENANT_FILE_PREFIX};
pub use filter::{AlertFilter, FilterError};
pub use load::{Diagnostic, ENGINE_VERSION, LoadError, LoadReport, Loc};

/// Runs `f` on a thread with a large stack: compiling conditions nested up to the 1000-level
/// cap recurses deeper than a default thread's stack allows (notably in debug builds).
/// Falls back to the current thread if no thread can be started.
pub(crate) fn with_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    const STACK: usize = 256 << 20;
    let slot = std::sync::Mutex::new(Some(f));
    let take = || slot.lock().ok().and_then(|mut g| g.take());
    let outcome = std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn_scoped(s, || take().map(|g| g()));
        spawned.map(|h| h.join())
    });
    match outcome {
        Ok(Ok(Some(r))) => r,
        // The worker panicked: carry the panic over to the caller.
        Ok(Err(payload)) => std::panic::resume_unwind(payload),
        // No thread could be started (or it found no closure): run here.
        Ok(Ok(None)) | Err(_) => match take() {
            Some(g) => g(),
            None => std::panic::resume_unwind(Box::new("rules compilation lost its work")),
        },
    }
}

/// kaudit's embedded default ruleset (Falco rules format).
pub const DEFAULT_RULES: &str = include_str!("default_rules.yaml");

/// How rules are loaded and evaluated.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `first` (at most one alert per event) or `all`.
    pub rule_matching: RuleMatching,
    /// Rules below this priority are not evaluated.
    pub min_priority: Priority,
    /// The `hostname` alerts carry.
    pub hostname: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            rule_matching: RuleMatching::First,
            min_priority: Priority::Debug,
            hostname: String::new(),
        }
    }
}

/// A rule as listed by `kaudit rules list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// Name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Priority.
    pub priority: Priority,
    /// Tags.
    pub tags: Vec<String>,
    /// Enabled flag.
    pub enabled: bool,
    /// Source (`k8s_audit`, or a skipped one such as `syscall`).
    pub source: String,
    /// Whether the engine evaluates it (k8s_audit, enabled, at or above the minimum priority).
    pub active: bool,
}

/// A compiled ruleset: immutable, `Send + Sync`, cheap to share in an `Arc`.
#[derive(Debug)]
pub struct Ruleset {
    rules: Vec<load::CompiledRule>,
    active: Vec<usize>,
    slots: compiler::Slots,
    matching: RuleMatching,
    hostname: String,
    /// What the active rules read of an event (conditions and outputs).
    paths: PathSet,
    /// Which active rules an event can reach.
    index: index::RuleIndex,
    /// Per rule: its output reads the whole event, beyond `paths`.
    whole_output: Vec<bool>,
}

impl Ruleset {
    /// Loads rules files in order. All-or-nothing: any error fails the whole load.
    pub fn load_files(
        paths: &[PathBuf],
        opts: &LoadOptions,
    ) -> Result<(Ruleset, LoadReport), LoadError> {
        Self::load_files_limited(paths, opts, None)
    }

    /// As [`Ruleset::load_files`], refusing rules over `limits` in the files they apply to.
    pub fn load_files_limited(
        paths: &[PathBuf],
        opts: &LoadOptions,
        limits: Option<&RuleLimits>,
    ) -> Result<(Ruleset, LoadReport), LoadError> {
        let mut sources = Vec::with_capacity(paths.len());
        for p in paths {
            let text = std::fs::read_to_string(p).map_err(|e| LoadError::Io {
                file: p.display().to_string(),
                message: e.to_string(),
            })?;
            sources.push((p.display().to_string(), text));
        }
        Self::load_sources_limited(&sources, opts, limits)
    }

    /// Loads the embedded default ruleset.
    pub fn load_default(opts: &LoadOptions) -> Result<(Ruleset, LoadReport), LoadError> {
        Self::load_sources(
            &[("<default rules>".to_string(), DEFAULT_RULES.to_string())],
            opts,
        )
    }

    /// Loads in-memory rules files `(name, yaml text)`, in order.
    pub fn load_sources(
        sources: &[(String, String)],
        opts: &LoadOptions,
    ) -> Result<(Ruleset, LoadReport), LoadError> {
        Self::load_sources_limited(sources, opts, None)
    }

    /// As [`Ruleset::load_sources`], refusing rules over `limits` (a tenant's) in the files
    /// they apply to: the rule is an error of the load, naming the limit.
    pub fn load_sources_limited(
        sources: &[(String, String)],
        opts: &LoadOptions,
        limits: Option<&RuleLimits>,
    ) -> Result<(Ruleset, LoadReport), LoadError> {
        let compiled =
            with_big_stack(|| load::load_limited(sources, compiler::Catalog::Event, limits))?;
        let mut report = compiled.report;
        let mut active = Vec::new();
        for (i, r) in compiled.rules.iter().enumerate() {
            if r.cond.is_none() {
                continue;
            }
            if !r.enabled {
                report.rules_disabled += 1;
            } else if !r.priority.at_least(opts.min_priority) {
                report.rules_below_min_priority += 1;
            } else {
                active.push(i);
            }
        }
        report.rules_active = active.len();
        let conds: Vec<&compiler::Node> = active
            .iter()
            .filter_map(|&i| compiled.rules[i].cond.as_ref())
            .collect();
        let index = index::RuleIndex::build(&conds, &compiled.slots);
        // What an event's scan builds: every condition's fields, and every output's unless it
        // reads the whole event (`%jevt.obj`): such an output is rendered from a second, full
        // read of the event, only when its rule matches.
        let reads = |slots: &mut dyn Iterator<Item = usize>| {
            let mut set = PathSet::new();
            for s in slots {
                if let Some(compiler::Slot::Event(f)) = compiled.slots.list.get(s) {
                    f.add_reads(&mut set);
                }
            }
            set
        };
        let mut paths = PathSet::new();
        let mut whole_output = vec![false; compiled.rules.len()];
        for &i in &active {
            let r = &compiled.rules[i];
            let mut read = std::collections::HashSet::new();
            if let Some(c) = &r.cond {
                compiler::node_slots(c, &mut read);
            }
            paths.merge(&reads(&mut read.into_iter()));
            let out = reads(&mut r.output.slots());
            if out.is_whole() {
                whole_output[i] = true;
            } else {
                paths.merge(&out);
            }
        }
        Ok((
            Ruleset {
                rules: compiled.rules,
                active,
                slots: compiled.slots,
                matching: opts.rule_matching,
                hostname: opts.hostname.clone(),
                paths,
                index,
                whole_output,
            },
            report,
        ))
    }

    /// The paths of an event the active rules read: what [`Ruleset::evaluate_raw`] builds.
    pub fn paths(&self) -> &PathSet {
        &self.paths
    }

    /// Evaluates one event from its raw text, building only what the rules read (see
    /// [`crate::lazy`]); returns that partial event (its time and identity keys included), or
    /// why the item is not an event. Raises exactly the alerts [`Ruleset::evaluate`] raises
    /// for the fully parsed event.
    pub fn evaluate_raw(
        &self,
        raw: &RawEvent<'_>,
        out: &mut Vec<Alert>,
    ) -> Result<AuditEvent, Rejection> {
        let ev = raw.extract(&self.paths)?;
        self.run(ev.view(), Some(raw), out);
        Ok(ev)
    }

    /// Evaluates `ev`, built from `raw` over at least [`Ruleset::paths`] (as
    /// [`crate::lazy::for_each_event`] hands them out): the alerts of [`Ruleset::evaluate_raw`].
    pub fn evaluate_extracted(&self, ev: &Extracted<'_>, raw: &RawEvent<'_>, out: &mut Vec<Alert>) {
        self.run(ev.view(), Some(raw), out);
    }

    /// Evaluates one event, appending its alerts to `out`.
    pub fn evaluate(&self, ev: &AuditEvent, out: &mut Vec<Alert>) {
        self.run(ev.view(), None, out);
    }

    /// Evaluates `ev`; when it was built lazily from `raw`, an output reading the whole event
    /// is rendered from a full read of `raw`, made once, at the first such match.
    fn run(&self, ev: EventRef<'_>, raw: Option<&RawEvent<'_>>, out: &mut Vec<Alert>) {
        let mut ctx = eval::Ctx::new(eval::Source::Event(ev), &self.slots.list);
        let mut full: Option<AuditEvent> = None;
        let mut reach = Vec::new();
        self.index.candidates(&mut ctx, &mut reach);
        for &pos in &reach {
            let Some(&i) = self.active.get(pos) else {
                continue;
            };
            let r = &self.rules[i];
            let Some(cond) = &r.cond else { continue };
            if !eval::eval(cond, &mut ctx) {
                continue;
            }
            let whole = raw.filter(|_| self.whole_output.get(i).copied().unwrap_or(false));
            if let Some(raw) = whole
                && full.is_none()
            {
                full = raw.extract(&PathSet::whole()).ok();
            }
            let (text, mut fields) = match (whole, &full) {
                (Some(_), Some(f)) => r.output.render(&mut eval::Ctx::new(
                    eval::Source::Event(f.view()),
                    &self.slots.list,
                )),
                _ => r.output.render(&mut ctx),
            };
            fields.insert(
                "evt.time".to_string(),
                Value::from(fields::raw_time(&ev.time)),
            );
            out.push(Alert {
                uuid: Uuid::new_v4(),
                time: ev.time,
                rule: r.name.clone(),
                priority: r.priority,
                source: load::K8S_SOURCE.to_string(),
                hostname: self.hostname.clone(),
                output: format!("{}: {} {}", fields::evt_time(&ev.time), r.priority, text),
                output_fields: fields,
                tags: r.tags.clone(),
            });
            if self.matching == RuleMatching::First {
                break;
            }
        }
    }

    /// Every rule in definition order, including disabled and skipped ones.
    pub fn rules(&self) -> impl Iterator<Item = RuleInfo> + '_ {
        self.rules.iter().enumerate().map(|(i, r)| RuleInfo {
            name: r.name.clone(),
            desc: r.desc.clone(),
            priority: r.priority,
            tags: r.tags.clone(),
            enabled: r.enabled,
            source: r.source.clone(),
            active: self.active.contains(&i),
        })
    }

    /// Number of distinct field slots (for diagnostics and tests).
    pub fn slot_count(&self) -> usize {
        self.slots.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn ruleset_is_send_sync() {
        assert_send_sync::<Ruleset>();
        assert_send_sync::<AlertFilter>();
    }
}
