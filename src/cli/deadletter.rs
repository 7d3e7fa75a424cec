//! `kaudit deadletter list | replay`: see what a sink refused, and send it again once the sink
//! (or its credentials, or the receiver) is fixed.
//!
//! Replay first claims the sink's dead-letter files by renaming them into
//! `<data_dir>/dead-letter/replay/<sink>/`, so that a running `kaudit serve` goes on appending to a
//! fresh file and nothing is read twice. Each claimed file is sent in the sink's own batch size;
//! whatever is refused again (or still failing after the retries) is appended back to the
//! dead-letter file with the new reason, and the claimed file is deleted only then. A replay that
//! is killed leaves its claimed files behind; the next replay sends them first (at least once:
//! consumers de-duplicate by the alert's uuid).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use crate::alert::Alert;
use crate::config::{Config, Overrides};
use crate::delivery::alerts::DEAD_LETTER_FIELD;
use crate::delivery::{Backoff, DeadLetters, LanePaths, Record, Sink, SinkError, deadletter};

/// The `deadletter` subcommands.
#[derive(Subcommand, Debug)]
pub enum DeadletterCommand {
    /// Per sink: dead-letter records, bytes, oldest and newest, and the most frequent reasons.
    List {
        /// YAML config file (its `data_dir` and sinks); omit for the embedded defaults.
        #[arg(short, long, env = "KAUDIT_CONFIG")]
        config: Option<PathBuf>,
        /// Only this sink; with `--records`, print its dead letters as JSON lines.
        sink: Option<String>,
        /// Print the records themselves (needs a sink name).
        #[arg(long, requires = "sink")]
        records: bool,
    },
    /// Send a sink's dead letters through the sink again; those refused again stay dead letters.
    Replay {
        /// YAML config file (its `data_dir` and the sink's settings); omit for the defaults.
        #[arg(short, long, env = "KAUDIT_CONFIG")]
        config: Option<PathBuf>,
        /// The sink, by its configured name.
        sink: String,
        /// Attempts per batch for passing failures (5xx, timeouts) before giving up on it.
        #[arg(long, default_value_t = 5)]
        attempts: u32,
    },
}

/// Runs a `deadletter` subcommand: exit 0 when all went well, 1 when something is left (a
/// record refused again, an unreadable line), 2 for a bad config or an unknown sink.
pub fn run(cmd: DeadletterCommand) -> ExitCode {
    match cmd {
        DeadletterCommand::List {
            config,
            sink,
            records,
        } => {
            let Some(cfg) = load_config(config.as_deref()) else {
                return ExitCode::from(2);
            };
            list(&cfg, sink.as_deref(), records)
        }
        DeadletterCommand::Replay {
            config,
            sink,
            attempts,
        } => {
            let Some(cfg) = load_config(config.as_deref()) else {
                return ExitCode::from(2);
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("kaudit: cannot start a runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(replay(&cfg, &sink, attempts.max(1)))
        }
    }
}

fn load_config(file: Option<&Path>) -> Option<Config> {
    match Config::load(file, &Overrides::default()) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("kaudit: invalid config: {e}");
            None
        }
    }
}

fn claimed_dir(data_dir: &Path, sink: &str) -> PathBuf {
    data_dir.join("dead-letter").join("replay").join(sink)
}

/// Every file holding dead letters of `sink`: claimed by an unfinished replay first, then the
/// rotations oldest first, then the current file.
fn all_files(data_dir: &Path, sink: &str) -> Vec<PathBuf> {
    let mut claimed: Vec<PathBuf> = std::fs::read_dir(claimed_dir(data_dir, sink))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    claimed.sort();
    claimed.extend(deadletter::files(
        &LanePaths::under(data_dir, sink).dead_letter,
    ));
    claimed
}

/// One dead-letter line as written by [`DeadLetters::write`].
#[derive(serde::Deserialize)]
struct Line {
    time: Option<String>,
    reason: Option<String>,
    alert: Option<serde_json::Value>,
}

#[derive(Default)]
struct Summary {
    files: usize,
    records: u64,
    bytes: u64,
    oldest: Option<String>,
    newest: Option<String>,
    reasons: BTreeMap<String, u64>,
    unreadable: u64,
}

fn summarize(files: &[PathBuf]) -> Summary {
    let mut s = Summary {
        files: files.len(),
        ..Summary::default()
    };
    for f in files {
        s.bytes += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        for_each_line(f, |line| match line {
            Ok(l) => {
                s.records += 1;
                if let Some(t) = l.time {
                    if s.oldest.as_ref().is_none_or(|o| &t < o) {
                        s.oldest = Some(t.clone());
                    }
                    if s.newest.as_ref().is_none_or(|n| &t > n) {
                        s.newest = Some(t);
                    }
                }
                *s.reasons.entry(l.reason.unwrap_or_default()).or_default() += 1;
            }
            Err(_) => s.unreadable += 1,
        });
    }
    s
}

/// Calls `f` with each line's parse; an error names the file and line.
fn for_each_line(path: &Path, mut f: impl FnMut(Result<Line, String>)) {
    let file = match std::fs::File::open(path) {
        Ok(x) => x,
        Err(e) => {
            f(Err(format!("{}: {e}", path.display())));
            return;
        }
    };
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let parsed = line
            .map_err(|e| e.to_string())
            .and_then(|l| serde_json::from_str::<Line>(&l).map_err(|e| e.to_string()))
            .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1));
        f(parsed);
    }
}

fn list(cfg: &Config, only: Option<&str>, records: bool) -> ExitCode {
    let names: Vec<&str> = match only {
        Some(n) => vec![n],
        None => cfg.sinks.iter().map(|s| s.name.as_str()).collect(),
    };
    let mut out = std::io::stdout().lock();
    if records {
        let mut status = ExitCode::SUCCESS;
        for f in all_files(&cfg.data_dir, names[0]) {
            match std::fs::read(&f) {
                Ok(b) => {
                    let _ = out.write_all(&b);
                }
                Err(e) => {
                    eprintln!("kaudit: {}: {e}", f.display());
                    status = ExitCode::FAILURE;
                }
            }
        }
        return status;
    }
    for name in names {
        let s = summarize(&all_files(&cfg.data_dir, name));
        let mut reasons: Vec<(&String, &u64)> = s.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = reasons
            .iter()
            .take(3)
            .map(|(r, n)| format!("{n}x {r}"))
            .collect();
        let _ = writeln!(
            out,
            "{name}: {} records, {} bytes in {} files{}{}{}",
            s.records,
            s.bytes,
            s.files,
            match (&s.oldest, &s.newest) {
                (Some(o), Some(n)) => format!(", {o} .. {n}"),
                _ => String::new(),
            },
            if top.is_empty() {
                String::new()
            } else {
                format!("; reasons: {}", top.join("; "))
            },
            if s.unreadable > 0 {
                format!("; {} unreadable lines", s.unreadable)
            } else {
                String::new()
            },
        );
    }
    ExitCode::SUCCESS
}

/// Moves the sink's dead-letter files into the claim directory; returns every claimed file
/// (including those an earlier, unfinished replay claimed), oldest first.
fn claim(data_dir: &Path, sink: &str) -> std::io::Result<Vec<PathBuf>> {
    let dir = claimed_dir(data_dir, sink);
    std::fs::create_dir_all(&dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f");
    let live = deadletter::files(&LanePaths::under(data_dir, sink).dead_letter);
    for (i, f) in live.iter().enumerate() {
        match std::fs::rename(f, dir.join(format!("{stamp}-{i:03}.jsonl"))) {
            Ok(()) => {}
            // Rotated away by a running kaudit in the meantime: it shows up under its new
            // name on the next replay.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let mut claimed: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .collect();
    claimed.sort();
    Ok(claimed)
}

/// What a replay did.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    refused: u64,
    unreadable: u64,
}

async fn replay(cfg: &Config, name: &str, attempts: u32) -> ExitCode {
    let Some(sink_cfg) = cfg.sinks.iter().find(|s| s.name == name) else {
        let known: Vec<&str> = cfg.sinks.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "kaudit: no sink named '{name}' in the config (sinks: {})",
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    let sink = match crate::sinks::build(sink_cfg, &cfg.tenancy.sink_rules()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kaudit: sink '{name}' cannot be built: {e}");
            return ExitCode::FAILURE;
        }
    };
    let files = match claim(&cfg.data_dir, name) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "kaudit: cannot claim the dead letters of '{name}' under {}: {e}",
                cfg.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    // Refused-again records go back under the same cap and rotation as a running kaudit's.
    let back = DeadLetters::with_limits(
        LanePaths::under(&cfg.data_dir, name).dead_letter,
        name,
        DEAD_LETTER_FIELD,
        cfg.spool.dead_letter_limits(),
    );
    let mut tally = Tally::default();
    for f in &files {
        match replay_file(sink.as_ref(), &back, f, attempts, &mut tally).await {
            Ok(()) => {
                if let Err(e) = std::fs::remove_file(f) {
                    eprintln!("kaudit: {}: replayed but not deleted: {e}", f.display());
                }
            }
            Err(e) => {
                eprintln!("kaudit: {e}; the rest stays claimed for the next replay");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{name}: {} sent, {} refused again (back in the dead-letter file), {} unreadable lines",
        tally.sent, tally.refused, tally.unreadable
    );
    if tally.refused > 0 || tally.unreadable > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn replay_file(
    sink: &dyn Sink,
    back: &DeadLetters,
    path: &Path,
    attempts: u32,
    tally: &mut Tally,
) -> Result<(), String> {
    let mut alerts = Vec::new();
    let mut bad = Vec::new();
    for_each_line(path, |line| {
        match line.and_then(|l| {
            let v = l
                .alert
                .ok_or_else(|| format!("{}: a line without an alert", path.display()))?;
            serde_json::from_value::<Alert>(v)
                .map_err(|e| format!("{}: not an alert: {e}", path.display()))
        }) {
            Ok(a) => alerts.push(a),
            Err(e) => bad.push(e),
        }
    });
    for e in &bad {
        eprintln!("kaudit: skipped {e}");
    }
    tally.unreadable += bad.len() as u64;
    let size = sink.batch_policy().max.max(1);
    for batch in alerts.chunks(size) {
        match send_with_retries(sink, batch, attempts).await {
            Ok(()) => tally.sent += batch.len() as u64,
            Err(e) => {
                let records: Vec<Record> = batch
                    .iter()
                    .filter_map(|a| serde_json::to_vec(a).ok())
                    .map(|p| Record {
                        seq: 0,
                        enqueued_ms: 0,
                        payload: p.into(),
                    })
                    .collect();
                back.write(&records, &format!("replay: {e}"))
                    .map_err(|io| {
                        format!(
                            "cannot write refused records back to {}: {io}",
                            back.path().display()
                        )
                    })?;
                tally.refused += batch.len() as u64;
            }
        }
    }
    Ok(())
}

async fn send_with_retries(
    sink: &dyn Sink,
    batch: &[Alert],
    attempts: u32,
) -> Result<(), SinkError> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let mut left = attempts;
    loop {
        match sink.send(batch).await {
            Ok(()) => return Ok(()),
            Err(SinkError::Retryable {
                message,
                retry_after,
            }) if left > 1 => {
                left -= 1;
                let wait = retry_after.unwrap_or_else(|| backoff.next_delay());
                eprintln!(
                    "kaudit: {message}; retrying in {} ms",
                    wait.min(Duration::from_secs(60)).as_millis()
                );
                tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A sink that refuses alerts whose rule is in `refuse` and keeps the rest.
    struct Picky {
        refuse: &'static str,
        got: Mutex<Vec<String>>,
    }

    impl Sink for Picky {
        fn send<'a>(
            &'a self,
            alerts: &'a [Alert],
        ) -> futures_util::future::BoxFuture<'a, Result<(), SinkError>> {
            Box::pin(async move {
                if alerts.iter().any(|a| a.rule == self.refuse) {
                    return Err(SinkError::Permanent("400 bad alert".into()));
                }
                let mut g = self.got.lock().unwrap();
                g.extend(alerts.iter().map(|a| a.uuid.to_string()));
                Ok(())
            })
        }
    }

    const U1: &str = "00000000-0000-4000-8000-000000000001";
    const U2: &str = "00000000-0000-4000-8000-000000000002";

    fn alert(rule: &str, uuid: &str) -> Alert {
        serde_json::from_value(serde_json::json!({
            "uuid": uuid, "output": "x", "priority": "Warning", "rule": rule,
            "time": "2026-01-01T00:00:00.000000000Z", "source": "k8s_audit",
            "tags": [], "hostname": "h", "output_fields": {}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn replay_sends_what_is_taken_and_keeps_what_is_refused_again() {
        let dir = tempfile::tempdir().unwrap();
        let paths = LanePaths::under(dir.path(), "soc");
        let dl = DeadLetters::new(paths.dead_letter.clone(), "soc", DEAD_LETTER_FIELD);
        let rec = |a: &Alert| Record {
            seq: 0,
            enqueued_ms: 0,
            payload: serde_json::to_vec(a).unwrap().into(),
        };
        dl.write(&[rec(&alert("Good", U1)), rec(&alert("Bad", U2))], "401")
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&paths.dead_letter)
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        let sink = Picky {
            refuse: "Bad",
            got: Mutex::new(Vec::new()),
        };
        let files = claim(dir.path(), "soc").unwrap();
        assert_eq!(files.len(), 1);
        assert!(
            !paths.dead_letter.exists(),
            "claimed away from the live file"
        );
        let mut tally = Tally::default();
        replay_file(&sink, &dl, &files[0], 1, &mut tally)
            .await
            .unwrap();
        assert_eq!(*sink.got.lock().unwrap(), vec![U1.to_string()]);
        assert_eq!((tally.sent, tally.refused, tally.unreadable), (1, 1, 1));
        let again = std::fs::read_to_string(&paths.dead_letter).unwrap();
        assert_eq!(again.lines().count(), 1, "{again}");
        assert!(again.contains(U2) && again.contains("replay: 400 bad alert"));
        // The claimed file survives until the caller deletes it: a killed replay resends.
        assert_eq!(all_files(dir.path(), "soc").len(), 2);
    }
}
