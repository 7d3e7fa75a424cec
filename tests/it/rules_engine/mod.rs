//! Rules engine behaviour: operators, fields, rules-file semantics, errors, output, filters.

mod fields;

use kaudit::alert::{Alert, Priority};
use kaudit::audit::AuditEvent;
use kaudit::rules::fields::{extract, lookup};
use kaudit::rules::{AlertFilter, LoadError, LoadOptions, RuleMatching, Ruleset};
use serde_json::{Value, json};

pub fn event(v: Value) -> AuditEvent {
    AuditEvent::from_json(v).expect("test event")
}

/// A pod-create event with most of the fields the rules read.
pub fn pod_event() -> AuditEvent {
    event(json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": "id-1",
        "stage": "ResponseComplete", "verb": "create",
        "requestURI": "/api/v1/namespaces/default/pods?dryRun=All&x=a+b%2Fc&x=second",
        "user": {"username": "jane", "groups": ["dev", "system:authenticated"]},
        "impersonatedUser": {"username": "bob"},
        "sourceIPs": ["10.0.0.1", "10.0.0.2"],
        "userAgent": "kubectl/v1.31",
        "objectRef": {"resource": "pods", "namespace": "default", "name": "web", "apiVersion": "v1"},
        "responseStatus": {"code": 201, "reason": "Created"},
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": "RBAC",
            "cluster_name": "prod-1"
        },
        "requestObject": {
            "kind": "Pod",
            "spec": {
                "hostNetwork": true, "hostPID": false,
                "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4, 5]},
                "containers": [
                    {"name": "nginx", "image": "nginx:1.25", "command": ["nginx", "-g"], "args": ["daemon off;"],
                     "ports": [{"containerPort": 80}, {"containerPort": 443, "hostPort": 8443}],
                     "securityContext": {"privileged": true, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN", "SYS_TIME"]},
                                         "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "procMount": "Default"}},
                    {"name": "side", "image": "reg.io/team/side@sha256:abcd"}
                ],
                "initContainers": [{"name": "init", "image": "busybox", "securityContext": {"privileged": false}}],
                "volumes": [
                    {"name": "root", "hostPath": {"path": "/etc/kubernetes"}},
                    {"name": "cfg", "configMap": {"name": "c"}},
                    {"name": "fv", "flexVolume": {"driver": "acme/drv"}}
                ]
            }
        },
        "responseObject": {"metadata": {"name": "web-abc"}},
        "stageTimestamp": "2026-01-02T03:04:05.123456789Z"
    }))
}

pub fn one_rule(cond: &str) -> String {
    format!(
        "- rule: R\n  desc: d\n  condition: {}\n  output: out\n  priority: WARNING\n  source: k8s_audit\n",
        serde_json::to_string(cond).unwrap()
    )
}

fn load(yaml: &str) -> Result<Ruleset, LoadError> {
    Ruleset::load_sources(
        &[("test.yaml".to_string(), yaml.to_string())],
        &LoadOptions::default(),
    )
    .map(|(r, _)| r)
}

fn fires(cond: &str, ev: &AuditEvent) -> bool {
    let rs = load(&one_rule(cond)).unwrap_or_else(|e| panic!("{cond}: {e}"));
    let mut out = Vec::new();
    rs.evaluate(ev, &mut out);
    !out.is_empty()
}

fn load_err(yaml: &str) -> String {
    match load(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// The field's values in `ev`, read the same from the parsed event and from the one-pass
/// scanner's borrowed build of its text.
fn vals(field: &str, arg: Option<&str>, ev: &AuditEvent) -> Vec<String> {
    let f = lookup(field, arg).unwrap_or_else(|e| panic!("{e}"));
    let got = extract(&f, ev.view()).to_strings();
    let mut paths = kaudit::lazy::PathSet::new();
    f.add_reads(&mut paths);
    let text = ev.json.to_string();
    let lazily = kaudit::lazy::scan_event(&text, &paths).expect("the event scans");
    assert_eq!(
        extract(&f, lazily.view()).to_strings(),
        got,
        "{field} lazily: {text}"
    );
    got
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn every_scalar_operator() {
    let ev = pod_event();
    let cases: &[(&str, bool)] = &[
        ("ka.verb=create", true),
        ("ka.verb==create", true),
        ("ka.verb=get", false),
        ("ka.verb!=get", true),
        ("ka.verb!=create", false),
        ("ka.response.code >= 200", true),
        ("ka.response.code < 300", true),
        ("ka.response.code > 3", false),
        ("ka.response.code <= 201", true),
        ("ka.response.code < 201", false),
        ("ka.uri contains namespaces", true),
        ("ka.uri contains NAMESPACES", false),
        ("ka.uri icontains NAMESPACES", true),
        ("ka.user.name startswith ja", true),
        ("ka.user.name startswith ne", false),
        ("ka.user.name endswith ne", true),
        ("ka.user.name glob 'j*e'", true),
        ("ka.user.name glob 'J*'", false),
        ("ka.user.name iglob 'J*'", true),
        ("ka.user.name regex 'j.n'", false),
        ("ka.user.name regex 'j.ne'", true),
        ("ka.user.name in (bob, jane)", true),
        ("ka.user.name in (bob)", false),
        ("ka.user.name intersects (jane)", true),
        ("ka.uri pmatch (/api/v1)", true),
        ("ka.uri pmatch (/api/v)", false),
        ("ka.user.name exists", true),
        ("ka.target.subresource exists", false),
    ];
    for (cond, want) in cases {
        assert_eq!(fires(cond, &ev), *want, "{cond}");
    }
}

#[test]
fn missing_values_fail_every_check_unless_negated() {
    let ev = pod_event();
    for cond in [
        "ka.target.subresource = x",
        "ka.target.subresource != x",
        "ka.target.subresource in (x)",
        "ka.target.subresource startswith x",
        "ka.target.subresource exists",
        "ka.sourceips[7] exists",
    ] {
        assert!(!fires(cond, &ev), "{cond}");
        assert!(fires(&format!("not {cond}"), &ev), "not {cond}");
    }
    // Without auditID every ka.* field is unavailable; jevt.* still works.
    let mut j = pod_event().json;
    j.as_object_mut().unwrap().remove("auditID");
    let ev = event(j);
    assert!(!fires("ka.verb = create", &ev));
    assert!(fires("jevt.value[/verb] = create", &ev));
}

#[test]
fn list_field_semantics() {
    let ev = pod_event();
    // in = every value in the set; intersects = any value.
    assert!(fires(
        "ka.user.groups in (dev, system:authenticated, x)",
        &ev
    ));
    assert!(!fires("ka.user.groups in (dev)", &ev));
    assert!(fires("ka.user.groups intersects (dev)", &ev));
    assert!(!fires("ka.user.groups intersects (ops)", &ev));
    assert!(fires("ka.user.groups exists", &ev));
    // Empty list = not available.
    let ev2 = event(
        json!({"auditID": "a", "user": {"groups": []}, "stageTimestamp": "2026-01-01T00:00:00Z"}),
    );
    assert!(!fires("ka.user.groups exists", &ev2));
    assert!(!fires("ka.user.groups in (x)", &ev2));
    assert!(fires("not ka.user.groups in (x)", &ev2));
}

#[test]
fn type_checks_refuse_operators_at_load_time() {
    let e = load_err(&one_rule("ka.user.groups contains dev"));
    assert!(
        e.contains("'contains' operator not supported for list filters"),
        "{e}"
    );
    assert!(e.contains("test.yaml:3:"), "{e}");
    assert!(e.contains("rule 'R'"), "{e}");
    let e = load_err(&one_rule("ka.user.name bcontains 6a"));
    assert!(
        e.contains("'bcontains' operator not supported for string filters"),
        "{e}"
    );
    let e = load_err(&one_rule("ka.user.name bstartswith 6a"));
    assert!(e.contains("bstartswith"), "{e}");
    let e = load_err(&one_rule("ka.user.name regex '('"));
    assert!(e.contains("invalid regex"), "{e}");
}

#[test]
fn lists_macros_append_override_and_visibility() {
    let base = "
- list: users
  items: [alice]
- list: more
  items: [users, 'carol d']
- macro: is_user
  condition: ka.user.name in (more)
- rule: R
  desc: d
  condition: is_user
  output: o
  priority: WARNING
  source: k8s_audit
";
    let ev = |u: &str| {
        event(
            json!({"auditID": "a", "user": {"username": u}, "stageTimestamp": "2026-01-01T00:00:00Z"}),
        )
    };
    let count = |yaml: &str, u: &str| {
        let rs = load(yaml).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        rs.evaluate(&ev(u), &mut out);
        out.len()
    };
    assert_eq!(count(base, "alice"), 1);
    assert_eq!(count(base, "carol d"), 1);
    assert_eq!(count(base, "bob"), 0);
    // Appending to a list (deprecated form and override form).
    let app = format!("{base}- list: more\n  items: [bob]\n  append: true\n");
    assert_eq!(count(&app, "bob"), 1);
    assert_eq!(count(&app, "alice"), 1);
    let ov = format!("{base}- list: more\n  items: [bob]\n  override:\n    items: replace\n");
    assert_eq!(count(&ov, "bob"), 1);
    assert_eq!(count(&ov, "alice"), 0);
    // Redefining a macro replaces it (the rule sees the final definition).
    let redef = format!("{base}- macro: is_user\n  condition: ka.user.name = zed\n");
    assert_eq!(count(&redef, "zed"), 1);
    assert_eq!(count(&redef, "alice"), 0);
    // Macro append joins the condition text.
    let mapp =
        format!("{base}- macro: is_user\n  condition: or ka.user.name = zed\n  append: true\n");
    assert_eq!(count(&mapp, "zed"), 1);
    assert_eq!(count(&mapp, "alice"), 1);
    // Rule append and override.
    let rapp = format!("{base}- rule: R\n  condition: and ka.user.name = alice\n  append: true\n");
    assert_eq!(count(&rapp, "alice"), 1);
    assert_eq!(count(&rapp, "carol d"), 0);
    let rov = format!(
        "{base}- rule: R\n  condition: ka.user.name = bob\n  priority: DEBUG\n  override:\n    condition: replace\n    priority: replace\n"
    );
    assert_eq!(count(&rov, "bob"), 1);
    // Enable-only item and override of enabled.
    assert_eq!(
        count(&format!("{base}- rule: R\n  enabled: false\n"), "alice"),
        0
    );
    assert_eq!(
        count(
            &format!("{base}- rule: R\n  enabled: false\n  override:\n    enabled: replace\n"),
            "alice"
        ),
        0
    );
    // A macro may only use macros defined before it.
    let early = "
- macro: a
  condition: b
- macro: b
  condition: ka.verb = get
- rule: R
  desc: d
  condition: a
  output: o
  priority: WARNING
  source: k8s_audit
";
    let e = load_err(early);
    assert!(
        e.contains("test.yaml:3:14: macro 'a': Undefined macro 'b' used in filter."),
        "{e}"
    );
}

#[test]
fn append_override_errors_name_the_item() {
    let e = load_err("- list: nope\n  items: [a]\n  append: true\n");
    assert!(e.contains("test.yaml:1:3: list 'nope'"), "{e}");
    assert!(e.contains("no list by that name"), "{e}");
    let e = load_err("- macro: m\n  condition: x\n  append: true\n");
    assert!(
        e.contains("macro 'm'") && e.contains("no macro by that name"),
        "{e}"
    );
    let e = load_err("- rule: R\n  condition: x\n  append: true\n");
    assert!(
        e.contains("test.yaml:1:3: rule 'R'") && e.contains("no rule by that name"),
        "{e}"
    );
    let e = load_err("- rule: R\n  enabled: false\n");
    assert!(e.contains("rule 'R'"), "{e}");
    let base = one_rule("ka.verb=get");
    let e = load_err(&format!(
        "{base}- rule: R\n  condition: x\n  append: true\n  override:\n    condition: append\n"
    ));
    assert!(e.contains("cannot be used together"), "{e}");
    let e = load_err(&format!(
        "{base}- rule: R\n  condition: x\n  output: y\n  override:\n    condition: append\n"
    ));
    assert!(
        e.contains("key 'output' is present without a matching 'override' entry"),
        "{e}"
    );
    let e = load_err(&format!(
        "{base}- rule: R\n  priority: INFO\n  override:\n    priority: append\n"
    ));
    assert!(e.contains("cannot be overridden with 'append'"), "{e}");
    let e = load_err(&format!(
        "{base}- rule: R\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: INFO\n  source: syscall\n"
    ));
    assert!(e.contains("different source"), "{e}");
}

#[test]
fn exceptions_compile_into_the_condition() {
    let yaml = "
- list: ok_users
  items: [alice]
- rule: R
  desc: d
  condition: ka.verb = get
  output: o
  priority: WARNING
  source: k8s_audit
  exceptions:
    - name: by_user_ns
      fields: [ka.user.name, ka.target.namespace]
      comps: [=, in]
      values:
        - [bob, [ns1, ns2]]
        - [carol d, ns3]
    - name: by_user
      fields: ka.user.name
      values: [ok_users, dave]
    - name: empty
      fields: [ka.verb]
";
    let rs = load(yaml).unwrap_or_else(|e| panic!("{e}"));
    let fire = |u: &str, ns: &str| {
        let ev = event(
            json!({"auditID": "a", "verb": "get", "user": {"username": u},
            "objectRef": {"namespace": ns}, "stageTimestamp": "2026-01-01T00:00:00Z"}),
        );
        let mut out = Vec::new();
        rs.evaluate(&ev, &mut out);
        !out.is_empty()
    };
    assert!(fire("zed", "ns1"));
    assert!(!fire("bob", "ns1"));
    assert!(!fire("bob", "ns2"));
    assert!(fire("bob", "ns3"));
    assert!(!fire("carol d", "ns3"));
    assert!(!fire("alice", "x"));
    assert!(!fire("dave", "x"));
    // Appending values to an exception.
    let more = format!(
        "{yaml}- rule: R\n  exceptions:\n    - name: by_user\n      values: [zed]\n  override:\n    exceptions: append\n"
    );
    let rs = load(&more).unwrap_or_else(|e| panic!("{e}"));
    let ev = event(
        json!({"auditID": "a", "verb": "get", "user": {"username": "zed"}, "stageTimestamp": "2026-01-01T00:00:00Z"}),
    );
    let mut out = Vec::new();
    rs.evaluate(&ev, &mut out);
    assert!(out.is_empty());
    // Bad exception field / comps.
    let e = load_err(
        "- rule: R\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: INFO\n  source: k8s_audit\n  exceptions:\n    - name: x\n      fields: ka.nope\n      values: [a]\n",
    );
    assert!(
        e.contains("test.yaml:8:7: rule 'R' exception 'x': unknown field 'ka.nope'"),
        "{e}"
    );
    let e = load_err(
        "- rule: R\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: INFO\n  source: k8s_audit\n  exceptions:\n    - name: x\n      fields: ka.verb\n      comps: startswith\n",
    );
    assert!(
        e.contains("comps must be one of in, pmatch, intersects"),
        "{e}"
    );
}

#[test]
fn errors_name_file_line_col_item_and_text() {
    // Syntax error mapped to its position inside a multi-line condition.
    let yaml = "- rule: Create Privileged Pod\n  desc: d\n  condition: >\n    ka.verb = create and\n    (ka.user.name = x or\n  output: o\n  priority: WARNING\n  source: k8s_audit\n";
    let e = load_err(yaml);
    assert!(e.contains("test.yaml:"), "{e}");
    assert!(e.contains("rule 'Create Privileged Pod'"), "{e}");
    assert!(e.contains("syntax error"), "{e}");
    // ... and to the exact line and column of the offending text.
    let yaml = "- rule: R\n  desc: d\n  condition: >\n    ka.verb = create and\n    (ka.user.name = x y)\n  output: o\n  priority: WARNING\n  source: k8s_audit\n";
    let e = load_err(yaml);
    assert!(
        e.contains("test.yaml:5:23: rule 'R': syntax error in condition: expected ')', found 'y)'"),
        "{e}"
    );
    // Undefined macro: position of the identifier in the file.
    let e = load_err(&one_rule("ka.verb=get and kevt"));
    assert!(
        e.contains("test.yaml:3:31: rule 'R': Undefined macro 'kevt' used in filter."),
        "{e}"
    );
    // Unknown field.
    let e = load_err(&one_rule("ka.verbb = get"));
    assert!(
        e.contains("test.yaml:3:15: rule 'R': unknown field 'ka.verbb'"),
        "{e}"
    );
    // Invalid priority, missing keys, bad output field, YAML syntax.
    let e = load_err(
        "- rule: R\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: LOUD\n  source: k8s_audit\n",
    );
    assert!(
        e.contains("test.yaml:5:13: rule 'R': invalid priority 'LOUD'"),
        "{e}"
    );
    let e = load_err("- rule: R\n  desc: d\n  source: k8s_audit\n");
    assert!(e.contains("rule has no condition, output, priority"), "{e}");
    let e = load_err(
        "- rule: R\n  desc: d\n  condition: ka.verb=get\n  output: x %ka.nope y\n  priority: INFO\n  source: k8s_audit\n",
    );
    assert!(
        e.contains("test.yaml:4:11: rule 'R': invalid output: unknown field in output '%ka.nope'"),
        "{e}"
    );
    let e = load_err("- rule: R\n  desc: [d\n");
    assert!(
        e.contains("test.yaml:") && e.contains("YAML syntax error"),
        "{e}"
    );
    let e = load_err("- required_engine_version: 999\n");
    assert!(
        e.contains("test.yaml:1:28: required_engine_version") && e.contains("999"),
        "{e}"
    );
    let e = load_err("- 42\n");
    assert!(
        e.contains("test.yaml:1:3") && e.contains("expected a mapping"),
        "{e}"
    );
    // Duplicates inside one item.
    let e = load_err(
        "- rule: R\n  desc: d\n  desc: e\n  condition: ka.verb=get\n  output: o\n  priority: INFO\n  source: k8s_audit\n",
    );
    assert!(
        e.contains("test.yaml:3:3: rule 'R': key 'desc' appears twice"),
        "{e}"
    );
    let e = load_err(
        "- rule: R\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: INFO\n  source: k8s_audit\n  exceptions:\n    - name: x\n      fields: ka.verb\n    - name: x\n      fields: ka.verb\n",
    );
    assert!(e.contains("exception 'x' is defined twice"), "{e}");
    // All-or-nothing: several errors reported at once, nothing loads.
    let e = load_err(&format!(
        "{}{}",
        one_rule("ka.bad1 = x"),
        one_rule("ka.verb = x and nomacro").replace("R\n", "S\n")
    ));
    assert!(e.contains("ka.bad1") && e.contains("nomacro"), "{e}");
}

#[test]
fn warnings_and_counts() {
    let yaml = "
- required_engine_version: 15
- required_plugin_versions:
  - name: k8saudit
    version: 0.6.0
-
- list: unused_list
  items: [a]
- macro: unused_macro
  condition: ka.verb = get
- something_else: 1
- rule: R
  desc: d
  condition: ka.verb = get
  output: o
  priority: WARNING
  source: k8s_audit
  colour: blue
- rule: S
  desc: d
  condition: proc.name = x
  output: o
  priority: WARNING
- rule: T
  desc: d
  condition: ka.verb = list
  output: o
  priority: DEBUG
  enabled: false
  source: k8s_audit
";
    let opts = LoadOptions {
        min_priority: Priority::Warning,
        ..LoadOptions::default()
    };
    let (rs, rep) = Ruleset::load_sources(&[("w.yaml".into(), yaml.into())], &opts).unwrap();
    assert_eq!(rep.rules_loaded, 2);
    assert_eq!(rep.rules_skipped, 1);
    assert_eq!(rep.rules_active, 1);
    assert_eq!(rep.rules_disabled, 1);
    let all = rep.warnings.join("\n");
    // Files with syscall rules do not warn about unused items; this one has one: none here.
    assert!(
        all.contains("w.yaml:11:3: Unknown top level item 'something_else'"),
        "{all}"
    );
    assert!(
        all.contains("w.yaml:18:3: rule 'R': unknown key 'colour'"),
        "{all}"
    );
    let infos: Vec<_> = rs.rules().collect();
    assert_eq!(infos.len(), 3);
    assert_eq!(infos[1].source, "syscall");
    assert!(!infos[2].enabled && !infos[2].active);
    // Without foreign rules, unused items warn.
    let (_, rep) = Ruleset::load_sources(
        &[(
            "u.yaml".into(),
            "- list: l\n  items: [a]\n- macro: m\n  condition: ka.verb=x\n".into(),
        )],
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(rep.macros_skipped, 1);
    assert_eq!(rep.lists_skipped, 1);
    assert!(
        rep.warnings
            .iter()
            .any(|w| w.contains("u.yaml:1:3: list 'l': defined but not used")),
        "{:?}",
        rep.warnings
    );
}

#[test]
fn first_match_all_match_and_positions() {
    let yaml = "
- rule: A
  desc: d
  condition: ka.verb = get
  output: a
  priority: NOTICE
  source: k8s_audit
- rule: B
  desc: d
  condition: ka.verb exists
  output: b
  priority: CRITICAL
  source: k8s_audit
- rule: A
  desc: redefined keeps its first position
  condition: ka.verb in (get, list)
  output: a2
  priority: NOTICE
  source: k8s_audit
";
    let ev =
        event(json!({"auditID": "a", "verb": "list", "stageTimestamp": "2026-01-01T00:00:00Z"}));
    let run = |m: RuleMatching, min: Priority| {
        let opts = LoadOptions {
            rule_matching: m,
            min_priority: min,
            hostname: "h".into(),
        };
        let (rs, _) = Ruleset::load_sources(&[("f".into(), yaml.into())], &opts).unwrap();
        let mut out = Vec::new();
        rs.evaluate(&ev, &mut out);
        out.iter().map(|a| a.rule.clone()).collect::<Vec<_>>()
    };
    assert_eq!(run(RuleMatching::First, Priority::Debug), ["A"]);
    assert_eq!(run(RuleMatching::All, Priority::Debug), ["A", "B"]);
    assert_eq!(run(RuleMatching::First, Priority::Warning), ["B"]);
}

#[test]
fn output_formatting_and_alert_shape() {
    let yaml = "
- rule: Fmt
  desc: d
  condition: ka.verb = create
  output: >
    user=%ka.user.name groups=%ka.user.groups missing=%ka.target.subresource
    p=%ka.uri.param[x] w=[%6ka.verb] t=[%2ka.user.name] path=%ka.target.namespace/%ka.target.name.
  priority: ERROR
  source: k8s_audit
  tags: [a, b]
";
    let opts = LoadOptions {
        hostname: "node-1".into(),
        ..LoadOptions::default()
    };
    let (rs, _) = Ruleset::load_sources(&[("f".into(), yaml.into())], &opts).unwrap();
    let mut out = Vec::new();
    rs.evaluate(&pod_event(), &mut out);
    let a: &Alert = &out[0];
    assert_eq!(
        a.output,
        "03:04:05.123456789: Error user=jane groups=(dev,system:authenticated) missing=<NA> p=a b/c w=[create] t=[ja] path=default/web."
    );
    assert_eq!(a.rule, "Fmt");
    assert_eq!(a.priority, Priority::Error);
    assert_eq!(a.source, "k8s_audit");
    assert_eq!(a.hostname, "node-1");
    assert_eq!(a.tags, ["a", "b"]);
    assert_eq!(a.time, pod_event().time);
    let f = &a.output_fields;
    assert_eq!(f["ka.user.name"], json!("jane"));
    assert_eq!(f["ka.user.groups"], json!(["dev", "system:authenticated"]));
    assert_eq!(f["ka.target.subresource"], Value::Null);
    assert_eq!(f["ka.uri.param[x]"], json!("a b/c"));
    assert_eq!(f["evt.time"], json!(1767323045123456789i64));
    let j = a.to_json();
    assert!(
        j.contains("\"time\":\"2026-01-02T03:04:05.123456789Z\""),
        "{j}"
    );
    // Format errors.
    for (bad, msg) in [
        ("x %", "end of the output"),
        ("x %ka.zz", "unknown field"),
        ("x %ka.uri.param", "requires an argument"),
    ] {
        let y = format!(
            "- rule: R\n  desc: d\n  condition: ka.verb=get\n  output: \"{bad}\"\n  priority: INFO\n  source: k8s_audit\n"
        );
        let e = load_err(&y);
        assert!(e.contains(msg), "{bad}: {e}");
    }
}

fn alert() -> Alert {
    Alert {
        uuid: uuid::Uuid::new_v4(),
        time: pod_event().time,
        rule: "Attach/Exec Pod".into(),
        priority: Priority::Notice,
        source: "k8s_audit".into(),
        hostname: "h1".into(),
        output: "o".into(),
        output_fields: serde_json::from_value(json!({
            "ka.target.namespace": "prod-payments",
            "ka.user.groups": ["dev", "ops"],
            "ka.uri.param[command]": "sh",
            "ka.target.subresource": null,
            "evt.time": 5
        }))
        .unwrap(),
        tags: vec!["k8s".into(), "pod".into()],
    }
}

#[test]
fn alert_filters() {
    let a = alert();
    let cases: &[(&str, bool)] = &[
        (
            "rule in (\"Attach/Exec Pod\") and ka.target.namespace startswith \"prod-\"",
            true,
        ),
        (
            "rule = \"Attach/Exec Pod\" and ka.target.namespace startswith \"dev-\"",
            false,
        ),
        ("priority in (Notice, Warning)", true),
        ("priority = Critical", false),
        ("source = k8s_audit and hostname = h1", true),
        ("tags intersects (pod)", true),
        ("tags in (k8s, pod, x)", true),
        ("tags in (k8s)", false),
        ("ka.user.groups intersects (ops)", true),
        ("ka.user.groups in (ops)", false),
        ("ka.uri.param[command] = sh", true),
        ("ka.target.subresource exists", false),
        ("not ka.target.subresource exists", true),
        ("ka.not.there = x", false),
        ("evt.time = 5", true),
        ("not (rule = x or priority = Debug)", true),
    ];
    for (expr, want) in cases {
        let f = AlertFilter::compile(expr).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.matches(&a), *want, "{expr}");
    }
    for bad in [
        "rule in (",
        "tags contains x",
        "kevt and rule = x",
        "rule[1] = x",
        "",
    ] {
        assert!(AlertFilter::compile(bad).is_err(), "{bad}");
    }
    let e = AlertFilter::compile("kevt").unwrap_err();
    assert!(e.to_string().contains("unknown identifier"), "{e}");
}
