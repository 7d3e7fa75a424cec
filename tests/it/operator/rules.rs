//! Tenant rules against the real rules engine (adversarial scoping, no override of others,
//! one invalid rule never breaking the rest), cluster rules files, and input statuses.

use super::*;
use crate::support::Gen;

/// The adversarial suite: each rule tries to see another namespace's events. Accepted rules
/// must fire on their own namespace (so they are live) and never elsewhere; the rest must be
/// rejected with a reason.
#[test]
fn tenant_rules_never_match_other_namespaces() {
    let k = kd(json!({"defaultRules": false}));
    let ex = |fields: Vec<&str>, comps: Vec<&str>, values: Vec<Vec<&str>>| {
        serde_json::to_value(vec![RuleException {
            name: "e".into(),
            fields: fields.into_iter().map(Into::into).collect(),
            comps: comps.into_iter().map(Into::into).collect(),
            values: values
                .into_iter()
                .map(|r| r.into_iter().map(Into::into).collect())
                .collect(),
        }])
        .unwrap()
    };
    // (name, condition, exceptions, must be accepted); accepted rules must fire on their own
    // namespace's events unless listed in `silent`.
    let silent = ["not", "exception-excludes-own"];
    let cases: Vec<(&str, &str, Value, bool)> = vec![
        (
            "or",
            r#"ka.verb exists or ka.target.namespace = "victim""#,
            json!([]),
            true,
        ),
        (
            "or-first",
            r#"ka.target.namespace = "victim" or ka.verb exists"#,
            json!([]),
            true,
        ),
        (
            "not",
            r#"not ka.target.namespace = "attacker""#,
            json!([]),
            true,
        ),
        (
            "not-or",
            r#"not ka.verb = nothing or ka.verb exists"#,
            json!([]),
            true,
        ),
        (
            "ne",
            r#"ka.target.namespace != "attacker" or ka.verb exists"#,
            json!([]),
            true,
        ),
        ("macro", "always_true", json!([]), true),
        (
            "macro-or",
            "always_true or not always_true",
            json!([]),
            true,
        ),
        ("list", "ka.verb in (all_verbs)", json!([]), true),
        (
            "list-ns",
            "ka.target.namespace in (victim_namespaces) or ka.verb exists",
            json!([]),
            true,
        ),
        (
            "paren-close",
            r#"ka.verb exists) or (ka.verb exists"#,
            json!([]),
            false,
        ),
        ("paren-trailing", r#"ka.verb exists)"#, json!([]), false),
        ("paren-open", r#"(ka.verb exists"#, json!([]), false),
        (
            "comment",
            "ka.verb exists # ) or (ka.verb exists",
            json!([]),
            false,
        ),
        (
            "newlines",
            "ka.verb exists\n  or\n  ka.target.namespace = victim\n",
            json!([]),
            true,
        ),
        (
            "yaml-injection",
            "ka.verb exists\n- macro: always_true\n  condition: ka.verb exists",
            json!([]),
            false,
        ),
        ("undefined-macro", "some_undefined_macro", json!([]), false),
        (
            "string-quote",
            r#"ka.user.name = "x\") or (ka.verb exists" or ka.verb exists"#,
            json!([]),
            true,
        ),
        (
            "exception-value-injection",
            "ka.verb exists",
            ex(
                vec!["ka.user.name"],
                vec![],
                vec![vec![r#"x") or (ka.verb exists) or (ka.verb = "y"#]],
            ),
            true,
        ),
        (
            "exception-unspaced-injection",
            "ka.verb exists",
            ex(
                vec!["ka.verb"],
                vec!["in"],
                vec![vec!["x)))or((ka.verb=get"]],
            ),
            true,
        ),
        (
            "exception-field-injection",
            "ka.verb exists",
            ex(vec!["ka.verb = get) or (ka.verb"], vec![], vec![vec!["x"]]),
            false,
        ),
        (
            "exception-comp-injection",
            "ka.verb exists",
            ex(
                vec!["ka.verb"],
                vec![r#"= "x") or (ka.verb exists) or (ka.verb ="#],
                vec![vec!["x"]],
            ),
            false,
        ),
        (
            "exception-excludes-own",
            "ka.verb exists",
            ex(
                vec!["ka.target.namespace"],
                vec!["="],
                vec![vec!["attacker"]],
            ),
            true,
        ),
    ];
    let inputs = Inputs {
        rules_files: vec![rules_file("shared", 0, CLUSTER_RULES)],
        rules: cases
            .iter()
            .map(|(name, cond, exc, _)| {
                rule_spec(
                    "attacker",
                    name,
                    json!({"rule": format!("Rule {name}"), "condition": cond,
                    "output": "hit", "priority": "warning", "exceptions": exc}),
                )
            })
            .chain([rule_spec(
                "attacker",
                "yaml-in-text-fields",
                json!({"rule": "R: {x: [y]} # - macro: always_true", "condition": "ka.verb = nothing",
                    "desc": "d\n- macro: always_true\n  condition: ka.verb = never\n- list: all_verbs\n  items: []",
                    "output": "o\n- rule: Cluster Exec\n  enabled: false", "priority": "warning",
                    "tags": ["t\n- macro: always_true"]}),
            )])
            .collect(),
        ..Default::default()
    };
    let d = render(&k, &inputs);
    // Text fields are YAML strings, never structure: the namespace's file holds rules only.
    let ns_file = &d
        .rules_files
        .iter()
        .find(|(k, _)| k == "50-ns-attacker.yaml")
        .unwrap()
        .1;
    let items: Vec<yaml_serde::Mapping> = yaml_serde::from_str(ns_file).unwrap();
    for i in &items {
        for key in i.keys() {
            let key = key.as_str().unwrap();
            assert!(
                [
                    "rule",
                    "desc",
                    "condition",
                    "output",
                    "priority",
                    "source",
                    "tags",
                    "enabled"
                ]
                .contains(&key),
                "unexpected key {key} in a tenant file"
            );
        }
    }
    assert!(
        outcome(&d, ItemKind::FalcoRule, "yaml-in-text-fields")
            .error
            .is_none()
    );
    let rs = engine(&d);
    for (name, _, _, accepted) in &cases {
        let o = outcome(&d, ItemKind::FalcoRule, name);
        assert_eq!(o.error.is_none(), *accepted, "{name}: {:?}", o.error);
    }
    // No alert from a tenant rule outside its namespace.
    let foreign = alerts(&rs, &foreign_events());
    let leaked: Vec<&str> = foreign
        .iter()
        .map(|a| a.rule.as_str())
        .filter(|r| r.starts_with("attacker/"))
        .collect();
    assert!(
        leaked.is_empty(),
        "tenant rules matched foreign events: {leaked:?}"
    );
    // The cluster rule still sees every namespace (the suite's events do match something).
    assert!(foreign.iter().any(|a| a.rule == "Cluster Exec"));
    // Accepted rules are live in their own namespace (except the one excluding it).
    let own = alerts(&rs, &own_events());
    for (name, _, _, accepted) in &cases {
        let fired = own
            .iter()
            .any(|a| a.rule == format!("attacker/{name}: Rule {name}"));
        let expect = *accepted && !silent.contains(name);
        assert_eq!(fired, expect, "{name} fired={fired} on its own namespace");
    }
    // Every alert of a tenant rule carries its namespace, for namespaced sinks.
    for a in own.iter().filter(|a| a.rule.starts_with("attacker/")) {
        assert_eq!(
            a.output_fields["ka.target.namespace"], "attacker",
            "{}",
            a.rule
        );
    }
}

/// A tenant rule cannot override, disable or collide with a cluster rule or another tenant's.
#[test]
fn tenant_rules_cannot_override_others() {
    let k = kd(json!({"defaultRules": false}));
    let mut disabled = rule("attacker", "shadow", "ka.verb exists");
    disabled.spec.rule = "Cluster Exec".into();
    disabled.spec.enabled = false;
    let mut same_name = rule("victim", "r1", "ka.verb = get");
    same_name.spec.rule = "Same".into();
    let mut same_name2 = rule("attacker", "r1", "ka.verb = nothing");
    same_name2.spec.rule = "Same".into();
    let inputs = Inputs {
        rules_files: vec![rules_file("shared", 0, CLUSTER_RULES)],
        rules: vec![
            disabled,
            same_name,
            same_name2,
            rule("victim", "exec", "ka.target.subresource = exec"),
        ],
        ..Default::default()
    };
    let d = render(&k, &inputs);
    assert!(
        d.outcomes.iter().all(|o| o.error.is_none()),
        "{:?}",
        d.outcomes
    );
    let rs = engine(&d);
    // A cluster rule matching an event does not silence the namespace's own rule.
    let exec = alerts(
        &rs,
        &[event(Some("victim"), "create", "pods", Some("exec"), "u")],
    );
    let exec: Vec<&str> = exec.iter().map(|a| a.rule.as_str()).collect();
    assert_eq!(exec, ["Cluster Exec", "victim/exec: Rule exec"]);
    let got = alerts(
        &rs,
        &[
            event(Some("victim"), "create", "pods", Some("exec"), "u"),
            event(Some("victim"), "get", "pods", None, "u"),
        ],
    );
    let names: Vec<&str> = got.iter().map(|a| a.rule.as_str()).collect();
    assert!(names.contains(&"Cluster Exec"), "{names:?}");
    assert!(names.contains(&"victim/r1: Same"), "{names:?}");
    let all: Vec<String> = rs.rules().map(|r| r.name).collect();
    assert!(all.contains(&"attacker/r1: Same".to_string()));
    assert!(all.contains(&"attacker/shadow: Cluster Exec".to_string()));
}

/// A broken rule is reported and the others still load.
#[test]
fn an_invalid_rule_never_breaks_the_others() {
    let k = kd(json!({"defaultRules": false}));
    let mut bad_prio = rule("team-a", "bad-prio", "ka.verb = get");
    bad_prio.spec.priority = "urgent".into();
    let inputs = Inputs {
        rules: vec![
            rule("team-a", "good", "ka.verb = get"),
            rule("team-a", "bad-field", "ka.no.such.field = x"),
            rule("team-a", "bad-syntax", "ka.verb = "),
            bad_prio,
            rule("team-b", "good", "ka.verb = delete"),
        ],
        ..Default::default()
    };
    let d = render(&k, &inputs);
    for (n, want) in [
        ("bad-field", "ka.no.such.field"),
        ("bad-syntax", "parse"),
        ("bad-prio", "urgent"),
    ] {
        let e = outcome(&d, ItemKind::FalcoRule, n)
            .error
            .clone()
            .unwrap_or_default();
        assert!(e.contains(want), "{n}: {e}");
    }
    assert_eq!(d.status.rules, 2);
    assert_eq!(d.status.invalid_rules, 3);
    let rv = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "RulesValid")
        .unwrap();
    assert_eq!(rv.status, "False");
    assert!(rv.message.contains("ka.no.such.field"), "{}", rv.message);
    let rs = engine(&d);
    let got = alerts(
        &rs,
        &[
            event(Some("team-a"), "get", "pods", None, "u"),
            event(Some("team-b"), "delete", "pods", None, "u"),
        ],
    );
    assert_eq!(got.len(), 2, "{got:?}");
    // Status of an invalid item says so in RulesValid and Ready.
    let st = render::item_status(outcome(&d, ItemKind::FalcoRule, "bad-field"), true, &t0());
    assert!(st.conditions.iter().all(|c| c.status == "False"));
    assert_eq!(st.observed_generation, Some(1));
}

/// An invalid cluster rules file is reported and left out; files load by order, then name.
#[test]
fn cluster_rules_files_are_ordered_and_validated() {
    let k = kd(json!({"defaultRules": true}));
    let second = "- rule: Uses Macro\n  desc: d\n  condition: always_true and ka.verb = get\n  output: o\n  priority: INFO\n  source: k8s_audit\n";
    let inputs = Inputs {
        rules_files: vec![
            rules_file("b-second", 10, second),
            rules_file("a-first", 5, CLUSTER_RULES),
            rules_file("broken", 0, "- rule: x\n  condition: (\n"),
        ],
        ..Default::default()
    };
    let d = render(&k, &inputs);
    let keys: Vec<&str> = d.rules_files.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "00-kaudit-default.yaml",
            "10-cluster-001-a-first.yaml",
            "10-cluster-002-b-second.yaml"
        ]
    );
    assert!(
        outcome(&d, ItemKind::FalcoRulesFile, "broken")
            .error
            .is_some()
    );
    // A file from a ConfigMap key; a missing key is reported, not fatal.
    let mut from_cm = rules_file("from-cm", 20, "");
    from_cm.spec.rules = None;
    from_cm.spec.config_map_ref = Some(kaudit::operator::crd::ConfigMapKeyRef {
        namespace: "platform".into(),
        name: "rules".into(),
        key: "extra.yaml".into(),
    });
    let mut missing = from_cm.clone();
    missing.metadata.name = Some("missing".into());
    if let Some(r) = missing.spec.config_map_ref.as_mut() {
        r.key = "nope.yaml".into();
    }
    let mut inputs = inputs;
    inputs.rules_files = vec![from_cm, missing];
    inputs.config_maps.insert(
        ("platform".into(), "rules".into()),
        BTreeMap::from([("extra.yaml".to_string(), second.to_string())]),
    );
    let d = render(&kd(json!({"defaultRules": false})), &inputs);
    // `second` uses a macro no file defines any more: the engine says so.
    let e = outcome(&d, ItemKind::FalcoRulesFile, "from-cm")
        .error
        .clone()
        .unwrap_or_default();
    assert!(e.contains("always_true"), "{e}");
    let e = outcome(&d, ItemKind::FalcoRulesFile, "missing")
        .error
        .clone()
        .unwrap_or_default();
    assert!(e.contains("nope.yaml"), "{e}");
    inputs
        .rules_files
        .push(rules_file("a-macros", 0, CLUSTER_RULES));
    let d = render(&kd(json!({"defaultRules": false})), &inputs);
    assert!(
        outcome(&d, ItemKind::FalcoRulesFile, "from-cm")
            .error
            .is_none()
    );
    assert!(d.rules_files[1].1.contains("Uses Macro"));
    engine(&d);
}

/// Input statuses are the same whichever deployment asks: valid only if valid for every
/// deployment (a rule using a default macro fails where defaults are off, and says where), and
/// valid but not Ready when no deployment exists.
#[test]
fn input_statuses_agree_across_deployments() {
    let inputs = Inputs {
        rules: vec![
            rule("team-a", "plain", "ka.verb = get"),
            rule(
                "team-a",
                "uses-default-macro",
                "pod_request and ka.verb = create",
            ),
            rule("team-a", "broken", "ka.no.such.field = x"),
        ],
        cluster_sinks: vec![cluster_sink("all", json!({"type": "stdout"}))],
        ..Default::default()
    };
    let with_defaults = kd(json!({}));
    let mut strict = kd(json!({"defaultRules": false}));
    strict.metadata = meta(Some("other"), "strict");
    let find = |outs: &[render::Outcome], name: &str| {
        outs.iter().find(|o| o.name == name).cloned().unwrap()
    };

    let (outs, deployed) =
        render::input_outcomes(&[with_defaults.clone(), strict.clone()], &inputs).unwrap();
    assert!(deployed);
    assert!(find(&outs, "plain").error.is_none());
    assert!(find(&outs, "all").error.is_none());
    let e = find(&outs, "uses-default-macro").error.unwrap();
    assert!(
        e.contains("for KauditDeployment other/strict") && e.contains("pod_request"),
        "{e}"
    );
    // Invalid for every deployment: no deployment is singled out.
    let e = find(&outs, "broken").error.unwrap();
    assert!(
        e.contains("ka.no.such.field") && !e.contains("KauditDeployment"),
        "{e}"
    );
    // The same answer in any order of deployments.
    let (again, _) = render::input_outcomes(&[strict, with_defaults.clone()], &inputs).unwrap();
    assert_eq!(outs, again);

    let (outs, _) = render::input_outcomes(&[with_defaults], &inputs).unwrap();
    assert!(find(&outs, "uses-default-macro").error.is_none());
    let st = render::item_status(&find(&outs, "plain"), true, &t0());
    assert!(st.conditions.iter().all(|c| c.status == "True"), "{st:?}");

    // No deployment: validated as the default deployment would load it, but not Ready.
    let (outs, deployed) = render::input_outcomes(&[], &inputs).unwrap();
    assert!(!deployed);
    let st = render::item_status(&find(&outs, "uses-default-macro"), deployed, &t0());
    let cond = |t: &str| st.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(cond("RulesValid").status, "True");
    assert_eq!(cond("Ready").status, "False");
    assert_eq!(cond("Ready").reason, "NoDeployment");
}

/// A rule of `bytes` (about) whose condition lists users.
fn big_rule(ns: &str, name: &str, bytes: usize) -> FalcoRule {
    let users: Vec<String> = (0..bytes / 12).map(|i| format!("user-{i:05}")).collect();
    rule(ns, name, &format!("ka.user.name in ({})", users.join(", ")))
}

/// No input can push the rules ConfigMap past the apiserver's limit: an oversized rule fails
/// alone, and a namespace flooding the ConfigMap loses its own rules (largest first) while
/// every other namespace's rules stay.
#[test]
fn oversized_rules_fail_alone_and_a_flood_only_costs_its_namespace() {
    use kaudit::operator::render::limits::{MAX_RULE_BYTES, MAX_RULES_BYTES};
    let k = kd(json!({"defaultRules": false}));
    let mut rules: Vec<FalcoRule> = (0..40)
        .map(|i| big_rule("flood", &format!("r{i:02}"), 28 * 1024 + i * 10))
        .collect();
    rules.push(big_rule("flood", "huge", MAX_RULE_BYTES + 4096));
    rules.push(rule("team", "small", "ka.verb = create"));
    let inputs = Inputs {
        rules,
        ..Default::default()
    };
    let d = render(&k, &inputs);
    let huge = outcome(&d, ItemKind::FalcoRule, "huge").error.clone();
    assert!(huge.as_deref().unwrap().contains("more than"), "{huge:?}");
    assert!(outcome(&d, ItemKind::FalcoRule, "small").error.is_none());
    let left_out: Vec<&str> = d
        .outcomes
        .iter()
        .filter(|o| o.error.as_deref().is_some_and(|e| e.contains("left out")))
        .map(|o| o.name.as_str())
        .collect();
    assert!(!left_out.is_empty());
    // The largest went first.
    assert!(left_out.contains(&"r39"), "{left_out:?}");
    let total: usize = d.rules_files.iter().map(|(k, t)| k.len() + t.len()).sum();
    assert!(total <= MAX_RULES_BYTES, "{total}");
    // What was kept still loads.
    engine(&d);
}

/// A tenant rule over the cost limits (issue 13: 20,000 distinct fields made every event
/// slower) is refused with the reason in its outcome; the namespace's other rules stay.
#[test]
fn a_tenant_rule_reading_too_many_fields_is_refused() {
    let k = kd(json!({"defaultRules": false}));
    let checks: Vec<String> = (0..100).map(|i| format!("jevt.value[/f{i}] = x")).collect();
    let inputs = Inputs {
        rules: vec![
            rule("team", "wide", &checks.join(" or ")),
            rule("team", "small", "ka.verb = create"),
        ],
        ..Default::default()
    };
    let d = render(&k, &inputs);
    let wide = outcome(&d, ItemKind::FalcoRule, "wide").error.clone();
    assert!(
        wide.as_deref()
            .is_some_and(|e| e.contains("distinct fields")),
        "{wide:?}"
    );
    assert!(outcome(&d, ItemKind::FalcoRule, "small").error.is_none());
    engine(&d);
}

/// A generated tenant rule: conditions of every size and shape (many fields, regexes good,
/// huge and broken, junk syntax, unknown fields), outputs with absurd widths and lengths.
fn generated_rule(g: &mut Gen, ns: &str, name: &str) -> FalcoRule {
    let atoms = [
        "ka.verb = get".to_string(),
        "ka.target.resource in (pods, secrets)".to_string(),
        "ka.user.name startswith system:".to_string(),
        "ka.uri regex '^/api/v1/.*'".to_string(),
        format!("ka.uri regex '{}'", "(a+)+".repeat(80)),
        format!("ka.uri regex '{}'", "x{1000}{1000}"),
        "ka.uri regex '(['".to_string(),
        "ka.no.such.field = 1".to_string(),
        "ka.verb = ".to_string(),
        "(((((((((((ka.verb = get)))))))))))".to_string(),
        "jevt.value[/requestObject/spec/containers/0/image] contains latest".to_string(),
    ];
    let mut parts = Vec::new();
    for _ in 0..1 + g.below(4) {
        parts.push(atoms[g.below(atoms.len())].clone());
    }
    if g.below(4) == 0 {
        // Many distinct fields: past the tenant limit (64) about half of the time.
        let n = 1 + g.below(130);
        parts.push(format!(
            "({})",
            (0..n)
                .map(|i| format!("jevt.value[/g{i}] = x"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    if g.below(6) == 0 {
        // A long condition: past the tenant limit (32 KiB) now and then.
        let n = 1 + g.below(5000);
        parts.push(format!(
            "ka.user.name in ({})",
            (0..n)
                .map(|i| format!("u{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let outputs = [
        "hit %ka.verb".to_string(),
        "%1000000000ka.verb".to_string(),
        format!("{} %ka.user.name", "y".repeat(200_000)),
        "%ka.user.name ".repeat(5000),
        "%-99999999999999999999ka.verb".to_string(),
        "%jevt.obj".to_string(),
    ];
    let output = outputs[g.below(outputs.len())].clone();
    let priority = ["warning", "critical", "urgent", "debug"][g.below(4)];
    rule_spec(
        ns,
        name,
        json!({"rule": format!("Gen {name}"), "condition": parts.join(" and "),
               "output": output, "priority": priority}),
    )
}

/// Issue 13's fuzz-style proof for rules: rounds of generated tenant rules through the
/// operator's validation, then loaded as `kaudit serve` loads the rendered files (with the
/// tenant limits) and run over events. Whatever the operator accepts, kaudit takes; no rendered
/// output passes the length cap; and another namespace's rule keeps raising its alert.
#[test]
fn generated_tenant_rules_fail_alone_and_never_stop_detection() {
    let k = kd(json!({"defaultRules": false}));
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    let (mut accepted, mut refused) = (0, 0);
    let events = [
        event(Some("team-x"), "get", "pods", None, "system:node"),
        event(Some("team-x"), "create", "secrets", None, "u7"),
        event(Some("team-good"), "delete", "pods", None, "alice"),
    ];
    for round in 0..6 {
        let mut rules: Vec<FalcoRule> = (0..10)
            .map(|i| generated_rule(&mut g, "team-x", &format!("gen-{round}-{i}")))
            .collect();
        rules.push(rule("team-good", "keep", "ka.verb = delete"));
        let inputs = Inputs {
            rules,
            ..Default::default()
        };
        let d = render(&k, &inputs);
        for o in d.outcomes.iter().filter(|o| o.kind == ItemKind::FalcoRule) {
            if o.error.is_some() {
                refused += 1;
            } else {
                accepted += 1;
            }
        }
        assert!(
            outcome(&d, ItemKind::FalcoRule, "keep").error.is_none(),
            "round {round}"
        );
        let rs = Ruleset::load_sources_limited(
            &d.rules_files,
            &LoadOptions {
                rule_matching: RuleMatching::All,
                ..Default::default()
            },
            Some(&kaudit::rules::RuleLimits::tenant()),
        )
        .unwrap_or_else(|e| panic!("round {round}: kaudit refuses what the operator accepted: {e}"))
        .0;
        let got = alerts(&rs, &events);
        assert!(
            got.iter().any(|a| a.rule == "team-good/keep: Rule keep"),
            "round {round}: {:?}",
            got.iter().map(|a| &a.rule).collect::<Vec<_>>()
        );
        for a in &got {
            assert!(
                a.output.len() <= 64 * 1024 + 64,
                "round {round}: {} output bytes from {}",
                a.output.len(),
                a.rule
            );
        }
    }
    assert!(
        accepted > 0 && refused > 0,
        "the generator exercised both sides: {accepted} accepted, {refused} refused"
    );
}
