//! The audit sources against real servers: each source's records become Events, go through
//! the rules and reach a sink (a file sink here), and positions advance only after the inbox
//! has the events, so restarts and kills lose nothing and repeat nothing that detection does
//! not de-duplicate.

mod aks;
mod eks;
mod file;
mod gke;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kaudit::pipeline::Running;
use serde_json::{Value, json};

use crate::support::{PATIENCE, config_from_yaml};

/// A rule that raises one alert per event, naming its auditID.
pub const EVERY_EVENT: &str = r#"
- rule: Any audit event
  desc: every event, for the source tests
  condition: ka.verb in (create, get, list, watch, update, patch, delete)
  output: event %ka.auditid (verb=%ka.verb user=%ka.user.name resource=%ka.target.resource code=%ka.response.code)
  priority: NOTICE
  source: k8s_audit
"#;

/// An audit Event (the apiserver's log line) with auditID `id`.
pub fn event(id: &str) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": id, "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/pods/nginx", "verb": "get",
        "user": {"username": "alice", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.1"],
        "objectRef": {"resource": "pods", "namespace": "default", "name": "nginx", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": now, "stageTimestamp": now
    })
}

/// The config of a pipeline with `sources_yaml` (indented list items), the rule above and a
/// file sink at `<dir>/alerts.jsonl`.
pub fn yaml(dir: &Path, sources_yaml: &str) -> String {
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, EVERY_EVENT).expect("rules file");
    format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\nrules:\n  files: [{}]\nspool:\n  retry_initial_ms: 20\n  retry_max_ms: 100\nsources:\n{sources_yaml}sinks:\n  - name: alerts\n    type: file\n    path: {}\n",
        dir.join("data").display(),
        rules.display(),
        alerts_file(dir).display()
    )
}

/// Where the file sink writes.
pub fn alerts_file(dir: &Path) -> PathBuf {
    dir.join("alerts.jsonl")
}

/// Starts a pipeline with `sources_yaml`.
pub async fn start(dir: &Path, sources_yaml: &str) -> Running {
    let cfg = config_from_yaml(&yaml(dir, sources_yaml));
    kaudit::pipeline::start(cfg).await.expect("pipeline starts")
}

/// auditID → the distinct alert uuids raised for it, from the sink's file.
pub fn alerted(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in lenient_lines(&alerts_file(dir)) {
        let id = a["output_fields"]["ka.auditid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let uuid = a["uuid"].as_str().unwrap_or_default().to_string();
        out.entry(id).or_default().insert(uuid);
    }
    out
}

/// Waits until every id of `ids` has an alert.
pub async fn wait_alerted(dir: &Path, ids: &BTreeSet<String>) {
    let start = std::time::Instant::now();
    loop {
        let got = alerted(dir);
        if ids.iter().all(|i| got.contains_key(i)) {
            return;
        }
        if start.elapsed() > PATIENCE {
            let missing: Vec<&String> = ids.iter().filter(|i| !got.contains_key(*i)).collect();
            panic!(
                "timed out: no alert for {} ids, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every alerted auditID is one of `ids`, each raised exactly one distinct uuid (a repeat is
/// the same alert again, which consumers de-duplicate), and every id of `ids` is there.
pub fn assert_exactly_once(dir: &Path, ids: &BTreeSet<String>) {
    let got = alerted(dir);
    let keys: BTreeSet<String> = got.keys().cloned().collect();
    assert_eq!(
        &keys, ids,
        "alerted auditIDs differ from the events written"
    );
    for (id, uuids) in &got {
        assert_eq!(
            uuids.len(),
            1,
            "auditID {id} became {} different alerts",
            uuids.len()
        );
    }
}

/// `kaudit sources check` of `sources_yaml`: each source's verdict.
pub async fn check(dir: &Path, sources_yaml: &str) -> Vec<kaudit::sources::check::Verdict> {
    let cfg = config_from_yaml(&yaml(dir, sources_yaml));
    kaudit::sources::check::check_all(&cfg.sources, &cfg.source_env()).await
}

/// Alert lines in the sink's file.
pub fn alert_lines(dir: &Path) -> usize {
    lenient_lines(&alerts_file(dir)).len()
}

/// JSON lines of a file, a torn last line (a SIGKILL mid-write) left out.
fn lenient_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
