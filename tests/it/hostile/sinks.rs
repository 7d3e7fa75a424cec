//! Hostile and generated `AlertSink`s through the operator's real dry run and renderer, and what
//! it renders loaded by a real kaudit on every round: each attack of issue 13 is refused in the
//! sink's own status, kaudit accepts every config the operator renders (nothing it would refuse
//! gets through), and kaudit never stops serving.

use std::collections::BTreeMap;
use std::path::Path;

use kaudit::operator::inputs::Inputs;
use kaudit::operator::render::{Desired, ItemKind};
use kaudit::operator::sink_check;
use serde_json::{Value, json};

use super::{Kaudit, eventually};
use crate::operator::{config_secret, kd, outcome, render, sink};
use crate::support::Gen;

const NS: &str = "team-a";

/// Setting values, good and bad, per key.
fn generated(g: &mut Gen) -> Value {
    let urls = [
        json!("https://hooks.example.com/kaudit"),
        json!("http://169.254.169.254/latest/meta-data/"),
        json!("http://localhost:8777/k8s-audit"),
        json!("http://[::1]/"),
        json!("https://user:pass@hooks.example.com/"),
        json!("not a url"),
        json!(42),
    ];
    let t = *g.pick(&[
        "http", "file", "nats", "stdout", "pubsub", "sns", "gcscc", "kafka",
    ]);
    let mut s = serde_json::Map::new();
    match t {
        "http" => {
            s.insert("url".into(), g.pick(&urls).clone());
            if g.next().is_multiple_of(2) {
                let m = ["POST", "GET", "PUT", "DELETE"];
                s.insert("method".into(), json!(g.pick(&m)));
            }
            if g.next().is_multiple_of(3) {
                let t = [json!(0), json!(1000), json!(-1), json!("soon")];
                s.insert("timeout_ms".into(), g.pick(&t).clone());
            }
            if g.next().is_multiple_of(3) {
                let h = [json!({"X-Team": "a"}), json!({"X-Bad": "a\r\nInjected: b"})];
                s.insert("headers".into(), g.pick(&h).clone());
            }
        }
        "file" => {
            let p = [
                json!("alerts.json"),
                json!("../../etc/passwd"),
                json!("/tmp/x"),
            ];
            s.insert("path".into(), g.pick(&p).clone());
            if g.next().is_multiple_of(2) {
                let m = [json!(1024), json!(1u64 << 40), json!(0)];
                s.insert("max_bytes".into(), g.pick(&m).clone());
            }
        }
        "nats" => {
            let servers = [
                json!(["nats://nats.example.com:4222"]),
                json!(["nats://127.0.0.1:4222"]),
                json!(["nats://169.254.169.254:4222"]),
                json!([]),
            ];
            s.insert("servers".into(), g.pick(&servers).clone());
            s.insert("subject".into(), json!("falco.{priority}"));
        }
        "pubsub" => {
            s.insert("project".into(), json!("p"));
            s.insert("topic".into(), json!("t"));
            if g.next().is_multiple_of(2) {
                s.insert("endpoint".into(), g.pick(&urls).clone());
            }
        }
        "sns" => {
            s.insert(
                "topic_arn".into(),
                json!("arn:aws:sns:eu-west-1:123456789012:t"),
            );
        }
        "gcscc" => {
            s.insert("mode".into(), json!("connector"));
            s.insert("webhook_url".into(), g.pick(&urls).clone());
        }
        "kafka" => {
            let b = [json!(["kafka.example.com:9093"]), json!(["127.0.0.1:9092"])];
            s.insert("brokers".into(), g.pick(&b).clone());
            s.insert("topic".into(), json!("alerts"));
        }
        _ => {}
    }
    let mut spec = json!({"type": t, "settings": s});
    // Credentials from opted-in Secrets, some of them malformed.
    if g.next().is_multiple_of(3) {
        let refs = match t {
            "http" => {
                json!([{"setting": "header_files.Authorization", "name": "creds", "key": *g.pick(&["token", "newline", "binary"])}])
            }
            "pubsub" => {
                json!([{"setting": "credentials_file", "name": "creds", "key": *g.pick(&["sa", "token"])}])
            }
            "sns" => json!([
                {"setting": "access_key_id_file", "name": "creds", "key": "token"},
                {"setting": "secret_access_key_file", "name": "creds", "key": *g.pick(&["token", "newline"])},
            ]),
            _ => json!([{"setting": "password_file", "name": "creds", "key": "token"}]),
        };
        spec["secretRefs"] = refs;
    }
    spec
}

/// The attacks of issue 13 on sinks, each with why kaudit must refuse it.
fn attacks() -> Vec<(&'static str, Value)> {
    vec![
        // kaudit's cloud identity: no credentials of its own, so the metadata server's.
        (
            "pubsub-ambient",
            json!({"type": "pubsub", "settings": {"project": "p", "topic": "t", "endpoint": "https://evil.example.com/"}}),
        ),
        (
            "sns-ambient",
            json!({"type": "sns", "settings": {"topic_arn": "arn:aws:sns:eu-west-1:123456789012:t"}}),
        ),
        // kaudit's network position.
        (
            "imds",
            json!({"type": "http", "settings": {"url": "http://169.254.169.254/latest/meta-data/"}}),
        ),
        (
            "loopback",
            json!({"type": "nats", "settings": {"servers": ["nats://127.0.0.1:4222"], "subject": "x"}}),
        ),
        // What used to render and then stop kaudit.
        (
            "get",
            json!({"type": "http", "settings": {"url": "https://hooks.example.com/", "method": "GET"}}),
        ),
        (
            "timeout-0",
            json!({"type": "http", "settings": {"url": "https://hooks.example.com/", "timeout_ms": 0}}),
        ),
        (
            "header-newline",
            json!({"type": "http", "settings": {"url": "https://hooks.example.com/"},
                   "secretRefs": [{"setting": "header_files.Authorization", "name": "creds", "key": "newline"}]}),
        ),
        // A Secret the team did not opt in.
        (
            "not-opted-in",
            json!({"type": "http", "settings": {"url": "https://hooks.example.com/"},
                   "secretRefs": [{"setting": "header_files.Authorization", "name": "private", "key": "token"}]}),
        ),
    ]
}

fn inputs(sinks: Vec<(String, Value)>) -> Inputs {
    let creds = BTreeMap::from([
        ("token".to_string(), b"Bearer abc".to_vec()),
        (
            "newline".to_string(),
            b"Bearer abc\r\nX-Injected: 1".to_vec(),
        ),
        ("binary".to_string(), vec![0, 159, 146, 150]),
        ("sa".to_string(), br#"{"type": "service_account"}"#.to_vec()),
    ]);
    Inputs {
        sinks: sinks
            .into_iter()
            .map(|(name, spec)| sink(NS, &name, spec))
            .collect(),
        secrets: BTreeMap::from([
            ((NS.to_string(), "creds".to_string()), creds.clone()),
            ((NS.to_string(), "private".to_string()), creds),
        ]),
        sink_credentials: [(NS.to_string(), "creds".to_string())].into(),
        ..Inputs::default()
    }
}

/// Renders `inputs` as the controller does (dry run first), writes the config Secret's files to
/// `dir` and returns kaudit's `sinks` and `tenancy` keys pointing there.
async fn rendered(mut inputs: Inputs, dir: &Path, data: &Path) -> (Desired, String) {
    let k = kd(json!({}));
    let tenancy = kaudit::operator::render::kaudit_config::tenancy(&k.spec.tenancy);
    inputs.sink_refusals = sink_check::dry_runs(&inputs, &tenancy).await;
    let d = render(&k, &inputs);
    for (key, v) in config_secret(&d).data.as_ref().unwrap() {
        std::fs::write(dir.join(key), &v.0).unwrap();
    }
    let text = d
        .kaudit_config
        .replace("/etc/kaudit/config", &dir.display().to_string())
        .replace("/var/lib/kaudit", &data.display().to_string());
    let full: Value = yaml_serde::from_str(&text).unwrap();
    let part = json!({"sinks": full["sinks"], "tenancy": full["tenancy"]});
    (d, yaml_serde::to_string(&part).unwrap())
}

/// Reloads `k` with `yaml` and waits for the outcome; true when kaudit took it.
async fn reload(k: &Kaudit, yaml: &str, round: usize) -> bool {
    let count = |s: &str, what: &str| s.matches(what).count();
    let before = k.logs();
    let (ok0, bad0) = (
        count(&before, "config reloaded"),
        count(&before, "config reload failed"),
    );
    k.reconfigure(yaml);
    eventually(&format!("reload of round {round}"), || async {
        let l = k.logs();
        let (ok, bad) = (
            count(&l, "config reloaded"),
            count(&l, "config reload failed"),
        );
        (ok > ok0 || bad > bad0).then_some(ok > ok0)
    })
    .await
}

#[tokio::test]
async fn hostile_and_generated_sinks_are_refused_alone_and_kaudit_keeps_serving() {
    let creds = tempfile::tempdir().unwrap();
    let mut k = Kaudit::start(&format!(
        "tenancy: {{credentials_dir: {}}}\nsinks: [{{name: stdout, type: stdout}}]\n",
        creds.path().display()
    ))
    .await;
    let event = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audit/exec-into-pod.json"),
    )
    .unwrap();

    // Round 0: the attacks, plus one good sink that must keep working beside them.
    let mut sinks: Vec<(String, Value)> = attacks()
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
    sinks.push((
        "good".into(),
        json!({"type": "http", "settings": {"url": "https://hooks.example.com/"},
               "secretRefs": [{"setting": "header_files.Authorization", "name": "creds", "key": "token"}]}),
    ));
    let (d, yaml) = rendered(inputs(sinks), creds.path(), &k.data).await;
    for (name, _) in attacks() {
        let o = outcome(&d, ItemKind::AlertSink, name);
        assert!(o.error.is_some(), "attack {name} was accepted");
    }
    let good = outcome(&d, ItemKind::AlertSink, "good");
    assert!(good.error.is_none(), "{:?}", good.error);
    assert!(reload(&k, &yaml, 0).await, "kaudit refused:\n{}", k.logs());
    assert_eq!(k.post(&event).await, 200);

    // Generated rounds: whatever the operator accepts, kaudit takes.
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0, 0);
    for round in 1..=4 {
        let sinks: Vec<(String, Value)> = (0..12)
            .map(|i| (format!("gen-{round}-{i}"), generated(&mut g)))
            .collect();
        let (d, yaml) = rendered(inputs(sinks), creds.path(), &k.data).await;
        for o in &d.outcomes {
            if o.error.is_some() {
                refused += 1;
            } else {
                accepted += 1;
            }
        }
        assert!(
            reload(&k, &yaml, round).await,
            "round {round}: kaudit refused what the operator accepted:\n{yaml}\n{}",
            k.logs()
        );
        assert!(k.alive(), "kaudit exited in round {round}");
        assert_eq!(k.post(&event).await, 200, "round {round}");
    }
    // The generator exercised both sides.
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

/// A deleted tenant sink's spool and dead letters are quarantined: a sink of the same name
/// created later (another team reusing the namespace) starts empty.
#[tokio::test]
async fn a_removed_tenant_sinks_spool_is_quarantined() {
    let creds = tempfile::tempdir().unwrap();
    let head = format!("tenancy: {{credentials_dir: {}}}\n", creds.path().display());
    // Undeliverable (the name does not resolve): alerts wait in the spool.
    let with = format!(
        "{head}sinks:\n- {{name: stdout, type: stdout}}\n- {{name: ns_team-a_hook, type: http, tenant: team-a, url: 'https://kaudit-test.invalid/'}}\n"
    );
    let without = format!("{head}sinks:\n- {{name: stdout, type: stdout}}\n");
    let k = Kaudit::start(&with).await;
    let event = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audit/exec-into-pod.json"),
    )
    .unwrap();
    assert_eq!(k.post(&event).await, 200);
    let spooled = "kaudit_sink_spool_records{sink=\"ns_team-a_hook\"";
    eventually("the alert in the tenant's spool", || async {
        (super::metric(&k.metrics().await, spooled) > 0.0).then_some(())
    })
    .await;
    assert!(reload(&k, &without, 1).await, "{}", k.logs());
    let quarantine = k.data.join("quarantine");
    let moved: Vec<_> = std::fs::read_dir(&quarantine)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", quarantine.display(), k.logs()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        moved.iter().any(|n| n.starts_with("ns_team-a_hook.")),
        "{moved:?}"
    );
    assert!(!k.data.join("spool/ns_team-a_hook").exists());
    // The name returns: nothing of the old owner's is delivered to it.
    assert!(reload(&k, &with, 2).await, "{}", k.logs());
    let m = k.metrics().await;
    assert!(m.contains(spooled), "{m}");
    assert_eq!(super::metric(&m, spooled), 0.0, "{m}");

    // Removed while kaudit is down: quarantined at the next start.
    let mut k = k;
    assert_eq!(k.post(&event).await, 200);
    eventually("a new alert in the tenant's spool", || async {
        (super::metric(&k.metrics().await, spooled) > 0.0).then_some(())
    })
    .await;
    let old = std::fs::read_to_string(&k.config).unwrap();
    let head: String = old.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&k.config, format!("{head}{without}")).unwrap();
    k.restart().await;
    let moved = std::fs::read_dir(&quarantine).unwrap().count();
    assert_eq!(moved, 2, "{}", k.logs());
    assert!(!k.data.join("spool/ns_team-a_hook").exists());
}
