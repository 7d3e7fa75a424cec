//! Typed configuration: built-in defaults, then a YAML file, then `KAUDIT_*` env, then flags.
//!
//! Every struct denies unknown keys, and every error names the file and the key path, so a typo
//! stops start-up with a message that says where it is instead of being silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::console::ConsoleConfig;
use crate::delivery::SpoolConfig;
use crate::delivery::inbox::InboxConfig;
use crate::detect::DetectConfig;
use crate::falco::FalcoConfig;
use crate::ingest::IngestConfig;
use crate::invalid::Invalid;
use crate::router::budget::BudgetConfig;
use crate::router::{RouterConfig, RouterSetup};
use crate::server::auth::AuthConfig;
use crate::server::conn::ConnectionsConfig;
use crate::server::tls::TlsConfig;
use crate::sinks::{SinkConfig, SinkRules};
use crate::sources::SourceConfig;
use crate::store::StoreConfig;
use crate::transport::egress::EgressConfig;

/// The rules engine owns its section of the config (`rules:`).
pub use crate::rules::{RuleMatching, RulesConfig};

/// The default listen port: clear of Falco (8765, 9765) and falcosidekick (2801).
pub const DEFAULT_PORT: u16 = 8777;

/// Prefix of the environment variables that override config keys (`__` separates levels).
pub const ENV_PREFIX: &str = "KAUDIT";

/// What went wrong loading or validating a config; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or is not YAML.
    #[error("{file}: {message}")]
    Source {
        /// The config file (or `<defaults>`).
        file: String,
        /// What the loader said.
        message: String,
    },
    /// A key has the wrong type, an unknown name or a bad value.
    #[error("{file}: key `{key}`: {message}")]
    Key {
        /// The config file (or `<defaults>`).
        file: String,
        /// Dotted path of the offending key, e.g. `sinks[1].url`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration of `kaudit serve`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the webhook server (`/k8s-audit`, `/healthz`, `/readyz`, `/metrics`).
    pub listen: SocketAddr,
    /// Host name put in alerts; defaults to the machine's host name (the pod name in Kubernetes).
    pub hostname: Option<String>,
    /// Directory for durable state: sink spools, Falco tail checkpoints.
    pub data_dir: PathBuf,
    /// TLS for the webhook server; absent means plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Bearer-token authentication of requests.
    pub auth: AuthConfig,
    /// Where audit events come from; the default is the webhook alone (`POST /k8s-audit` is
    /// served only while the list has a `webhook` entry).
    pub sources: Vec<SourceConfig>,
    /// Request limits and back-pressure of the webhook.
    pub ingest: IngestConfig,
    /// Connection limits of the server (every route).
    pub connections: ConnectionsConfig,
    /// The durable inbox of accepted batches.
    pub inbox: InboxConfig,
    /// The embedded rules engine.
    pub rules: RulesConfig,
    /// Where detection happens.
    pub detect: DetectConfig,
    /// The managed Falco (used by detect modes `falco` and `both`).
    pub falco: FalcoConfig,
    /// Enrichment applied to every alert before it reaches any sink.
    pub router: RouterConfig,
    /// The durable per-sink spool.
    pub spool: SpoolConfig,
    /// Alert destinations; the default is one `stdout` sink and the console's `console-store`.
    pub sinks: Vec<SinkConfig>,
    /// The alert console (`/api/v1/`, `/ui/`).
    pub console: ConsoleConfig,
    /// Where the console's alerts are kept.
    pub store: StoreConfig,
    /// What tenants' sinks obey, and how shared sinks are shared among namespaces.
    pub tenancy: TenancyConfig,
    /// Logging.
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            hostname: None,
            data_dir: PathBuf::from("kaudit-data"),
            tls: None,
            auth: AuthConfig::default(),
            sources: crate::sources::default_sources(),
            ingest: IngestConfig::default(),
            connections: ConnectionsConfig::default(),
            inbox: InboxConfig::default(),
            rules: RulesConfig::default(),
            detect: DetectConfig::default(),
            falco: Default::default(),
            router: Default::default(),
            spool: Default::default(),
            sinks: vec![SinkConfig::stdout("stdout"), SinkConfig::console()],
            console: ConsoleConfig::default(),
            store: StoreConfig::default(),
            tenancy: TenancyConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// What tenants' sinks (`tenant:`, `ambient_credentials: false`, `egress: restricted`; see
/// `sinks::tenancy`) obey.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenancyConfig {
    /// The only directory a sink without ambient credentials may read files from (the
    /// operator's credential files); unset: such a sink reads no file.
    pub credentials_dir: Option<PathBuf>,
    /// The egress policy of restricted sinks, on top of the built-in refusals.
    pub egress: EgressConfig,
    /// The most a tenant's `file` sink may keep before it rotates (its `max_bytes`).
    pub file_max_bytes: u64,
    /// Per-namespace budgets on shared sinks (every sink without `tenant`).
    pub budget: BudgetConfig,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        TenancyConfig {
            credentials_dir: None,
            egress: EgressConfig::default(),
            file_max_bytes: crate::sinks::tenancy::DEFAULT_FILE_MAX_BYTES,
            budget: BudgetConfig::default(),
        }
    }
}

impl TenancyConfig {
    /// Checks the networks; keys are relative to `tenancy`.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.egress.validate().map_err(|e| e.under("egress"))?;
        self.budget.validate().map_err(|e| e.under("budget"))?;
        crate::invalid::positive("file_max_bytes", self.file_max_bytes)
    }

    /// The rules restricted sinks are checked and built against.
    pub fn sink_rules(&self) -> SinkRules {
        SinkRules::new(
            self.credentials_dir.clone(),
            &self.egress,
            self.file_max_bytes,
        )
    }
}

/// Log format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging (to stderr; stdout carries alerts).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `kaudit=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Overrides from command-line flags, applied last.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
}

impl Config {
    /// Loads defaults, then `file` (if any), then `KAUDIT_*` env, then `overrides`, and validates.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Self::load_with_env(file, overrides, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let origin = file
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "<defaults>".to_string());
        let text = match file {
            Some(path) => Some(
                std::fs::read_to_string(path).map_err(|e| ConfigError::Source {
                    file: origin.clone(),
                    message: format!("cannot read config file: {e}"),
                })?,
            ),
            None => None,
        };
        Self::layer(&origin, text.as_deref(), overrides, env)
    }

    /// Parses and validates `text` as a config file named `origin`, on the defaults, without
    /// the environment or flags: what `kaudit config check` does to a file's contents (and the
    /// config fuzz target's entry point).
    pub fn from_yaml(origin: &str, text: &str) -> Result<Config, ConfigError> {
        Self::layer(origin, Some(text), &Overrides::default(), Vec::new())
    }

    /// Defaults, then the file's `text`, then `KAUDIT_*` entries of `env`, then `overrides`;
    /// errors name `origin` and the key.
    fn layer(
        origin: &str,
        text: Option<&str>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let origin = origin.to_string();
        let mut builder = config::Config::builder();
        if let Some(text) = text {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Yaml));
        }
        let env_map: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(env_map)),
        );
        if let Some(listen) = overrides.listen {
            builder = builder
                .set_override("listen", listen.to_string())
                .map_err(|e| ConfigError::Source {
                    file: "--listen".into(),
                    message: e.to_string(),
                })?;
        }
        let layered = builder.build().map_err(|e| ConfigError::Source {
            file: origin.clone(),
            message: e.to_string(),
        })?;
        let cfg: Config = serde_path_to_error::deserialize(layered).map_err(|e| {
            let key = e.path().to_string();
            let mut inner = e.into_inner().to_string();
            // The `config` crate appends " for key `...`"; the key is already in our message.
            if let Some(i) = inner.find(" for key `") {
                inner.truncate(i);
            }
            ConfigError::Key {
                file: origin.clone(),
                key: if key == "." { "<root>".into() } else { key },
                message: inner,
            }
        })?;
        cfg.validate().map_err(|e| ConfigError::Key {
            file: origin,
            key: e.key,
            message: e.message,
        })?;
        Ok(cfg)
    }

    /// Checks what types alone cannot: each stage validates its own part, and the key path
    /// says where the value is.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.ingest.validate().map_err(|e| e.under("ingest"))?;
        self.connections
            .validate()
            .map_err(|e| e.under("connections"))?;
        self.inbox.validate().map_err(|e| e.under("inbox"))?;
        if let Some(tls) = &self.tls {
            tls.validate().map_err(|e| e.under("tls"))?;
        }
        let exists = |key: &str, f: &Path| {
            if f.exists() {
                Ok(())
            } else {
                Err(Invalid::new(key, format!("{} does not exist", f.display())))
            }
        };
        if let Some(f) = &self.auth.token_file {
            exists("auth.token_file", f)?;
        }
        if let Some(f) = &self.falco.intake_token_file {
            exists("falco.intake_token_file", f)?;
        }
        for (i, f) in self.rules.files.iter().enumerate() {
            exists(&format!("rules.files[{i}]"), f)?;
        }
        self.spool.validate().map_err(|e| e.under("spool"))?;
        self.tenancy.validate().map_err(|e| e.under("tenancy"))?;
        self.console.validate().map_err(|e| e.under("console"))?;
        self.store.validate().map_err(|e| e.under("store"))?;
        if !self.console.enabled
            && let Some(i) = self
                .sinks
                .iter()
                .position(|s| s.settings.type_name() == "console")
        {
            return Err(Invalid::new(
                format!("sinks[{i}].type"),
                "a `console` sink needs the console's store: set `console.enabled: true` or remove the sink",
            ));
        }
        crate::sinks::validate_all(&self.sinks, &self.tenancy.sink_rules())?;
        crate::sources::validate_all(&self.sources)?;
        Ok(())
    }

    /// What the router needs: enrichment, spool settings, the sinks and where spools live.
    pub fn router_setup(&self) -> RouterSetup<'_> {
        RouterSetup {
            router: &self.router,
            spool: &self.spool,
            sinks: &self.sinks,
            data_dir: &self.data_dir,
            probe: None,
            sink_rules: self.tenancy.sink_rules(),
            budget: self.tenancy.budget.clone(),
            budget_metrics: None,
            store: None,
        }
    }

    /// The effective config as YAML with every secret shown as `<redacted>`: secret-typed
    /// settings, every value of a `headers` map, and the user information of URLs.
    pub fn to_redacted_yaml(&self) -> String {
        let mut v = match serde_json::to_value(self) {
            Ok(v) => v,
            Err(e) => return format!("# cannot render config: {e}\n"),
        };
        redact(&mut v, false);
        yaml_serde::to_string(&v).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// What every source gets: where positions live, the event size limit; records validated
    /// only (the pipeline gives them detection's screen).
    pub fn source_env(&self) -> crate::sources::SourceEnv {
        crate::sources::SourceEnv {
            state_dir: self.data_dir.join("sources"),
            max_event_bytes: self.ingest.max_event_bytes,
            screen: std::sync::Arc::new(crate::delivery::inbox::ValidateOnly),
        }
    }

    /// The host name alerts carry.
    pub fn effective_hostname(&self) -> String {
        self.hostname.clone().unwrap_or_else(|| {
            hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "kaudit".to_string())
        })
    }
}

/// Redacts `v` in place: strings under a `headers` map (`in_headers`), URL credentials
/// anywhere.
fn redact(v: &mut serde_json::Value, in_headers: bool) {
    use serde_json::Value;
    match v {
        Value::String(s) if in_headers => *s = "<redacted>".into(),
        Value::String(s) => *s = crate::secret::redact_text(s),
        Value::Array(a) => a.iter_mut().for_each(|x| redact(x, in_headers)),
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                redact(x, in_headers || k == "headers");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_yaml(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_with_env(Some(f.path()), &Overrides::default(), env)
    }

    #[test]
    fn defaults_load_without_a_file() {
        let cfg = Config::load_with_env(None, &Overrides::default(), Vec::new()).unwrap();
        assert_eq!(cfg.listen.port(), DEFAULT_PORT);
        assert_eq!(cfg.ingest.max_body_bytes, 12 * 1024 * 1024);
        assert_eq!(cfg.sinks.len(), 2);
        assert_eq!(cfg.sinks[1].name, "console-store");
    }

    #[test]
    fn from_yaml_names_its_origin_and_the_key() {
        let cfg = Config::from_yaml("team.yaml", "ingest:\n  max_body_bytes: 1000\n").unwrap();
        assert_eq!(cfg.ingest.max_body_bytes, 1000);
        let e = Config::from_yaml("team.yaml", "ingest:\n  max_body_bytez: 1\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("team.yaml: key `ingest.max_body_bytez`: unknown field"),
            "{msg}"
        );
        let e = Config::from_yaml("team.yaml", "ingest: [").unwrap_err();
        assert!(
            matches!(e, ConfigError::Source { ref file, .. } if file == "team.yaml"),
            "{e}"
        );
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let cfg = load_yaml(
            "ingest:\n  max_body_bytes: 1000\nlisten: 127.0.0.1:1\n",
            &[
                ("KAUDIT_INGEST__MAX_BODY_BYTES", "2000"),
                ("KAUDIT_LISTEN", "127.0.0.1:2"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.ingest.max_body_bytes, 2000);
        assert_eq!(cfg.listen.port(), 2);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"listen: 127.0.0.1:1\n").unwrap();
        let ov = Overrides {
            listen: Some("127.0.0.1:3".parse().unwrap()),
        };
        let cfg = Config::load_with_env(
            Some(f.path()),
            &ov,
            vec![("KAUDIT_LISTEN".to_string(), "127.0.0.1:2".to_string())],
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 3);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = load_yaml("ingest:\n  max_body_byte: 5\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingest"), "{err}");
        assert!(err.contains("max_body_byte"), "{err}");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let err = load_yaml("ingest:\n  queue_capacity: lots\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingest.queue_capacity"), "{err}");
    }

    #[test]
    fn sources_default_to_the_webhook_and_errors_name_their_key() {
        let cfg = Config::load_with_env(None, &Overrides::default(), Vec::new()).unwrap();
        assert!(crate::sources::has_webhook(&cfg.sources));
        let cfg = load_yaml(
            "sources:\n  - {name: log, type: file, path: /var/log/a.log}\n",
            &[],
        )
        .unwrap();
        assert!(!crate::sources::has_webhook(&cfg.sources));
        let err = load_yaml(
            "sources:\n  - {type: webhook}\n  - {name: log, type: file, path: /a, poll_interval_ms: 0}\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sources[1].poll_interval_ms"), "{err}");
        let err = load_yaml(
            "sources:\n  - {name: g, type: gke, subscription: nope}\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sources[0].subscription"), "{err}");
    }

    #[test]
    fn secrets_are_redacted() {
        let cfg = load_yaml(
            "auth:\n  tokens: [hunter2]\nsinks:\n\
             - {name: h, type: http, url: \"http://alice:pw1@h/x\", headers: {Authorization: Bearer pw2}}\n\
             - {name: n, type: nats, servers: [\"nats://tok3n@n:4222\"]}\n",
            &[],
        )
        .unwrap();
        let y = cfg.to_redacted_yaml();
        for secret in ["hunter2", "pw1", "pw2", "tok3n"] {
            assert!(!y.contains(secret), "{secret}: {y}");
        }
        assert!(y.contains("<redacted>"), "{y}");
        assert!(y.contains("http://<redacted>@h/x"), "{y}");
    }
}
