//! `kaudit sinks ...`: commands about the configured sinks, run without a server.
//!
//! `kaudit sinks test [NAME]` loads the config (as `serve` would), sends one test alert straight
//! through the sink `NAME` or every sink, and prints one line per sink: `delivered` or `FAILED`
//! with the error. Exit 0 when every sink took it, 1 when one did not, 2 for a bad config or an
//! unknown sink.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use crate::config::{Config, Overrides};
use crate::sinks::test_alert::{TestOutcome, send_test};

/// The `kaudit sinks` subcommands.
#[derive(Debug, Subcommand)]
pub enum SinksCommand {
    /// Send a test alert through one sink (or every sink) and report, per sink, delivered or
    /// the error, without waiting for a real event.
    Test {
        /// The sink's name; every sink when omitted.
        name: Option<String>,
        /// YAML config file (as for `kaudit serve`).
        #[arg(short, long, env = "KAUDIT_CONFIG")]
        config: Option<PathBuf>,
        /// How long each sink may take, in seconds.
        #[arg(long, default_value_t = 15)]
        timeout_secs: u64,
        /// Print the outcomes as one JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `kaudit sinks` subcommand.
pub fn run(cmd: SinksCommand) -> ExitCode {
    let SinksCommand::Test {
        name,
        config,
        timeout_secs,
        json,
    } = cmd;
    let cfg = match Config::load(config.as_deref(), &Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kaudit: invalid config: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kaudit: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_secs(timeout_secs.max(1));
    let hostname = cfg.effective_hostname();
    let outcomes = match rt.block_on(send_test(&cfg.sinks, name.as_deref(), &hostname, timeout)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kaudit: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!("{}", serde_json::json!({ "sinks": outcomes }));
    } else {
        print!("{}", report(&outcomes));
    }
    if outcomes.iter().all(|o| o.delivered) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One line per sink: `delivered  name (type)` or `FAILED     name (type): error`.
pub fn report(outcomes: &[TestOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        match &o.error {
            None => out.push_str(&format!("delivered  {} ({})\n", o.sink, o.sink_type)),
            Some(e) => out.push_str(&format!("FAILED     {} ({}): {e}\n", o.sink, o.sink_type)),
        }
    }
    out
}
