//! The Kubernetes operator: custom resources for rules, sinks and the deployment itself, and
//! the controllers that reconcile them into ConfigMaps, Secrets, Deployments and Services.
//!
//! The pure half, [`render`], turns resources into desired objects and statuses; everything else
//! talks to the apiserver.
//!
//! | file | job |
//! | --- | --- |
//! | [`crd`] | the `kaudit.io/v1alpha1` kinds (and `kaudit crds`) |
//! | [`inputs`] | what the deployments read: every input resource, and what they reference |
//! | [`render`] | resources in, desired objects and statuses out (no I/O) |
//! | [`tenancy`] | scoping a namespace's rules and sinks to that namespace |
//! | [`gather`] | reading the inputs |
//! | [`sink_check`] | the dry run of every sink with its real credentials (kaudit's own checks) |
//! | [`deployment`] | the `KauditDeployment` controller: render, apply, prune, status |
//! | [`statuses`] | the status of every rule, rules file and sink, written once for all deployments |
//! | [`finalizer`] | the finalizer of sinks holding credentials |
//! | [`apply`] | server-side apply, pruning, status patches |
//! | [`leader`] | leader election on a `coordination.k8s.io` Lease |
//! | [`health`], [`metrics`] | `/healthz` and `/metrics` |
//! | [`context`], [`error`] | what every reconciliation shares; the one error type |
//! | [`run`](mod@run) | `kaudit operator`: everything above, wired |

pub mod apply;
pub mod context;
pub mod crd;
pub mod deployment;
pub mod error;
pub mod finalizer;
pub mod gather;
pub mod health;
pub mod inputs;
pub mod leader;
pub mod metrics;
pub mod render;
pub mod run;
pub mod sink_check;
pub mod statuses;
pub mod tenancy;

pub use error::Error;
pub use run::{OperatorOptions, run};
