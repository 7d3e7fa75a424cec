//! Command-line subcommands with more to them than one library call; `main.rs` parses the
//! arguments and dispatches here.
//!
//! - [`deadletter`]: `kaudit deadletter list | replay`, dead letters back through a fixed sink.
//! - [`rules`]: `kaudit rules check | list | test`, the rules engine from the command line.
//! - [`sinks`]: `kaudit sinks test [NAME]`, the test alert through every configured sink.

pub mod deadletter;
pub mod rules;
pub mod sinks;
