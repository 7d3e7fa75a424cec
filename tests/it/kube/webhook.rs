//! The audit webhook end to end: a real apiserver, started with the policy of `audit-policy/`
//! and each kubeconfig of `webhook-config/` (with the flags of its README), posts to a real
//! `kaudit serve`. The test makes real API calls and asserts the alerts. Every event is what the
//! apiserver sent: kaudit evaluates it with the embedded default rules and forwards the batch,
//! byte for byte, to a second `kaudit serve` that plays Falco's part with the upstream rules of
//! `../shared/falco/rules/k8s_audit_rules.yaml` (`rule_matching: all`, as the operator sets).
//!
//! No kubelet runs here, so `kubectl exec` cannot open a stream: the apiserver refuses the
//! exec (the pod has no node) and the tests assert the alerts on that refused request.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::cluster::{Cluster, Options, bins, exclusive};
use super::hook::{Wiring, audit, render_kubeconfig};
use super::ops::{alerts_in, eventually, serve, wait_ready};
use super::pki::Pki;
use crate::rules::falco_dir;
use crate::support::free_port;

const WAIT: Duration = Duration::from_secs(120);

/// How kaudit's webhook is reached.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    Http,
    HttpsToken,
    HttpsClientCert,
}

/// What one run collected.
struct Seen {
    embedded: Vec<Value>,
    upstream: Vec<Value>,
}

fn rules_of(alerts: &[Value]) -> BTreeSet<String> {
    alerts
        .iter()
        .filter_map(|a| a["rule"].as_str().map(str::to_string))
        .collect()
}

/// An output field as text: strings as they are, lists joined with `,`, numbers printed.
fn field(a: &Value, f: &str) -> String {
    match &a["output_fields"][f] {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

fn yaml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// The front kaudit's config: the embedded rules, every batch forwarded to `upstream_port`.
fn front_config(dir: &Path, t: Transport, pki: &Pki, token: &str, upstream_port: u16) -> PathBuf {
    let mut cfg = format!(
        "data_dir: {data}\ndetect: {{mode: both}}\nfalco:\n  forward_url: http://127.0.0.1:{upstream_port}/k8s-audit\n  \
         http_output: false\nsinks:\n  - {{name: alerts, type: file, path: {alerts}}}\n",
        data = yaml_path(&dir.join("front")),
        alerts = yaml_path(&dir.join("front-alerts.json")),
    );
    if t != Transport::Http {
        let srv = pki.server("kaudit-serving", &["127.0.0.1"]);
        cfg.push_str(&format!(
            "tls:\n  cert_file: {}\n  key_file: {}\n",
            yaml_path(&srv.cert),
            yaml_path(&srv.key)
        ));
        if t == Transport::HttpsClientCert {
            cfg.push_str(&format!("  client_ca_file: {}\n", yaml_path(&pki.ca)));
        }
    }
    if t == Transport::HttpsToken {
        let f = dir.join("tokens");
        std::fs::write(&f, format!("{token}\n")).expect("token file");
        cfg.push_str(&format!("auth:\n  token_file: {}\n", yaml_path(&f)));
    }
    let path = dir.join("front.yaml");
    std::fs::write(&path, cfg).expect("front config");
    path
}

/// The second kaudit: Falco's upstream k8s_audit rules, every matching rule alerts.
fn upstream_config(dir: &Path) -> PathBuf {
    let rules = falco_dir().join("rules/k8s_audit_rules.yaml");
    assert!(rules.is_file(), "{} is missing", rules.display());
    let cfg = format!(
        "data_dir: {}\nrules:\n  files: [{}]\n  rule_matching: all\nsinks:\n  - {{name: alerts, type: file, path: {}}}\n",
        yaml_path(&dir.join("upstream")),
        yaml_path(&rules),
        yaml_path(&dir.join("upstream-alerts.json")),
    );
    let path = dir.join("upstream.yaml");
    std::fs::write(&path, cfg).expect("upstream config");
    path
}

const PRIVILEGED_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: priv, namespace: web}\n\
spec:\n  containers:\n  - name: main\n    image: docker.io/library/busybox:1.36\n    \
command: [sleep, infinity]\n    securityContext: {privileged: true}\n";

/// Runs the scenario through `t` and returns the alerts of both kaudits.
async fn run(t: Transport) -> Option<Seen> {
    let bins = bins()?;
    let _one = exclusive().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let pki = Pki::new(&d.join("kaudit-pki"));
    let token = "a-long-random-token-for-the-apiserver-0123456789";
    let port = free_port();
    let upstream_port = free_port();
    let (file, wiring) = match t {
        Transport::Http => (
            "http-lab.kubeconfig",
            Wiring {
                port,
                ..Default::default()
            },
        ),
        Transport::HttpsToken => (
            "https-token.kubeconfig",
            Wiring {
                port,
                ca: Some(pki.ca.clone()),
                token: Some(token.into()),
                ..Default::default()
            },
        ),
        Transport::HttpsClientCert => {
            let cli = pki.client("apiserver-client", "kube-apiserver", None);
            (
                "https-client-cert.kubeconfig",
                Wiring {
                    port,
                    ca: Some(pki.ca.clone()),
                    client: Some((cli.cert, cli.key)),
                    ..Default::default()
                },
            )
        }
    };
    let hook = render_kubeconfig(file, &wiring, d);
    let front = front_config(d, t, &pki, token, upstream_port);
    let upstream = upstream_config(d);

    let c = Cluster::start(
        bins,
        Options {
            audit: Some(audit(&hook, &[])),
            controller_manager: false,
            ..Default::default()
        },
    )
    .await;
    let _upstream = serve(&c, "kaudit-upstream", &upstream, upstream_port).await;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kaudit"));
    cmd.args(["serve", "--config"])
        .arg(&front)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    let mut kaudit = super::cluster::Proc::spawn("kaudit-front", c.dir(), &mut cmd);
    wait_ready(&mut kaudit, port, t != Transport::Http).await;

    // Real API calls.
    let admin = &c.admin;
    c.kubectl_ok(admin, &["create", "namespace", "web"]);
    // No controller manager here: the account a pod needs, by hand.
    c.kubectl_ok(admin, &["create", "serviceaccount", "default", "-n", "web"]);
    c.kubectl_in_ok(admin, &["apply", "-f", "-"], PRIVILEGED_POD.as_bytes());
    c.kubectl_ok(
        admin,
        &[
            "create",
            "clusterrolebinding",
            "backdoor",
            "--clusterrole=cluster-admin",
            "--user=mallory",
        ],
    );
    c.kubectl_ok(
        admin,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            "web",
            "--from-literal=password=s3cret",
        ],
    );
    let mallory = c.user("mallory", None);
    // (Each call that a fresh binding allows is retried until the RBAC authorizer's cache has
    // the binding.)
    eventually("mallory to read the secret", WAIT, || async {
        let out = c.kubectl(&mallory, &["get", "secret", "db", "-n", "web"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await;
    let pods = c.anonymous_get("/api/v1/namespaces/web/pods").await;
    assert_eq!(pods, 403, "anonymous may list pods");
    // A misconfiguration the upstream rules look for: anonymous users allowed to read.
    c.kubectl_ok(
        admin,
        &[
            "create",
            "role",
            "cm-reader",
            "--verb=get,list",
            "--resource=configmaps",
            "-n",
            "web",
        ],
    );
    c.kubectl_ok(
        admin,
        &[
            "create",
            "rolebinding",
            "anon-read",
            "--role=cm-reader",
            "--user=system:anonymous",
            "-n",
            "web",
        ],
    );
    // (Once the RBAC authorizer's cache has the binding.)
    eventually(
        "anonymous to list configmaps",
        Duration::from_secs(30),
        || async {
            match c.anonymous_get("/api/v1/namespaces/web/configmaps").await {
                200 => Ok(()),
                code => Err(code.to_string()),
            }
        },
    )
    .await;
    // exec: allowed for mallory but refused by the apiserver (no node, no kubelet), and
    // forbidden for eve.
    let refused = eventually("mallory's exec to reach the pod", WAIT, || async {
        let out = c.kubectl(&mallory, &["exec", "priv", "-n", "web", "--", "sh"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() && !err.contains("forbidden") {
            Ok(err)
        } else {
            Err(err)
        }
    })
    .await;
    assert!(
        refused.contains("does not have a host assigned"),
        "{refused}"
    );
    // eve may read pods (kubectl exec looks the pod up first) but not exec into them.
    c.kubectl_ok(
        admin,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
            "-n",
            "web",
        ],
    );
    c.kubectl_ok(
        admin,
        &[
            "create",
            "rolebinding",
            "eve-reads",
            "--role=pod-reader",
            "--user=eve",
            "-n",
            "web",
        ],
    );
    let eve = c.user("eve", None);
    eventually("eve's exec to be forbidden", WAIT, || async {
        let out = c.kubectl(&eve, &["exec", "priv", "-n", "web", "--", "sh"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if err.contains("pods/exec") {
            Ok(())
        } else {
            Err(err)
        }
    })
    .await;

    let want_embedded = [
        "Create Privileged Pod",
        "Binding To Cluster Admin",
        "Secret Read By Unexpected User",
        "Anonymous Request",
        "Forbidden Or Unauthorized Request",
    ];
    let want_upstream = [
        "Create Privileged Pod",
        "Attach to cluster-admin Role",
        "K8s Secret Get Successfully",
        "Anonymous Request Allowed",
        "Disallowed K8s User",
    ];
    let seen = eventually("the alerts of both rule sets", WAIT, || async {
        let embedded = alerts_in(d, "front-alerts");
        let upstream = alerts_in(d, "upstream-alerts");
        let (e, u) = (rules_of(&embedded), rules_of(&upstream));
        let exec_seen = upstream.iter().any(|a| {
            a["rule"] == "Disallowed K8s User"
                && field(a, "ka.user.name") == "mallory"
                && field(a, "ka.uri").contains("/exec")
        });
        if want_embedded.iter().all(|r| e.contains(*r))
            && want_upstream.iter().all(|r| u.contains(*r))
            && exec_seen
        {
            Ok(Seen { embedded, upstream })
        } else {
            Err(format!(
                "embedded: {e:?}\nupstream: {u:?}\nexec seen: {exec_seen}"
            ))
        }
    })
    .await;
    kaudit.check_alive();
    Some(seen)
}

fn one<'a>(alerts: &'a [Value], rule: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    alerts
        .iter()
        .find(|a| a["rule"] == rule && pred(a))
        .unwrap_or_else(|| panic!("no {rule:?} alert as expected among {alerts:#?}"))
}

/// What every transport must show.
fn check(s: &Seen) {
    let e = &s.embedded;
    let p = one(e, "Create Privileged Pod", |a| {
        field(a, "ka.target.namespace") == "web"
    });
    assert_eq!(field(p, "ka.user.name"), "kaudit-admin");
    assert_eq!(field(p, "ka.resp.name"), "priv");
    // (system:apiserver's own bootstrap binding of cluster-admin to system:masters at the
    // first start alerts too: the rule does not exempt the control plane.)
    let b = one(e, "Binding To Cluster Admin", |a| {
        field(a, "ka.user.name") == "kaudit-admin"
    });
    assert_eq!(field(b, "ka.target.name"), "backdoor", "{b}");
    assert!(
        field(b, "ka.req.binding.subjects.user_names").contains("mallory"),
        "{b}"
    );
    let r = one(e, "Secret Read By Unexpected User", |a| {
        field(a, "ka.user.name") == "mallory"
    });
    assert_eq!(field(r, "ka.target.name"), "db");
    // Refused (403) and allowed anonymous requests alike.
    one(e, "Anonymous Request", |a| {
        field(a, "ka.response.code") == "403"
    });
    one(e, "Anonymous Request", |a| {
        field(a, "ka.response.code") == "200"
    });
    one(e, "Forbidden Or Unauthorized Request", |a| {
        field(a, "ka.user.name") == "eve" && field(a, "ka.uri").contains("/exec")
    });
    // The exec the apiserver refused for want of a node is not an "Exec Or Attach Into Pod"
    // (that rule wants an allowed request).
    assert!(
        !e.iter().any(|a| a["rule"] == "Exec Or Attach Into Pod"),
        "exec alerted although no stream was opened"
    );

    let u = &s.upstream;
    let p = one(u, "Create Privileged Pod", |a| {
        field(a, "ka.user.name") == "kaudit-admin"
    });
    assert_eq!(
        field(p, "ka.req.pod.containers.image"),
        "docker.io/library/busybox:1.36"
    );
    one(u, "Attach to cluster-admin Role", |a| {
        field(a, "ka.req.binding.subjects").contains("mallory")
    });
    one(u, "K8s Secret Get Successfully", |a| {
        field(a, "ka.user.name") == "mallory"
    });
    one(u, "Anonymous Request Allowed", |a| {
        field(a, "ka.verb") == "list"
    });
    let x = one(u, "Disallowed K8s User", |a| {
        field(a, "ka.user.name") == "mallory" && field(a, "ka.uri").contains("/exec")
    });
    assert!(field(x, "ka.uri").contains("command=sh"), "{x}");
    // Upstream's exec rule matches the ResponseStarted stage, which the apiserver sends for
    // the exec (a long-running request) even though it then refuses it; the policy keeps it.
    let started = one(u, "Attach/Exec Pod", |a| {
        field(a, "ka.user.name") == "mallory"
    });
    assert_eq!(field(started, "ka.target.name"), "priv");
    eprintln!(
        "MEASURED refused exec: {} answered {}; upstream's Attach/Exec Pod fired on its \
         ResponseStarted event",
        field(x, "ka.uri"),
        field(x, "ka.response.code"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_http_lab_kubeconfig_end_to_end_exec_refused_without_a_kubelet() {
    if let Some(s) = run(Transport::Http).await {
        check(&s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_https_token_kubeconfig_end_to_end_exec_refused_without_a_kubelet() {
    if let Some(s) = run(Transport::HttpsToken).await {
        check(&s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_https_client_cert_kubeconfig_end_to_end_exec_refused_without_a_kubelet() {
    if let Some(s) = run(Transport::HttpsClientCert).await {
        check(&s);
    }
}
