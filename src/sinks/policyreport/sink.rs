//! Writing reports: per namespace of a batch, read the report, merge, write it back with its
//! resourceVersion (a conflict reads again), or create it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

use super::PolicyReportConfig;
use super::report::merge;
use crate::alert::Alert;
use crate::delivery::{BatchPolicy, Sink, SinkError};

/// API group and version of the reports.
pub const GROUP: &str = "wgpolicyk8s.io";
/// The version.
pub const VERSION: &str = "v1alpha2";

/// How many times a write that lost a race (409) reads the report again.
const CONFLICT_TRIES: usize = 5;

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

/// Where a report goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Namespace(String),
    Cluster,
}

/// Failure of a report write, and whether the namespace is missing.
enum WriteError {
    NamespaceGone,
    Sink(SinkError),
}

fn classify(what: &str, e: kube::Error) -> WriteError {
    let message = format!("policyreport {what}: {e}");
    match &e {
        kube::Error::Api(s) if s.code == 404 && s.message.contains("namespaces") => {
            WriteError::NamespaceGone
        }
        // Denials, as for every sink: retried for `spool.denied_retry_secs` (time to install the
        // CRD or grant the role), then dead-lettered, so that a misconfiguration cannot hold the
        // spool forever.
        kube::Error::Api(s) if s.code == 404 => WriteError::Sink(SinkError::Denied(format!(
            "{message} (is the wgpolicyk8s.io/v1alpha2 PolicyReport CRD installed?)"
        ))),
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
            WriteError::Sink(SinkError::Denied(format!(
                "{message} (kaudit's service account needs get, create and update on policyreports and clusterpolicyreports)"
            )))
        }
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
            WriteError::Sink(SinkError::Permanent(message))
        }
        _ => WriteError::Sink(SinkError::retryable(message)),
    }
}

/// Writes alerts as results of PolicyReports.
pub struct PolicyReportSink {
    cfg: PolicyReportConfig,
    client: kube::Client,
}

impl PolicyReportSink {
    /// Builds the Kubernetes client from the kubeconfig or the in-cluster environment.
    pub async fn new(cfg: PolicyReportConfig) -> Result<PolicyReportSink, SinkError> {
        crate::transport::tls::install_crypto_provider();
        let refuse = |e: String| SinkError::Permanent(format!("policyreport: {e}"));
        let mut config = match &cfg.kubeconfig_file {
            Some(p) => {
                let kc = kube::config::Kubeconfig::read_from(p)
                    .map_err(|e| refuse(format!("kubeconfig {}: {e}", p.display())))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| refuse(format!("kubeconfig {}: {e}", p.display())))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| refuse(e.to_string()))?,
        };
        let t = Duration::from_millis(cfg.timeout_ms);
        config.read_timeout = Some(t);
        config.write_timeout = Some(t);
        config.connect_timeout = Some(t);
        let client = kube::Client::try_from(config).map_err(|e| refuse(e.to_string()))?;
        Ok(PolicyReportSink { cfg, client })
    }

    fn api(&self, scope: &Scope) -> Api<DynamicObject> {
        match scope {
            Scope::Namespace(ns) => Api::namespaced_with(
                self.client.clone(),
                ns,
                &resource("PolicyReport", "policyreports"),
            ),
            Scope::Cluster => Api::all_with(
                self.client.clone(),
                &resource("ClusterPolicyReport", "clusterpolicyreports"),
            ),
        }
    }

    async fn write(&self, scope: &Scope, alerts: &[&Alert]) -> Result<(), WriteError> {
        let (kind, plural) = match scope {
            Scope::Namespace(_) => ("PolicyReport", "policyreports"),
            Scope::Cluster => ("ClusterPolicyReport", "clusterpolicyreports"),
        };
        let ar = resource(kind, plural);
        let api = self.api(scope);
        let name = &self.cfg.report_name;
        let what = match scope {
            Scope::Namespace(ns) => format!("{ns}/{name}"),
            Scope::Cluster => format!("cluster/{name}"),
        };
        for _ in 0..CONFLICT_TRIES {
            let current = api.get_opt(name).await.map_err(|e| classify(&what, e))?;
            let r = match current {
                Some(mut obj) => {
                    merge(&mut obj.data, alerts, self.cfg.max_results);
                    api.replace(name, &PostParams::default(), &obj).await
                }
                None => {
                    let mut obj = DynamicObject::new(name, &ar);
                    if let Scope::Namespace(ns) = scope {
                        obj = obj.within(ns);
                    }
                    obj.metadata.labels = Some(
                        [(
                            "app.kubernetes.io/managed-by".to_string(),
                            "kaudit".to_string(),
                        )]
                        .into(),
                    );
                    obj.data = json!({});
                    merge(&mut obj.data, alerts, self.cfg.max_results);
                    api.create(&PostParams::default(), &obj).await
                }
            };
            match r {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(classify(&what, e)),
            }
        }
        Err(WriteError::Sink(SinkError::retryable(format!(
            "policyreport {what}: still conflicting after {CONFLICT_TRIES} tries"
        ))))
    }

    async fn report(&self, alerts: &[Alert]) -> Result<(), SinkError> {
        let mut by_scope: BTreeMap<Scope, Vec<&Alert>> = BTreeMap::new();
        for a in alerts {
            let scope = match a
                .field_text("ka.target.namespace")
                .filter(|n| !n.is_empty())
            {
                Some(ns) => Scope::Namespace(ns),
                None => Scope::Cluster,
            };
            by_scope.entry(scope).or_default().push(a);
        }
        let mut orphans: Vec<&Alert> = Vec::new();
        for (scope, group) in &by_scope {
            if *scope == Scope::Cluster {
                continue;
            }
            match self.write(scope, group).await {
                Ok(()) => {}
                Err(WriteError::NamespaceGone) => orphans.extend(group),
                Err(WriteError::Sink(e)) => return Err(e),
            }
        }
        orphans.extend(by_scope.remove(&Scope::Cluster).unwrap_or_default());
        if orphans.is_empty() {
            return Ok(());
        }
        if !self.cfg.cluster_report {
            return Err(SinkError::Permanent(format!(
                "policyreport: {} alerts have no namespace (or it is gone) and cluster_report is off",
                orphans.len()
            )));
        }
        match self.write(&Scope::Cluster, &orphans).await {
            Ok(()) => Ok(()),
            Err(WriteError::Sink(e)) => Err(e),
            Err(WriteError::NamespaceGone) => Err(SinkError::retryable(
                "policyreport: the cluster report could not be written",
            )),
        }
    }
}

impl Sink for PolicyReportSink {
    fn send<'a>(&'a self, alerts: &'a [Alert]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.report(alerts))
    }

    fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            max: self.cfg.batch_max,
            max_wait: Duration::from_millis(self.cfg.batch_wait_ms),
        }
    }
}
