//! The CPU work `kaudit serve` does per accepted request, without the network: ingest's check
//! and detection in one pass over the body (`lazy::for_each_event` with the embedded rules, as
//! `detect::Screener` does before the webhook answers), repeated. Run under
//! `valgrind --tool=callgrind` by `scripts/bench-ingest`, beside a bare parse of the same body
//! into a `serde_json::Value` (what `scripts/bench/bare_ingest.rs` does per request), so the
//! instruction counts per event can be compared on a loaded machine.
//! Usage: ingest-cpu <body.json> <repeats> [parse-only]

use std::process::ExitCode;

use kaudit_engine::lazy;
use kaudit_engine::rules::{LoadOptions, Ruleset};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(reps)) = (args.next(), args.next()) else {
        eprintln!("usage: ingest-cpu <body.json> <repeats> [parse-only]");
        return ExitCode::FAILURE;
    };
    let parse_only = args.next().as_deref() == Some("parse-only");
    let Ok(reps) = reps.parse::<usize>() else {
        eprintln!("ingest-cpu: repeats must be a number");
        return ExitCode::FAILURE;
    };
    let body = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ingest-cpu: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut events, mut alerts) = (0usize, 0usize);
    if parse_only {
        for _ in 0..reps {
            if serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
                events += 1;
            }
        }
        println!("bodies parsed: {events}");
        return ExitCode::SUCCESS;
    }
    let rules = match Ruleset::load_default(&LoadOptions::default()) {
        Ok((r, _)) => r,
        Err(e) => {
            eprintln!("ingest-cpu: embedded rules: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = Vec::new();
    for _ in 0..reps {
        // One pass: the events counted as accepted are the ones evaluated.
        let read = lazy::for_each_event(&body, 1 << 20, rules.paths(), |_, item| {
            if let Ok((raw, ev)) = item {
                events += 1;
                out.clear();
                rules.evaluate_extracted(&ev, &raw, &mut out);
                alerts += out.len();
            }
        });
        if let Err(e) = read {
            eprintln!("ingest-cpu: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("events: {events}; alerts: {alerts}");
    ExitCode::SUCCESS
}
