//! kaudit's integration tests: one binary, one module per area.

mod artifacts;
mod falco_tail;
mod ingest;
mod rules;
