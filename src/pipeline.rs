//! Wires the stages: ingest → detect → router → sinks, each joined by a bounded channel, and
//! shuts them down in order so that everything accepted is delivered before exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, DetectMode};
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
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The rules could not be loaded.
    #[error("{0}")]
    Rules(String),
}

/// A running pipeline.
pub struct Running {
    server: Server,
    stop_detect: watch::Sender<bool>,
    detect: JoinHandle<()>,
    falco_tail: Option<JoinHandle<()>>,
    router: RouterHandle,
    ready: Arc<AtomicBool>,
    /// The metric families, for tests and embedding.
    pub metrics: Metrics,
    /// The evaluator in force, swappable.
    pub detector: Detector,
}

/// Starts every stage of `cfg`; alerts flow as soon as this returns.
pub async fn start(cfg: Config) -> Result<Running, PipelineError> {
    start_with(cfg, Detector::none(), Metrics::new()).await
}

/// As [`start`], with a given detector and metrics registry.
pub async fn start_with(
    cfg: Config,
    detector: Detector,
    metrics: Metrics,
) -> Result<Running, PipelineError> {
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

    let router = router::start(&cfg, &metrics).await?;
    let (batch_tx, batch_rx) = mpsc::channel(cfg.ingest.queue_capacity);
    let (stop_detect, stop_rx) = watch::channel(false);
    let detect = detect::spawn(
        batch_rx,
        stop_rx,
        detector.clone(),
        router.sender(),
        metrics.clone(),
    );

    let ready = Arc::new(AtomicBool::new(false));
    let state = IngestState::new(
        batch_tx,
        auth,
        metrics.clone(),
        cfg.ingest.clone(),
        ready.clone(),
    );
    let read_timeout = Duration::from_secs(cfg.ingest.read_timeout_secs);
    let mut extra = axum::Router::new();
    let mut falco_tail = None;
    if cfg.detect.mode != DetectMode::Embedded {
        if cfg.falco.http_output {
            extra = falco::http_output_routes(
                &state,
                router.sender(),
                metrics.falco_in.clone(),
                cfg.ingest.max_body_bytes,
                read_timeout,
            );
        }
        if let Some(url) = &cfg.falco.healthz_url {
            falco::forward::spawn_health(
                url.clone(),
                Duration::from_secs(5),
                falco::forward::FalcoHealth::default(),
                metrics.falco_in.falco_up.clone(),
                stop_detect.subscribe(),
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
                stop_detect.subscribe(),
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
        sinks = cfg.sinks.len(),
        "kaudit is serving POST /k8s-audit"
    );
    Ok(Running {
        server,
        stop_detect,
        detect,
        falco_tail,
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

    /// Stops accepting requests, then drains what was accepted through detection and every sink.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Relaxed);
        self.server.shutdown(Duration::from_secs(30)).await;
        let _ = self.stop_detect.send(true);
        if let Err(e) = self.detect.await {
            tracing::error!(error = %e, "detect stage failed");
        }
        if let Some(t) = self.falco_tail
            && let Err(e) = t.await
        {
            tracing::error!(error = %e, "Falco tailer failed");
        }
        self.router.shutdown().await;
        tracing::info!("pipeline drained");
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: draining"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
