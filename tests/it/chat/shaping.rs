//! Templates and shaping through the real config loader and router: errors at load name the
//! sink, the key and the template's line; shaping reaches what a sink writes.

use kaudit::alert::Priority;
use kaudit::metrics::Metrics;
use kaudit::router;

use crate::support::{alert, config, json_lines, try_config, wait_until};

#[test]
fn template_errors_name_the_sink_key_and_line() {
    let cases = [
        (
            "    type: slack\n    webhook_url: https://hooks.example/x\n    template: \"ok\\n{{ rul }}\"\n",
            "key `template`: line 2: unknown variable `rul`",
        ),
        (
            "    type: pagerduty\n    routing_key: R0000000000000000000000000000000\n    dedup_key: \"{% if %}\"\n",
            "key `dedup_key`: line 1: syntax error",
        ),
        (
            "    type: stdout\n    output_format: \"{{ rule }}\\n\\n{{ output | nosuch }}\"\n",
            "key `output_format`: line 3: unknown filter",
        ),
        (
            "    type: file\n    path: /tmp/x\n    templated_fields:\n      team: \"{{ output_fields[ }}\"\n",
            "key `templated_fields.team`: line 1: syntax error",
        ),
    ];
    for (entry, want) in cases {
        let e = try_config(&format!("sinks:\n  - name: shaped\n{entry}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sink \"shaped\""), "{e}");
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
}

#[tokio::test]
async fn shaping_reaches_the_sink_and_keeps_the_alerts_own_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts.json");
    let cfg = config(
        dir.path(),
        &format!(
            "  - name: shaped\n    type: file\n    path: {}\n    custom_fields:\n      cluster: prod-eu\n      ka.user.name: spoofed\n    templated_fields:\n      owner: '{{{{ output_fields[\"ka.target.namespace\"] }}}}-team'\n    output_format: '{{{{ rule }}}} by {{{{ output_fields[\"ka.user.name\"] }}}} ({{{{ output_fields.owner }}}}, {{{{ output_fields.cluster }}}})'\n  - name: plain\n    type: file\n    path: {}\n",
            out.display(),
            dir.path().join("plain.json").display()
        ),
    );
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .unwrap();
    let a = alert("Exec Pod", Priority::Warning);
    r.sender().send(a.clone()).await.unwrap();
    let plain = dir.path().join("plain.json");
    wait_until("both sinks", || {
        !json_lines(&out).is_empty() && !json_lines(&plain).is_empty()
    })
    .await;
    r.shutdown().await;
    let got = &json_lines(&out)[0];
    assert_eq!(got["uuid"], a.uuid.to_string());
    assert_eq!(
        got["output"],
        "Exec Pod by alice (kube-system-team, prod-eu)"
    );
    assert_eq!(got["output_fields"]["cluster"], "prod-eu");
    assert_eq!(got["output_fields"]["owner"], "kube-system-team");
    assert_eq!(
        got["output_fields"]["ka.user.name"], "alice",
        "own field wins"
    );
    let other = &json_lines(&plain)[0];
    assert_eq!(other["output"], a.output.as_str(), "shaping is per sink");
    assert!(other["output_fields"].get("cluster").is_none());
}

/// The per-channel routing example (`examples/config/chat-routing.yaml`, docs/chat.md) sends
/// each alert where its comments say.
#[test]
fn the_routing_example_routes_as_documented() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/chat-routing.yaml");
    let cfg = kaudit::config::Config::load(Some(&path), &Default::default()).unwrap();
    let sinks: Vec<_> = cfg
        .sinks
        .iter()
        .map(|s| {
            let f = s
                .filter
                .as_deref()
                .map(|e| kaudit::rules::AlertFilter::compile(e).unwrap());
            (s.name.clone(), s.min_priority, f)
        })
        .collect();
    let route = |rule: &str, priority: Priority, namespace: &str| -> Vec<String> {
        let mut a = alert(rule, priority);
        a.output_fields
            .insert("ka.target.namespace".into(), namespace.into());
        sinks
            .iter()
            .filter(|(_, min, f)| {
                a.priority.at_least(*min) && f.as_ref().is_none_or(|f| f.matches(&a))
            })
            .map(|(n, _, _)| n.clone())
            .collect()
    };
    let cases = [
        (
            "Attach/Exec Pod",
            Priority::Notice,
            "team-a",
            &["slack-team-a"][..],
        ),
        (
            "Attach/Exec Pod",
            Priority::Warning,
            "team-a-staging",
            &["slack-team-a", "teams-security"],
        ),
        (
            "Create Privileged Pod",
            Priority::Critical,
            "kube-system",
            &["slack-platform", "teams-security"],
        ),
        (
            "Create Privileged Pod",
            Priority::Critical,
            "prod-payments",
            &["teams-security", "pagerduty-prod"],
        ),
        (
            "K8s Serviceaccount Created",
            Priority::Warning,
            "prod-payments",
            &[],
        ),
        ("Attach/Exec Pod", Priority::Informational, "team-a", &[]),
    ];
    for (rule, priority, ns, want) in cases {
        assert_eq!(route(rule, priority, ns), want, "{rule} {priority} in {ns}");
    }
}
