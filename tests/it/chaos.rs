//! The zero-loss promise under fire: a client posts 50,000 events (unique auditIDs) while kaudit
//! is SIGKILLed at random moments and restarted on the same data directory. Every event that
//! was answered 200 must have its alert in the sink afterwards; duplicates are allowed (a replay
//! after a kill) and counted. A second run does the same with a NATS JetStream sink that is
//! down for part of it.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{NatsServer, nats_server_bin};

const EVENTS: usize = 50_000;
const BATCH: usize = 50;
const CLIENTS: usize = 4;
const KILLS: usize = 6;

const RULES: &str = r#"
- rule: Chaos
  desc: every created object, so that each event raises exactly one alert
  condition: ka.verb = create
  output: "chaos %ka.auditid"
  priority: WARNING
  source: k8s_audit
"#;

fn event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/configmaps","verb":"create","user":{{"username":"alice"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"configmaps","namespace":"default","name":"{id}","apiVersion":"v1"}},"responseStatus":{{"code":201}},"requestReceivedTimestamp":"2026-12-06T10:00:00.000000Z","stageTimestamp":"2026-12-06T10:00:00.000100Z"}}"#
    )
}

fn batch(ids: &[String]) -> String {
    let items: Vec<String> = ids.iter().map(|i| event(i)).collect();
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        items.join(",")
    )
}

/// One kaudit process on a fixed port, its log appended to a file.
struct Kaudit {
    config: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Kaudit {
    fn start(config: PathBuf, log: PathBuf) -> Kaudit {
        let mut k = Kaudit {
            config,
            log,
            port: stable_port(),
            child: None,
        };
        k.spawn();
        k
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kaudit"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kaudit");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let st = c.wait().expect("wait");
            assert_eq!(st.code(), Some(0), "kaudit exits 0 after SIGTERM");
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/k8s-audit", self.port)
    }
}

/// A free port outside the kernel's ephemeral range: kaudit is restarted on it again and again,
/// and while it is down no other test's ephemeral-port pick (`free_port`) can take it.
fn stable_port() -> u16 {
    loop {
        let p = rand::random_range(20_000..30_000);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

impl Drop for Kaudit {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the posting clients saw.
#[derive(Default)]
struct Posted {
    accepted: Mutex<HashSet<String>>,
    refused: AtomicUsize,
}

/// Posts every event in batches from `CLIENTS` tasks; a batch whose request fails (kaudit
/// dead, 429, 503) is sent again until it is answered 200, as kube-apiserver's retries would.
async fn post_all(url: String, run: &str, posted: Arc<Posted>) {
    kaudit::transport::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, next, posted, run) = (
            client.clone(),
            url.clone(),
            next.clone(),
            posted.clone(),
            run.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(BATCH, Ordering::SeqCst);
                if start >= EVENTS {
                    return;
                }
                let ids: Vec<String> = (start..start + BATCH)
                    .map(|n| format!("{run}-{n:06}"))
                    .collect();
                let body = batch(&ids);
                loop {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(resp) if resp.status() == 200 => {
                            posted.accepted.lock().unwrap().extend(ids);
                            break;
                        }
                        _ => {
                            posted.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("poster");
    }
}

/// Kills and restarts kaudit at random moments until posting is over (at least `KILLS` times);
/// `between` runs after each restart with the number of kills so far.
fn chaos_loop(
    k: &mut Kaudit,
    done: &AtomicBool,
    poster: &tokio::task::JoinHandle<()>,
    mut between: impl FnMut(usize),
) -> usize {
    let mut kills = 0;
    while kills < KILLS || !done.load(Ordering::SeqCst) {
        assert!(
            done.load(Ordering::SeqCst) || !poster.is_finished(),
            "the posting clients died"
        );
        let wait = Duration::from_millis(rand::random_range(300..1500));
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if done.load(Ordering::SeqCst) && kills >= KILLS {
                return kills;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        k.kill();
        kills += 1;
        k.spawn();
        between(kills);
    }
    kills
}

/// Reads `chaos <id>` outputs of a file sink: how many alerts per auditID.
fn file_alerts(path: &Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let Ok(f) = std::fs::File::open(path) else {
        return seen;
    };
    for line in std::io::BufReader::new(f).lines() {
        let Ok(line) = line else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(id) = v["output_fields"]["ka.auditid"].as_str() {
            *seen.entry(id.to_string()).or_default() += 1;
        }
    }
    seen
}

/// Lost (accepted, no alert) and duplicate counts; prints them.
fn tally(what: &str, accepted: &HashSet<String>, alerts: &HashMap<String, usize>) -> usize {
    let lost = accepted
        .iter()
        .filter(|id| !alerts.contains_key(*id))
        .count();
    let duplicates: usize = alerts.values().map(|n| n.saturating_sub(1)).sum();
    println!(
        "chaos {what}: accepted {} events, alerts for {} of them, lost {lost}, duplicates {duplicates}",
        accepted.len(),
        alerts.len()
    );
    lost
}

fn setup(dir: &Path, extra_sinks: &str) -> (PathBuf, PathBuf) {
    let rules = dir.join("chaos.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let out = dir.join("alerts.jsonl");
    let cfg = dir.join("kaudit.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {data}\nlog: {{level: warn}}\nrules: {{files: [{rules}]}}\nspool: {{retry_initial_ms: 50, retry_max_ms: 500}}\ninbox: {{retry_initial_ms: 100, retry_max_ms: 1000}}\nsinks:\n  - name: file\n    type: file\n    path: {out}\n{extra_sinks}",
            data = dir.join("data").display(),
            rules = rules.display(),
            out = out.display(),
        ),
    )
    .unwrap();
    (cfg, out)
}

/// Waits until `missing` says nothing is missing (the sinks caught up). Gives up, with the count
/// and the end of kaudit's log, only when nothing has moved for two minutes: on a loaded machine
/// a debug build may take long to work through the backlog, but it must keep moving.
fn settle(what: &str, log: &Path, mut missing: impl FnMut() -> usize) {
    let mut last = usize::MAX;
    let mut moved = Instant::now();
    let mut said = Instant::now();
    loop {
        let n = missing();
        if n == 0 {
            return;
        }
        if n < last {
            last = n;
            moved = Instant::now();
        }
        if moved.elapsed() > Duration::from_secs(120) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            for l in tail.iter().rev() {
                eprintln!("kaudit: {l}");
            }
            panic!("{what} stopped catching up: {n} accepted events have no alert there");
        }
        if said.elapsed() > Duration::from_secs(10) {
            println!("chaos: {n} alerts not yet in {what}");
            said = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigkill_under_load_loses_no_accepted_event() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, out) = setup(dir.path(), "");
    let mut k = Kaudit::start(cfg, dir.path().join("kaudit.log"));
    let posted = Arc::new(Posted::default());
    let done = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let poster = {
        let (url, posted, done) = (k.url(), posted.clone(), done.clone());
        rt.spawn(async move {
            post_all(url, "plain", posted).await;
            done.store(true, Ordering::SeqCst);
        })
    };
    let started = Instant::now();
    let kills = chaos_loop(&mut k, &done, &poster, |_| {});
    rt.block_on(poster).unwrap();
    let accepted = posted.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), EVENTS);
    settle("the file sink", &dir.path().join("kaudit.log"), || {
        let seen = file_alerts(&out);
        accepted.iter().filter(|id| !seen.contains_key(*id)).count()
    });
    k.terminate();
    println!(
        "chaos plain: {kills} SIGKILLs, {} refused requests retried, {:.1}s",
        posted.refused.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= KILLS);
    assert_eq!(tally("file sink", &accepted, &file_alerts(&out)), 0);
}

#[test]
fn sigkill_under_load_with_nats_down_for_a_while_loses_nothing() {
    let Some(bin) = nats_server_bin() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(bin);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let js = rt.block_on(async {
        let c = async_nats::connect(nats.url()).await.expect("nats");
        let js = async_nats::jetstream::new(c);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "CHAOS".into(),
            subjects: vec!["chaos.>".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("stream");
        js
    });
    let (cfg, out) = setup(
        dir.path(),
        &format!(
            "  - name: soc\n    type: nats\n    jetstream: true\n    subject: 'chaos.{{rule}}'\n    servers: ['{}']\n    timeout_ms: 2000\n",
            nats.url()
        ),
    );
    let mut k = Kaudit::start(cfg, dir.path().join("kaudit.log"));
    let posted = Arc::new(Posted::default());
    let done = Arc::new(AtomicBool::new(false));
    let poster = {
        let (url, posted, done) = (k.url(), posted.clone(), done.clone());
        rt.spawn(async move {
            post_all(url, "nats", posted).await;
            done.store(true, Ordering::SeqCst);
        })
    };
    // NATS goes down after the second kill and comes back after the fourth.
    let kills = chaos_loop(&mut k, &done, &poster, |n| match n {
        2 => nats.kill(),
        4 => nats.restart(),
        _ => {}
    });
    rt.block_on(poster).unwrap();
    let accepted = posted.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), EVENTS);
    let stream_alerts = || {
        rt.block_on(async {
            let mut seen: HashMap<String, usize> = HashMap::new();
            let mut stream = js.get_stream("CHAOS").await.expect("stream");
            let state = stream.info().await.expect("stream info").state.clone();
            // Every stored message, by sequence number: exact, whatever a consumer would batch.
            for seq in state.first_sequence..=state.last_sequence {
                let Ok(m) = stream.get_raw_message(seq).await else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                if let Some(id) = v["output_fields"]["ka.auditid"].as_str() {
                    *seen.entry(id.to_string()).or_default() += 1;
                }
            }
            seen
        })
    };
    let log = dir.path().join("kaudit.log");
    settle("the file sink", &log, || {
        let seen = file_alerts(&out);
        accepted.iter().filter(|id| !seen.contains_key(*id)).count()
    });
    settle("the NATS stream", &log, || {
        let s = stream_alerts();
        accepted.iter().filter(|id| !s.contains_key(*id)).count()
    });
    k.terminate();
    assert!(kills >= KILLS);
    assert_eq!(tally("file sink", &accepted, &file_alerts(&out)), 0);
    assert_eq!(tally("NATS sink", &accepted, &stream_alerts()), 0);
}
