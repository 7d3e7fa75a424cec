//! The `kaudit` command line: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kaudit::config::{Config, LogFormat, Overrides};

/// mimalloc for small blocks, glibc for large ones: see [`kaudit::memory::Allocator`].
#[global_allocator]
static ALLOC: kaudit::memory::Allocator = kaudit::memory::Allocator;

/// kaudit: the Kubernetes audit webhook that turns audit events into alerts.
#[derive(Parser)]
#[command(name = "kaudit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the audit webhook server, detection and alert routing.
    Serve {
        /// YAML config file; without it kaudit runs on its embedded defaults.
        #[arg(short, long, env = "KAUDIT_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address, overriding the config's `listen` (e.g. 127.0.0.1:8777).
        #[arg(short, long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check the audit sources of a config.
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Check, list and test Falco rules files.
    #[command(subcommand)]
    Rules(kaudit::cli::rules::RulesCommand),
    /// List dead letters per sink, or send a sink's dead letters again once it is fixed.
    #[command(subcommand)]
    Deadletter(kaudit::cli::deadletter::DeadletterCommand),
    /// Test the configured sinks.
    #[command(subcommand)]
    Sinks(kaudit::cli::sinks::SinksCommand),
    /// Run the Kubernetes operator (CRDs in `kaudit crds`).
    Operator {
        /// Address of /healthz and /metrics.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// Namespace of the leader-election Lease.
        #[arg(long, env = "POD_NAMESPACE", default_value = "kaudit-system")]
        lease_namespace: String,
        /// Name of the leader-election Lease.
        #[arg(long, default_value = "kaudit-operator")]
        lease_name: String,
        /// This replica's identity in the Lease (the pod name).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
    },
    /// Print every CustomResourceDefinition of the operator as YAML.
    Crds,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate a config, and check what `serve` would refuse (TLS and token files,
    /// rules, a dry run of every sink); print the effective config with secrets redacted.
    Check {
        /// YAML config file (omit to check the defaults plus KAUDIT_* env).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SourcesCommand {
    /// For each source: can it reach its service and read? Consumes nothing (no ack, no
    /// commit, no position saved). Exits 1 when one cannot.
    Check {
        /// YAML config file (omit to check the defaults plus KAUDIT_* env).
        file: Option<PathBuf>,
    },
}

/// Exit code for a bad config, distinct from runtime failures.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    kaudit::memory::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen } => {
            // Validate before logging starts so that a bad config is one clear line and exit 2.
            let cfg = match Config::load(config.as_deref(), &Overrides { listen }) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("kaudit: invalid config: {e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            init_logging(&cfg);
            match serve(config, Overrides { listen }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("kaudit: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Rules(cmd) => kaudit::cli::rules::run(cmd),
        Command::Deadletter(cmd) => kaudit::cli::deadletter::run(cmd),
        Command::Sinks(cmd) => kaudit::cli::sinks::run(cmd),
        Command::Sources(SourcesCommand::Check { file }) => sources_check(file),
        Command::Crds => match kaudit::operator::crd::crds_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kaudit: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Operator {
            listen,
            lease_namespace,
            lease_name,
            identity,
        } => {
            init_logging(&Config::default());
            let identity = identity.unwrap_or_else(|| {
                hostname::get()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| "kaudit-operator".into())
            });
            let opts = kaudit::operator::OperatorOptions {
                listen,
                lease_namespace,
                lease_name,
                identity,
            };
            let run = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(kaudit::operator::run(opts))
                        .map_err(anyhow::Error::from)
                });
            match run {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // kube's errors already include their causes: no `{:#}` chain.
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCommand::Check { file }) => {
            match Config::load(file.as_deref(), &Overrides::default()) {
                Ok(cfg) => {
                    // Everything `serve` would refuse, short of binding and connecting.
                    let checked = tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .build()
                        .map_err(anyhow::Error::from)
                        .and_then(|rt| {
                            rt.block_on(kaudit::pipeline::check(&cfg))
                                .map_err(anyhow::Error::from)
                        });
                    if let Err(e) = checked {
                        eprintln!("kaudit: invalid config: {e:#}");
                        return ExitCode::from(EXIT_BAD_CONFIG);
                    }
                    print!("{}", cfg.to_redacted_yaml());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kaudit: invalid config: {e}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
    }
}

fn sources_check(file: Option<PathBuf>) -> ExitCode {
    let cfg = match Config::load(file.as_deref(), &Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kaudit: invalid config: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let run = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map(|rt| {
            kaudit::transport::tls::install_crypto_provider();
            rt.block_on(kaudit::sources::check::check_all(
                &cfg.sources,
                &cfg.source_env(),
            ))
        });
    match run {
        Ok(verdicts) => {
            for v in &verdicts {
                println!("{v}");
            }
            if verdicts.iter().all(|v| v.result.is_ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("kaudit: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(kaudit::pipeline::run(config, overrides))?;
    Ok(())
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
