//! kaudit's integration tests: one binary, one module per area.

mod artifacts;
mod brokers;
mod delivery;
mod falco_forward;
mod falco_tail;
mod gcscc;
mod http_sink;
mod ingest;
mod kafka;
mod nats;
mod pubsub;
mod router;
mod rules;
mod sns;
mod support;
