//! Client TLS settings shared by the sinks that speak TLS (CA bundle, mTLS client identity).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// TLS settings of a sink's client connection.
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
    /// Checks that files exist and that cert and key come together.
    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("tls: set both `cert_file` and `key_file`, or neither".into());
        }
        for (key, f) in [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(p) = f
                && !p.exists()
            {
                return Err(format!("tls.{key}: {} does not exist", p.display()));
            }
        }
        Ok(())
    }

    /// Applies the settings to a reqwest client builder.
    pub fn apply(&self, mut b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, String> {
        if let Some(ca) = &self.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            let mut pem =
                std::fs::read(key).map_err(|e| format!("tls.key_file {}: {e}", key.display()))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(cert)
                    .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))?,
            );
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| format!("tls client identity: {e}"))?;
            b = b.identity(id);
        }
        Ok(b)
    }
}
