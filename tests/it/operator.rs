//! The operator's pure half: CRDs, rendering (golden), tenancy (adversarial, with the real
//! rules engine), hashes and reloads, and every shipped manifest parsing into its typed object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kaudit::alert::Alert;
use kaudit::audit::AuditEvent;
use kaudit::config::{Config, RuleMatching};
use kaudit::operator::crd::{
    AlertSink, AlertSinkSpec, ClusterAlertSink, ClusterAlertSinkSpec, FalcoRule, FalcoRuleSpec,
    FalcoRulesFile, FalcoRulesFileSpec, KauditDeployment, KauditDeploymentSpec, RuleException,
    SinkSpec,
};
use kaudit::operator::reconcile::{self, Desired, Inputs, ItemKind, Object};
use kaudit::rules::{AlertFilter, LoadOptions, Ruleset};
use kube::api::ObjectMeta;
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn t0() -> Time {
    Time(Timestamp::UNIX_EPOCH)
}

pub fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(Into::into),
        uid: Some(format!("uid-{}-{name}", ns.unwrap_or("cluster"))),
        generation: Some(1),
        ..Default::default()
    }
}

pub fn kd(spec: Value) -> KauditDeployment {
    let spec: KauditDeploymentSpec = serde_json::from_value(spec).unwrap();
    let mut k = KauditDeployment::new("kaudit", spec);
    k.metadata = meta(Some("kaudit-system"), "kaudit");
    k
}

pub fn rule(ns: &str, name: &str, cond: &str) -> FalcoRule {
    rule_spec(
        ns,
        name,
        json!({"rule": format!("Rule {name}"), "condition": cond,
        "output": "hit user=%ka.user.name verb=%ka.verb", "priority": "warning"}),
    )
}

pub fn rule_spec(ns: &str, name: &str, spec: Value) -> FalcoRule {
    let spec: FalcoRuleSpec = serde_json::from_value(spec).unwrap();
    let mut r = FalcoRule::new(name, spec);
    r.metadata = meta(Some(ns), name);
    r
}

fn sink(ns: &str, name: &str, spec: Value) -> AlertSink {
    let sink: SinkSpec = serde_json::from_value(spec).unwrap();
    let mut s = AlertSink::new(name, AlertSinkSpec { sink });
    s.metadata = meta(Some(ns), name);
    s
}

fn cluster_sink(name: &str, spec: Value) -> ClusterAlertSink {
    let sink: SinkSpec = serde_json::from_value(spec).unwrap();
    let mut s = ClusterAlertSink::new(name, ClusterAlertSinkSpec { sink });
    s.metadata = meta(None, name);
    s
}

fn rules_file(name: &str, order: i32, text: &str) -> FalcoRulesFile {
    let mut f = FalcoRulesFile::new(
        name,
        FalcoRulesFileSpec {
            order,
            rules: Some(text.into()),
            config_map_ref: None,
        },
    );
    f.metadata = meta(None, name);
    f
}

/// Cluster rules every tenant may use: a macro and lists that match everything.
const CLUSTER_RULES: &str = r#"
- macro: always_true
  condition: (ka.verb exists)
- list: all_verbs
  items: [get, list, watch, create, update, patch, delete, deletecollection]
- list: victim_namespaces
  items: [victim]
- rule: Cluster Exec
  desc: any exec
  condition: ka.target.subresource = exec
  output: exec by %ka.user.name in %ka.target.namespace
  priority: NOTICE
  source: k8s_audit
"#;

fn event(
    ns: Option<&str>,
    verb: &str,
    resource: &str,
    sub: Option<&str>,
    user: &str,
) -> AuditEvent {
    let mut obj = json!({"resource": resource, "name": "p", "apiVersion": "v1"});
    if let Some(ns) = ns {
        obj["namespace"] = json!(ns);
    }
    if let Some(s) = sub {
        obj["subresource"] = json!(s);
    }
    let path = match ns {
        Some(ns) => format!("/api/v1/namespaces/{ns}/{resource}/p"),
        None => format!("/api/v1/{resource}/p"),
    };
    AuditEvent::from_json(json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": uuid::Uuid::new_v4().to_string(), "stage": "ResponseComplete",
        "requestURI": path, "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.1"], "userAgent": "kubectl",
        "objectRef": obj,
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-11-22T09:10:01.123456Z",
        "stageTimestamp": "2026-11-22T09:10:01.456789Z",
    }))
    .unwrap()
}

/// Events of every shape outside namespace `attacker`.
fn foreign_events() -> Vec<AuditEvent> {
    let mut v = Vec::new();
    for ns in [
        Some("victim"),
        Some("kube-system"),
        Some("attacker-2"),
        Some("xattacker"),
        None,
    ] {
        for verb in ["get", "list", "create", "delete", "patch"] {
            v.push(event(ns, verb, "pods", None, "mallory"));
            v.push(event(ns, verb, "secrets", None, "x\") or (ka.verb exists"));
        }
        v.push(event(ns, "create", "pods", Some("exec"), "mallory"));
    }
    v.push(event(
        None,
        "create",
        "clusterrolebindings",
        None,
        "mallory",
    ));
    v
}

fn own_events() -> Vec<AuditEvent> {
    let mut v = Vec::new();
    for verb in ["get", "list", "create", "delete", "patch"] {
        v.push(event(Some("attacker"), verb, "pods", None, "mallory"));
        v.push(event(Some("attacker"), verb, "secrets", None, "bob"));
    }
    v.push(event(
        Some("attacker"),
        "create",
        "pods",
        Some("exec"),
        "mallory",
    ));
    v
}

fn render(kd: &KauditDeployment, inputs: &Inputs) -> Desired {
    reconcile::desired(kd, inputs, &t0()).unwrap()
}

/// The engine as the rendered kaudit config sets it up (files, rule matching).
fn engine(d: &Desired) -> Ruleset {
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert_eq!(cfg.rules.rule_matching, RuleMatching::All);
    let opts = LoadOptions {
        rule_matching: cfg.rules.rule_matching,
        ..Default::default()
    };
    Ruleset::load_sources(&d.rules_files, &opts)
        .unwrap_or_else(|e| panic!("rendered rules do not load: {e}"))
        .0
}

fn alerts(rs: &Ruleset, evs: &[AuditEvent]) -> Vec<Alert> {
    let mut out = Vec::new();
    for e in evs {
        rs.evaluate(e, &mut out);
    }
    out
}

fn outcome<'a>(d: &'a Desired, kind: ItemKind, name: &str) -> &'a reconcile::Outcome {
    d.outcomes
        .iter()
        .find(|o| o.kind == kind && o.name == name)
        .unwrap_or_else(|| panic!("no outcome for {name}"))
}

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
    let st = reconcile::item_status(outcome(&d, ItemKind::FalcoRule, "bad-field"), true, &t0());
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

/// Namespaced sinks only pass their namespace's alerts, whatever their filter says.
#[test]
fn namespaced_sink_filters_are_scoped() {
    let k = kd(json!({}));
    let cases = [
        ("plain", None, true),
        (
            "or",
            Some(r#"priority = Debug or ka.target.namespace = "victim""#),
            true,
        ),
        ("not", Some(r#"not ka.target.namespace = "attacker""#), true),
        ("paren", Some(r#"rule exists) or (rule exists"#), false),
        ("bad", Some("nosuchthing"), false),
    ];
    let inputs = Inputs {
        sinks: cases
            .iter()
            .map(|(n, f, _)| sink("attacker", n, json!({"type": "stdout", "filter": f})))
            .collect(),
        ..Default::default()
    };
    let d = render(&k, &inputs);
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    let mut alert = kaudit::alert::Alert {
        uuid: uuid::Uuid::new_v4(),
        time: chrono::Utc::now(),
        rule: "r".into(),
        priority: kaudit::alert::Priority::Debug,
        source: "k8s_audit".into(),
        hostname: "h".into(),
        output: "o".into(),
        output_fields: serde_json::Map::new(),
        tags: vec![],
    };
    for (n, _, ok) in cases {
        assert_eq!(
            outcome(&d, ItemKind::AlertSink, n).error.is_none(),
            ok,
            "{n}"
        );
        if !ok {
            continue;
        }
        let s = cfg
            .sinks
            .iter()
            .find(|s| s.name == format!("ns_attacker_{n}"))
            .unwrap();
        let f = AlertFilter::compile(s.filter.as_deref().unwrap()).unwrap();
        alert
            .output_fields
            .insert("ka.target.namespace".into(), json!("victim"));
        assert!(!f.matches(&alert), "{n} passed a victim alert");
        alert.output_fields.remove("ka.target.namespace");
        assert!(!f.matches(&alert), "{n} passed an alert without namespace");
        alert
            .output_fields
            .insert("ka.target.namespace".into(), json!("attacker"));
        if n != "not" {
            assert!(f.matches(&alert), "{n} refused its own alert");
        }
    }
}

/// End to end through the rendered config: a team's rule raises alerts in its namespace only,
/// and each namespaced sink passes its own namespace's alerts only; a cluster sink gets all.
#[test]
fn alerts_reach_only_their_namespace_sinks() {
    let k = kd(json!({"defaultRules": false}));
    let inputs = Inputs {
        rules: vec![
            rule("team-a", "any", "ka.verb exists"),
            rule("team-b", "any", "ka.verb exists"),
        ],
        sinks: vec![
            sink("team-a", "s", json!({"type": "stdout"})),
            sink(
                "team-b",
                "s",
                json!({"type": "stdout", "filter": "priority = Warning or not priority = Warning"}),
            ),
        ],
        cluster_sinks: vec![cluster_sink("all", json!({"type": "stdout"}))],
        ..Default::default()
    };
    let d = render(&k, &inputs);
    let rs = engine(&d);
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    let got = alerts(
        &rs,
        &[
            event(Some("team-a"), "get", "pods", None, "u"),
            event(Some("team-b"), "get", "pods", None, "u"),
        ],
    );
    assert_eq!(got.len(), 2, "{got:?}");
    for s in &cfg.sinks {
        let f = s
            .filter
            .as_deref()
            .map(|f| AlertFilter::compile(f).unwrap());
        let passed: Vec<&str> = got
            .iter()
            .filter(|a| f.as_ref().is_none_or(|f| f.matches(a)))
            .map(|a| a.rule.as_str())
            .collect();
        match s.name.as_str() {
            "ns_team-a_s" => assert_eq!(passed, ["team-a/any: Rule any"]),
            "ns_team-b_s" => assert_eq!(passed, ["team-b/any: Rule any"]),
            "cluster_all" => assert_eq!(passed.len(), 2),
            other => panic!("unexpected sink {other}"),
        }
    }
}

/// Credentials only through Secret references; a namespaced sink only reads its own Secrets.
#[test]
fn sink_credentials_come_from_secrets_only() {
    let k = kd(json!({}));
    let mut secrets = BTreeMap::new();
    secrets.insert(
        ("team-a".to_string(), "nats".to_string()),
        BTreeMap::from([("password".to_string(), b"s3cret".to_vec())]),
    );
    secrets.insert(
        ("victim".to_string(), "nats".to_string()),
        BTreeMap::from([("password".to_string(), b"victim-pw".to_vec())]),
    );
    let nats = |extra: Value, refs: Value| {
        let mut settings = json!({"servers": ["nats://nats:4222"], "subject": "falco.{priority}", "user": "kaudit"});
        if let (Value::Object(s), Value::Object(e)) = (&mut settings, extra) {
            s.extend(e);
        }
        json!({"type": "nats", "settings": settings, "secretRefs": refs})
    };
    let inputs = Inputs {
        sinks: vec![
            sink(
                "team-a",
                "ok",
                nats(
                    json!({}),
                    json!([{"setting": "password_file", "name": "nats", "key": "password"}]),
                ),
            ),
            sink(
                "team-a",
                "inline",
                nats(json!({"password": "x"}), json!([])),
            ),
            sink(
                "team-a",
                "inline-file",
                nats(
                    json!({"password_file": "/etc/kaudit/config/cred.x"}),
                    json!([]),
                ),
            ),
            sink(
                "team-a",
                "steal",
                nats(
                    json!({}),
                    json!([{"setting": "password_file", "namespace": "victim", "name": "nats", "key": "password"}]),
                ),
            ),
            sink(
                "team-a",
                "missing",
                nats(
                    json!({}),
                    json!([{"setting": "password_file", "name": "nope", "key": "password"}]),
                ),
            ),
            sink(
                "team-a",
                "not-a-file",
                nats(
                    json!({}),
                    json!([{"setting": "servers", "name": "nats", "key": "password"}]),
                ),
            ),
            sink(
                "team-a",
                "header",
                json!({"type": "http", "settings": {"url": "http://x/", "headers": {"Authorization": "Bearer x"}}}),
            ),
        ],
        secrets,
        ..Default::default()
    };
    let d = render(&k, &inputs);
    assert!(outcome(&d, ItemKind::AlertSink, "ok").error.is_none());
    for n in [
        "inline",
        "inline-file",
        "steal",
        "missing",
        "not-a-file",
        "header",
    ] {
        assert!(
            outcome(&d, ItemKind::AlertSink, n).error.is_some(),
            "{n} accepted"
        );
    }
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert!(
        !d.kaudit_config.contains("s3cret"),
        "credential in the config"
    );
    assert_eq!(cfg.sinks.len(), 1);
    let secret = d
        .objects
        .iter()
        .find_map(|o| match o {
            Object::Secret(s) => Some(s),
            _ => None,
        })
        .unwrap();
    let data = secret.data.as_ref().unwrap();
    let cred_key = data
        .keys()
        .find(|k| k.starts_with("cred.ns_team-a_ok.password_file."))
        .unwrap();
    assert_eq!(data[cred_key].0, b"s3cret");
    assert!(
        d.kaudit_config
            .contains(&format!("/etc/kaudit/config/{cred_key}"))
    );
    assert!(!data.values().any(|v| v.0 == b"victim-pw"));
}

fn deployment<'a>(d: &'a Desired, name: &str) -> &'a Deployment {
    d.objects
        .iter()
        .find_map(|o| match o {
            Object::Deployment(x) if x.metadata.name.as_deref() == Some(name) => Some(x),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Deployment {name}"))
}

/// The rules-hash annotation of Falco's pod template (a change rolls Falco).
fn falco_rules_hash(d: &Desired) -> String {
    deployment(d, "kaudit-falco")
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()[reconcile::RULES_HASH_ANNOTATION]
        .clone()
}

fn config_secret(d: &Desired) -> &Secret {
    d.objects
        .iter()
        .find_map(|o| match o {
            Object::Secret(x) => Some(x),
            _ => None,
        })
        .unwrap()
}

/// A rules change rolls Falco only; a sink change rolls nothing (kaudit reloads its config);
/// kaudit's config is mounted whole (no subPath) so that updates reach the pod.
#[test]
fn rules_changes_roll_falco_and_sink_changes_reload_kaudit() {
    let k = kd(json!({"detect": "both"}));
    let base = Inputs {
        rules: vec![rule("team-a", "r", "ka.verb = get")],
        cluster_sinks: vec![cluster_sink("all", json!({"type": "stdout"}))],
        ..Default::default()
    };
    let d0 = render(&k, &base);
    let mut rules_changed = base.clone();
    rules_changed.rules[0].spec.condition = "ka.verb = list".into();
    let d1 = render(&k, &rules_changed);
    let mut sink_changed = base.clone();
    sink_changed.cluster_sinks[0].spec.sink.min_priority = Some("error".into());
    let d2 = render(&k, &sink_changed);
    let hash = falco_rules_hash;
    assert_ne!(hash(&d0), hash(&d1), "a rules change must roll Falco");
    assert_eq!(hash(&d0), hash(&d2), "a sink change must not roll Falco");
    assert_eq!(
        deployment(&d0, "kaudit"),
        deployment(&d1, "kaudit"),
        "rules reload in kaudit"
    );
    assert_eq!(
        deployment(&d0, "kaudit"),
        deployment(&d2, "kaudit"),
        "sinks reload in kaudit"
    );
    assert_ne!(config_secret(&d0), config_secret(&d2));
    let pod = deployment(&d0, "kaudit")
        .spec
        .template
        .spec
        .as_ref()
        .unwrap();
    for m in pod.containers[0].volume_mounts.as_ref().unwrap() {
        assert!(m.sub_path.is_none(), "{} uses subPath", m.name);
    }
    assert!(
        deployment(&d0, "kaudit")
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .is_none()
    );
}

/// Mode switches prune what is no longer wanted; the Falco workload follows `falco.mode`.
#[test]
fn detect_and_falco_modes_choose_the_objects() {
    let keys = |d: &Desired| d.objects.iter().map(Object::key).collect::<Vec<_>>();
    let d = render(&kd(json!({})), &Inputs::default());
    assert!(
        !keys(&d).iter().any(|k| k.contains("falco")),
        "{:?}",
        keys(&d)
    );
    assert!(d.prune.contains(&"Deployment/kaudit-falco".to_string()));
    let d = render(
        &kd(json!({"detect": "falco", "falco": {"mode": "DaemonSet"}})),
        &Inputs::default(),
    );
    assert!(
        keys(&d).contains(&"DaemonSet/kaudit-falco".to_string()),
        "{:?}",
        keys(&d)
    );
    assert!(d.prune.contains(&"Deployment/kaudit-falco".to_string()));
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert_eq!(
        cfg.falco.forward_url,
        "http://kaudit-falco.kaudit-system.svc:8765/k8s-audit"
    );
    assert!(cfg.rules.files.is_empty());
}

fn golden(name: &str, actual: &str) {
    let path = root().join("tests/it/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{} differs; rerun with UPDATE_GOLDEN=1 and review the diff",
        path.display()
    );
}

/// The Falco intake token of the golden deployment (the controller issues a random one).
const GOLDEN_TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The whole desired state of a representative deployment, golden-file style.
#[test]
fn desired_state_golden() {
    let k = kd(json!({
        "detect": "both", "defaultRules": false, "replicas": 2,
        "falco": {"mode": "Deployment"},
        "service": {"type": "ClusterIP", "port": 443, "tlsSecret": "kaudit-tls", "tokenSecret": "kaudit-tokens"},
        "podTemplate": {"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}},
    }));
    let mut secrets = BTreeMap::new();
    secrets.insert(
        ("security".to_string(), "siem-token".to_string()),
        BTreeMap::from([("authorization".to_string(), b"Bearer abc".to_vec())]),
    );
    let inputs = Inputs {
        rules_files: vec![rules_file("shared", 0, CLUSTER_RULES)],
        rules: vec![
            rule_spec(
                "payments",
                "shell-in-container",
                json!({
                    "rule": "Shell in a container", "desc": "exec of a shell",
                    "condition": "ka.target.subresource = exec and ka.uri.param[command] in (sh, bash)",
                    "output": "shell in %ka.target.name by %ka.user.name", "priority": "warning",
                    "tags": ["shell"],
                    "exceptions": [{"name": "ops", "fields": ["ka.user.name"], "values": [["ops@example.com"]]}],
                }),
            ),
            rule("payments", "broken", "ka.verb = "),
        ],
        sinks: vec![sink(
            "payments",
            "team",
            json!({"type": "file", "minPriority": "notice", "settings": {"path": "alerts.json"}}),
        )],
        cluster_sinks: vec![cluster_sink(
            "siem",
            json!({"type": "http", "settings": {"url": "https://siem.example.com/alerts"},
            "secretRefs": [{"setting": "header_files.Authorization", "namespace": "security", "name": "siem-token", "key": "authorization"}]}),
        )],
        secrets,
        intake_tokens: BTreeMap::from([(
            ("kaudit-system".to_string(), "kaudit".to_string()),
            GOLDEN_TOKEN.to_string(),
        )]),
        ..Default::default()
    };
    let d = render(&k, &inputs);
    let mut out = reconcile::objects_yaml(&d.objects).unwrap();
    out.push_str("--- # kaudit.yaml, as in Secret/kaudit-config\n");
    out.push_str(&d.kaudit_config);
    out.push_str("--- # prune\n");
    out.push_str(&yaml_serde::to_string(&d.prune).unwrap());
    out.push_str("--- # outcomes\n");
    for o in &d.outcomes {
        out.push_str(&format!(
            "# {:?} {:?}/{} -> {:?} {:?}\n",
            o.kind, o.namespace, o.name, o.rendered_name, o.error
        ));
    }
    golden("operator_desired.yaml", &out);
    // The rendered config is a valid kaudit config.
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert_eq!(cfg.sinks.len(), 2);
}

/// The binary's `kaudit crds` prints exactly deploy/crds.yaml.
#[test]
fn kaudit_crds_command_prints_the_crds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = std::fs::read_to_string(root().join("deploy/crds.yaml")).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout) == file);
}

/// The line after which deploy/install.yaml holds `kaudit crds` minus its first line.
const INSTALL_MARKER: &str = "# ---- CRDs: `kaudit crds` from here on ----\n";

#[test]
fn crds_yaml_matches_deploy_and_has_names() {
    let text = kaudit::operator::crd::crds_yaml().unwrap();
    let file = std::fs::read_to_string(root().join("deploy/crds.yaml")).unwrap();
    assert!(
        text == file,
        "deploy/crds.yaml drifted: run `kaudit crds > deploy/crds.yaml`"
    );
    let install = std::fs::read_to_string(root().join("deploy/install.yaml")).unwrap();
    let (_, tail) = install
        .split_once(INSTALL_MARKER)
        .expect("CRD marker in deploy/install.yaml");
    let generated = text.split_once('\n').unwrap().1;
    assert!(
        tail == generated,
        "deploy/install.yaml's CRDs drifted from `kaudit crds` (see docs/operator.md)"
    );
    let crds = kaudit::operator::crd::all_crds();
    let names: Vec<(&str, &str)> = crds
        .iter()
        .map(|c| (c.spec.names.kind.as_str(), c.spec.scope.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("FalcoRule", "Namespaced"),
            ("FalcoRulesFile", "Cluster"),
            ("AlertSink", "Namespaced"),
            ("ClusterAlertSink", "Cluster"),
            ("KauditDeployment", "Namespaced")
        ]
    );
    for c in &crds {
        assert_eq!(c.spec.group, "kaudit.io");
        assert!(
            c.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty())
        );
        let v = &c.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.additional_printer_columns
                .as_ref()
                .is_some_and(|p| p.len() >= 2)
        );
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }
}

/// Every key of `orig` survives a typed round trip (catches typos the types would drop).
fn assert_no_field_dropped(orig: &Value, back: &Value, path: &str, file: &Path) {
    match (orig, back) {
        (Value::Object(o), Value::Object(b)) => {
            for (k, v) in o {
                let bv = b.get(k).unwrap_or_else(|| {
                    panic!("{}: {path}.{k} is not a field of the type", file.display())
                });
                assert_no_field_dropped(v, bv, &format!("{path}.{k}"), file);
            }
        }
        (Value::Array(o), Value::Array(b)) => {
            assert_eq!(o.len(), b.len(), "{}: {path}", file.display());
            for (i, (x, y)) in o.iter().zip(b).enumerate() {
                assert_no_field_dropped(x, y, &format!("{path}[{i}]"), file);
            }
        }
        _ => {}
    }
}

fn check_typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value, file: &Path) {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
        panic!(
            "{}: {} {}: {e}",
            file.display(),
            doc["kind"],
            doc["metadata"]["name"]
        )
    });
    let back = serde_json::to_value(&t).unwrap();
    assert_no_field_dropped(doc, &back, "", file);
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // The Helm chart's sources are templates, not manifests (tests/it/kube/helm.rs checks
        // that they render install.yaml).
        if p.is_dir() && !p.ends_with("deploy/helm") {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// Every YAML under deploy/ and examples/operator/ parses into its typed object; the operator
/// examples also render (sinks and rules the operator accepts, kafka aside until it lands).
#[test]
fn shipped_manifests_parse_into_their_types() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    yaml_files(&root().join("examples/operator"), &mut files);
    files.sort();
    let mut kinds = BTreeMap::<String, usize>::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for d in yaml_serde::Deserializer::from_str(&text) {
            let y: yaml_serde::Value = serde::Deserialize::deserialize(d).unwrap();
            if y.is_null() {
                continue;
            }
            let doc: Value = serde_json::to_value(y).unwrap();
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no kind", f.display()))
                .to_string();
            match (doc["apiVersion"].as_str().unwrap_or(""), kind.as_str()) {
                ("v1", "Namespace") => check_typed::<Namespace>(&doc, f),
                ("v1", "ConfigMap") => check_typed::<ConfigMap>(&doc, f),
                ("v1", "Secret") => check_typed::<Secret>(&doc, f),
                ("v1", "Service") => check_typed::<Service>(&doc, f),
                ("v1", "ServiceAccount") => check_typed::<ServiceAccount>(&doc, f),
                ("apps/v1", "Deployment") => check_typed::<Deployment>(&doc, f),
                ("apps/v1", "DaemonSet") => check_typed::<DaemonSet>(&doc, f),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    check_typed::<ClusterRole>(&doc, f)
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    check_typed::<ClusterRoleBinding>(&doc, f)
                }
                ("rbac.authorization.k8s.io/v1", "Role") => check_typed::<Role>(&doc, f),
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                    check_typed::<RoleBinding>(&doc, f)
                }
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                    check_typed::<CustomResourceDefinition>(&doc, f)
                }
                ("kaudit.io/v1alpha1", "FalcoRule") => check_typed::<FalcoRule>(&doc, f),
                ("kaudit.io/v1alpha1", "FalcoRulesFile") => check_typed::<FalcoRulesFile>(&doc, f),
                ("kaudit.io/v1alpha1", "AlertSink") => check_typed::<AlertSink>(&doc, f),
                ("kaudit.io/v1alpha1", "ClusterAlertSink") => {
                    check_typed::<ClusterAlertSink>(&doc, f)
                }
                ("kaudit.io/v1alpha1", "KauditDeployment") => {
                    check_typed::<KauditDeployment>(&doc, f)
                }
                (av, k) => panic!("{}: no typed check for {av} {k}", f.display()),
            }
            *kinds.entry(kind).or_default() += 1;
        }
    }
    for k in [
        "CustomResourceDefinition",
        "ClusterRole",
        "Deployment",
        "FalcoRule",
        "AlertSink",
        "ClusterAlertSink",
        "KauditDeployment",
    ] {
        assert!(kinds.contains_key(k), "no {k} shipped: {kinds:?}");
    }
}

/// The operator examples render: every rule and sink valid, a namespaced and a cluster sink of
/// every sink type.
#[test]
fn operator_examples_render() {
    let dir = root().join("examples/operator");
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    let mut inputs = Inputs::default();
    let mut kds = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for d in yaml_serde::Deserializer::from_str(&text) {
            let doc: Value = serde_json::to_value(
                <yaml_serde::Value as serde::Deserialize>::deserialize(d).unwrap(),
            )
            .unwrap();
            let uid = json!(format!(
                "uid-{}",
                doc["metadata"]["name"].as_str().unwrap_or("")
            ));
            let mut doc = doc;
            doc["metadata"]["uid"] = uid;
            match doc["kind"].as_str() {
                Some("FalcoRule") => inputs.rules.push(serde_json::from_value(doc).unwrap()),
                Some("FalcoRulesFile") => inputs
                    .rules_files
                    .push(serde_json::from_value(doc).unwrap()),
                Some("AlertSink") => inputs.sinks.push(serde_json::from_value(doc).unwrap()),
                Some("ClusterAlertSink") => inputs
                    .cluster_sinks
                    .push(serde_json::from_value(doc).unwrap()),
                Some("KauditDeployment") => {
                    kds.push(serde_json::from_value::<KauditDeployment>(doc).unwrap())
                }
                Some("Secret") => {
                    let s: Secret = serde_json::from_value(doc).unwrap();
                    let mut data: BTreeMap<String, Vec<u8>> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in s.string_data.unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    inputs.secrets.insert(
                        (
                            s.metadata.namespace.unwrap_or_default(),
                            s.metadata.name.unwrap_or_default(),
                        ),
                        data,
                    );
                }
                _ => {}
            }
        }
    }
    assert!(!kds.is_empty());
    for k in &kds {
        if reconcile::needs_intake_token(k) {
            inputs.intake_tokens.insert(
                (
                    k.metadata.namespace.clone().unwrap_or_default(),
                    k.metadata.name.clone().unwrap_or_default(),
                ),
                GOLDEN_TOKEN.into(),
            );
        }
        let d = render(k, &inputs);
        for o in &d.outcomes {
            assert!(o.error.is_none(), "{:?} {}: {:?}", o.kind, o.name, o.error);
        }
        for &t in kaudit::sinks::TYPES {
            for (scope, present) in [
                (
                    "namespaced",
                    inputs.sinks.iter().any(|s| s.spec.sink.type_ == t),
                ),
                (
                    "cluster",
                    inputs.cluster_sinks.iter().any(|s| s.spec.sink.type_ == t),
                ),
            ] {
                assert!(present, "no {scope} example sink of type {t}");
            }
        }
        engine(&d);
    }
}

fn assert_hardened(d: &Deployment, what: &str) {
    let pod = d.spec.template.spec.as_ref().unwrap();
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true), "{what}: runAsNonRoot");
    let init = pod.init_containers.iter().flatten();
    for c in pod.containers.iter().chain(init.clone()) {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{what}: read-only root fs"
        );
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
        let caps = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default();
        assert_eq!(caps, ["ALL"], "{what}: capabilities");
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        assert!(
            limits.is_some_and(|l| l.contains_key("memory")),
            "{what}: memory limit"
        );
        let is_init = init.clone().any(|i| i.name == c.name);
        assert!(
            is_init || (c.readiness_probe.is_some() && c.liveness_probe.is_some()),
            "{what}: probes"
        );
    }
}

/// The operator's own Deployment and everything it renders run hardened; its RBAC is narrow.
#[test]
fn install_and_rendered_workloads_are_hardened_and_rbac_is_narrow() {
    let text = std::fs::read_to_string(root().join("deploy/install.yaml")).unwrap();
    let docs: Vec<Value> = yaml_serde::Deserializer::from_str(&text)
        .map(|d| {
            serde_json::to_value(<yaml_serde::Value as serde::Deserialize>::deserialize(d).unwrap())
                .unwrap()
        })
        .collect();
    let dep = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let dep: Deployment = serde_json::from_value(dep.clone()).unwrap();
    assert_hardened(&dep, "operator");
    assert!(
        dep.spec.replicas.unwrap_or(1) >= 2,
        "two replicas with leader election"
    );
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    let role: ClusterRole = serde_json::from_value(role.clone()).unwrap();
    for r in role.rules.as_ref().unwrap() {
        let res = r.resources.clone().unwrap_or_default();
        assert!(
            !r.verbs.contains(&"*".to_string()) && !res.contains(&"*".to_string()),
            "{r:?}"
        );
        if res.contains(&"secrets".to_string()) {
            assert!(
                !r.verbs.iter().any(|v| v == "list" || v == "watch"),
                "secrets: get only, {r:?}"
            );
        }
    }
    let d = render(&kd(json!({"detect": "both"})), &Inputs::default());
    assert_hardened(deployment(&d, "kaudit"), "kaudit");
    assert_hardened(deployment(&d, "kaudit-falco"), "falco");
    for name in ["kaudit", "kaudit-falco"] {
        let pod = deployment(&d, name).spec.template.spec.as_ref().unwrap();
        assert_eq!(
            pod.automount_service_account_token,
            Some(false),
            "{name}: no API token"
        );
    }
}

fn config_map<'a>(d: &'a Desired, name: &str) -> &'a ConfigMap {
    d.objects
        .iter()
        .find_map(|o| match o {
            Object::ConfigMap(x) if x.metadata.name.as_deref() == Some(name) => Some(x),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

/// With `tokenSecret` and a managed Falco, Falco authenticates to kaudit's `http_output` intake
/// with a token of its own: followed through the rendered objects (Falco's env from the config
/// Secret, `${VAR}` expanded as Falco does, the URL's password as libcurl sends it), kaudit's
/// rendered auth accepts it. The token never sits in a ConfigMap, and a new one rolls Falco.
#[test]
fn falco_authenticates_to_kaudit_with_an_issued_token() {
    use base64::Engine;
    let k = kd(json!({"detect": "both", "service": {"tokenSecret": "kaudit-tokens"}}));
    assert!(reconcile::needs_intake_token(&k));
    let key = ("kaudit-system".to_string(), "kaudit".to_string());
    let err = reconcile::desired(&k, &Inputs::default(), &t0()).unwrap_err();
    assert!(err.to_string().contains("intake token"), "{err}");
    let inputs = Inputs {
        intake_tokens: BTreeMap::from([(key.clone(), GOLDEN_TOKEN.to_string())]),
        ..Default::default()
    };
    let d = render(&k, &inputs);

    // Falco's environment variable comes from the config Secret.
    let falco_pod = deployment(&d, "kaudit-falco")
        .spec
        .template
        .spec
        .clone()
        .unwrap();
    let env = falco_pod.containers[0].env.clone().unwrap();
    let var = env
        .iter()
        .find(|e| e.name == reconcile::INTAKE_TOKEN_ENV)
        .unwrap();
    let sel = var
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    let secret = config_secret(&d);
    assert_eq!(secret.metadata.name.as_deref(), Some(sel.name.as_str()));
    let value = String::from_utf8(secret.data.as_ref().unwrap()[&sel.key].0.clone()).unwrap();
    assert_eq!(value, GOLDEN_TOKEN);

    // falco.yaml refers to the variable, never the value.
    let falco_yaml = &config_map(&d, "kaudit-falco").data.as_ref().unwrap()["falco.yaml"];
    assert!(!falco_yaml.contains(GOLDEN_TOKEN));
    let falco: Value = yaml_serde::from_str(falco_yaml).unwrap();
    let url = falco["http_output"]["url"].as_str().unwrap();
    let expanded = url.replace(&format!("${{{}}}", reconcile::INTAKE_TOKEN_ENV), &value);
    assert_ne!(expanded, url, "the URL names the variable: {url}");
    let parsed = reqwest::Url::parse(&expanded).unwrap();
    assert_eq!(parsed.host_str(), Some("kaudit.kaudit-system.svc"));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            parsed.username(),
            parsed.password().unwrap()
        ))
    );
    for cm in d.objects.iter().filter_map(|o| match o {
        Object::ConfigMap(c) => Some(c),
        _ => None,
    }) {
        for v in cm.data.iter().flat_map(|m| m.values()) {
            assert!(
                !v.contains(GOLDEN_TOKEN),
                "token in ConfigMap {:?}",
                cm.metadata.name
            );
        }
    }

    // kaudit reads it from the same Secret as its intake token (good for `POST /` only); the
    // apiserver's tokens stay in tokenSecret.
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert_eq!(
        cfg.auth.token_file.as_deref(),
        Some(Path::new("/etc/kaudit/token/tokens"))
    );
    assert!(
        cfg.auth.tokens.is_empty(),
        "Falco's token is not an apiserver token"
    );
    let file = cfg.falco.intake_token_file.clone().unwrap();
    assert_eq!(file.parent(), Some(Path::new(reconcile::CONFIG_DIR)));
    let in_secret = &secret.data.as_ref().unwrap()[file.file_name().unwrap().to_str().unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("intake");
    std::fs::write(&local, &in_secret.0).unwrap();
    let intake =
        kaudit::ingest::auth::TokenAuth::from_file(local, "falco.intake_token_file").unwrap();
    assert!(intake.check(Some(basic.as_bytes())), "Falco's credentials");
    assert!(
        !intake.check(Some(b"Basic ZmFsY286d3Jvbmc=")),
        "falco:wrong"
    );

    // A new token rolls Falco (its environment is read once); kaudit re-reads its file.
    let mut other = inputs.clone();
    other.intake_tokens.insert(key, "ff".repeat(32));
    let d2 = render(&k, &other);
    let hash = falco_rules_hash;
    assert_ne!(hash(&d), hash(&d2));
    assert_eq!(
        deployment(&d, "kaudit"),
        deployment(&d2, "kaudit"),
        "kaudit re-reads the file"
    );

    // Without tokenSecret kaudit checks no token: no credentials anywhere.
    let open = kd(json!({"detect": "both"}));
    assert!(!reconcile::needs_intake_token(&open));
    let d = render(&open, &Inputs::default());
    let falco: Value =
        yaml_serde::from_str(&config_map(&d, "kaudit-falco").data.as_ref().unwrap()["falco.yaml"])
            .unwrap();
    assert_eq!(
        falco["http_output"]["url"],
        "http://kaudit.kaudit-system.svc:8777/"
    );
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert!(cfg.auth.tokens.is_empty() && cfg.auth.token_file.is_none());
    assert!(cfg.falco.intake_token_file.is_none());
    assert!(
        !config_secret(&d)
            .data
            .as_ref()
            .unwrap()
            .contains_key(reconcile::INTAKE_TOKEN_KEY)
    );
}

/// Falco's plugins come from a falcoctl init container into the directory Falco loads them
/// from; an empty installer image (plugins baked into Falco's image) renders none.
#[test]
fn falco_gets_its_plugins_from_an_init_container() {
    let d = render(&kd(json!({"detect": "falco"})), &Inputs::default());
    let pod = deployment(&d, "kaudit-falco")
        .spec
        .template
        .spec
        .clone()
        .unwrap();
    let init = pod.init_containers.clone().unwrap();
    assert_eq!(init.len(), 1);
    let args = init[0].args.clone().unwrap();
    assert_eq!(args[..2], ["artifact", "install"]);
    for r in [
        "ghcr.io/falcosecurity/plugins/plugin/k8saudit:0.18",
        "ghcr.io/falcosecurity/plugins/plugin/json:0.7",
        "--plugins-dir=/plugins",
        "--allowed-types=plugin",
    ] {
        assert!(args.iter().any(|a| a == r), "{r} in {args:?}");
    }
    let vol_of = |c: &k8s_openapi::api::core::v1::Container, path: &str| {
        c.volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)
            .map(|m| m.name.clone())
    };
    let written = vol_of(&init[0], "/plugins").unwrap();
    assert_eq!(
        vol_of(&pod.containers[0], reconcile::FALCO_PLUGINS_DIR),
        Some(written),
        "Falco reads the plugins falcoctl wrote"
    );
    // The plugins falco.yaml loads are the ones installed.
    let falco: Value =
        yaml_serde::from_str(&config_map(&d, "kaudit-falco").data.as_ref().unwrap()["falco.yaml"])
            .unwrap();
    assert_eq!(falco["load_plugins"], json!(["k8saudit", "json"]));

    let d = render(
        &kd(json!({"detect": "falco", "falco": {"plugins": {"installerImage": ""}}})),
        &Inputs::default(),
    );
    let pod = deployment(&d, "kaudit-falco")
        .spec
        .template
        .spec
        .clone()
        .unwrap();
    assert!(pod.init_containers.is_none());
    assert!(!pod.volumes.iter().flatten().any(|v| v.name == "plugins"));
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
    let find = |outs: &[reconcile::Outcome], name: &str| {
        outs.iter().find(|o| o.name == name).cloned().unwrap()
    };

    let (outs, deployed) =
        reconcile::input_outcomes(&[with_defaults.clone(), strict.clone()], &inputs).unwrap();
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
    let (again, _) = reconcile::input_outcomes(&[strict, with_defaults.clone()], &inputs).unwrap();
    assert_eq!(outs, again);

    let (outs, _) = reconcile::input_outcomes(&[with_defaults], &inputs).unwrap();
    assert!(find(&outs, "uses-default-macro").error.is_none());
    let st = reconcile::item_status(&find(&outs, "plain"), true, &t0());
    assert!(st.conditions.iter().all(|c| c.status == "True"), "{st:?}");

    // No deployment: validated as the default deployment would load it, but not Ready.
    let (outs, deployed) = reconcile::input_outcomes(&[], &inputs).unwrap();
    assert!(!deployed);
    let st = reconcile::item_status(&find(&outs, "uses-default-macro"), deployed, &t0());
    let cond = |t: &str| st.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(cond("RulesValid").status, "True");
    assert_eq!(cond("Ready").status, "False");
    assert_eq!(cond("Ready").reason, "NoDeployment");
}
