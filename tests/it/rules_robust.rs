//! Robustness: thousands of deterministic mutations of upstream rules files and conditions
//! thrown at the YAML loader, the condition parser and the alert filter (none may panic),
//! and the `kaudit rules` command line end to end.

use std::process::Command;

use kaudit::rules::{AlertFilter, LoadOptions, Ruleset, parser, yaml};

use super::rules::falco_dir;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const NOISE: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "\"",
    "'",
    "\\",
    ":",
    "- ",
    "\n",
    " ",
    ",",
    "=",
    "%",
    "not ",
    " and ",
    " or ",
    "in (",
    "exists",
    "\\x4",
    "{",
    "}",
    "&a",
    "*a",
    "!!str ",
    "|",
    ">",
    "#",
    "\t",
    "ka.",
    "jevt.value[",
    "é",
    "\u{0}",
];

fn mutate(src: &str, rng: &mut Rng) -> String {
    let mut b: Vec<char> = src.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(6) {
            0 if len > 0 => {
                let at = rng.below(len);
                let n = rng.below(20).min(len - at);
                b.drain(at..at + n);
            }
            1 => {
                let at = rng.below(len + 1);
                let noise = NOISE[rng.below(NOISE.len())];
                for (i, c) in noise.chars().enumerate() {
                    b.insert(at + i, c);
                }
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let n = rng.below(40).min(len - at);
                let piece: Vec<char> = b[at..at + n].to_vec();
                let to = rng.below(len + 1);
                for (i, c) in piece.into_iter().enumerate() {
                    b.insert(to + i, c);
                }
            }
            3 => b.truncate(rng.below(len + 1)),
            4 if len > 0 => {
                let at = rng.below(len);
                b[at] = NOISE[rng.below(NOISE.len())].chars().next().unwrap_or(' ');
            }
            _ => {
                let at = rng.below(len + 1);
                b.splice(at..at, "(".repeat(rng.below(30)).chars());
            }
        }
    }
    b.into_iter().collect()
}

fn corpus() -> Vec<String> {
    let d = falco_dir();
    let mut files = vec![
        d.join("rules/k8s_audit_rules.yaml"),
        d.join("rules/k8s_audit_rules-0.6.0.yaml"),
    ];
    for entry in
        std::fs::read_dir(d.join("k8s_audit_tests/rules/k8s_audit")).expect("test rules dir")
    {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "yaml") {
            files.push(p);
        }
    }
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read corpus file"))
        .collect()
}

/// Conditions of the corpus, one per `condition:` value (single-line ones are enough here).
fn conditions(corpus: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for text in corpus {
        for line in text.lines() {
            if let Some(c) = line.trim().strip_prefix("condition:") {
                let c = c.trim();
                if !c.is_empty() && c != ">" && c != "|" {
                    out.push(c.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn mutated_rules_files_never_panic() {
    let corpus = corpus();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let opts = LoadOptions::default();
    let mut loaded = 0;
    let mut n = 0;
    for round in 0..1500 {
        let src = &corpus[round % corpus.len()];
        // Mutate a window of the file (whole small files, a slice of the big ones).
        let start = if src.len() > 6000 {
            rng.below(src.len() - 6000)
        } else {
            0
        };
        let start = (0..=start)
            .rev()
            .find(|&i| src.is_char_boundary(i))
            .unwrap_or(0);
        let mut end = (start + 6000).min(src.len());
        while !src.is_char_boundary(end) {
            end -= 1;
        }
        let m = mutate(&src[start..end], &mut rng);
        let _ = yaml::parse(&m);
        if Ruleset::load_sources(&[("m.yaml".into(), m)], &opts).is_ok() {
            loaded += 1;
        }
        n += 1;
    }
    assert_eq!(n, 1500);
    // Some mutations still load, most do not: both paths ran.
    assert!(loaded > 0 && loaded < n, "loaded {loaded} of {n}");
}

#[test]
fn mutated_conditions_never_panic() {
    let corpus = corpus();
    let conds = conditions(&corpus);
    assert!(conds.len() > 50, "{}", conds.len());
    let mut rng = Rng(42);
    let mut ok = 0;
    let total = 4000;
    for i in 0..total {
        let m = mutate(&conds[i % conds.len()], &mut rng);
        if parser::parse(&m, &[]).is_ok() {
            ok += 1;
        }
        let _ = AlertFilter::compile(&m);
        // Each mutated condition also goes through the loader as a rule.
        if i % 8 == 0 {
            let y = format!(
                "- rule: R\n  desc: d\n  condition: {}\n  output: o\n  priority: INFO\n  source: k8s_audit\n",
                serde_json::to_string(&m).unwrap_or_default()
            );
            let _ = Ruleset::load_sources(&[("c.yaml".into(), y)], &LoadOptions::default());
        }
    }
    assert!(ok > 0 && ok < total, "parsed {ok} of {total}");
    // Pathological inputs.
    for s in [
        "(".repeat(5000),
        "not ".repeat(5000) + "a",
        "a.b in (".to_string() + &"x,".repeat(5000),
    ] {
        let _ = parser::parse(&s, &[]);
    }
}

#[test]
fn deepest_allowed_condition_loads_and_evaluates() {
    let depth = parser::MAX_DEPTH;
    let cond = "not (".repeat(depth) + "ka.verb exists" + &")".repeat(depth);
    let y = format!(
        "- rule: Deep\n  desc: d\n  condition: {}\n  output: o\n  priority: INFO\n  source: k8s_audit\n",
        serde_json::to_string(&cond).unwrap_or_default()
    );
    let (rs, _) = Ruleset::load_sources(&[("deep.yaml".into(), y)], &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let ev = kaudit::audit::AuditEvent::from_json(serde_json::json!({
        "auditID": "a", "verb": "get", "stageTimestamp": "2026-01-01T00:00:00Z"
    }))
    .unwrap_or_else(|e| panic!("{e:?}"));
    let mut out = Vec::new();
    rs.evaluate(&ev, &mut out);
    // An even number of negations of a true check.
    assert_eq!(out.len(), usize::from(depth.is_multiple_of(2)));
    let too_deep = "(".repeat(depth + 1) + "ka.verb exists" + &")".repeat(depth + 1);
    let y = format!(
        "- rule: Deep\n  desc: d\n  condition: {}\n  output: o\n  priority: INFO\n  source: k8s_audit\n",
        serde_json::to_string(&too_deep).unwrap_or_default()
    );
    let e = Ruleset::load_sources(&[("deep.yaml".into(), y)], &LoadOptions::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("deep.yaml:3:") && e.contains("nested deeper than 1000"),
        "{e}"
    );
}

fn kaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaudit"))
}

#[test]
fn cli_check_list_and_test() {
    let d = falco_dir();
    let r = d.join("rules");
    let out = kaudit()
        .args(["rules", "check"])
        .arg(r.join("falco_rules-1.0.1.yaml"))
        .arg(r.join("k8s_audit_rules.yaml"))
        .output()
        .expect("run kaudit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("rules: 48 loaded"), "{stdout}");
    assert!(stdout.contains("80 skipped"), "{stdout}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "- rule: R\n  desc: d\n  condition: ka.verb = get and nosuchmacro\n  output: o\n  priority: INFO\n  source: k8s_audit\n").expect("write");
    let out = kaudit()
        .args(["rules", "check"])
        .arg(&bad)
        .output()
        .expect("run kaudit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("bad.yaml:3:32: rule 'R': Undefined macro 'nosuchmacro'"),
        "{stderr}"
    );

    let out = kaudit()
        .args(["rules", "list"])
        .output()
        .expect("run kaudit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("Binding To Cluster Admin") && stdout.contains("Critical"),
        "{stdout}"
    );

    // Falco's fal_01_003: not an audit event, reported with file and line, nothing raised.
    let trace = d.join("k8s_audit_tests/trace_files/k8s_audit/fal_01_003.json");
    let good = d.join("k8s_audit_tests/trace_files/k8s_audit/create_nginx_pod_privileged.json");
    let out = kaudit()
        .args(["rules", "test", "-r"])
        .arg(r.join("falco_rules-1.0.1.yaml"))
        .arg("-r")
        .arg(r.join("k8s_audit_rules-0.6.0.yaml"))
        .arg(&trace)
        .arg(&good)
        .output()
        .expect("run kaudit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("fal_01_003.json:1: data not recognized as a k8s audit event"),
        "{stderr}"
    );
    let alerts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert JSON line"))
        .collect();
    assert_eq!(alerts.len(), 1, "{stdout}");
    assert_eq!(alerts[0]["rule"], "Create Privileged Pod");
    assert_eq!(alerts[0]["priority"], "Warning");
    assert_eq!(alerts[0]["source"], "k8s_audit");
    assert!(stderr.contains("rule Create Privileged Pod: 1"), "{stderr}");
    assert!(stderr.contains("priority Warning: 1"), "{stderr}");

    // --rule-matching and --min-priority are applied.
    let out = kaudit()
        .args(["rules", "test", "--min-priority", "critical"])
        .arg(&good)
        .output()
        .expect("run kaudit");
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = kaudit()
        .args(["rules", "test", "--rule-matching", "sometimes"])
        .arg(&good)
        .output()
        .expect("run kaudit");
    assert!(!out.status.success());
}
