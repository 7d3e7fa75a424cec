//! Command-line subcommands with more to them than one library call; `main.rs` parses the
//! arguments and dispatches here.
//!
//! - [`rules`]: `kaudit rules check | list | test`, the rules engine from the command line.

pub mod rules;
