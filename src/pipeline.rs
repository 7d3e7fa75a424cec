//! Wires the stages: ingest → detect → router → sinks, each joined by a bounded channel, and
//! shuts them down in order so that everything accepted is delivered (or durably spooled) before
//! exit. Also reloads the config on SIGHUP or when the file changes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, DetectMode, Overrides};
use crate::delivery::{Lane, LanePaths, SinkLabels};
use crate::detect::{self, Detector};
use crate::falco;
use crate::ingest::{self, IngestState, Server, auth::TokenAuth, tls::ReloadingTls};
use crate::metrics::Metrics;
use crate::router::{self, RouterHandle};

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// TLS files unusable.
    #[error(transparent)]
    Tls(#[from] ingest::tls::TlsError),
    /// Token file unreadable.
    #[error(transparent)]
    Auth(#[from] ingest::auth::TokenFileError),
    /// A sink could not be built.
    #[error(transparent)]
    Router(#[from] router::RouterError),
    /// The Falco forwarder could not be set up.
    #[error(transparent)]
    Forward(#[from] falco::forward::ForwardError),
    /// The forwarder's spool could not be opened.
    #[error("falco forwarder spool: {0}")]
    Lane(#[from] crate::delivery::LaneError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The rules could not be loaded.
    #[error("rules: {0}")]
    Rules(#[from] crate::rules::LoadError),
    /// The config could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A running pipeline.
pub struct Running {
    config: Config,
    server: Server,
    stop: watch::Sender<bool>,
    detect: JoinHandle<()>,
    falco_tail: Option<JoinHandle<()>>,
    forward: Option<Arc<Lane>>,
    router: RouterHandle,
    ready: Arc<AtomicBool>,
    /// The metric families, for tests and embedding.
    pub metrics: Metrics,
    /// The evaluator in force, swappable.
    pub detector: Detector,
}

/// Starts every stage of `cfg`, with the embedded rules engine when the detect mode uses it.
pub async fn start(cfg: Config) -> Result<Running, PipelineError> {
    let metrics = Metrics::new();
    let detector = Detector::none();
    let opts = detect::rules_options(&cfg);
    if cfg.detect.mode != DetectMode::Falco {
        let (rs, report) = detect::load_rules(&cfg.rules, &opts)?;
        for w in &report.warnings {
            tracing::warn!("rules: {w}");
        }
        tracing::info!(active = report.rules_active, "rules loaded");
        detect::install(&detector, rs, &report, &metrics);
    }
    let running = start_with(cfg, detector, metrics).await?;
    if running.config.detect.mode != DetectMode::Falco {
        detect::spawn_rules_watch(
            running.config.rules.clone(),
            opts,
            running.detector.clone(),
            running.metrics.clone(),
            running.stop.subscribe(),
        );
    }
    Ok(running)
}

/// As [`start`], with a given detector and metrics registry (rules are not loaded here).
pub async fn start_with(
    cfg: Config,
    detector: Detector,
    metrics: Metrics,
) -> Result<Running, PipelineError> {
    crate::ingest::tls::install_crypto_provider();
    let tls = match &cfg.tls {
        Some(t) => {
            let r = ReloadingTls::new(t)?;
            r.spawn_watch(t.clone());
            Some(r)
        }
        None => None,
    };
    let auth = TokenAuth::from_config(&cfg.auth)?;
    auth.spawn_watch(Duration::from_secs(5));
    let (stop, _) = watch::channel(false);
    let uses_falco = cfg.detect.mode != DetectMode::Embedded;

    let router = router::start(&cfg, &metrics).await?;
    let forwarder = if uses_falco {
        Some(falco::forward::Forwarder::new(&cfg.falco)?)
    } else {
        None
    };
    let forward = if let Some(forwarder) = forwarder.clone() {
        let labels = SinkLabels {
            sink: falco::forward::LANE.into(),
            sink_type: "forwarder".into(),
        };
        let paths = LanePaths::under(&cfg.data_dir, falco::forward::LANE);
        let mut lane = Lane::open(
            falco::forward::LANE,
            labels,
            &paths,
            "batch",
            &cfg.spool,
            &metrics.delivery,
        )
        .await?;
        lane.start_worker(Arc::new(falco::forward::ForwardDeliver::new(forwarder)))
            .await;
        Some(Arc::new(lane))
    } else {
        None
    };
    let (batch_tx, batch_rx) = mpsc::channel(cfg.ingest.queue_capacity);
    let detect = detect::spawn(
        batch_rx,
        stop.subscribe(),
        detector.clone(),
        forward.clone(),
        router.sender(),
        metrics.clone(),
    );

    let ready = Arc::new(AtomicBool::new(false));
    let mut state = IngestState::new(
        batch_tx,
        auth,
        metrics.clone(),
        cfg.ingest.clone(),
        ready.clone(),
    );
    let falco_health = falco::forward::FalcoHealth::default();
    if uses_falco && cfg.falco.healthz_url.is_some() {
        state = state.with_falco_health(falco_health.clone());
    }
    let read_timeout = Duration::from_secs(cfg.ingest.read_timeout_secs);
    let mut extra = axum::Router::new();
    let mut falco_tail = None;
    if uses_falco {
        if cfg.falco.http_output {
            let intake = match &cfg.falco.intake_token_file {
                Some(f) => {
                    let t = TokenAuth::from_file(f.clone(), "falco.intake_token_file")?;
                    t.spawn_watch(Duration::from_secs(5));
                    Some(t)
                }
                None => None,
            };
            extra = falco::http_output_routes(
                &state,
                intake,
                router.sender(),
                metrics.falco_in.clone(),
                cfg.ingest.max_body_bytes,
                read_timeout,
            );
        }
        if let (Some(url), Some(fw)) = (&cfg.falco.healthz_url, &forwarder) {
            falco::forward::spawn_health(
                fw,
                url.clone(),
                Duration::from_millis(cfg.falco.healthz_interval_ms.max(100)),
                falco_health.clone(),
                metrics.falco_in.falco_up.clone(),
                stop.subscribe(),
            );
        }
        if let Some(path) = &cfg.falco.output_file {
            let settings = falco::tail::TailSettings {
                path: path.clone(),
                checkpoint: cfg.data_dir.join("falco-tail.checkpoint"),
                poll: Duration::from_millis(cfg.falco.tail_poll_ms.max(10)),
            };
            falco_tail = Some(falco::tail::spawn(
                settings,
                router.sender(),
                metrics.falco_in.clone(),
                stop.subscribe(),
            ));
        }
    }
    let app = ingest::app(state, extra);
    let server = ingest::serve(cfg.listen, app, tls, read_timeout)
        .await
        .map_err(|source| PipelineError::Bind {
            addr: cfg.listen,
            source,
        })?;
    ready.store(true, Ordering::Relaxed);
    tracing::info!(
        listen = %server.local_addr(),
        tls = cfg.tls.is_some(),
        mode = ?cfg.detect.mode,
        sinks = cfg.sinks.len(),
        "kaudit is serving POST /k8s-audit"
    );
    Ok(Running {
        config: cfg,
        server,
        stop,
        detect,
        falco_tail,
        forward,
        router,
        ready,
        metrics,
        detector,
    })
}

impl Running {
    /// The bound webhook address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies a new config: sinks are added, changed and removed (spools are kept), and rules
    /// reloaded when their settings changed. Listener, TLS paths and ingest limits need a restart.
    pub async fn reload(&mut self, new: Config) -> Result<(), PipelineError> {
        if new.listen != self.config.listen
            || new.detect.mode != self.config.detect.mode
            || new.tls != self.config.tls
            || new.auth != self.config.auth
            || new.ingest != self.config.ingest
        {
            tracing::warn!(
                "listen, tls, auth, ingest and detect.mode changes take effect after a restart"
            );
        }
        self.router.reload(&new).await?;
        if new.detect.mode != DetectMode::Falco && new.rules != self.config.rules {
            let opts = detect::rules_options(&new);
            detect::reload_rules(&new.rules, &opts, &self.detector, &self.metrics);
        }
        tracing::info!(sinks = new.sinks.len(), "config reloaded");
        self.config = new;
        Ok(())
    }

    /// Stops accepting requests, then drains what was accepted through detection, the Falco
    /// forwarder and every sink (what a dead destination cannot take stays spooled on disk).
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Relaxed);
        self.server.shutdown(Duration::from_secs(30)).await;
        let _ = self.stop.send(true);
        if let Err(e) = self.detect.await {
            tracing::error!(error = %e, "detect stage failed");
        }
        if let Some(t) = self.falco_tail
            && let Err(e) = t.await
        {
            tracing::error!(error = %e, "Falco tailer failed");
        }
        if let Some(lane) = self.forward {
            match Arc::try_unwrap(lane) {
                Ok(lane) => lane.close(Duration::from_secs(5)).await,
                Err(_) => tracing::error!("Falco forwarder still in use at shutdown"),
            }
        }
        self.router.shutdown().await;
        tracing::info!("pipeline drained");
    }
}

/// What the main loop was woken by.
enum Wake {
    Stop,
    Reload(&'static str),
}

/// Runs `kaudit serve`: loads the config, starts, reloads on SIGHUP or a change of the config
/// file, drains and returns on SIGTERM/SIGINT.
pub async fn run(path: Option<PathBuf>, overrides: Overrides) -> Result<(), PipelineError> {
    let cfg = Config::load(path.as_deref(), &overrides)?;
    let mut running = start(cfg).await?;
    let mut last = path.as_deref().and_then(crate::watch::mtime);
    loop {
        match next_wake(path.as_deref(), &mut last).await {
            Wake::Stop => break,
            Wake::Reload(why) => match Config::load(path.as_deref(), &overrides) {
                Ok(new) => {
                    tracing::info!(trigger = why, "reloading config");
                    if let Err(e) = running.reload(new).await {
                        tracing::error!(error = %e, "config reload failed; the previous config stays in force");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "new config is invalid; the previous config stays in force")
                }
            },
        }
    }
    running.shutdown().await;
    Ok(())
}

async fn next_wake(path: Option<&Path>, last: &mut Option<std::time::SystemTime>) -> Wake {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return Wake::Stop;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: draining"); return Wake::Stop }
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: draining"); return Wake::Stop }
                _ = hup.recv() => return Wake::Reload("SIGHUP"),
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    let now = path.and_then(crate::watch::mtime);
                    if now != *last {
                        *last = now;
                        return Wake::Reload("file changed");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, last);
        let _ = tokio::signal::ctrl_c().await;
        Wake::Stop
    }
}
