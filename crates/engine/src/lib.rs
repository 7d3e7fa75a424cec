//! kaudit's rules engine: Kubernetes audit events in, Falco alerts out.
//!
//! The bottom layer of kaudit, pure computation with no I/O beyond reading rules files:
//! - [`audit`]: the audit event model and payload decoding (`EventList`, `Event`, arrays);
//! - [`json`]: borrowed JSON, what lazy extraction builds and the view extractors read;
//! - [`lazy`]: lazy extraction, an event scanned once and only the parts rules read built;
//! - [`alert`]: the alert, Falco's alert JSON plus falcosidekick's `uuid`;
//! - [`rules`]: the Falco-compatible `k8s_audit` rules engine (loader, condition language,
//!   fields, evaluation, output formats) and the alert filters sinks use.
//!
//! ```
//! use kaudit_engine::rules::{LoadOptions, Ruleset};
//! let (rules, report) = Ruleset::load_default(&LoadOptions::default()).unwrap();
//! assert!(report.rules_active > 0);
//! let event = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","stageTimestamp":"2026-01-01T00:00:00Z"}"#;
//! let decoded = kaudit_engine::audit::decode(event.as_bytes(), 1 << 20).unwrap();
//! let mut alerts = Vec::new();
//! rules.evaluate(&decoded.events[0], &mut alerts);
//! ```

#![warn(missing_docs)]

pub mod alert;
pub mod audit;
pub mod json;
pub mod lazy;
pub mod rules;
