//! TLS for the sinks that speak their own protocol over TCP (syslog, MQTT): a rustls client
//! configuration made from the same `tls:` settings the HTTP sinks use, trusting the system's
//! roots plus `ca_file`, presenting `cert_file`/`key_file` when set, and a connector on top.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{ClientTls, TransportError};

impl ClientTls {
    /// The rustls client configuration of these settings (reads the files now; a bad file is a
    /// refusal).
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, TransportError> {
        let refuse = TransportError::refused;
        let mut roots = RootCertStore::empty();
        // Unreadable system certificates are skipped: `ca_file` may be all that is needed.
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        if let Some(ca) = &self.ca_file {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| refuse(format!("tls.ca_file {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(refuse(format!(
                    "tls.ca_file {}: no certificate in it",
                    ca.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| refuse(format!("tls.ca_file {}: {e}", ca.display())))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| refuse(format!("tls: {e}")))?
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| refuse(format!("tls.cert_file {}: {e}", cert.display())))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| refuse(format!("tls.key_file {}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| refuse(format!("tls client identity: {e}")))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }
}

/// Opens TLS sessions over TCP connections, verifying the server against one name.
#[derive(Clone)]
pub struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl TlsConnector {
    /// A connector for `tls` (system roots only when `None`) that verifies `server_name` (a DNS
    /// name or an IP address).
    pub fn new(tls: Option<&ClientTls>, server_name: &str) -> Result<Self, TransportError> {
        super::tls::install_crypto_provider();
        let cfg = tls.cloned().unwrap_or_default().rustls_config()?;
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
            TransportError::refused(format!("tls server name {server_name:?}: {e}"))
        })?;
        Ok(TlsConnector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            name,
        })
    }

    /// The TLS handshake over `tcp`.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.inner.connect(self.name.clone(), tcp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_refusals_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = ClientTls::ca(empty).rustls_config().unwrap_err();
        assert!(!e.retry && e.message.contains("tls.ca_file"), "{e:?}");
        assert!(ClientTls::default().rustls_config().is_ok());
        assert!(TlsConnector::new(None, "not a name!").is_err());
        assert!(TlsConnector::new(None, "127.0.0.1").is_ok());
    }
}
