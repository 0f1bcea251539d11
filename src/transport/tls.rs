//! TLS for the listener: a certificate and key from PEM files, or a self-signed
//! development certificate generated at start-up and written to a file clients can
//! trust.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. With neither `cert` nor `key`, a self-signed development
    /// certificate is generated at start-up.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Where the generated development certificate is written, for clients to trust.
    pub dev_cert_path: PathBuf,
    /// Serve plain `ws://` and `http://` instead of TLS (only behind a TLS-terminating
    /// proxy).
    pub insecure_plain: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            dev_cert_path: "tickrelay-dev-cert.pem".into(),
            insecure_plain: false,
        }
    }
}

/// A ready TLS server configuration.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The rustls configuration for the acceptor.
    pub config: Arc<ServerConfig>,
    /// SHA-256 fingerprint of the leaf certificate, as colon-separated hex.
    pub fingerprint: String,
    /// The generated development certificate (PEM), if one was generated.
    pub dev_certificate: Option<String>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The development certificate could not be generated or written.
    #[error("development certificate: {0}")]
    DevCert(String),
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Loads or generates the certificate described by `config`.
pub fn load(config: &TlsConfig) -> Result<Tls, TlsError> {
    let (chain, key, dev_certificate) = match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => (read_chain(cert)?, read_key(key)?, None),
        _ => {
            let (chain, key, pem) = generate_dev_cert()?;
            std::fs::write(&config.dev_cert_path, &pem)
                .map_err(|e| TlsError::DevCert(format!("cannot write {}: {e}", config.dev_cert_path.display())))?;
            (chain, key, Some(pem))
        }
    };
    let fingerprint = fingerprint(&chain[0]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(server),
        fingerprint,
        dev_certificate,
    })
}

/// SHA-256 of a certificate's DER bytes as `AB:CD:...`.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |message: String| TlsError::Pem {
        path: path.into(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error("no certificate in the file".into()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.into(),
        message: e.to_string(),
    })
}

type Generated = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, String);

fn generate_dev_cert() -> Result<Generated, TlsError> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::DevCert(e.to_string()))?;
    let pem = certified.cert.pem();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    Ok((vec![certified.cert.der().clone()], key.into(), pem))
}
