//! Wires the stages: ingest → detect → router → sinks, each joined by a bounded channel, and
//! shuts them down in order so that everything accepted is delivered (or durably spooled) before
//! exit. Also reloads the config on SIGHUP or when the file changes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, Overrides};
use crate::delivery::inbox::Inbox;
use crate::delivery::{Lane, LanePaths, SinkLabels};
use crate::detect::{self, BatchTap, Detector};
use crate::falco;
use crate::health::{Health, Probe};
use crate::ingest::{self, IngestState};
use crate::metrics::Metrics;
use crate::router::{self, RouterHandle, RouterSetup};
use crate::server::{self, Server, auth::TokenAuth, tls::ReloadingTls};

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// TLS files unusable.
    #[error(transparent)]
    Tls(#[from] server::tls::TlsError),
    /// Token file unreadable.
    #[error(transparent)]
    Auth(#[from] server::auth::TokenFileError),
    /// A sink could not be built.
    #[error(transparent)]
    Router(#[from] router::RouterError),
    /// The Falco forwarder could not be set up.
    #[error(transparent)]
    Forward(#[from] falco::forward::ForwardError),
    /// The inbox could not be opened.
    #[error(transparent)]
    Inbox(#[from] crate::delivery::inbox::InboxError),
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
    /// A source could not be built.
    #[error(transparent)]
    Source(#[from] crate::sources::SourceError),
    /// The console's token file is unreadable.
    #[error(transparent)]
    ConsoleTokens(#[from] crate::console::auth::TokenFileError),
    /// The alert store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A running pipeline.
pub struct Running {
    config: Config,
    server: Server,
    stop: watch::Sender<bool>,
    inbox: Option<Inbox>,
    inbox_worker: crate::delivery::inbox::Worker,
    detect: JoinHandle<()>,
    falco_tail: Option<JoinHandle<()>>,
    sources: crate::sources::Running,
    forward: Option<Arc<Lane>>,
    router: RouterHandle,
    /// The sinks `POST /test` sends through (replaced on reload).
    test_sinks: watch::Sender<(Vec<crate::sinks::SinkConfig>, crate::sinks::SinkRules)>,
    serving: Probe,
    /// Tells the console's live feeds to end (before the server drains).
    console_closing: watch::Sender<bool>,
    /// Liveness and readiness of every stage.
    pub health: Health,
    /// The metric families, for tests and embedding.
    pub metrics: Metrics,
    /// The evaluator in force, swappable.
    pub detector: Detector,
    /// What each source has read (the console shows it).
    pub sources_view: crate::sources::SourcesView,
}

/// Checks everything [`start`] would refuse, without binding, opening or connecting anything:
/// the TLS and token files, the Falco forwarder, the rules (when they are evaluated), and a dry
/// run of every sink with its real files. What `kaudit config check` runs.
pub async fn check(cfg: &Config) -> Result<(), PipelineError> {
    crate::transport::tls::install_crypto_provider();
    if let Some(t) = &cfg.tls {
        ReloadingTls::new(t)?;
    }
    TokenAuth::from_config(&cfg.auth)?;
    if cfg.console.enabled {
        crate::console::ConsoleTokens::new(&cfg.console.tokens, cfg.console.token_file.clone())?;
        cfg.store.url()?;
    }
    if cfg.detect.mode.uses_falco() {
        falco::forward::Forwarder::new(&cfg.falco)?;
        if let Some(f) = &cfg.falco.intake_token_file {
            TokenAuth::from_file(f.clone(), "falco.intake_token_file")?;
        }
    }
    if cfg.detect.mode.embedded() {
        let opts = detect::rules_options(&cfg.rules, cfg.effective_hostname());
        detect::load_rules(&cfg.rules, &opts)?;
    }
    let rules = cfg.tenancy.sink_rules();
    crate::sinks::validate_all(&cfg.sinks, &rules).map_err(|e| router::RouterError::Config {
        key: e.key,
        message: e.message,
    })?;
    for s in &cfg.sinks {
        crate::sinks::dry_run(s, &rules)
            .await
            .map_err(|e| router::RouterError::Sink {
                name: s.name.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// Starts every stage of `cfg`, with the embedded rules engine when the detect mode uses it.
pub async fn start(cfg: Config) -> Result<Running, PipelineError> {
    let metrics = Metrics::new();
    let detector = Detector::none();
    let opts = detect::rules_options(&cfg.rules, cfg.effective_hostname());
    if cfg.detect.mode.embedded() {
        let (rs, report) = detect::load_rules(&cfg.rules, &opts)?;
        for w in &report.warnings {
            tracing::warn!("rules: {w}");
        }
        tracing::info!(active = report.rules_active, "rules loaded");
        detect::install(&detector, rs, &report, &metrics.detect);
    }
    let running = start_with(cfg, detector, metrics).await?;
    if running.config.detect.mode.embedded() {
        detect::spawn_rules_watch(
            running.config.rules.clone(),
            opts,
            running.detector.clone(),
            running.metrics.detect.clone(),
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
    crate::transport::tls::install_crypto_provider();
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
    let health = Health::new();
    let uses_falco = cfg.detect.mode.uses_falco();

    // The console's store is open before the sinks are built: its `console` sink writes to it,
    // and every lane reports its outcomes to it.
    let activity = crate::store::observer::Activity::default();
    let mut delivery_metrics = metrics.delivery.clone();
    let console = if cfg.console.enabled {
        let tokens = crate::console::ConsoleTokens::new(
            &cfg.console.tokens,
            cfg.console.token_file.clone(),
        )?;
        tokens.spawn_watch(Duration::from_secs(5));
        let store = crate::store::open(&cfg.store, &cfg.data_dir, metrics.store.clone()).await?;
        tracing::info!(kind = store.kind(), "alert store open");
        delivery_metrics.observer = Some(Arc::new(crate::store::observer::StoreObserver {
            store: store.clone(),
            activity: activity.clone(),
        }));
        Some((store, tokens))
    } else {
        None
    };
    let router = router::start(
        RouterSetup {
            probe: Some(health.probe("router")),
            budget_metrics: Some(metrics.budget.clone()),
            store: console.as_ref().map(|(s, _)| s.clone()),
            ..cfg.router_setup()
        },
        &delivery_metrics,
    )
    .await?;
    let forwarder = if uses_falco {
        Some(falco::forward::Forwarder::new(&cfg.falco)?)
    } else {
        None
    };
    let mut taps: Vec<Arc<dyn BatchTap>> = Vec::new();
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
        let lane = Arc::new(lane);
        taps.push(Arc::new(falco::forward::ForwardTap(lane.clone())));
        Some(lane)
    } else {
        None
    };
    let opened = Inbox::open(
        &cfg.data_dir.join("inbox"),
        &cfg.inbox,
        metrics.inbox.clone(),
        Some(health.probe("inbox")),
    )?;
    let inbox = opened.inbox;
    let detect = detect::spawn(
        opened.reader,
        detector.clone(),
        taps,
        router.sender(),
        metrics.detect.clone(),
        cfg.ingest.max_event_bytes,
        health.probe("detect"),
    );

    let read_timeout = cfg.ingest.read_timeout();
    let sources_view = crate::sources::SourcesView::default();
    let webhook = crate::sources::has_webhook(&cfg.sources);
    // The webhook and the other sources check what they accept with detection's screen.
    let screen: Arc<dyn crate::delivery::inbox::Screen> =
        Arc::new(detect::Screener::new(detector.clone()));
    let mut app = if webhook {
        let state = IngestState::new(
            inbox.clone(),
            screen.clone(),
            metrics.ingest.clone(),
            cfg.ingest.clone(),
        );
        let m = metrics.ingest.clone();
        sources_view.add_fn(ingest::SOURCE, move || webhook_status(&m));
        ingest::routes(state, auth.clone())
    } else {
        axum::Router::new()
    };

    let (sinks_tx, sinks_rx) = watch::channel((cfg.sinks.clone(), cfg.tenancy.sink_rules()));
    let (console_closing, closing_rx) = watch::channel(false);
    if let Some((store, tokens)) = console {
        app = app.merge(crate::console::routes(crate::console::ConsoleState {
            store,
            tokens,
            sinks: sinks_tx.subscribe(),
            delivery: delivery_metrics.clone(),
            activity,
            detector: detector.clone(),
            sources: sources_view.clone(),
            closing: closing_rx,
        }));
    }
    app = app.merge(ingest::test_alert::routes(
        sinks_rx,
        cfg.effective_hostname(),
        auth.clone(),
    ));
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
            app = app.merge(falco::http_output_routes(
                auth.clone(),
                intake,
                router.sender(),
                metrics.falco_in.clone(),
                cfg.ingest.max_body_bytes,
                read_timeout,
            ));
        }
        if let (Some(url), Some(fw)) = (&cfg.falco.healthz_url, &forwarder) {
            let falco_health = falco::forward::FalcoHealth::default();
            let shown = falco_health.clone();
            health.info("falco", move || shown.as_str().to_string());
            falco::forward::spawn_health(
                fw,
                url.clone(),
                Duration::from_millis(cfg.falco.healthz_interval_ms.max(100)),
                falco_health,
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
    let encoder = metrics.clone();
    let app = app
        .merge(server::ops_routes(
            health.clone(),
            Arc::new(move || encoder.encode()),
            cfg.auth.protect_metrics.then(|| auth.clone()),
        ))
        .layer(middleware::from_fn_with_state(
            metrics.http.clone(),
            server::observe,
        ));
    let serving = health.probe("server");
    let limits = cfg.connections.limits(read_timeout);
    let server = server::serve_with(cfg.listen, app, tls, limits, Some(metrics.http.clone()))
        .await
        .map_err(|source| PipelineError::Bind {
            addr: cfg.listen,
            source,
        })?;
    // Sources start once everything else is up (an earlier failure leaves none running).
    let mut source_env = cfg.source_env();
    source_env.screen = screen;
    let sources = crate::sources::start(
        &cfg.sources,
        &source_env,
        &inbox,
        &metrics.sources,
        sources_view.clone(),
        &stop.subscribe(),
    )
    .await?;
    serving.ready();
    tracing::info!(
        listen = %server.local_addr(),
        tls = cfg.tls.is_some(),
        mode = ?cfg.detect.mode,
        sinks = cfg.sinks.len(),
        sources = cfg.sources.len(),
        webhook,
        "kaudit is running"
    );
    Ok(Running {
        config: cfg,
        server,
        stop,
        inbox: Some(inbox),
        inbox_worker: opened.worker,
        detect,
        falco_tail,
        sources,
        forward,
        router,
        test_sinks: sinks_tx,
        serving,
        console_closing,
        health,
        metrics,
        detector,
        sources_view,
    })
}

/// The webhook's line of the sources view, from ingest's counters.
fn webhook_status(m: &crate::ingest::IngestMetrics) -> crate::sources::SourceStatus {
    let mut skipped = std::collections::BTreeMap::new();
    for reason in crate::audit::Rejection::ALL
        .map(crate::audit::Rejection::as_str)
        .into_iter()
        .chain(["queue_full", "storage"])
    {
        let n = m
            .events_rejected
            .get_or_create(&ingest::ReasonLabel { reason })
            .get();
        if n > 0 {
            skipped.insert(reason.to_string(), n);
        }
    }
    crate::sources::SourceStatus {
        name: ingest::SOURCE.into(),
        type_name: "webhook".into(),
        events_read: m.events_accepted.get(),
        skipped,
        position: "POST /k8s-audit".into(),
        ..Default::default()
    }
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
            || new.connections != self.config.connections
            || new.sources != self.config.sources
            || new.console != self.config.console
            || new.store != self.config.store
        {
            tracing::warn!(
                "listen, tls, auth, ingest, connections, sources, console, store and detect.mode changes take effect after a restart"
            );
        }
        self.router.reload(new.router_setup()).await?;
        self.test_sinks
            .send_replace((new.sinks.clone(), new.tenancy.sink_rules()));
        if new.detect.mode.embedded() && new.rules != self.config.rules {
            let opts = detect::rules_options(&new.rules, new.effective_hostname());
            detect::reload_rules(&new.rules, &opts, &self.detector, &self.metrics.detect);
        }
        tracing::info!(sinks = new.sinks.len(), "config reloaded");
        self.config = new;
        Ok(())
    }

    /// Stops accepting requests, then drains what was accepted through detection, the Falco
    /// forwarder and every sink. Each phase has a budget, and together they stay under
    /// Kubernetes' default 30 s grace period: what a dead destination cannot take stays spooled,
    /// and what detection had no time for stays in the inbox, both for the next run.
    pub async fn shutdown(self) {
        let Running {
            server,
            stop,
            inbox,
            inbox_worker,
            mut detect,
            falco_tail,
            sources,
            forward,
            router,
            serving,
            console_closing,
            ..
        } = self;
        serving.not_ready("shutting down");
        let _ = console_closing.send(true);
        server.shutdown(SHUTDOWN_REQUESTS).await;
        let _ = stop.send(true);
        // Sources stop reading; what they appended stays, what they had not is read again
        // next time (their positions were not advanced past it).
        sources.join(SHUTDOWN_SOURCES).await;
        // No source appends any more: once the inbox is closed, detection ends when it has read
        // every batch that was accepted.
        drop(inbox);
        if let Some(t) = falco_tail
            && let Err(e) = t.await
        {
            tracing::error!(error = %e, "Falco tailer failed");
        }
        match tokio::time::timeout(SHUTDOWN_DETECT, &mut detect).await {
            Ok(Err(e)) => tracing::error!(error = %e, "detect stage failed"),
            Ok(Ok(())) => {}
            Err(_) => {
                tracing::warn!(
                    "detection did not finish in {SHUTDOWN_DETECT:?}; the rest stays in the inbox for the next run"
                );
                detect.abort();
            }
        }
        if let Some(lane) = forward {
            match Arc::try_unwrap(lane) {
                Ok(lane) => lane.close(Duration::from_secs(3)).await,
                Err(_) => tracing::error!("Falco forwarder still in use at shutdown"),
            }
        }
        router.shutdown().await;
        inbox_worker.join().await;
        tracing::info!("pipeline drained");
    }
}

/// Budget for requests in flight to finish at shutdown.
pub const SHUTDOWN_REQUESTS: Duration = Duration::from_secs(5);
/// Budget for sources to finish the append in flight at shutdown.
pub const SHUTDOWN_SOURCES: Duration = Duration::from_secs(3);
/// Budget for detection to finish the batches it has at shutdown.
pub const SHUTDOWN_DETECT: Duration = Duration::from_secs(10);

/// What the main loop was woken by.
enum Wake {
    Stop,
    Reload(&'static str),
}

/// The process's signals, caught once for its whole life: a signal that arrives while a reload
/// is running waits in its stream instead of being lost.
struct Signals {
    term: Option<Signal>,
    hup: Option<Signal>,
}

impl Signals {
    fn catch() -> Signals {
        let catch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot catch {name}");
                None
            }
        };
        Signals {
            term: catch(SignalKind::terminate(), "SIGTERM"),
            hup: catch(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// Waits for SIGTERM/SIGINT, SIGHUP, or a change of the config file.
    async fn next(&mut self, config: &mut Option<crate::watch::Stamp>) -> Wake {
        async fn maybe(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        loop {
            tokio::select! {
                _ = maybe(&mut self.term) => { tracing::info!("SIGTERM: draining"); return Wake::Stop }
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: draining"); return Wake::Stop }
                _ = maybe(&mut self.hup) => return Wake::Reload("SIGHUP"),
                _ = tokio::time::sleep(Duration::from_secs(2)), if config.is_some() => {
                    if config.as_mut().is_some_and(|c| c.changed()) {
                        return Wake::Reload("file changed");
                    }
                }
            }
        }
    }
}

/// Runs `kaudit serve`: loads the config, starts, reloads on SIGHUP or a change of the config
/// file, drains and returns on SIGTERM/SIGINT.
pub async fn run(path: Option<PathBuf>, overrides: Overrides) -> Result<(), PipelineError> {
    let mut signals = Signals::catch();
    let cfg = Config::load(path.as_deref(), &overrides)?;
    let mut running = start(cfg).await?;
    let mut stamp = path.clone().map(|p| crate::watch::Stamp::new(vec![p]));
    loop {
        match signals.next(&mut stamp).await {
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
