//! Sinks: namespaced filters scoped to their namespace, alerts reaching only their namespace's
//! sinks, credentials only from Secrets.

use super::*;

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

/// Settings a sink type declares as credentials (a chat webhook URL carrying its token, a
/// PagerDuty routing key) are refused inline and rendered as `*_file` from a Secret.
#[test]
fn typed_credential_settings_come_from_secrets() {
    let k = kd(json!({}));
    let mut secrets = BTreeMap::new();
    secrets.insert(
        ("team-a".to_string(), "hooks".to_string()),
        BTreeMap::from([(
            "slack".to_string(),
            b"https://hooks.example/T/B/s3cret".to_vec(),
        )]),
    );
    let inputs = Inputs {
        sinks: vec![
            sink(
                "team-a",
                "ok",
                json!({"type": "slack", "settings": {}, "secretRefs": [{"setting": "webhook_url_file", "name": "hooks", "key": "slack"}]}),
            ),
            sink(
                "team-a",
                "inline",
                json!({"type": "slack", "settings": {"webhook_url": "https://hooks.example/T/B/s3cret"}}),
            ),
            sink(
                "team-a",
                "pd",
                json!({"type": "pagerduty", "settings": {"routing_key": "R0000000000000000000000000000000"}}),
            ),
        ],
        secrets,
        ..Default::default()
    };
    let d = render(&k, &inputs);
    assert!(outcome(&d, ItemKind::AlertSink, "ok").error.is_none());
    for n in ["inline", "pd"] {
        let e = outcome(&d, ItemKind::AlertSink, n).error.clone();
        assert!(
            e.as_deref().is_some_and(|e| e.contains("_file")),
            "{n}: {e:?}"
        );
    }
    assert!(
        !d.kaudit_config.contains("s3cret"),
        "credential in the config"
    );
    assert!(
        d.kaudit_config
            .contains("webhook_url_file: /etc/kaudit/config/cred.ns_team-a_ok.webhook_url_file.")
    );
}
