//! Disk faults stay local and heal: a full disk under one sink's spool and under the inbox,
//! staged with real tmpfs mounts under a real kaudit process.
//!
//! While one sink's spool cannot be written, the other sink keeps receiving every alert and
//! kaudit keeps answering 200; while the inbox cannot be written, kaudit answers 503 (never 200)
//! and /readyz says so. Once space is back, both heal without a restart and every event
//! answered 200 reaches both sinks.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::chaos::{Kaudit, batch, file_alerts, setup};
use crate::support::Recorder;

/// A tmpfs of a fixed size mounted on a directory, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts it, or says why not (not root, no mount): the test is then skipped, except
    /// under CI, where it must run.
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs {
                dir: dir.to_path_buf(),
            }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("cannot mount a tmpfs (the fault tests need root): {why}");
                }
                eprintln!("SKIPPED: cannot mount a tmpfs (the fault tests need root): {why}");
                None
            }
        }
    }

    fn filler(&self) -> PathBuf {
        self.dir.join("filler")
    }

    /// Fills what is left of it.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.filler()).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        // Byte by byte into the last partial page.
        while f.write_all(&[0]).is_ok() {}
    }

    /// Gives the space back.
    fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn ids(run: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{run}-{i:05}")).collect()
}

/// Posts `ids` in batches of 50; returns the status of each request.
async fn post(c: &reqwest::Client, url: &str, ids: &[String]) -> Vec<u16> {
    let mut out = Vec::new();
    for chunk in ids.chunks(50) {
        let s = c
            .post(url)
            .header("content-type", "application/json")
            .body(batch(chunk))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        out.push(s);
    }
    out
}

/// Polls until `cond` holds, panicking with `what` and kaudit's log after a long while.
fn wait(what: &str, log: &Path, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > Duration::from_secs(120) {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let _ = std::fs::write(std::env::temp_dir().join("kaudit-faults.log"), &text);
            for l in text.lines().rev().take(40).collect::<Vec<_>>().iter().rev() {
                eprintln!("kaudit: {l}");
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn full_disks_under_a_spool_and_the_inbox_heal_while_other_sinks_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(spool_fs) = Tmpfs::mount(&data.join("spool/soc"), 16 << 20) else {
        return;
    };
    let Some(inbox_fs) = Tmpfs::mount(&data.join("inbox"), 16 << 20) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = Arc::new(AtomicBool::new(false));
    // The auditIDs of the alerts the soc sink answered 200 for.
    let taken: Arc<Mutex<HashSet<String>>> = Arc::default();
    let soc = {
        let (up, taken) = (up.clone(), taken.clone());
        rt.block_on(Recorder::start(Arc::new(move |_, req| {
            if !up.load(Ordering::SeqCst) {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            if let Some(id) = req.json()["output_fields"]["ka.auditid"].as_str() {
                taken.lock().unwrap().insert(id.to_string());
            }
            StatusCode::OK.into_response()
        })))
    };
    let (cfg, out) = setup(
        dir.path(),
        &format!(
            "  - name: soc\n    type: http\n    url: {}\n",
            soc.url("/alerts")
        ),
    );
    let log = dir.path().join("kaudit.log");
    let mut k = Kaudit::start(cfg, log.clone());
    let url = k.url();
    let base = url.trim_end_matches("/k8s-audit").to_string();
    kaudit::transport::tls::install_crypto_provider();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ready = |c: &reqwest::Client| {
        rt.block_on(async {
            c.get(format!("{base}/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    };
    wait("kaudit to be ready", &log, || ready(&c) == 200);

    // 1. The soc sink is down and its spool's disk fills up: the file sink gets every alert
    //    all along, and every request is answered 200.
    spool_fs.fill();
    let first = ids("spool-full", 500);
    let statuses = rt.block_on(post(&c, &url, &first));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    wait("the file sink to have every alert", &log, || {
        let seen = file_alerts(&out);
        first.iter().all(|id| seen.contains_key(id))
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("cannot write the spool"),
        "the soc spool's disk really was full"
    );

    // 2. The inbox's disk fills up too: kaudit answers 503, never 200, and is not ready.
    inbox_fs.fill();
    let refused = ids("inbox-full", 200);
    let statuses = rt.block_on(post(&c, &url, &refused));
    assert!(
        statuses.iter().all(|s| *s == 503),
        "a full inbox answers 503: {statuses:?}"
    );
    wait("/readyz to say the inbox cannot write", &log, || {
        ready(&c) == 503
    });

    // 3. Space comes back and the soc sink comes up: both heal without a restart.
    inbox_fs.free();
    spool_fs.free();
    up.store(true, Ordering::SeqCst);
    let last = ids("healed", 500);
    let mut pending: Vec<String> = last.clone();
    wait("the inbox to take batches again", &log, || {
        let statuses = rt.block_on(post(&c, &url, &pending));
        let mut left = Vec::new();
        for (chunk, s) in pending.chunks(50).zip(statuses) {
            if s != 200 {
                left.extend_from_slice(chunk);
            }
        }
        pending = left;
        pending.is_empty()
    });
    wait("/readyz to be ready again", &log, || ready(&c) == 200);
    let want: HashSet<String> = first.iter().chain(&last).cloned().collect();
    wait("the file sink to have every accepted alert", &log, || {
        let seen = file_alerts(&out);
        want.iter().all(|id| seen.contains_key(id))
    });
    wait("the soc sink to have every accepted alert", &log, || {
        let got = taken.lock().unwrap();
        want.iter().all(|id| got.contains(id))
    });
    let seen = file_alerts(&out);
    assert!(
        refused.iter().all(|id| !seen.contains_key(id)),
        "what was answered 503 was not taken"
    );
    k.terminate();
}
