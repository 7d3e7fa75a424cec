//! A throwaway certificate authority per test cluster: serving certificates, client
//! certificates for any user and groups (the apiserver reads CN as the user name and O as a
//! group), and the service-account signing key.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A PEM certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// The CA and what it signed, under one directory.
pub struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM file).
    pub ca: PathBuf,
    /// The service-account signing key (PEM, PKCS#8 ECDSA P-256).
    pub sa_key: PathBuf,
    /// Its public half.
    pub sa_pub: PathBuf,
}

impl Pki {
    /// A new CA (and service-account key pair) with its files in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("pki dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "kaudit-test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).expect("self-sign CA");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write CA");
        let sa = KeyPair::generate().expect("service-account key");
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        std::fs::write(&sa_key, sa.serialize_pem()).expect("write sa key");
        std::fs::write(&sa_pub, sa.public_key_pem()).expect("write sa pub");
        Pki {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, ca_key),
            ca,
            sa_key,
            sa_pub,
        }
    }

    fn issue(
        &self,
        file: &str,
        cn: &str,
        org: Option<&str>,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }

    /// A serving certificate for `sans` (IP addresses or DNS names).
    pub fn server(&self, file: &str, sans: &[&str]) -> CertFiles {
        self.issue(file, file, None, sans, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for user `cn` in group `org`.
    pub fn client(&self, file: &str, cn: &str, org: Option<&str>) -> CertFiles {
        self.issue(file, cn, org, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}
