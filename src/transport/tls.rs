//! Client-side TLS: the settings a connection to a destination may carry (a CA bundle, a client
//! identity for mutual TLS), and the one place that installs rustls' process-wide crypto provider.
//! The webhook server's own TLS is ingest's.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::TransportError;
use crate::invalid::{Invalid, existing_file};

/// Makes sure a process-wide rustls crypto provider is installed (ring); idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// TLS settings of a client connection (the `tls:` key of a sink).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// PEM CA bundle trusted in addition to the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl ClientTls {
    /// Trusts `ca_file` only in addition to the system roots, without a client identity.
    pub fn ca(ca_file: PathBuf) -> Self {
        ClientTls {
            ca_file: Some(ca_file),
            ..ClientTls::default()
        }
    }

    /// Checks that the files exist and that cert and key come together; keys are relative to
    /// the `tls:` block (place them with [`Invalid::under`]).
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Invalid::new(
                "",
                "set both `cert_file` and `key_file`, or neither",
            ));
        }
        for (key, f) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(p) = f {
                existing_file(key, p)?;
            }
        }
        Ok(())
    }

    /// Applies the settings to a reqwest client builder (reads the files now).
    pub fn apply(
        &self,
        mut b: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TransportError> {
        let refuse = TransportError::refused;
        if let Some(ca) = &self.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| refuse(format!("tls.ca_file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| refuse(format!("tls.ca_file {}: {e}", ca.display())))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            let mut pem = std::fs::read(key)
                .map_err(|e| refuse(format!("tls.key_file {}: {e}", key.display())))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(cert)
                    .map_err(|e| refuse(format!("tls.cert_file {}: {e}", cert.display())))?,
            );
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| refuse(format!("tls client identity: {e}")))?;
            b = b.identity(id);
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let half = ClientTls {
            cert_file: Some("/x".into()),
            ..ClientTls::default()
        };
        assert_eq!(half.validate().unwrap_err().under("tls").key, "tls");
        let missing = ClientTls::ca("/nonexistent/ca.pem".into());
        assert_eq!(
            missing.validate().unwrap_err().under("tls").key,
            "tls.ca_file"
        );
        assert!(ClientTls::default().validate().is_ok());
    }
}
