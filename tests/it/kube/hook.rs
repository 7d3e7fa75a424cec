//! The shipped audit wiring, rendered for a test: the kubeconfigs of `webhook-config/` with
//! this test's address, certificates and token, the flags of `webhook-config/README.md`, and the
//! policy of `audit-policy/`.

use std::path::{Path, PathBuf};

use super::cluster::{Audit, root};

/// The `server:` every shipped kubeconfig names, over HTTP and HTTPS.
const SHIPPED_HTTP: &str = "http://kaudit.kaudit.svc:8777/k8s-audit";
const SHIPPED_HTTPS: &str = "https://kaudit.kaudit.svc:8777/k8s-audit";

/// What the shipped files refer to, and this test's value for each.
#[derive(Clone, Debug, Default)]
pub struct Wiring {
    /// kaudit's port on 127.0.0.1.
    pub port: u16,
    /// The CA that signed kaudit's serving certificate.
    pub ca: Option<PathBuf>,
    /// The apiserver's client certificate and key towards kaudit.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The bearer token.
    pub token: Option<String>,
}

/// Renders `webhook-config/<file>` into `dir` with `w`'s values in place of the shipped ones;
/// panics if the file no longer contains a value this expects to replace.
pub fn render_kubeconfig(file: &str, w: &Wiring, dir: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(root().join("webhook-config").join(file))
        .unwrap_or_else(|e| panic!("webhook-config/{file}: {e}"));
    let mut subs: Vec<(&str, String)> = Vec::new();
    if text.contains(SHIPPED_HTTPS) {
        subs.push((
            SHIPPED_HTTPS,
            format!("https://127.0.0.1:{}/k8s-audit", w.port),
        ));
    } else {
        subs.push((
            SHIPPED_HTTP,
            format!("http://127.0.0.1:{}/k8s-audit", w.port),
        ));
    }
    if let Some(ca) = &w.ca {
        subs.push(("/etc/kubernetes/kaudit/ca.crt", ca.display().to_string()));
    }
    if let Some((cert, key)) = &w.client {
        subs.push((
            "/etc/kubernetes/kaudit/apiserver-client.crt",
            cert.display().to_string(),
        ));
        subs.push((
            "/etc/kubernetes/kaudit/apiserver-client.key",
            key.display().to_string(),
        ));
    }
    if let Some(t) = &w.token {
        subs.push(("REPLACE-WITH-A-LONG-RANDOM-TOKEN", t.clone()));
    }
    for (from, to) in subs {
        assert!(
            text.contains(from),
            "webhook-config/{file} no longer contains {from:?}"
        );
        text = text.replace(from, &to);
    }
    let out = dir.join(file);
    std::fs::write(&out, text).expect("write kubeconfig");
    out
}

/// `http-lab.kubeconfig` rendered into `dir` for kaudit on `port`.
pub fn http_lab(port: u16, dir: &Path) -> PathBuf {
    let w = Wiring {
        port,
        ..Default::default()
    };
    render_kubeconfig("http-lab.kubeconfig", &w, dir)
}

/// The `--audit-*` flags of webhook-config/README.md's flag block, with the policy of
/// audit-policy/ and `kubeconfig`. `--audit-webhook-batch-max-wait` is 1s instead of the
/// README's 5s so that tests do not wait; `extra` flags are added (a flag given there replaces
/// the README's).
pub fn audit(kubeconfig: &Path, extra: &[&str]) -> Audit {
    let readme = std::fs::read_to_string(root().join("webhook-config/README.md")).expect("README");
    let mut flags: Vec<String> = readme
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("--audit-"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|f| {
            !f.starts_with("--audit-policy-file=") && !f.starts_with("--audit-webhook-config-file=")
        })
        .map(str::to_string)
        .collect();
    assert!(
        flags.iter().any(|f| f == "--audit-webhook-mode=batch"),
        "webhook-config/README.md lost its flag block: {flags:?}"
    );
    let mut replace = |flag: String| {
        let name = flag.split('=').next().unwrap_or("").to_string();
        flags.retain(|f| f.split('=').next() != Some(&name));
        flags.push(flag);
    };
    replace("--audit-webhook-batch-max-wait=1s".into());
    for e in extra {
        replace(e.to_string());
    }
    Audit {
        policy: root().join("audit-policy/kaudit-policy.yaml"),
        webhook_config: kubeconfig.to_path_buf(),
        flags,
    }
}
