//! `spec.console`: the console-store sink, the console and store sections of kaudit's config,
//! the token and PostgreSQL Secrets mounted, the console Service; refused without a token, or
//! with several replicas and no shared store; a sink may not pose as the console.

use super::*;

fn service<'a>(d: &'a Desired, name: &str) -> Option<&'a Service> {
    d.objects.iter().find_map(|o| match o {
        Object::Service(x) if x.metadata.name.as_deref() == Some(name) => Some(x),
        _ => None,
    })
}

#[test]
fn an_enabled_console_renders_its_sink_config_mounts_and_service() {
    let k = kd(
        json!({"console": {"enabled": true, "tokenSecret": "console-tokens",
        "minPriority": "notice", "maxAgeSeconds": 86400, "port": 8080}}),
    );
    let d = render(&k, &Inputs::default());
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert!(cfg.console.enabled);
    assert_eq!(
        cfg.console.token_file.as_deref(),
        Some(Path::new("/etc/kaudit/console/tokens"))
    );
    assert_eq!(cfg.store.retention.max_age_secs, 86400);
    assert!(cfg.store.url_file.is_none(), "SQLite on the data volume");
    let store = cfg
        .sinks
        .iter()
        .find(|s| s.name == "console-store")
        .unwrap();
    assert_eq!(store.settings.type_name(), "console");
    assert_eq!(store.min_priority, kaudit::alert::Priority::Notice);
    let svc = service(&d, "kaudit-console").expect("console Service");
    let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!(port.port, 8080);
    let pod = kaudit_pod(&d).spec.as_ref().unwrap();
    let mounts: Vec<&str> = pod.containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert!(mounts.contains(&"/etc/kaudit/console"), "{mounts:?}");
    assert!(!d.prune.contains(&"Service/kaudit-console".to_string()));

    // Off: no sink, `console.enabled: false`, the Service pruned.
    let d = render(&kd(json!({})), &Inputs::default());
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert!(!cfg.console.enabled);
    assert!(
        cfg.sinks
            .iter()
            .all(|s| s.settings.type_name() != "console")
    );
    assert!(d.prune.contains(&"Service/kaudit-console".to_string()));
}

#[test]
fn replicas_share_a_postgresql_store_from_a_secret() {
    let k = kd(json!({"replicas": 3, "console": {"enabled": true,
        "tokenSecret": "console-tokens", "postgresSecret": "console-pg"}}));
    let d = render(&k, &Inputs::default());
    let cfg: Config = yaml_serde::from_str(&d.kaudit_config).unwrap();
    assert_eq!(
        cfg.store.url_file.as_deref(),
        Some(Path::new("/etc/kaudit/console-store/url"))
    );
    assert!(
        !d.kaudit_config.contains("postgres://"),
        "the URL stays in its Secret"
    );
    let pod = kaudit_pod(&d).spec.as_ref().unwrap();
    let vols: Vec<&str> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| v.secret.as_ref()?.secret_name.as_deref())
        .collect();
    assert!(vols.contains(&"console-pg"), "{vols:?}");
}

#[test]
fn unsafe_consoles_and_console_sinks_are_refused() {
    for (spec, key) in [
        (
            json!({"console": {"enabled": true}}),
            "spec.console.tokenSecret",
        ),
        (
            json!({"replicas": 2, "console": {"enabled": true, "tokenSecret": "t"}}),
            "spec.console.postgresSecret",
        ),
        (
            json!({"console": {"enabled": true, "tokenSecret": "t", "minPriority": "loud"}}),
            "spec.console.minPriority",
        ),
    ] {
        let err = render::desired(&kd(spec), &Inputs::default(), &t0())
            .expect_err("refused")
            .to_string();
        assert!(err.contains(key), "{err}");
    }
    let inputs = Inputs {
        sinks: vec![sink("team-a", "fake", json!({"type": "console"}))],
        ..Default::default()
    };
    let d = render(&kd(json!({})), &inputs);
    let o = outcome(&d, ItemKind::AlertSink, "fake");
    assert!(
        o.error
            .as_deref()
            .is_some_and(|e| e.contains("spec.console")),
        "{:?}",
        o.error
    );
}
