//! kaudit: the Kubernetes audit webhook that turns audit events into alerts security teams act on.
//!
//! The pipeline, one module per stage:
//! `ingest` (HTTP webhook) → `detect` (rules engine) → `router` (filters, enrichment, fan-out)
//! → `delivery` (per-sink queue, spool, retries) → `sinks` (one module per destination).
//! `pipeline` wires the stages together; `main.rs` only parses the command line.

#![warn(missing_docs)]

// The model and the rules engine live in the `kaudit-engine` crate (crates/engine), the bottom
// layer; their paths stay `kaudit::audit`, `kaudit::alert`, `kaudit::rules`.
pub use kaudit_engine::{alert, audit, lazy, rules};

pub mod aws;
pub mod cli;
pub mod config;
pub mod console;
pub mod delivery;
pub mod detect;
pub mod falco;
pub mod follow;
pub mod gcp;
pub mod health;
pub mod ingest;
pub mod invalid;
pub mod memory;
pub mod metrics;
pub mod operator;
pub mod pipeline;
pub mod router;
pub mod secret;
pub mod server;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod transport;
pub mod watch;
