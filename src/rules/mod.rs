//! The Falco-compatible `k8s_audit` rules engine: loader, condition parser and compiler,
//! `ka.*`/`jevt.*` fields, evaluation and output formatting.
