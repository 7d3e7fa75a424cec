//! kaudit's integration tests: one binary, one module per area.

mod artifacts;
mod brokers;
mod delivery;
mod e2e;
mod falco_forward;
mod falco_tail;
mod gcscc;
mod http_sink;
mod ingest;
mod kafka;
mod kube;
mod nats;
mod operator;
mod operator_mock;
mod pubsub;
mod reload;
mod router;
mod rules;
mod rules_default;
mod rules_engine;
mod rules_robust;
mod siem;
mod sns;
mod support;
