//! `kaudit config check` refuses everything `kaudit serve` refuses (so a config that passes the
//! check never crash-loops kaudit), and prints no secret.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::support::PATIENCE;

fn run(args: &[&str], config: &std::path::Path) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kaudit"))
        .args(args)
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kaudit");
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_refuses_what_serve_refuses_and_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("newline"), "Bearer a\r\nX-Injected: 1").unwrap();
    std::fs::write(creds.join("token"), "Bearer s3cret-token").unwrap();
    let head = format!(
        "listen: 127.0.0.1:0\ndata_dir: {}\ntenancy: {{credentials_dir: {}}}\nsinks:\n",
        dir.path().join("data").display(),
        creds.display()
    );
    let hook = "url: 'https://hooks.example.com/'";
    let bad = [
        (
            "header-newline",
            format!(
                "- {{name: t, type: http, tenant: a, {hook}, header_files: {{Authorization: {}/newline}}}}",
                creds.display()
            ),
        ),
        (
            "ambient",
            "- {name: t, type: pubsub, tenant: a, project: p, topic: t}".to_string(),
        ),
        (
            "imds",
            "- {name: t, type: http, tenant: a, url: 'http://169.254.169.254/latest/'}".to_string(),
        ),
        (
            "kaudit-files",
            format!(
                "- {{name: t, type: http, tenant: a, {hook}, header_files: {{Authorization: /var/run/secrets/kubernetes.io/serviceaccount/token}}}}"
            ),
        ),
        (
            "get",
            format!("- {{name: t, type: http, {hook}, method: GET}}"),
        ),
        (
            "timeout-0",
            format!("- {{name: t, type: http, {hook}, timeout_ms: 0}}"),
        ),
        (
            "ambient-true",
            format!("- {{name: t, type: http, tenant: a, ambient_credentials: true, {hook}}}"),
        ),
    ];
    for (what, sinks) in bad {
        let f = dir.path().join(format!("{what}.yaml"));
        std::fs::write(&f, format!("{head}{sinks}\n")).unwrap();
        let (check, _, err) = run(&["config", "check"], &f);
        assert_eq!(check, Some(2), "{what}: config check passed:\n{err}");
        let (serve, _, serr) = run(&["serve", "-c"], &f);
        assert!(
            serve.is_some() && serve != Some(0),
            "{what}: serve did not refuse it ({serve:?}):\n{serr}"
        );
    }
    // A good config passes, with its secrets redacted.
    let f = dir.path().join("good.yaml");
    std::fs::write(
        &f,
        format!(
            "{head}- {{name: t, type: http, tenant: a, url: 'https://user:pa55word@hooks.example.com/', headers: {{X-Api-Key: inline-s3cret}}, header_files: {{Authorization: {}/token}}}}\n",
            creds.display()
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["config", "check"], &f);
    assert_eq!(code, Some(0), "{err}");
    for secret in ["pa55word", "inline-s3cret", "s3cret-token"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} printed:\n{out}{err}"
        );
    }
}
