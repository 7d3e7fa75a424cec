//! `kaudit rules ...`: check, list and test rules files from the command line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::alert::{Alert, Priority};
use crate::audit::{self, AuditEvent, NOT_AN_AUDIT_EVENT, Rejection};
use crate::lazy::{self, Extracted, PathSet, RawEvent};
use crate::rules::{LoadOptions, LoadReport, RuleMatching, Ruleset};

/// The `rules` subcommands.
#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Load rules files in order; print what loaded and every warning (exit 1 on errors).
    Check {
        /// Rules files, loaded in this order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List every rule with its priority, tags and enabled flag (default: embedded rules).
    List {
        /// Rules files, loaded in this order; none means the embedded default ruleset.
        files: Vec<PathBuf>,
    },
    /// Evaluate audit events from files and print each alert as a Falco JSON line.
    Test {
        /// Rules file (repeatable, loaded in order); none means the embedded default ruleset.
        #[arg(short = 'r', long = "rules")]
        rules: Vec<PathBuf>,
        /// Event files: JSON lines of Events, an EventList, or arrays. Read one event at a
        /// time, each built only as far as the rules read it.
        #[arg(required = true)]
        events: Vec<PathBuf>,
        /// `first` (at most one alert per event, Falco's default) or `all`.
        #[arg(long, default_value = "first", value_parser = parse_matching)]
        rule_matching: RuleMatchingArg,
        /// Minimum priority of the rules evaluated.
        #[arg(long, default_value = "debug", value_parser = parse_priority)]
        min_priority: Priority,
    },
}

/// `--rule-matching` value.
#[derive(Clone, Copy, Debug)]
pub struct RuleMatchingArg(pub RuleMatching);

fn parse_matching(s: &str) -> Result<RuleMatchingArg, String> {
    match s.to_ascii_lowercase().as_str() {
        "first" => Ok(RuleMatchingArg(RuleMatching::First)),
        "all" => Ok(RuleMatchingArg(RuleMatching::All)),
        _ => Err(format!("expected 'first' or 'all', got '{s}'")),
    }
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    s.parse::<Priority>().map_err(|e| e.to_string())
}

fn load(files: &[PathBuf], opts: &LoadOptions) -> Option<(Ruleset, LoadReport)> {
    let r = if files.is_empty() {
        Ruleset::load_default(opts)
    } else {
        Ruleset::load_files(files, opts)
    };
    match r {
        Ok(x) => Some(x),
        Err(e) => {
            eprintln!("kaudit: rules did not load:");
            for d in e.diagnostics() {
                eprintln!("  {d}");
            }
            None
        }
    }
}

fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "kaudit".into())
}

/// Runs one `rules` subcommand.
pub fn run(cmd: RulesCommand) -> ExitCode {
    match cmd {
        RulesCommand::Check { files } => {
            let Some((_, rep)) = load(&files, &LoadOptions::default()) else {
                return ExitCode::FAILURE;
            };
            println!(
                "rules: {} loaded ({} active, {} disabled), {} skipped (other sources)",
                rep.rules_loaded, rep.rules_active, rep.rules_disabled, rep.rules_skipped
            );
            println!(
                "macros: {} loaded, {} unused; lists: {} loaded, {} unused",
                rep.macros_loaded, rep.macros_skipped, rep.lists_loaded, rep.lists_skipped
            );
            println!("warnings: {}", rep.warnings.len());
            for w in &rep.warnings {
                println!("  warning: {w}");
            }
            ExitCode::SUCCESS
        }
        RulesCommand::List { files } => {
            let Some((rs, _)) = load(&files, &LoadOptions::default()) else {
                return ExitCode::FAILURE;
            };
            let rules: Vec<_> = rs.rules().collect();
            let w = rules.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{:<w$}  {:<13}  {:<9}  {:<8}  TAGS",
                "RULE", "PRIORITY", "SOURCE", "ENABLED"
            );
            for r in rules {
                let _ = writeln!(
                    out,
                    "{:<w$}  {:<13}  {:<9}  {:<8}  {}",
                    r.name,
                    r.priority.as_str(),
                    r.source,
                    r.enabled,
                    r.tags.join(",")
                );
            }
            ExitCode::SUCCESS
        }
        RulesCommand::Test {
            rules,
            events,
            rule_matching,
            min_priority,
        } => {
            let opts = LoadOptions {
                rule_matching: rule_matching.0,
                min_priority,
                hostname: hostname(),
            };
            let Some((rs, _)) = load(&rules, &opts) else {
                return ExitCode::FAILURE;
            };
            let mut ok = true;
            let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
            let mut by_prio: BTreeMap<Priority, usize> = BTreeMap::new();
            let mut n_events = 0usize;
            let mut out = std::io::stdout().lock();
            let mut alerts: Vec<Alert> = Vec::new();
            for f in &events {
                let bytes = match std::fs::read(f) {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("kaudit: {}: {e}", f.display());
                        ok = false;
                        continue;
                    }
                };
                let name = f.display().to_string();
                // One event at a time, each built only as far as the rules read it.
                let streamed = stream_events(&name, &bytes, rs.paths(), |raw, ev| {
                    alerts.clear();
                    rs.evaluate_extracted(ev, raw, &mut alerts);
                    n_events += 1;
                    for a in &alerts {
                        *by_rule.entry(a.rule.clone()).or_default() += 1;
                        *by_prio.entry(a.priority).or_default() += 1;
                        let _ = writeln!(out, "{}", a.to_json());
                    }
                });
                ok &= streamed;
            }
            let total: usize = by_rule.values().sum();
            eprintln!("events: {n_events}, alerts: {total}");
            for (r, n) in &by_rule {
                eprintln!("  rule {r}: {n}");
            }
            for (p, n) in &by_prio {
                eprintln!("  priority {p}: {n}");
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Hands the events of a file's bytes to `visit` one at a time, each built only over `paths`
/// (see `kaudit_engine::lazy`): the whole text as one payload if it is one, else one payload per
/// line, decided as [`decode_text`] decides. Prints one message per line or item that is not an
/// event and returns false when there was any.
pub fn stream_events(
    name: &str,
    bytes: &[u8],
    paths: &PathSet,
    mut visit: impl FnMut(&RawEvent<'_>, &Extracted<'_>),
) -> bool {
    let mut ok = true;
    let mut take =
        |at: &str, item: Result<(RawEvent<'_>, Extracted<'_>), (usize, Rejection)>| match item {
            Ok((raw, ev)) => visit(&raw, &ev),
            Err((i, r)) => {
                eprintln!("{name}{at}: item {}: event dropped: {}", i + 1, r.as_str());
                ok = false;
            }
        };
    type Item<'a> = Result<(RawEvent<'a>, Extracted<'a>), (usize, Rejection)>;
    fn built<'a>(it: Result<RawEvent<'a>, (usize, Rejection)>, paths: &PathSet) -> Item<'a> {
        it.and_then(|raw| match raw.scan(paths) {
            Ok(ev) => Ok((raw, ev)),
            Err(r) => Err((raw.index, r)),
        })
    }
    let read = |it| built(it, paths);
    // A payload's items are placed (not parsed) before any is evaluated, so one that fails
    // late is read per line, as `decode_text` does; a line that is one Event is read in one pass.
    let mut items = Vec::new();
    if lazy::for_each_raw(bytes, usize::MAX, |it| items.push(it)).is_ok() {
        for it in items {
            take("", read(it));
        }

        return ok;
    }
    // Lines that are no payload at all (`take` holds `ok`).
    let mut bad = false;
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = format!(":{}", n + 1);
        if let Some((raw, ev)) = lazy::single_event(line, usize::MAX, paths) {
            take(&at, ev.map(|ev| (raw, ev)).map_err(|r| (0, r)));
            continue;
        }
        items.clear();
        match lazy::for_each_raw(line, usize::MAX, |it| items.push(it)) {
            Ok(()) => {
                for it in items.drain(..) {
                    take(&at, read(it));
                }
            }
            Err(e) => {
                let m = match e {
                    audit::DecodeError::NotAuditEvent(m) => m,
                    e => e.to_string(),
                };
                eprintln!("{name}{at}: {NOT_AN_AUDIT_EVENT}: {m}");
                bad = true;
            }
        }
    }

    ok && !bad
}

/// Reads the events of a file: the whole file as one payload if it decodes, else one payload
/// per line. Returns the events and one message per line or item that was not an event.
pub fn read_events(path: &Path) -> std::io::Result<(Vec<AuditEvent>, Vec<String>)> {
    let bytes = std::fs::read(path)?;
    let name = path.display().to_string();
    Ok(decode_text(&name, &bytes))
}

/// As [`read_events`], for bytes already read (`name` is used in messages).
pub fn decode_text(name: &str, bytes: &[u8]) -> (Vec<AuditEvent>, Vec<String>) {
    let mut problems = Vec::new();
    if let Ok(d) = audit::decode(bytes, usize::MAX) {
        for (i, r) in &d.rejected {
            problems.push(format!(
                "{name}: item {}: event dropped: {}",
                i + 1,
                r.as_str()
            ));
        }
        return (d.events, problems);
    }
    let mut events = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match audit::decode(line, usize::MAX) {
            Ok(d) => {
                for (i, r) in &d.rejected {
                    problems.push(format!(
                        "{name}:{}: item {}: event dropped: {}",
                        n + 1,
                        i + 1,
                        r.as_str()
                    ));
                }
                events.extend(d.events);
            }
            Err(audit::DecodeError::NotAuditEvent(m)) => {
                problems.push(format!("{name}:{}: {NOT_AN_AUDIT_EVENT}: {m}", n + 1));
            }
            Err(e) => {
                problems.push(format!("{name}:{}: {NOT_AN_AUDIT_EVENT}: {e}", n + 1));
            }
        }
    }
    (events, problems)
}
