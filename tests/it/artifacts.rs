//! The files we ship (example events, kubeconfigs, policy, manifests) are what they claim to be.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no *.{ext} in {dir}");
    v
}

fn yaml_docs(path: &Path) -> Vec<yaml_serde::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    yaml_serde::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

#[test]
fn example_audit_files_decode_completely() {
    for f in files("examples/audit", "json") {
        let body = std::fs::read(&f).unwrap();
        let d = kaudit::audit::decode(&body, 256 * 1024)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(d.rejected.is_empty(), "{}: {:?}", f.display(), d.rejected);
        assert!(!d.events.is_empty(), "{}", f.display());
    }
}

#[test]
fn webhook_kubeconfigs_point_at_k8s_audit() {
    for f in files("webhook-config", "kubeconfig") {
        let docs = yaml_docs(&f);
        assert_eq!(docs.len(), 1);
        let server = docs[0]["clusters"][0]["cluster"]["server"]
            .as_str()
            .unwrap();
        assert!(server.ends_with("/k8s-audit"), "{}: {server}", f.display());
        assert_eq!(docs[0]["kind"], "Config");
    }
}

#[test]
fn audit_policy_is_an_audit_policy() {
    let docs = yaml_docs(&root().join("audit-policy/kaudit-policy.yaml"));
    assert_eq!(docs[0]["kind"], "Policy");
    assert_eq!(docs[0]["apiVersion"], "audit.k8s.io/v1");
    let rules = docs[0]["rules"].as_sequence().unwrap();
    let levels: Vec<&str> = rules.iter().map(|r| r["level"].as_str().unwrap()).collect();
    for l in &levels {
        assert!(
            ["None", "Metadata", "Request", "RequestResponse"].contains(l),
            "{l}"
        );
    }
    // The catch-all must come last, or it would shadow the rules after it.
    assert_eq!(rules.last().unwrap().as_mapping().unwrap().len(), 1);
}

#[test]
fn deploy_manifests_parse() {
    for f in files("deploy", "yaml") {
        for d in yaml_docs(&f) {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string(),
                "{}: {d:?}",
                f.display()
            );
        }
    }
}

#[test]
fn standalone_deploy_config_is_valid() {
    let docs = yaml_docs(&root().join("deploy/kaudit.yaml"));
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let text = cm["data"]["kaudit.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("kaudit.yaml");
    std::fs::write(&f, text).unwrap();
    kaudit::config::Config::load_with_env(Some(&f), &Default::default(), Vec::new()).unwrap();
}
