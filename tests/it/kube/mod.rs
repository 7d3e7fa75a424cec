//! kaudit against a real Kubernetes control plane: etcd, kube-apiserver and
//! kube-controller-manager built from their Go modules (`tests/kube/`), plus the kubectl and helm
//! of the same build. Each test starts its own control plane on ephemeral ports with a temporary
//! CA and tears it down at the end; kube tests run one at a time. Without the binaries a test is
//! skipped with a message (run `tests/kube/build.sh`); under `CI=true` it fails.
//!
//! There is no kubelet and no scheduler: pods are created and admitted (Pod Security included)
//! but never run, and `pods/exec` is refused by the apiserver for want of a node. Tests whose
//! subject needs a running pod say so in their names and assert what the apiserver does.

mod backpressure;
mod cluster;
mod helm;
mod hook;
mod install;
mod operator;
mod ops;
mod pki;
mod policyreport;
mod tenancy;
mod webhook;
