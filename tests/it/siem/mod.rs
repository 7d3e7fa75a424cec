//! The log, SIEM, archive and broker sinks of issue 18, each against a real server where one
//! exists locally (rsyslog, Redis, Mosquitto, RabbitMQ, moto's S3) and against a loopback server
//! that checks every request against the API's documented schema where none does
//! (Elasticsearch/OpenSearch, Loki, Splunk HEC, Google Cloud Storage). Each sink also has an
//! outage test: alerts sent while the destination is down, through a restart of kaudit, all
//! arrive once it is back ([`outage_then_restart`]).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::response::Response;

use kaudit::alert::{Alert, Priority};
use kaudit::metrics::Metrics;
use kaudit::router;

use crate::support::{Recorder, Req, alert, config, json_lines, wait_until};

mod elasticsearch;
mod gcs;
mod loki;
mod mqtt;
mod rabbitmq;
mod redis;
mod s3;
mod servers;
mod splunk;
mod syslog;

/// A destination an outage test can take down and bring back, and read what it received.
pub trait Destination {
    /// Takes it down (kill the server, close the port).
    async fn stop(&mut self);
    /// Brings it back on the same address, with what it had stored.
    async fn start(&mut self);
    /// The uuids of the alerts it holds now.
    async fn received(&mut self) -> HashSet<String>;
}

/// Waits until `dest` holds every uuid of `want`.
pub async fn wait_received<D: Destination>(dest: &mut D, want: &HashSet<String>, what: &str) {
    let start = std::time::Instant::now();
    loop {
        let got = dest.received().await;
        if want.is_subset(&got) {
            return;
        }
        assert!(
            start.elapsed() < crate::support::PATIENCE,
            "{what}: {} of {} alerts arrived",
            want.intersection(&got).count(),
            want.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Starts a router for the `sinks:` YAML in `dir`, with metrics of its own.
pub async fn start(dir: &Path, sinks_yaml: &str) -> (router::RouterHandle, Metrics) {
    let cfg = config(dir, sinks_yaml);
    let metrics = Metrics::new();
    let r = router::start(cfg.router_setup(), &metrics.delivery)
        .await
        .expect("router starts");
    (r, metrics)
}

/// Waits until sink `name` confirmed at least `n` alerts (an empty spool can also mean "not
/// spooled yet").
pub async fn wait_sent(metrics: &Metrics, name: &str, n: usize) {
    wait_until(&format!("{n} alerts confirmed by {name}"), || {
        crate::support::metric(&metrics.encode(), "kaudit_sink_sent_total", name) >= n as f64
    })
    .await;
}

fn batch(tag: &str, n: usize) -> Vec<Alert> {
    (0..n)
        .map(|i| alert(&format!("{tag} {i}"), Priority::Warning))
        .collect()
}

fn uuids(alerts: &[Alert]) -> HashSet<String> {
    alerts.iter().map(|a| a.uuid.to_string()).collect()
}

/// Five alerts delivered; the destination goes down; five more are sent and spooled; kaudit
/// shuts down and starts again (a new router on the same data directory) while it is down;
/// the destination comes back: every alert arrives, none is dead-lettered.
pub async fn outage_then_restart<D: Destination>(
    data_dir: &Path,
    sink_yaml: &str,
    sink: &str,
    dest: &mut D,
) {
    let cfg = config(data_dir, sink_yaml);
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .expect("router starts");
    let before = batch("Before", 5);
    for a in &before {
        r.sender().send(a.clone()).await.expect("router accepts");
    }
    wait_received(dest, &uuids(&before), "before the outage").await;
    dest.stop().await;
    let during = batch("During", 5);
    for a in &during {
        r.sender().send(a.clone()).await.expect("router accepts");
    }
    wait_until("the alerts of the outage spooled", || {
        r.spooled(sink) == Some(during.len() as u64)
    })
    .await;
    r.shutdown().await;
    let r = router::start(cfg.router_setup(), &Metrics::new().delivery)
        .await
        .expect("router starts again");
    dest.start().await;
    let all: HashSet<String> = uuids(&before).union(&uuids(&during)).cloned().collect();
    wait_received(dest, &all, "after the outage").await;
    wait_until("the spool to empty", || r.spooled(sink) == Some(0)).await;
    r.shutdown().await;
    let dead = json_lines(&data_dir.join(format!("dead-letter/{sink}.jsonl")));
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
}

/// What a loopback SaaS API keeps between requests: the protocol violations it saw and the
/// uuids of the alerts it stored.
pub trait ApiState: Send + 'static {
    /// The requests that broke the documented API, described.
    fn violations(&self) -> &[String];
    /// The uuids of the alerts it holds.
    fn uuids(&self) -> HashSet<String>;
}

/// A loopback server for a SaaS API with no local server (Elasticsearch, Loki, Splunk HEC): it
/// answers with `handle` over its state, on an ephemeral port it keeps across a stop and start.
pub struct Loopback<S> {
    /// Its state.
    pub state: Arc<Mutex<S>>,
    handle: fn(&Arc<Mutex<S>>, &Req) -> Response,
    port: u16,
    server: Option<Recorder>,
}

impl<S: ApiState> Loopback<S> {
    /// Starts one on an ephemeral port.
    pub async fn serve(state: S, handle: fn(&Arc<Mutex<S>>, &Req) -> Response) -> Loopback<S> {
        let mut l = Loopback {
            state: Arc::new(std::sync::Mutex::new(state)),
            handle,
            port: 0,
            server: None,
        };
        l.up().await;
        l
    }

    async fn up(&mut self) {
        let (st, handle) = (self.state.clone(), self.handle);
        let r = Recorder::start_on(self.port, Arc::new(move |_, req| handle(&st, req))).await;
        self.port = r.addr.port();
        self.server = Some(r);
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Fails the test when any request broke the API.
    pub fn check(&self) {
        let s = self.state.lock().unwrap();
        let v = s.violations();
        assert!(v.is_empty(), "schema violations: {v:?}");
    }
}

impl<S: ApiState> Destination for Loopback<S> {
    async fn stop(&mut self) {
        self.server = None;
    }
    async fn start(&mut self) {
        self.up().await;
    }
    async fn received(&mut self) -> HashSet<String> {
        self.state.lock().unwrap().uuids()
    }
}
