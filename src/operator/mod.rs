//! The Kubernetes operator: custom resources for rules, sinks and the deployment itself, and
//! the controllers that reconcile them into ConfigMaps, Secrets, Deployments and Services.
//!
//! - [`crd`]: the `kaudit.io/v1alpha1` kinds (and `kaudit crds`).
//! - [`tenancy`]: scoping a namespace's rules and sinks to that namespace.
//! - [`reconcile`]: the pure half: resources in, desired objects and statuses out.
//! - [`controller`]: the client half: watches, server-side apply, status, events, finalizers.
//! - [`leader`]: leader election on a `coordination.k8s.io` Lease.

pub mod controller;
pub mod crd;
pub mod inputs;
pub mod leader;
pub mod render;
pub mod tenancy;
