//! kaudit's integration tests: one binary, one module per area.

mod rules;
mod rules_default;
mod rules_engine;
mod rules_robust;
