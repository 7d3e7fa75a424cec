//! Audit sources: everything that hands audit events to detection. Each source turns its
//! records into `audit.k8s.io/v1` Events, appends them to the durable inbox, and advances its
//! position (a file checkpoint, CloudWatch stream positions, a Pub/Sub ack, Kafka offsets) only
//! once the inbox has them; a restart resumes there, and what is read twice carries the same
//! auditID, so detection's alert uuids de-duplicate it.
//!
//! | type | reads | position |
//! |---|---|---|
//! | `webhook` | `POST /k8s-audit` (served by [`crate::ingest`]) | the 200 answer |
//! | `file` | kube-apiserver's `--audit-log-path` JSON lines, rotation followed | inode, fingerprint, offset |
//! | `eks` | CloudWatch Logs `FilterLogEvents` on `/aws/eks/<cluster>/cluster` | per-stream timestamp + boundary eventIds |
//! | `gke` | a Pub/Sub subscription fed by a Cloud Logging sink | the ack |
//! | `aks` | an Event Hub through its Kafka endpoint | consumer-group offsets |
//!
//! Adding a source: write `sources/<name>/` (settings with `validate()`, a [`Source`], and a unit
//! struct implementing [`SourceType`]), declare the module below and add its line to the table.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::delivery::inbox::{Inbox, Screen};
use crate::invalid::Invalid;

pub mod aks;
pub mod batch;
pub mod check;
pub mod context;
pub mod eks;
pub mod file;
pub mod gke;
pub mod registry;
pub mod stats;
pub mod webhook;

pub use batch::EventBatch;
pub use context::{SourceContext, Stopped};
pub use registry::SourceType;
pub use stats::{Skip, SourceMetrics, SourceStats, SourceStatus, SourcesView};

use registry::source_types;

// The table of source types: one line each, `Variant => module::Type` (see `registry`).
source_types! {
    Webhook => webhook::Webhook,
    File => file::File,
    Eks => eks::Eks,
    Gke => gke::Gke,
    Aks => aks::Aks,
}

/// A source that runs: reads its service until stopped, appending to the inbox.
pub trait Source: Send + Sync {
    /// Reads until `ctx` says stop; appends each read to the inbox and only then advances its
    /// position. Errors of the service are retried inside (and shown in the stats); it returns
    /// only when stopped or when the inbox is closed.
    fn run(self: Box<Self>, ctx: SourceContext) -> futures_util::future::BoxFuture<'static, ()>;

    /// Whether the source can reach its service and read: a one-line description of what it
    /// found, or why not. Reads nothing that it would consume (no ack, no commit).
    fn check(&self) -> futures_util::future::BoxFuture<'_, Result<String, SourceError>>;
}

/// Why a source could not be built or checked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// The config cannot work (an unreadable secret file, a bad endpoint).
    #[error("{0}")]
    Config(String),
    /// The service could not be reached or refused.
    #[error("{0}")]
    Service(String),
}

/// What every source gets from the wiring.
#[derive(Clone)]
pub struct SourceEnv {
    /// Where sources keep their positions (`<data_dir>/sources`).
    pub state_dir: PathBuf,
    /// Largest single event kept (`ingest.max_event_bytes`).
    pub max_event_bytes: usize,
    /// How each record is checked: validation only, or (from the pipeline) detection's
    /// `Screener`, which evaluates the events in the same pass so that the alerts go with the
    /// batch through the inbox and an accepted event is read once, as the webhook's are.
    pub screen: Arc<dyn Screen>,
}

impl std::fmt::Debug for SourceEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceEnv")
            .field("state_dir", &self.state_dir)
            .field("max_event_bytes", &self.max_event_bytes)
            .finish_non_exhaustive()
    }
}

/// One entry of the `sources:` list.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    /// Unique name, used in metrics, logs, the inbox and position files.
    pub name: String,
    /// The type and its settings.
    pub settings: SourceSettings,
}

impl SourceConfig {
    /// The webhook (`POST /k8s-audit`), the default source.
    pub fn webhook() -> Self {
        SourceConfig {
            name: "webhook".into(),
            settings: SourceSettings::Webhook(webhook::WebhookConfig::default()),
        }
    }

    /// True for the webhook.
    pub fn is_webhook(&self) -> bool {
        matches!(self.settings, SourceSettings::Webhook(_))
    }
}

/// True when the list has a webhook entry: only then is `/k8s-audit` served.
pub fn has_webhook(sources: &[SourceConfig]) -> bool {
    sources.iter().any(SourceConfig::is_webhook)
}

/// The default list: the webhook alone.
pub fn default_sources() -> Vec<SourceConfig> {
    vec![SourceConfig::webhook()]
}

/// Deserializes a type's settings, naming the key at fault.
fn typed<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("key `{path}`: {}", e.into_inner())
        }
    })
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = Map::<String, Value>::deserialize(d)?;
        let type_name = match map.remove("type") {
            Some(Value::String(s)) => s,
            _ => return Err(D::Error::custom("missing or non-string `type`")),
        };
        let name = match map.remove("name") {
            Some(Value::String(s)) if !s.is_empty() => s,
            // The webhook needs no name.
            None if type_name == webhook::Webhook::NAME => type_name.clone(),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`name` must be a non-empty string, got {other}"
                )));
            }
            None => return Err(D::Error::custom("missing `name`")),
        };
        let settings = SourceSettings::parse(&type_name, Value::Object(map))
            .map_err(|e| D::Error::custom(format!("source {name:?} (type {type_name}): {e}")))?;
        Ok(SourceConfig { name, settings })
    }
}

impl Serialize for SourceConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = Map::new();
        map.insert("name".into(), Value::String(self.name.clone()));
        map.insert(
            "type".into(),
            Value::String(self.settings.type_name().into()),
        );
        if let Ok(Value::Object(rest)) = serde_json::to_value(&self.settings) {
            map.extend(rest);
        }
        map.serialize(s)
    }
}

/// Checks the list: unique names (letters, digits, `-`, `_`), at most one webhook, each
/// source's own rules. Keys start at `sources[i]`.
pub fn validate_all(sources: &[SourceConfig]) -> Result<(), Invalid> {
    let mut seen = std::collections::HashSet::new();
    let mut webhooks = 0;
    for (i, s) in sources.iter().enumerate() {
        let at = |e: Invalid| e.at("sources", i);
        if !seen.insert(s.name.as_str()) {
            return Err(at(Invalid::new(
                "name",
                format!("duplicate source name {:?}", s.name),
            )));
        }
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(at(Invalid::new(
                "name",
                format!(
                    "{:?}: use letters, digits, '-' and '_' only (it names files and metrics)",
                    s.name
                ),
            )));
        }
        if s.is_webhook() {
            webhooks += 1;
            if webhooks > 1 {
                return Err(at(Invalid::new("type", "only one webhook source")));
            }
        }
        s.settings.validate().map_err(|e| {
            at(Invalid {
                message: format!(
                    "source {:?} (type {}): {}",
                    s.name,
                    s.settings.type_name(),
                    e.message
                ),
                ..e
            })
        })?;
    }
    Ok(())
}

/// Builds one source (`None` for the webhook).
pub async fn build(
    cfg: &SourceConfig,
    env: &SourceEnv,
) -> Result<Option<Box<dyn Source>>, SourceError> {
    cfg.settings.build(&cfg.name, env).await
}

/// The running sources.
pub struct Running {
    tasks: Vec<(String, JoinHandle<()>)>,
    /// What each source has read, for the console and tests.
    pub view: SourcesView,
}

/// Builds and starts every source of `sources` but the webhook (served by the HTTP server;
/// its stats are registered by the caller with [`SourcesView::add`]).
pub async fn start(
    sources: &[SourceConfig],
    env: &SourceEnv,
    inbox: &Inbox,
    metrics: &SourceMetrics,
    view: SourcesView,
    stop: &watch::Receiver<bool>,
) -> Result<Running, SourceError> {
    let mut tasks = Vec::new();
    for cfg in sources {
        let Some(source) = build(cfg, env).await.map_err(|e| match e {
            SourceError::Config(m) => SourceError::Config(format!("source {:?}: {m}", cfg.name)),
            SourceError::Service(m) => SourceError::Service(format!("source {:?}: {m}", cfg.name)),
        })?
        else {
            continue;
        };
        let stats = SourceStats::new(&cfg.name, cfg.settings.type_name(), metrics);
        view.add(stats.clone());
        let ctx = SourceContext::new(&cfg.name, inbox.clone(), stats, stop.clone(), env.clone());
        tracing::info!(source = %cfg.name, r#type = cfg.settings.type_name(), "source started");
        tasks.push((cfg.name.clone(), tokio::spawn(source.run(ctx))));
    }
    Ok(Running { tasks, view })
}

impl Running {
    /// Waits for every source to stop (the stop signal must have been sent), at most `budget`;
    /// a source still busy then is aborted: it had not advanced past what the inbox holds.
    pub async fn join(self, budget: Duration) {
        let deadline = tokio::time::Instant::now() + budget;
        for (name, mut t) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut t).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(source = %name, error = %e, "source failed"),
                Err(_) => {
                    tracing::warn!(source = %name, "source did not stop in time; aborted");
                    t.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<SourceConfig>, String> {
        let v: Vec<SourceConfig> = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        validate_all(&v).map_err(|e| e.to_string())?;
        Ok(v)
    }

    #[test]
    fn every_listed_type_is_known_and_names_itself() {
        for t in TYPES {
            match SourceSettings::parse(t, serde_json::json!({})) {
                Ok(s) => assert_eq!(s.type_name(), *t),
                Err(e) => assert!(!e.contains("unknown source type"), "{t}: {e}"),
            }
        }
        let e = SourceSettings::parse("syslog", serde_json::json!({})).unwrap_err();
        assert!(e.contains("known types: webhook, file"), "{e}");
    }

    #[test]
    fn names_types_and_unknown_keys() {
        assert!(parse("- {type: webhook}\n").is_ok());
        let e = parse("- {type: webhook}\n- {name: webhook, type: file, path: /x}\n").unwrap_err();
        assert!(
            e.contains("sources[1].name") && e.contains("duplicate"),
            "{e}"
        );
        let e = parse("- {name: a, type: file, path: /x, bogus: 1}\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("- {name: 'a b', type: webhook}\n").unwrap_err();
        assert!(e.contains("sources[0].name"), "{e}");
        let e = parse("- {type: webhook}\n- {name: w2, type: webhook}\n").unwrap_err();
        assert!(e.contains("only one webhook"), "{e}");
    }

    #[test]
    fn round_trips() {
        let v =
            parse("- {type: webhook}\n- {name: log, type: file, path: /var/log/a.log}\n").unwrap();
        let back: Vec<SourceConfig> =
            serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(v, back);
        assert!(has_webhook(&v));
        assert!(!has_webhook(&v[1..]));
    }
}
