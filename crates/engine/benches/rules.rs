//! Events per second through the newest upstream k8s_audit ruleset (loaded after
//! falco_rules-1.0.1), over the events of Falco's trace files, beside a parse-only baseline:
//! evaluation of parsed events, a full parse plus evaluation, and lazy extraction (only what
//! the rules read built) plus evaluation.
//!
//! `cargo bench --bench rules -- --quick` (from the repository root or crates/engine).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kaudit_engine::audit::AuditEvent;
use kaudit_engine::rules::{LoadOptions, RuleMatching, Ruleset};

/// Falco's files, beside the repository (`<repo>/../shared/falco`).
fn falco_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/falco")
}

fn trace_lines() -> Vec<String> {
    let dir = falco_dir().join("k8s_audit_tests/trace_files/k8s_audit");
    let mut lines = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for l in text.lines() {
            if serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| AuditEvent::from_json(v).ok())
                .is_some()
            {
                lines.push(l.to_string());
            }
        }
    }
    lines
}

fn ruleset(matching: RuleMatching) -> Ruleset {
    let r = falco_dir().join("rules");
    let opts = LoadOptions {
        rule_matching: matching,
        ..LoadOptions::default()
    };
    match Ruleset::load_files(
        &[
            r.join("falco_rules-1.0.1.yaml"),
            r.join("k8s_audit_rules.yaml"),
        ],
        &opts,
    ) {
        Ok((rs, _)) => rs,
        Err(e) => panic!("rules: {e}"),
    }
}

fn bench(c: &mut Criterion) {
    let lines = trace_lines();
    assert!(
        !lines.is_empty(),
        "no trace events found under ../shared/falco"
    );
    let events: Vec<AuditEvent> = lines
        .iter()
        .filter_map(|l| {
            serde_json::from_str(l)
                .ok()
                .and_then(|v| AuditEvent::from_json(v).ok())
        })
        .collect();
    let first = ruleset(RuleMatching::First);
    let all = ruleset(RuleMatching::All);

    let mut g = c.benchmark_group("k8s_audit");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("parse_only (serde_json)", |b| {
        b.iter(|| {
            for l in &lines {
                let v: serde_json::Value = serde_json::from_str(black_box(l)).unwrap_or_default();
                black_box(v);
            }
        })
    });
    let mut out = Vec::new();
    g.bench_function("evaluate (first match)", |b| {
        b.iter(|| {
            for ev in &events {
                out.clear();
                first.evaluate(black_box(ev), &mut out);
            }
        })
    });
    g.bench_function("evaluate (all matches)", |b| {
        b.iter(|| {
            for ev in &events {
                out.clear();
                all.evaluate(black_box(ev), &mut out);
            }
        })
    });
    g.bench_function("parse + evaluate (first match)", |b| {
        b.iter(|| {
            for l in &lines {
                let Ok(v) = serde_json::from_str(black_box(l)) else {
                    continue;
                };
                let Ok(ev) = AuditEvent::from_json(v) else {
                    continue;
                };
                out.clear();
                first.evaluate(&ev, &mut out);
            }
        })
    });
    g.bench_function("lazy extract + evaluate (first match)", |b| {
        b.iter(|| {
            for l in &lines {
                let Ok(ev) = kaudit_engine::lazy::extract(black_box(l), first.paths()) else {
                    continue;
                };
                out.clear();
                first.evaluate(&ev, &mut out);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
