//! The one way kaudit builds an HTTP client: a request timeout (connecting gets at most 10 s of
//! it), kaudit's `User-Agent`, gzip-compressed answers decoded, rustls with the caller's TLS
//! settings, and redirects NOT followed unless asked: a webhook that answers 3xx is reported as
//! such rather than silently re-posted elsewhere (or turned into a GET).
//!
//! Built while a restricted [`Access`](super::access::Access) is in force (a tenant sink's
//! build), the client obeys its egress policy where connections are made: a resolver that drops
//! refused addresses, a check of the address connected to, no proxy from the environment (a
//! proxy would connect on its behalf) and never a redirect.

use std::time::Duration;

use super::egress::{PeerCheckLayer, PolicyResolver};
use super::{ClientTls, TransportError};

/// The longest connect timeout, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of an HTTP client; [`ClientSettings::build`] makes it.
#[derive(Clone, Debug)]
pub struct ClientSettings<'a> {
    timeout: Duration,
    tls: Option<&'a ClientTls>,
    redirects: usize,
}

impl<'a> ClientSettings<'a> {
    /// A client whose requests time out after `timeout`, with the system's roots only.
    pub fn new(timeout: Duration) -> Self {
        ClientSettings {
            timeout,
            tls: None,
            redirects: 0,
        }
    }

    /// Uses a CA bundle and client identity, when set.
    pub fn tls(mut self, tls: Option<&'a ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Follows up to `max` redirects (none by default).
    pub fn follow_redirects(mut self, max: usize) -> Self {
        self.redirects = max;
        self
    }

    /// Builds the client, reading the TLS files now; a bad file is a refusal.
    pub fn build(self) -> Result<reqwest::Client, TransportError> {
        super::tls::install_crypto_provider();
        let redirects = match self.redirects {
            0 => reqwest::redirect::Policy::none(),
            n => reqwest::redirect::Policy::limited(n),
        };
        let mut b = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(MAX_CONNECT_TIMEOUT))
            .user_agent(concat!("kaudit/", env!("CARGO_PKG_VERSION")))
            .gzip(true)
            .redirect(redirects);
        if let Some(policy) = super::access::current().egress {
            b = b
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(PolicyResolver(policy.clone()))
                .connector_layer(PeerCheckLayer(policy));
        }
        if let Some(t) = self.tls {
            b = t.apply(b)?;
        }
        b.build()
            .map_err(|e| TransportError::refused(format!("http client: {e}")))
    }
}

/// A client with `timeout` and optional TLS settings: [`ClientSettings`] with its defaults.
pub fn client(
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<reqwest::Client, TransportError> {
    ClientSettings::new(timeout).tls(tls).build()
}
