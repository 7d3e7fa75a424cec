//! The rules engine against Falco's own k8s-audit regression suite and upstream rules files,
//! read from `../shared/falco` at test time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kaudit::alert::{Alert, Priority};
use kaudit::cli::rules as cli;
use kaudit::rules::{LoadOptions, RuleMatching, Ruleset};
use serde::Deserialize;

pub fn falco_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/falco")
}

#[derive(Deserialize)]
struct Suite {
    tests: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    trace_file: String,
    rules_files: Vec<String>,
    detect: bool,
    #[serde(default)]
    detect_level: Option<String>,
    #[serde(default)]
    detect_counts: BTreeMap<String, usize>,
    #[serde(default)]
    stderr_contains: Option<String>,
}

fn run_case(dir: &Path, c: &Case) -> Result<(), String> {
    let files: Vec<PathBuf> = c.rules_files.iter().map(|f| dir.join(f)).collect();
    let (rs, _) = Ruleset::load_files(&files, &LoadOptions::default())
        .map_err(|e| format!("rules did not load: {e}"))?;
    let trace = dir.join(&c.trace_file);
    let (events, problems) =
        cli::read_events(&trace).map_err(|e| format!("cannot read {}: {e}", trace.display()))?;
    let stderr = problems.join("\n");
    let mut alerts: Vec<Alert> = Vec::new();
    for ev in &events {
        rs.evaluate(ev, &mut alerts);
    }
    let summary = || {
        alerts
            .iter()
            .map(|a| format!("{} ({})", a.rule, a.priority))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(pat) = &c.stderr_contains
        && !stderr.contains(pat.as_str())
    {
        return Err(format!("stderr lacks {pat:?}: {stderr:?}"));
    }
    if !c.detect {
        if !alerts.is_empty() {
            return Err(format!("expected no alert, got: {}", summary()));
        }
        return Ok(());
    }
    if alerts.is_empty() {
        return Err("expected an alert, got none".into());
    }
    if let Some(level) = &c.detect_level {
        let want: Priority = level.parse().map_err(|e| format!("{e}"))?;
        if !alerts.iter().any(|a| a.priority == want) {
            return Err(format!("no alert at {want}: {}", summary()));
        }
    }
    for (rule, n) in &c.detect_counts {
        let got = alerts.iter().filter(|a| &a.rule == rule).count();
        if got != *n {
            return Err(format!(
                "rule {rule:?}: expected {n} alerts, got {got} ({})",
                summary()
            ));
        }
    }
    Ok(())
}

#[test]
fn falco_k8s_audit_regression_suite_passes() {
    let dir = falco_dir().join("k8s_audit_tests");
    let text = std::fs::read_to_string(dir.join("tests.yaml")).expect("tests.yaml");
    let suite: Suite = yaml_serde::from_str(&text).expect("tests.yaml parses");
    assert_eq!(suite.tests.len(), 66);
    let mut failures = Vec::new();
    for c in &suite.tests {
        if let Err(e) = run_case(&dir, c) {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    let passed = suite.tests.len() - failures.len();
    println!(
        "falco k8s_audit suite: {passed}/{} passed",
        suite.tests.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn load_upstream(name: &str, matching: RuleMatching) -> (Ruleset, kaudit::rules::LoadReport) {
    let r = falco_dir().join("rules");
    let opts = LoadOptions {
        rule_matching: matching,
        ..LoadOptions::default()
    };
    Ruleset::load_files(&[r.join("falco_rules-1.0.1.yaml"), r.join(name)], &opts)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn upstream_rulesets_load_without_errors() {
    let (rs, rep) = load_upstream("k8s_audit_rules.yaml", RuleMatching::First);
    assert_eq!(rep.rules_loaded, 48, "{rep:?}");
    assert_eq!(rep.rules_skipped, 80);
    assert!(rs.rules().filter(|r| r.source == "k8s_audit").count() == 48);
    let (_, rep) = load_upstream("k8s_audit_rules-0.6.0.yaml", RuleMatching::First);
    assert!(rep.rules_loaded > 30, "{rep:?}");
}
