//! kaudit's integration tests: one binary, one module per area.

mod delivery;
mod gcscc;
mod http_sink;
mod nats;
mod router;
mod support;
