//! Plumbing for every outbound connection, below delivery and the sinks: the one HTTP client
//! builder ([`mod@client`]), the client TLS settings and the process-wide rustls crypto provider
//! ([`tls`]), the classification of HTTP answers and transport failures as a small policy with
//! per-caller overrides ([`retry`]), the byte encodings the wire needs ([`encode`]), and what a
//! destination may reach and use: the egress policy of restricted (tenant) destinations
//! ([`egress`]) and the restrictions in force while one is built ([`access`]).
//!
//! Transport knows nothing of alerts or sinks: it returns its own [`TransportError`], which
//! `delivery` turns into a `SinkError`.

pub mod access;
pub mod client;
pub mod egress;
pub mod encode;
pub mod retry;
pub mod stream_tls;
pub mod tls;

pub use client::{ClientSettings, client};
pub use retry::{RetryPolicy, TransportError, Verdict};
pub use stream_tls::TlsConnector;
pub use tls::ClientTls;

/// The request timeout of the HTTP-speaking sinks when `timeout_ms` is not set, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// [`DEFAULT_TIMEOUT_MS`], as a serde default.
pub fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}
