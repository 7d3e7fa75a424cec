//! TLS for the webhook server (rustls), with optional client-certificate verification (mTLS).
//!
//! The server config sits behind a lock that the accept loop reads for every new connection;
//! a watcher rebuilds it when the certificate, key or CA files change, so a renewed
//! certificate is served without restarting or dropping the listener. A bad new set is logged
//! and the old one stays in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use serde::{Deserialize, Serialize};

/// TLS settings of the server. Files are re-read when they change.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes, in seconds.
    #[serde(default = "default_reload_secs")]
    pub reload_interval_secs: u64,
}

fn default_reload_secs() -> u64 {
    5
}

impl TlsConfig {
    /// Checks that the files exist; keys are relative to `tls`.
    pub fn validate(&self) -> Result<(), crate::invalid::Invalid> {
        use crate::invalid::Invalid;
        for (key, path) in [("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if !path.exists() {
                return Err(Invalid::new(
                    key,
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        if let Some(ca) = &self.client_ca_file
            && !ca.exists()
        {
            return Err(Invalid::new(
                "client_ca_file",
                format!("{} does not exist", ca.display()),
            ));
        }
        Ok(())
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert_file.clone(), self.key_file.clone()];
        v.extend(self.client_ca_file.clone());
        v
    }
}

/// A TLS file that could not be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read or holds no usable PEM item.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the combination (e.g. key does not match the certificate).
    #[error("tls: {0}")]
    Config(String),
}

use crate::transport::tls::install_crypto_provider;

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE found".into()));
    }
    Ok(certs)
}

/// Builds a rustls server config from the files of `cfg`.
pub fn load(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    let certs = read_certs(&cfg.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| TlsError::File {
        path: cfg.key_file.display().to_string(),
        message: format!("cannot read private key: {e}"),
    })?;
    let builder = ServerConfig::builder();
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| TlsError::File {
                    path: ca.display().to_string(),
                    message: format!("bad CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", cfg.key_file.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The current TLS config, swapped in place when the files change.
#[derive(Clone)]
pub struct ReloadingTls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl ReloadingTls {
    /// Loads the files once; fails start-up when they are unusable.
    pub fn new(cfg: &TlsConfig) -> Result<ReloadingTls, TlsError> {
        Ok(ReloadingTls {
            current: Arc::new(RwLock::new(load(cfg)?)),
        })
    }

    /// The config new connections use.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Watches the files and reloads on change.
    pub fn spawn_watch(&self, cfg: TlsConfig) {
        let this = self.clone();
        let every = Duration::from_secs(cfg.reload_interval_secs.max(1));
        crate::watch::spawn_on_change(cfg.files(), every, None, move || match load(&cfg) {
            Ok(new) => {
                if let Ok(mut g) = this.current.write() {
                    *g = new;
                }
                tracing::info!(cert = %cfg.cert_file.display(), "TLS certificates reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS reload failed; keeping the old certificates")
            }
        });
    }
}
