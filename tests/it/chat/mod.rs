//! Chat and on-call sinks against loopback servers that check each API's documented schema
//! and answer its documented errors; Alertmanager against the real server.

pub mod api;
mod cards;
mod slack;
