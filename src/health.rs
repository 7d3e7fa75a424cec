//! Liveness and readiness of the process, as its components report them.
//!
//! Each long-running part (the server, detection, a source, a spooler...) takes a [`Probe`] and
//! says whether it is ready, and whether it has failed for good. `/readyz` is green only when
//! every probe is ready (Kubernetes then stops sending traffic to a stuck replica); `/healthz`
//! turns red when a probe has failed (Kubernetes then restarts the pod). Informational lines
//! (Falco's state) show on `/readyz` without deciding it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a component says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Working.
    Ready,
    /// In the middle of one piece of work since `since`; stuck (not ready) once that has taken
    /// longer than `stall`.
    Busy {
        /// When the work started.
        since: Instant,
        /// How long the work may take before the component counts as stuck.
        stall: Duration,
    },
    /// Not (yet, or for now) able to do its job; may recover.
    NotReady(String),
    /// Dead: only a restart helps.
    Failed(String),
}

type InfoFn = Arc<dyn Fn() -> String + Send + Sync>;

#[derive(Default)]
struct Inner {
    probes: BTreeMap<String, State>,
    info: BTreeMap<String, InfoFn>,
}

/// The set of components and their states; cheap to clone, shared by every stage.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<Inner>>,
}

/// One component's handle for reporting its state.
#[derive(Clone)]
pub struct Probe {
    name: String,
    health: Health,
}

impl Health {
    /// An empty set: ready and live.
    pub fn new() -> Health {
        Health::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Registers a component, not ready until it says so.
    pub fn probe(&self, name: &str) -> Probe {
        self.with(|i| {
            i.probes
                .insert(name.to_string(), State::NotReady("starting".into()))
        });
        Probe {
            name: name.to_string(),
            health: self.clone(),
        }
    }

    /// Adds an informational line `name: <f()>` to `/readyz` that does not decide readiness.
    pub fn info(&self, name: &str, f: impl Fn() -> String + Send + Sync + 'static) {
        self.with(|i| i.info.insert(name.to_string(), Arc::new(f)));
    }

    /// Ready when every component is; the body names those that are not, then the info lines.
    pub fn readiness(&self) -> (bool, String) {
        self.with(|i| {
            let mut body = String::new();
            let not: Vec<_> = i
                .probes
                .iter()
                .filter_map(|(n, s)| match s {
                    State::Ready => None,
                    State::Busy { since, stall } => {
                        let took = since.elapsed();
                        (took > *stall).then(|| {
                            format!("{n}: stuck on one piece of work for {}s\n", took.as_secs())
                        })
                    }
                    State::NotReady(why) | State::Failed(why) => Some(format!("{n}: {why}\n")),
                })
                .collect();
            let ready = not.is_empty();
            body.push_str(if ready { "ready\n" } else { "not ready\n" });
            for line in not {
                body.push_str(&line);
            }
            for (n, f) in &i.info {
                body.push_str(&format!("{n}: {}\n", f()));
            }
            (ready, body)
        })
    }

    /// Live unless a component has failed; the body names the failed ones.
    pub fn liveness(&self) -> (bool, String) {
        self.with(|i| {
            let failed: Vec<_> = i
                .probes
                .iter()
                .filter_map(|(n, s)| match s {
                    State::Failed(why) => Some(format!("{n}: {why}\n")),
                    _ => None,
                })
                .collect();
            if failed.is_empty() {
                (true, "ok\n".to_string())
            } else {
                (false, format!("failed\n{}", failed.concat()))
            }
        })
    }

    /// The state of one component, if registered.
    pub fn state(&self, name: &str) -> Option<State> {
        self.with(|i| i.probes.get(name).cloned())
    }
}

impl Probe {
    /// Sets this component's state.
    pub fn set(&self, state: State) {
        self.health
            .with(|i| i.probes.insert(self.name.clone(), state));
    }

    /// Working.
    pub fn ready(&self) {
        self.set(State::Ready);
    }

    /// Starts one piece of work that should take less than `stall`; [`Probe::ready`] ends it.
    pub fn busy(&self, stall: Duration) {
        self.set(State::Busy {
            since: Instant::now(),
            stall,
        });
    }

    /// Not able to work for now, and why.
    pub fn not_ready(&self, why: impl Into<String>) {
        self.set(State::NotReady(why.into()));
    }

    /// Dead for good, and why.
    pub fn failed(&self, why: impl Into<String>) {
        self.set(State::Failed(why.into()));
    }

    /// Removes the component (it was stopped on purpose).
    pub fn remove(self) {
        self.health.with(|i| i.probes.remove(&self.name));
    }
}

/// Runs a stage's task; if it panics, its probe fails (liveness turns red and Kubernetes
/// restarts the pod) instead of the stage silently disappearing.
pub async fn supervise(probe: Probe, task: impl std::future::Future<Output = ()>) {
    use futures_util::FutureExt;
    if let Err(panic) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(component = %probe.name, panic = %why, "task panicked");
        probe.failed(format!("task panicked: {why}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_probe_is() {
        let h = Health::new();
        assert!(h.readiness().0);
        let a = h.probe("a");
        let b = h.probe("b");
        assert!(!h.readiness().0);
        a.ready();
        b.ready();
        h.info("falco", || "up".into());
        assert_eq!(h.readiness(), (true, "ready\nfalco: up\n".into()));
        b.not_ready("spool full");
        let (ok, body) = h.readiness();
        assert!(!ok && body.contains("b: spool full"), "{body}");
        assert!(h.liveness().0);
        b.failed("task died");
        assert!(!h.liveness().0);
        b.remove();
        assert!(h.liveness().0 && h.readiness().0);
        a.busy(Duration::from_secs(60));
        assert!(h.readiness().0, "busy within its time is ready");
        a.set(State::Busy {
            since: Instant::now() - Duration::from_secs(5),
            stall: Duration::from_secs(1),
        });
        let (ok, body) = h.readiness();
        assert!(!ok && body.contains("a: stuck"), "{body}");
    }

    #[tokio::test]
    async fn a_supervised_task_that_panics_fails_liveness() {
        let h = Health::new();
        let p = h.probe("detect");
        p.ready();
        supervise(p, async { panic!("boom") }).await;
        let (live, body) = h.liveness();
        assert!(!live && body.contains("boom"), "{body}");
    }
}
