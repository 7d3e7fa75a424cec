//! The UI in real headless Chromium (Debian's `chromium`, driven by `playwright-core` from
//! npm in `.tools/console-browser`, both installed by `ensure_chromium`): load the console, see
//! an alert POSTed during the test appear in the live feed, filter by rule, open the alert's
//! page, check the sinks and rules pages. Screenshots of each page go to a temporary directory,
//! or to `docs/console/` (the README's pictures) with `UPDATE_SCREENSHOTS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use kaudit::alert::Priority;

use super::harness::*;

/// The playwright-core install and node, or `None` (skipped outside CI) when missing.
fn tools() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/console-browser");
    let ok = Path::new("/usr/bin/chromium").exists()
        && dir.join("node_modules/playwright-core").is_dir()
        && Command::new("node").arg("--version").output().is_ok();
    if ok {
        return Some(dir);
    }
    let hint =
        "chromium or playwright-core missing: run `source scripts/lib/deps.sh && ensure_chromium`";
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{hint}");
    }
    eprintln!("SKIPPED: {hint}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_ui_in_headless_chromium() {
    let Some(pw) = tools() else { return };
    let k = Kaudit::start(default_sinks).await;
    // Some history, so that the chart and the top lists have something to show.
    let mut history = Vec::new();
    use Priority::*;
    let kinds = [
        (
            "Secret Read By Unexpected User",
            Warning,
            "payments",
            "ci-bot",
        ),
        ("Create Privileged Pod", Critical, "team-a", "alice"),
        ("Anonymous Request", Notice, "", "system:anonymous"),
        ("Exec Or Attach Into Pod", Notice, "team-b", "bob"),
        ("Secret Read By Unexpected User", Warning, "team-b", "bob"),
        ("Role With Wildcard Permissions", Error, "", "alice"),
    ];
    for (i, (rule, p, ns, user)) in kinds.into_iter().cycle().take(40).enumerate() {
        let t = chrono::Utc::now() - chrono::Duration::minutes(17 * i as i64);
        history.push(alert_at(rule, p, ns, user, t));
    }
    k.post(&history).await;
    k.wait_count("", 40).await;

    // A run leaves the tree as it was unless asked to refresh the README's pictures.
    let tmp = tempfile::tempdir().expect("temp dir");
    let shots = if std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console")
    } else {
        tmp.path().to_path_buf()
    };
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let shots_arg = shots.clone();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/console/browser.js");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(&pw)
            .arg(&k.base)
            .arg(ADMIN)
            .arg(WEBHOOK_TOKEN)
            .arg(&shots_arg)
            .output()
            .map(|o| (o, k))
    })
    .await
    .expect("join")
    .expect("run node");
    let (out, k) = out;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{}\nkaudit:\n{}",
        String::from_utf8_lossy(&out.stderr),
        k.log()
    );
    for step in [
        "feed live",
        "live alert shown",
        "filtered by rule",
        "alert page",
        "sinks page",
        "rules page",
        "keyboard",
    ] {
        assert!(
            stdout.contains(&format!("\"step\":\"{step}\"")),
            "{step}: {stdout}"
        );
    }
    for png in ["feed.png", "alert.png", "sinks.png", "rules.png"] {
        let p = shots.join(png);
        assert!(std::fs::metadata(&p).is_ok_and(|m| m.len() > 1000), "{png}");
    }
}
